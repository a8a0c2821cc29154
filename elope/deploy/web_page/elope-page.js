// The page of `elope web`: the exported one-pass graph (model.onnx) run by onnxruntime-web (WebAssembly) in the
// browser, its metadata (model.json: class names, input side N, mean / std, τ) read beside it. A photo is
// decoded by the browser (EXIF orientation applied, no colour conversion, alpha over white), resized and
// normalised by elope-preprocess.js exactly as `elope predict --model` does in Python, and the top-5 and the
// box are drawn on it by elope-ui.js (inlined in index.html, shared with `elope serve`'s page). window.elopeWeb is what the
// tests and the benchmark drive: predictBlob, predictUrl, time.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const P = window.ElopePreprocess, UI = window.ElopeUI;
  let photo = null, answer = null;
  $("status").textContent = "loading model…";

  ort.env.wasm.wasmPaths = new URL("./", document.baseURI).href;
  ort.env.wasm.numThreads = window.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

  async function loadModel() {
    const meta = await (await fetch("model.json")).json();
    const session = await ort.InferenceSession.create("model.onnx", {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    return { meta, session };
  }

  const ready = loadModel();

  // The photo's pixels as the browser decodes them: upright, not colour-managed, alpha over white.
  async function decode(blob) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
    } catch (e) {
      throw new Error(`the browser cannot decode this file as an image (${e.message})`);
    }
    const work = document.createElement("canvas");
    work.width = bitmap.width; work.height = bitmap.height;
    const c = work.getContext("2d", { willReadFrequently: true });
    c.fillStyle = "#fff"; c.fillRect(0, 0, work.width, work.height);
    c.drawImage(bitmap, 0, 0);
    const rgba = c.getImageData(0, 0, work.width, work.height, { colorSpace: "srgb" }).data;
    return { bitmap, rgb: P.dropAlpha(rgba), width: work.width, height: work.height };
  }

  // The graph's input for decoded pixels: (B, 3, N, N), the image repeated for a fixed batch B > 1.
  function inputTensor(rgb, width, height, meta) {
    const n = meta.spec.crop_source;
    const one = P.normalise(P.resizeRGB(rgb, width, height, n), n, meta.spec.mean, meta.spec.std);
    const batch = meta.batch === "dynamic" ? 1 : meta.batch;
    const data = new Float32Array(batch * one.length);
    for (let b = 0; b < batch; b++) data.set(one, b * one.length);
    return { one, tensor: new ort.Tensor("float32", data, [batch, 3, n, n]) };
  }

  async function run(tensor) {
    const { session } = await ready;
    return session.run({ [session.inputNames[0]]: tensor });
  }

  // Top classes, box (pixels of the photo) and heatmap of the graph's outputs for one image.
  function answerOf(out, meta, width, height, top) {
    const c = meta.classes.length, scores = out.scores.data.slice(0, c);
    const order = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b).slice(0, top);
    const classes = order.map((i) => ({ class: meta.classes[i], index: i, score: scores[i] }));
    const box = P.originalBox(out.boxes.data.slice(0, 4), meta.spec.crop_source, width, height);
    let heatmap = null;
    if (out.heatmaps) {
      const [, , h, w] = out.heatmaps.dims;
      heatmap = Array.from({ length: h }, (_, y) => Array.from(out.heatmaps.data.slice(y * w, (y + 1) * w)));
    }
    return { classes, box, size: [width, height], heatmap };
  }

  async function predictBlob(blob, options = {}) {
    const { meta } = await ready;
    const start = performance.now();
    const image = await decode(blob);
    const { one, tensor } = inputTensor(image.rgb, image.width, image.height, meta);
    const graphStart = performance.now();
    const out = await run(tensor);
    const graphMs = performance.now() - graphStart;
    const result = answerOf(out, meta, image.width, image.height, options.top || 5);
    result.graph_ms = graphMs;
    result.elapsed_ms = performance.now() - start;
    if (options.withInput) result.input = Array.from(one);
    result.bitmap = image.bitmap;
    return result;
  }

  async function predictUrl(url, options = {}) {
    const result = await predictBlob(await (await fetch(url)).blob(), options);
    delete result.bitmap;  // not serialisable: what selenium gets back is plain data
    return result;
  }

  // Median wall time (ms) of `repeats` runs of the graph on one random input, after `warmup` runs.
  async function time(repeats = 5, warmup = 1) {
    const { meta } = await ready;
    const n = meta.spec.crop_source, batch = meta.batch === "dynamic" ? 1 : meta.batch;
    const data = Float32Array.from({ length: batch * 3 * n * n }, () => Math.random() * 2 - 1);
    const tensor = new ort.Tensor("float32", data, [batch, 3, n, n]);
    for (let i = 0; i < warmup; i++) await run(tensor);
    const times = [];
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now(); await run(tensor); times.push(performance.now() - t0);
    }
    const sorted = [...times].sort((a, b) => a - b);
    return { times_ms: times, median_ms: sorted[Math.floor(sorted.length / 2)], threads: ort.env.wasm.numThreads };
  }

  function draw() { UI.drawAnswer(photo, answer); }

  async function handle(file) {
    if (!file) return;
    answer = null; UI.clearResults();
    try {
      const r = await predictBlob(file);
      photo = r.bitmap; answer = r;
      UI.showPhoto(true);
      UI.showResults(r, `${file.name} · ${r.size[0]}×${r.size[1]} px · graph ${r.graph_ms.toFixed(0)} ms, ` +
        `in all ${r.elapsed_ms.toFixed(0)} ms (in this browser)`);
      draw();
      $("status").textContent = "done";
    } catch (e) {
      photo = null; UI.showPhoto(false); UI.showError(e.message);
    }
  }

  ready.then(({ meta }) => {
    const s = meta.spec;
    $("model").textContent = `${meta.file || "model.onnx"} · ${meta.classes.length} classes · input ${s.crop_source} px · ` +
      `τ ${s.tau} · onnxruntime-web ${ort.env.versions ? ort.env.versions.web || "" : ""} (wasm, ${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads > 1 ? "s" : ""})`;
    $("status").textContent = "ready: no photo yet";
  }).catch((e) => {
    $("model").textContent = "model not loaded";
    UI.showError(`cannot load the model: ${e.message} (serve this folder over http, e.g. python -m http.server; file:// cannot load WebAssembly)`);
  });

  UI.wire(handle, draw);

  window.elopeWeb = { ready: ready.then(() => true), predictBlob, predictUrl, time };
})();
