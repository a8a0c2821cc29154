"""The embedding as a product: retrieval metrics, ``elope embed``, ``elope enroll``, the zero-shot halves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fake_datasets import make_fake_cub
from safetensors.torch import save_file

from elope.cli import main
from elope.data import build_dataset
from elope.evaluation.retrieval import retrieval_metrics
from elope.nn.model import ELoPE
from elope.runs import CLASS_MEANS_FILE, load_run
from elope.runs.model_folder import save_model
from elope.spec import ModelSpec
from elope.tasks.embed import Embeddings, embed_paths, embed_split
from elope.tasks.enroll import enroll_classes
from elope.tasks.predict import predict_paths

EMB, INPUT = 8, 64


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake CUB tree: 4 classes × (2 train + 2 test) images."""
    return make_fake_cub(tmp_path_factory.mktemp("cub"), 4, train_per_class=2, test_per_class=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, cub_root: Path) -> Path:
    """A run folder as `elope train` leaves it (random resnet18 at 64 px, class means), without training."""
    classes = list(build_dataset("cub", cub_root, "test").classes)
    torch.manual_seed(0)
    model = ELoPE("resnet18", len(classes), embedding_dim=EMB, spec=ModelSpec(image_size=INPUT, tau=0.3))
    path = tmp_path_factory.mktemp("run")
    save_model(model.eval(), path / "model", {"classes": classes, "dataset": "cub", "root": str(cub_root)})
    means = torch.nn.functional.normalize(
        torch.randn(len(classes), EMB, generator=torch.Generator().manual_seed(1))
    )
    save_file({"means": means.contiguous()}, str(path / "model" / CLASS_MEANS_FILE))
    return path


# ------------------------------------------------------------------------------------------- retrieval
def test_retrieval_metrics_by_hand():
    # 1-D directions on the circle: a0, a1 close together; b0 near a0; b1 far away
    angles = torch.tensor([0.0, 0.1, 0.05, 3.0])
    x = torch.stack([angles.cos(), angles.sin()], dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    m = retrieval_metrics(x, labels, ks=(1, 2))
    # nearest neighbours: 0 -> 2 (miss), 1 -> 2 (miss), 2 -> 0 (miss), 3 -> 1 (miss)
    assert m["recall@1"] == 0.0
    # two nearest: 0 -> {2, 1} hit, 1 -> {2, 0} hit, 2 -> {0, 1} miss, 3 -> {1, 2} hit
    assert m["recall@2"] == 0.75
    # R = 1 for every query: AP = rel(1) = 0 for all
    assert m["map@r"] == 0.0
    perfect = retrieval_metrics(torch.tensor([[1.0, 0], [1, 0.01], [0, 1], [0.01, 1]]), labels, ks=(1,))
    assert perfect["recall@1"] == 1.0 and perfect["map@r"] == 1.0


def test_map_at_r_counts_precision_within_r():
    x = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.9, 0.43], [0.0, 1.0], [0.5, 0.86]])
    labels = torch.tensor([0, 0, 1, 0, 1])
    # query 0: R = 2, ranking 1 (hit), 2 (miss): AP = (1/2)(1/1) = 0.5
    m = retrieval_metrics(x[:3], labels[:3], ks=(1,))
    assert m["map@r"] == pytest.approx(1.0)  # query 2 alone in its class: left out; 0 and 1 find each other
    full = retrieval_metrics(x, labels, ks=(1,))
    assert 0.0 < full["map@r"] < 1.0


def test_retrieval_refuses_bad_input():
    with pytest.raises(ValueError, match="at least two"):
        retrieval_metrics(torch.zeros(1, 3), torch.zeros(1))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(torch.full((2, 3), float("nan")), torch.zeros(2))


