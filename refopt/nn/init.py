"""Initialisers: every draw happens on the host with NumPy's Generator (PCG64), then the
values are placed on the current backend -- so NumPy and CuPy models start from the same
numbers.

Each takes ``seed``: an int, a ``numpy.random.Generator`` (which advances), or None for
refopt's global generator, seeded by :func:`set_seed` (0 at import).  Building the same
model in the same order therefore gives the same weights on every run.

Fans: for a kernel of shape ``(..., fan_in, fan_out)`` (Dense: in x out; Conv2D: HWIO)
the receptive field ``prod(shape[:-2])`` multiplies both fans.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from refopt import backend

__all__ = [
    "set_seed",
    "fans",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "truncated_normal",
    "normal",
    "uniform",
    "zeros",
    "ones",
    "constant",
    "get",
]

_global = np.random.default_rng(0)


def set_seed(seed: int) -> None:
    """Reseed the generator used by initialisers called with ``seed=None``."""
    global _global
    _global = backend.host_rng(seed)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return _global if seed is None else backend.host_rng(seed)


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _cast(a: np.ndarray, dtype: Any) -> np.ndarray:
    return a.astype(backend.resolve_dtype(dtype, np))


def uniform(shape: Sequence[int], low: float = -0.05, high: float = 0.05, seed=None, dtype: Any = "float32"):
    """U(low, high)."""
    return _cast(_rng(seed).uniform(low, high, tuple(shape)), dtype)


def normal(shape: Sequence[int], mean: float = 0.0, stddev: float = 1.0, seed=None, dtype: Any = "float32"):
    """N(mean, stddev^2)."""
    return _cast(_rng(seed).normal(mean, stddev, tuple(shape)), dtype)


def truncated_normal(shape: Sequence[int], mean: float = 0.0, stddev: float = 1.0, seed=None, dtype: Any = "float32"):
    """N(mean, stddev^2) restricted to mean +- 2 stddev: values outside are redrawn."""
    rng = _rng(seed)
    out = rng.normal(0.0, 1.0, tuple(shape))
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2.0
    return _cast(mean + stddev * out, dtype)


def glorot_uniform(shape: Sequence[int], seed=None, dtype: Any = "float32"):
    """U(-l, l) with l = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio; torch xavier_uniform_)."""
    fi, fo = fans(shape)
    limit = math.sqrt(6.0 / (fi + fo))
    return uniform(shape, -limit, limit, seed, dtype)


def glorot_normal(shape: Sequence[int], seed=None, dtype: Any = "float32"):
    """N(0, 2 / (fan_in + fan_out)) (torch xavier_normal_; Keras truncates, see truncated_normal)."""
    fi, fo = fans(shape)
    return normal(shape, 0.0, math.sqrt(2.0 / (fi + fo)), seed, dtype)


def he_uniform(shape: Sequence[int], seed=None, dtype: Any = "float32"):
    """U(-l, l) with l = sqrt(6 / fan_in) (He et al.)."""
    fi, _ = fans(shape)
    limit = math.sqrt(6.0 / fi)
    return uniform(shape, -limit, limit, seed, dtype)


def he_normal(shape: Sequence[int], seed=None, dtype: Any = "float32"):
    """N(0, 2 / fan_in) (torch kaiming_normal_)."""
    fi, _ = fans(shape)
    return normal(shape, 0.0, math.sqrt(2.0 / fi), seed, dtype)


def zeros(shape: Sequence[int], seed=None, dtype: Any = "float32"):
    """All zeros (``seed`` is ignored)."""
    return np.zeros(tuple(shape), backend.resolve_dtype(dtype, np))


def ones(shape: Sequence[int], seed=None, dtype: Any = "float32"):
    """All ones (``seed`` is ignored)."""
    return np.ones(tuple(shape), backend.resolve_dtype(dtype, np))


def constant(value: float) -> Callable[..., np.ndarray]:
    """An initialiser filling with ``value``."""

    def init(shape: Sequence[int], seed=None, dtype: Any = "float32") -> np.ndarray:
        return np.full(tuple(shape), value, backend.resolve_dtype(dtype, np))

    init.__name__ = f"constant({value})"
    return init


_BY_NAME: dict[str, Callable[..., np.ndarray]] = {
    f.__name__: f
    for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, truncated_normal, normal, uniform, zeros, ones)
}


def get(init: str | Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """An initialiser by name (``"glorot_uniform"``...) or the callable itself."""
    if callable(init):
        return init
    try:
        return _BY_NAME[init]
    except KeyError:
        raise ValueError(f"unknown initialiser {init!r}; known: {', '.join(sorted(_BY_NAME))}") from None
