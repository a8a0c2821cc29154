"""An exported file's metadata is checked once, by the torch-free ``elope.exported``, for both readers:
``elope serve`` refuses a bad file at start-up and ``elope predict --model`` before any image is read, each
with the same one line naming the file, the value and the fix (no 500 on the first request, no traceback,
no class dropped in silence). Before, ``serve`` trusted the file: ``input_size`` 100000 was an OOM kill on
the first request, ``input_size`` 0, a non-numeric mean, τ NaN or no class list a 500 or a start-up
traceback, and a class list shorter than the scores dropped a class in both readers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from serve_helpers import encode, good_metadata, metadata_graph, photo, version_1_metadata

from elope.cli import main
from elope.exported import ExportMetadata, MetadataError, parse_metadata, run_in_fixed_batches
from elope.spec import ModelSpec

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _changed(**changes):
    """:func:`good_metadata` with top-level entries changed (``_DROP``: removed); ``spec_<name>`` changes the
    spec's entry ``name``."""
    meta = good_metadata()
    for key, value in changes.items():
        where, key = (meta["spec"], key.removeprefix("spec_")) if key.startswith("spec_") else (meta, key)
        if value is _DROP:
            where.pop(key)
        else:
            where[key] = value
    return meta


def _old(**changes):
    """:func:`version_1_metadata` (a file exported before the spec was stored whole) with changes."""
    meta = version_1_metadata()
    for key, value in changes.items():
        if value is _DROP:
            meta.pop(key)
        else:
            meta[key] = value
    return meta


_DROP = object()

