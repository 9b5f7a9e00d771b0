"""The documentation site: `mkdocs build --strict` passes (a broken link, anchor, snippet
or cross-reference, or a page left out of the navigation fails it), the API reference is
generated from the docstrings, and the generated includes are in the pages."""

from __future__ import annotations

import html
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.support import ROOT, make_docs


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def test_every_page_is_built_and_every_snippet_resolved(site) -> None:
    docs = sorted(p.relative_to(ROOT / "docs") for p in (ROOT / "docs").rglob("*.md") if "generated" not in p.parts)
    for page in docs:
        target = site / ("index.html" if page.name == "index.md" else page.with_suffix("") / "index.html")
        assert target.exists(), f"{page} was not built"
        assert "8&lt;-" not in target.read_text(encoding="utf-8") and "--8<--" not in target.read_text(
            encoding="utf-8"
        ), f"{page}: a snippet line was left unexpanded"


def test_the_api_reference_is_generated_from_the_docstrings(site) -> None:
    optim = html.unescape(_page(site, "api/optim"))
    for name in ("refopt.optim.Adam", "refopt.optim.AdamW", "refopt.optim.SGD", "apply_gradients", "set_slot"):
        assert name in optim, name
    assert "Adam (Kingma & Ba), with the arithmetic of" in optim  # Adam's docstring, rendered
    assert ":class:`" not in optim  # reST roles rendered as code (tools/griffe_rst_roles.py)
    engine = html.unescape(_page(site, "api/refopt"))
    assert "refopt.gradients" in engine and "TensorFlow-1 semantics" in engine


def test_the_generated_includes_are_on_their_pages(site) -> None:
    conventions = _page(site, "conventions")
    assert "<td>adam-torch-amsgrad</td>" in conventions  # the conformance matrix, rendered as a table
    assert 'class="arithmatex"' in conventions  # the update rules' mathematics
    for recipe in make_docs.RECIPES:
        page = html.unescape(_page(site, str(Path(recipe.page).relative_to("docs").with_suffix(""))))
        for section in sorted(recipe.folder.glob("*.txt")):
            first = section.read_text(encoding="utf-8").splitlines()[0]
            assert first in page, f"{recipe.page}: {section.name} is not shown"
