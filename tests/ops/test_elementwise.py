"""Elementwise ops: values and gradients against HIPS autograd and finite differences,
over hypothesis-drawn shapes with broadcasting and size-1 axes."""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import erf as ag_erf
from autograd.scipy.special import erfc as ag_erfc
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refopt as rf
from tests.ops.cases import (
    Case,
    above_minus_one,
    away_from_zero,
    boolean,
    grid,
    make_inputs,
    normal,
    positive,
    run_case,
)

S2 = math.sqrt(0.5)
K = math.sqrt(2 / math.pi)

UNARY = [
    Case("negative", rf.negative, anp.negative),
    Case("exp", rf.exp, anp.exp),
    Case("log", rf.log, anp.log, (positive,)),
    Case("log1p", rf.log1p, anp.log1p, (above_minus_one,)),
    Case("sqrt", rf.sqrt, anp.sqrt, (positive,)),
    Case("square", rf.square, anp.square),
    Case("abs", rf.abs, anp.abs, (away_from_zero,)),
    Case("tanh", rf.tanh, anp.tanh),
    Case("sigmoid", rf.sigmoid, lambda x: 1 / (1 + anp.exp(-x))),
    Case("relu", rf.relu, lambda x: anp.where(x > 0, x, 0.0), (away_from_zero,)),
    Case("gelu", rf.gelu, lambda x: 0.5 * x * (1 + ag_erf(x * S2))),
    Case(
        "gelu_tanh",
        lambda x: rf.gelu(x, approximate="tanh"),
        lambda x: 0.5 * x * (1 + anp.tanh(K * (x + 0.044715 * x**3))),
    ),
    Case("erf", rf.erf, ag_erf),
    Case("erfc", rf.erfc, ag_erfc),
    Case("scalar_mul", lambda x: 2.5 * x, lambda x: 2.5 * x),
    Case("scalar_rsub", lambda x: 1.5 - x, lambda x: 1.5 - x),
    Case("scalar_rdiv", lambda x: 3.0 / x, lambda x: 3.0 / x, (away_from_zero,)),
    Case("pow_scalar", lambda x: x**3, lambda x: x**3),
    Case("rpow_scalar", lambda x: 2.0**x, lambda x: 2.0**x),
    Case("clip", lambda x: rf.clip(x, -0.5, 0.75), lambda x: anp.clip(x, -0.5, 0.75), (grid(1 / 16),)),
]

BINARY = [
    Case("add", rf.add, anp.add, (normal, normal)),
    Case("subtract", rf.subtract, anp.subtract, (normal, normal)),
    Case("multiply", rf.multiply, anp.multiply, (normal, normal)),
    Case("divide", rf.divide, anp.divide, (normal, away_from_zero)),
    Case("power", rf.power, anp.power, (positive, normal)),
    Case("maximum", rf.maximum, anp.maximum, (grid(0.0), grid(1 / 16))),
    Case("minimum", rf.minimum, anp.minimum, (grid(0.0), grid(1 / 16))),
    Case(
        "operators",
        lambda x, y: (x - y) * x / (y * y + 1.0) ** 2,
        lambda x, y: (x - y) * x / (y * y + 1.0) ** 2,
        (normal, normal),
    ),
]

unary_shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=5)
seeds = st.integers(0, 2**32 - 1)


@pytest.mark.parametrize("case", UNARY, ids=repr)
@settings(max_examples=25)
@given(shape=unary_shapes, seed=seeds)
def test_unary(case: Case, backend_name: str, shape: tuple, seed: int) -> None:
    inputs = make_inputs(case, [shape], seed)
    run_case(case.rf_fn, case.ag_fn, inputs, None, seed, backend_name)


@pytest.mark.parametrize("case", BINARY, ids=repr)
@settings(max_examples=25)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4), seed=seeds)
def test_binary_broadcasting(case: Case, backend_name: str, shapes, seed: int) -> None:
    inputs = make_inputs(case, list(shapes.input_shapes), seed)
    run_case(case.rf_fn, case.ag_fn, inputs, None, seed, backend_name)


@settings(max_examples=40)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4, max_side=4), seed=seeds)
def test_where_broadcasting(backend_name: str, shapes, seed: int) -> None:
    # autograd's own where-VJP does not un-broadcast over the condition's axes, so the
    # reference is c*x + (1-c)*y, which equals where(c, x, y) exactly for c in {0, 1}.
    def ag_where(c, x, y):
        c = c.astype(np.float64)
        return c * x + (1.0 - c) * y

    case = Case("where", rf.where, ag_where, (boolean, normal, normal))
    inputs = make_inputs(case, list(shapes.input_shapes), seed)
    run_case(rf.where, ag_where, inputs, (1, 2), seed, backend_name)


