"""refopt's kernels: the arithmetic whose bits refopt decides itself.

* :mod:`~refopt.kernels.mode` -- the numerics mode, ``"reproducible"`` (default) or
  ``"fast"``;
* :mod:`~refopt.kernels.gemm` -- the correctly rounded matrix product;
* :mod:`~refopt.kernels.reduce` -- fixed-order sums, extremes with a fixed sign of zero;
* :mod:`~refopt.kernels.formula` -- the formula layer: elementwise formulas over IEEE
  basic operations, written once and evaluated on NumPy or CuPy arrays;
* :mod:`~refopt.kernels.eft` -- error-free transformations and double-double arithmetic;
* :mod:`~refopt.kernels.fma` -- exact fused multiply-add; :mod:`~refopt.kernels.libm` --
  the C library's ``pow``/``powf`` (what the frameworks' bias corrections call).

The functions below are what the ops call, on backend arrays.  In reproducible mode they
run refopt's kernels (NumPy and CuPy arrays directly; other array-API arrays through a
NumPy copy); in fast mode they call the array's own library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refopt import backend
from refopt.kernels import gemm as _mm
from refopt.kernels import reduce as _red
from refopt.kernels.mode import MODES, current_mode, reproducible, use_mode

__all__ = [
    "MODES",
    "current_mode",
    "reproducible",
    "use_mode",
    "matmul",
    "sum",
    "mean",
    "max",
    "min",
    "maximum",
    "minimum",
    "relu",
    "clip",
]


def _run(kernel: Callable[..., Any], *arrays: Any, **kwargs: Any) -> Any:
    """``kernel(lib, *arrays)`` with lib = numpy or cupy; strict arrays go through NumPy."""
    ref = next(a for a in arrays if hasattr(a, "__array_namespace__") or isinstance(a, np.generic))
    name = backend.backend_name(ref)
    if name == "numpy":
        return kernel(np, *arrays, **kwargs)
    if name == "cupy":
        import cupy

        return kernel(cupy, *arrays, **kwargs)
    host = [backend.to_host(a) if hasattr(a, "__array_namespace__") else a for a in arrays]
    return backend.move(np.asarray(kernel(np, *host, **kwargs)), name)


def matmul(a: Any, b: Any) -> Any:
    """``a @ b``: correctly rounded (reproducible) or the BLAS's (fast)."""
    if reproducible():
        return _run(lambda lib, x, y: _mm.matmul(x, y), a, b)
    return backend.namespace(a).matmul(a, b)


def sum(x: Any, axes: tuple, keepdims: bool) -> Any:
    """Sum over ``axes``: fixed pairwise order (reproducible) or the library's."""
    if reproducible():
        return _run(_red.tree_sum, x, axes=axes, keepdims=keepdims)
    return backend.namespace(x).sum(x, axis=axes, keepdims=keepdims)


def mean(x: Any, axes: tuple, keepdims: bool) -> Any:
    """Mean over ``axes``: fixed-order sum / n (reproducible) or the library's."""
    if reproducible():
        return _run(_red.tree_mean, x, axes=axes, keepdims=keepdims)
    return backend.namespace(x).mean(x, axis=axes, keepdims=keepdims)


def max(x: Any, axes: tuple, keepdims: bool) -> Any:
    """Largest element over ``axes``; a zero result's sign fixed in reproducible mode."""
    if reproducible():
        return _run(_red.max, x, axes=axes, keepdims=keepdims)
    return backend.namespace(x).max(x, axis=axes, keepdims=keepdims)


def min(x: Any, axes: tuple, keepdims: bool) -> Any:
    """Smallest element over ``axes``; a zero result's sign fixed in reproducible mode."""
    if reproducible():
        return _run(_red.min, x, axes=axes, keepdims=keepdims)
    return backend.namespace(x).min(x, axis=axes, keepdims=keepdims)


def maximum(a: Any, b: Any) -> Any:
    """Elementwise maximum (``-0 < +0`` in reproducible mode); either may be a Python number."""
    if reproducible():
        return _run(_red.maximum, a, b)
    xp = backend.namespace(a if hasattr(a, "__array_namespace__") else b)
    return xp.maximum(a, b)


def minimum(a: Any, b: Any) -> Any:
    """Elementwise minimum (``-0 < +0`` in reproducible mode); either may be a Python number."""
    if reproducible():
        return _run(_red.minimum, a, b)
    xp = backend.namespace(a if hasattr(a, "__array_namespace__") else b)
    return xp.minimum(a, b)


def relu(x: Any) -> Any:
    """``max(x, 0)``: +0 for every x <= 0 (the zero's sign fixed), NaN propagating."""
    xp = backend.namespace(x)
    if reproducible():
        return xp.where(x <= 0, xp.zeros_like(x), x)
    return xp.maximum(x, xp.zeros_like(x))


def clip(x: Any, lo: float | None, hi: float | None) -> Any:
    """``min(max(x, lo), hi)`` (either bound may be None), as :func:`maximum`/:func:`minimum`."""
    if not reproducible():
        return backend.namespace(x).clip(x, lo, hi)
    out = x if lo is None else maximum(x, lo)
    return out if hi is None else minimum(out, hi)
