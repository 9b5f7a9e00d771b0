"""refopt's ops, by family; each primitive's VJP stands beside its forward.

Importing this package also installs Tensor's operators (``+ - * / @ ** -x``,
comparisons, ``x[idx]``), so the rest of refopt -- the graph walk included -- can use
them without importing the families.
"""

from __future__ import annotations

from typing import Any

from refopt.autodiff.tensor import Tensor
from refopt.ops.elementwise import (
    abs,
    add,
    clip,
    divide,
    equal,
    erf,
    erfc,
    exp,
    gelu,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    log1p,
    maximum,
    minimum,
    multiply,
    negative,
    not_equal,
    power,
    relu,
    sigmoid,
    sign,
    sqrt,
    square,
    subtract,
    tanh,
    where,
)
from refopt.ops.linalg import matmul
from refopt.ops.nn import avg_pool2d, conv2d, dropout, log_softmax, logsumexp, max_pool2d, softmax
from refopt.ops.reduction import argmax, argmin, broadcast_to, max, mean, min, sum, unbroadcast, var
from refopt.ops.shape import (
    cast,
    concat,
    expand_dims,
    getitem,
    one_hot,
    pad,
    reshape,
    split,
    squeeze,
    stack,
    swapaxes,
    take,
    to_device,
    transpose,
)

__all__ = [
    "abs",
    "add",
    "argmax",
    "argmin",
    "avg_pool2d",
    "broadcast_to",
    "cast",
    "clip",
    "concat",
    "conv2d",
    "divide",
    "dropout",
    "equal",
    "erf",
    "erfc",
    "exp",
    "expand_dims",
    "gelu",
    "getitem",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "log",
    "log1p",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "max_pool2d",
    "maximum",
    "mean",
    "min",
    "minimum",
    "multiply",
    "negative",
    "not_equal",
    "one_hot",
    "pad",
    "power",
    "relu",
    "reshape",
    "sigmoid",
    "sign",
    "softmax",
    "split",
    "sqrt",
    "square",
    "squeeze",
    "stack",
    "subtract",
    "sum",
    "swapaxes",
    "take",
    "tanh",
    "to_device",
    "transpose",
    "unbroadcast",
    "var",
    "where",
]


def _method(f: Any) -> Any:
    return lambda self, other: f(self, other)


def _swap(f: Any) -> Any:
    return lambda self, other: f(other, self)


def _logical(name: str) -> Any:
    def op(self: Tensor, other: Any) -> Tensor:
        from refopt.autodiff.tensor import constant

        o = other.data if isinstance(other, Tensor) else other
        return constant(getattr(self.data, name)(o))

    return op


def _install_operators() -> None:
    T = Tensor
    T.__add__ = _method(add)
    T.__radd__ = _swap(add)
    T.__sub__ = _method(subtract)
    T.__rsub__ = _swap(subtract)
    T.__mul__ = _method(multiply)
    T.__rmul__ = _swap(multiply)
    T.__truediv__ = _method(divide)
    T.__rtruediv__ = _swap(divide)
    T.__matmul__ = _method(matmul)
    T.__rmatmul__ = _swap(matmul)
    T.__pow__ = _method(power)
    T.__rpow__ = _swap(power)
    T.__neg__ = lambda self: negative(self)
    T.__abs__ = lambda self: abs(self)
    T.__getitem__ = _method(getitem)
    T.__lt__ = _method(less)
    T.__le__ = _method(less_equal)
    T.__gt__ = _method(greater)
    T.__ge__ = _method(greater_equal)
    T.__eq__ = _method(equal)
    T.__ne__ = _method(not_equal)
    T.__and__ = _logical("__and__")
    T.__or__ = _logical("__or__")
    T.__xor__ = _logical("__xor__")
    T.__invert__ = lambda self: Tensor(~self.data)
    T.sum = lambda self, axis=None, keepdims=False: sum(self, axis, keepdims)
    T.mean = lambda self, axis=None, keepdims=False: mean(self, axis, keepdims)
    T.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 else shape)
    T.transpose = lambda self, *axes: transpose(self, axes or None)
    T.T = property(lambda self: transpose(self))


_install_operators()
