"""The conformance matrix on docs/conventions.md is `refopt verify --markdown --dtype all`
as it runs now, with every framework installed (the run is shared with
tests/oracle/test_verify.py's full-matrix test)."""

from __future__ import annotations

import pytest

from tests.docs.support import make_docs


@pytest.mark.frameworks
def test_the_conventions_page_shows_the_current_matrix(full_verify) -> None:
    proc, _ = full_verify
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '--8<-- "docs/generated/conformance.md"' in (make_docs.ROOT / "docs" / "conventions.md").read_text()
    assert make_docs.CONFORMANCE.read_text(encoding="utf-8") == proc.stdout, (
        "docs/generated/conformance.md is not what `refopt verify --markdown --dtype all` prints now "
        "(regenerate: python tools/make_docs.py --only conformance)"
    )
