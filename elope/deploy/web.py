"""A static web page that runs an exported ONNX graph in the browser (``elope web``): no server beyond files.

The folder holds the page (``index.html``, ``elope-page.js``, ``elope-preprocess.js``: the package's files in
``elope/deploy/web_page/``, ``index.html`` with the look, cards and script it shares with ``elope serve``'s page
filled in from ``elope/page_assets/``), the graph (``model.onnx``, the exported file's bytes), its checked metadata
(``model.json``: class names, the spec with the input side N, mean / std and τ; onnxruntime-web does not
read ONNX metadata) and onnxruntime-web's WebAssembly build (:data:`ORT_FILES`), copied from an installed
npm package: ``npm install onnxruntime-web@`` :data:`ORT_WEB_VERSION`. The page resizes a photo with
Pillow's bilinear algorithm ported to JavaScript and normalises it as ``elope predict --model`` does, so the
answers agree (docs/usage.md, "In the browser", states the tolerance). Any static file server serves it
(``python -m http.server``); Chromium does not load WebAssembly from ``file://``.

Every file is written through :mod:`elope.writer`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from elope import writer
from elope.exported import METADATA_KEY, ExportMetadata, MetadataError, parse_metadata
from elope.page_assets import fill_page

__all__ = [
    "ORT_FILES",
    "ORT_WEB_VERSION",
    "PAGE_FILES",
    "OrtWebMissingError",
    "WebPage",
    "build_web_page",
    "find_ort_dist",
    "read_onnx_metadata",
]

#: The onnxruntime-web release the page is made and tested with (``npm install onnxruntime-web@X``).
ORT_WEB_VERSION = "1.31.1"
#: onnxruntime-web's files the page loads: the wasm-only script (global ``ort``), its loader and binary.
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: The page's own files (package data; ``index.html`` with the files it shares with ``elope serve``'s page
#: filled in, :func:`elope.page_assets.fill_page`).
PAGE_FILES = ("index.html", "elope-page.js", "elope-preprocess.js")
MODEL_FILE, METADATA_FILE = "model.onnx", "model.json"
ENV_VARIABLE = "ELOPE_ORT_WEB"
INSTALL = f"npm install onnxruntime-web@{ORT_WEB_VERSION}"


class OrtWebMissingError(FileNotFoundError):
    """onnxruntime-web's files are not where they were looked for (the message names the fix)."""


@dataclass(frozen=True)
class WebPage:
    """What :func:`build_web_page` wrote: the ``folder``, its ``files``, the graph's ``metadata``, the
    onnxruntime-web ``ort_version`` copied (None when its package.json is absent)."""

    folder: Path
    files: tuple[Path, ...]
    metadata: ExportMetadata
    ort_version: str | None


def _dist_of(path: Path) -> Path | None:
    """``path``'s onnxruntime-web ``dist`` folder: ``path`` itself, the package, or a folder above
    ``node_modules``."""
    for candidate in (path, path / "dist", path / "node_modules" / "onnxruntime-web" / "dist"):
        if all((candidate / name).is_file() for name in ORT_FILES):
            return candidate
    return None


def find_ort_dist(given: str | os.PathLike[str] | None = None) -> Path:
    """onnxruntime-web's ``dist`` folder: from ``given`` (the dist folder, the package folder, or a folder
    holding ``node_modules``), else ``$ELOPE_ORT_WEB``, else ``./node_modules/onnxruntime-web``.

    Raises:
        OrtWebMissingError: the files are not there; the message names the folder and the fix.
    """
    source = given if given is not None else os.environ.get(ENV_VARIABLE)
    where = Path(source) if source else Path.cwd()
    dist = _dist_of(where)
    if dist is not None:
        return dist
    missing = ", ".join(ORT_FILES)
    raise OrtWebMissingError(
        f"onnxruntime-web not found in {where} (looked for {missing} there, in dist/ and in "
        f"node_modules/onnxruntime-web/dist/): run `{INSTALL}` there (or `npm install --prefix DIR "
        f"onnxruntime-web@{ORT_WEB_VERSION}` and pass --ort DIR)"
    )


def ort_package_version(dist: Path) -> str | None:
    """The version in the package.json beside ``dist`` (None when unreadable)."""
    try:
        return str(json.loads((dist.parent / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_onnx_metadata(path: str | os.PathLike[str]) -> ExportMetadata:
    """The checked ``elope`` metadata of an exported ONNX file (:func:`elope.exported.parse_metadata`,
    against the graph's outputs); a TorchScript file or a foreign ONNX file is refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass an ONNX file written by `elope export`")
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise MetadataError(
                f"{path} is a TorchScript archive; the browser runs ONNX: `elope export --format onnx`"
            )
    import onnx  # the deploy extra

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx's DecodeError and friends
        raise MetadataError(
            f"{path} is not an ONNX file ({str(error)[:80]}); export it with `elope export`"
        ) from None
    entries = {p.key: p.value for p in proto.metadata_props}
    outputs = [o.name for o in proto.graph.output]
    return parse_metadata(entries.get(METADATA_KEY), str(path), graph_outputs=outputs)


def page_metadata(meta: ExportMetadata, model: Path, data: bytes) -> dict[str, object]:
    """``model.json``: the file's metadata as exported, plus the source file's name and sha256 (the spec
    normalised by :meth:`elope.spec.ModelSpec.to_dict`, also for a version-1 file)."""
    return {
        **meta.raw,
        "spec": meta.spec.to_dict(),
        "file": model.name,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def build_web_page(
    model: str | os.PathLike[str], out: str | os.PathLike[str], ort: str | os.PathLike[str] | None = None
) -> WebPage:
    """Write the static page for the exported ONNX ``model`` into the folder ``out`` (see the module's
    notes), with onnxruntime-web's files from ``ort`` (:func:`find_ort_dist`)."""
    model, out = Path(model), Path(out)
    meta = read_onnx_metadata(model)
    dist = find_ort_dist(ort)
    data = model.read_bytes()
    writer.make_folder(out)
    written = [writer.write_bytes(out / MODEL_FILE, data)]
    text = json.dumps(page_metadata(meta, model, data), indent=1, allow_nan=False)
    written.append(writer.write_text(out / METADATA_FILE, text + "\n"))
    page = resources.files("elope.deploy") / "web_page"
    index = fill_page((page / "index.html").read_text(encoding="utf-8"), "elope/deploy/web_page/index.html")
    written.append(writer.write_text(out / "index.html", index))
    copied = [name for name in PAGE_FILES if name != "index.html"]  # as they are in the package
    written += [writer.write_bytes(out / name, (page / name).read_bytes()) for name in copied]
    written += [writer.write_bytes(out / name, (dist / name).read_bytes()) for name in ORT_FILES]
    return WebPage(out, tuple(written), meta, ort_package_version(dist))
