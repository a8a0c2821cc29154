"""What both web pages share, kept once: the look (``elope-page.css``), the body's photo and prediction
cards (``elope-main.html``) and the script that draws the answer and wires the cards (``elope-ui.js``:
``ElopeUI.drawResult`` and friends). ``elope serve``'s page (:func:`elope.serve.app.page_html`) and ``elope
web``'s ``index.html`` (:func:`elope.deploy.web.build_web_page`) are templates with one ``{{name}}`` mark per
shared file, filled by :func:`fill_page`: each page stays one self-contained HTML document. Base layer:
torch-free, it imports nothing of elope, so that both layers may read it.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["SHARED_FILES", "fill_page", "read_shared"]

#: The shared files (package data beside this module), each filled in at its ``{{name}}`` mark.
SHARED_FILES = ("elope-page.css", "elope-main.html", "elope-ui.js")


def read_shared(name: str) -> str:
    """The text of the shared file ``name`` (one of :data:`SHARED_FILES`)."""
    if name not in SHARED_FILES:
        raise ValueError(f"{name!r} is not a shared page file: one of {', '.join(SHARED_FILES)}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def fill_page(template: str, where: str) -> str:
    """``template`` (the page's HTML, read from ``where``) with each shared file in place of its
    ``{{name}}`` mark; a mark missing or repeated is refused, naming ``where``."""
    page = template
    for name in SHARED_FILES:
        mark = "{{" + name + "}}"
        if template.count(mark) != 1:
            raise ValueError(f"{where} holds {mark} {template.count(mark)} times: it needs it once")
        page = page.replace(mark, read_shared(name).rstrip("\n"))
    return page
