"""Reductions: sum and its adjoint broadcast_to, mean, max, min, var, argmax, argmin;
and :func:`unbroadcast`, the one helper every broadcasting VJP uses.

Axis and keepdims follow NumPy.  ``max``/``min`` share the cotangent equally among tied
elements (as HIPS autograd does), so the gradient is the same whichever tie the forward
picked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from refopt import backend, kernels
from refopt.autodiff.tensor import Primitive, Tensor, constant
from refopt.ops.shape import _as_tensor, _unchanged, normalize_axes, reshape

__all__ = ["sum", "mean", "max", "min", "var", "argmax", "argmin", "broadcast_to", "unbroadcast"]


def _xp(a: Any) -> Any:
    return backend.namespace(a)


def _keepdims_shape(shape: tuple, axes: tuple) -> tuple:
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


# -- broadcast_to / unbroadcast -------------------------------------------------------------
_broadcast_to = Primitive("broadcast_to", lambda x, shape: _xp(x).broadcast_to(x, shape), structural=True)
_broadcast_to.defvjp(lambda g, ans, x, shape: unbroadcast(g, x.shape))


def broadcast_to(x: Any, shape: Sequence[int]) -> Tensor:
    """``x`` broadcast to ``shape`` (NumPy rules)."""
    x = _as_tensor(x)
    shape = tuple(int(s) for s in shape)
    if x.shape == shape and _unchanged(x):
        return x
    nlead = len(shape) - x.ndim
    if nlead < 0 or any(s != t and s != 1 for s, t in zip(x.shape, shape[nlead:])):
        raise ValueError(f"refopt.broadcast_to: cannot broadcast shape {x.shape} to {shape}")
    return _broadcast_to(x, shape=shape)


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum ``g`` over the axes that broadcasting added or stretched, giving ``shape``.

    The adjoint of broadcasting ``shape`` up to ``g.shape``: leading axes are summed away,
    axes where ``shape`` has 1 and ``g`` has more are summed with keepdims.
    """
    if g.shape == shape and _unchanged(g):
        return g
    nlead = g.ndim - len(shape)
    axes = tuple(range(nlead)) + tuple(nlead + i for i, s in enumerate(shape) if s == 1 and g.shape[nlead + i] != 1)
    out = _sum(g, axes=axes, keepdims=False) if axes else g
    return reshape(out, shape)


# -- sum / mean -----------------------------------------------------------------------------
def _sum_vjp(g: Tensor, ans: Tensor, x: Tensor, axes: tuple, keepdims: bool) -> Tensor:
    return broadcast_to(reshape(g, _keepdims_shape(x.shape, axes)), x.shape)


_sum = Primitive("sum", kernels.sum)
_sum.defvjp(_sum_vjp)


def sum(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (all axes when None)."""
    x = _as_tensor(x)
    return _sum(x, axes=normalize_axes(axis, x.ndim, "sum"), keepdims=bool(keepdims))


def _count(shape: tuple, axes: tuple) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


_mean = Primitive("mean", kernels.mean)
_mean.defvjp(lambda g, ans, x, axes, keepdims: _sum_vjp(g, ans, x, axes, keepdims) / _count(x.shape, axes))


def mean(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """Arithmetic mean over ``axis``."""
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "mean")
    if _count(x.shape, axes) == 0:
        raise ValueError(f"refopt.mean: mean over an empty axis of shape {x.shape}")
    return _mean(x, axes=axes, keepdims=bool(keepdims))


# -- max / min ------------------------------------------------------------------------------
def _chooser_vjp(g: Tensor, ans: Tensor, x: Tensor, axes: tuple, keepdims: bool) -> Tensor:
    xp = _xp(x.data)
    kd = _keepdims_shape(x.shape, axes)
    hit = xp.astype(x.data == xp.reshape(ans.data, kd), x.data.dtype)
    share = hit / xp.sum(hit, axis=axes, keepdims=True)
    return broadcast_to(reshape(g, kd), x.shape) * constant(share)


_max = Primitive("max", kernels.max)
_max.defvjp(_chooser_vjp)
_min = Primitive("min", kernels.min)
_min.defvjp(_chooser_vjp)


def _reduce_nonempty(prim: Primitive, x: Any, axis: Any, keepdims: bool) -> Tensor:
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, prim.name)
    if _count(x.shape, axes) == 0:
        raise ValueError(f"refopt.{prim.name}: reduction over an empty axis of shape {x.shape}")
    return prim(x, axes=axes, keepdims=bool(keepdims))


def max(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """Largest element over ``axis``; tied maxima share the gradient equally."""
    return _reduce_nonempty(_max, x, axis, keepdims)


def min(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """Smallest element over ``axis``; tied minima share the gradient equally."""
    return _reduce_nonempty(_min, x, axis, keepdims)


def var(x: Any, axis: int | Sequence[int] | None = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
    """Variance ``sum((x - mean(x))**2) / (n - ddof)`` over ``axis``."""
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "var")
    n = _count(x.shape, axes)
    if n - ddof <= 0:
        raise ValueError(f"refopt.var: {n} elements with ddof={ddof} leave no degrees of freedom")
    d = x - mean(x, axes, keepdims=True)
    return _sum(d * d, axes=axes, keepdims=bool(keepdims)) / (n - ddof)


def _arg(fn: str, x: Any, axis: int | None, keepdims: bool) -> Tensor:
    data = x.data if isinstance(x, Tensor) else _as_tensor(x).data
    xp = _xp(data)
    if axis is None:
        data = xp.reshape(data, (-1,))
        axis = 0
    elif isinstance(axis, bool) or not hasattr(axis, "__index__"):
        raise TypeError(f"refopt.{fn}: axis must be an int or None, got {axis!r}")
    else:
        (axis,) = normalize_axes(axis, data.ndim, fn)
    return constant(getattr(xp, fn)(data, axis=axis, keepdims=keepdims))


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the largest element (first on ties); not differentiable."""
    return _arg("argmax", x, axis, keepdims)


def argmin(x: Any, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the smallest element (first on ties); not differentiable."""
    return _arg("argmin", x, axis, keepdims)
