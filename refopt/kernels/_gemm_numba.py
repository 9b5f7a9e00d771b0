"""The float32 product's decision pass, compiled: one loop over ``c = fl(a @ b)`` that
forms each entry's error bound, rounds ``c -+ err`` to float32, writes the result and
marks the entries whose two roundings differ (see :func:`refopt.kernels.gemm._matmul_f32`).
The same arithmetic as the NumPy fallback there; its output, where decided, is the unique
correctly rounded value."""

from __future__ import annotations

import numba
import numpy as np

from refopt.kernels._numba_support import bits32, fabs

_ULP52 = 2.0**-52


@numba.njit(fastmath=False, error_model="numpy", cache=True, nogil=True)
def decide(c, ra, cb, factor, out, mask):  # noqa: ANN001, ANN201 - numba
    """``c``: (B, m, n) float64; ``ra``: (B, m) and ``cb``: (B, n) norm bounds; writes
    ``out`` (float32) and ``mask`` (undecided), returns the number of undecided entries."""
    count = 0
    for b in range(c.shape[0]):
        for i in range(c.shape[1]):
            r = ra[b, i] * factor
            for j in range(c.shape[2]):
                x = c[b, i, j]
                err = r * cb[b, j] + fabs(x) * _ULP52
                lo = np.float32(x - err)
                hi = np.float32(x + err)
                out[b, i, j] = hi
                u = bits32(lo) != bits32(hi)
                mask[b, i, j] = u
                count += u
    return count
