"""Correctly rounded matrix products on top of an ordinary BLAS.

``matmul(a, b)`` returns ``RN(a @ b)``: every entry is the exact sum of its ``k``
products, rounded once to the nearest float of the operands' dtype (ties to even).  It
is therefore a function of the operands alone -- the BLAS, its kernel choice, its
summation order and its thread count cannot change a bit.

How (error-free splitting; Ozaki, Ogita, Oishi & Rump, "Error-free transformations of
matrix multiplication by using fast routines of matrix multiplication", Numerical
Algorithms 59, 2012):

1. **Slices.**  Each row ``r`` of ``A`` gets the exponent ``E_r`` with
   ``max_l |A[r, l]| < 2^E_r``, and ``A`` is cut into integer-valued float64 slices
   ``S_0, S_1, ...`` of ``bA`` bits each::

       A[r, l] = sum_i S_i[r, l] * 2^(E_r - (i+1) bA),   |S_0| <= 2^bA,  |S_i| <= 2^(bA-1)

   (``S_i = rint(remainder * 2^((i+1) bA - E_r))``, exact power-of-two scalings).  The
   columns of ``B`` likewise, ``bB`` bits per slice.  ``nA`` slices represent ``A``
   exactly once ``nA * bA`` reaches the *width* of ``A``: the largest distance, over
   rows, from ``E_r`` down to the lowest set bit of any entry of the row (24 bits for a
   row of float32 values of one binade, more when a row spans several binades).

2. **Exact products.**  With ``bA + bB <= 53 - ceil(log2 k)`` every entry of
   ``S_i @ T_j`` is a sum of ``k`` integers of magnitude at most ``2^(bA+bB)``: every
   partial sum, in *any* order, with or without FMA, is an integer of magnitude at most
   ``2^53`` and so exact in float64.  Each GEMM is exact whatever the BLAS does.

   ========  ==============  ==============================  ==============================
   k         bA + bB           GEMMs, rows of one binade:      GEMMs, rows of one binade:
             = 53-ceil(lg k)   24 bits (float32)               53 bits (float64)
   ========  ==============  ==============================  ==============================
   <= 2^5    48                1                               6
   <= 2^11   42                2                               8
   <= 2^20   33                3                               12
   <= 2^24   29                4                               15
   ========  ==============  ==============================  ==============================

   A row spanning several binades is wider (its width grows by the range), and needs
   more slices; ``(bA, bB)``, chosen by :func:`slice_plan`, minimise ``nA * nB``.  2^24
   is the largest inner dimension supported.

3. **Exact sum, one rounding.**  The ``nA * nB`` integer matrices are added, each at its
   own power of two, into an integer *limb* accumulator (int64 limbs of 30 bits, carries
   propagated), which holds ``sum_ij S_i T_j`` exactly.  The result is rounded once to
   the target format in integer arithmetic: keep ``p`` bits (24 or 53; fewer where the
   result is subnormal), round half to even with the next bit and a sticky bit, scale by
   the exact power of two (overflow gives infinity, as IEEE rounding does).

4. **float32 shortcut.**  For float32 operands (k <= 2^20) one float64 GEMM already
   decides almost every entry: the products are exact in float64, so whatever order the
   BLAS sums in, ``|fl(A @ B) - A @ B| <= gamma_(k-1) (|A| @ |B|)``, and by Cauchy-Schwarz
   ``(|A| @ |B|)_ij <= ||A_i|| ||B_j||``; where the whole interval around the float64
   result rounds to one float32, that float32 is ``RN(A @ B)``.  The few undecided
   entries (near a rounding boundary, or under cancellation) get the tight bound, and
   those still undecided go through steps 1-3 -- Ziv's strategy: one GEMM, row and
   column norms and one decision pass instead of three to six GEMMs.

Non-finite operands follow IEEE arithmetic on the set of products (any NaN product or
``inf * 0`` gives NaN, ``+inf`` and ``-inf`` products together give NaN, otherwise the
infinity).  An exact zero sum is ``+0``.

Assumption about the BLAS: each entry of a product is *some* sum of its ``k`` products
(any order, blocking, threads, FMA) -- true of OpenBLAS, MKL, BLIS, Accelerate and
cuBLAS.  A Strassen-like algorithm would break step 2; none of them uses one for GEMM.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["matmul", "slice_plan", "LIMB_BITS", "MAX_INNER"]

LIMB_BITS = 30
_MASK = (1 << LIMB_BITS) - 1
MAX_INNER = 2**24  # the largest inner dimension supported (and tested against exact arithmetic)
_FORMAT = {  # precision p and the exponent of the smallest subnormal
    "float32": (24, -149),
    "float64": (53, -1074),
}


def _lib(a: Any) -> ModuleType:
    """NumPy or CuPy itself (not the array-API wrapper): frexp, ldexp, view, rint."""
    if isinstance(a, np.ndarray):
        return np
    import cupy

    return cupy


# -- step 1: slices ---------------------------------------------------------------------------
def _exponents(xp: ModuleType, x: Any, axis: int) -> Any:
    """E with max |x| < 2^E along ``axis`` (kept as a size-1 axis); 0 for all-zero lines."""
    _, e = xp.frexp(xp.max(xp.abs(x), axis=axis, keepdims=True))
    return e.astype(xp.int64)


def _width(xp: ModuleType, x: Any, e: Any) -> int:
    """Largest distance (bits) from a line's exponent E down to the lowest set bit of any
    of its entries: the bits the slices must cover for ``x`` to be represented exactly."""
    frac, ex = xp.frexp(x)
    mant = (frac * 9007199254740992.0).astype(xp.int64)  # frac * 2^53: an exact integer
    low = mant & -mant  # the lowest set bit, as a power of two
    _, tz1 = xp.frexp(low.astype(xp.float64))  # log2(low) + 1
    lowbit = ex.astype(xp.int64) - 53 + (tz1.astype(xp.int64) - 1)
    span = xp.where(x != 0, e - lowbit, 0)
    return int(xp.max(span)) if span.size else 0


def _slices(xp: ModuleType, x: Any, e: Any, bits: int, count: int) -> list[Any]:
    """``count`` integer-valued slices of ``bits`` bits, with ``x`` = sum_i S_i 2^(e-(i+1) bits).

    The remainder is formed in the scaled domain, ``scaled - S_i`` (exact, at most 1/2),
    then scaled back: exact, and it cannot overflow even where ``S_i`` rounded up to
    ``2^bits`` at the top of the float range.  Where ``S_i`` is 0 the remainder is the
    entry itself (its scaled value may have underflowed)."""
    out = []
    rem = x
    for i in range(count):
        shift = ((i + 1) * bits - e).astype(xp.int32)
        scaled = xp.ldexp(rem, shift)
        s = xp.rint(scaled)
        out.append(s)
        if i + 1 < count:
            rem = xp.where(s == 0, rem, xp.ldexp(scaled - s, -shift))
    return out


def slice_plan(width_a: int, width_b: int, k: int) -> tuple[int, int, int, int]:
    """``(bA, nA, bB, nB)``: bits per slice and slice counts for operands of these widths
    and inner dimension ``k`` -- the fewest GEMMs ``nA * nB`` with ``bA + bB = 53 -
    ceil(log2 k)`` (ties: fewer slices in all, then wider ``A`` slices)."""
    if not 1 <= k <= MAX_INNER:
        raise ValueError(
            f"refopt.matmul: inner dimension {k} is outside 1..2^24, the range of the correctly rounded "
            "product; rf.use_mode('fast') uses the BLAS directly"
        )
    budget = 53 - max(0, math.ceil(math.log2(k)))
    best = None
    for ba in range(1, budget):
        bb = budget - ba
        na, nb = -(-width_a // ba), -(-width_b // bb)
        key = (na * nb, na + nb, -ba)
        if best is None or key < best[0]:
            best = (key, (ba, na, bb, nb))
    return best[1]


# -- step 3: limbs and the one rounding --------------------------------------------------------
def _accumulate(xp: ModuleType, limbs: Any, p: Any, offset: int) -> None:
    """limbs += p * 2^offset, for an integer-valued float64 array |p| <= 2^53."""
    q, s = divmod(offset, LIMB_BITS)
    v = p.astype(xp.int64)
    limbs[q] += (v & ((1 << (LIMB_BITS - s)) - 1)) << s
    rest = v >> (LIMB_BITS - s)
    limbs[q + 1] += rest & _MASK
    limbs[q + 2] += rest >> LIMB_BITS


def _normalize(xp: ModuleType, limbs: Any) -> None:
    """Propagate carries: every limb but the top one into [0, 2^30)."""
    for j in range(limbs.shape[0] - 1):
        carry = limbs[j] >> LIMB_BITS
        limbs[j] &= _MASK
        limbs[j + 1] += carry


def _gather(xp: ModuleType, limbs: Any, idx: Any) -> Any:
    """``limbs[idx]`` per entry; 0 where ``idx`` is outside the limbs."""
    n = limbs.shape[0]
    inside = (idx >= 0) & (idx < n)
    got = xp.take_along_axis(limbs, xp.clip(idx, 0, n - 1)[None], axis=0)[0]
    return xp.where(inside, got, 0)


def _round(xp: ModuleType, limbs: Any, scale: Any, dtype_name: str) -> Any:
    """RN(sum_j limbs[j] 2^(30 j) * 2^scale) in ``dtype_name``, elementwise.

    ``limbs`` (modified) is an exact signed integer per entry after :func:`_normalize`.
    """
    prec, emin = _FORMAT[dtype_name]
    n = limbs.shape[0]
    negative = limbs[n - 1] < 0
    if bool(xp.any(negative)):
        limbs[:, negative] = -limbs[:, negative]
        _normalize(xp, limbs)
    nonzero = limbs != 0
    any_nonzero = xp.any(nonzero, axis=0)
    # t: the highest nonzero limb, bl: its bit length; nb: the bit length of the integer M.
    top = (n - 1) - xp.argmax(nonzero[::-1], axis=0)
    bottom = xp.argmax(nonzero, axis=0)  # the lowest nonzero limb
    _, bl = xp.frexp(_gather(xp, limbs, top).astype(xp.float64))
    nb = top * LIMB_BITS + bl.astype(xp.int64)
    # Keep the bits from d up: p of them, fewer where the result is subnormal.
    d = xp.maximum(xp.maximum(nb - prec, emin - scale), 0)
    below = d > nb  # every bit is under the rounding position: kept = 0, round bit 0
    d = xp.where(below, 0, d)
    q, s = d // LIMB_BITS, d % LIMB_BITS
    kept = (
        (_gather(xp, limbs, q) >> s)
        | (_gather(xp, limbs, q + 1) << (LIMB_BITS - s))
        | (_gather(xp, limbs, q + 2) << (2 * LIMB_BITS - s))
    )
    window = _gather(xp, limbs, q - 1) | (_gather(xp, limbs, q) << LIMB_BITS)  # bit d-1 is bit 29 + s
    rbit = (window >> (LIMB_BITS - 1 + s)) & 1
    low = window & ((xp.ones_like(s) << (LIMB_BITS - 1 + s)) - 1)
    sticky = (low != 0) | (bottom < q - 1)  # or a nonzero limb below limb q-1
    kept = kept + (rbit & (sticky | (kept & 1)).astype(xp.int64))
    kept = xp.where(below, 0, kept)
    exp = xp.clip(scale + d, -2200, 2200).astype(xp.int32)
    with np.errstate(over="ignore"):  # a result past the largest float is infinity
        out = xp.ldexp(kept.astype(xp.float64), exp)
        out = xp.where(negative & any_nonzero, -out, out)
        return out.astype(getattr(xp, dtype_name))


# -- non-finite operands ------------------------------------------------------------------------
def _nonfinite(xp: ModuleType, a: Any, b: Any, finite: Any) -> Any:
    """Patch ``finite`` (the exact result of the finite parts) where a product is not finite.

    Counts, with exact 0/1 GEMMs, the NaN products (NaN operand, inf * 0) and the +inf
    and -inf products of every entry."""
    f = xp.float64

    def ind(c: Any) -> Any:
        return c.astype(f)

    a_inf, b_inf = xp.isinf(a), xp.isinf(b)
    a_fin, b_fin = xp.isfinite(a), xp.isfinite(b)
    nan = (
        ind(xp.isnan(a)) @ xp.ones(b.shape, f)
        + xp.ones(a.shape, f) @ ind(xp.isnan(b))
        + ind(a_inf) @ ind(b == 0)
        + ind(a == 0) @ ind(b_inf)
    )
    a_p, a_n, b_p, b_n = ind(a == np.inf), ind(a == -np.inf), ind(b == np.inf), ind(b == -np.inf)
    a_pf, a_nf, b_pf, b_nf = ind(a_fin & (a > 0)), ind(a_fin & (a < 0)), ind(b_fin & (b > 0)), ind(b_fin & (b < 0))
    pinf = a_p @ (b_pf + b_p) + a_n @ (b_nf + b_n) + a_pf @ b_p + a_nf @ b_n
    ninf = a_p @ (b_nf + b_n) + a_n @ (b_pf + b_p) + a_pf @ b_n + a_nf @ b_p
    out = xp.where(pinf > 0, np.inf, xp.where(ninf > 0, -np.inf, finite.astype(f)))
    out = xp.where((nan > 0) | ((pinf > 0) & (ninf > 0)), np.nan, out)
    return out.astype(finite.dtype)


# -- the product ---------------------------------------------------------------------------------
def _exact(xp: ModuleType, a: Any, b: Any, dtype_name: str, dots: bool = False) -> Any:
    """RN of the exact products, from float64 arrays (finite, k >= 1): ``a @ b`` for
    shapes (..., m, k) and (..., k, n); with ``dots``, the row-wise dot products of two
    (f, k) arrays (the same arithmetic, entry by entry)."""
    k = a.shape[-1]
    ea, eb = _exponents(xp, a, -1), _exponents(xp, b, -1 if dots else -2)
    ba, na, bb, nb = slice_plan(_width(xp, a, ea), _width(xp, b, eb), k)
    if dots:
        out_shape = a.shape[:-1]
        scale0 = ea[..., 0] + eb[..., 0]
    else:
        out_shape = np.broadcast_shapes(a.shape[:-1] + (1,), b.shape[:-2] + (1, b.shape[-1]))
        scale0 = ea + eb
    if na == 0 or nb == 0:  # an operand is all zeros
        return xp.zeros(out_shape, dtype=getattr(xp, dtype_name))
    sa, sb = _slices(xp, a, ea, ba, na), _slices(xp, b, eb, bb, nb)
    top = na * ba + nb * bb
    nlimbs = (top + 53 + 2 * LIMB_BITS) // LIMB_BITS + 2
    limbs = xp.zeros((nlimbs,) + tuple(out_shape), dtype=xp.int64)
    for i, s in enumerate(sa):
        for j, t in enumerate(sb):
            p = xp.sum(s * t, axis=-1) if dots else xp.matmul(s, t)  # exact: integers <= 2^53
            _accumulate(xp, limbs, p, top - (i + 1) * ba - (j + 1) * bb)
    _normalize(xp, limbs)
    return _round(xp, limbs, xp.broadcast_to(scale0 - top, out_shape), dtype_name)


# Bound on |fl(a @ b) - a @ b| for float32 operands in float64, any summation order:
# the products are exact, so the error is at most gamma_(k-1) * (|a| @ |b|) (Higham,
# "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 4.2), and a
# computed sum of nonnegative terms is at least (1 - gamma_(k-1)) times the true one.
# For k <= 2^20, gamma_(k-1) / (1 - gamma_(k-1)) <= k u (1 + 2^-30), u = 2^-53; the
# factor 1 + 2^-20 in _ERR covers that and the roundings of the bound's own arithmetic.
_F32_DECIDABLE_K = 2**20


_ERR = 2.0**-53 * (1 + 2.0**-20)  # per unit of k: the bound's factor, with slack for its own roundings


def _decided(xp: ModuleType, c: Any, bound: Any) -> tuple[Any, Any]:
    """RN32 of ``c`` where the interval ``c -+ bound`` rounds to one float32 (same bits,
    signed zeros included), and the mask of the entries where it does not."""
    err = bound + xp.abs(c) * 2.0**-52  # so that rounding c -+ err cannot move past the bound
    with np.errstate(over="ignore"):  # beyond the float32 range: infinity, decided like the rest
        lo = (c - err).astype(xp.float32)
        hi = (c + err).astype(xp.float32)
    return hi, lo.view(xp.int32) != hi.view(xp.int32)


def _compiled_decision() -> bool:
    from refopt.kernels.mode import current_kernels

    return current_kernels() == "numba"


def _matmul_f32(xp: ModuleType, a: Any, b: Any) -> Any:
    """RN(a @ b) in float32 from float32 operands widened to float64 (finite, k >= 1).

    One float64 GEMM approximates the product; its error is bounded, whatever order the
    BLAS summed in, by ``gamma_(k-1) sum_l |a_il| |b_lj|`` (the products are exact), and
    where the whole interval around the approximation rounds to one float32 (same bits,
    signed zeros included), that float32 is RN(a @ b).  The bound is taken first from
    Cauchy-Schwarz, ``sum_l |a_il b_lj| <= ||a_i|| ||b_j||`` (norms: O(mk + kn) work, no
    second GEMM); the few entries it leaves undecided get the tight bound (their own dot
    products of |a| and |b|), and those still undecided -- near a rounding boundary, or
    under heavy cancellation, rare -- are computed exactly.  (Ziv's strategy: an
    approximation with a rigorous error bound, the exact computation only when the bound
    cannot decide.)"""
    k = a.shape[-1]
    c = xp.matmul(a, b)
    ra = xp.sqrt(xp.sum(a * a, axis=-1, keepdims=True))
    cb = xp.sqrt(xp.sum(b * b, axis=-2, keepdims=True))
    factor = k * _ERR * (1 + 2.0**-40)  # 2^-40: the norms' own roundings
    if xp is np and _compiled_decision():
        from refopt.kernels._gemm_numba import decide

        c3 = c.reshape((-1,) + c.shape[-2:])
        out = np.empty(c3.shape, np.float32)
        undecided = np.empty(c3.shape, np.bool_)
        ra2 = np.broadcast_to(ra[..., 0], c.shape[:-1]).reshape(c3.shape[:2])
        cb2 = np.broadcast_to(cb[..., 0, :], c.shape[:-2] + c.shape[-1:]).reshape(c3.shape[0], c3.shape[2])
        count = int(decide(c3, np.ascontiguousarray(ra2), np.ascontiguousarray(cb2), factor, out, undecided))
        out, undecided = out.reshape(c.shape), undecided.reshape(c.shape)
    else:
        out, undecided = _decided(xp, c, (ra * cb) * factor)
        count = int(xp.count_nonzero(undecided))
    if count == 0:
        return out
    shape = undecided.shape
    if 8 * count > undecided.size:  # a loose bound everywhere (sparse, structured data): the tight one
        tight, undecided = _decided(xp, c, xp.matmul(xp.abs(a), xp.abs(b)) * (k * _ERR))
        out = tight
        count = int(xp.count_nonzero(undecided))
        if count == 0:
            return out
        if 4 * count > undecided.size:  # heavy cancellation everywhere: the whole product exactly
            return _exact(xp, a, b, "float32")
        idx = xp.nonzero(undecided)
        rows, cols = _entries(xp, a, b, shape, idx)
    else:
        idx = xp.nonzero(undecided)
        rows, cols = _entries(xp, a, b, shape, idx)
        tight, still = _decided(xp, c[idx], xp.sum(xp.abs(rows) * xp.abs(cols), axis=-1) * (k * _ERR))
        out[idx] = tight
        if not bool(xp.any(still)):
            return out
        idx = tuple(i[still] for i in idx)
        rows, cols = rows[still], cols[still]
    out[idx] = _exact(xp, rows, cols, "float32", dots=True)
    return out


def _entries(xp: ModuleType, a: Any, b: Any, shape: tuple, idx: tuple) -> tuple[Any, Any]:
    """The rows of ``a`` and columns of ``b`` that make the entries ``idx`` of ``a @ b``,
    as two (count, k) arrays."""
    k = a.shape[-1]
    rows = xp.broadcast_to(a, shape[:-1] + (k,))[idx[:-1]]
    cols = xp.moveaxis(xp.broadcast_to(b, shape[:-2] + (k, shape[-1])), -1, -2)[idx[:-2] + (idx[-1],)]
    return rows, cols


def matmul(a: Any, b: Any) -> Any:
    """``RN(a @ b)``, correctly rounded, for NumPy or CuPy float32/float64 arrays of one
    dtype, with ``numpy.matmul``'s shape rules (1-D operands, broadcast batch axes)."""
    xp = _lib(a)
    dtype_name = np.dtype(a.dtype).name if xp is np else str(a.dtype)
    if dtype_name not in _FORMAT or b.dtype != a.dtype:
        raise TypeError(f"refopt.kernels.matmul: needs two float32 or two float64 arrays, got {a.dtype} and {b.dtype}")
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    k = a2.shape[-1]
    if k != b2.shape[-2]:
        raise ValueError(f"refopt.kernels.matmul: shapes {a.shape} and {b.shape} are not aligned")
    if k > MAX_INNER:
        slice_plan(1, 1, k)  # raises the error that explains the limit
    a64, b64 = a2.astype(xp.float64), b2.astype(xp.float64)
    finite = bool(xp.all(xp.isfinite(a64))) and bool(xp.all(xp.isfinite(b64)))
    fa, fb = (a64, b64) if finite else (xp.where(xp.isfinite(a64), a64, 0.0), xp.where(xp.isfinite(b64), b64, 0.0))
    out_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1])
    if k == 0 or 0 in out_shape:  # an empty sum is +0; an empty output has nothing to compute
        out = xp.zeros(out_shape, dtype=a.dtype)
    elif dtype_name == "float32" and k <= _F32_DECIDABLE_K:
        out = _matmul_f32(xp, fa, fb)
    else:
        out = _exact(xp, fa, fb, dtype_name)
    if not finite:
        out = _nonfinite(xp, a64, b64, out)
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out