def test_relu_gradient_at_zero_is_zero() -> None:
    x = rf.constant(np.array([-1.0, 0.0, 2.0]))
    (g,) = rf.gradients(rf.sum(rf.relu(x)), [x])
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0, 1.0])


def test_clip_gradient_passes_on_the_boundary() -> None:
    # TensorFlow's ClipByValue gradient and torch.clamp pass the gradient at the bounds.
    x = rf.constant(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]))
    (g,) = rf.gradients(rf.sum(rf.clip(x, -1.0, 1.0)), [x])
    np.testing.assert_array_equal(g.numpy(), [0.0, 1.0, 1.0, 1.0, 0.0])


def test_maximum_ties_share_the_gradient() -> None:
    x, y = rf.constant(np.array([1.0, 2.0])), rf.constant(np.array([1.0, 1.0]))
    gx, gy = rf.gradients(rf.sum(rf.maximum(x, y)), [x, y])
    np.testing.assert_array_equal(gx.numpy(), [0.5, 1.0])
    np.testing.assert_array_equal(gy.numpy(), [0.5, 0.0])


def test_sigmoid_is_stable_for_huge_inputs() -> None:
    x = rf.constant(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = rf.sigmoid(x).numpy()
    assert y[0] == 0.0 and y[-1] == 1.0 and y[2] == 0.5
    (g,) = rf.gradients(rf.sum(rf.sigmoid(x)), [x])
    assert np.all(np.isfinite(g.numpy()))


def test_gelu_exact_keeps_relative_precision_in_the_negative_tail() -> None:
    # x * Phi(x) at x = -8 is ~ -5e-15: 1 + erf(x/sqrt2) keeps about one digit of it;
    # erfc keeps ~14 (what is left is erfc's conditioning, 2x^2 ~ 128, at the rounded
    # argument x*sqrt(1/2)).
    import mpmath
    from scipy import special

    x = -8.0
    want = float(mpmath.mpf(x) * mpmath.ncdf(x))
    got = rf.gelu(rf.constant(np.array(x))).item()
    naive = 0.5 * x * (1.0 + special.erf(x * math.sqrt(0.5)))
    assert abs(got - want) / abs(want) <= 1e-13
    assert abs(naive - want) / abs(want) > 1e-3


def test_weak_python_scalars_keep_the_tensor_dtype(backend_name: str) -> None:
    x = rf.constant(np.ones(3, np.float32))
    for y in (2.5 * x, x - 1, 1 / x, x**2, 2.0**x, rf.maximum(x, 0.0), rf.where(x > 0, x, 0.0)):
        assert y.dtype == np.float32


def test_comparisons_are_boolean_and_not_differentiable() -> None:
    x = rf.constant(np.array([1.0, 2.0, 3.0]))
    m = x > 1.5
    assert m.dtype == np.bool_ and m._node is None
    np.testing.assert_array_equal((~m).numpy(), [True, False, False])
    np.testing.assert_array_equal(((x >= 2.0) & (x < 3.0)).numpy(), [False, True, False])


# -- lists and tuples of Python numbers are weak, like Python scalars ------------------------
_X = np.array([1.5, -2.0, 0.1, 4.0], np.float32)  # 0.1 rounded to float32
_L = [0.5, 4, 0.1, -1.0]  # Python numbers: 0.1 as float32 is _X[2]; as float64 it is not
_L32 = np.array(_L, np.float32)  # the rule: the list in the tensor's dtype

_ARITHMETIC = {
    "add": (rf.add, np.add),
    "subtract": (rf.subtract, np.subtract),
    "multiply": (rf.multiply, np.multiply),
    "divide": (rf.divide, np.divide),
    "maximum": (rf.maximum, np.maximum),
    "minimum": (rf.minimum, np.minimum),
    "equal": (rf.equal, np.equal),
    "not_equal": (rf.not_equal, np.not_equal),
    "less": (rf.less, np.less),
    "less_equal": (rf.less_equal, np.less_equal),
    "greater": (rf.greater, np.greater),
    "greater_equal": (rf.greater_equal, np.greater_equal),
}


@pytest.mark.parametrize("name", list(_ARITHMETIC))
@pytest.mark.parametrize("container", [list, tuple])
def test_a_list_of_python_numbers_takes_the_tensors_dtype_in_both_directions(name: str, container) -> None:
    rf_op, np_op = _ARITHMETIC[name]
    x = rf.constant(_X)
    values = container(_L)
    for got, want in ((rf_op(x, values), np_op(_X, _L32)), (rf_op(values, x), np_op(_L32, _X))):
        assert got.dtype == want.dtype  # float32 (or bool), never float64
        np.testing.assert_array_equal(got.numpy(), want)
    if name == "equal":
        assert (x == values).numpy()[2]  # 0.1 met as float32, as x32 == 0.1 is
        assert not np.equal(_X, np.array(_L))[2]  # (NumPy's promotion of the list would say no)


def test_operators_with_lists_take_the_tensors_dtype_both_ways() -> None:
    x = rf.constant(_X)
    pairs = [
        (x + _L, _X + _L32),
        (_L + x, _L32 + _X),
        (x - _L, _X - _L32),
        (_L - x, _L32 - _X),
        (x * _L, _X * _L32),
        (_L * x, _L32 * _X),
        (x / _L, _X / _L32),
        (_L / x, _L32 / _X),
        (x < _L, _X < _L32),
        (_L < x, _L32 < _X),
        (x == _L, _X == _L32),
    ]
    for got, want in pairs:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.numpy(), want)
    (g,) = rf.gradients(rf.sum(x * _L), [x])  # d/dx sum(x * c) = c, in x's dtype
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g.numpy(), _L32)


