"""refopt's own transcendental functions, the same bits on every machine and backend.

NumPy's ``exp``/``log``/``tanh``/``power`` are SIMD-dispatched (AVX-512, AVX2 and the
baseline loops differ in the last bit), SciPy's ``erf`` is SciPy's and CuPy's functions
are CUDA's.  The functions here are formulas of the formula layer
(:mod:`refopt.kernels.formula`): ``+ - * /`` in float64, comparisons, ``where``, integer
and bit operations on the float64 encoding, and table look-ups -- operations that round
the same way everywhere -- so NumPy, CuPy and any later compiled path give one set of
bits.  Every coefficient and table comes from ``tools/fit_transcendentals.py`` (mpmath).

Accuracy (measured by ``tools/transcendental_errors.py`` on >= 10^6 points per function
and dtype, edges included; the table is docs/transcendental-errors.md): within 1 ulp
everywhere -- in fact within 0.5004 ulp -- in the round-to-nearest sense
``|computed - exact| / ulp(exact)``, and correctly rounded in all but a small fraction
of cases (reported there per function).

* float32: a float64 core, rounded once to float32 (``K.to_f32``).  The core's relative
  error is a few float64 ulps (2^-50 or better; ~2^-45 in the far negative tails of
  ``gelu`` and ``gelu_tanh``, whose arguments are rounded once), so the result is
  within 0.5 + 2^-21 float32 ulp and correctly rounded unless the exact value lies that
  close to a float32 midpoint.  Float32 pays for none of float64's double-double work.
* float64: double-double ("dd", an unevaluated ``hi + lo`` carrying ~106 bits) where it
  is needed:

  - ``exp``: ``x = k ln2/128 + r`` (Cody-Waite, ``k ln2/128`` split so the reduction is
    exact), ``e^x = 2^(k//128) T[k%128] (1 + r + r^2/2 + r^3 P(r))`` with ``T = 2^(j/128)``
    a dd table; the product is formed as a dd (relative error ~2^-69) and scaled by
    ``2^m`` with one rounding, also into the subnormals (:func:`_scale`).
  - ``log``: ``x = 2^e m``, ``m`` in ``[sqrt(1/2), sqrt 2)``; with a 26-bit ``c ~ 1/m`` from
    a 257-entry table ``r = m c - 1`` is exact and ``log x = e ln2 - log c + log1p(r)``,
    ``log1p(r) = r - r^2/2 + r^3 P(r)`` with ``r^2`` exact, all summed as a dd
    (relative error ~2^-70).
  - ``power``: ``exp(y log|x|)`` with the dd log, ``y log|x|`` as a dd and the dd-argument
    exp; C99's special-case table for pow.
  - ``log1p``: ``1 + x = u + v`` exactly (TwoSum) and ``v`` enters the log kernel's
    reduced argument exactly, so a tiny ``x`` keeps all its bits.
  - ``tanh``: ``-M/(2 + M)`` with ``M = expm1(-2|x|)`` from the exp kernel's dd pieces,
    the quotient corrected with its exact remainder.
  - ``sigmoid``: ``1/(1 + E)`` or ``E/(1 + E)`` with ``E = e^-|x|``, dd quotient.
  - ``erf``: a table of polynomials of degree 9 in ``d = x - centre`` on 32 intervals per
    binade (first two coefficients dd, the last two Horner steps in dd).  ``erfc``: ``1 -+ erf`` below 0.5,
    ``exp(-x^2) erfcx(x)`` above, with ``x^2`` exact as a dd and ``erfcx`` from the same
    kind of table.
  - ``gelu(x) = x/2 erfc(-x/sqrt 2)`` with ``-x/sqrt 2`` as a dd (rounding it would cost
    tens of ulps in the left tail).  ``gelu_tanh(x) = x/2 (1 + tanh(u))``,
    ``u = sqrt(2/pi) (x + 0.044715 x^3)``, rewritten as ``x sigmoid(2u)`` (``1 + tanh``
    cancels) with ``2u`` as a dd.

Special values follow C99 Annex F and NumPy: ``exp(-inf) = 0``, ``log(0) = -inf``,
``log(x<0) = nan``, ``log1p(-1) = -inf``, ``tanh(+-inf) = +-1``, ``erf(+-inf) = +-1``,
``erfc(-inf) = 2``, ``sigmoid(-inf) = 0``, NaN in -> NaN out, signed zeros kept by the odd
functions (``tanh, erf, log1p, gelu, gelu_tanh`` of ``-0`` are ``-0``), overflow to
``inf``, gradual underflow.  ``gelu(-inf)`` and ``gelu_tanh(-inf)`` are their limit
``-0`` (a zero result of a negative argument is ``-0``, as C's ``x * ...`` would give).
``power`` follows C99's ``pow`` table: ``pow(x, +-0) = 1`` for every x (NaN too),
``pow(1, y) = 1`` for every y, ``pow(-1, +-inf) = 1``, a negative base with an integer
exponent gives the signed result and with a non-integer finite one NaN, and zeros and
infinities as the table says.

The entry points (:func:`exp` ... :func:`power`) take NumPy or CuPy arrays of float32 or
float64 (any shape, 0-d included; ``power`` broadcasts two arrays of one dtype) and
return that dtype; NumPy arrays are evaluated in cache-sized blocks.  :data:`FORMULAS`
maps ``(name, dtype)`` to the formula, for compiled paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refopt.kernels import _transcendental_coefficients as C
from refopt.kernels.eft import fast_two_sum, two_sum
from refopt.kernels.formula import array_ops

__all__ = [
    "exp",
    "log",
    "log1p",
    "tanh",
    "sigmoid",
    "erf",
    "erfc",
    "gelu",
    "gelu_tanh",
    "power",
    "FORMULAS",
]

_INF = float("inf")
_NAN = float("nan")
_MIN_NORMAL = 2.0**-1022
_MASK27 = -(1 << 27)  # clears the low 27 significand bits: a 26-bit head
_MASK24 = -(1 << 24)  # clears the low 24 significand bits: a 29-bit head
_EXP_SHIFT = C.EXP_N.bit_length() - 1  # log2(128)
_ERF_SHIFT = 52 - C.ERF_S
_ERF_BASE = ((1023 + C.ERF_LOW) << C.ERF_S) - C.ERF_FIRST  # index = (bits >> _ERF_SHIFT) - base
_H_BASE = ((1023 + C.H_LOW) << C.ERF_S) - C.H_FIRST
_ERF_SMALL = 2.0**C.ERF_LOW  # below: interval 0, centred on 0
_ERF_LIMIT = 6.0  # erf(x) rounds to 1 in float64 from 5.93 on; the table reaches 8
_ERFC_LIMIT64 = 27.5  # erfc(x) < 2^-1075 from 27.3 on
_ERFC_LIMIT32 = 10.5  # erfc(x) < 2^-150 from 10.06 on


# -- building blocks ---------------------------------------------------------------------
def _split(K: Any, a: Any) -> tuple[Any, Any]:
    """``a = hi + lo``, ``hi`` the top 26 significand bits (by masking), ``lo`` <= 27 bits."""
    hi = K.from_bits(K.bits(a) & _MASK27)
    return hi, a - hi


def _two_prod(K: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """``p = RN(a b)`` and ``e ~ a b - p`` (Dekker's product on masked halves; the only
    inexact partial product is ``al bl``, so ``|e - (ab - p)| <= 2^-105 |ab|``)."""
    p = a * b
    ah, al = _split(K, a)
    bh, bl = _split(K, b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _pow2(K: Any, m: Any) -> Any:
    """``2^m`` for int64 ``m`` in [-1022, 1023], from its encoding."""
    return K.from_bits((m + 1023) << 52)


def _clamp(K: Any, x: Any, lo: float, hi: float) -> Any:
    """``x`` limited to [lo, hi]; NaN becomes ``lo`` (callers restore NaN at the end)."""
    x = K.where(x > lo, x, lo)
    return K.where(x < hi, x, hi)


def _scale(K: Any, h: Any, lo: Any, m: Any, positive: bool = False) -> Any:
    """``RN(2^m (h + lo))`` for a dd ``h + lo`` (``h = RN(h + lo)``, ``2^-900 < |h| < 2^90``)
    and ``m`` (int64 or int) in [-1200, 1200], rounded once also when the result is
    subnormal.

    Normal results: ``h 2^m1 2^m2`` is exact (overflow gives inf).  Subnormal ones:
    with ``z = 2^(m + 1022) (h + lo)``, ``|z| < 1``, ``RN(1 + |z|) - 1`` is ``|z|`` rounded
    to a multiple of 2^-52, i.e. the result rounded to a multiple of 2^-1074 once scaled
    by 2^-1022 (exactly).  ``positive``: the caller knows ``h > 0``."""
    m1 = m >> 1
    normal = (h * _pow2(K, m1)) * _pow2(K, m - m1)
    mz = m + 1022  # >= -178: 2^mz is a normal number; large values only off this path
    s = _pow2(K, K.where(mz < 1000, mz, 1000))
    if positive:
        th, tl = fast_two_sum(1.0, h * s)
        sub = ((th + (tl + lo * s)) - 1.0) * _MIN_NORMAL
        return K.where(normal < _MIN_NORMAL, sub, normal)
    sign = K.where(h < 0.0, -1.0, 1.0)
    th, tl = fast_two_sum(1.0, (h * s) * sign)
    sub = ((th + (tl + (lo * s) * sign)) - 1.0) * (_MIN_NORMAL * sign)
    return K.where(K.abs(normal) < _MIN_NORMAL, sub, normal)


# -- float64 kernels ---------------------------------------------------------------------
def _exp_dd(K: Any, xh: Any, xl: Any = None) -> tuple[Any, Any, Any]:
    """``e^(xh + xl) = 2^m (h + lo)``, ``h + lo`` a dd in [0.99, 2.01) with relative error
    ~2^-69; ``|xh| <= 1400`` (``k C1`` exact for ``|k| < 2^18``), ``|xl| <= 2^-42``.
    Returns (m, h, lo), ``m`` int64."""
    k = K.rint(xh * C.EXP_INV)
    ki = K.to_int(k)
    j = ki & (C.EXP_N - 1)
    m = ki >> _EXP_SHIFT
    t = xh - k * C.EXP_C1  # exact: k C1 has <= 53 bits and is close to xh
    w = -(k * C.EXP_C2) if xl is None else xl - k * C.EXP_C2
    rh, rl = two_sum(t, w)  # r = x - k ln2/128 to ~2^-78
    p0, p1, p2, p3 = C.EXP64_P
    p = (rh * rh) * (0.5 + rh * (p0 + rh * (p1 + rh * (p2 + rh * p3))))
    ql = rl + (p + rl * rh)  # e^r - 1 = rh + ql
    th = K.lookup(C.EXP_TH, j)
    tl = K.lookup(C.EXP_TL, j)
    ph, pl = _two_prod(K, th, rh)
    sh, sl = fast_two_sum(th, ph)
    h, lo = fast_two_sum(sh, sl + (pl + (tl + (th * ql + tl * rh))))
    return m, h, lo


def _log_dd(K: Any, x: Any, xl: Any = None) -> tuple[Any, Any]:
    """``log(x + xl)`` as a dd (relative error ~2^-70) for finite ``x > 0``; ``xl`` (if
    given, ``|xl| <= ulp(x)``, ``x >= 2^-60``) enters the reduced argument exactly, so
    ``log1p`` of a tiny ``x = (1 + x) - 1`` keeps all its bits."""
    sub = x < _MIN_NORMAL
    xs = K.where(sub, x * 2.0**54, x)
    b = K.bits(xs)
    e = (b - C.LOG_SQRTHALF_BITS) >> 52
    mb = b - (e << 52)  # m = x 2^-e in [sqrt(1/2), sqrt 2)
    m = K.from_bits(mb)
    i = (mb - C.LOG_BASE) >> C.LOG_SHIFT
    c = K.lookup(C.LOG64_C, i)  # 26 bits, c = 1 on the interval around 1
    ef = K.to_float(e) - K.where(sub, 54.0, 0.0)
    mh = K.from_bits(mb & _MASK27)
    rh, rl = two_sum(mh * c - 1.0, (m - mh) * c)  # r = m c - 1, exactly
    if xl is not None:  # r += c xl 2^-e, exactly but for the sum of the two low parts
        ec = K.where(e < 1000, e, 1000)
        rh, rl2 = two_sum(rh, c * (xl * _pow2(K, -ec)))
        rl = rl + rl2
    p0, p1, p2, p3, p4, p5 = C.LOG64_P
    sh, sl = _two_prod(K, rh, rh)
    v = (rh * sh) * (p0 + rh * (p1 + rh * (p2 + rh * (p3 + rh * (p4 + rh * p5)))))
    ah, al = fast_two_sum(rh, -0.5 * sh)  # log1p(r) = ah + al
    al = al + ((v - 0.5 * sl) + rl * (1.0 - rh))
    bh = ef * C.LOG_LN2H + K.lookup(C.LOG64_LH, i)  # exact: both multiples of 2^-42
    ch, cl = two_sum(bh, ah)
    cl = cl + (al + (K.lookup(C.LOG64_LL, i) + ef * C.LOG_LN2L))
    return fast_two_sum(ch, cl)


def _table64(K: Any, i: Any, d: Any, dl: Any = None) -> tuple[Any, Any]:
    """The erf / erfcx table's polynomial of interval ``i`` at ``d + dl`` (d = x - centre)
    as a dd: ``c0 + c1 d`` in dd, ``d^2 (c2 + c3 d + ...)`` in float64."""
    tail = C.ERF64_TAIL
    q = K.lookup(tail[-1], i)
    for col in tail[-2:0:-1]:
        q = q * d + K.lookup(col, i)
    c2 = K.lookup(tail[0], i)
    q = q * d + c2
    c1h = K.lookup(C.ERF64_C1H, i)
    ph, pl = _two_prod(K, d, c1h)
    pl = pl + d * (K.lookup(C.ERF64_C1L, i) + d * q)
    if dl is not None:  # first order in dl, with the slope at d
        pl = pl + (c1h + 2.0 * c2 * d) * dl
    vh, vl = two_sum(K.lookup(C.ERF64_C0H, i), ph)
    return vh, vl + (pl + K.lookup(C.ERF64_C0L, i))


def _erf_index(K: Any, a: Any, use_h: Any = None) -> tuple[Any, Any]:
    """Interval index and centre for ``0 <= a < 8`` (erf part) or, where ``use_h``,
    ``0.5 <= a < 32`` (erfcx part)."""
    hb = K.bits(a) >> _ERF_SHIFT
    base = _ERF_BASE if use_h is None else K.where(use_h, _H_BASE, _ERF_BASE)
    small = a < _ERF_SMALL
    if use_h is not None:
        small = small & ~use_h
    i = K.where(small, 0, hb - base)
    centre = K.where(small, 0.0, K.from_bits((hb << _ERF_SHIFT) + (1 << (_ERF_SHIFT - 1))))
    return i, centre


def _dd_mul(K: Any, ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any]:
    ph, pl = _two_prod(K, ah, bh)
    return fast_two_sum(ph, pl + (ah * bl + al * bh))


def _erfc_dd(K: Any, zh: Any, zl: Any = None) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Pieces of ``erfc(zh + zl)`` for finite ``zh``: (large, m, ph, pl, sh, sl) with
    ``erfc = 2^m (ph + pl)`` where ``large`` (zh >= 0.5) and ``sh + sl`` elsewhere."""
    large = zh >= 0.5
    a = K.abs(zh)
    limit = K.where(large, _ERFC_LIMIT64, _ERF_LIMIT)
    ac = K.where(a < limit, a, limit)
    i, centre = _erf_index(K, ac, large)
    d = ac - centre
    al = None if zl is None else K.where(zh < 0.0, -zl, zl)
    vh, vl = _table64(K, i, d, al)
    # large: erfc(z) = exp(-z^2) erfcx(z), z^2 as a dd
    s, sl = _two_prod(K, ac, ac)
    if zl is not None:
        sl = sl + 2.0 * ac * zl
    s, sl = fast_two_sum(s, sl)
    m, eh, el = _exp_dd(K, -s, -sl)  # s <= 27.5^2 < 757
    ph, pl = _dd_mul(K, eh, el, vh, vl)
    # elsewhere: 1 - erf(z) or 1 + erf(-z)
    sgn = K.where(zh < 0.0, 1.0, -1.0)
    sh, sl2 = two_sum(1.0, sgn * vh)
    return large, m, ph, pl, sh, sl2 + sgn * vl


