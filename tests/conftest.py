"""Shared pytest fixtures. Data fixtures write tiny fake trees in each real layout (see fake_datasets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_datasets import make_fake_aircraft, make_fake_cars, make_fake_cub, make_fake_folder


@pytest.fixture
def fake_cub(tmp_path: Path) -> Path:
    """A CUB-200-2011 tree: 3 classes, 4 train + 2 test images each, boxes (see make_fake_cub)."""
    return make_fake_cub(tmp_path / "cub")


@pytest.fixture
def fake_cars(tmp_path: Path) -> Path:
    """A Stanford Cars devkit tree: 3 classes, 4 train + 2 test images each (see make_fake_cars)."""
    return make_fake_cars(tmp_path / "cars")


@pytest.fixture
def fake_aircraft(tmp_path: Path) -> Path:
    """An FGVC-Aircraft 2013b tree: 5 variants, 2 images each in train, val, test (see make_fake_aircraft)."""
    return make_fake_aircraft(tmp_path / "aircraft")


@pytest.fixture
def fake_folder(tmp_path: Path) -> Path:
    """root/{train,test}/<class>/ with 3 classes, 4 train + 2 test images each."""
    return make_fake_folder(tmp_path / "folder")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny procedural set (3 classes, 4 train + 2 test per class, 48 px), written once per session."""
    from elope.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synthetic"), classes=3, train=4, test=2, size=48, seed=0)


@pytest.fixture(scope="session")
def served_onnx(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ELoPE (varied boxes and classes) exported to ONNX with a dynamic batch, once per
    session: what the `elope serve` tests serve (tests/serve_helpers.py)."""
    from serve_helpers import export_tiny_model

    return export_tiny_model(synthetic_root, tmp_path_factory.mktemp("served") / "tiny.onnx")


@pytest.fixture(scope="session")
def synthetic_shards(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synthetic_root`` written as tar shards of 5 images (``elope data shard``): the same 18 images."""
    from elope.data import write_shards

    out = tmp_path_factory.mktemp("shards") / "set"
    write_shards("synthetic", synthetic_root, out, shard_size=5)
    return out
