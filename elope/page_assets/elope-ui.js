// What both web pages share (`elope serve`'s page and `elope web`'s, each with this script inlined): the
// drawing of the photo, its heatmap, its box and label (canvas.dataset.boxDrawn and canvas.dataset.box, the box
// in canvas pixels, say what was drawn; the tests read them), the top classes, the error line and the drop
// zone's wiring, over the elements of elope-main.html.
"use strict";

window.ElopeUI = (function () {
  const $ = (id) => document.getElementById(id);

  function colour(v) {  // dark blue → teal → yellow → red ramp for the heatmap
    const stops = [[0, [20, 30, 90]], [0.35, [20, 140, 160]], [0.65, [250, 220, 60]], [1, [230, 40, 40]]];
    for (let i = 1; i < stops.length; i++) {
      const [t1, c1] = stops[i], [t0, c0] = stops[i - 1];
      if (v <= t1) { const f = (v - t0) / (t1 - t0); return c0.map((c, k) => Math.round(c + f * (c1[k] - c))); }
    }
    return stops[stops.length - 1][1];
  }

  function heatLayer(grid) {  // min-max normalised, coloured, a small canvas scaled up smoothly when drawn
    const h = grid.length, w = grid[0].length, flat = grid.flat();
    const lo = Math.min(...flat), hi = Math.max(...flat), span = hi > lo ? hi - lo : 1;
    const layer = document.createElement("canvas"); layer.width = w; layer.height = h;
    const img = layer.getContext("2d").createImageData(w, h);
    flat.forEach((v, i) => { const c = colour((v - lo) / span); img.data.set([c[0], c[1], c[2], 255], 4 * i); });
    layer.getContext("2d").putImageData(img, 0, 0);
    return layer;
  }

  // Draw `photo` on `canvas` and, when `result` is given (its size [w, h] in the photo's pixels, box
  // [x1, y1, x2, y2], heatmap rows or null, classes best first), its heatmap and box as `show` asks:
  // { heatmap: bool, box: bool } (the page's two check boxes).
  function drawResult(canvas, photo, result, show) {
    if (!photo) return;
    const ctx = canvas.getContext("2d");
    const scale = Math.min(960 / photo.width, 440 / photo.height);  // small photos enlarged, large ones shrunk
    canvas.width = Math.round(photo.width * scale); canvas.height = Math.round(photo.height * scale);
    ctx.drawImage(photo, 0, 0, canvas.width, canvas.height);
    canvas.dataset.boxDrawn = "false";
    const r = result;
    if (!r) return;
    const sx = canvas.width / r.size[0], sy = canvas.height / r.size[1];
    if (show.heatmap && r.heatmap) {
      ctx.save(); ctx.globalAlpha = 0.45; ctx.imageSmoothingEnabled = true;
      ctx.drawImage(heatLayer(r.heatmap), 0, 0, canvas.width, canvas.height); ctx.restore();
    }
    if (show.box) {
      const [x1, y1, x2, y2] = [r.box[0] * sx, r.box[1] * sy, r.box[2] * sx, r.box[3] * sy];
      ctx.lineWidth = Math.max(3, canvas.width / 200); ctx.strokeStyle = "#ff3d57";
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const label = `${r.classes[0].class} ${(100 * r.classes[0].score).toFixed(1)}%`;
      ctx.font = "600 14px system-ui, sans-serif";
      const tw = ctx.measureText(label).width + 10, ty = y1 > 24 ? y1 - 22 : y1;
      ctx.fillStyle = "#ff3d57"; ctx.fillRect(x1, ty, tw, 22);
      ctx.fillStyle = "#fff"; ctx.fillText(label, x1 + 5, ty + 16);
      canvas.dataset.boxDrawn = "true";
      canvas.dataset.box = JSON.stringify([x1, y1, x2, y2].map(Math.round));
    }
  }

  // The answer `r` (classes best first, box) in the prediction card; `details`: the line under it.
  function showResults(r, details) {
    $("top1").textContent = r.classes[0].class;
    $("top1score").textContent = `score ${(100 * r.classes[0].score).toFixed(1)} %`;
    $("results").innerHTML = "";
    for (const c of r.classes) {
      const li = document.createElement("li");
      li.innerHTML = `<div class="row"><span class="name"></span><span class="score"></span></div><div class="bar"><span></span></div>`;
      li.querySelector(".name").textContent = c.class;
      li.querySelector(".score").textContent = `${(100 * c.score).toFixed(1)} %`;
      li.querySelector(".bar span").style.width = `${Math.max(0.5, 100 * c.score).toFixed(1)}%`;
      $("results").appendChild(li);
    }
    $("boxtext").textContent = `box ${r.box.map((v) => Math.round(v)).join(", ")} px`;
    $("details").textContent = details;
  }

  function clearResults() {  // a new photo: the last answer and error gone
    $("error").style.display = "none"; $("status").textContent = "classifying…";
    $("top1").textContent = ""; $("top1score").textContent = ""; $("results").innerHTML = ""; $("boxtext").textContent = "";
  }

  function showPhoto(shown) {  // the canvas, or the placeholder when there is no photo
    $("placeholder").style.display = shown ? "none" : ""; $("canvas").style.display = shown ? "block" : "none";
  }

  function showError(message) {
    $("error").textContent = message; $("error").style.display = "block"; $("status").textContent = "failed";
  }

  // The drop zone and the file input call `handle(file)`; the two check boxes call `draw()`.
  function wire(handle, draw) {
    const drop = $("drop"), input = $("file");
    drop.addEventListener("click", () => input.click());
    drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
    input.addEventListener("change", () => handle(input.files[0]));
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); handle(e.dataTransfer.files[0]); });
    $("heat").addEventListener("change", draw);
    $("showbox").addEventListener("change", draw);
  }

  // drawResult on the page's canvas with the check boxes' states.
  function drawAnswer(photo, result) {
    drawResult($("canvas"), photo, result, { heatmap: $("heat").checked, box: $("showbox").checked });
  }

  return { drawResult, drawAnswer, showResults, clearResults, showPhoto, showError, wire };
})();