def _sigmoid_dd(K: Any, vh: Any, vl: Any = None) -> tuple[Any, Any, Any]:
    """``sigmoid(vh + vl) = 2^m (qh + ql)``: ``1/(1 + E)`` or ``E/(1 + E)`` with
    ``E = e^-|v|`` from the exp kernel, the quotient corrected by its exact remainder."""
    neg = vh < 0.0
    a = K.abs(vh)
    big = a < 800.0  # beyond, E < 2^-1154: the result (times a factor < 2^70) is 0 or 1
    ac = K.where(big, a, 800.0)
    al = None if vl is None else K.where(big, K.where(neg, vl, -vl), 0.0)
    m, h, lo = _exp_dd(K, -ac, al)  # E = 2^m (h + lo), m in [-1155, 0]
    s = _pow2(K, K.where(m > -1022, m, -1022))  # below, E (< 2^-1021) vanishes next to 1
    dh, dl = fast_two_sum(1.0, h * s)
    dl = dl + lo * s
    nh = K.where(neg, h, 1.0)
    nl = K.where(neg, lo, 0.0)
    q = nh / dh
    ph, pl = _two_prod(K, q, dh)
    rem = ((nh - ph) - pl) + (nl - q * dl)
    qh, ql = fast_two_sum(q, rem / dh)
    return K.where(neg, m, 0), qh, ql


