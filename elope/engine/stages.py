"""The stage rules of the recipe (Sec. 5-6): which stage needs which, what each trains, and the structural
changes a stage makes to the model.

1. ``classifier`` trains everything but the localization module on whole images;
2. ``localizer`` trains the localization module alone (the rest frozen, in eval mode), initialised from
   the trained stem and first stage;
3. ``crop`` trains the classifier on the module's crops (``stages.crop.init``: ``fresh`` or ``continue``);
4. ``weighted`` switches on the learned weights of Eq. (4) and finetunes.
"""

from __future__ import annotations

import torch
from torch import nn

from elope.config import STAGES, Config, StageConfig
from elope.engine.run import Run
from elope.failures import TrainingError
from elope.nn.losses import LOSSES, EmbeddingLoss
from elope.nn.model import ELoPE
from elope.nn.pooling import GlobalKMaxPool2d
from elope.nn.weights import load_weights
from elope.spec import ModelSpec

__all__ = [
    "REQUIRES",
    "attach_paired_localizer",
    "begin_stage",
    "enable_weighted_pooling",
    "init_localizer_from_backbone",
    "is_batch_norm",
    "make_criterion",
    "make_model",
    "make_model_and_loss",
    "make_optimizer",
    "make_scheduler",
    "plan_stages",
    "restart_classifier",
    "set_train_mode",
    "trainable",
]


# Stages each stage needs to have been completed before it (in this run folder).
REQUIRES = {
    "classifier": (),
    "localizer": ("classifier",),
    "crop": ("localizer",),
    "weighted": ("classifier",),
}


def plan_stages(
    completed: list[str], wanted: list[str], in_progress: str | None, localizer: bool = True
) -> list[str]:
    """Stages to run now, in order, checked against what the run folder already holds.

    Without a localization module (``localizer=False``) the crop stage needs only the classifier: it then
    fine-tunes on the whole image (the control row of ``elope ablate``).
    """
    todo = [s for s in STAGES if s == in_progress or (s in wanted and s not in completed)]
    done = list(completed)
    for stage in todo:
        later = [c for c in done if STAGES.index(c) > STAGES.index(stage)]
        if later:
            raise TrainingError(
                f"stage {stage!r} cannot run after {later} in the same run folder; use a new --out"
            )
        needs = ("classifier",) if stage == "crop" and not localizer else REQUIRES[stage]
        missing = [r for r in needs if r not in done]
        if missing:
            raise TrainingError(
                f"stage {stage!r} needs the {missing[0]!r} stage first (not done in this run folder); "
                f"add it to --stages"
            )
        done.append(stage)
    return todo


def is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def set_train_mode(run: Run, stage: str) -> None:
    """Modes and ``requires_grad`` of a stage: only what the stage trains is in train mode and trainable."""
    model = run.model
    train_localizer = stage == "localizer"
    model.train(not train_localizer)
    for p in model.parameters():
        p.requires_grad_(not train_localizer)
    if model.localizer is not None:
        model.localizer.train(train_localizer)
        for p in model.localizer.parameters():
            p.requires_grad_(train_localizer)
    if run.criterion is not None:
        run.criterion.train(not train_localizer)
    if run.cfg.train.freeze_bn:
        for m in model.modules():
            if is_batch_norm(m):
                m.eval()


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(params: list[nn.Parameter], s: StageConfig) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay on every trained parameter (Sec. 6)."""
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, s: StageConfig) -> torch.optim.lr_scheduler.StepLR:
    """lr × ``lr_decay`` every ``lr_step`` epochs (Sec. 6: ÷10 every 30 epochs)."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=s.lr_step, gamma=s.lr_decay)


def begin_stage(run: Run, stage: str) -> None:
    """Structural changes a stage makes to the model (before any state is loaded into it)."""
    if stage == "localizer":
        init_localizer_from_backbone(run.model)
    if stage == "crop" and run.cfg.stages.crop.init == "fresh":
        restart_classifier(run)
    if stage == "weighted" and not run.model.config.get("weighted"):
        enable_weighted_pooling(run.model)


