// The drawing both web pages share (`elope serve`'s page, inlined into GET /, and `elope web`'s static page):
// the photo scaled to the stage, the heatmap over it, the box and its label. canvas.dataset.boxDrawn and
// canvas.dataset.box (the box in canvas pixels) say what was drawn; the tests read them.
"use strict";

window.ElopeDraw = (function () {
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

  return { drawResult };
})();
