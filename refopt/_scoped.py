"""A setting held in a context variable, set by a call and scoped by a ``with`` block."""

from __future__ import annotations

import contextvars
from typing import Any


class Scoped:
    """Construction sets ``var`` to ``value`` (for this thread or asyncio task); a ``with``
    block restores, on exit, what was there before.  The object may be kept and entered
    again, nested too: each later entry sets the value anew and its exit restores what
    that entry found."""

    def __init__(self, var: contextvars.ContextVar[Any], value: Any) -> None:
        self._var = var
        self._value = value
        self._tokens = [var.set(value)]  # the construction's setting, undone by the first exit
        self._entered = False

    def __enter__(self) -> Any:
        if self._entered:
            self._tokens.append(self._var.set(self._value))
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._tokens.pop())
