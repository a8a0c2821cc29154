"""``elope evaluate``: top-1, per-class, nearest-class-mean and localization (Table 4) metrics of a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from fake_datasets import make_fake_cub, make_fake_folder
from safetensors.torch import save_file

from elope.commands.evaluate import evaluate_command
from elope.data import build_dataset, eval_transform
from elope.evaluation.metrics import (
    EvalAccumulator,
    confused_pairs,
    iou_hits,
    nearest_class_mean,
    per_class_accuracy,
)
from elope.evaluation.model_predictor import ModelPredictor
from elope.evaluation.outputs import BatchOutputs, Want
from elope.nn.localization import heatmap_to_box, mean_heatmap
from elope.nn.model import ELoPE
from elope.runs import CLASS_MEANS_FILE, load_run
from elope.runs.model_folder import save_model
from elope.spec import ModelSpec
from elope.tasks.evaluate import evaluate_run

NUM_CLASSES, TEST_PER_CLASS, INPUT, EMB = 3, 2, 64, 8
KEYS = {"top1", "ncm_top1", "loc_iou50", "mean_map_iou50", "num_images", "per_class"}


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake CUB-200-2011 tree with boxes: 3 classes × (1 train + 2 test) images of 48×32 px."""
    return make_fake_cub(
        tmp_path_factory.mktemp("cub"), NUM_CLASSES, train_per_class=1, test_per_class=TEST_PER_CLASS
    )


@pytest.fixture(scope="module")
def classes(cub_root: Path) -> list[str]:
    return list(build_dataset("cub", cub_root, "test").classes)


def make_run(
    path: Path,
    classes: list[str],
    root: Path,
    *,
    means: torch.Tensor | None = None,
    dataset: str = "cub",
) -> Path:
    """A run folder as `elope train` leaves it, without training: random resnet18 at 64 px (+ class means)."""
    torch.manual_seed(0)
    model = ELoPE("resnet18", len(classes), embedding_dim=EMB, spec=ModelSpec(image_size=INPUT, tau=0.3))
    meta = {"classes": classes, "dataset": dataset}
    meta["root"] = str(root)
    save_model(model.eval(), path / "model", meta)
    save_model(model.eval(), path / "teacher", meta)  # stands in for the stage-1 classifier
    if means is not None:
        save_file({"means": means.contiguous()}, str(path / "model" / CLASS_MEANS_FILE))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, classes: list[str], cub_root: Path) -> Path:
    means = torch.nn.functional.normalize(
        torch.randn(NUM_CLASSES, EMB, generator=torch.Generator().manual_seed(1))
    )
    return make_run(tmp_path_factory.mktemp("run"), classes, cub_root, means=means)


# ---------------------------------------------------------------------------------- metric functions
def test_iou_hits_counts_the_boundary_of_table_4():
    gt = torch.tensor([[0.0, 0.0, 10.0, 20.0]] * 4 + [[float("nan")] * 4])
    pred = torch.tensor(
        [
            [0.0, 0.0, 10.0, 20.0],  # IoU 1
            [0.0, 0.0, 10.0, 10.0],  # IoU exactly 0.5: counts as correct
            [0.0, 0.0, 10.0, 9.0],  # IoU 0.45
            [20.0, 20.0, 30.0, 30.0],  # disjoint
            [0.0, 0.0, 10.0, 20.0],  # no ground truth: not counted
        ]
    )
    hits, valid = iou_hits(pred, gt)
    assert hits.tolist() == [True, True, False, False, False]
    assert valid.tolist() == [True, True, True, True, False]


def test_nearest_class_mean_compares_normalised_vectors():
    means = torch.tensor([[1.0, 0.0], [0.0, 5.0], [-1.0, 0.0]])
    emb = torch.tensor([[0.2, 0.3], [3.0, 0.1], [-0.1, -0.01]])
    # un-normalised, [0.2, 0.3] would be nearest to [1, 0]; on the unit sphere it is nearest to [0, 1]
    assert torch.cdist(emb[:1], means).argmin().item() == 0
    assert nearest_class_mean(emb, means).tolist() == [1, 0, 2]


