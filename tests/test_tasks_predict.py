"""``elope predict``: top classes and boxes for image files, one pass per image (Sec. 5, Fig. 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from elope.commands.predict import predict_command
from elope.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from elope.nn.model import ELoPE
from elope.runs.model_folder import save_model
from elope.spec import ModelSpec
from elope.tasks.predict import collect_images, predict_paths

CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder without training: a random resnet18 ELoPE at 64 px, saved as `elope train` would."""
    torch.manual_seed(0)
    model = ELoPE("resnet18", len(CLASSES), embedding_dim=16, spec=ModelSpec(image_size=64, tau=0.3))
    run = tmp_path_factory.mktemp("run")
    meta = {"classes": CLASSES}
    save_model(model.eval(), run / "model", meta)
    return run


def _write(path: Path, w: int, h: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    _write(root / "a.png", 48, 32, 1)
    _write(root / "sub" / "b.JPG", 40, 72, 2)
    _write(root / "sub" / "a.jpg", 64, 64, 3)  # same stem as a.png: visualisations must not collide
    (root / "notes.txt").write_text("not an image")
    return root


def test_collect_images_recurses_and_filters(images: Path):
    found = collect_images([images])
    assert [p.relative_to(images).as_posix() for p in found] == ["a.png", "sub/a.jpg", "sub/b.JPG"]
    assert collect_images([images / "notes.txt"]) == [images / "notes.txt"]  # named explicitly: taken
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        collect_images([images / "missing.png"])


def test_predict_paths_classes_scores_boxes_and_pngs(run_dir: Path, images: Path, tmp_path: Path):
    vis = tmp_path / "vis"
    results = predict_paths(run_dir, [images], top=2, save_vis=vis)
    assert len(results) == 3
    written = sorted(p.name for p in vis.iterdir())
    assert len(written) == 3 and len(set(written)) == 3  # a.png and sub/a.jpg do not overwrite each other
    for item in results:
        assert set(item) >= {"path", "classes", "box", "size"}
        w, h = item["size"]
        with Image.open(item["path"]) as im:
            assert [w, h] == list(im.size)
        assert len(item["classes"]) == 2
        scores = [c["score"] for c in item["classes"]]
        assert scores == sorted(scores, reverse=True) and 0.0 <= sum(scores) <= 1.0 + 1e-6
        for c in item["classes"]:
            assert CLASSES[c["index"]] == c["class"]
        x1, y1, x2, y2 = item["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        png = Path(item["vis"])
        assert png.parent == vis and png.stat().st_size > 0
        with Image.open(png) as im:
            assert im.format == "PNG" and min(im.size) >= 100


def test_predict_matches_model_predict_on_the_original_image(run_dir: Path, images: Path):
    from elope.runs.model_folder import load_model

    model, _ = load_model(run_dir / "model")
    path = images / "sub" / "b.JPG"
    [item] = predict_paths(run_dir, [path], top=3)
    # the crop source: the original resized to 2 × the input (128×128), normalised
    with Image.open(path) as im:
        x = eval_transform(128, IMAGENET_MEAN, IMAGENET_STD)(im.convert("RGB")).as_subclass(torch.Tensor)
    assert x.shape == (3, 128, 128)
    ref = model.predict(x[None], top=3)
    assert [c["index"] for c in item["classes"]] == ref.classes[0].tolist()
    assert [c["score"] for c in item["classes"]] == pytest.approx(ref.scores[0].tolist(), abs=1e-5)
    scale = torch.tensor([40 / 128, 72 / 128] * 2)  # reported in pixels of the 40×72 original
    assert item["box"] == pytest.approx((ref.boxes[0] * scale).tolist(), abs=1e-4)


def test_box_is_in_pixels_of_the_original_image(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A heatmap hot in its top-right quarter gives the top-right quarter of the *original* image (Sec. 5)."""
    from elope.nn.localization import LocalizationModule

    heat = torch.zeros(1, 1, 14, 14)
    heat[..., :7, 7:] = 1.0
    monkeypatch.setattr(LocalizationModule, "forward", lambda self, x: heat.expand(x.shape[0], -1, -1, -1))
    path = _write(tmp_path / "wide.png", 140, 84)
    [item] = predict_paths(run_dir, [path])
    assert item["box"] == pytest.approx([70.0, 0.0, 140.0, 42.0])


def test_top_is_capped_at_the_number_of_classes(run_dir: Path, images: Path):
    [item] = predict_paths(run_dir, [images / "a.png"], top=10)
    assert sorted(c["index"] for c in item["classes"]) == [0, 1, 2]


def test_cli_listing(run_dir: Path, images: Path):
    result = CliRunner().invoke(predict_command, ["--run", str(run_dir), str(images / "a.png"), "--top", "2"])
    assert result.exit_code == 0, result.output
    assert "a.png" in result.stdout and "box [" in result.stdout
    assert sum(name in result.stdout for name in CLASSES) == 2


def test_unreadable_image_is_reported_and_exit_code_is_1(run_dir: Path, images: Path):
    bad = images / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    result = CliRunner().invoke(predict_command, ["--run", str(run_dir), str(images), "--json", "--top", "1"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)  # the JSON list holds every image, the unreadable one with its error
    assert isinstance(data, list) and len(data) == 4
    assert all(len(d["classes"]) == 1 and len(d["box"]) == 4 for d in data if "error" not in d)
    [err] = [d for d in data if "error" in d]
    assert err["path"] == str(bad)
    assert str(bad) in result.stderr
    assert sum("classes" in d for d in data) == 3  # the others still predicted


def test_not_a_run_folder(tmp_path: Path, images: Path):
    result = CliRunner().invoke(predict_command, ["--run", str(tmp_path), str(images)])
    assert result.exit_code != 0
    assert "model.json not found" in result.output and "elope train" in result.output