def exp_f64(K: Any, x: Any) -> Any:
    """``e^x``, float64."""
    m, h, lo = _exp_dd(K, _clamp(K, x, -746.0, 710.0))
    return K.where(K.isnan(x), x, _scale(K, h, lo, m, positive=True))


def log_f64(K: Any, x: Any) -> Any:
    """``log x``, float64."""
    ok = (x > 0.0) & (x < _INF)
    h, _ = _log_dd(K, K.where(ok, x, 1.0))
    r = K.where(ok, h, K.where(x == 0.0, -_INF, K.where(x == _INF, _INF, _NAN)))
    return K.where(K.isnan(x), x, r)


def log1p_f64(K: Any, x: Any) -> Any:
    """``log(1 + x)``, float64: ``1 + x = u + v`` exactly, ``log(u + v)`` by the dd log."""
    ok = (x > -1.0) & (x < _INF)
    u, v = two_sum(1.0, K.where(ok, x, 0.0))
    h, _ = _log_dd(K, u, v)
    r = K.where(ok, h, K.where(x == -1.0, -_INF, K.where(x == _INF, _INF, _NAN)))
    r = K.where(x == 0.0, x, r)
    return K.where(K.isnan(x), x, r)


def tanh_f64(K: Any, x: Any) -> Any:
    """``tanh x = -M/(2 + M)``, ``M = e^(-2|x|) - 1``, float64."""
    a = K.abs(x)
    ac = K.where(a < 20.0, a, 20.0)  # tanh rounds to 1 from 19.06 on
    m, h, lo = _exp_dd(K, -2.0 * ac)  # m in [-58, 0]
    s = _pow2(K, m)
    mh, ml = two_sum(h * s, -1.0)
    ml = ml + lo * s
    dh, dl = fast_two_sum(2.0, mh)
    dl = dl + ml
    q = -mh / dh
    ph, pl = _two_prod(K, q, dh)
    rem = ((-mh - ph) - pl) + (-ml - q * dl)
    t = q + rem / dh
    t = K.where(a < 2.0**-27, a, t)  # tanh a = a - a^3/3 rounds to a
    t = K.where(K.signbit(x), -t, t)
    return K.where(K.isnan(x), x, t)


