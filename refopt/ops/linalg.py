"""Linear algebra: matmul (NumPy semantics: 1-D operands, batched broadcasting)."""

from __future__ import annotations

from typing import Any

from refopt import kernels
from refopt.autodiff.tensor import Primitive, Tensor
from refopt.ops.reduction import unbroadcast
from refopt.ops.shape import _as_tensor, _weak_lists, expand_dims, squeeze, swapaxes

__all__ = ["matmul"]


def _matmul_vjp_a(g: Tensor, ans: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """dL/dA for C = A @ B: G @ B^T, with 1-D operands read as row/column vectors."""
    if b.ndim == 1:
        return g * b if a.ndim == 1 else expand_dims(g, -1) * b
    if a.ndim == 1:
        return unbroadcast(squeeze(matmul(b, expand_dims(g, -1)), -1), a.shape)
    return unbroadcast(matmul(g, swapaxes(b)), a.shape)


def _matmul_vjp_b(g: Tensor, ans: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """dL/dB for C = A @ B: A^T @ G, with 1-D operands read as row/column vectors."""
    if a.ndim == 1:
        if b.ndim == 1:
            return g * a
        return unbroadcast(expand_dims(a, -1) * expand_dims(g, -2), b.shape)
    if b.ndim == 1:
        return unbroadcast(squeeze(matmul(swapaxes(a), expand_dims(g, -1)), -1), b.shape)
    return unbroadcast(matmul(swapaxes(a), g), b.shape)


_matmul = Primitive("matmul", kernels.matmul)
_matmul.defvjp(_matmul_vjp_a, _matmul_vjp_b)


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product ``a @ b`` with NumPy's rules: the last axis of ``a`` meets the
    second-to-last of ``b`` (the only axis of a 1-D ``b``); leading axes broadcast.  A list
    of Python numbers takes the other operand's dtype (as a Python scalar would)."""
    a, b = (_as_tensor(v) for v in _weak_lists("matmul", a, b))
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"refopt.matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(
            f"refopt.matmul: shapes {a.shape} and {b.shape} are not aligned (inner dimensions {ka} != {kb})"
        )
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    for sa, sb in zip(reversed(batch_a), reversed(batch_b)):
        if sa != sb and sa != 1 and sb != 1:
            raise ValueError(
                f"refopt.matmul: shapes {a.shape} and {b.shape} have batch dimensions {batch_a} and {batch_b}, "
                "which do not broadcast"
            )
    return _matmul(a, b)