BAD = {
    "crop_source 100000": (_changed(spec_crop_source=100000), "crop_source must be a whole number of pixels in 16..8192, got 100000"),
    "crop_source 0": (_changed(spec_crop_source=0), "crop_source must be a whole number of pixels"),
    "crop_source a string": (_changed(spec_crop_source="32"), "crop_source must be a whole number of pixels in 16..8192, got '32'"),
    "image_size 5000": (_changed(spec_image_size=5000), "image_size must be a whole number of pixels in 16..4096"),
    "mean not numbers": (_changed(spec_mean=["a", 0.4, 0.4]), "mean must be three finite numbers (R, G, B), got ['a', 0.4, 0.4]"),
    "mean of two": (_changed(spec_mean=[0.4, 0.4]), "mean must be three finite numbers"),
    "std zero": (_changed(spec_std=[0.0, 0.2, 0.2]), "std must be positive, got [0.0, 0.2, 0.2]"),
    "tau NaN": (json.dumps(good_metadata()).replace('"tau": 0.3', '"tau": NaN'), "is not valid JSON (NaN is not a number"),
    "tau 1": (_changed(spec_tau=1.0), "tau must lie in [0, 1)"),
    "tau a string": (_changed(spec_tau="0.3"), "tau must lie in [0, 1), got '0.3'"),
    "box margin 5": (_changed(spec_box_margin=5), "box_margin must lie in [0, 1]"),
    "box rule unknown": (_changed(spec_box_rule="largest"), "unknown box_rule 'largest'"),
    "no spec": (_changed(spec=_DROP), "the spec must be a mapping"),
    "a spec without tau": (_changed(spec_tau=_DROP), "the spec lacks ['tau']"),
    "no class list": (_changed(classes=_DROP), "classes None, not a non-empty list of names"),
    "empty class list": (_changed(classes=[]), "classes [], not a non-empty list"),
    "classes not names": (_changed(classes=[1, 2, 3]), "not a non-empty list of names"),
    "class list shorter than the scores": (_changed(classes=["a", "b"]), "lists 2 class names, but the graph scores 3 classes"),
    "class list longer than the scores": (_changed(classes=["a", "b", "c", "d"]), "lists 4 class names, but the graph scores 3"),
    "crop_source not the graph's": (_changed(spec_crop_source=64), "has crop_source 64, but the graph takes 32 x 32"),
    "outputs not the graph's": (_changed(outputs=["scores", "boxes", "heatmaps"]), "but the graph has ['scores', 'boxes']"),
    "batch nonsense": (_changed(batch="many"), "batch 'many', not 'dynamic' or a whole number"),
    "a newer format": (_changed(version=3), "exported in format version 3, newer than this elope reads (version 2): upgrade elope"),
    "another format": (_changed(format="onnx-zoo"), "is not elope's export format"),
    "not JSON": ("{not json", "is not valid JSON"),
    "a JSON list": ("[1, 2]", "is list, not a JSON object"),
    "nested 100000 deep": ("[" * 100_000 + "]" * 100_000, "is not valid JSON"),
    "version 1: input_size 100000": (_old(input_size=100000), "crop_source (input_size in version 1) must be a whole number of pixels"),
    "version 1: tau a string": (_old(tau="0.3"), "tau must lie in [0, 1), got '0.3'"),
    "version 1: mean of two": (_old(mean=[0.4, 0.4]), "mean must be three finite numbers"),
    "version 1: no tau": (_old(tau=_DROP), "tau must lie in [0, 1), got None"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_serve_refuses_bad_metadata_at_start_up_in_one_line(case, tmp_path):
    metadata, message = BAD[case]
    path = metadata_graph(tmp_path / "bad.onnx", metadata)
    result = CliRunner().invoke(main, ["serve", "--model", str(path), "--port", "0"])
    assert result.exit_code == 1, result.output
    assert message in result.output and f"Error: {path.name}" in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("case", BAD)
def test_predict_model_refuses_the_same_files_before_the_work(case, tmp_path):
    metadata, message = BAD[case]
    path = metadata_graph(tmp_path / "bad.onnx", metadata)
    image = tmp_path / "photo.png"
    image.write_bytes(encode(photo(40, 30), "PNG"))
    result = CliRunner().invoke(main, ["predict", "--model", str(path), str(image)])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output, result.output
    assert "photo.png" not in result.output  # refused before the image is read


def test_a_good_small_graph_is_served_and_predicted(tmp_path):
    from elope.serve.model import ServedModel

    path = metadata_graph(tmp_path / "good.onnx", good_metadata())
    served = ServedModel(path, max_pixels=10**6)
    assert served.classes == ["class 0", "class 1", "class 2"] and served.input_size == 32
    image = tmp_path / "photo.png"
    image.write_bytes(encode(photo(40, 30), "PNG"))
    result = CliRunner().invoke(main, ["predict", "--model", str(path), str(image), "--top", "3"])
    assert result.exit_code == 0, result.output
    assert all(f"class {i}" in result.output for i in range(3))


def test_parse_metadata_gives_the_spec():
    meta = parse_metadata(json.dumps(good_metadata()), "m.onnx", score_width=3)
    assert isinstance(meta, ExportMetadata) and meta.input_size == 32 and meta.spec.crop_source == 32
    assert meta.spec == ModelSpec.from_dict(good_metadata()["spec"])  # the reader of model.json's spec
    assert meta.spec.tau == 0.3 and meta.batch is None and meta.classes == ("class 0", "class 1", "class 2")
    with pytest.raises(MetadataError, match=r"m\.onnx carries no 'elope' metadata"):
        parse_metadata("", "m.onnx")


def test_files_exported_before_the_spec_was_whole_still_load(tmp_path):
    """Export format version 1 (the spec's values at the top level, the crop source as ``input_size``,
    the box rule under ``model``) is read into the same spec; a file of elope 0.1.0 had no image_size (the
    input side) and no box margin (0)."""
    old = version_1_metadata()
    assert (
        parse_metadata(json.dumps(old), "old.onnx").spec
        == parse_metadata(json.dumps(good_metadata()), "new.onnx").spec
    )
    peak = {**old, "model": {**old["model"], "box_rule": "peak", "heatmap_upsample": True}, "box_margin": 0.2}
    spec = parse_metadata(json.dumps(peak), "old.onnx").spec
    assert (spec.box_rule, spec.heatmap_upsample, spec.box_margin) == ("peak", True, 0.2)
    first = {k: v for k, v in old.items() if k not in ("image_size", "model")}  # elope 0.1.0
    spec = parse_metadata(json.dumps(first), "first.onnx").spec
    assert (spec.image_size, spec.crop_source, spec.box_rule, spec.box_margin) == (32, 32, "all", 0.0)
    path = metadata_graph(tmp_path / "old.onnx", old)
    image = tmp_path / "photo.png"
    image.write_bytes(encode(photo(40, 30), "PNG"))
    result = CliRunner().invoke(main, ["predict", "--model", str(path), str(image), "--top", "3"])
    assert result.exit_code == 0, result.output


def test_fixed_batch_chunks_pad_and_cut_back():
    import numpy as np

    calls = []

    def run(batch):
        calls.append(len(batch))
        assert len(batch) == 4
        return [batch.sum(axis=1), batch[:, :1]]

    images = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    sums, firsts = run_in_fixed_batches(run, images, 4, np.concatenate)
    assert calls == [4, 4, 4] and sums.tolist() == images.sum(axis=1).tolist()
    assert firsts[:, 0].tolist() == images[:, 0].tolist()
