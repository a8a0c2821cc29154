"""Score the development localizers of ``suite_dev.py`` on their **training** split (no test image read).

For every development run folder (one distribution, one stage-2 variant): the module's heatmaps and the
teacher's mean maps of every training image (crop source, no augmentation), then for each box rule
(``all``, ``peak``), heatmap upsampling and τ the share of boxes with IoU ≥ 0.5; and, for the criteria that
need class labels only, per τ: the teacher's accuracy and mean log-probability of the true class on the
crops, and two separability scores of the crops' features (leave-one-out nearest class mean accuracy and the
between / within scatter ratio) in the ImageNet backbone (the crop stage's starting point) and in the
teacher. Writes ``OUT/scores.json``.

    python -m elope.research.experiments.suite_dev_scores --out runs/suite-dev
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from elope.evaluation.metrics import iou_hits
from elope.nn.backbones import build_backbone
from elope.nn.crop import crop_and_resize
from elope.nn.localization import heatmap_to_box, mean_heatmap
from elope.runs.loaded import load_run

TAUS = [round(0.05 * i, 2) for i in range(2, 19)]
LABEL_TAUS = [round(0.1 * i, 1) for i in range(1, 10)]
RULES = ("peak",)  # the label criteria, for the box rule that the boxes favour
# The teacher's own crops and features (its accuracy, log-probability, NCM, scatter) chose the smallest tau on
# the first development set (it has learned its training images whole); after that set only the ImageNet
# features are scored.
TEACHER_CRITERIA = False


def loo_ncm(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out nearest-class-mean accuracy (cosine) of l2-normalised features."""
    f = F.normalize(features, dim=1)
    classes = int(labels.max()) + 1
    sums = torch.zeros(classes, f.shape[1]).index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=classes).float()
    own = sums[labels] - f
    means = sums[None].expand(len(f), -1, -1).clone()
    means[torch.arange(len(f)), labels] = own
    cnt = counts[None].expand(len(f), -1).clone()
    cnt[torch.arange(len(f)), labels] -= 1
    means = F.normalize(means / cnt[..., None].clamp_min(1), dim=2)
    scores = (means @ f[:, :, None])[..., 0]
    return float((scores.argmax(1) == labels).float().mean())


def fisher(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Between-class / within-class scatter (traces) of l2-normalised features."""
    f = F.normalize(features, dim=1)
    classes = int(labels.max()) + 1
    sums = torch.zeros(classes, f.shape[1]).index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=classes).float()
    class_part = float((sums.pow(2).sum(1) / counts.clamp_min(1)).sum())
    within = float(f.pow(2).sum()) - class_part
    between = class_part - float(sums.sum(0).pow(2).sum()) / len(f)
    return between / within


@torch.no_grad()
def box_rows(maps: torch.Tensor, mm: torch.Tensor, gts: torch.Tensor, size: int) -> dict:
    """IoU >= 0.5 and whole-image boxes of the module's maps and the mean maps, per rule, upsampling and τ."""
    rows = {}
    for kind, m in (("module", maps), ("mean_map", mm)):
        for rule in ("all", "peak"):
            for up in (False, True):
                key = f"{kind}/{rule}/{'up' if up else 'cells'}"
                row = {}
                for tau in TAUS:
                    b = heatmap_to_box(m, tau, size, upsample=up, rule=rule)
                    hits, valid = iou_hits(b, gts)
                    area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) / size**2
                    row[str(tau)] = {
                        "iou50": float(hits.sum() / valid.sum()),
                        "whole": float((area > 0.8).float().mean()),
                    }
                rows[key] = row
    return rows


def score_run(folder: Path) -> dict:
    run = load_run(folder)
    teacher = run.load_teacher()
    ds, _, _ = run.load_dataset("trainval")
    imagenet = build_backbone(run.model.backbone, pretrained=True).features.eval()
    loader = torch.utils.data.DataLoader(ds, batch_size=24)
    size = run.spec.crop_source
    maps, mm, gts, labels, images = [], [], [], [], []
    for x, y, box in loader:
        maps.append(run.model.localizer(x).float())
        mm.append(
            mean_heatmap(
                teacher.forward_features(
                    F.interpolate(x, size=run.spec.image_size, mode="bilinear", antialias=True)
                )
            ).float()
        )
        gts.append(box)
        labels.append(y)
        images.append(x)
    maps, mm, gts, labels = torch.cat(maps), torch.cat(mm), torch.cat(gts), torch.cat(labels)
    out = {"boxes": box_rows(maps, mm, gts, size), "labels": {}}
    contrast = 1 - (
        (maps - maps.amin((2, 3), True))
        / (maps.amax((2, 3), True) - maps.amin((2, 3), True)).clamp_min(1e-12)
    ).mean((1, 2, 3))
    out["contrast"] = float(contrast.mean())
    for rule in RULES:
        for tau in LABEL_TAUS:
            t_logits, t_feat, i_feat = [], [], []
            xs = torch.cat(images)
            for k in range(0, len(xs), 24):
                x = xs[k : k + 24]
                b = heatmap_to_box(maps[k : k + 24], tau, size, upsample=run.spec.heatmap_upsample, rule=rule)
                crops = crop_and_resize(x, b, run.spec.image_size)
                if TEACHER_CRITERIA:
                    fmap = teacher.forward_features(crops)
                    t_logits.append(teacher.classifier(teacher.embedding(teacher.pool(fmap))).float())
                    t_feat.append(fmap.mean((2, 3)))
                i_feat.append(imagenet(crops).mean((2, 3)))
            i_feat = torch.cat(i_feat)
            scores = {"imagenet_ncm": loo_ncm(i_feat, labels), "imagenet_fisher": fisher(i_feat, labels)}
            if TEACHER_CRITERIA:
                t_logits, t_feat = torch.cat(t_logits), torch.cat(t_feat)
                logp = t_logits.log_softmax(1)[torch.arange(len(labels)), labels]
                scores["teacher_acc"] = float((t_logits.argmax(1) == labels).float().mean())
                scores["teacher_logp"] = float(logp.mean())
                scores["teacher_ncm"] = loo_ncm(t_feat, labels)
                scores["teacher_fisher"] = fisher(t_feat, labels)
            out["labels"][f"{rule}/{tau}"] = scores
        print(folder, rule, "labels done", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="std-l20")
    args = parser.parse_args()
    path = args.out / "scores.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for dist_dir in sorted(p for p in args.out.iterdir() if p.is_dir()):
        for variant in args.variants.split(","):
            folder = dist_dir / variant
            key = f"{dist_dir.name}/{variant}"
            if key in results or not (folder / "checkpoints" / "localizer.pt").is_file():
                continue
            results[key] = score_run(folder)
            path.write_text(json.dumps(results, indent=1) + "\n")
            print(key, "scored", flush=True)


if __name__ == "__main__":
    main()