def test_per_class_accuracy_and_confused_pairs_by_hand():
    confusion = torch.tensor([[2, 1, 0], [3, 1, 0], [0, 0, 0]])
    names = ["a", "b", "c"]
    assert per_class_accuracy(confusion, names) == {"a": pytest.approx(2 / 3), "b": 0.25, "c": None}
    assert confused_pairs(confusion, names) == [
        {"true": "b", "predicted": "a", "count": 3},
        {"true": "a", "predicted": "b", "count": 1},
    ]
    assert confused_pairs(confusion, names, k=1) == [{"true": "b", "predicted": "a", "count": 3}]


def test_accumulator_over_batches():
    acc = EvalAccumulator(3, with_ncm=True, with_boxes=True)
    box = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    far = torch.tensor([[10.0, 10.0, 12.0, 12.0]])
    labels, preds, ncm = torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([0, 1])
    acc.update(labels, preds, ncm, torch.cat([box, far]), None, torch.cat([box, box]))
    acc.update(torch.tensor([2]), torch.tensor([2]), torch.tensor([0]), box, box, box)
    r = acc.result(["a", "b", "c"])
    assert (
        r["num_images"] == 3 and r["top1"] == pytest.approx(2 / 3) and r["ncm_top1"] == pytest.approx(2 / 3)
    )
    assert r["loc_iou50"] == pytest.approx(2 / 3) and r["num_boxes"] == 3
    assert r["per_class"] == {"a": 1.0, "b": 0.0, "c": 1.0} and r["mean_per_class"] == pytest.approx(2 / 3)
    assert r["confused_pairs"] == [{"true": "b", "predicted": "c", "count": 1}]


