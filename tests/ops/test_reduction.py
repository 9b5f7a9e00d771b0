"""Reductions: values and gradients against HIPS autograd and finite differences over
hypothesis-drawn shapes, axes (None, int, tuple, negative) and keepdims."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refopt as rf
from tests.ops.cases import check_no_op_on_a_variable, distinct, normal, run_case

CASES = {
    "sum": (rf.sum, anp.sum, normal),
    "mean": (rf.mean, anp.mean, normal),
    "max": (rf.max, anp.max, distinct),
    "min": (rf.min, anp.min, distinct),
    "var": (rf.var, anp.var, normal),
}


@st.composite
def reduction_args(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-nd, nd - 1))
    else:
        axis = tuple(draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True)))
    return shape, axis, draw(st.booleans())


@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=40)
@given(args=reduction_args(), seed=st.integers(0, 2**32 - 1), ddof=st.integers(0, 1))
def test_reduction(name: str, backend_name: str, args, seed: int, ddof: int) -> None:
    shape, axis, keepdims = args
    rf_op, ag_op, draw = CASES[name]
    x = np.asarray(draw(np.random.default_rng(seed), shape))
    kw = {"axis": axis, "keepdims": keepdims}
    if name == "var":
        n = x.size if axis is None else int(np.prod([shape[a] for a in np.atleast_1d(axis)]))
        if n - ddof <= 0:
            ddof = 0
        kw["ddof"] = ddof
    run_case(lambda t: rf_op(t, **kw), lambda a: ag_op(a, **kw), [x], None, seed, backend_name)


def test_max_ties_share_the_gradient_equally() -> None:
    x = rf.constant(np.array([[3.0, 1.0, 3.0], [0.0, 2.0, 1.0]]))
    (g,) = rf.gradients(rf.sum(rf.max(x, axis=1)), [x])
    np.testing.assert_array_equal(g.numpy(), [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])


def test_empty_reductions_are_refused() -> None:
    x = rf.constant(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"refopt.max: reduction over an empty axis of shape \(0, 3\)"):
        rf.max(x, axis=0)
    with pytest.raises(ValueError, match="refopt.mean"):
        rf.mean(x)
    assert rf.sum(x, axis=0).shape == (3,)


def test_bad_axes_name_the_op() -> None:
    x = rf.constant(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="refopt.sum: axis 2 is out of range for a tensor of 2 dimensions"):
        rf.sum(x, axis=2)
    with pytest.raises(ValueError, match="refopt.mean: repeated axis"):
        rf.mean(x, axis=(0, -2))


def test_argmax_argmin() -> None:
    x = rf.constant(np.array([[1.0, 5.0, 5.0], [7.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(rf.argmax(x, axis=1).numpy(), [1, 0])
    np.testing.assert_array_equal(rf.argmin(x, axis=0).numpy(), [0, 1, 1])
    assert rf.argmax(x).item() == 3


def test_argmax_argmin_bad_axes_name_the_op() -> None:
    x = rf.constant(np.zeros(3))
    with pytest.raises(ValueError, match="refopt.argmax: axis 3 is out of range for a tensor of 1 dimensions"):
        rf.argmax(x, axis=3)
    with pytest.raises(TypeError, match=r"refopt.argmin: axis must be an int or None, got \(0,\)"):
        rf.argmin(x, axis=(0,))
    assert rf.argmax(rf.constant(np.array([[0.0, 1.0], [3.0, 2.0]])), axis=np.int64(-1)).numpy().tolist() == [1, 0]


@pytest.mark.parametrize(
    "op",
    [lambda v: rf.broadcast_to(v, v.shape), lambda v: rf.unbroadcast(v, v.shape)],
    ids=["broadcast_to its own shape", "unbroadcast to its own shape"],
)
def test_a_no_op_on_a_variable_gives_a_tensor_the_optimizer_leaves_alone(op) -> None:
    check_no_op_on_a_variable(op, (2, 3))