def test_power_with_a_list_either_side() -> None:
    base = rf.constant(np.array([1.5, 2.0, 0.25, 4.0], np.float32))
    for y in (rf.power(base, [2, 3, 0.5, -1]), base ** (2, 3, 0.5, -1)):
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y.numpy(), [2.25, 8.0, 0.5, 0.25])  # exact powers
    expo = rf.constant(np.array([2.0, 0.5, 0.25, -1.0], np.float32))
    for y in (rf.power([2.0, 4.0, 16.0, 0.5], expo), [2.0, 4.0, 16.0, 0.5] ** expo):
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y.numpy(), [4.0, 2.0, 2.0, 2.0])
    (g,) = rf.gradients(rf.sum(rf.power(base, [2, 3, 0.5, -1])), [base])  # y x^(y-1)
    np.testing.assert_allclose(g.numpy(), [3.0, 12.0, 1.0, -1 / 16], rtol=1e-6)


def test_where_with_list_branches() -> None:
    x = rf.constant(_X)
    mask = np.array([True, False, True, False])
    pairs = ((rf.where(mask, x, _L), np.where(mask, _X, _L32)), (rf.where(mask, _L, x), np.where(mask, _L32, _X)))
    for got, want in pairs:
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.numpy(), want)
    (g,) = rf.gradients(rf.sum(rf.where(mask, x, _L)), [x])
    np.testing.assert_array_equal(g.numpy(), mask.astype(np.float32))


def test_a_list_holding_anything_but_python_numbers_is_refused_naming_the_op() -> None:
    x = rf.constant(_X)
    with pytest.raises(TypeError, match=r"refopt.multiply: input 1 is a list holding a float64; only a list"):
        x * ([np.float64(1.0)] * 4)  # a NumPy scalar has a dtype of its own
    with pytest.raises(TypeError, match=r"refopt.add: input 0 is a list holding a Tensor.*rf.stack"):
        [x, x] + x
    with pytest.raises(TypeError, match=r"refopt.maximum: input 1 is a tuple holding a str"):
        rf.maximum(x, ("a",) * 4)
    with pytest.raises(TypeError, match=r"refopt.power: input 1 is a list holding the complex 1j"):
        rf.power(x, [1j, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"refopt.subtract: input 1 \(list\) cannot be made an array of float32"):
        x - [[1.0], [2.0, 3.0]]
    with pytest.raises(TypeError, match=r"refopt.less: input 1 is a list holding a NoneType"):
        rf.less(x, [None] * 4)


def test_python_values_with_no_tensor_follow_numpy_inference() -> None:
    """With no tensor to follow, Python numbers become constants as rf.constant makes
    them (float -> float64); anything else is refused naming the op and the type."""
    y = rf.add([1.0, 2.0], [3.0, 4.0])  # an array sum, never list concatenation
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y.numpy(), [4.0, 6.0])
    assert rf.exp(0.0).dtype == np.float64 and rf.exp(0.0).item() == 1.0
    np.testing.assert_array_equal(rf.sqrt([4.0, 9.0]).numpy(), [2.0, 3.0])
    np.testing.assert_array_equal(rf.less([1.0, 3.0], [2.0, 2.0]).numpy(), [True, False])
    assert rf.multiply(2.0, 3.0).item() == 6.0 and isinstance(rf.multiply(2.0, 3.0).data, np.ndarray)
    with pytest.raises(TypeError, match="refopt.exp: input 0 is a str; expected a Tensor, an array or Python numbers"):
        rf.exp("a")
    with pytest.raises(TypeError, match="refopt.tanh: input 0 is a NoneType"):
        rf.tanh(None)
    with pytest.raises(TypeError, match="refopt.exp: expected float32 or float64 input, got int64"):
        rf.exp(1)  # an int is int64, as rf.constant(1) is
