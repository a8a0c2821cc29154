"""The documentation site (``mkdocs.yml``, issue 27) fails its strict build on a broken link or a page left
out of the nav, as CI's ``mkdocs build --strict`` relies on. The site is built from a copy of ``docs/``
without the API reference (its pages then show their ``:::`` lines as text), so that only the pages and
the configuration's checks are exercised; CI builds the whole site."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _site(tmp_path: Path) -> Path:
    """A copy of the docs and of ``mkdocs.yml`` without the mkdocstrings plugin; returns the config."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("*.py", "*.json", "*.sh"))
    text = (ROOT / "mkdocs.yml").read_text()
    head, rest = text.split("  - mkdocstrings:", 1)
    config = tmp_path / "mkdocs.yml"
    config.write_text(head + "nav:" + rest.split("\nnav:", 1)[1])
    return config


def _build(config: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict``, never with ``-q``: quiet, mkdocs does not count the warnings and passes."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(config),
            "-d",
            str(config.parent / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_pages_build_strictly(tmp_path: Path) -> None:
    result = _build(_site(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("page", "added", "named"),
    [
        ("index.md", "\nA [broken link](no-such-page.md).\n", "no-such-page.md"),
        ("results.md", "\nA [broken anchor](#no-such-section).\n", "no-such-section"),
        ("research/orphan.md", "# A page the nav does not list\n", "orphan.md"),
    ],
)
def test_a_broken_link_or_an_orphan_page_fails_the_build(
    tmp_path: Path, page: str, added: str, named: str
) -> None:
    config = _site(tmp_path)
    path = config.parent / "docs" / page
    path.write_text((path.read_text() if path.exists() else "") + added)
    result = _build(config)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
