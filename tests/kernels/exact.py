"""Exact references for the kernel tests: rational arithmetic and correct rounding.

Every float is a rational, so a sum of products is a ``fractions.Fraction``; rounding it
to float64 is CPython's ``int / int`` (correctly rounded), to float32 a comparison of
the two neighbouring float32 values in exact arithmetic.  For very long sums the same
exact value is built from integers: each significand is cut into 18-bit pieces, whose
products (< 2^36) are summed per exponent in int64 (no overflow for up to 2^24 terms).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

_F32_OVERFLOW = Fraction(2**128 - 2**103)  # FLT_MAX + half an ulp: rounds to infinity


def round_fraction(v: Fraction, dtype: type) -> np.floating:
    """``v`` rounded to nearest ``dtype`` (ties to even); an exact 0 is +0, a negative
    value that rounds to zero is -0, overflow gives +-inf."""
    neg = v < 0
    if dtype == np.float64:
        try:
            out = np.float64(v.numerator / v.denominator)
        except OverflowError:
            out = np.float64(np.inf)
            return -out if neg else out
        return -np.abs(out) if neg else out
    if abs(v) >= _F32_OVERFLOW:
        return np.float32(-np.inf) if neg else np.float32(np.inf)
    f = np.float32(float(v))  # may be off by one: float64 then float32 rounds twice
    if not np.isfinite(f):
        f = np.copysign(np.finfo(np.float32).max, f)
    with np.errstate(over="ignore"):  # FLT_MAX's upper neighbour is inf: dropped below
        down, up = np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))
    cands = [c for c in (down, f, up) if np.isfinite(c)]
    best = min(cands, key=lambda q: (abs(Fraction(float(q)) - v), int(np.asarray(q).view(np.int32)) & 1))
    return np.float32(-np.abs(best)) if neg else np.abs(best)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``RN(a @ b)`` of 2-D float arrays by Fraction arithmetic."""
    m, k = a.shape
    n = b.shape[1]
    fa = [[Fraction(float(x)) for x in row] for row in a]
    fb = [[Fraction(float(b[i, j])) for i in range(k)] for j in range(n)]
    out = np.empty((m, n), a.dtype)
    for i in range(m):
        for j in range(n):
            out[i, j] = round_fraction(sum((x * y for x, y in zip(fa[i], fb[j])), Fraction(0)), a.dtype.type)
    return out


def _pieces(x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """``x = sum_i piece_i * 2^(18 i) * 2^e`` with integer pieces below 2^18 (signed)."""
    frac, ex = np.frexp(x.astype(np.float64))
    mant = (frac * 2.0**53).astype(np.int64)  # exact
    sign = np.sign(mant)
    mag = np.abs(mant)
    pieces = [sign * ((mag >> (18 * i)) & (2**18 - 1)) for i in range(3)]
    return pieces, ex.astype(np.int64) - 53


def exact_dot_long(x: np.ndarray, y: np.ndarray) -> Fraction:
    """The exact value of ``sum(x * y)`` for long 1-D float arrays, in integer arithmetic."""
    px, ex = _pieces(x)
    py, ey = _pieces(y)
    e = ex + ey
    order = np.argsort(e, kind="stable")
    e_sorted = e[order]
    starts = np.flatnonzero(np.r_[True, e_sorted[1:] != e_sorted[:-1]])
    lowest = int(e_sorted[0])
    total = 0
    for i, a in enumerate(px):
        for j, b in enumerate(py):
            sums = np.add.reduceat((a * b)[order], starts)  # < 2^36 each, at most 2^24 terms
            for s, exp in zip(sums.tolist(), e_sorted[starts].tolist()):
                total += s << (exp - lowest + 18 * (i + j))
    return Fraction(total, 1) * Fraction(2) ** lowest
