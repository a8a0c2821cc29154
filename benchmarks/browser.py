"""Latency of the exported one-pass pipeline in the browser (``elope web``: onnxruntime-web, WebAssembly, in
headless Chromium) against a plain ResNet-50 in the same page, and both in native onnxruntime for scale.

Contenders, random weights (latency does not depend on them), batch 1, one input of side ``--input-size``:

* ``web_plain``: torchvision ``backbone(num_classes=C)`` exported to ONNX at the input side N, run by
  onnxruntime-web (wasm) in the page of ``elope web`` — the baseline;
* ``web_elope``: the ELoPE pipeline exported by :func:`elope.deploy.export.export_model` (input N, classifier
  side ``--image-size``; localization module, box, crop, backbone, GKMP, embedding, classifier, softmax: one
  graph), run the same way in the same page;
* ``ort_plain`` / ``ort_elope``: the same two files in native onnxruntime (CPU, ``--threads`` threads).

The two browser contenders alternate (A B, B A, ...) in one page; so do the native ones. Reported: medians,
the paired ratio ``web_elope / web_plain`` (what the pipeline costs over the plain network in the browser)
and ``web / native`` per model; and the page's whole answer for a 640x480 JPEG (decode, the resize and
normalisation in JavaScript, the graph). onnxruntime-web runs one thread: a page served without
cross-origin isolation headers (a plain static server) cannot start WebAssembly threads.

Needs Debian's ``chromium`` and ``chromium-driver``, selenium, and onnxruntime-web
(``npm install onnxruntime-web@1.31.1``; ``--ort`` or ``$ELOPE_ORT_WEB`` names where).

    python -m benchmarks.browser --ort .ci/web                     # resnet50, 224 px, 5 repeats
    python -m benchmarks.browser --ort .ci/web --json docs/experiments/cpu/browser.json
"""

from __future__ import annotations

import argparse
import functools
import io
import shutil
import statistics
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.common import benchmark_main, environment, interleaved, measuring, paired_ratio
from benchmarks.export import export_plain
from benchmarks.inference import build_models
from elope.deploy.export import export_model
from elope.nn.backbones import TORCHVISION_BACKBONES

TIMING_SCRIPT = """
const [repeats, warmup, side] = arguments;
await elopeWeb.ready;  // the page's own session first: onnxruntime-web initialises its WebAssembly once
const make = (f) => ort.InferenceSession.create(f, {executionProviders: ["wasm"], graphOptimizationLevel: "all"});
const sessions = {web_elope: await make("model.onnx"), web_plain: await make("plain.onnx")};
const data = Float32Array.from({length: 3 * side * side}, (_, i) => Math.sin(i));
const x = new ort.Tensor("float32", data, [1, 3, side, side]);
const run = (s) => s.run({[s.inputNames[0]]: x});
for (const name in sessions) for (let i = 0; i < warmup; i++) await run(sessions[name]);
const times = {web_elope: [], web_plain: []};
for (let r = 0; r < repeats; r++) {
  for (const name of (r % 2 ? ["web_plain", "web_elope"] : ["web_elope", "web_plain"])) {
    const t0 = performance.now(); await run(sessions[name]); times[name].push((performance.now() - t0) / 1e3);
  }
}
const answer = await elopeWeb.predictUrl("photo.jpg");
return {times, threads: ort.env.wasm.numThreads, ort_web: ort.env.versions.web, agent: navigator.userAgent,
        answer_ms: answer.elapsed_ms, answer_graph_ms: answer.graph_ms};
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - http.server's own class attribute, extended
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """``folder`` served as static files on a free loopback port, in a thread (what any static host does):
    its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def chromium_paths() -> tuple[str | None, str | None]:
    """Debian's chromium and chromium-driver, or None where missing."""
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def chromium(width: int = 1200, height: int = 880) -> Any:
    """Headless Chromium driven by selenium (chromium-driver), scripts allowed 10 minutes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths()
    if not (binary and driver_path):
        raise SystemExit(
            "needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(600)
    return driver


def call_page(driver: Any, body: str, *args: Any) -> Any:
    """Run the async JavaScript ``body`` (it may ``await``; ``arguments`` are ``args``) in the page and
    return its value; a rejection becomes a RuntimeError with the page's message."""
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"(async function () {{ {body} }}).apply(null, Array.from(arguments).slice(0, -1))"
        ".then((v) => done({ok: v}), (e) => done({error: String(e)}));",
        *args,
    )
    if "error" in result:
        raise RuntimeError(f"the page failed: {result['error']}")
    return result["ok"]


