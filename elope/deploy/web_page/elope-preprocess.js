// The input of the exported graph from decoded pixels, as `elope predict --model` makes it in Python:
// resized to N x N with Pillow's bilinear filter (Image.resize(BILINEAR), antialiased when shrinking: what
// torchvision's Resize calls on a PIL image), then (x / 255 - mean) / std per channel, laid out (1, 3, N, N).
//
// The resize is Pillow's own algorithm (src/libImaging/Resample.c: precompute_coeffs, the 8-bit fixed-point
// coefficients of normalize_coeffs_8bpc, a horizontal then a vertical pass, each rounded and clipped to
// 8 bits), so that the same RGB pixels give the same bytes as in Python. A browser's canvas resize
// (drawImage to a smaller canvas) filters differently and is not used.
//
// No DOM here: the same file runs in node (module.exports) for its own checks.
"use strict";

(function (root) {
  const PRECISION_BITS = 32 - 8 - 2;
  const ONE = 2 ** PRECISION_BITS;

  function bilinear(x) {
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
  }

  // Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1).
  function coefficients(inSize, outSize) {
    const scale = inSize / outSize;
    const filterscale = scale < 1 ? 1 : scale;
    const support = 1 * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const kk = new Int32Array(outSize * ksize);
    const weights = new Float64Array(ksize);
    const ss = 1 / filterscale;
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      let xmin = Math.trunc(center - support + 0.5);
      if (xmin < 0) xmin = 0;
      let xmax = Math.trunc(center + support + 0.5);
      if (xmax > inSize) xmax = inSize;
      xmax -= xmin;
      let ww = 0;
      for (let x = 0; x < xmax; x++) {
        const w = bilinear((x + xmin - center + 0.5) * ss);
        weights[x] = w;
        ww += w;
      }
      for (let x = 0; x < xmax; x++) {
        const v = ww !== 0 ? weights[x] / ww : weights[x];
        kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
      }
      bounds[2 * xx] = xmin;
      bounds[2 * xx + 1] = xmax;
    }
    return { ksize, bounds, kk };
  }

  function clip8(sum) {
    const v = Math.floor(sum / ONE);
    return v < 0 ? 0 : v > 255 ? 255 : v;
  }

  // One pass over 3-channel pixels (width x height, row-major RGB bytes) along x (horizontal) or y.
  function pass(src, width, height, c, horizontal, firstRow, rows) {
    const outW = horizontal ? c.bounds.length / 2 : width;
    const outH = horizontal ? rows : c.bounds.length / 2;
    const out = new Uint8ClampedArray(outW * outH * 3);
    const { ksize, bounds, kk } = c;
    for (let yy = 0; yy < outH; yy++) {
      for (let xx = 0; xx < outW; xx++) {
        const i = horizontal ? xx : yy;
        const min = bounds[2 * i], count = bounds[2 * i + 1], k = i * ksize;
        let s0 = ONE / 2, s1 = ONE / 2, s2 = ONE / 2;
        for (let t = 0; t < count; t++) {
          const p = horizontal ? ((yy + firstRow) * width + min + t) * 3 : ((min + t) * width + xx) * 3;
          const w = kk[k + t];
          s0 += src[p] * w;
          s1 += src[p + 1] * w;
          s2 += src[p + 2] * w;
        }
        const o = (yy * outW + xx) * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    }
    return out;
  }

  // RGB bytes (width x height) -> RGB bytes (size x size), as Pillow's Image.resize((size, size), BILINEAR):
  // horizontal pass first (on the rows the vertical pass reads), unless the height shrinks by more than
  // twice what the width does (ImagingResampleInner since Pillow 12: the vertical pass first, then).
  function resizeRGB(rgb, width, height, size) {
    const needH = width !== size, needV = height !== size;
    const cx = coefficients(width, size), cy = coefficients(height, size);
    const horizontalFirst = !(height - size > 0 && height - size > (width - size) * 2);
    if (!horizontalFirst) {
      const tall = needV ? pass(rgb, width, height, cy, false, 0, 0) : rgb;
      return needH ? pass(tall, width, size, cx, true, 0, size) : tall;
    }
    let pixels = rgb, w = width, h = height;
    if (needH) {
      const first = cy.bounds[0];
      const last = cy.bounds[2 * size - 2] + cy.bounds[2 * size - 1];
      if (needV) for (let i = 0; i < size; i++) cy.bounds[2 * i] -= first;
      pixels = pass(pixels, w, h, cx, true, needV ? first : 0, needV ? last - first : h);
      w = size;
      h = needV ? last - first : h;
    }
    if (needV) pixels = pass(pixels, w, h, cy, false, 0, 0);
    return pixels;
  }

  // RGBA bytes (canvas ImageData; alpha already composited) -> RGB bytes.
  function dropAlpha(rgba) {
    const n = rgba.length / 4, rgb = new Uint8ClampedArray(n * 3);
    for (let i = 0; i < n; i++) {
      rgb[3 * i] = rgba[4 * i];
      rgb[3 * i + 1] = rgba[4 * i + 1];
      rgb[3 * i + 2] = rgba[4 * i + 2];
    }
    return rgb;
  }

  // RGB bytes (size x size) -> Float32Array (3, size, size): x * (1/255) / std - mean / std, in float32 as
  // the Python reader computes it (elope.serve.images.Preprocess.scale_and_bias).
  function normalise(rgb, size, mean, std) {
    const plane = size * size, out = new Float32Array(3 * plane);
    for (let ch = 0; ch < 3; ch++) {
      const scale = Math.fround(Math.fround(1 / 255) / Math.fround(std[ch]));
      const bias = Math.fround(Math.fround(-Math.fround(mean[ch])) / Math.fround(std[ch]));
      for (let i = 0; i < plane; i++) out[ch * plane + i] = Math.fround(Math.fround(rgb[3 * i + ch] * scale) + bias);
    }
    return out;
  }

  // The box of the graph (pixels of the N x N input) in pixels of the original image (W, H), clamped
  // (elope.tasks.evaluate.original_box).
  function originalBox(box, size, width, height) {
    const f = [width / size, height / size, width / size, height / size];
    const lim = [width, height, width, height];
    return Array.from(box, (v, i) => Math.min(Math.max(v * f[i], 0), lim[i]));
  }

  const api = { coefficients, resizeRGB, dropAlpha, normalise, originalBox };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.ElopePreprocess = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
