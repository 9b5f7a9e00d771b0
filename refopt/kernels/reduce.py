"""Reductions whose bits depend on the input alone: sums in a fixed order, extremes with
a fixed sign of zero.

**Sums.**  Summing ``n`` values along an axis folds the axis in halves, with
``h = ceil(n / 2)``::

    x[i] <- x[i] + x[i + h]   for i < n - h      (x[h - 1] passes through when n is odd)

and repeats on the first ``h`` values until one is left: a pairwise tree (error bound
``~ log2(n) u sum |x|``) whose shape depends on ``n`` alone.  Every step is an
elementwise IEEE addition, which rounds the same way in any SIMD width, any thread
count and on the GPU -- unlike a library's reduction, whose association order follows
its vector width and blocking.  Several axes are folded one at a time, the last listed
axis first.  ``mean = sum / n``.

**Extremes.**  ``max``/``min`` (and the elementwise ``maximum``/``minimum``) are exact,
but the sign of a zero result is not: ``max(-0, +0)`` may return either zero depending on
the instruction that computes it.  Here zeros are ordered ``-0 < +0`` (IEEE 754-2019's
``maximum``/``minimum``), NaN propagates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["tree_sum", "tree_mean", "max", "min", "maximum", "minimum"]


def _fold(xp: ModuleType, x: Any, axis: int) -> Any:
    """Sum along ``axis`` (kept, size 1) by halving folds."""
    n = x.shape[axis]
    if n == 0:
        shape = list(x.shape)
        shape[axis] = 1
        return xp.zeros(tuple(shape), dtype=x.dtype)
    lead = (slice(None),) * axis
    while n > 1:
        h = (n + 1) // 2
        y = xp.array(x[lead + (slice(0, h),)], copy=True)
        y[lead + (slice(0, n - h),)] += x[lead + (slice(h, n),)]
        x, n = y, h
    return x


def tree_sum(xp: ModuleType, x: Any, axes: Sequence[int], keepdims: bool = False) -> Any:
    """Sum over ``axes`` (non-negative, sorted) in the fixed pairwise order above."""
    out = x
    for axis in sorted(axes, reverse=True):
        out = _fold(xp, out, axis)
    if not keepdims:
        out = xp.reshape(out, tuple(s for i, s in enumerate(x.shape) if i not in set(axes)))
    return out


def tree_mean(xp: ModuleType, x: Any, axes: Sequence[int], keepdims: bool = False) -> Any:
    """``tree_sum / n`` (one correctly rounded division)."""
    n = 1
    for a in axes:
        n *= x.shape[a]
    return tree_sum(xp, x, axes, keepdims) / n


def _signed_zero(xp: ModuleType, r: Any, x: Any, axes: tuple, keepdims: bool, largest: bool) -> Any:
    zero = r == 0
    if not bool(xp.any(zero)):
        return r
    # max: +0 if the slice holds a +0, else -0; min: -0 if it holds a -0, else +0.
    wanted = (x == 0) & (xp.signbit(x) != largest)
    has = xp.any(wanted, axis=axes, keepdims=keepdims)
    z = xp.where(has, 0.0, -0.0) if largest else xp.where(has, -0.0, 0.0)
    return xp.where(zero, z.astype(r.dtype), r)


def max(xp: ModuleType, x: Any, axes: tuple, keepdims: bool = False) -> Any:
    """Largest element over ``axes``; a zero maximum is +0 if any +0 is present."""
    return _signed_zero(xp, xp.max(x, axis=axes, keepdims=keepdims), x, axes, keepdims, True)


def min(xp: ModuleType, x: Any, axes: tuple, keepdims: bool = False) -> Any:
    """Smallest element over ``axes``; a zero minimum is -0 if any -0 is present."""
    return _signed_zero(xp, xp.min(x, axis=axes, keepdims=keepdims), x, axes, keepdims, False)


def _signbit(xp: ModuleType, v: Any) -> Any:
    """signbit of an array or a Python number (which stays weak: no array is made of it)."""
    return math.copysign(1.0, v) < 0 if isinstance(v, (int, float)) else xp.signbit(v)


def maximum(xp: ModuleType, a: Any, b: Any) -> Any:
    """Elementwise maximum, ``-0 < +0``, NaN propagating."""
    r = xp.maximum(a, b)
    both_negative_zero = _signbit(xp, a) & _signbit(xp, b)
    return xp.where(r == 0, xp.where(both_negative_zero, -0.0, 0.0).astype(r.dtype), r)


def minimum(xp: ModuleType, a: Any, b: Any) -> Any:
    """Elementwise minimum, ``-0 < +0``, NaN propagating."""
    r = xp.minimum(a, b)
    any_negative_zero = (_signbit(xp, a) & (a == 0)) | (_signbit(xp, b) & (b == 0))
    return xp.where(r == 0, xp.where(any_negative_zero, -0.0, 0.0).astype(r.dtype), r)