def _site(folder: Path, o: dict[str, Any]) -> Path:
    """The page of the exported pipeline (``elope web``), the plain network beside it, and a photo."""
    from PIL import Image

    from elope.deploy.web import build_web_page

    model, baseline = build_models(o["backbone"], o["num_classes"], o["image_size"])
    model.spec = model.spec.replace(crop_source=o["input_size"])
    classes = [str(i) for i in range(o["num_classes"])]
    elope_file = export_model(model, folder / "elope.onnx", classes=classes, batch=1)
    site = folder / "site"
    build_web_page(elope_file, site, o["ort"])
    export_plain(baseline, site / "plain.onnx", o["input_size"])
    photo = io.BytesIO()
    Image.effect_mandelbrot((640, 480), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(photo, "JPEG")
    (site / "photo.jpg").write_bytes(photo.getvalue())
    return site


def _native(site: Path, o: dict[str, Any]) -> dict[str, list[float]]:
    """The same two files in native onnxruntime (CPU), interleaved."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = o["threads"] or 0
    make = functools.partial(ort.InferenceSession, sess_options=options, providers=["CPUExecutionProvider"])
    sessions = {"ort_elope": make(str(site / "model.onnx")), "ort_plain": make(str(site / "plain.onnx"))}
    x = np.sin(np.arange(3 * o["input_size"] ** 2, dtype=np.float32)).reshape(1, 3, o["input_size"], -1)
    contenders = {name: lambda s=s: s.run(None, {s.get_inputs()[0].name: x}) for name, s in sessions.items()}
    return dict(interleaved(contenders, repeats=o["repeats"], warmup=o["warmup"]))


def run(
    backbone: str = "resnet50",
    image_size: int = 224,
    input_size: int | None = None,
    num_classes: int = 200,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = 1,
    flush_denormal: bool = True,
    ort: str | None = None,
) -> dict[str, Any]:
    """The whole benchmark; returns a JSON-able dict."""
    import onnxruntime

    o = dict(locals(), input_size=input_size or image_size)
    with measuring(threads, flush_denormal), tempfile.TemporaryDirectory(prefix="elope-browser-") as tmp:
        site = _site(Path(tmp), o)
        with static_server(site) as url:
            driver = chromium()
            try:
                driver.get(url + "/")
                page = call_page(driver, TIMING_SCRIPT, o["repeats"], o["warmup"], o["input_size"])
            finally:
                driver.quit()
        times = {**page.pop("times"), **_native(site, o)}
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    pairs = {
        "web_elope / web_plain": ("web_elope", "web_plain"),
        "ort_elope / ort_plain": ("ort_elope", "ort_plain"),
        "web_elope / ort_elope": ("web_elope", "ort_elope"),
        "web_plain / ort_plain": ("web_plain", "ort_plain"),
    }
    return {
        "benchmark": "browser",
        **{k: o[k] for k in ("backbone", "image_size", "input_size", "num_classes", "repeats", "warmup")},
        "native_threads": threads,
        "onnxruntime": onnxruntime.__version__,
        "page": page,
        "environment": environment(),
        "median_ms": medians,
        "times_s": times,
        "ratio": {label: paired_ratio(times[a], times[b]) for label, (a, b) in pairs.items()},
    }


def report(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    env, page, ms = result["environment"], result["page"], result["median_ms"]
    return "\n".join(
        [
            f"browser: onnxruntime-web {page['ort_web']} (wasm, {page['threads']} thread) in headless Chromium "
            f"vs onnxruntime {result['onnxruntime']} (CPU, {result['native_threads']} thread), "
            f"{result['backbone']}, input {result['input_size']} px, classifier {result['image_size']} px, "
            f"{result['num_classes']} classes, batch 1",
            f"machine: {env['cpu']}, nproc {env['nproc']}, load average {env.get('loadavg_1min', float('nan')):.1f}",
            f"medians ({result['repeats']} interleaved repeats): "
            + ", ".join(f"{name} {value:.0f} ms" for name, value in ms.items()),
            "paired ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in result["ratio"].items()),
            f"the page's whole answer for a 640x480 JPEG: {page['answer_ms']:.0f} ms "
            f"(graph {page['answer_graph_ms']:.0f} ms)",
        ]
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="resnet50", choices=sorted(TORCHVISION_BACKBONES))
    parser.add_argument("--image-size", type=int, default=224, help="classifier input (crop size)")
    parser.add_argument(
        "--input-size", type=int, default=None, help="graph input N of both models (default: --image-size)"
    )
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per contender")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per contender first")
    parser.add_argument("--ort", default=None, help="where onnxruntime-web is installed (elope web --ort)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report, threads=1)


if __name__ == "__main__":
    main()
