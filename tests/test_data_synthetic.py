"""The procedural fine-grained set: layout, determinism, boxes, class design, difficulty knobs, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from elope.commands.data import data
from elope.data import build_dataset, check_dataset, write_synthetic
from elope.data.synthetic import DIFFICULTIES, MAX_CLASSES, Difficulty, resolve_difficulty, synthetic_classes


def _digest(root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sha.update(str(path.relative_to(root)).encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def test_layout_counts_and_metadata(synthetic_root: Path) -> None:
    report = check_dataset("synthetic", synthetic_root)
    assert report.ok, report.problems
    assert report.num_classes == 3
    assert report.splits == {"train": {"images": 12, "boxes": 12}, "test": {"images": 6, "boxes": 6}}
    meta = json.loads((synthetic_root / "elope_synthetic.json").read_text())
    assert meta["args"] == {"classes": 3, "train": 4, "test": 2, "size": 48, "seed": 0}
    dataset = build_dataset("synthetic", synthetic_root, "test")
    assert dataset.classes[0] == "001." + meta["classes"][0]["name"]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, synthetic_root: Path) -> None:
    again = write_synthetic(tmp_path / "again", classes=3, train=4, test=2, size=48, seed=0)
    other = write_synthetic(tmp_path / "other", classes=3, train=4, test=2, size=48, seed=1)
    assert _digest(again) == _digest(synthetic_root)
    assert _digest(other) != _digest(synthetic_root)


def test_boxes_are_exact_object_extents(synthetic_root: Path) -> None:
    dataset = build_dataset("synthetic", synthetic_root, "trainval")
    for i in range(len(dataset)):
        _, _, box = dataset[i]
        x1, y1, x2, y2 = box.tolist()
        assert 0 <= x1 < x2 <= 48 and 0 <= y1 < y2 <= 48
        assert all(float(v).is_integer() for v in (x1, y1, x2, y2))  # whole pixels
        assert 0.30 * 48 - 1 <= x2 - x1 <= 0.60 * 48 + 2  # 30-60 % of the width (+ edge pixels)
        assert (x2 - x1) * (y2 - y1) < 0.5 * 48 * 48  # never fills the frame: cropping matters


def test_object_pixels_lie_inside_the_box(tmp_path: Path) -> None:
    # Render the same image with and without the critter: every changed pixel lies inside the box.
    from elope.data import synthetic_draw

    spec = synthetic_classes(3, 0)[0]
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    background = synthetic_draw.background(64, rng_a)
    _, mark = synthetic_draw.critter(64, spec, rng_a)
    image, box = synthetic_draw.render(64, spec, rng_b)
    synthetic_draw.decoys(background, rng_a, mark)
    diff = np.any(np.asarray(image) != np.asarray(background), axis=2)
    ys, xs = np.nonzero(diff)
    x1, y1, x2, y2 = box
    assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
    assert xs.min() <= x1 + 1 and xs.max() >= x2 - 2 and ys.max() >= y2 - 2  # the box is tight


def test_classes_share_parts_and_differ_in_combinations() -> None:
    specs = synthetic_classes(10, 0)
    assert len({(s.head, s.wing, s.tail) for s in specs}) == 10
    assert len({s.head for s in specs}) < 10 and len({s.wing for s in specs}) < 10  # parts are shared
    assert synthetic_classes(10, 0) == specs and synthetic_classes(10, 1) != specs
    with pytest.raises(ValueError, match=str(MAX_CLASSES)):
        synthetic_classes(MAX_CLASSES + 1)


def test_refuses_to_overwrite_foreign_folders(tmp_path: Path) -> None:
    (tmp_path / "CUB_200_2011").mkdir()
    with pytest.raises(FileExistsError, match="not written by elope"):
        write_synthetic(tmp_path, classes=2, train=1, test=1, size=32, overwrite=True)


def test_cli_synth_and_force(tmp_path: Path) -> None:
    args = ["synth", "--out", str(tmp_path), "--classes", "2", "--train", "2", "--test", "1", "--size", "32"]
    result = CliRunner().invoke(data, args)
    assert result.exit_code == 0, result.output
    assert "wrote 6 images" in result.output and str(tmp_path / "CUB_200_2011") in result.output
    again = CliRunner().invoke(data, args)
    assert again.exit_code != 0 and "--force" in again.output
    assert CliRunner().invoke(data, [*args, "--force", "--seed", "3"]).exit_code == 0
    assert json.loads((tmp_path / "elope_synthetic.json").read_text())["args"]["seed"] == 3
    assert len(list((tmp_path / "CUB_200_2011" / "images").rglob("*.jpg"))) == 6


# --- difficulty knobs and the "fine" preset -------------------------------------------------------------


def _write_fine(root: Path, **knobs: object) -> Path:
    return write_synthetic(root, classes=3, train=4, test=2, size=96, seed=0, difficulty="fine", **knobs)


def _box_fractions(root: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    dataset = build_dataset("synthetic", root, "trainval")
    boxes = np.array([dataset[i][2].tolist() for i in range(len(dataset))])
    widths = (boxes[:, 2] - boxes[:, 0]) / size
    areas = widths * (boxes[:, 3] - boxes[:, 1]) / size
    return widths, areas


def test_default_rendering_is_pinned() -> None:
    # The pixels of one default image as the generator drew them before the difficulty knobs existed.
    from elope.data import synthetic_draw

    spec = synthetic_classes(3, 0)[1]
    image, box = synthetic_draw.render(48, spec, np.random.default_rng([0, 0, 1, 2]))
    digest = hashlib.sha256(np.asarray(image).tobytes()).hexdigest()
    assert digest == "ebbf9f8cc2d7f557ddf11a1e3130cc8eb1e4c17880cf9bc8a2de7ac2bd43fcd1"
    assert box == (13, 30, 33, 43)
    assert resolve_difficulty() == Difficulty() == DIFFICULTIES["default"]


def test_default_knobs_spelled_out_give_the_same_bytes(tmp_path: Path, synthetic_root: Path) -> None:
    explicit = write_synthetic(
        tmp_path / "explicit",
        classes=3,
        train=4,
        test=2,
        size=48,
        seed=0,
        difficulty="default",
        object_scale=(0.30, 0.60),
        part_scale=1.0,
        part_contrast=1.0,
        decoys=(2, 4),
        distractors=0,
        clutter=1.0,
    )
    assert _digest(explicit) == _digest(synthetic_root)
    meta = json.loads((synthetic_root / "elope_synthetic.json").read_text())
    assert meta["difficulty"] == {"preset": "default", **Difficulty().to_dict()}


def test_fine_preset_is_deterministic_and_recorded(tmp_path: Path, synthetic_root: Path) -> None:
    first, second = _write_fine(tmp_path / "a"), _write_fine(tmp_path / "b")
    assert _digest(first) == _digest(second)
    default = write_synthetic(tmp_path / "c", classes=3, train=4, test=2, size=96, seed=0)
    assert _digest(default) != _digest(first)
    meta = json.loads((first / "elope_synthetic.json").read_text())
    assert meta["args"] == {"classes": 3, "train": 4, "test": 2, "size": 96, "seed": 0}
    assert meta["difficulty"] == {"preset": "fine", **DIFFICULTIES["fine"].to_dict()}
    override = json.loads(
        (_write_fine(tmp_path / "d", part_contrast=0.3) / "elope_synthetic.json").read_text()
    )
    assert override["difficulty"]["part_contrast"] == 0.3
    assert override["difficulty"]["object_scale"] == list(DIFFICULTIES["fine"].object_scale)


@pytest.mark.parametrize("index", range(6))
def test_fine_boxes_enclose_exactly_the_critter_pixels(index: int) -> None:
    # Same generator state with and without pasting the critter layer: every pixel the critter changes lies
    # inside the box, and the changed pixels reach (nearly) every side of it. Decoys and the partial
    # distractors are drawn on the background, under the critter, so they never widen the box.
    from elope.data import synthetic_draw

    spec = synthetic_classes(24, 0)[index]
    fine = DIFFICULTIES["fine"]
    background, _ = synthetic_draw.scene(224, spec, np.random.default_rng([0, 1, index, 3]), fine)
    image, box = synthetic_draw.render(224, spec, np.random.default_rng([0, 1, index, 3]), fine)
    ys, xs = np.nonzero(np.any(np.asarray(image) != np.asarray(background), axis=2))
    x1, y1, x2, y2 = box
    assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
    assert xs.min() <= x1 + 1 and xs.max() >= x2 - 2 and ys.min() <= y1 + 2 and ys.max() >= y2 - 2


def test_object_scale_shrinks_the_boxes(tmp_path: Path, synthetic_root: Path) -> None:
    widths, areas = _box_fractions(_write_fine(tmp_path / "fine"), 96)
    low, high = DIFFICULTIES["fine"].object_scale
    assert widths.min() >= low - 1 / 96 and widths.max() <= high + 2 / 96
    assert areas.mean() < 0.08  # default: ~0.15 of the frame
    _, default_areas = _box_fractions(synthetic_root, 48)
    assert default_areas.mean() > 2 * areas.mean()
    tiny, _ = _box_fractions(_write_fine(tmp_path / "tiny", object_scale=(0.1, 0.12)), 96)
    assert tiny.max() <= 0.12 + 2 / 96


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"difficulty": "hard"}, "difficulty must be one of"),
        ({"object_scale": (0.5, 0.2)}, "object_scale"),
        ({"object_scale": (0.0, 0.2)}, "object_scale"),
        ({"object_scale": 0.3}, "object_scale must be a \\(low, high\\) pair"),
        ({"part_scale": 0.0}, "part_scale"),
        ({"part_scale": 1.5}, "part_scale"),
        ({"part_contrast": 0.0}, "part_contrast"),
        ({"decoys": (5, 2)}, "decoys"),
        ({"decoys": (1.5, 2)}, "decoys must be whole numbers"),
        ({"distractors": -1}, "distractors"),
        ({"distractors": 1.5}, "distractors must be a whole number"),
        ({"clutter": -0.1}, "clutter"),
        ({"clutter": 1.5}, "clutter"),
        ({"placement": "left"}, "placement must be one of"),
        ({"aspect": 5.0}, "aspect"),
        ({"lookalikes": 9}, "lookalikes"),
        ({"lookalikes": 1.5}, "lookalikes must be a whole number"),
    ],
)
def test_difficulty_knobs_are_validated(tmp_path: Path, knobs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_synthetic(tmp_path / "out", classes=2, train=1, test=1, size=32, **knobs)
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_recipe_section_and_cli_expose_the_knobs(tmp_path: Path) -> None:
    from elope.config import ConfigError, SyntheticConfig, load_config
    from elope.engine.preflight import check_model_settings

    section = SyntheticConfig(classes=2, train=2, test=1, size=64, difficulty="fine", decoys=[1, 2])
    root = write_synthetic(tmp_path / "recipe", **section.model_dump())
    meta = json.loads((root / "elope_synthetic.json").read_text())
    assert meta["difficulty"] == {"preset": "fine", **resolve_difficulty("fine", decoys=(1, 2)).to_dict()}
    with pytest.raises(ValueError, match="object_scale"):
        SyntheticConfig(object_scale=(0.6, 0.3))
    for bad_knob in ("difficulty=hard", "placement=left", "aspect=9"):  # before a run writes anything
        with pytest.raises((ConfigError, ValueError), match=bad_knob.split("=")[0]):
            check_model_settings(load_config("synthetic", overrides=[f"dataset.synthetic.{bad_knob}"]))

    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--classes", "2", "--train", "1", "--test", "1", "--size", "64"]
    result = CliRunner().invoke(data, [*args, "--difficulty", "fine", "--object-scale", "0.2", "0.25"])
    assert result.exit_code == 0, result.output
    assert "difficulty fine" in result.output
    recorded = json.loads((out / "elope_synthetic.json").read_text())["difficulty"]
    assert recorded["preset"] == "fine" and recorded["object_scale"] == [0.2, 0.25]
    assert recorded["part_contrast"] == DIFFICULTIES["fine"].part_contrast
    bad = CliRunner().invoke(data, [*args[:2], str(tmp_path / "bad"), *args[3:], "--part-scale", "3"])
    assert bad.exit_code == 2 and "'--part-scale': 3.0 is not in the range 0.2<=x<=1.0" in bad.output


# --- the generalization suite's knobs: placement, aspect, lookalikes ----------------------------------


def test_suite_presets_span_scale_clutter_placement_lookalikes_parts_and_aspect() -> None:
    from elope.data.synthetic_knobs import SUITE

    assert len(SUITE) >= 6 and all(DIFFICULTIES[name] == knobs for name, knobs in SUITE.items())
    scales = {knobs.object_scale for knobs in SUITE.values()}
    assert {(0.10, 0.25), (0.25, 0.45), (0.40, 0.70)} <= scales
    assert {k.placement for k in SUITE.values()} == {"anywhere", "centred"}
    assert any(k.lookalikes for k in SUITE.values()) and any(k.aspect != 1.0 for k in SUITE.values())
    assert len({(k.part_scale, k.part_contrast) for k in SUITE.values()}) > 1
    assert len({(k.clutter, k.decoys, k.distractors) for k in SUITE.values()}) > 1
    assert len(set(SUITE.values())) == len(SUITE)


def test_aspect_sets_the_frame_and_centred_placement_centres_the_critter(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "wide", 3, 6, 2, size=160, seed=0, difficulty="wide")
    dataset = build_dataset("synthetic", root, "trainval")
    for path, _ in dataset.samples:
        assert Image.open(path).size == (160, 90)  # 16:9, the longer side is --size
    boxes = np.array([dataset[i][2].tolist() for i in range(len(dataset))])
    assert (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 90).all()
    widths = (boxes[:, 2] - boxes[:, 0]) / 90  # object_scale is a share of the shorter side
    assert widths.min() >= 0.25 - 1 / 90 and widths.max() <= 0.45 + 2 / 90
    centred = build_dataset(
        "synthetic",
        write_synthetic(tmp_path / "c", 3, 6, 2, size=200, seed=0, difficulty="centred"),
        "trainval",
    )
    centres = np.array(
        [[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in (centred[i][2].tolist() for i in range(18))]
    )
    assert np.abs(centres - 100).max() <= 0.05 * 200 + 0.12 * 200  # the beak and tail skew the box a little
    anywhere = build_dataset(
        "synthetic",
        write_synthetic(tmp_path / "s", 3, 6, 2, size=200, seed=0, difficulty="small"),
        "trainval",
    )
    spread = np.array([[(b[0] + b[2]) / 2] for b in (anywhere[i][2].tolist() for i in range(18))])
    assert spread.std() > 3 * centres[:, 0].std()


def test_lookalikes_are_plain_critters_under_the_critter() -> None:
    from elope.data import synthetic_draw

    spec = synthetic_classes(12, 0)[3]
    with_shapes = DIFFICULTIES["lookalikes"]
    background, _ = synthetic_draw.scene(224, spec, np.random.default_rng([0, 1, 3, 3]), with_shapes)
    image, box = synthetic_draw.render(224, spec, np.random.default_rng([0, 1, 3, 3]), with_shapes)
    ys, xs = np.nonzero(np.any(np.asarray(image) != np.asarray(background), axis=2))
    x1, y1, x2, y2 = box
    assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2  # the box: the critter only
    plain, _ = synthetic_draw.critter(224, spec, np.random.default_rng(1), with_shapes, plain=True)
    coloured, _ = synthetic_draw.critter(224, spec, np.random.default_rng(1), with_shapes)
    colours = {c for _, c in plain.getcolors(1 << 16) if c[3] == 255}
    assert len(colours) <= 2  # body and the dark beak and legs: no class colour
    assert len({c for _, c in coloured.getcolors(1 << 16) if c[3] == 255}) > len(colours)