# ---------------------------------------------------------------------------------------------- embed
def test_embed_split_matches_the_pipeline_and_round_trips(run_dir: Path, tmp_path: Path):
    emb = embed_split(run_dir, "test")
    run = load_run(run_dir)
    ds, _, _ = run.load_dataset("test")
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    expected = run.model.classify_crops(images, return_embeddings=True).embeddings
    assert np.allclose(emb.embeddings, expected.numpy(), atol=1e-5)
    assert emb.labels.tolist() == ds.targets and emb.paths == [p for p, _ in ds.samples]
    assert emb.meta["means_source"] == "model" and emb.means.shape == (4, EMB)
    back = Embeddings.load(emb.save(tmp_path / "e.npz"))
    assert np.array_equal(back.embeddings, emb.embeddings) and back.classes == emb.classes
    assert back.meta["format"] == "elope-embeddings"


def test_embed_command_split_and_images(run_dir: Path, cub_root: Path, tmp_path: Path):
    out = tmp_path / "emb.npz"
    result = CliRunner().invoke(main, ["embed", "--run", str(run_dir), "--split", "test", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as z:
        assert z["embeddings"].shape == (8, EMB) and z["labels"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert json.loads(str(z["meta"]))["split"] == "test"
    images = cub_root / "CUB_200_2011" / "images"
    out2 = tmp_path / "paths.npz"
    result = CliRunner().invoke(main, ["embed", "--run", str(run_dir), str(images), "--out", str(out2)])
    assert result.exit_code == 0, result.output
    assert (Embeddings.load(out2).labels == -1).all()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an embeddings file"):
        Embeddings.load(bad)


def test_zero_shot_halves(cub_root: Path, run_dir: Path):
    seen = build_dataset("cub", cub_root, "trainval", zero_shot="seen")
    unseen = build_dataset("cub", cub_root, "test", zero_shot="unseen")
    full = build_dataset("cub", cub_root, "test")
    assert seen.classes == full.classes[:2] and unseen.classes == full.classes[2:]
    assert len(seen) == 8 and len(unseen) == 8  # every image of the half: 2 train + 2 test per class
    assert set(unseen.targets) == {0, 1}
    with pytest.raises(ValueError, match="zero_shot"):
        build_dataset("cub", cub_root, "test", zero_shot="half")
    emb = embed_split(run_dir, "test", options={"zero_shot": "unseen"})
    assert emb.classes == full.classes[2:] and len(emb.paths) == 8


# --------------------------------------------------------------------------------------------- enroll
def test_enroll_writes_a_new_folder_and_predict_answers_the_new_class(
    run_dir: Path, cub_root: Path, tmp_path: Path
):
    images = sorted((cub_root / "CUB_200_2011" / "images").rglob("*.jpg"))
    new_images = images[:2]
    before = sorted(p.name for p in (run_dir / "model").iterdir())
    folder = enroll_classes(run_dir, tmp_path / "enrolled", {"newbird": new_images})
    assert sorted(p.name for p in (run_dir / "model").iterdir()) == before  # the run is untouched
    enrolled = load_run(folder.parent)
    assert enrolled.classes[-1] == "newbird" and enrolled.means.shape == (5, EMB)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["classifier"] == "nearest-class-mean" and meta["enrolled"][0]["count"] == 2
    # the linear layer is the nearest class mean: same answer as the cosine to the means
    emb = torch.from_numpy(embed_split(folder.parent, "test").embeddings)
    logits = enrolled.model.classifier(emb)
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(enrolled.means, dim=1).T
    assert torch.equal(logits.argmax(1), cos.argmax(1))
    # one image enrolled alone is its own nearest mean
    solo = enroll_classes(run_dir, tmp_path / "solo", {"solo": [images[5]]})
    answer = predict_paths(solo.parent, [images[5]], top=1)
    assert answer[0]["classes"][0]["class"] == "solo"


def test_enroll_refuses_existing_out_and_taken_names(run_dir: Path, cub_root: Path, tmp_path: Path):
    image = next((cub_root / "CUB_200_2011" / "images").rglob("*.jpg"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        enroll_classes(run_dir, tmp_path / "full", {"a": [image]})
    taken = load_run(run_dir).classes[0]
    with pytest.raises(ValueError, match="already one of"):
        enroll_classes(run_dir, tmp_path / "o", {taken: [image]})
    result = CliRunner().invoke(
        main, ["enroll", "--run", str(run_dir), "--class", "x", str(image), "--out", str(run_dir)]
    )
    assert result.exit_code != 0 and "not an empty folder" in result.output
    result = CliRunner().invoke(
        main, ["enroll", "--run", str(run_dir), "--class", "x", str(image), "--out", str(tmp_path / "ok")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ok" / "model" / "model.json").is_file()


# --------------------------------------------------------------------------------------------- export
def test_exported_graph_returns_the_embedding_and_carries_enrolled_classes(
    run_dir: Path, cub_root: Path, tmp_path: Path
):
    pytest.importorskip("onnxruntime")
    from elope.deploy.runtime import ExportedModel

    images = sorted((cub_root / "CUB_200_2011" / "images").rglob("*.jpg"))
    enrolled = enroll_classes(run_dir, tmp_path / "enrolled", {"solo": [images[5]]}).parent
    onnx = tmp_path / "e.onnx"
    result = CliRunner().invoke(main, ["export", "--run", str(enrolled), "--out", str(onnx), "--embedding"])
    assert result.exit_code == 0, result.output
    exported = ExportedModel(onnx)
    assert exported.outputs[-1] == "embeddings" and exported.classes[-1] == "solo"
    run = load_run(enrolled)
    ds, _, _ = run.load_dataset("test")
    batch = torch.stack([ds[i][0] for i in range(3)])
    outputs = exported.run(batch)
    expected = run.model.classify_crops(batch, return_embeddings=True).embeddings
    assert torch.allclose(outputs[-1], expected, rtol=1e-4, atol=1e-4)
    answer = predict_paths(None, [images[5]], top=1, model=onnx)
    assert answer[0]["classes"][0]["class"] == "solo"  # the enrolled class travels with the graph
    from elope.serve.model import ServedModel

    served = ServedModel(onnx, max_pixels=10**8)
    assert served.has_embedding  # `elope serve` answers with it
    rows = served.run(batch.numpy())
    reply = served.answer({k: v[0] for k, v in rows.items()}, (64, 64), top=1, heatmap="none", embedding=True)
    assert np.allclose(reply["embedding"], expected[0].numpy(), rtol=1e-4, atol=1e-4)
    out = tmp_path / "from-onnx.npz"
    result = CliRunner().invoke(main, ["embed", "--model", str(onnx), str(images[5]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    from_run = embed_paths(enrolled, [images[5]])
    assert np.allclose(Embeddings.load(out).embeddings, from_run.embeddings, rtol=1e-4, atol=1e-4)
    plain = tmp_path / "plain.onnx"
    assert CliRunner().invoke(main, ["export", "--run", str(enrolled), "--out", str(plain)]).exit_code == 0
    refused = CliRunner().invoke(main, ["embed", "--model", str(plain), str(images[5]), "--out", str(out)])
    assert refused.exit_code != 0 and "--embedding" in refused.output
    torchscript = CliRunner().invoke(
        main,
        [
            "export",
            "--run",
            str(enrolled),
            "--out",
            str(tmp_path / "e.pt"),
            "--format",
            "torchscript",
            "--embedding",
        ],
    )
    assert torchscript.exit_code != 0 and "ONNX only" in torchscript.output


def test_zero_shot_is_a_checked_recipe_option():
    from elope.config.options import check_dataset_options

    assert check_dataset_options("cub", {"zero_shot": "seen"}) == {"zero_shot": "seen"}
    with pytest.raises(ValueError, match=r"options\.zero_shot"):
        check_dataset_options("cub", {"zero_shot": "half"})


def test_enroll_refuses_a_run_without_class_means(run_dir: Path, cub_root: Path, tmp_path: Path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(run_dir, plain)
    (plain / "model" / CLASS_MEANS_FILE).unlink()
    image = next((cub_root / "CUB_200_2011" / "images").rglob("*.jpg"))
    with pytest.raises(ValueError, match=r"loss\.variant full"):
        enroll_classes(plain, tmp_path / "out", {"x": [image]})
    assert not (tmp_path / "out").exists()