def sigmoid_f64(K: Any, x: Any) -> Any:
    """``1/(1 + e^-x)``, float64."""
    m, qh, ql = _sigmoid_dd(K, x)
    return K.where(K.isnan(x), x, _scale(K, qh, ql, m, positive=True))


def erf_f64(K: Any, x: Any) -> Any:
    """``erf x``, float64, from the table (erf itself up to 6; 1 beyond)."""
    a = K.abs(x)
    ac = K.where(a < _ERF_LIMIT, a, _ERF_LIMIT)
    i, centre = _erf_index(K, ac)
    tiny = a < 2.0**-960  # the dd would underflow: evaluate at 2^600 a, scale back
    vh, vl = _table64(K, i, K.where(tiny, ac * 2.0**600, ac - centre))
    vh, vl = fast_two_sum(vh, vl)
    # a subnormal result is vh + vl < 2^-422 rounded to a multiple of 2^-474 (at the
    # scale 2^600): adding 2^-422, whose ulp is that, rounds it once
    th, tl = fast_two_sum(2.0**-422, vh)
    sub = ((th + (tl + vl)) - 2.0**-422) * 2.0**-600
    r = K.where(tiny, K.where(vh < 2.0**-422, sub, vh * 2.0**-600), vh)
    r = K.where(K.signbit(x), -r, r)
    return K.where(K.isnan(x), x, r)


def erfc_f64(K: Any, x: Any) -> Any:
    """``erfc x``, float64."""
    large, m, ph, pl, sh, sl = _erfc_dd(K, _clamp(K, x, -_ERF_LIMIT, _ERFC_LIMIT64))
    r = K.where(large, _scale(K, ph, pl, m, positive=True), sh + sl)
    return K.where(K.isnan(x), x, r)