# ------------------------------------------------------------------------------------ the pipeline
def test_predict_batch_is_model_predict_with_the_embedding_kept(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    from elope.runs.model_folder import load_model

    model, _ = load_model(run_dir / "model")
    teacher, _ = load_model(run_dir / "teacher")
    images = torch.randn(3, 3, 48, 80, generator=torch.Generator().manual_seed(0))
    ref = model.predict(images, top=3)
    _, emb = model(model.crop(images)[0], return_embeddings=True)
    whole = torch.nn.functional.interpolate(images, size=(INPUT, INPUT), mode="bilinear", antialias=True)
    heat = mean_heatmap(teacher.forward_features(whole))

    seen: list[tuple[int, ...]] = []
    features = teacher.forward_features
    monkeypatch.setattr(teacher, "forward_features", lambda x: seen.append(tuple(x.shape)) or features(x))
    predictor = ModelPredictor(model, [], teacher=teacher)
    out = predictor.predict_batch(images, Want(top=3, embeddings=True))
    assert out.predictions.tolist() == ref.classes[:, 0].tolist()
    assert out.top_classes.tolist() == ref.classes.tolist()
    assert torch.allclose(out.top_scores, ref.scores)
    assert torch.equal(out.boxes, ref.boxes)
    assert torch.allclose(out.embeddings, emb)  # the embedding of the crop the softmax saw
    # Table 4 baseline: the TEACHER's mean feature map of the whole image at its input size, boxes in
    # pixels of the image given
    assert seen == [(3, 3, INPUT, INPUT)]
    assert torch.equal(out.mean_map_boxes, heatmap_to_box(heat, 0.3, (48, 80)))
    # the maps the boxes came from, and the teacher's class of the same whole image (same backbone pass)
    assert torch.equal(out.mean_map_heatmaps, heat) and torch.equal(out.heatmaps, model.localize(images)[1])
    assert out.mean_map_predictions.tolist() == teacher(whole).argmax(dim=1).tolist()


def _fake_outputs(monkeypatch: pytest.MonkeyPatch, labels: list[int], gt: torch.Tensor, means: torch.Tensor):
    """Replace the model's outputs by known ones, image by image in dataset order.

    image 0: wrong class (label + 1); its box and mean-map box miss (disjoint); NCM wrong.
    image 1: right class; localizer box misses, mean-map box hits; NCM right.
    image 2: right class, but the teacher's class of the whole image is wrong (its mean-map box hits).
    others: right class, both boxes equal the ground truth, NCM right.
    """
    n, c = len(labels), means.shape[0]
    preds = torch.tensor(labels)
    preds[0] = (labels[0] + 1) % c
    ncm = torch.tensor(labels)
    ncm[0] = (labels[0] + 2) % c
    miss = torch.tensor([1000.0, 1000.0, 1001.0, 1001.0])
    boxes, mm_boxes = gt.clone(), gt.clone()
    boxes[0] = boxes[1] = mm_boxes[0] = miss
    teacher_preds = torch.tensor(labels)
    teacher_preds[2] = (labels[2] + 1) % c
    state = {"i": 0}

    def fake(self: ModelPredictor, images: torch.Tensor, want: Want) -> BatchOutputs:
        i, b = state["i"], images.shape[0]
        state["i"] += b
        assert want.embeddings and self.teacher is not None and self.tta is None and i + b <= n
        top_classes = preds[i : i + b, None]
        return BatchOutputs(
            preds[i : i + b],
            top_classes,
            torch.ones(b, 1),
            boxes[i : i + b],
            3.0 * means[ncm[i : i + b]],
            mm_boxes[i : i + b],
            mean_map_predictions=teacher_preds[i : i + b],
        )

    monkeypatch.setattr(ModelPredictor, "predict_batch", fake)


def test_metrics_with_known_model_outputs(run_dir: Path, cub_root: Path, classes: list[str], monkeypatch):
    ds = build_dataset("cub", cub_root, "test", transform=eval_transform(2 * INPUT))  # the crop source
    labels = list(ds.targets)
    gt = torch.stack([ds[i][2] for i in range(len(ds))])
    assert ds.has_boxes and torch.isfinite(gt).all()
    # boxes come in the frame of the crop source (2 × the input): image id 2 (the first test image) is
    # (2, 2.5, 12, 8.75) in 48×32 pixels
    assert gt[0].tolist() == pytest.approx([2 * 128 / 48, 2.5 * 4, 12 * 128 / 48, 8.75 * 4])
    from safetensors.torch import load_file

    means = load_file(str(run_dir / "model" / CLASS_MEANS_FILE))["means"]
    _fake_outputs(monkeypatch, labels, gt, means)

    r = evaluate_run(run_dir, batch_size=2, progress=False, mean_map=True)
    n = len(labels)
    assert r["num_images"] == n == NUM_CLASSES * TEST_PER_CLASS
    assert r["top1"] == pytest.approx((n - 1) / n)
    assert r["ncm_top1"] == pytest.approx((n - 1) / n)
    assert r["loc_iou50"] == pytest.approx((n - 2) / n)
    assert r["mean_map_iou50"] == pytest.approx((n - 1) / n)
    # the field's metrics: GT-known is Table 4's; top-1 loc also needs the class (module: image 0 wrong,
    # image 1 missed; mean map: image 0 missed, image 2 the teacher's class wrong); no heatmaps, no V2
    module, mm = r["localization"]["module"], r["localization"]["mean_map"]
    assert module["gt_known"] == r["loc_iou50"] and mm["gt_known"] == r["mean_map_iou50"]
    assert module["top1_loc"] == pytest.approx((n - 2) / n) and mm["top1_loc"] == pytest.approx((n - 2) / n)
    assert module["maxboxacc_v2"] is None and mm["maxboxacc_v2"] is None
    wrong = classes[labels[0]]
    expected = {name: 1.0 for name in classes}
    expected[wrong] = (TEST_PER_CLASS - 1) / TEST_PER_CLASS
    assert r["per_class"] == pytest.approx(expected)
    assert r["confused_pairs"] == [
        {"true": wrong, "predicted": classes[(labels[0] + 1) % NUM_CLASSES], "count": 1}
    ]


def test_evaluate_real_model_json_keys_and_types(run_dir: Path, classes: list[str], tmp_path: Path):
    out = tmp_path / "m" / "metrics.json"
    res = CliRunner().invoke(
        evaluate_command, ["--run", str(run_dir), "--batch-size", "4", "--json", str(out), "--mean-map"]
    )
    assert res.exit_code == 0, res.output
    assert "top-1 accuracy" in res.stdout and "localization IoU>=0.5" in res.stdout
    r = json.loads(out.read_text())
    assert set(r) >= KEYS and {"mean_per_class", "confused_pairs", "split"} <= set(r)
    assert r["split"] == "test" and r["num_images"] == NUM_CLASSES * TEST_PER_CLASS
    for key in ("top1", "ncm_top1", "loc_iou50", "mean_map_iou50", "mean_per_class"):
        assert isinstance(r[key], float) and 0.0 <= r[key] <= 1.0, key
    assert list(r["per_class"]) == classes
    assert "MaxBoxAccV2" in res.stdout and "tau on trainval" in res.stdout
    for name, iou50 in (("module", r["loc_iou50"]), ("mean_map", r["mean_map_iou50"])):
        m = r["localization"][name]
        assert m["gt_known"] == iou50 and 0.0 <= m["top1_loc"] <= m["gt_known"]
        v2 = m["maxboxacc_v2"]
        assert v2["selection_split"] == "trainval" and set(v2["per_iou"]) == {"0.3", "0.5", "0.7"}
        assert v2["images"] == NUM_CLASSES * TEST_PER_CLASS and v2["selection_images"] == NUM_CLASSES
        accuracies = [v["accuracy"] for v in v2["per_iou"].values()]
        assert v2["value"] == pytest.approx(sum(accuracies) / 3)
        assert all(0.0 <= v["tau"] < 1.0 and 0.0 <= v["selection"] <= 1.0 for v in v2["per_iou"].values())
    assert all(isinstance(p["count"], int) and p["true"] != p["predicted"] for p in r["confused_pairs"])


def test_maxboxacc_thresholds_are_chosen_on_another_split(run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The test split is read once (the evaluation pass); MaxBoxAccV2's thresholds come from a pass over the
    training split; the reported values are the test split's curve read at them."""
    from elope.evaluation import localization_metrics as lm
    from elope.runs.loaded import LoadedRun

    loaded: list[str] = []
    real_load = LoadedRun.load_dataset
    monkeypatch.setattr(
        LoadedRun,
        "load_dataset",
        lambda self, split, *a, **k: loaded.append(split) or real_load(self, split, *a, **k),
    )
    calls: list[tuple[lm.BoxAccCurve, lm.BoxAccCurve]] = []
    real_v2 = lm.max_box_acc_v2
    monkeypatch.setattr(lm, "max_box_acc_v2", lambda s, e: calls.append((s, e)) or real_v2(s, e))
    r = evaluate_run(run_dir, progress=False, mean_map=True)
    assert loaded == ["test", "trainval"] and len(calls) == 2  # the module, the mean map
    for (selection, evaluated), name in zip(calls, ("module", "mean_map")):
        assert (selection.images, evaluated.images) == (NUM_CLASSES, NUM_CLASSES * TEST_PER_CLASS)
        v2 = r["localization"][name]["maxboxacc_v2"]
        for i, level in enumerate(selection.levels):
            chosen = selection.thresholds.index(v2["per_iou"][str(level)]["tau"])
            assert v2["per_iou"][str(level)]["accuracy"] == float(evaluated.accuracy()[i, chosen])

    loaded.clear()
    off = evaluate_run(run_dir, progress=False, mean_map=True, maxboxacc=False)
    assert loaded == ["test"] and off["localization"]["module"]["maxboxacc_v2"] is None
    assert off["localization"]["module"]["gt_known"] == r["localization"]["module"]["gt_known"]


def test_the_selection_split_is_never_the_evaluated_one():
    from types import SimpleNamespace

    from elope.tasks.evaluate_localization import selection_split

    def run(splits: dict | None) -> Any:
        return SimpleNamespace(meta={} if splits is None else {"splits": splits})

    with_val = run({"train": {"split": "train"}, "val": {"split": "val"}})
    assert selection_split(with_val, "test") == "val" and selection_split(with_val, "val") == "train"
    without = run({"train": {"split": "trainval"}, "val": None})
    assert selection_split(without, "test") == "trainval" and selection_split(run(None), "test") == "trainval"
    # only the training split itself, evaluated, has no other split to choose on
    assert selection_split(without, "trainval") == "trainval"


def test_no_class_means_gives_null_ncm(tmp_path: Path, classes: list[str], cub_root: Path):
    run = make_run(tmp_path / "run", classes, cub_root, means=None)
    res = CliRunner().invoke(evaluate_command, ["--run", str(run), "--json", "-"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)  # stdout holds only the JSON
    assert r["ncm_top1"] is None and r["top1"] is not None


def test_dataset_without_boxes_gives_null_localization(tmp_path: Path):
    root = make_fake_folder(tmp_path / "folder", ("cat", "dog"), {"train": 1, "test": 2})
    run = make_run(tmp_path / "run", ["cat", "dog"], tmp_path / "elsewhere", dataset="cub")
    r = evaluate_run(run, dataset="folder", root=root, progress=False)  # overrides the run's dataset
    assert r["loc_iou50"] is None and r["mean_map_iou50"] is None and r["num_boxes"] == 0
    assert r["localization"] is None
    assert r["num_images"] == 4 and r["dataset"] == "folder"


def test_unreadable_image_fails_with_its_path_or_is_skipped(
    tmp_path: Path, cub_root: Path, classes: list[str]
):
    root = tmp_path / "copy"
    shutil.copytree(cub_root, root)
    ds = build_dataset("cub", root, "test")
    bad = Path(ds.samples[4][0])
    bad.write_bytes(b"not an image")
    run = make_run(tmp_path / "run", classes, root)

    res = CliRunner().invoke(evaluate_command, ["--run", str(run)])
    assert res.exit_code == 1 and str(bad) in res.output and "--skip-unreadable" in res.output

    r = evaluate_run(run, skip_unreadable=True, progress=False)
    assert r["num_images"] == len(ds) - 1  # left out, not replaced by another image
    assert [s["path"] for s in r["skipped"]] == [str(bad)]


def test_errors_name_the_path_and_the_fix(tmp_path: Path, cub_root: Path, classes: list[str]):
    res = CliRunner().invoke(evaluate_command, ["--run", str(tmp_path)])
    assert res.exit_code == 1
    assert "model.json not found" in res.output and "elope train" in res.output

    run = make_run(tmp_path / "two", classes[:2], cub_root)
    res = CliRunner().invoke(evaluate_command, ["--run", str(run)])
    assert res.exit_code == 1 and "trained on 2" in res.output

    bad_means = make_run(tmp_path / "means", classes, cub_root, means=torch.zeros(NUM_CLASSES + 1, EMB))
    with pytest.raises(ValueError, match=r"class_means\.safetensors"):
        evaluate_run(bad_means, progress=False)


def test_example_sheet_draws_both_boxes_of_evenly_spread_images(run_dir: Path, monkeypatch, tmp_path: Path):
    from elope.tasks import examples

    drawn: dict[str, Any] = {}
    real_sheet = examples.save_example_sheet

    def capture(path: Path, items: list, **kwargs: Any) -> Path:
        drawn["items"] = items
        return real_sheet(path, items, **kwargs)

    monkeypatch.setattr(examples, "save_example_sheet", capture)
    res = CliRunner().invoke(evaluate_command, ["--run", str(run_dir), "--examples", "3"])
    assert res.exit_code == 0, res.output
    sheet = run_dir / "examples_test.png"
    assert sheet.is_file() and "examples drawn to" in res.output
    from PIL import Image

    assert Image.open(sheet).size == (1000, 500)  # 3 images × 2 panels on a 4-column grid of 2.5-inch cells
    items = drawn["items"]
    assert len(items) == 6 and "mean map" in items[0].title and "module" in items[1].title
    run = load_run(run_dir)
    teacher = run.load_teacher()
    # the images are the crop sources (2 × the input), the mean-map panels come from the teacher
    ds = build_dataset("cub", run.meta["root"], "test", transform=eval_transform(2 * INPUT))
    for cell, index in zip(items[::2], (0, 2, 5)):  # 6 test images: first, round(2.5) = 2, last
        image, _, gt = ds[index]
        assert torch.equal(cell.image, image) and torch.allclose(cell.gt_box, torch.as_tensor(gt).float())
        with torch.no_grad():
            small = torch.nn.functional.interpolate(
                image[None], size=(INPUT, INPUT), mode="bilinear", antialias=True
            )
            expected = heatmap_to_box(
                mean_heatmap(teacher.forward_features(small)), 0.3, (2 * INPUT, 2 * INPUT)
            )
        assert torch.allclose(cell.box, expected[0])
    with torch.no_grad():
        module_box, _ = run.model.localize(ds[5][0][None])
    assert torch.allclose(items[5].box, module_box[0])
