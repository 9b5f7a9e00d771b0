"""Every Python block of README.md and docs/ runs: a page's blocks in order, in one
namespace, in a scratch folder (tools/make_docs.py run-blocks), each page in its own
process; and the block finder itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.support import ROOT, make_docs

PAGES = [p for p in make_docs.pages() if make_docs.python_blocks(p)]


def test_the_pages_hold_the_expected_blocks() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    for must in ("README.md", "docs/guide.md", "docs/optim.md", "docs/nn.md", "docs/recipes/freezing.md"):
        assert must in names
    norun = [(p.name, b.line) for p in make_docs.pages() for b in make_docs.python_blocks(p) if b.norun]
    assert len(norun) <= 2, f"<!-- norun --> is for the rare block that must not run: {norun}"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_the_python_blocks_of_a_page_run(page: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_docs.py"), "run-blocks", str(page)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr[-6000:]


def test_blocks_finds_fences_snippets_and_norun(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\nx = 1\n```\n\n- item\n\n  ```python\n  y = x + 1\n  ```\n\n"
        "<!-- norun: needs a GPU -->\n```python\nimport cupy\n```\n\n```sh\necho no\n```\n\n"
        '```python\n--8<-- "examples/freezing_adam.py:setup"\n```\n',
        encoding="utf-8",
    )
    found = make_docs.python_blocks(page)
    assert [b.line for b in found] == [3, 9, 14, 22]
    assert found[1].code.strip() == "y = x + 1"  # dedented from the list item
    assert [b.norun for b in found] == [False, False, True, False]
    assert "def embedding_table()" in found[3].code and "8<-" not in found[3].code  # the snippet, expanded


def test_a_failing_block_fails_the_page_and_names_its_line(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nvalue = 1\n```\n\ntext\n\n```python\nvalue = undefined_name\n```\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_docs.py"), "run-blocks", str(page)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "line 7 failed" in proc.stderr and "NameError" in proc.stderr
    page.write_text("```python\nvalue = 1\n```\n\n```python\nassert value == 1\n```\n", encoding="utf-8")
    ok = subprocess.run([sys.executable, str(ROOT / "tools" / "make_docs.py"), "run-blocks", str(page)])
    assert ok.returncode == 0  # one namespace: the second block sees the first's names
