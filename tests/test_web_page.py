"""``elope web``: the static page that runs the exported graph in the browser (onnxruntime-web, WebAssembly).

In Debian's headless Chromium (selenium, chromium-driver), the folder served by a plain static file server:
the page's answers for PNG and JPEG photos equal ``elope predict --model``'s within the tolerance stated in
docs/usage.md ("In the browser"), and an uploaded photo gets its top-5 and its box drawn (a red pixel on
the box's edge; the screenshot goes to tmp_path, or to $ELOPE_WEB_SCREENSHOT: docs/images/web_page.png is
made that way). The browser tests skip, with the reason, where chromium or onnxruntime-web is missing;
``.ci/run`` installs both. Without a browser: the JavaScript resize is Pillow's, byte for byte (node), and
the command's folder, refusals and messages.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from serve_helpers import encode, jpeg, photo

pytest.importorskip("onnx")

from web_helpers import CHROMIUM, DRIVER, REPO, call_page, chromium, ort_dist, static_server

from elope.cli import main
from elope.deploy.web import ORT_FILES, ORT_WEB_VERSION, PAGE_FILES

PAGE = REPO / "elope" / "deploy" / "web_page"
NODE = shutil.which("node")
DIST = ort_dist()
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and DRIVER and DIST and importlib.util.find_spec("selenium")),
    reason="needs Debian's chromium and chromium-driver, selenium and onnxruntime-web "
    f"(npm install --prefix .ci/web onnxruntime-web@{ORT_WEB_VERSION}; .ci/run installs them)",
)

#: Photos whose decoded pixels are the same in the browser and in Pillow: PNG, and JPEG too small for
#: Pillow's draft decoding (a side under 2 N).
EXACT = {
    "wide.png": lambda: encode(photo(480, 360, 4), "PNG"),
    "tall.png": lambda: encode(photo(150, 400, 5), "PNG"),  # Pillow's vertical pass first
    "small.png": lambda: encode(photo(60, 50, 6), "PNG"),  # enlarged
    "grey.png": lambda: encode(photo(200, 170, 8).convert("L"), "PNG"),
    "small.jpg": lambda: jpeg(150, 120, 7),
    "rotated.jpg": lambda: _rotated_jpeg(),  # EXIF orientation 6: shown 110 x 150
    "alpha.png": lambda: _translucent_png(),  # alpha over white
}
#: JPEGs Python decodes at 1/2 or 1/4 scale (draft mode) and the browser at full size.
DRAFTED = {"photo.jpg": lambda: jpeg(480, 360, 4), "big.jpg": lambda: jpeg(1000, 800, 9)}


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(photo(150, 110, 10), "JPEG", quality=90, exif=exif.tobytes())


def _translucent_png() -> bytes:
    image = photo(130, 100, 11).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 130, dtype=np.uint8), (100, 1))
    image.putalpha(Image.fromarray(alpha))
    return encode(image, "PNG")


def _fake_dist(folder: Path) -> Path:
    dist = folder / "node_modules" / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in ORT_FILES:
        (dist / name).write_bytes(name.encode())
    (dist.parent / "package.json").write_text(json.dumps({"version": "0.0.1-test"}))
    return folder


def test_ci_installs_the_pinned_onnxruntime_web() -> None:
    """.ci/run installs the release the page is made for, where ort_dist() looks (.ci/web), and `elope web
    --help` names the same release."""
    ci = (REPO / ".ci" / "run").read_text()
    help_text = " ".join(CliRunner().invoke(main, ["web", "--help"], terminal_width=200).output.split())
    assert f"npm install onnxruntime-web@{ORT_WEB_VERSION}" in help_text
    assert (
        f"npm install --silent --no-audit --no-fund --prefix .ci/web onnxruntime-web@{ORT_WEB_VERSION}" in ci
    )


def test_web_writes_the_static_folder(served_onnx: Path, tmp_path: Path) -> None:
    ort, out = _fake_dist(tmp_path / "npm"), tmp_path / "site"
    args = ["web", "--model", str(served_onnx), "--out", str(out), "--ort", str(ort)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "3 classes, input 96 px, onnxruntime-web 0.0.1-test" in result.output
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["model.onnx", "model.json", *PAGE_FILES, *ORT_FILES]
    )
    assert (out / "model.onnx").read_bytes() == served_onnx.read_bytes()
    meta = json.loads((out / "model.json").read_text())
    assert len(meta["classes"]) == 3 and meta["spec"]["crop_source"] == 96 and meta["file"] == "tiny.onnx"
    assert (out / "ort.wasm.min.js").read_bytes() == b"ort.wasm.min.js"
    index = (out / "index.html").read_text()  # one file: what it shares with serve's page filled in
    assert "{{" not in index and "function drawResult(" in index and 'id="canvas"' in index
    assert CliRunner().invoke(main, args).exit_code == 0  # its own files: replaced
    (out / "index.html").write_text("mine")  # a file elope did not write: refused without --force
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "was not written by elope" in refused.output
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0


def test_web_without_onnxruntime_web_names_the_fix(served_onnx: Path, tmp_path: Path) -> None:
    out, empty = tmp_path / "site", tmp_path / "npm"
    empty.mkdir()
    args = ["web", "--model", str(served_onnx), "--out", str(out), "--ort", str(empty)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert f"npm install onnxruntime-web@{ORT_WEB_VERSION}" in result.output
    assert not out.exists() or not any(out.iterdir())


def test_web_refuses_what_is_not_an_exported_onnx_file(tmp_path: Path) -> None:
    ort = _fake_dist(tmp_path / "npm")
    archive = tmp_path / "model.pt"
    archive.write_bytes(b"PK\x03\x04 a zip archive")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx at all")
    for path, message in ((archive, "TorchScript"), (junk, "not an ONNX file")):
        args = ["web", "--model", str(path), "--out", str(tmp_path / "site"), "--ort", str(ort)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and message in result.output, result.output


@pytest.mark.skipif(NODE is None, reason="needs node")
def test_javascript_resize_is_pillows_byte_for_byte(tmp_path: Path) -> None:
    """elope-preprocess.js against Image.resize(BILINEAR): shrinking, enlarging, one side only, and both
    pass orders of Pillow (the vertical pass first when the height shrinks much more)."""
    rng = np.random.default_rng(0)
    sizes = [(480, 360, 96), (301, 999, 224), (999, 224, 224), (60, 50, 96), (96, 200, 96), (7, 5, 32)]
    script = """const p = require(process.argv[1]); const fs = require('fs');
    const [w, h, n] = process.argv.slice(3).map(Number);
    const rgb = new Uint8ClampedArray(fs.readFileSync(process.argv[2]));
    fs.writeFileSync(process.argv[2] + '.out', Buffer.from(p.resizeRGB(rgb, w, h, n).buffer));"""
    for w, h, n in sizes:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = tmp_path / f"{w}x{h}.rgb"
        pixels.tofile(path)
        command = [NODE, "-e", script, str(PAGE / "elope-preprocess.js"), str(path), str(w), str(h), str(n)]
        subprocess.run(command, check=True, timeout=60)
        got = np.fromfile(f"{path}.out", np.uint8).reshape(n, n, 3)
        expected = np.asarray(Image.fromarray(pixels).resize((n, n), Image.BILINEAR))
        assert np.array_equal(got, expected), (w, h, n, int(np.abs(got.astype(int) - expected).max()))


@pytest.fixture(scope="module")
def page(served_onnx: Path, tmp_path_factory: pytest.TempPathFactory):
    """The page of the tiny model with the photos beside it, served, and a Chromium on it."""
    from elope.deploy.web import build_web_page

    site = tmp_path_factory.mktemp("web") / "site"
    build_web_page(served_onnx, site, DIST)
    for name, make in {**EXACT, **DRAFTED}.items():
        (site / name).write_bytes(make())
    with static_server(site) as url:
        driver = chromium()
        try:
            driver.get(url + "/")
            assert call_page(driver, "return await elopeWeb.ready;") is True
            yield site, driver
        finally:
            driver.quit()


def _python_answers(served_onnx: Path, site: Path, names: list[str]) -> dict[str, dict]:
    """``elope predict --model``'s answers and the graph's input as Python makes it, per photo."""
    from elope.data.io import load_image
    from elope.data.transforms import eval_transform
    from elope.deploy.web import read_onnx_metadata
    from elope.tasks.predict import predict_paths

    spec = read_onnx_metadata(served_onnx).spec
    answers = {
        Path(r["path"]).name: r for r in predict_paths(None, [site / n for n in names], model=served_onnx)
    }
    for name in names:
        image, _ = load_image(site / name, draft_size=spec.crop_source)
        answers[name]["input"] = eval_transform(spec.crop_source, spec.mean, spec.std)(image).numpy().ravel()
    return answers


def _differences(driver, name: str, python: dict) -> dict:
    got = call_page(driver, "return await elopeWeb.predictUrl(arguments[0], {withInput: true});", name)
    ours, theirs = got["classes"], python["classes"]
    return {
        "order_equal": [c["index"] for c in ours] == [c["index"] for c in theirs],
        "top1_equal": ours[0]["index"] == theirs[0]["index"],
        "score": max(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs)),
        "box_px": float(np.abs(np.asarray(got["box"]) - np.asarray(python["box"])).max()),
        "input": float(np.abs(np.asarray(got["input"], np.float32) - python["input"]).max()),
        "size": got["size"] == python["size"],
    }


@needs_browser
def test_page_answers_as_predict_model(page, served_onnx: Path) -> None:
    """Same pixels (PNG, small JPEG): the same input to float rounding, the same top-5, scores within 1e-5,
    boxes within 0.01 px. JPEGs Python draft-decodes: input within 4 grey levels, the same top-1, scores
    within 0.01, boxes within 2 % of the photo's side."""
    site, driver = page
    python = _python_answers(served_onnx, site, [*EXACT, *DRAFTED])
    for name in EXACT:
        d = _differences(driver, name, python[name])
        assert d["size"] and d["order_equal"] and d["input"] < 1e-5, (name, d)
        assert d["score"] < 1e-5 and d["box_px"] < 0.01, (name, d)
    for name in DRAFTED:
        d = _differences(driver, name, python[name])
        assert d["size"] and d["top1_equal"] and d["input"] < 4 / 255 / 0.224, (name, d)
        side = max(python[name]["size"])
        assert d["score"] < 0.01 and d["box_px"] < 0.02 * side, (name, d)


