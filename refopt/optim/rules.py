"""Update rules: each optimizer x convention defined once.

A :class:`Rule` is everything one convention's update of one optimizer is:

* its **policies** -- the slots it keeps and how they start (``slot_init``), whether its
  step count is per variable (torch) or the optimizer's shared one, and what happens
  after a step (TF1's running beta powers);
* its **scalar preparation** -- ``prepare(hyper, ctx, present)`` turns the Python doubles
  (learning rate, betas, bias corrections) into the variable's dtype the way that
  framework does, and says which static variant of the formula applies (options that
  are fixed for the step: maximize, the weight-decay form, amsgrad...);
* its **elementwise formula** -- ``formula(K, o, a, s)`` over the formula layer's
  operations (:mod:`refopt.kernels.formula`): ``a`` holds the arrays (``p``, ``g`` and
  the slots), ``s`` the prepared scalars, ``o`` the static options; it returns the new
  ``p`` and slots.  ``tail_bytes``: torch's fused CPU kernel computes the last
  ``numel mod (tail_bytes / itemsize)`` elements in a scalar loop whose FMA differs; the
  formula is then traced a second time with ``o.tail`` true for those elements.

Every execution path -- the NumPy reference, the numba kernels, the CUDA source -- is
generated from these definitions (:mod:`refopt.optim.execute`); none is written again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["Rule", "Options", "opts"]


class Options(tuple):
    """The static options of one formula variant: hashable, read as attributes."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        for k, v in self:
            if k == name:
                return v
        raise AttributeError(name)


def opts(**values: Any) -> Options:
    """Static options as a hashable value (sorted by name)."""
    return Options(sorted(values.items()))


@dataclasses.dataclass(frozen=True)
class Rule:
    """One convention's update of one optimizer (see the module docstring)."""

    name: str
    slots: Callable[[Any], tuple[str, ...]]
    prepare: Callable[[Any, Any, frozenset[str]], tuple[Options, dict[str, Any]]]
    formula: Callable[..., dict[str, Any]]
    slot_init: Callable[[str], str | None] = lambda name: "zeros"
    per_variable_count: bool = False
    tail_bytes: int = 0
    after_step: Callable[[Any], None] | None = None

    def tail(self, itemsize: int) -> int:
        """The remainder-loop width in elements (0: one formula for every element)."""
        return self.tail_bytes // itemsize if self.tail_bytes else 0
