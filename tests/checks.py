"""Independent oracles for gradient tests: HIPS autograd, central finite differences,
and normwise relative error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import refopt as rf
from refopt import backend


def rel_err(a: Any, b: Any) -> float:
    """||a - b|| / ||b|| (absolute when b is all zero)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    nb = np.linalg.norm(b)
    d = np.linalg.norm(a - b)
    return float(d / nb) if nb > 0 else float(d)


def on_backend(x: np.ndarray, name: str) -> Any:
    return backend.move(np.asarray(x), name)


def rf_value_and_grads(
    fn: Callable[..., Any], inputs: Sequence[np.ndarray], argnums: Sequence[int], w: np.ndarray, name: str = "numpy"
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Value of fn and gradients of sum(fn(*inputs) * w) by refopt on backend ``name``."""
    ts = [rf.constant(on_backend(x, name)) if isinstance(x, np.ndarray) else x for x in inputs]
    out = fn(*ts)
    loss = rf.sum(out * rf.constant(on_backend(w, name)))
    gs = rf.gradients(loss, [ts[i] for i in argnums], unconnected_gradients="zero")
    return rf.to_numpy(out), [rf.to_numpy(g) for g in gs]


def autograd_value_and_grads(
    fn: Callable[..., Any], inputs: Sequence[np.ndarray], argnums: Sequence[int], w: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The same by HIPS autograd."""
    import autograd
    import autograd.numpy as anp

    def loss(*xs):
        return anp.sum(fn(*xs) * w)

    grads = [np.asarray(autograd.grad(loss, i)(*inputs)) for i in argnums]
    return np.asarray(fn(*inputs)), grads


def fd_check(
    fn: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    argnums: Sequence[int],
    w: np.ndarray,
    grads: Sequence[np.ndarray],
    seed: int = 0,
    h: float = 1e-6,
    rtol: float = 1e-6,
) -> None:
    """Central finite differences along a random direction per input, float64:
    (L(x + h u) - L(x - h u)) / 2h  must equal  <dL/dx, u>."""
    rng = np.random.default_rng(seed)

    def loss(xs: list) -> float:
        return float(np.sum(rf.to_numpy(fn(*[rf.constant(x) if isinstance(x, np.ndarray) else x for x in xs])) * w))

    base = list(inputs)
    for i, g in zip(argnums, grads):
        u = rng.standard_normal(np.shape(base[i]))
        plus, minus = list(base), list(base)
        plus[i] = base[i] + h * u
        minus[i] = base[i] - h * u
        fd = (loss(plus) - loss(minus)) / (2 * h)
        an = float(np.sum(g * u))
        scale = max(abs(an), abs(fd), np.linalg.norm(g) * np.linalg.norm(u) * 1e-3, 1e-8)
        assert abs(fd - an) <= rtol * scale + 1e-9, f"input {i}: finite difference {fd!r} vs gradient {an!r}"