def restart_classifier(run: Run) -> None:
    """``stages.crop.init: fresh``: backbone, embedding, classifier and class means as a new run would
    draw them (the backbone's initial, e.g. ImageNet, weights), the localization module kept.

    The authors' release trains the crop-stage classifier this way (``elope.lua`` with
    ``--localization_module`` builds a new model from ``--backbone``, ``setupModel.lua`` lines 67-108).
    """
    fresh_model, fresh_criterion = make_model_and_loss(run.cfg, len(run.classes), run.model.spec)
    state = {k: v for k, v in fresh_model.state_dict().items() if not k.startswith("localizer.")}
    missing = [k for k in run.model.state_dict() if k not in state and not k.startswith("localizer.")]
    if missing:
        raise TrainingError(f"cannot restart the classifier: {missing[:3]} missing in a fresh model")
    run.model.load_state_dict(state, strict=False)
    if run.criterion is not None and fresh_criterion is not None:
        run.criterion.load_state_dict(fresh_criterion.state_dict())


def make_model(cfg: Config, num_classes: int, spec: ModelSpec) -> ELoPE:
    """The recipe's model on the CPU: ``model.*`` of the config with ``spec`` (:func:`elope.engine.run_spec.
    run_spec`), the localization module attached by :func:`attach_paired_localizer`, then ``model.weights``
    loaded."""
    m = cfg.model
    model = ELoPE(
        m.backbone,
        num_classes,
        spec,
        k=m.k,
        embedding_dim=m.embedding_dim,
        pooling=m.pooling,
        localizer=False,
        pretrained=m.pretrained,
    )
    if m.localizer:
        attach_paired_localizer(model)
    if m.weights is not None:
        load_weights(model, m.weights)
    return model


def attach_paired_localizer(model: ELoPE) -> None:
    """Attach the localization module with its head drawn from a forked random stream: with or without
    the module, every other random number of a run (class means, augmentation, data order) is the same,
    so rows of an ablation that share a seed also share their classifier stage (paired comparisons)."""
    with torch.random.fork_rng(devices=[]):
        model.add_localizer()


def make_criterion(cfg: Config, num_classes: int) -> EmbeddingLoss | None:
    """The class-mean loss ``loss.variant`` names (:data:`elope.nn.losses.LOSSES`), None for ``none``."""
    lo = cfg.loss
    if lo.variant == "none":
        return None
    return LOSSES[lo.variant](
        num_classes,
        cfg.model.embedding_dim,
        lo.alpha,
        lo.gamma,
        lo.margin,
        renormalize_means=lo.renormalize_means,
    )


def make_model_and_loss(cfg: Config, num_classes: int, spec: ModelSpec) -> tuple[ELoPE, EmbeddingLoss | None]:
    """The recipe's model and class-mean loss (None for ``loss.variant: none``), on the CPU."""
    return make_model(cfg, num_classes, spec), make_criterion(cfg, num_classes)


def enable_weighted_pooling(model: ELoPE) -> None:
    """Stage 4: switch on the learned weights of Eq. (4), starting at ones (output unchanged)."""
    if not isinstance(model.pool, GlobalKMaxPool2d) or model.pooling != "gkmp":
        raise RuntimeError(f"weighted pooling needs pooling='gkmp', this model uses {model.pooling!r}")
    model.pool.enable_weights(device=model.classifier.weight.device)


def init_localizer_from_backbone(model: ELoPE) -> None:
    """Stage 2: initialise the localization module from the (trained) stem and first stage (Sec. 5).

    The 3×3 head keeps its own initialisation.
    """
    if model.localizer is None:
        raise RuntimeError("this model has no localization module (built with localizer=False)")
    source = model.features.state_dict()
    target = model.localizer.stem.state_dict()
    missing = [key for key in target if key not in source or source[key].shape != target[key].shape]
    if missing:
        raise RuntimeError(
            f"cannot initialise the localization module from the backbone: {missing[:5]} differ"
        )
    model.localizer.stem.load_state_dict({key: source[key] for key in target})
