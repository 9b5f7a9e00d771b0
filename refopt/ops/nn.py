"""Neural-network functions: logsumexp, softmax, log_softmax, conv2d, max_pool2d,
avg_pool2d, dropout.

All are compositions of primitives (tinygrad's lesson): their gradients, at every order,
come from the primitives' VJPs.  The softmax family subtracts the (gradient-stopped)
maximum first, so it is stable for logits of any size; the shift cancels exactly in the
derivative, so stopping its gradient changes nothing but the rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.functional import identity, stop_gradient
from refopt.autodiff.tensor import Tensor, constant
from refopt.ops.elementwise import exp, log, where
from refopt.ops.linalg import matmul
from refopt.ops.reduction import max as reduce_max
from refopt.ops.reduction import sum as reduce_sum
from refopt.ops.shape import _as_tensor, _unchanged, concat, getitem, normalize_axes, pad, reshape, stack, transpose

__all__ = ["logsumexp", "softmax", "log_softmax", "conv2d", "max_pool2d", "avg_pool2d", "dropout"]


def _shift(x: Tensor, axes: tuple) -> Tensor:
    """The per-slice maximum as a constant (0 where a slice is all -inf), for stable exps."""
    m = stop_gradient(reduce_max(x, axes, keepdims=True))
    xp = backend.namespace(m.data)
    return constant(xp.where(xp.isfinite(m.data), m.data, xp.zeros_like(m.data)))


def logsumexp(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) over ``axis``, computed as m + log(sum(exp(x - m))) with m = max(x)."""
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "logsumexp")
    m = _shift(x, axes)
    out = log(reduce_sum(exp(x - m), axes, keepdims=True)) + m
    if keepdims:
        return out
    return reshape(out, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def softmax(x: Any, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``."""
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "softmax")
    e = exp(x - _shift(x, axes))
    return e / reduce_sum(e, axes, keepdims=True)


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along ``axis``, as (x - m) - log(sum(exp(x - m)))."""
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "log_softmax")
    shifted = x - _shift(x, axes)
    return shifted - log(reduce_sum(exp(shifted), axes, keepdims=True))


# -- convolution and pooling ----------------------------------------------------------------
def _pair(v: int | Sequence[int], what: str, op: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or any(not isinstance(i, (int, np.integer)) or i < 1 for i in t):
        raise ValueError(f"refopt.{op}: {what} must be a positive int or a pair of them, got {v!r}")
    return int(t[0]), int(t[1])


def _padding(
    padding: Any, size: tuple[int, int], window: tuple[int, int], strides: tuple[int, int], op: str
) -> tuple[tuple[int, int], tuple[int, int]]:
    """TensorFlow's "same"/"valid", or explicit (PyTorch-style) amounts."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            out = []
            for n, k, s in zip(size, window, strides):
                total = max((-(-n // s) - 1) * s + k - n, 0)
                out.append((total // 2, total - total // 2))
            return out[0], out[1]
        raise ValueError(f"refopt.{op}: padding must be 'same', 'valid' or amounts, got {padding!r}")
    p = np.asarray(padding, dtype=np.int64)
    if p.ndim == 0:
        p = np.full((2, 2), int(p))
    elif p.shape == (2,):
        p = np.stack([p, p], axis=1)
    if p.shape != (2, 2) or (p < 0).any():
        raise ValueError(f"refopt.{op}: cannot read padding {padding!r}")
    return (int(p[0, 0]), int(p[0, 1])), (int(p[1, 0]), int(p[1, 1]))


def _to_nhwc(x: Tensor, data_format: str, op: str) -> Tensor:
    if data_format not in ("NHWC", "NCHW"):
        raise ValueError(f"refopt.{op}: data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
    if x.ndim != 4:
        raise ValueError(f"refopt.{op}: input must be 4-D ({data_format}), got shape {x.shape}")
    return transpose(x, (0, 2, 3, 1)) if data_format == "NCHW" else x


def _from_nhwc(y: Tensor, data_format: str) -> Tensor:
    return transpose(y, (0, 3, 1, 2)) if data_format == "NCHW" else y


def _windows(x: Tensor, window: tuple[int, int], strides: tuple[int, int], op: str) -> tuple[list[Tensor], int, int]:
    """The kh*kw strided views of an NHWC tensor, one per window offset (row-major)."""
    _, h, w, _ = x.shape
    kh, kw = window
    sh, sw = strides
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"refopt.{op}: window {window} is larger than the (padded) input {h}x{w}")
    views = [
        getitem(x, (slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw)))
        for i in range(kh)
        for j in range(kw)
    ]
    return views, ho, wo


def conv2d(
    x: Any,
    kernel: Any,
    strides: int | Sequence[int] = 1,
    padding: Any = "valid",
    data_format: str = "NHWC",
) -> Tensor:
    """2-D cross-correlation (what every framework calls convolution).

    ``kernel`` is HWIO (height, width, in, out), TensorFlow's layout; PyTorch's OIHW
    weight is ``transpose(w, (2, 3, 1, 0))``.  ``x`` is NHWC or NCHW.  ``padding`` is
    "valid", "same" (TensorFlow's: output = ceil(input / stride), extra pad at the end)
    or explicit amounts (an int, ``(ph, pw)`` or ``((top, bottom), (left, right))``).

        y[n, i, j, o] = sum_{a, b, c} xpad[n, i*sh + a, j*sw + b, c] * kernel[a, b, c, o]

    computed as one matrix product of the gathered patches with the reshaped kernel.
    """
    x, kernel = _as_tensor(x), _as_tensor(kernel)
    x = _to_nhwc(x, data_format, "conv2d")
    if kernel.ndim != 4:
        raise ValueError(f"refopt.conv2d: kernel must be 4-D (HWIO), got shape {kernel.shape}")
    n, h, w, c = x.shape
    kh, kw, ci, co = kernel.shape
    if ci != c:
        raise ValueError(
            f"refopt.conv2d: input has {c} channels (shape {x.shape}, NHWC) but the kernel "
            f"expects {ci} (kernel shape {kernel.shape}, HWIO)"
        )
    st = _pair(strides, "strides", "conv2d")
    (pt, pb), (pl, pr) = _padding(padding, (h, w), (kh, kw), st, "conv2d")
    if pt or pb or pl or pr:
        x = pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    views, ho, wo = _windows(x, (kh, kw), st, "conv2d")
    cols = concat(views, axis=-1)
    out = matmul(reshape(cols, (n * ho * wo, kh * kw * c)), reshape(kernel, (kh * kw * c, co)))
    return _from_nhwc(reshape(out, (n, ho, wo, co)), data_format)


def _pool_setup(x: Any, pool_size: Any, strides: Any, padding: Any, data_format: str, op: str):
    x = _to_nhwc(_as_tensor(x), data_format, op)
    window = _pair(pool_size, "pool_size", op)
    st = window if strides is None else _pair(strides, "strides", op)
    pads = _padding(padding, x.shape[1:3], window, st, op)
    return x, window, st, pads


def max_pool2d(
    x: Any,
    pool_size: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: Any = "valid",
    data_format: str = "NHWC",
) -> Tensor:
    """Maximum over each window (strides default to the window); "same" padding never
    wins a maximum (it pads with -inf, as TensorFlow does)."""
    x, window, st, ((pt, pb), (pl, pr)) = _pool_setup(x, pool_size, strides, padding, data_format, "max_pool2d")
    if pt or pb or pl or pr:
        x = pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
    views, _, _ = _windows(x, window, st, "max_pool2d")
    return _from_nhwc(reduce_max(stack(views, axis=-1), axis=-1), data_format)


def avg_pool2d(
    x: Any,
    pool_size: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: Any = "valid",
    data_format: str = "NHWC",
) -> Tensor:
    """Mean over each window; with "same" padding the padded cells are not counted
    (TensorFlow's ``avg_pool``)."""
    x, window, st, ((pt, pb), (pl, pr)) = _pool_setup(x, pool_size, strides, padding, data_format, "avg_pool2d")
    padded = bool(pt or pb or pl or pr)
    if padded:
        x = pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    views, ho, wo = _windows(x, window, st, "avg_pool2d")
    total = reduce_sum(stack(views, axis=-1), axis=-1)
    if not padded:
        return _from_nhwc(total / (window[0] * window[1]), data_format)
    h, w = x.shape[1] - pt - pb, x.shape[2] - pl - pr
    ones = np.pad(np.ones((1, h, w, 1)), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    counts = sum(
        ones[:, i : i + st[0] * (ho - 1) + 1 : st[0], j : j + st[1] * (wo - 1) + 1 : st[1]]
        for i in range(window[0])
        for j in range(window[1])
    )
    xp = backend.namespace(x.data)
    cnt = backend.asarray(counts, backend=x.backend)
    return _from_nhwc(total / constant(xp.astype(cnt, x.data.dtype)), data_format)


def dropout(x: Any, rate: float, seed: int | np.random.Generator) -> Tensor:
    """Zero each element with probability ``rate`` and scale the rest by 1/(1 - rate).

    The mask is drawn on the host from ``seed`` (an int, or a NumPy Generator that then
    advances), so NumPy and CuPy runs drop the same elements.
    """
    x = _as_tensor(x)
    if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"refopt.dropout: rate must be in [0, 1), got {rate!r}")
    if rate == 0:
        return x if _unchanged(x) else identity(x)  # a Variable comes back as a Tensor
    keep = backend.host_rng(seed).random(x.shape) >= rate
    mask = constant(backend.asarray(keep, backend=x.backend))
    return where(mask, x * (1.0 / (1.0 - rate)), 0.0)
