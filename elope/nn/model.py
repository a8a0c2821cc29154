"""ELoPE: backbone + global k-max pooling + embedding + classifier, with the localization module in front
(Fig. 1 of Hanselmann & Ney, WACV 2020; the pipeline step by step: ``docs/architecture.md``, "The
pipeline").

``forward`` is the classifier alone (what stages 1, 3 and 4 of the recipe train); ``crop`` and
``predict`` run the localization module first, so a whole prediction is one pass through the backbone.
How an image goes through the model (sides, τ, box rule, upsampling, margin, normalisation) is the model's
:attr:`ELoPE.spec` (:class:`elope.spec.ModelSpec`), the one place every layer reads them from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from elope.nn.backbones import build_backbone, pretrained_normalization
from elope.nn.crop import crop_and_resize, expand_boxes, like, resize
from elope.nn.embedding import EmbeddingHead
from elope.nn.localization import LocalizationModule, heatmap_to_box, mean_heatmap
from elope.nn.modes import evaluating
from elope.nn.pooling import GlobalAvgPool2d, GlobalKMaxPool2d
from elope.nn.weights import load_weights
from elope.spec import ModelSpec

__all__ = ["POOLINGS", "CropClassification", "ELoPE", "Prediction", "create_model", "model_spec"]

POOLINGS = ("gap", "gmp", "gkmp")


class Prediction(NamedTuple):
    """Output of :meth:`ELoPE.predict`: top classes and softmax scores, boxes in input pixels, heatmaps."""

    classes: Tensor  # (B, top) long
    scores: Tensor  # (B, top) float
    boxes: Tensor  # (B, 4) x1, y1, x2, y2
    heatmaps: Tensor | None  # (B, 1, h, w) from the localization module, None without one


class CropClassification(NamedTuple):
    """Output of :meth:`ELoPE.classify_crops`: what the classifier said about each crop, and where the
    crop was cut (the crops themselves are not kept)."""

    logits: Tensor  # (B, C)
    boxes: Tensor  # (B, 4) x1, y1, x2, y2 in pixels of the input
    heatmaps: Tensor | None  # (B, 1, h, w), None without a localization module
    embeddings: Tensor | None  # (B, dim) raw embeddings of the crops, when asked for


class ELoPE(nn.Module):
    """The ELoPE model (Sec. 2-5).

    Args:
        backbone: ``resnet18|34|50|101`` (torchvision) or any timm CNN name (with the ``timm`` extra).
        num_classes: number of classes C.
        spec: how images go through the model (:class:`elope.spec.ModelSpec`: sides, τ, box rule, heatmap
            upsampling, box margin, normalisation, the localization module's input side); None: the spec's
            defaults (the paper's). A normalisation left open is what the backbone's pretrained weights
            expect (:func:`model_spec`).
        k: K of global k-max pooling (Eq. 3; Table 2: 4).
        weighted: learned per-rank weights in the pooling (Eq. 4), the recipe's fourth stage.
        embedding_dim: width of the embedding layer (512); 0 puts the classifier on the pooled features.
        pooling: ``gkmp`` (the paper), or the Table 5 baselines ``gap`` and ``gmp``.
        localizer: build the localization module (Sec. 5) as ``model.localizer``.
        pretrained: initialise the backbone with ImageNet weights (torchvision weights API / timm).
        weights: path of a local ``.safetensors`` or ``.pt`` state dict, either of the whole model or of
            the backbone alone (e.g. an ImageNet ResNet state dict; its ``fc`` is ignored). Offline.

    ``ELoPE(**model.config, spec=model.spec)`` rebuilds a model (:attr:`config`, :attr:`spec`).
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        spec: ModelSpec | None = None,
        *,
        k: int = 4,
        weighted: bool = False,
        embedding_dim: int = 512,
        pooling: str = "gkmp",
        localizer: bool = True,
        pretrained: bool = False,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        _check_arguments(num_classes, embedding_dim, pooling, weighted)
        spec = model_spec(backbone, spec)
        net = build_backbone(backbone, pretrained=pretrained)
        self.features = net.features
        self.num_features = net.num_features
        if pooling == "gap":
            self.pool: nn.Module = GlobalAvgPool2d()
        else:
            self.pool = GlobalKMaxPool2d(1 if pooling == "gmp" else k, weighted=weighted)
        self.embedding = EmbeddingHead(net.num_features, embedding_dim) if embedding_dim else None
        self.classifier = nn.Linear(embedding_dim or net.num_features, num_classes)
        self._make_stem, self._stem_channels = net.make_stem, net.stem_channels
        self.backbone = backbone
        self.num_classes = num_classes
        self.k = k
        self.embedding_dim = embedding_dim
        self.pooling = pooling
        self.localizer: LocalizationModule | None = None
        self.spec = spec
        if localizer:
            self.add_localizer()
        if weights is not None:
            load_weights(self, weights)

    @property
    def spec(self) -> ModelSpec:
        """How images go through this model: sides, τ, box rule, upsampling, margin, normalisation
        (immutable, :class:`elope.spec.ModelSpec`).

        Replaced as a whole (``model.spec = model.spec.replace(tau=0.5)``), never edited: the end of stage 2
        installs the τ it chose, a command's ``--tau`` is applied when the model is loaded. Its
        ``localizer_input`` is the attached localization module's (a module is built for one input side).
        """
        return self._spec

    @spec.setter
    def spec(self, spec: ModelSpec) -> None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"spec must be an elope.spec.ModelSpec, got {type(spec).__name__}")
        if spec.mean is None:
            raise ValueError(
                "the model's spec needs its normalisation: elope.nn.model.model_spec fills it in"
            )
        if self.localizer is not None and spec.localizer_input != self.localizer.input_size:
            raise ValueError(
                f"localizer_input {spec.localizer_input} differs from the attached localization module's "
                f"input side {self.localizer.input_size}"
            )
        self._spec = spec

    @property
    def config(self) -> Mapping[str, Any]:
        """The architecture: the constructor arguments beside :attr:`spec` that rebuild this model,
        ``ELoPE(**model.config, spec=model.spec)`` (read only).

        Read from the model itself (the pooling's weights, whether a localization module is attached), so it
        cannot drift from it. ``model.json`` (→ ``model``, beside ``spec``), the export metadata and the
        checkpoints store it.
        """
        return MappingProxyType(
            {
                "backbone": self.backbone,
                "num_classes": self.num_classes,
                "k": self.k,
                "weighted": bool(getattr(self.pool, "weighted", False)),
                "embedding_dim": self.embedding_dim,
                "pooling": self.pooling,
                "localizer": self.localizer is not None,
            }
        )

    def add_localizer(self) -> LocalizationModule:
        """Attach a new localization module (Sec. 5): a copy of the backbone's stem and first stage as they
        were built (before any ``weights`` file was loaded), and a new 3×3 head (drawn from the global RNG)."""
        self.localizer = LocalizationModule(self._make_stem(), self._stem_channels, self.spec.localizer_input)
        return self.localizer

    # -- classifier -------------------------------------------------------------------------------------
    def forward_features(self, images: Tensor) -> Tensor:
        """The backbone's last feature map, (B, D, h, w)."""
        return self.features(images)

    def forward(self, images: Tensor, return_embeddings: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits of the classifier on ``images`` as given (no localization).

        With ``return_embeddings=True`` also returns the raw (un-normalised) embeddings that the class-mean
        loss reads (or the pooled features when there is no embedding layer).
        """
        return self.head(self.forward_features(images), return_embeddings)

    def head(self, features: Tensor, return_embeddings: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Pooling (GKMP, Eq. 2), the embedding and the classifier on a last feature map (B, D, h, w):
        the rest of :meth:`forward`, for a caller that also reads the feature map."""
        pooled = self.pool(features)
        embeddings = self.embedding(pooled) if self.embedding is not None else pooled
        logits = self.classifier(embeddings)
        return (logits, embeddings) if return_embeddings else logits

    # -- localization -----------------------------------------------------------------------------------
    def localize(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Boxes (B, 4) in pixels of ``images`` at the spec's τ, and the predicted heatmaps (B, 1, h, w)
        (Sec. 5)."""
        if self.localizer is None:
            raise RuntimeError("this model has no localization module (built with localizer=False)")
        heatmaps = self.localizer(images)
        return self.heatmap_box(heatmaps, self.spec.tau, images.shape[-2:]), heatmaps

    def heatmap_box(self, heatmaps: Tensor, tau: float, frame: tuple[int, int] | torch.Size) -> Tensor:
        """The box of a heatmap (the module's, or a mean feature map) at threshold ``tau`` in pixels of an
        image of ``frame`` = (H, W): :func:`heatmap_to_box` (same arguments, same order) with the spec's
        upsampling and box rule (``tau`` in the spec's range: the spec's own, or one of a τ sweep)."""
        spec = self.spec
        return heatmap_to_box(heatmaps, tau, frame, upsample=spec.heatmap_upsample, rule=spec.box_rule)

    def crop_box(self, boxes: Tensor, frame: tuple[int, int] | torch.Size) -> Tensor:
        """Where the crop of a box is cut in an image of ``frame`` = (H, W): the box grown by the spec's
        ``box_margin`` (:func:`elope.nn.crop.expand_boxes`; the box itself at margin 0, the paper)."""
        return expand_boxes(boxes, self.spec.box_margin, frame)

    @torch.no_grad()
    def crop(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Localize, crop each image at its box and resize the crops to the classifier's ``image_size``.

        Every pipeline of the package crops here (Sec. 5): ``evaluate``, ``predict``, the example sheet,
        validation, the exported and the compiled graphs, and the crop stages of training, with ``images``
        the *crop source* (the original image resized to ``spec.crop_source``; training renders it on the
        device first, :mod:`elope.data.source`). The localization module sees it resized to
        ``spec.localizer_input`` (64), the box is found relative to it at the spec's τ, and the crop is cut
        from it by ``roi_align`` in one batched call, so a crop keeps the source's resolution. The crop reaches the spec's ``box_margin``
        beyond the box (:meth:`crop_box`).

        Returns ``(crops, boxes, heatmaps)``, boxes in pixels of ``images`` (the localization's box, without
        the margin: what Table 4 scores). Without a localization module
        the whole image is resized and ``heatmaps`` is None. No gradient flows through this step.
        """
        size = self.spec.image_size
        if self.localizer is None:
            height, width = images.shape[-2:]
            boxes = images.new_tensor([0.0, 0.0, float(width), float(height)]).expand(images.shape[0], 4)
            return resize(images, size), boxes, None
        boxes, heatmaps = self.localize(images)
        cut = self.crop_box(boxes, images.shape[-2:])
        return like(crop_and_resize(images, cut, size), images), boxes, heatmaps

    @torch.no_grad()
    def classify_crops(self, images: Tensor, *, return_embeddings: bool = False) -> CropClassification:
        """Crop → classify, the test-time path of Fig. 1: :meth:`crop`, then the classifier on the crops.

        Returns :class:`CropClassification`: logits (B, C), boxes in pixels of ``images``, heatmaps (None
        without a localization module) and, with ``return_embeddings``, the raw embeddings of the crops.
        """
        crops, boxes, heatmaps = self.crop(images)
        if return_embeddings:
            logits, embeddings = self(crops, return_embeddings=True)
            return CropClassification(logits, boxes, heatmaps, embeddings)
        return CropClassification(self(crops), boxes, heatmaps, None)

    @torch.no_grad()
    def mean_map(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Table 4's baseline: the box from this classifier's own mean feature map (Sec. 5, Fig. 2).

        The whole image, resized to ``image_size``, goes through the backbone; the channel mean of its last
        feature map is thresholded at the spec's τ like the module's heatmap. Returns ``(boxes in pixels of
        images, heatmaps (B, 1, h, w))``. For the paper's row, call it on the stage-1 classifier
        (``RUN/teacher``, loaded with the run's τ), the network the localization module learns from.
        """
        heatmaps = mean_heatmap(self.forward_features(self._whole(images))).float()
        return self.heatmap_box(heatmaps, self.spec.tau, images.shape[-2:]), heatmaps

    @torch.no_grad()
    def classify_whole(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`mean_map` and this classifier's logits on the same whole image, from one backbone pass:
        ``(logits (B, C), boxes, heatmaps)`` (the teacher's top-1 localization, ``elope evaluate``)."""
        features = self.forward_features(self._whole(images))
        heatmaps = mean_heatmap(features).float()
        logits = cast(Tensor, self.head(features))
        return logits, self.heatmap_box(heatmaps, self.spec.tau, images.shape[-2:]), heatmaps

    def _whole(self, images: Tensor) -> Tensor:
        """The whole image at the classifier's input size (resized unless it is that size already)."""
        side = self.spec.image_size
        return images if tuple(images.shape[-2:]) == (side, side) else resize(images, side)

    @torch.no_grad()
    def predict(self, images: Tensor | list[Tensor], top: int = 1) -> Prediction:
        """The one-pass pipeline: localize → crop → resize → classify (Fig. 1), at the spec's τ.

        Args:
            images: normalised images, a (B, 3, H, W) batch at any resolution (the crop source:
                ``spec.crop_source``), or a list of (3, H, W) tensors of different sizes (each then runs on
                its own).
            top: how many classes to return per image.

        Runs in eval mode and restores the previous mode of every submodule (a localizer frozen in eval
        mode during training stays so). Boxes are in the input's pixel coordinates.
        """
        if isinstance(images, (list, tuple)):
            parts = [self.predict(image[None], top=top) for image in images]
            heatmaps = None if parts[0].heatmaps is None else torch.cat([p.heatmaps for p in parts])
            return Prediction(
                *(torch.cat([getattr(p, f) for p in parts]) for f in ("classes", "scores", "boxes")), heatmaps
            )
        with evaluating(self):
            logits, boxes, heatmaps, _ = self.classify_crops(images)
            probabilities = logits.float().softmax(dim=1)
            scores, classes = probabilities.topk(min(top, self.num_classes), dim=1)
        return Prediction(classes, scores, boxes, heatmaps)


def _check_arguments(num_classes: int, embedding_dim: int, pooling: str, weighted: bool) -> None:
    """The checks of :class:`ELoPE`'s arguments that are not the spec's (ValueError naming the value)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if weighted and pooling != "gkmp":
        raise ValueError(f"weighted pooling (Eq. 4) needs pooling='gkmp', got pooling={pooling!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if embedding_dim < 0:
        raise ValueError(f"embedding_dim must be >= 0 (0: no embedding layer), got {embedding_dim}")


def model_spec(backbone: str, spec: ModelSpec | None = None) -> ModelSpec:
    """``spec`` (None: the spec's defaults) with the normalisation it leaves open set to what the
    ``backbone``'s pretrained weights expect (ImageNet's for ResNets, 0.5/0.5 for the EfficientNet-Lite
    weights: :func:`elope.nn.backbones.pretrained_normalization`)."""
    return (spec or ModelSpec()).with_normalization(*pretrained_normalization(backbone))


def create_model(name: str, num_classes: int, **kwargs: Any) -> ELoPE:
    """Build an ELoPE model with the backbone ``name``; keyword arguments as for :class:`ELoPE`."""
    return ELoPE(name, num_classes, **kwargs)