def _red_pixel_on_box(driver) -> bool:
    """Whether the canvas has the box colour (#ff3d57) at the middle of the box's left edge."""
    return driver.execute_script(
        """const c = document.getElementById('canvas'); if (c.dataset.boxDrawn !== 'true') return false;
        const [x1, y1, x2, y2] = JSON.parse(c.dataset.box);
        const p = c.getContext('2d').getImageData(Math.min(Math.max(x1, 0), c.width - 1), Math.round((y1 + y2) / 2), 1, 1).data;
        return p[0] > 230 && p[1] < 90 && p[2] > 60 && p[2] < 120;"""
    )


@needs_browser
def test_page_draws_the_box_and_top5_of_an_uploaded_photo(page, served_onnx: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    site, driver = page
    photo_path = site / "tall.png"
    driver.find_element(By.ID, "file").send_keys(str(photo_path))
    WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "status").text in ("done", "failed"))
    assert not driver.find_element(By.ID, "error").text
    expected = _python_answers(served_onnx, site, ["tall.png"])["tall.png"]["classes"]
    rows = driver.find_elements(By.CSS_SELECTOR, "ol#results li .name")
    assert [r.text for r in rows] == [c["class"] for c in expected]  # three classes: all, best first
    assert driver.find_element(By.ID, "top1").text == expected[0]["class"]
    assert "3 classes" in driver.find_element(By.ID, "model").text
    out = Path(os.environ.get("ELOPE_WEB_SCREENSHOT") or tmp_path / "web_page.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out))
    assert _red_pixel_on_box(driver)
    assert out.stat().st_size > 10_000


@needs_browser
@pytest.mark.slow
def test_browser_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/browser.py in a tiny configuration: the four contenders timed, the ratios reported (no
    timing asserted)."""
    from benchmarks import browser as browser_bench

    out = tmp_path / "browser.json"
    args = "--backbone resnet18 --image-size 64 --input-size 64 --num-classes 3 --repeats 1 --warmup 0"
    result = browser_bench.main([*args.split(), "--ort", str(DIST), "--json", str(out)])
    assert set(result["median_ms"]) == {"web_elope", "web_plain", "ort_elope", "ort_plain"}
    assert result["ratio"]["web_elope / web_plain"] > 0 and result["page"]["threads"] == 1
    assert json.loads(out.read_text())["benchmark"] == "browser"


@needs_browser
def test_page_says_why_a_file_is_not_classified(page, tmp_path: Path) -> None:
    """A file the browser cannot decode: the page says so, and no box or classes stay shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, driver = page
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    driver.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "status").text in ("done", "failed"))
    assert driver.find_element(By.ID, "status").text == "failed"
    assert "cannot decode this file as an image" in driver.find_element(By.ID, "error").text
    assert not driver.find_elements(By.CSS_SELECTOR, "ol#results li")
