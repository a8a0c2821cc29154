"""The held-out bird family (elope.data.birds): determinism, exact boxes, class evidence only in the
extremity parts, what each preset changes, the layout, the command line and the suite's names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("skimage", reason="the bird family's backgrounds need scikit-image (the dev extra)")

from elope.cli import main
from elope.data import build_dataset, check_dataset
from elope.data.birds import BIRD_PRESETS, BIRD_SUITE, species_table, write_birds
from elope.data.birds.scene import render_scene, sample_scene
from elope.data.errors import DataError

FRAME = (160, 160)


def _digest(root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sha.update(str(path.relative_to(root)).encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def _scenes(preset: str, count: int, frame: tuple[int, int] = FRAME, seed: int = 0):
    for k in range(count):
        yield sample_scene(np.random.default_rng([seed, k, 99]), BIRD_PRESETS[preset], frame)


@pytest.fixture(scope="module")
def birds_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_birds(
        tmp_path_factory.mktemp("birds"), classes=3, train=3, test=2, size=96, seed=0, preset="cluttered"
    )


def test_same_seed_same_bytes_other_seed_other_bytes(birds_root: Path, tmp_path: Path) -> None:
    again = write_birds(tmp_path / "again", classes=3, train=3, test=2, size=96, seed=0, preset="cluttered")
    other = write_birds(tmp_path / "other", classes=3, train=3, test=2, size=96, seed=1, preset="cluttered")
    assert _digest(again) == _digest(birds_root)
    assert _digest(other) != _digest(birds_root)


def test_layout_loads_through_the_dataset_reader_and_passes_the_check(birds_root: Path) -> None:
    report = check_dataset("synthetic", birds_root)
    assert report.ok, report.problems
    assert report.splits == {"train": {"images": 9, "boxes": 9}, "test": {"images": 6, "boxes": 6}}
    meta = json.loads((birds_root / "elope_synthetic.json").read_text())
    assert meta["family"] == "birds" and meta["preset"]["name"] == "cluttered"
    assert set(meta["backgrounds"]["photographs"]) >= {"astronaut.png", "coffee.png"}
    dataset = build_dataset("synthetic", birds_root, "test")
    assert dataset.classes[0] == "001." + meta["classes"][0]["name"]
    _, label, box = dataset[0]
    x1, y1, x2, y2 = box.tolist()
    assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96 and label == 0


@pytest.mark.parametrize("preset", list(BIRD_PRESETS))
def test_box_holds_every_pixel_the_bird_changes_and_is_tight(preset: str) -> None:
    species = species_table(4, 0)
    for k, scene in enumerate(_scenes(preset, 3)):
        rendered = render_scene(scene, species[k])
        empty = render_scene(scene, species[k], bird=False)
        changed = np.any(np.asarray(rendered.image) != np.asarray(empty.image), axis=2)
        x1, y1, x2, y2 = rendered.box
        inside = np.zeros(changed.shape, bool)
        inside[y1:y2, x1:x2] = True
        assert changed.any() and not (changed & ~inside).any()  # occluders may hide pixels, never add any
        ys, xs = np.nonzero(rendered.bird)  # the drawn bird (alpha > 0) spans the box exactly
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == rendered.box
        assert min(x1, y1) >= 0 and x2 <= FRAME[0] and y2 <= FRAME[1]


@pytest.mark.parametrize("preset", ["medium", "occluded", "lookalikes", "cluttered"])
def test_two_species_differ_only_inside_their_class_parts(preset: str) -> None:
    a, b = species_table(2, 3)
    for scene in _scenes(preset, 4, frame=(224, 224)):
        ra, rb = render_scene(scene, a), render_scene(scene, b)
        differ = np.any(np.asarray(ra.image) != np.asarray(rb.image), axis=2)
        parts = ra.evidence | rb.evidence
        assert differ.any() and not (differ & ~parts).any()
        assert parts.sum() < 0.3 * (ra.bird | rb.bird).sum()  # the parts are small beside the bird


def test_species_differ_in_two_parts_and_the_table_is_seeded() -> None:
    table = species_table(72, 0)
    assert len({s.name for s in table}) == 72 and table == species_table(72, 0)
    assert table[:5] != species_table(5, 1)
    for i, p in enumerate(table):
        for q in table[:i]:
            factors = [
                (p.crest, p.crest_colour) != (q.crest, q.crest_colour),
                (p.bill, p.bill_colour) != (q.bill, q.bill_colour),
                p.eye_ring != q.eye_ring,
                (p.bars, p.bar_colour) != (q.bars, q.bar_colour),
                p.tail_tip != q.tail_tip,
            ]
            assert sum(factors) >= 2


def _fractions(preset: str, count: int = 10) -> np.ndarray:
    species = species_table(10, 0)
    boxes = [render_scene(s, species[k]).box for k, s in enumerate(_scenes(preset, count, (224, 224)))]
    return np.array([max(x2 - x1, y2 - y1) / 224 for x1, y1, x2, y2 in boxes])


def test_presets_set_the_bird_size_and_place() -> None:
    small, medium, large = (_fractions(p) for p in ("small", "medium", "large"))
    assert small.min() >= 0.08 and small.max() <= 0.28  # the plain bird 10-20 %, crest and bill add a little
    assert np.median(small) < np.median(medium) < np.median(large)
    assert large.max() <= 0.8
    species = species_table(4, 0)
    for k, scene in enumerate(_scenes("centred", 6, (224, 224))):
        x1, y1, x2, y2 = render_scene(scene, species[k % 4]).box
        assert abs((x1 + x2) / 2 - 112) < 0.15 * 224 and abs((y1 + y2) / 2 - 112) < 0.15 * 224


def test_occluded_preset_hides_part_of_every_bird_and_others_mostly_not() -> None:
    species = species_table(4, 0)

    def hidden(preset: str) -> list[float]:
        shares = []
        for k, scene in enumerate(_scenes(preset, 6)):
            bird = render_scene(scene, species[k % 4]).bird
            front = np.zeros(bird.shape, bool)
            for layer in scene.front:
                front |= layer.in_frame(layer.alpha > 0, *FRAME)
            shares.append(float((front & bird).sum() / bird.sum()))
        return shares

    occluded, medium = hidden("occluded"), hidden("medium")
    assert min(occluded) > 0.03 and max(occluded) < 0.9
    assert np.mean(occluded) > np.mean(medium)


def test_lookalikes_stand_clear_of_the_bird() -> None:
    counts = []
    species = species_table(4, 0)
    for k, scene in enumerate(_scenes("lookalikes", 6, (224, 224))):
        x1, y1, x2, y2 = render_scene(scene, species[k % 4]).box
        counts.append(len(scene.lookalikes))
        for a1, b1, a2, b2 in scene.lookalikes:
            assert a2 <= x1 or x2 <= a1 or b2 <= y1 or y2 <= b1
    assert sum(counts) >= 6 and all(len(s.lookalikes) == 0 for s in _scenes("medium", 4))


def test_command_writes_birds_and_refuses_the_other_familys_options(tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = [
        "data",
        "synth",
        "--out",
        str(out),
        "--classes",
        "2",
        "--train",
        "2",
        "--test",
        "1",
        "--size",
        "64",
    ]
    result = CliRunner().invoke(main, [*args, "--family", "birds", "--preset", "small"])
    assert result.exit_code == 0, result.output
    assert "family birds, preset small" in result.output
    assert json.loads((out / "elope_synthetic.json").read_text())["preset"]["name"] == "small"
    wrong = CliRunner().invoke(main, [*args, "--preset", "small"])
    assert wrong.exit_code == 2 and "--family birds" in wrong.output
    wrong = CliRunner().invoke(main, [*args, "--family", "birds", "--decoys", "1", "2", "--force"])
    assert wrong.exit_code == 2 and "--decoys" in wrong.output and "Traceback" not in wrong.output


def test_missing_scikit_image_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a)
    )
    with pytest.raises(DataError, match=r"elope\[birds\]"):
        write_birds(tmp_path / "x", classes=2, train=1, test=1, size=64)
    assert not (tmp_path / "x").exists()
    args = ["data", "synth", "--out", str(tmp_path / "y"), "--family", "birds", "--size", "64"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "scikit-image" in result.output and "Traceback" not in result.output


def test_suite_lists_the_bird_family_apart_and_writes_it(tmp_path: Path) -> None:
    from elope.commands.suite import _names
    from elope.research.suite import _write_data

    assert _names("birds") == list(BIRD_SUITE) and not set(_names("all")) & set(BIRD_SUITE)
    assert _names("birds-small,small") == ["birds-small", "small"]
    recipe = {"dataset.synthetic": {"classes": 2, "train": 2, "test": 1, "size": 64, "seed": 0}}
    folder = _write_data(tmp_path / "data", "birds-occluded", recipe, None)
    meta = json.loads((folder / "elope_synthetic.json").read_text())
    assert meta["family"] == "birds" and meta["preset"]["name"] == "occluded"
    result = CliRunner().invoke(main, ["suite", "--out", str(tmp_path / "s"), "--dists", "birds-tiny"])
    assert result.exit_code == 2 and "birds-small" in result.output
