"""The stylesheet and drawing script both web pages share, kept once: ``elope serve``'s page (``GET /``,
which inlines them, :func:`elope.serve.app.page_html`) and ``elope web``'s static page (which gets them
beside its ``index.html``, :func:`elope.deploy.web.build_web_page`). Base layer: torch-free, it imports
nothing of elope, so that both layers may read it.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["SHARED_FILES", "read_shared"]

#: The shared files (package data beside this module): the look, and ``ElopeDraw.drawResult`` (the photo,
#: its heatmap, its box and label drawn on the page's canvas).
SHARED_FILES = ("elope-page.css", "elope-draw.js")


def read_shared(name: str) -> str:
    """The text of the shared file ``name`` (one of :data:`SHARED_FILES`)."""
    if name not in SHARED_FILES:
        raise ValueError(f"{name!r} is not a shared page file: one of {', '.join(SHARED_FILES)}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
