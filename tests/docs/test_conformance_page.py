"""The conformance matrix on docs/conventions.md is `refopt verify --markdown --dtype all`
as it runs now, with every framework installed (the run is shared with
tests/oracle/test_verify.py's full-matrix test).

Only what does not depend on the machine is compared letter for letter: the rows, the
columns, which cells exist, every cell a convention promises bit-exact, each cell's
status, and the summary line.  A cell with a tolerance (torch's foreach and default
paths, optax under jit, keras on JAX in float64, BERT's clipped update) measures how far
a framework's own machine-dependent arithmetic lands -- MKL's or Sleef's vector square
root, XLA's fusion, a norm's SIMD order -- so its figure is the build machine's."""

from __future__ import annotations

import json
import re

import pytest

from tests.docs.support import make_docs

_MEASURED = re.compile(r"^(exact|[\d.e+]+ ULP \(abs [^)]*\))( \([a-z-]+\))*$")


def _cells(markdown: str) -> tuple[list[str], dict[tuple[str, str, str], str], list[str]]:
    """The header, ``{(scenario, dtype, column): text}`` and the lines outside the table."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [h.strip() for h in rows[0].strip("|").split("|")]
    cells = {}
    for line in rows[2:]:
        parts = [p.strip() for p in line.strip("|").split("|")]
        for col, text in zip(header[2:], parts[2:]):
            cells[(parts[0], parts[1], col)] = text
    return header, cells, [line for line in markdown.splitlines() if not line.startswith("|")]


@pytest.mark.frameworks
def test_the_conventions_page_shows_the_current_matrix(full_verify) -> None:
    proc, out = full_verify
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '--8<-- "docs/generated/conformance.md"' in (make_docs.ROOT / "docs" / "conventions.md").read_text()
    report = json.loads((out / "conformance.json").read_text())
    page_header, page, page_text = _cells(make_docs.CONFORMANCE.read_text(encoding="utf-8"))
    now_header, now, now_text = _cells(proc.stdout)
    hint = "(regenerate: python tools/make_docs.py --only conformance)"
    assert page_header == now_header and page_text == now_text, hint
    assert page.keys() == now.keys(), hint
    for c in report["cells"]:
        key = (c["scenario"], c["dtype"], c["column"])
        if c["tolerance"] == {"max_ulp": 0}:
            assert page[key] == now[key], f"{key}: the page says {page[key]!r}, verify {now[key]!r} {hint}"
        else:
            assert _MEASURED.match(page[key]) and _MEASURED.match(now[key]), (key, page[key], now[key])
            assert page[key].endswith("(informational)") == (c["status"] == "info"), key


def test_the_comparison_ignores_only_the_measured_figures() -> None:
    """The parser sees the page's table; a cell text it does not know fails the pattern."""
    header, cells, text = _cells(make_docs.CONFORMANCE.read_text(encoding="utf-8"))
    assert header[:3] == ["scenario", "dtype", "torch"] and len(cells) > 100
    assert cells[("adam-torch-amsgrad", "float32", "torch")] == "exact"
    assert any(line.startswith("passed:") for line in text)
    nonempty = [t for t in cells.values() if t]
    assert nonempty and all(_MEASURED.match(t) for t in nonempty)
    assert not _MEASURED.match("FAIL 3 ULP (abs 1e-7)") and not _MEASURED.match("error: no torch")
