"""Running update rules on variables: every path generated from the rule definitions.

:func:`run` takes one rule and the step's tasks -- one per variable: its arrays, mask,
static options and prepared scalars -- and returns each variable's new value and slots.

* ``numpy`` (the reference): the formula evaluated by
  :class:`~refopt.kernels.formula.ArrayOps`, one array operation per formula operation,
  the FMA exact; the torch tail on the last ``numel mod W`` elements.
* ``numba``: see :mod:`refopt.optim.compiled` (the same formula traced and compiled).

A mask keeps every output where it is False: ``where(mask, new, old)`` for the value and
each slot (a slot that did not exist yet stays zero there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from refopt import backend
from refopt.kernels.formula import array_ops
from refopt.optim.rules import Options, Rule

__all__ = ["Task", "run", "masked_formula", "with_tail"]


@dataclasses.dataclass
class Task:
    """One variable's update: its value ``p``, gradient ``g``, current slots, optional
    boolean mask, the static options ``o`` and the prepared scalars ``s``."""

    p: Any
    g: Any
    slots: dict[str, Any]
    mask: Any
    o: Options
    s: dict[str, Any]


def masked_formula(rule: Rule) -> Any:
    """The rule's formula followed by the mask (when the arrays hold one):
    ``where(mask, new, old)`` per output, 0 for a slot that did not exist yet."""

    def formula(K: Any, o: Options, a: dict, s: dict) -> dict:
        out = rule.formula(K, o, a, s)
        mask = a.get("mask")
        if mask is None:
            return out
        return {k: K.where(mask, v, a[k] if k in a else 0.0) for k, v in out.items()}

    return formula


def with_tail(o: Options) -> Options:
    """The options of the same variant's remainder-loop formula."""
    return Options(tuple((k, True if k == "tail" else v) for k, v in o))


def _numpy_one(rule: Rule, task: Task) -> dict[str, Any]:
    p = task.p
    xp = backend.namespace(p)
    K = array_ops(np if isinstance(p, np.ndarray) else _cupy())
    shape = p.shape
    arrays = {"p": p, "g": task.g, **task.slots}
    if task.mask is not None:
        arrays["mask"] = task.mask
    flat = {k: xp.reshape(v, (-1,)) for k, v in arrays.items()}
    n = flat["p"].shape[0]
    width = rule.tail(p.dtype.itemsize)
    k = n % width if width else 0
    formula = masked_formula(rule)
    with np.errstate(all="ignore"):
        if not k:
            out = formula(K, task.o, flat, task.s)
        else:
            body = formula(K, task.o, {a: v[: n - k] for a, v in flat.items()}, task.s)
            tail = formula(K, with_tail(task.o), {a: v[n - k :] for a, v in flat.items()}, task.s)
            out = {name: xp.concat([body[name], tail[name]]) for name in body}
    return {name: xp.reshape(v, shape) for name, v in out.items()}


def _cupy() -> Any:
    import cupy

    return cupy


def run(rule: Rule, tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """Each task's new value and slots (``{"p": ..., slot: ...}``), on the NumPy path."""
    return [_numpy_one(rule, t) for t in tasks]
