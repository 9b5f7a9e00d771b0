"""Functional differentiation and gradient control: grad, value_and_grad, stop_gradient,
custom_gradient, scale_gradient.

These build on :func:`refopt.gradients`; because every backward pass is recorded, they
compose: ``grad(grad(f))`` is the second derivative, and Hessian-vector products are
``grad(lambda x: vdot(grad(f)(x), v))``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.graph import gradients
from refopt.autodiff.tensor import Primitive, Tensor, _is_float_dtype, constant, make_node

__all__ = ["grad", "value_and_grad", "stop_gradient", "custom_gradient", "scale_gradient", "identity"]


def stop_gradient(x: Any) -> Tensor:
    """Identity forward; no gradient flows through, at any order.

    The result is a new leaf holding the same value, so ``gradients`` treats every path
    through it as absent (``None`` when it is the only path).
    """
    if not isinstance(x, Tensor):
        return constant(x)
    t = Tensor.__new__(Tensor)
    t.data = x.data
    t._node = None
    return t


identity = Primitive("identity", lambda x: x)
identity.defvjp(lambda g, ans, x: g)

_scale_gradient = Primitive("scale_gradient", lambda x, alpha: x)
_scale_gradient.defvjp(lambda g, ans, x, alpha: g * alpha)


def scale_gradient(x: Any, alpha: float) -> Tensor:
    """Identity forward; the gradient is multiplied by ``alpha`` (a Python float).

    y = x,   dL/dx = alpha * dL/dy
    """
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise TypeError(f"refopt.scale_gradient: alpha must be a Python float, got {type(alpha).__name__}")
    return _scale_gradient(x, alpha=float(alpha))


def _custom_vjp_all(g: Tensor, ans: Tensor, *args: Any, grad_fn: Callable, fname: str) -> tuple:
    out = grad_fn(g)
    if not isinstance(out, (list, tuple)):
        out = (out,)
    if len(out) != len(args):
        raise ValueError(
            f"custom_gradient {fname!r}: grad_fn returned {len(out)} gradients for {len(args)} positional inputs"
        )
    res = []
    for i, (gi, a) in enumerate(zip(out, args)):
        if gi is None or not isinstance(a, Tensor):
            res.append(None)
            continue
        if not isinstance(gi, Tensor):
            gi = constant(gi)
        if gi.shape != a.shape or gi.dtype != a.dtype:
            raise ValueError(
                f"custom_gradient {fname!r}: gradient {i} has shape {gi.shape} and dtype "
                f"{backend.dtype_name(gi.dtype)}, its input has shape {a.shape} and dtype "
                f"{backend.dtype_name(a.dtype)}"
            )
        res.append(gi)
    return tuple(res)


_custom = Primitive("custom_gradient", lambda *a, **k: None)
_custom.vjp_all = _custom_vjp_all


def custom_gradient(f: Callable[..., tuple[Any, Callable[[Tensor], Any]]]) -> Callable[..., Tensor]:
    """Decorator, TensorFlow style: ``f(*xs)`` returns ``(y, grad_fn)``; ``grad_fn(dy)``
    returns one gradient per positional input (a single value when there is one input,
    ``None`` for an input that gets none).

    Example (TensorFlow's ``lr_mult``: the gradient of ``x1`` is scaled)::

        @rf.custom_gradient
        def scaled(x):
            def grad_fn(dy):
                return dy * lr_mult
            return rf.identity(x), grad_fn

    The ops inside ``f`` are recorded as usual, so a ``grad_fn`` written with refopt ops
    in terms of the inputs or of ``y`` is differentiable again (second order works).
    """

    @functools.wraps(f)
    def wrapped(*args: Any) -> Tensor:
        targs = tuple(a if isinstance(a, Tensor) else constant(a) if _is_array(a) else a for a in args)
        out = f(*targs)
        if not (isinstance(out, tuple) and len(out) == 2 and callable(out[1])):
            raise TypeError(f"custom_gradient {f.__name__!r}: the function must return (y, grad_fn)")
        y, grad_fn = out
        if not isinstance(y, Tensor):
            y = constant(y)
        if not _is_float_dtype(y.dtype):
            return y
        return make_node(y.data, _custom, targs, {"grad_fn": grad_fn, "fname": f.__name__})

    return wrapped


def _is_array(a: Any) -> bool:
    return hasattr(a, "__array_namespace__") or isinstance(a, (np.generic, float, int, list))


def _prepare(args: Sequence[Any], argnums: int | Sequence[int], fname: str) -> tuple[list, tuple[int, ...]]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise ValueError(f"{fname}: argnums is empty")
    targs = list(args)
    for i in nums:
        if i >= len(args) or i < -len(args):
            raise ValueError(f"{fname}: argnums {i} is out of range for {len(args)} arguments")
        a = args[i]
        t = a if isinstance(a, Tensor) else constant(a)
        if not _is_float_dtype(t.dtype):
            raise TypeError(
                f"{fname}: argument {i} has dtype {backend.dtype_name(t.dtype)}; "
                "only float32 and float64 inputs can be differentiated"
            )
        # A fresh identity node per argument: f(x, x) gets two separate gradients, and an
        # outer differentiation still flows through to the caller's tensor.
        targs[i] = identity(t)
    return targs, nums


def value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., tuple[Any, Any]]:
    """``value_and_grad(f)(*args) -> (f(*args), df/d args[argnums])``.

    ``f`` must return a one-element floating tensor (or ``(value, aux)`` with
    ``has_aux=True``).  Gradients come back as Tensors, a tuple when ``argnums`` is a
    sequence; an argument ``f`` does not depend on gets zeros.
    """

    @functools.wraps(f)
    def wrapped(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        targs, nums = _prepare(args, argnums, "refopt.value_and_grad")
        out = f(*targs, **kwargs)
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("refopt.value_and_grad: has_aux=True needs f to return (value, aux)")
            value, aux = out
        else:
            value, aux = out, None
        if not isinstance(value, Tensor):
            raise TypeError(f"refopt.value_and_grad: f must return a Tensor, got {type(value).__name__}")
        if value.size != 1:
            raise ValueError(
                f"refopt.value_and_grad: f must return a single value to differentiate, "
                f"got shape {value.shape} (reduce it, or use rf.gradients with grad_ys)"
            )
        gs = gradients(value, [targs[i] for i in nums], unconnected_gradients="zero")
        g = gs[0] if isinstance(argnums, int) else tuple(gs)
        return ((value, aux) if has_aux else value), g

    return wrapped


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable[..., Any]:
    """``grad(f)(*args) -> df/d args[argnums]`` for a scalar-valued ``f`` (see :func:`value_and_grad`)."""
    vg = value_and_grad(f, argnums=argnums, has_aux=has_aux)

    @functools.wraps(f)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        (value_aux, g) = vg(*args, **kwargs)
        if has_aux:
            return g, value_aux[1]
        return g

    return wrapped