def _half_up(K: Any, x: Any) -> Any:
    """``x/2`` with a tie (x an odd multiple of 2^-1074) rounded towards +inf: gelu and
    gelu_tanh of a tiny x are ``x/2 + x^2/sqrt(2 pi)`` (to first order), just above x/2."""
    h = 0.5 * x
    return K.where(h + h == x, h, (x + 2.0**-1074) * 0.5)


def gelu_f64(K: Any, x: Any) -> Any:
    """``x Phi(x) = x/2 erfc(-x/sqrt 2)``, float64, with ``-x/sqrt 2`` as a dd."""
    xc = _clamp(K, x, -40.0, 40.0)
    zh, zl = _two_prod(K, xc, -C.INV_SQRT2_H)
    zl = zl - xc * C.INV_SQRT2_L
    zh, zl = fast_two_sum(zh, zl)
    large, m, ph, pl, sh, sl = _erfc_dd(K, zh, zl)
    half = 0.5 * xc
    eh = K.where(large, ph, sh)
    el = K.where(large, pl, sl)
    gh, gl = _two_prod(K, eh, half)
    gh, gl = fast_two_sum(gh, gl + el * half)
    r = _scale(K, gh, gl, K.where(large, m, 0))
    r = K.where(x >= 40.0, x, K.where(x <= -40.0, -0.0, r))
    r = K.where(K.abs(x) < 2.0**-900, _half_up(K, x), r)  # also keeps the sign of 0
    return K.where(K.isnan(x), x, r)


def gelu_tanh_f64(K: Any, x: Any) -> Any:
    """``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x sigmoid(v)``,
    ``v = x (K2 + K3 x^2)``, ``K2 = 2 sqrt(2/pi)``, ``K3 = 0.044715 K2``; float64, ``v``
    as a dd."""
    xc = _clamp(K, x, -30.0, 30.0)
    sh, sl = _two_prod(K, xc, xc)
    th, tl = _two_prod(K, sh, C.GELU_K3_H)
    tl = tl + (sl * C.GELU_K3_H + sh * C.GELU_K3_L)
    wh, wl = two_sum(C.GELU_K2_H, th)
    wl = wl + (tl + C.GELU_K2_L)
    vh, vl = _two_prod(K, xc, wh)
    vh, vl = fast_two_sum(vh, vl + xc * wl)
    m, qh, ql = _sigmoid_dd(K, vh, vl)
    gh, gl = _two_prod(K, qh, xc)
    gh, gl = fast_two_sum(gh, gl + ql * xc)
    r = _scale(K, gh, gl, m)
    r = K.where(x >= 30.0, x, K.where(x <= -30.0, -0.0, r))
    r = K.where(K.abs(x) < 2.0**-900, _half_up(K, x), r)  # also keeps the sign of 0
    return K.where(K.isnan(x), x, r)


def _int_parity(K: Any, y: Any) -> tuple[Any, Any]:
    """(y is an integer or infinite, y is an odd integer)."""
    is_int = K.rint(y) == y
    half = y * 0.5
    return is_int, is_int & (K.rint(half) != half)


def _pow_specials(K: Any, x: Any, y: Any, r: Any, is_int: Any, odd: Any) -> Any:
    """C99 F.9.4.4 applied over the general result ``r`` (which has the sign already)."""
    ax = K.abs(x)
    r = K.where((x < 0.0) & ~is_int, _NAN, r)
    big = (ax == _INF) == (y > 0.0)  # 0^-y and inf^+y are infinite, 0^+y and inf^-y zero
    mag = K.where(big, _INF, 0.0)
    edge = K.where(K.signbit(x) & odd, -mag, mag)
    r = K.where((ax == 0.0) | (ax == _INF), edge, r)
    r = K.where(K.isnan(x) | K.isnan(y), x + y, r)
    return K.where((y == 0.0) | (x == 1.0), 1.0, r)


def power_f64(K: Any, x: Any, y: Any) -> Any:
    """``x^y = exp(y log|x|)`` with the sign of C's pow, float64."""
    ax = K.abs(x)
    ok = (ax > 0.0) & (ax < _INF)
    lh, ll = _log_dd(K, K.where(ok, ax, 1.0))
    yc = _clamp(K, y, -(2.0**64), 2.0**64)  # beyond, |y log|x|| > 2^11 unless x = 1
    th, tl = _two_prod(K, yc, lh)
    th, tl = fast_two_sum(th, tl + yc * ll)
    inside = (th > -746.0) & (th < 710.0)
    m, h, lo = _exp_dd(K, _clamp(K, th, -746.0, 710.0), K.where(inside, tl, 0.0))
    r = _scale(K, h, lo, m, positive=True)
    is_int, odd = _int_parity(K, y)
    r = K.where((x < 0.0) & odd, -r, r)
    return _pow_specials(K, x, y, r, is_int, odd)


# -- float32 kernels (a float64 core, one rounding to float32) ---------------------------
def _exp32_parts(K: Any, x: Any, xl: Any = None) -> tuple[Any, Any, Any, Any]:
    """``e^(x + xl) = 2^m T (1 + p)`` for ``|x| <= 300``: (m, j, T, p); relative error of
    ``T (1 + p)`` ~2^-52."""
    k = K.rint(x * C.EXP_INV)
    ki = K.to_int(k)
    j = ki & (C.EXP_N - 1)
    r = (x - k * C.EXP_C1) - k * C.EXP_C2
    if xl is not None:
        r = r + xl
    q0, q1, q2, q3 = C.EXP32_Q
    p = r + (r * r) * (q0 + r * (q1 + r * (q2 + r * q3)))
    return ki >> _EXP_SHIFT, j, K.lookup(C.EXP_TH, j), p


