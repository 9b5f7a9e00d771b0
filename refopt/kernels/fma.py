"""Fused multiply-add, ``fma(a, b, c) = a*b + c`` with a single rounding, in NumPy.

Frameworks' CPU kernels use FMA (PyTorch's lerp, ``add(alpha=)``, ``addcmul``); a
reference that rounds the product first differs in the last bit.  NumPy has no fma ufunc
(``math.fma`` arrives in Python 3.13 and is scalar), so it is built from error-free
transformations and *rounding to odd*:

* rounding to odd: of the two floats around an exact value, take the one whose last
  significand bit is 1 (the value itself if representable).  Rounding to odd at
  p + 2 or more bits and then to nearest at p bits equals rounding to nearest at once
  (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
  using rounding to odd", IEEE TC 2008).
* float32: the product of two floats32 is exact in float64, so ``RN64(p + c)`` is one
  rounding of the exact value; rounded again to float32 it is ``RN32(a*b + c)`` except
  where ``RN64`` landed exactly on a float32 midpoint (or in float32's subnormal range):
  those few elements are recomputed with ``p + c`` rounded to odd in float64 (53 >= 24 +
  2 bits, via TwoSum's exact error), then to float32.
* float64: ``a*b = ph + pl`` exactly (Dekker's TwoProduct), ``c + ph = th + tl``
  exactly (TwoSum), ``v = RO(tl + pl)``, and the result is ``RN(th + v)`` -- Boldo and
  Melquiond's correctly rounded sum of three numbers, applied to ``ph + pl + c``.
  TwoProduct is exact only while its error term does not underflow (|a*b| >= 2^-969):
  below, the result is ``c`` where |c| >= 2^-900 (the product is far below half an ulp
  of c) and otherwise rounded from the exact rational value.  A zero product is exact
  in floating point, and ``a*b + c`` keeps IEEE's signs of zero.

Inputs must be finite with |a*b| well inside the float range (Dekker's split needs
|a|, |b| < 2^996); optimizer values are.  Non-finite inputs give the plain a*b + c.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from refopt.kernels.eft import two_prod, two_sum

_DEKKER_MIN = 2.0**-969  # TwoProduct is exact iff e_a + e_b >= e_min + p - 1 = -970
_NEGLIGIBLE_C = 2.0**-900  # |a*b| < 2^-968 is far below half an ulp of such a c
_LOW29 = (1 << 29) - 1
_HALF29 = 1 << 28
_F32_TINY = 2.0**-126


def _xp(a: Any) -> Any:
    from refopt.backend import namespace

    return namespace(a)


def _to_odd(s: Any, e: Any) -> Any:
    """Given s = RN(x) and the exact error e = x - s, return RO(x) (same float64 format)."""
    xp = _xp(s)
    inexact = (e != 0) & xp.isfinite(s)
    even = (s.view(xp.int64) & 1) == 0
    fix = inexact & even
    if not bool(xp.any(fix)):
        return s
    toward = xp.where(e > 0, xp.inf, -xp.inf)
    return xp.where(fix, xp.nextafter(s, toward), s)


def round_to_odd_add(a: Any, b: Any) -> Any:
    """RO(a + b) in float64."""
    s, e = two_sum(a, b)
    return _to_odd(s, e)


def _tiny_products(xp: Any, out: Any, tiny: Any, a: Any, b: Any, c: Any) -> Any:
    """The elements whose nonzero product is below 2^-969, where Dekker's error term
    underflows (and is no longer exact).  Where |c| >= 2^-900, |a*b| < 2^-968 is less than
    a 2^15th of half an ulp of c, so RN(a*b + c) = c.  The rest -- a result near or in
    the subnormal range -- is rounded from the exact rational value (CPython's int / int
    division is correctly rounded, subnormals included); an exact zero sum of a nonzero
    product is +0."""
    out = xp.where(tiny & (xp.abs(c) >= _NEGLIGIBLE_C), c, out)
    rest = tiny & (xp.abs(c) < _NEGLIGIBLE_C)
    if not bool(xp.any(rest)):
        return out
    idx = xp.nonzero(rest)
    host = [np.asarray(x[idx].get() if hasattr(x, "get") else x[idx], dtype=np.float64) for x in (a, b, c)]
    exact = [float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(*(h.tolist() for h in host))]
    out = out.copy()
    out[idx] = xp.asarray(np.array(exact, dtype=np.float64))
    return out


def fma(a: Any, b: Any, c: Any) -> Any:
    """a*b + c rounded once, elementwise, in the floating dtype of the array inputs
    (float32 or float64); scalar inputs must already be rounded to that dtype (NumPy
    scalars of it).  Works on NumPy and CuPy arrays."""
    arrays = [x for x in (a, b, c) if hasattr(x, "__array_namespace__") and getattr(x, "ndim", 0) > 0]
    ref = arrays[0] if arrays else np.asarray(a)
    xp = _xp(ref)
    dtype = ref.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == np.float32:
            a64, b64, c64 = xp.broadcast_arrays(
                *(xp.astype(xp.asarray(x, dtype=xp.float32), xp.float64) for x in (a, b, c))
            )
            p = a64 * b64  # exact: 24 + 24 bits
            s = p + c64  # RN64(a*b + c): one rounding of the exact value
            out = xp.astype(s, xp.float32)
            # RN32(RN64(x)) == RN32(x) unless RN64(x) lands exactly on a float32 midpoint
            # (low 29 of its 52 fraction bits = 1000...0) -- or below the float32 normal
            # range, where the midpoints lie elsewhere: recompute just those, exactly.
            risky = ((s.view(xp.int64) & _LOW29) == _HALF29) | (xp.abs(s) < _F32_TINY)
            if bool(xp.any(risky)):
                odd = round_to_odd_add(p[risky], c64[risky])
                out[risky] = xp.astype(odd, xp.float32)
            return out
        if dtype == np.float64:
            a64, b64, c64 = xp.broadcast_arrays(*(xp.asarray(x, dtype=xp.float64) for x in (a, b, c)))
            ph, pl = two_prod(a64, b64)  # a*b = ph + pl exactly (when |ph| >= 2^-969)
            th, tl = two_sum(c64, ph)  # c + ph = th + tl exactly
            v = _to_odd(*two_sum(tl, pl))  # RO(tl + pl)
            out = th + v  # RN(th + v) = RN(a*b + c)
            # a zero product: a*b is exact (with its sign) and RN(a*b + c) is one IEEE
            # addition -- the sign of an exact zero sum follows the operands' signs
            plain = ~(xp.isfinite(out) & xp.isfinite(ph) & xp.isfinite(pl)) | (a64 == 0) | (b64 == 0)
            if bool(xp.any(plain)):
                out = xp.where(plain, a64 * b64 + c64, out)
            tiny = ~plain & (xp.abs(ph) < _DEKKER_MIN)
            if bool(xp.any(tiny)):
                out = _tiny_products(xp, out, tiny, a64, b64, c64)
            return out
    raise TypeError(f"fma: dtype must be float32 or float64, got {dtype}")
