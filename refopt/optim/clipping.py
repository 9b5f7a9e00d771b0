"""Gradient clipping, in each convention's formula.

Global-norm clipping, with n = sqrt(sum_i sum(g_i^2)) and threshold c:

* keras / tf1 / bert (``tf.clip_by_global_norm``, Keras ``clip_by_global_norm``):
  ``g * (c * min(1/n, 1/c) + (n - n))`` -- the ``n - n`` term turns a non-finite norm
  into NaN gradients instead of silently passing them;
* torch (``torch.nn.utils.clip_grad_norm_``): n is the norm of the per-tensor norms;
  ``g * min(c / (n + 1e-6), 1)``;
* optax (``clip_by_global_norm``): ``g`` if n < c else ``(g / n) * c``.

``clipnorm`` (per tensor, Keras/``tf.clip_by_norm``): ``g * c / max(||g||, c)``;
``clipvalue``: ``clip(g, -c, c)``.  All arithmetic is in the gradients' dtype.

Float32 and float64 gradients together (global norm): torch's ``clip_grad_norm_`` takes
each tensor's norm in its dtype, stacks them (grouped by dtype, first appearance first)
in float64 and multiplies each gradient by the coefficient cast to its dtype; optax sums
the squares with promotion and divides each leaf by the norm cast to its dtype.
TensorFlow's ops take one dtype, so keras, tf1 and bert refuse the mix, as they do.

The sums of squares are refopt's fixed-order sums (the same bits on every machine, see
:mod:`refopt.kernels.reduce`); the frameworks' reductions add in their kernels' own
order, so a norm may differ from theirs in the last bit or two, and a clipped gradient
with it (docs/conventions.md gives the measured distance).  When no clipping happens the
gradients pass unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from refopt import backend, kernels
from refopt.autodiff.tensor import Tensor, constant
from refopt.optim.conventions import CONVENTION

__all__ = ["clip_by_global_norm", "global_norm", "clip_arrays"]


def _xp(a: Any) -> Any:
    return backend.namespace(a)


def _sumsq(g: Any) -> Any:
    return kernels.sum(g * g, tuple(range(g.ndim)), False)


def global_norm(arrays: Sequence[Any], convention: str = "tf1") -> Any:
    """sqrt of the summed squares of every entry of ``arrays`` (None entries skipped),
    accumulated as ``convention`` does (torch: the norm of the per-tensor norms)."""
    present = [a for a in arrays if a is not None]
    if not present:
        raise ValueError("global_norm: no gradients (every entry is None)")
    xp = _xp(present[0])
    if convention == "torch":
        dtypes = list(dict.fromkeys(a.dtype for a in present))  # torch groups by dtype, in first-seen order
        norms = [xp.sqrt(_sumsq(a)) for d in dtypes for a in present if a.dtype == d]
        wide = xp.result_type(*dtypes)  # torch.stack promotes the norms
        norms = [xp.asarray(n, dtype=wide) for n in norms]
        total = norms[0] * norms[0]
        for n in norms[1:]:
            total = total + n * n
        return xp.sqrt(total)
    total = _sumsq(present[0])
    for a in present[1:]:
        total = total + _sumsq(a)
    return xp.sqrt(total)


def _scale_global(arrays: list[Any], max_norm: float, convention: str) -> list[Any]:
    present = [a for a in arrays if a is not None]
    refusal = CONVENTION[convention].clip_mixed_dtypes if convention in CONVENTION else None
    if refusal and len({backend.dtype_name(a.dtype) for a in present}) > 1:
        raise TypeError(
            f"global-norm clipping of float32 and float64 gradients together: {CONVENTION[convention].framework} "
            f"refuses it -- {refusal}; train the variables in one dtype (rf.cast), or use clipnorm / clipvalue"
        )
    n = global_norm(present, convention)
    dtype = n.dtype
    c = np.asarray(max_norm, dtype=dtype)[()]
    xp = _xp(n)
    if convention == "torch":
        coef = xp.minimum(c / (n + np.asarray(1e-6, dtype=dtype)[()]), np.asarray(1.0, dtype=dtype)[()])
        return [None if a is None else a * xp.asarray(coef, dtype=a.dtype) for a in arrays]
    if convention == "optax":
        if bool(n < c):
            return list(arrays)
        return [
            None if a is None else (a / xp.asarray(n, dtype=a.dtype)) * np.asarray(max_norm, dtype=a.dtype)[()]
            for a in arrays
        ]
    one = np.asarray(1.0, dtype=dtype)[()]
    scale = c * xp.minimum(one / n, one / c) + (n - n)
    return [None if a is None else a * scale for a in arrays]


def clip_arrays(
    arrays: list[Any],
    convention: str,
    global_clipnorm: float | None = None,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
) -> list[Any]:
    """The optimizer's clipping step (at most one of the three is set)."""
    if global_clipnorm is not None:
        return _scale_global(arrays, global_clipnorm, convention)
    if clipnorm is not None:
        out = []
        for a in arrays:
            xp = _xp(a)
            c = np.asarray(clipnorm, dtype=a.dtype)[()]
            l2sum = _sumsq(a)
            l2norm = xp.sqrt(l2sum) if bool(l2sum > 0) else l2sum
            out.append((a * c) / xp.maximum(l2norm, c))
        return out
    if clipvalue is not None:
        return [_xp(a).clip(a, -float(clipvalue), float(clipvalue)) for a in arrays]
    return arrays


def clip_by_global_norm(grads: Sequence[Any], max_norm: float, convention: str = "tf1") -> tuple[list[Any], float]:
    """``(clipped, global_norm)`` as ``tf.clip_by_global_norm`` (or ``convention``'s
    formula): every gradient scaled by ``max_norm / max(global_norm, max_norm)``.

    ``grads`` may hold Tensors, arrays or None; the result holds the same kinds."""
    if not isinstance(max_norm, (int, float)) or isinstance(max_norm, bool) or not 0 < max_norm < math.inf:
        raise ValueError(f"clip_by_global_norm: max_norm must be a finite positive number, got {max_norm!r}")
    arrays = [None if g is None else (g.data if isinstance(g, Tensor) else g) for g in grads]
    arrays = [None if a is None else (a if hasattr(a, "__array_namespace__") else np.asarray(a)) for a in arrays]
    norm = float(global_norm(arrays, convention))
    clipped = _scale_global(arrays, float(max_norm), convention)
    out = [c if not isinstance(g, Tensor) or c is None else constant(c) for g, c in zip(grads, clipped)]
    return out, norm
