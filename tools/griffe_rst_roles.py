"""A Griffe extension for the API reference (mkdocs.yml loads it): refopt's docstrings
are written in reStructuredText habits, rendered here as Markdown.

* ``:class:`~refopt.optim.SGD``` (any Sphinx role) becomes the code span `SGD`; without
  the ``~`` the whole path is shown (`refopt.optim.SGD`).  Roles are not turned into
  links: a relative target (``:meth:`save```) cannot be resolved reliably, and a link
  that does not resolve would fail ``mkdocs build --strict``.
* A paragraph ending in ``::`` (reST's "a literal block follows") ends in ``:``; the
  indented block after it is already a Markdown code block.
* A reST simple table (rows between ``=====  =====`` borders) is shown as preformatted
  text, as it reads in the source.

Nothing in refopt/ imports this; it changes the rendered text only, never the source.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`<>]+?)`")
_LITERAL = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
_BORDER = re.compile(r"^([ \t]*)=+(?: +=+)+[ \t]*$")


def _fence_tables(lines: list[str]) -> list[str]:
    """reST simple tables as fenced text blocks: a table runs from a border line to the
    border line that a blank line (or the end) follows."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _BORDER.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not (
            _BORDER.match(lines[end]) and (end + 1 == len(lines) or not lines[end + 1].strip())
        ):
            end += 1
        indent = m.group(1)
        out += [f"{indent}```text", *lines[i : end + 1], f"{indent}```"]
        i = end + 1
    return out


def markdown_of(text: str) -> str:
    """The docstring ``text`` with its reST roles, literal-block markers and simple tables
    in Markdown."""

    def role(m: re.Match[str]) -> str:
        target = m.group(2).strip()
        return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"

    text = "\n".join(_fence_tables(text.split("\n")))
    return _LITERAL.sub(r"\1:", _ROLE.sub(role, text))


class RstRoles(griffe.Extension):
    """Rewrite every docstring of the loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[Any] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or obj.is_alias:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = markdown_of(obj.docstring.value)
            stack.extend(obj.members.values())
