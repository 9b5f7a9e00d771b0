"""tools/griffe_rst_roles.py: the API reference's reST-to-Markdown rewriting."""

from __future__ import annotations

import importlib.util

from tests.docs.support import ROOT

_spec = importlib.util.spec_from_file_location("griffe_rst_roles", ROOT / "tools" / "griffe_rst_roles.py")
roles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(roles)


def test_roles_become_code_spans() -> None:
    text = "Use :class:`~refopt.optim.SGD` or :func:`refopt.gradients`; see :meth:`save`."
    assert roles.markdown_of(text) == "Use `SGD` or `refopt.gradients`; see `save`."


def test_a_literal_block_marker_ends_in_one_colon() -> None:
    assert roles.markdown_of("It reads like this::\n\n    x = 1\n") == "It reads like this:\n\n    x = 1\n"
    assert roles.markdown_of("a[::]\nb :: c") == "a[::]\nb :: c"  # not a paragraph's end


def test_a_simple_table_becomes_preformatted_text() -> None:
    text = "Table:\n\n=====  ===\na      b\n=====  ===\n1      2\n3      4\n=====  ===\n\nAfter."
    out = roles.markdown_of(text).split("\n")
    assert out[2] == "```text" and out[3] == "=====  ===" and out[8] == "=====  ===" and out[9] == "```"
    assert out[-1] == "After."
