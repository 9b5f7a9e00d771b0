"""refopt's kernels: the arithmetic whose bits refopt decides itself.

* :mod:`~refopt.kernels.mode` -- the numerics mode, ``"reproducible"`` (default) or
  ``"fast"``;
* :mod:`~refopt.kernels.gemm` -- the correctly rounded matrix product;
* :mod:`~refopt.kernels.reduce` -- fixed-order sums, extremes with a fixed sign of zero;
* :mod:`~refopt.kernels.transcendental` -- exp, log, log1p, tanh, sigmoid, erf, erfc,
  gelu (both forms) and power, refopt's own (<= 1 ULP, docs/transcendental-errors.md);
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
from refopt.kernels import transcendental as _tr
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
]


def _run(kernel: Callable[..., Any], *arrays: Any, **kwargs: Any) -> Any:
    """``kernel(lib, *arrays)`` with lib = numpy or cupy; strict arrays go through NumPy."""
    ref = next((a for a in arrays if hasattr(a, "__array_namespace__") or isinstance(a, np.generic)), None)
    if ref is None:  # the ops convert Python values first; a direct call may not have
        got = ", ".join(type(a).__name__ for a in arrays)
        raise TypeError(f"refopt.kernels: expected a NumPy, CuPy or array-API array among the inputs, got {got}")
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


def _reduction(name: str, kernel: Callable[..., Any], what: str) -> Callable[[Any, tuple, bool], Any]:
    def fn(x: Any, axes: tuple, keepdims: bool) -> Any:
        if reproducible():
            return _run(kernel, x, axes=axes, keepdims=keepdims)
        return getattr(backend.namespace(x), name)(x, axis=axes, keepdims=keepdims)

    fn.__name__ = name
    fn.__doc__ = f"{what} over ``axes``; reproducible mode: :mod:`refopt.kernels.reduce`, fast: the library's."
    return fn


sum = _reduction("sum", _red.tree_sum, "Sum (a fixed pairwise order)")
mean = _reduction("mean", _red.tree_mean, "Mean (fixed-order sum / n)")
max = _reduction("max", _red.max, "Largest element (a zero result's sign fixed)")
min = _reduction("min", _red.min, "Smallest element (a zero result's sign fixed)")


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


# -- transcendental functions ------------------------------------------------------------------
_SQRT1_2 = 0.7071067811865476
_SQRT_2_OVER_PI = 0.7978845608028654


def _fast_sigmoid(x: Any) -> Any:
    xp = backend.namespace(x)
    e = xp.exp(-xp.abs(x))  # never overflows
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _fast_gelu(x: Any) -> Any:
    return x * 0.5 * backend.erfc(x * -_SQRT1_2)


def _fast_gelu_tanh(x: Any) -> Any:
    xp = backend.namespace(x)
    return 0.5 * x * (1.0 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))))


def _unary(name: str, fast: Callable[[Any], Any]) -> Callable[[Any], Any]:
    kernel = getattr(_tr, name)

    def fn(x: Any) -> Any:
        if reproducible():
            return _run(lambda lib, a: kernel(a), x)
        return fast(x)

    fn.__name__ = name
    fn.__doc__ = f"``{name}`` elementwise: refopt's own (reproducible) or the library's (fast)."
    return fn


exp = _unary("exp", lambda x: backend.namespace(x).exp(x))
log = _unary("log", lambda x: backend.namespace(x).log(x))
log1p = _unary("log1p", lambda x: backend.namespace(x).log1p(x))
tanh = _unary("tanh", lambda x: backend.namespace(x).tanh(x))
sigmoid = _unary("sigmoid", _fast_sigmoid)
erf = _unary("erf", backend.erf)
erfc = _unary("erfc", backend.erfc)
gelu = _unary("gelu", _fast_gelu)
gelu_tanh = _unary("gelu_tanh", _fast_gelu_tanh)


def power(x: Any, y: Any) -> Any:
    """``x ** y`` elementwise; either may be a Python number (weak: it takes the other's
    dtype).  Reproducible: refopt's C99 ``pow`` (<= 1 ULP), with the exponents whose
    result is one IEEE operation computed as that operation, correctly rounded
    (``x**2 = x*x``, ``x**-1 = 1/x``, ``x**0.5 = sqrt(x)`` with pow's signed zero)."""
    scalar_x = isinstance(x, (int, float))
    if not reproducible():
        return backend.namespace(y if scalar_x else x).pow(x, y)
    if isinstance(y, (int, float)):
        xp = backend.namespace(x)
        if y == 2:
            return x * x
        if y == 1:
            return x * 1
        if y == -1:
            return 1 / x
        if y == 0:
            return xp.ones_like(x)
        if y == 0.5:  # pow(-0, 0.5) = +0 and pow(-inf, 0.5) = +inf, unlike sqrt
            r = xp.sqrt(x) + 0.0
            return xp.where(x == -float("inf"), float("inf"), r)
        y = xp.full_like(x, y)
    elif scalar_x:
        x = backend.namespace(y).full_like(y, x)
    return _run(lambda lib, a, b: _tr.power(a, b), x, y)
