"""Elementwise ops with NumPy broadcasting: arithmetic, exp/log family, activations,
erf/erfc, maximum/minimum, where, clip; and the non-differentiable comparisons.

Each primitive's VJPs stand beside its forward; broadcasting is undone in one place,
:func:`refopt.ops.reduction.unbroadcast`.  Python scalars are weak: ``0.5 * x`` keeps
``x``'s dtype.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from refopt import backend, kernels
from refopt.autodiff.tensor import Primitive, Tensor, constant
from refopt.ops.reduction import unbroadcast
from refopt.ops.shape import _as_tensor, _weak_lists

__all__ = [
    "add",
    "subtract",
    "multiply",
    "divide",
    "negative",
    "power",
    "exp",
    "log",
    "log1p",
    "sqrt",
    "square",
    "abs",
    "sign",
    "tanh",
    "sigmoid",
    "relu",
    "gelu",
    "erf",
    "erfc",
    "maximum",
    "minimum",
    "where",
    "clip",
    "equal",
    "not_equal",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT1_2 = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _xp(a: Any) -> Any:
    return backend.namespace(a)


def _ub(g: Tensor, x: Any) -> Tensor:
    return unbroadcast(g, x.shape)


def _data(a: Any) -> Any:
    return a.data if isinstance(a, Tensor) else a


# -- arithmetic -----------------------------------------------------------------------------
add = Primitive("add", lambda x, y: x + y)
add.defvjp(lambda g, ans, x, y: _ub(g, x), lambda g, ans, x, y: _ub(g, y))

subtract = Primitive("subtract", lambda x, y: x - y)
subtract.defvjp(lambda g, ans, x, y: _ub(g, x), lambda g, ans, x, y: _ub(-g, y))

multiply = Primitive("multiply", lambda x, y: x * y)
multiply.defvjp(lambda g, ans, x, y: _ub(g * y, x), lambda g, ans, x, y: _ub(g * x, y))

divide = Primitive("divide", lambda x, y: x / y)
divide.defvjp(lambda g, ans, x, y: _ub(g / y, x), lambda g, ans, x, y: _ub(-g * x / (y * y), y))

negative = Primitive("negative", lambda x: -x)
negative.defvjp(lambda g, ans, x: -g)


def _log_nonzero(x: Tensor) -> Tensor:
    """log(x) with log(0) read as 0: d(x**y)/dy = log(x) x**y vanishes at x = 0 anyway."""
    return log(where(constant(_xp(x.data).equal(x.data, 0)), 1.0, x))


power = Primitive("power", kernels.power)
power.defvjp(
    lambda g, ans, x, y: _ub(g * y * x ** (y - 1), x),
    lambda g, ans, x, y: _ub(g * ans * (_log_nonzero(x) if isinstance(x, Tensor) else math.log(x)), y),
)


# -- exp / log family -----------------------------------------------------------------------
exp = Primitive("exp", kernels.exp)
exp.defvjp(lambda g, ans, x: g * ans)

log = Primitive("log", kernels.log)
log.defvjp(lambda g, ans, x: g / x)

log1p = Primitive("log1p", kernels.log1p)
log1p.defvjp(lambda g, ans, x: g / (1.0 + x))

sqrt = Primitive("sqrt", lambda x: _xp(x).sqrt(x))
sqrt.defvjp(lambda g, ans, x: g / (2.0 * ans))

square = Primitive("square", lambda x: x * x)
square.defvjp(lambda g, ans, x: g * (2.0 * x))


def sign(x: Any) -> Tensor:
    """-1, 0 or +1 elementwise (not differentiable)."""
    d = _as_tensor(x).data
    return constant(_xp(d).sign(d))


abs = Primitive("abs", lambda x: _xp(x).abs(x))
abs.defvjp(lambda g, ans, x: g * sign(x))


# -- activations ----------------------------------------------------------------------------
tanh = Primitive("tanh", kernels.tanh)
tanh.defvjp(lambda g, ans, x: g * (1.0 - ans * ans))


sigmoid = Primitive("sigmoid", kernels.sigmoid)
sigmoid.defvjp(lambda g, ans, x: g * ans * (1.0 - ans))


def _relu_grad_fwd(g: Any, x: Any) -> Any:
    """``g`` where ``x > 0``, else 0 (also where ``g`` is NaN or infinite, as torch's
    threshold_backward): a multiply by the mask -- exact, and much cheaper than NumPy's
    ``where`` with a scalar -- unless ``g`` holds a non-finite value."""
    xp = _xp(g)
    keep = x > 0
    out = g * xp.astype(keep, g.dtype)
    if not bool(xp.all(xp.isfinite(g))):
        out = xp.where(keep, g, xp.zeros_like(g))
    return out


# d relu / dx times g; linear in g (its own VJP), no gradient for x (the mask is constant a.e.)
_relu_grad = Primitive("relu_grad", _relu_grad_fwd, nondiff=(1,))
_relu_grad.defvjp(lambda gg, ans, g, x: _relu_grad(gg, x))

relu = Primitive("relu", kernels.relu)
relu.defvjp(lambda g, ans, x: _relu_grad(g, x))

erf = Primitive("erf", kernels.erf)
erf.defvjp(lambda g, ans, x: g * (_TWO_OVER_SQRT_PI * exp(-(x * x))))

erfc = Primitive("erfc", kernels.erfc)
erfc.defvjp(lambda g, ans, x: g * (-_TWO_OVER_SQRT_PI * exp(-(x * x))))


def _gelu_grad(x: Tensor) -> Tensor:
    """d/dx x Phi(x) = Phi(x) + x phi(x), with Phi(x) = erfc(-x/sqrt 2)/2."""
    return 0.5 * erfc(x * -_SQRT1_2) + x * (exp(-0.5 * (x * x)) * _INV_SQRT_2PI)


def _gelu_tanh_grad(x: Tensor) -> Tensor:
    """d/dx x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the tanh form's derivative
    written with sigmoids, which do not cancel in the tails as 1 + tanh(u) does."""
    x2 = x * x
    two_u = (2.0 * _SQRT_2_OVER_PI) * (x + 0.044715 * (x2 * x))
    s = sigmoid(two_u)
    return s + x * ((2.0 * _SQRT_2_OVER_PI) * (1.0 + 3.0 * 0.044715 * x2)) * (s * sigmoid(-two_u))


_gelu = Primitive("gelu", kernels.gelu)
_gelu.defvjp(lambda g, ans, x: g * _gelu_grad(x))
_gelu_tanh = Primitive("gelu_tanh", kernels.gelu_tanh)
_gelu_tanh.defvjp(lambda g, ans, x: g * _gelu_tanh_grad(x))


def gelu(x: Any, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit.

    ``approximate="none"``: x * Phi(x) = x/2 * erfc(-x/sqrt(2)) (erfc keeps precision
    where erf(x/sqrt 2) is near -1);
    ``approximate="tanh"``: x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).

    Each form is one primitive: refopt's kernel (<= 1 ULP of the exact function, with the
    argument carried in double-double) in reproducible mode; in fast mode the formulas
    above in the library's functions.  The gradient is the exact derivative, written in
    refopt ops (so it has gradients too).
    """
    x = _as_tensor(x)
    if approximate == "none":
        return _gelu(x)
    if approximate == "tanh":
        return _gelu_tanh(x)
    raise ValueError(f"refopt.gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


# -- maximum / minimum / where / clip -------------------------------------------------------
def _share(win: Any, tie: Any, dtype: Any, xp: Any) -> Tensor:
    """1 where this input won, 1/2 on a tie, else 0 (autograd's balanced choice)."""
    return constant(xp.astype(win, dtype) + 0.5 * xp.astype(tie, dtype))


def _ext_vjp(g: Tensor, ans: Tensor, x: Any, y: Any, first: bool, larger: bool) -> Tensor:
    xd, yd = _data(x), _data(y)
    xp = _xp(ans.data)
    mine, other = (xd, yd) if first else (yd, xd)
    win = (mine > other) if larger else (mine < other)
    w = _share(win, mine == other, ans.data.dtype, xp)
    return _ub(g * w, x if first else y)


maximum = Primitive("maximum", kernels.maximum)
maximum.defvjp(
    lambda g, ans, x, y: _ext_vjp(g, ans, x, y, True, True),
    lambda g, ans, x, y: _ext_vjp(g, ans, x, y, False, True),
)
minimum = Primitive("minimum", kernels.minimum)
minimum.defvjp(
    lambda g, ans, x, y: _ext_vjp(g, ans, x, y, True, False),
    lambda g, ans, x, y: _ext_vjp(g, ans, x, y, False, False),
)


def _where_fwd(cond: Any, x: Any, y: Any) -> Any:
    xp = _xp(cond)
    return xp.where(cond, x, y)


_where = Primitive("where", _where_fwd, nondiff=(0,))
_where.defvjp(
    None,
    lambda g, ans, c, x, y: _ub(_where(c, g, 0.0), x),
    lambda g, ans, c, x, y: _ub(_where(c, 0.0, g), y),
)


def where(condition: Any, x: Any, y: Any) -> Tensor:
    """``x`` where ``condition`` is true, else ``y`` (broadcast together)."""
    if isinstance(condition, Tensor):
        cond = condition
    elif hasattr(condition, "__array_namespace__"):
        cond = constant(condition)
    else:  # a Python bool or list: made where the tensor inputs live
        like = next((a for a in (x, y) if isinstance(a, Tensor)), None)
        place = backend.backend_name(like.data) if like is not None else None
        cond = constant(backend.asarray(condition, backend=place))
    if backend.dtype_name(cond.dtype) != "bool":
        raise TypeError(f"refopt.where: condition must be boolean, got {backend.dtype_name(cond.dtype)}")
    return _where(cond, x, y)


def _clip_vjp(g: Tensor, ans: Tensor, x: Tensor, lo: float | None, hi: float | None) -> Tensor:
    xp = _xp(x.data)
    keep = xp.ones(x.shape, dtype=xp.bool)
    if lo is not None:
        keep = xp.logical_and(keep, x.data >= lo)
    if hi is not None:
        keep = xp.logical_and(keep, x.data <= hi)
    return _where(constant(keep), g, 0.0)


_clip = Primitive("clip", kernels.clip)
_clip.defvjp(_clip_vjp)


def clip(x: Any, min: float | None = None, max: float | None = None) -> Tensor:
    """Limit values to ``[min, max]`` (either may be None).  The gradient passes where
    ``min <= x <= max`` (boundaries included, as in TensorFlow and PyTorch)."""
    for name, b in (("min", min), ("max", max)):
        if b is not None and (not isinstance(b, (int, float)) or isinstance(b, bool)):
            raise TypeError(f"refopt.clip: {name} must be a Python number or None, got {type(b).__name__}")
    if min is not None and max is not None and min > max:
        raise ValueError(f"refopt.clip: min {min} is greater than max {max}")
    return _clip(x, lo=None if min is None else float(min), hi=None if max is None else float(max))


# -- comparisons (not differentiable) -------------------------------------------------------
def _compare(fn_name: str, op: Any):
    def compare(x: Any, y: Any) -> Tensor:
        x, y = _weak_lists(fn_name, x, y)
        a, b = _data(x), _data(y)
        if hasattr(a, "__array_namespace__") and hasattr(b, "__array_namespace__"):
            if backend.backend_name(a) != backend.backend_name(b):
                raise ValueError(
                    f"refopt.{fn_name}: inputs live on different devices: "
                    f"{backend.device_of(a)} and {backend.device_of(b)}"
                )
        return constant(op(a, b))

    compare.__name__ = fn_name
    compare.__doc__ = f"Elementwise ``{fn_name}`` as a boolean Tensor (not differentiable)."
    return compare


equal = _compare("equal", operator.eq)
not_equal = _compare("not_equal", operator.ne)
less = _compare("less", operator.lt)
less_equal = _compare("less_equal", operator.le)
greater = _compare("greater", operator.gt)
greater_equal = _compare("greater_equal", operator.ge)
