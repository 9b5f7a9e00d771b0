"""Shared machinery for the op-family gradient suites.

A Case pairs a refopt function with the same function written in autograd.numpy and
says how to draw each input.  run_case checks, on the requested backend:
value and gradients against HIPS autograd (normwise relative error <= 1e-12, float64),
and, on NumPy, the gradients against central finite differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.checks import autograd_value_and_grads, fd_check, rel_err, rf_value_and_grads

AUTOGRAD_RTOL = 1e-12


def normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.uniform(0.2, 2.0, shape)


def above_minus_one(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.uniform(-0.5, 2.0, shape)


def away_from_zero(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """|x| >= 0.05: no kink (abs, relu) within a finite-difference step."""
    return rng.choice([-1.0, 1.0], shape) * (0.05 + np.abs(rng.standard_normal(shape)))


def grid(offset: float) -> Callable[[np.random.Generator, tuple], np.ndarray]:
    """k/8 + offset + [0, 0.01): values from grid(0) and grid(1/16) never come within 0.05,
    nor do grid(1/16) values come near a multiple of 1/8 (clip bounds)."""

    def draw(rng: np.random.Generator, shape: tuple) -> np.ndarray:
        return rng.integers(-8, 9, shape) / 8.0 + offset + 0.01 * rng.random(shape)

    return draw


def distinct(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """A permutation of evenly spaced values: no ties and gaps >> the FD step (max, min)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) / max(n, 1) * 4 - 2).reshape(shape) + 1e-4 * rng.random(shape)


def boolean(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.random(shape) < 0.5


@dataclass
class Case:
    name: str
    rf_fn: Callable[..., Any]
    ag_fn: Callable[..., Any]
    draws: tuple = (normal,)
    argnums: tuple | None = None  # default: every float input
    kwargs: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # pytest ids
        return self.name


def make_inputs(case: Case, shapes: list[tuple], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.asarray(draw(rng, tuple(shape))) for draw, shape in zip(case.draws, shapes)]


def run_case(
    rf_fn: Callable[..., Any],
    ag_fn: Callable[..., Any],
    inputs: list[np.ndarray],
    argnums: tuple | None,
    seed: int,
    backend_name: str,
    fd: bool = True,
    cotangent_atol: float = 0.0,
) -> None:
    """``cotangent_atol``: also accept gradient errors up to this multiple of ||w||, the
    backward-stable bound, for inputs whose gradients are formed by cancellation."""
    if argnums is None:
        argnums = tuple(i for i, x in enumerate(inputs) if isinstance(x, np.ndarray) and x.dtype.kind == "f")
    ref_val, ref_grads = autograd_value_and_grads(ag_fn, inputs, argnums, _cotangent(ag_fn, inputs, seed))
    w = _cotangent(ag_fn, inputs, seed)
    val, grads = rf_value_and_grads(rf_fn, inputs, argnums, w, backend_name)
    assert val.shape == ref_val.shape, (val.shape, ref_val.shape)
    assert rel_err(val, ref_val) <= AUTOGRAD_RTOL, f"value: {rel_err(val, ref_val):.3g}"
    for i, g, r in zip(argnums, grads, ref_grads):
        assert g.shape == r.shape, (i, g.shape, r.shape)
        err = rel_err(g, r)
        absolute = float(np.linalg.norm(np.asarray(g, np.float64) - r))
        ok = err <= AUTOGRAD_RTOL or absolute <= cotangent_atol * float(np.linalg.norm(w))
        assert ok, f"gradient of input {i}: normwise relative error {err:.3g} vs autograd"
    if fd and backend_name == "numpy":
        fd_check(rf_fn, inputs, argnums, w, grads, seed=seed)


def _cotangent(ag_fn: Callable[..., Any], inputs: list[np.ndarray], seed: int) -> np.ndarray:
    shape = np.shape(ag_fn(*inputs))
    return np.random.default_rng(seed + 1).standard_normal(shape)


def check_no_op_on_a_variable(op: Callable[[Any], Any], shape: tuple) -> None:
    """An op that leaves its input as it is, applied to a Variable, gives a Tensor -- not
    the Variable -- holding the value at call time, which an optimizer's in-place update
    of the variable leaves alone, and through which the gradient flows (the identity's:
    the cotangent itself).  The optimizer is an SGD that has stepped twice: its updates
    write the variable's array in place whenever nothing else holds it
    (tests/ops/test_shape.py checks that precondition)."""
    import refopt as rf

    v, opt, g = stepped_sgd(shape)
    before = v.numpy()
    y = op(v)
    assert type(y) is rf.Tensor, type(y)
    np.testing.assert_array_equal(y.numpy(), before)
    c = np.random.default_rng(7).standard_normal(shape)
    (gv,) = rf.gradients(rf.sum(y * rf.constant(c)), [v])
    np.testing.assert_array_equal(gv.numpy(), c)  # d/dv sum(v * c) = c, exactly
    opt.apply_gradients([(g, v)])
    assert not np.array_equal(v.numpy(), before)  # the variable moved ...
    np.testing.assert_array_equal(y.numpy(), before)  # ... and the result kept its value


def stepped_sgd(shape: tuple) -> tuple[Any, Any, np.ndarray]:
    """A float64 variable of ``shape``, an SGD (momentum) over it stepped twice, and the
    gradient it steps with."""
    import refopt as rf

    v = rf.Variable(np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape), name="w")
    opt = rf.optim.SGD([v], learning_rate=0.1, momentum=0.9)
    g = np.full(shape, 0.25)
    opt.apply_gradients([(g, v)])
    opt.apply_gradients([(g, v)])
    return v, opt, g
