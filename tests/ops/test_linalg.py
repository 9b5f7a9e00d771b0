"""matmul against HIPS autograd and finite differences: 1-D operands, matrices and
batched operands whose leading axes broadcast (size-1 axes included)."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refopt as rf
from tests.ops.cases import run_case


@st.composite
def matmul_shapes(draw):
    n, k, m = (draw(st.integers(1, 5)) for _ in range(3))
    kind = draw(st.sampled_from(["vv", "vm", "mv", "mm", "batched"]))
    if kind == "vv":
        return (k,), (k,)
    if kind == "vm":
        batch = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
        return (k,), tuple(batch) + (k, m)
    if kind == "mv":
        batch = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
        return tuple(batch) + (n, k), (k,)
    if kind == "mm":
        return (n, k), (k, m)
    b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3, max_side=3))
    return tuple(b.input_shapes[0]) + (n, k), tuple(b.input_shapes[1]) + (k, m)


@settings(max_examples=200)
@given(shapes=matmul_shapes(), seed=st.integers(0, 2**32 - 1))
def test_matmul(backend_name: str, shapes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    run_case(rf.matmul, anp.matmul, [a, b], None, seed, backend_name)


def test_matmul_operator_and_shape_error() -> None:
    a = rf.constant(np.ones((2, 3)))
    b = rf.constant(np.ones((4, 5)))
    assert (a @ rf.constant(np.ones((3, 1)))).shape == (2, 1)
    with pytest.raises(ValueError, match=r"refopt.matmul: shapes \(2, 3\) and \(4, 5\) are not aligned"):
        a @ b


def test_matmul_with_a_list_of_python_numbers_takes_the_tensors_dtype_both_ways() -> None:
    a = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]], np.float32)
    rows = [[2, -1.5], [0.5, 4], [-3, 1]]  # small binary fractions: every product and sum exact
    x = rf.constant(a)
    for got, want in (
        (x @ rows, a.astype(np.float64) @ np.array(rows)),
        (rf.matmul(rows, x), np.array(rows) @ a.astype(np.float64)),
        ([1, 2] @ x, np.array([1.0, 2.0]) @ a.astype(np.float64)),
    ):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.numpy(), want.astype(np.float32))
    (g,) = rf.gradients(rf.sum(x @ rows), [x])  # ones @ rows^T: each row of the list summed
    np.testing.assert_array_equal(g.numpy(), np.tile(np.sum(rows, axis=1), (2, 1)))
    with pytest.raises(TypeError, match=r"refopt.matmul: input 1 is a list holding a float32"):
        x @ ([[np.float32(1.0)]] * 3)


def test_matmul_batch_mismatch_names_the_op_and_both_shapes() -> None:
    a = rf.constant(np.ones((2, 3, 4)))
    b = rf.constant(np.ones((5, 4, 2)))
    msg = (
        r"refopt.matmul: shapes \(2, 3, 4\) and \(5, 4, 2\) have batch dimensions \(2,\) and \(5,\), "
        "which do not broadcast"
    )
    for mode in ("reproducible", "fast"):
        with rf.use_mode(mode), pytest.raises(ValueError, match=msg):
            a @ b
    # batch axes that broadcast (1 against 5, a missing axis against 2) still multiply
    c = rf.constant(np.ones((2, 1, 3, 4))) @ rf.constant(np.ones((5, 4, 2)))
    assert c.shape == (2, 5, 3, 2)
    np.testing.assert_array_equal(c.numpy(), np.full((2, 5, 3, 2), 4.0))