def _exp32(K: Any, x: Any, xl: Any = None) -> Any:
    m, _, t, p = _exp32_parts(K, x, xl)
    return (t + t * p) * _pow2(K, m)


def _log32(K: Any, u: Any, x: Any = None) -> tuple[Any, Any]:
    """``log u = s + t`` for finite ``u >= 2^-160``, ``s`` exact, ``|t| < 2^-8 + 2^-33``,
    absolute error ~2^-62 (relative ~2^-62 near 1).  With ``x`` given (log1p), ``u`` is
    ``RN(1 + x)`` and ``m - F`` is taken as ``(1 - F) + x`` when ``e = 0``."""
    b = K.bits(u)
    e = (b - C.LOG_SQRTHALF_BITS) >> 52
    mb = b - (e << 52)
    i = (mb - C.LOG_BASE) >> C.LOG_SHIFT
    centre = K.from_bits(C.LOG_BASE + (i << C.LOG_SHIFT) + (1 << (C.LOG_SHIFT - 1)))
    f = K.from_bits(mb) - centre  # exact
    if x is not None:
        f = K.where(e == 0, (1.0 - centre) + x, f)
    r = f * K.lookup(C.LOG32_INVF, i)
    q0, q1, q2, q3, q4 = C.LOG32_Q
    lp = r + (r * r) * (q0 + r * (q1 + r * (q2 + r * (q3 + r * q4))))
    ef = K.to_float(e)
    s = ef * C.LOG_LN2H + K.lookup(C.LOG32_LFH, i)  # exact: multiples of 2^-42
    t = lp + (K.lookup(C.LOG32_LFL, i) + ef * C.LOG_LN2L)
    return s, t


def exp_f32(K: Any, x: Any) -> Any:
    """``e^x``, float32."""
    x = K.to_f64(x)
    r = _exp32(K, _clamp(K, x, -104.0, 89.0))
    return K.to_f32(K.where(K.isnan(x), x, r))


def log_f32(K: Any, x: Any) -> Any:
    """``log x``, float32."""
    x = K.to_f64(x)
    ok = (x > 0.0) & (x < _INF)
    s, t = _log32(K, K.where(ok, x, 1.0))
    r = K.where(ok, s + t, K.where(x == 0.0, -_INF, K.where(x == _INF, _INF, _NAN)))
    return K.to_f32(K.where(K.isnan(x), x, r))


def log1p_f32(K: Any, x: Any) -> Any:
    """``log(1 + x)``, float32."""
    x = K.to_f64(x)
    ok = (x > -1.0) & (x < _INF)
    xc = K.where(ok, x, 0.0)
    s, t = _log32(K, 1.0 + xc, xc)
    r = K.where(ok, s + t, K.where(x == -1.0, -_INF, K.where(x == _INF, _INF, _NAN)))
    r = K.where(x == 0.0, x, r)
    return K.to_f32(K.where(K.isnan(x), x, r))


def tanh_f32(K: Any, x: Any) -> Any:
    """``tanh x = -M/(2 + M)``, ``M = expm1(-2|x|)``, float32."""
    x = K.to_f64(x)
    a = K.abs(x)
    ac = K.where(a < 10.0, a, 10.0)  # float32 tanh rounds to 1 from 9.01 on
    m, j, t, p = _exp32_parts(K, -2.0 * ac)  # m in [-29, 0]
    s = _pow2(K, m)
    mm = (t * s - 1.0) + s * (K.lookup(C.EXP_TL, j) + t * p)  # t s - 1 exact when it matters
    r = K.abs(mm / (2.0 + mm))
    r = K.where(K.signbit(x), -r, r)
    return K.to_f32(K.where(K.isnan(x), x, r))


def sigmoid_f32(K: Any, x: Any) -> Any:
    """``1/(1 + e^-x)``, float32."""
    x = K.to_f64(x)
    a = K.abs(x)
    e = _exp32(K, -K.where(a < 110.0, a, 110.0))
    r = K.where(x < 0.0, e, 1.0) / (1.0 + e)
    return K.to_f32(K.where(K.isnan(x), x, r))


def _table32(K: Any, i: Any, d: Any) -> Any:
    cols = C.ERF32_COEFS
    v = K.lookup(cols[-1], i)
    for col in cols[-2::-1]:
        v = v * d + K.lookup(col, i)
    return v


def _erfc32(K: Any, z: Any) -> Any:
    """``erfc z`` in float64 (relative error ~2^-50) for finite ``z``."""
    large = z >= 0.5
    a = K.abs(z)
    limit = K.where(large, _ERFC_LIMIT32, _ERF_LIMIT)
    ac = K.where(a < limit, a, limit)
    i, centre = _erf_index(K, ac, large)
    v = _table32(K, i, ac - centre)
    e = _exp32(K, -(ac * ac))  # ac^2 exact for float32 arguments
    return K.where(large, e * v, 1.0 + K.where(z < 0.0, v, -v))


