"""The pictures and the page of ``evaluate --report`` (:mod:`elope.tasks.report`): the confusion matrix at
any number of classes, the gallery of misclassified images, one self-contained HTML file."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from elope.data.io import load_image
from elope.evaluation.predictor import Predictor

__all__ = ["confusion_figure", "data_uri", "gallery_pictures", "render_report"]


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], pairs: Sequence[dict[str, Any]]) -> Figure:
    """The confusion matrix in class order on a log colour scale (zeros white), so that single confusions
    stay visible beside a full diagonal at 200 classes; every tick named up to 40 classes, else every
    ⌈C/40⌉-th (by index); the most confused pairs circled and labelled ``true → predicted (count)``."""
    n = len(classes)
    side = min(16.0, max(6.0, 0.08 * n + 4))
    fig = Figure(figsize=(side + 3, side), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    shown = np.ma.masked_equal(matrix.astype(float), 0)
    vmax = max(float(matrix.max()), 1.0)
    image = ax.imshow(
        shown, cmap="viridis", norm=LogNorm(vmin=1, vmax=max(vmax, 1.5)), interpolation="nearest"
    )
    fig.colorbar(image, cax=fig.add_axes((0.76, 0.12, 0.02, 0.45)), label="images (log scale)")
    step = max(1, -(-n // 40))
    ticks = list(range(0, n, step))
    labels = [str(classes[i])[:18] if step == 1 else str(i) for i in ticks]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=6 if n > 20 else 8)
    ax.set_yticks(ticks, labels, fontsize=6 if n > 20 else 8)
    ax.set_xlabel("predicted class" + ("" if step == 1 else " (index; names in per_class.csv)"))
    ax.set_ylabel("true class")
    for rank, p in enumerate(pairs[:5]):
        ax.plot(p["j"], p["i"], "o", mfc="none", mec="red", ms=10, mew=1.5)
        ax.annotate(
            f"{rank + 1}. {str(p['true'])[:16]} → {str(p['predicted'])[:16]} ({p['count']})",
            (p["j"], p["i"]),
            xytext=(1.02, 0.95 - 0.06 * rank),
            textcoords="axes fraction",
            fontsize=8,
            color="red",
            arrowprops={"arrowstyle": "-", "color": "red", "lw": 0.6},
        )
    ax.set_title(f"confusion matrix, {n} classes (rows: true, columns: predicted)")
    fig.subplots_adjust(left=0.16, right=0.7, bottom=0.18, top=0.94)
    return fig


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``: an image inside the page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


#: the side (pixels) a smaller image is enlarged to in the gallery
GALLERY_SIDE = 320


def gallery_pictures(predictor: Predictor, items: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(data URI, caption)`` per misclassified image: its heatmap, box and top 3 drawn as ``predict
    --save-vis`` draws them (the prediction of ``predictor`` on the image, read as ``predict`` reads it)."""
    from elope.tasks.predict import predict_image
    from elope.tasks.visualize import overlay_heatmap

    pictures = []
    for item in items:
        image, stored = load_image(item["path"], draft_size=predictor.spec.crop_source)
        classes, box, heatmap = predict_image(predictor, image, top=3, size=stored)
        zoom = max(1.0, GALLERY_SIDE / max(image.size))  # small images drawn larger: a legible top 3
        if zoom > 1:
            image = image.resize((round(image.width * zoom), round(image.height * zoom)))
        sx, sy = image.width / stored[0], image.height / stored[1]
        shown = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
        fig = overlay_heatmap(image, heatmap, shown, None, None)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        top3 = "; ".join(f"{i + 1}. {c['class']} {c['score']:.2f}" for i, c in enumerate(classes))
        caption = f"true: {item['true']} — {top3} — {Path(item['path']).name}"
        pictures.append((data_uri(buffer.getvalue()), caption))
    return pictures


def _lines(caption: str) -> str:
    """A gallery caption, escaped, one line per part (true class, each of the top 3, file)."""
    return "<br>".join(html.escape(part) for part in caption.replace("; ", " — ").split(" — "))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child{text-align:left}.gallery{display:flex;flex-wrap:wrap;gap:12px}
