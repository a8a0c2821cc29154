"""``elope evaluate --report DIR`` (run folder and exported file), ``--retrieval``, and the page in a real
browser (Debian's headless Chromium, as tests/test_serve_page.py drives it)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fake_datasets import make_fake_aircraft, make_fake_cars, make_fake_cub, make_fake_folder
from safetensors.torch import save_file

from elope.cli import main
from elope.data import build_dataset
from elope.nn.model import ELoPE
from elope.runs import CLASS_MEANS_FILE
from elope.runs.model_folder import save_model
from elope.spec import ModelSpec
from elope.tasks.embed import retrieval_run
from elope.tasks.report import classification_metrics, worst_pairs
from elope.tasks.report_html import confusion_figure

EMB, INPUT = 8, 64


def make_run(path: Path, dataset: str, root: Path) -> Path:
    classes = list(build_dataset(dataset, root, "test").classes)
    torch.manual_seed(0)
    model = ELoPE("resnet18", len(classes), embedding_dim=EMB, spec=ModelSpec(image_size=INPUT, tau=0.3))
    save_model(model.eval(), path / "model", {"classes": classes, "dataset": dataset, "root": str(root)})
    means = torch.nn.functional.normalize(torch.randn(len(classes), EMB))
    save_file({"means": means.contiguous()}, str(path / "model" / CLASS_MEANS_FILE))
    return path


@pytest.fixture(scope="module")
def cub_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = make_fake_cub(tmp_path_factory.mktemp("cub"), 4, train_per_class=1, test_per_class=3)
    return make_run(tmp_path_factory.mktemp("run"), "cub", root), root


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def report(cub_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run, _ = cub_run
    folder = tmp_path_factory.mktemp("out") / "report"
    json_file = folder.parent / "metrics.json"
    _invoke("evaluate", "--run", str(run), "--report", str(folder), "--json", str(json_file))
    return folder, json.loads(json_file.read_text())


def test_report_files_and_numbers_equal_evaluate_json(report: tuple[Path, dict]):
    folder, evaluated = report
    for name in ("report.html", "metrics.json", "per_class.csv", "confusion.csv", "confusion.png"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(evaluated["top1"])
    assert metrics["mean_per_class"] == pytest.approx(evaluated["mean_per_class"])
    assert metrics["num_images"] == evaluated["num_images"] == 12
    assert metrics["top1"] <= metrics["top5"] == 1.0  # 4 classes: the true one is always in the top 5
    rows = list(csv.DictReader((folder / "per_class.csv").open()))
    assert [r["class"] for r in rows] == list(evaluated["per_class"])
    assert sum(int(r["support"]) for r in rows) == 12
    for r in rows:  # recall is evaluate's per-class accuracy
        assert float(r["recall"]) == pytest.approx(evaluated["per_class"][r["class"]])
    matrix = np.array(
        [line[1:] for line in list(csv.reader((folder / "confusion.csv").open()))[1:]], dtype=int
    )
    assert matrix.shape == (4, 4) and matrix.sum() == 12
    assert np.trace(matrix) / 12 == pytest.approx(evaluated["top1"])


def test_report_page_is_self_contained(report: tuple[Path, dict]):
    page = (report[0] / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 1
    assert 'src="http' not in page and "<link" not in page and "<script src" not in page
    wrong = sum(1 for line in (report[0] / "predictions.jsonl").open() if json.loads(line)["classes"][0]["class"]
                != json.loads(line)["true"])  # fmt: skip
    assert page.count('alt="misclassified"') == min(wrong, 12)


def test_report_shows_the_localization_metrics_of_the_field(report: tuple[Path, dict]):
    folder, evaluated = report
    module = evaluated["localization"]["module"]
    page = (folder / "report.html").read_text()
    assert "<h2>Localization</h2>" in page and "chosen on the trainval split" in page
    for value in (module["gt_known"], module["top1_loc"], module["maxboxacc_v2"]["value"]):
        assert f"<td>{100 * value:.2f} %</td>" in page
    assert "teacher's mean feature map" not in page  # measured only with --mean-map
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["evaluate"]["localization"] == evaluated["localization"]


def test_report_of_an_exported_model_equals_the_runs(cub_run, report, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    run, root = cub_run
    onnx = tmp_path / "m.onnx"
    _invoke("export", "--run", str(run), "--out", str(onnx))
    folder = tmp_path / "exported-report"
    out = _invoke("evaluate", "--model", str(onnx), "--dataset", "cub", "--root", str(root), "--report",
                  str(folder), "--json", "-")  # fmt: skip
    result = json.loads(out[out.index("{") :])
    assert result["top1"] == pytest.approx(report[1]["top1"])
    assert (folder / "report.html").is_file()
    assert (folder / "confusion.csv").read_text() == (report[0] / "confusion.csv").read_text()


def test_retrieval_in_evaluate_json(cub_run):
    run, _ = cub_run
    out = _invoke("evaluate", "--run", str(run), "--retrieval", "--json", "-")
    result = json.loads(out[out.index("{") :])
    direct = retrieval_run(run, "test")
    assert result["retrieval"]["recall@1"] == pytest.approx(direct["recall@1"])
    assert result["retrieval"]["classes"] == "same" and result["retrieval"]["num_queries"] == 12
    assert 0.0 <= result["retrieval"]["map@r"] <= result["retrieval"]["recall@8"] <= 1.0


LAYOUTS = {
    "cars": lambda root: make_fake_cars(root, num_classes=4),
    "aircraft": make_fake_aircraft,
    "folder": lambda root: make_fake_folder(root, classes=("alpha", "beta", "gamma", "delta")),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_report_embed_and_zero_shot_on_every_layout(layout: str, tmp_path: Path):
    root = LAYOUTS[layout](tmp_path / layout)
    run = make_run(tmp_path / "run", layout, root)
    out = _invoke(
        "evaluate", "--run", str(run), "--report", str(tmp_path / "r"), "--retrieval", "--json", "-"
    )
    assert json.loads(out[out.index("{") :])["retrieval"]["num_queries"] > 1
    assert (tmp_path / "r" / "report.html").is_file()
    _invoke("embed", "--run", str(run), "--zero-shot", "unseen", "--out", str(tmp_path / "e.npz"))
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        classes = list(build_dataset(layout, root, "test").classes)
        assert list(z["classes"]) == classes[len(classes) // 2 :]


def test_confusion_picture_at_200_classes(tmp_path: Path):
    rng = np.random.default_rng(0)
    classes = [f"{i:03d}.Species_{i}" for i in range(200)]
    items = []
    for i in range(2000):
        true = i % 200
        pred = true if rng.random() < 0.7 else int(rng.integers(200))
        items.append(
            {"true": classes[true], "classes": [{"class": classes[pred], "index": pred, "score": 0.5}]}
        )
    items += [{"true": classes[3], "classes": [{"class": classes[7], "index": 7, "score": 0.9}]}] * 6
    metrics = classification_metrics(items, classes)
    pairs = worst_pairs(metrics["matrix"], classes)
    assert pairs[0]["true"] == classes[3] and pairs[0]["predicted"] == classes[7]
    fig = confusion_figure(metrics["matrix"], classes, pairs)
    fig.savefig(tmp_path / "c.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 5 and texts[0].startswith("1. 003.Species_3 → 007.Species_7")
    assert len(fig.axes[0].get_xticks()) <= 40  # readable: indices every 5 classes


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver")
def test_report_opens_in_a_browser(report: tuple[Path, dict], tmp_path: Path):
    """The page renders in headless Chromium with every image decoded; the screenshot goes to tmp_path or
    $ELOPE_REPORT_SCREENSHOT (docs/images/report_page.png is made that way)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,1600", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get((report[0] / "report.html").resolve().as_uri())
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth)"
        )
        assert widths and all(w and w > 0 for w in widths)  # every inlined picture decoded
        assert "top-1" in driver.find_element("tag name", "body").text
        out = Path(os.environ.get("ELOPE_REPORT_SCREENSHOT") or tmp_path / "report.png")
        driver.save_screenshot(str(out))
        assert out.stat().st_size > 10_000
    finally:
        driver.quit()


def test_evaluate_model_needs_a_dataset_and_no_retrieval(cub_run, tmp_path: Path):
    fake = tmp_path / "m.onnx"
    fake.write_bytes(b"x")
    for extra in ([], ["--retrieval", "--dataset", "cub", "--root", str(cub_run[1])]):
        result = CliRunner().invoke(main, ["evaluate", "--model", str(fake), *extra])
        assert result.exit_code == 2
    assert "--retrieval needs the embedding" in result.output