def erf_f32(K: Any, x: Any) -> Any:
    """``erf x``, float32."""
    x = K.to_f64(x)
    a = K.abs(x)
    ac = K.where(a < _ERF_LIMIT, a, _ERF_LIMIT)
    i, centre = _erf_index(K, ac)
    r = _table32(K, i, ac - centre)
    r = K.where(K.signbit(x), -r, r)
    return K.to_f32(K.where(K.isnan(x), x, r))


def erfc_f32(K: Any, x: Any) -> Any:
    """``erfc x``, float32."""
    x = K.to_f64(x)
    r = _erfc32(K, _clamp(K, x, -_ERF_LIMIT, _ERFC_LIMIT32))
    return K.to_f32(K.where(K.isnan(x), x, r))


def _half_nudged(K: Any, x: Any) -> Any:
    """``x/2`` raised by 2^-40 of itself, for a float32 ``|x| < 2^-40``: gelu and gelu_tanh
    are ``x/2 + x^2/sqrt(2 pi) + ...`` there, so a float32 tie at ``x/2`` (a subnormal
    result) must round up; the nudge decides it and changes nothing else (x/2 is a float32
    or a midpoint).  Zeros keep their sign."""
    h = 0.5 * x
    return K.where(x == 0.0, x, h + K.abs(h) * 2.0**-40)


def gelu_f32(K: Any, x: Any) -> Any:
    """``x/2 erfc(-x/sqrt 2)``, float32."""
    x = K.to_f64(x)
    xc = _clamp(K, x, -14.8, 14.8)  # below -14.8 the result rounds to -0; above, to x
    r = (0.5 * xc) * _erfc32(K, xc * -C.INV_SQRT2_H)
    r = K.where(x >= 14.8, x, K.where(x <= -14.8, -0.0, r))
    r = K.where(K.abs(x) < 2.0**-40, _half_nudged(K, x), r)
    return K.to_f32(K.where(K.isnan(x), x, r))


def gelu_tanh_f32(K: Any, x: Any) -> Any:
    """``x sigmoid(x (K2 + K3 x^2))`` (see :func:`gelu_tanh_f64`), float32."""
    x = K.to_f64(x)
    xc = _clamp(K, x, -20.0, 20.0)
    v = xc * (C.GELU_K2 + C.GELU_K3 * (xc * xc))
    a = K.abs(v)
    e = _exp32(K, -K.where(a < 120.0, a, 120.0))
    r = xc * (K.where(v < 0.0, e, 1.0) / (1.0 + e))
    r = K.where(x >= 20.0, x, K.where(x <= -20.0, -0.0, r))
    r = K.where(K.abs(x) < 2.0**-40, _half_nudged(K, x), r)
    return K.to_f32(K.where(K.isnan(x), x, r))


def power_f32(K: Any, x: Any, y: Any) -> Any:
    """``x^y = exp(y log|x|)``, float32: ``log|x| = hi + lo`` to ~2^-62, ``y hi29`` exact."""
    x = K.to_f64(x)
    y = K.to_f64(y)
    ax = K.abs(x)
    ok = (ax > 0.0) & (ax < _INF)
    s, t = _log32(K, K.where(ok, ax, 1.0))
    hi, lo = two_sum(s, t)
    h29 = K.from_bits(K.bits(hi) & _MASK24)
    lo = (hi - h29) + lo
    yc = _clamp(K, y, -(2.0**64), 2.0**64)
    th = yc * h29  # exact: 24 x 29 bits
    tl = yc * lo
    inside = (th > -200.0) & (th < 200.0)
    r = _exp32(K, _clamp(K, th, -200.0, 200.0), K.where(inside, tl, 0.0))
    is_int, odd = _int_parity(K, y)
    r = K.where((x < 0.0) & odd, -r, r)
    return K.to_f32(_pow_specials(K, x, y, r, is_int, odd))


FORMULAS: dict[tuple[str, str], Callable[..., Any]] = {
    ("exp", "float64"): exp_f64,
    ("exp", "float32"): exp_f32,
    ("log", "float64"): log_f64,
    ("log", "float32"): log_f32,
    ("log1p", "float64"): log1p_f64,
    ("log1p", "float32"): log1p_f32,
    ("tanh", "float64"): tanh_f64,
    ("tanh", "float32"): tanh_f32,
    ("sigmoid", "float64"): sigmoid_f64,
    ("sigmoid", "float32"): sigmoid_f32,
    ("erf", "float64"): erf_f64,
    ("erf", "float32"): erf_f32,
    ("erfc", "float64"): erfc_f64,
    ("erfc", "float32"): erfc_f32,
    ("gelu", "float64"): gelu_f64,
    ("gelu", "float32"): gelu_f32,
    ("gelu_tanh", "float64"): gelu_tanh_f64,
    ("gelu_tanh", "float32"): gelu_tanh_f32,
    ("power", "float64"): power_f64,
    ("power", "float32"): power_f32,
}


# -- array entry points ------------------------------------------------------------------
_BLOCK = 8192  # NumPy: evaluate in blocks whose temporaries stay in the cache


def _namespace(name: str, a: Any) -> Any:
    if isinstance(a, (np.ndarray, np.generic)):
        return np
    if type(a).__module__.split(".", 1)[0] == "cupy":
        import cupy

        return cupy
    raise TypeError(f"refopt.kernels.transcendental.{name}: expected a NumPy or CuPy array, got {type(a).__name__}")


def _dtype_name(name: str, a: Any) -> str:
    dt = str(a.dtype)
    if dt not in ("float32", "float64"):
        raise TypeError(f"refopt.kernels.transcendental.{name}: dtype must be float32 or float64, got {dt}")
    return dt