.gallery figure{margin:0;width:260px}.gallery img{width:260px}figcaption{font-size:12px}
.big{font-size:28px;font-weight:600;margin-right:2em}.scroll{max-height:420px;overflow:auto;display:inline-block}"""


def _rows_html(rows: Sequence[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(str(r['class']))}</td><td>{_pct(r['precision'])}</td><td>{_pct(r['recall'])}"
        f"</td><td>{_pct(r['f1'])}</td><td>{r['support']}</td></tr>"
        for r in rows
    )
    return "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>" + body


def _localization_html(block: dict[str, Any] | None) -> str:
    """The localization metrics of the field (``evaluate``'s ``localization``), a table; empty without."""
    rows = []
    for name, label in (("module", "localization module"), ("mean_map", "teacher's mean feature map")):
        m = (block or {}).get(name)
        if not m:
            continue
        v2 = m["maxboxacc_v2"] or {}
        per = v2.get("per_iou") or {}
        levels = "".join(
            f"<td>{_pct(per[k]['accuracy'])} (τ {per[k]['tau']:g})</td>" if k in per else "<td>—</td>"
            for k in ("0.3", "0.5", "0.7")
        )
        rows.append(
            f"<tr><td>{label}</td><td>{_pct(m['gt_known'])}</td><td>{_pct(m['top1_loc'])}</td>"
            f"<td>{_pct(v2.get('value'))}</td>{levels}</tr>"
        )
    if not rows:
        return ""
    split = next(
        (b["maxboxacc_v2"]["selection_split"] for b in block.values() if b and b["maxboxacc_v2"]), None
    )
    where = f"chosen on the {html.escape(split)} split" if split else "not measured"
    return (
        "<h2>Localization</h2><p>GT-known: IoU ≥ 0.5 with the ground-truth box; top-1 loc: that and the "
        "right top-1 class; MaxBoxAccV2 (Choe et al., CVPR 2020): box accuracy at IoU 0.3 / 0.5 / 0.7, each at "
        f"its heatmap threshold τ {where}, never on the evaluated split, averaged.</p><table><tr><th>boxes</th>"
        "<th>GT-known</th><th>top-1 loc</th><th>MaxBoxAccV2</th><th>IoU ≥ 0.3</th><th>IoU ≥ 0.5</th>"
        f"<th>IoU ≥ 0.7</th></tr>{''.join(rows)}</table>"
    )


def render_report(
    summary: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    pairs: Sequence[dict[str, Any]],
    confusion_png: Path,
    pictures: Sequence[tuple[str, str]],
) -> str:
    """The page: headline numbers, the worst pairs, per-class table, the confusion matrix, the gallery."""
    extra = summary.get("evaluate") or {}
    where = html.escape(f"{extra.get('dataset', '')} / {extra.get('split', '')} — {extra.get('run', '')}")
    pair_items = "".join(
        f"<li>{html.escape(str(p['true']))} → {html.escape(str(p['predicted']))}: {p['count']}</li>"
        for p in pairs
    )
    figures = "".join(
        f'<figure><img src="{uri}" alt="misclassified"><figcaption>{_lines(c)}</figcaption></figure>'
        for uri, c in pictures
    )
    confusion = data_uri(confusion_png.read_bytes())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>elope evaluation report</title>
<style>{_STYLE}</style></head><body>
<h1>Evaluation report</h1><p>{where}</p>
<p><span class="big">top-1 {_pct(summary["top1"])}</span><span class="big">top-5 {_pct(summary["top5"])}</span>
mean per-class accuracy {_pct(summary["mean_per_class"])}, {summary["num_images"]} images</p>
{_localization_html(extra.get("localization"))}
<h2>Most confused pairs (true → predicted)</h2><ol>{pair_items or "<li>none</li>"}</ol>
<h2>Confusion matrix</h2><p>confusion.csv holds every count.</p><img src="{confusion}" alt="confusion matrix"
 style="max-width:100%">
<h2>Most confidently misclassified images</h2><p>Each with the heatmap of the localization module and its
box (green; the whole image for a model without one) and the top 3.</p>
<div class="gallery">{figures or "<p>none (or no model to draw them with)</p>"}</div>
<h2>Per class</h2><p>per_class.csv holds the same.</p><div class="scroll"><table>{_rows_html(rows)}</table></div>
</body></html>
"""
