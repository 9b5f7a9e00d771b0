"""Error-free transformations and double-double arithmetic in float64.

Every function here uses only the operators ``+ - *`` (and ``/`` in :func:`dd_div`), so
it runs unchanged on NumPy and CuPy arrays, on Python floats, and on the symbolic values
a formula compiler traces (see :mod:`refopt.kernels.formula`).  No fused multiply-add
is assumed anywhere: each operator is one IEEE rounding to nearest.

A *double-double* is an unevaluated sum ``hi + lo`` with ``|lo| <= ulp(hi) / 2``; it
carries about 106 bits.  The double-double operations below have relative errors of a small
multiple of u^2 (u = 2^-53); see Joldes, Muller & Popescu, "Tight and rigorous error
bounds for basic building blocks of double-word arithmetic" (ACM TOMS 2017).

Valid for finite inputs without overflow; Dekker's split needs ``|a| < 2**996``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["two_sum", "fast_two_sum", "split", "two_prod", "dd_add", "dd_add_d", "dd_mul", "dd_mul_d", "dd_div"]

_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split of a float64 into two 26-bit halves


def two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """``s = RN(a + b)`` and the exact error ``e``: ``a + b == s + e`` (Knuth; any order)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def fast_two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """``two_sum`` for ``|a| >= |b|`` (or a == 0) in three operations (Dekker)."""
    s = a + b
    e = b - (s - a)
    return s, e


def split(a: Any) -> tuple[Any, Any]:
    """``a == hi + lo`` with both halves of at most 26 significant bits (Veltkamp)."""
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a: Any, b: Any) -> tuple[Any, Any]:
    """``p = RN(a * b)`` and the exact error ``e``: ``a * b == p + e`` (Dekker)."""
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def dd_add(ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any]:
    """Double-double ``(ah + al) + (bh + bl)``."""
    sh, sl = two_sum(ah, bh)
    th, tl = two_sum(al, bl)
    sl = sl + th
    sh, sl = fast_two_sum(sh, sl)
    sl = sl + tl
    return fast_two_sum(sh, sl)


def dd_add_d(ah: Any, al: Any, b: Any) -> tuple[Any, Any]:
    """Double-double plus double."""
    sh, sl = two_sum(ah, b)
    sl = sl + al
    return fast_two_sum(sh, sl)


def dd_mul_d(ah: Any, al: Any, b: Any) -> tuple[Any, Any]:
    """Double-double times double."""
    ph, pl = two_prod(ah, b)
    pl = pl + al * b
    return fast_two_sum(ph, pl)


def dd_mul(ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any]:
    """Double-double times double-double."""
    ph, pl = two_prod(ah, bh)
    pl = pl + (ah * bl + al * bh)
    return fast_two_sum(ph, pl)


def dd_div(ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any]:
    """Double-double quotient ``(ah + al) / (bh + bl)``."""
    q = ah / bh
    ph, pl = dd_mul_d(bh, bl, q)
    rh, rl = two_sum(ah, -ph)
    r = (rh + (rl + (al - pl))) / bh
    return fast_two_sum(q, r)