def _evaluate(name: str, *args: Any) -> Any:
    xp = _namespace(name, args[0])
    for other in args[1:]:
        if _namespace(name, other) is not xp:
            raise TypeError(f"refopt.kernels.transcendental.{name}: arguments live on different backends")
    dtypes = [_dtype_name(name, a) for a in args]
    if len(set(dtypes)) > 1:
        got = ", ".join(dtypes)
        raise TypeError(f"refopt.kernels.transcendental.{name}: arguments must share one dtype, got {got}")
    formula = FORMULAS[(name, dtypes[0])]
    arrays = [xp.asarray(a) for a in args]
    if len(arrays) > 1:
        try:
            arrays = list(xp.broadcast_arrays(*arrays))
        except ValueError as exc:
            shapes = " and ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"refopt.kernels.transcendental.{name}: shapes {shapes} do not broadcast") from exc
    shape = arrays[0].shape
    flat = [xp.reshape(a, (-1,)) for a in arrays]
    if xp is np and _compiled():
        return _numba_evaluate(name, dtypes[0], flat).reshape(shape)
    K = array_ops(xp)
    if xp is not np:
        if _compiled():
            out = _cuda_evaluate(name, dtypes[0], flat)
            if out is not None:
                return xp.reshape(out, shape)
        return xp.reshape(formula(K, *flat), shape)
    n = flat[0].shape[0]
    out = np.empty(n, dtype=dtypes[0])
    with np.errstate(all="ignore"):
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            out[start:stop] = formula(K, *(a[start:stop] for a in flat))
    return out.reshape(shape)


def _compiled() -> bool:
    from refopt.kernels.mode import current_kernels

    return current_kernels() == "numba"


_NUMBA: dict[tuple[str, str], Any] = {}
_GRAPHS: dict[tuple[str, str], Any] = {}


def _numba_evaluate(name: str, dtype: str, flat: list[np.ndarray]) -> np.ndarray:
    """The formula compiled by numba (:mod:`refopt.kernels.compile`), the same bits as the
    NumPy evaluation: one loop over the elements, split between threads
    (:mod:`refopt.kernels.threads`) for large arrays when :func:`refopt.set_kernels`
    allows more than one."""
    from refopt.kernels import compile as C
    from refopt.kernels import threads
    from refopt.kernels.mode import current_threads

    n = flat[0].shape[0]
    key = (name, dtype)
    fn = _NUMBA.get(key)
    if fn is None:
        arrays = ("x", "y")[: len(flat)]
        graph = C.trace(FORMULAS[(name, dtype)], [(a, dtype) for a in arrays])
        fname = f"{name}_{dtype}"
        fn = _NUMBA[key] = C.compile_numba(C.numba_segments_source([graph], fname, arrays, ()), fname)
    keep = [np.ascontiguousarray(a) for a in flat]
    out = np.empty(n, dtype=dtype)
    width = out.itemsize
    args = [(np.array([a.__array_interface__["data"][0]], np.int64), width) for a in (*keep, out)]
    threads.call(fn, args, np.array([n], np.int64), np.zeros(1, np.int64), current_threads())
    return out


def _cuda_evaluate(name: str, dtype: str, flat: list[Any]) -> Any:
    """The formula as a generated CUDA kernel (:mod:`refopt.kernels.cuda`); None if it
    cannot run here."""
    import cupy

    from refopt.kernels import compile as C
    from refopt.kernels import cuda

    arrays = ("x", "y")[: len(flat)]
    graph = _GRAPHS.get((name, dtype))
    if graph is None:
        graph = _GRAPHS[(name, dtype)] = C.trace(FORMULAS[(name, dtype)], [(a, dtype) for a in arrays])
    ins = [cupy.ascontiguousarray(a) for a in flat]
    out = cuda.run(graph, f"{name}_{dtype}", arrays, ins, flat[0].shape[0], [np.dtype(dtype)])
    return None if out is None else out[0]


def exp(x: Any) -> Any:
    """``e^x`` elementwise (float32 or float64, NumPy or CuPy)."""
    return _evaluate("exp", x)


def log(x: Any) -> Any:
    """Natural logarithm; ``log(0) = -inf``, ``log(x < 0) = nan``."""
    return _evaluate("log", x)


def log1p(x: Any) -> Any:
    """``log(1 + x)``, accurate for small ``x``; ``log1p(-1) = -inf``."""
    return _evaluate("log1p", x)


def tanh(x: Any) -> Any:
    """Hyperbolic tangent."""
    return _evaluate("tanh", x)


def sigmoid(x: Any) -> Any:
    """Logistic function ``1/(1 + e^-x)``."""
    return _evaluate("sigmoid", x)


def erf(x: Any) -> Any:
    """Error function ``erf x = 2/sqrt(pi) int_0^x e^(-t^2) dt``."""
    return _evaluate("erf", x)


def erfc(x: Any) -> Any:
    """Complementary error function ``1 - erf x``, accurate where it is tiny."""
    return _evaluate("erfc", x)


def gelu(x: Any) -> Any:
    """Exact GELU ``x Phi(x) = x/2 erfc(-x/sqrt 2)``."""
    return _evaluate("gelu", x)


def gelu_tanh(x: Any) -> Any:
    """Tanh GELU ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (real constants)."""
    return _evaluate("gelu_tanh", x)


def power(x: Any, y: Any) -> Any:
    """``x^y`` elementwise with broadcasting (both arrays of one dtype); C99 pow's special
    cases."""
    return _evaluate("power", x, y)
