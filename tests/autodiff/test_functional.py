"""grad / value_and_grad, higher order (Hessian-vector products against HIPS autograd),
stop_gradient, custom_gradient and scale_gradient."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp as ag_logsumexp
from hypothesis import given, settings
from hypothesis import strategies as st

import refopt as rf
from tests.checks import rel_err


def test_grad_and_value_and_grad_argnums_has_aux() -> None:
    def f(x, y):
        return rf.sum(x * x * y), "aux"

    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    (v, aux), (gx, gy) = rf.value_and_grad(f, argnums=(0, 1), has_aux=True)(x, y)
    assert v.item() == 19.0 and aux == "aux"
    np.testing.assert_array_equal(gx.numpy(), 2 * x * y)
    np.testing.assert_array_equal(gy.numpy(), x * x)
    g, aux = rf.grad(f, argnums=1, has_aux=True)(x, y)
    np.testing.assert_array_equal(g.numpy(), x * x)


def test_grad_of_unused_argument_is_zero_and_same_tensor_twice_is_separate() -> None:
    g = rf.grad(lambda x, y: rf.sum(x * 2.0), argnums=1)(np.ones(2), np.ones(3))
    np.testing.assert_array_equal(g.numpy(), np.zeros(3))
    x = rf.constant(np.array([1.0, 2.0]))
    gx, gy = rf.grad(lambda a, b: rf.sum(a * 3.0 + b * b), argnums=(0, 1))(x, x)
    np.testing.assert_array_equal(gx.numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(gy.numpy(), [2.0, 4.0])


def test_grad_needs_a_scalar() -> None:
    with pytest.raises(ValueError, match=r"f must return a single value to differentiate, got shape \(2,\)"):
        rf.grad(lambda x: x * 2.0)(np.ones(2))
    with pytest.raises(TypeError, match="argument 0 has dtype int64"):
        rf.grad(lambda x: rf.sum(x))(np.array([1, 2]))


def test_second_and_third_derivatives() -> None:
    def f(x):
        return rf.sum(rf.tanh(x) * x)

    x = np.array([0.3, -1.2])
    d1 = rf.grad(f)(x).numpy()
    d2 = rf.grad(lambda x: rf.sum(rf.grad(f)(x)))(x).numpy()
    d3 = rf.grad(lambda x: rf.sum(rf.grad(lambda z: rf.sum(rf.grad(f)(z)))(x)))(x).numpy()
    ag_f = lambda x: anp.sum(anp.tanh(x) * x)  # noqa: E731
    ag_d1 = autograd.grad(ag_f)
    ag_d2 = autograd.grad(lambda x: anp.sum(ag_d1(x)))
    ag_d3 = autograd.grad(lambda x: anp.sum(ag_d2(x)))
    for mine, ref in ((d1, ag_d1(x)), (d2, ag_d2(x)), (d3, ag_d3(x))):
        assert rel_err(mine, ref) <= 1e-12


def _hvp_cases():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 4))

    def rf_f(x):
        h = rf.tanh(rf.matmul(rf.reshape(x, (3, 5)), w))
        return rf.sum(rf.softmax(h, axis=-1) * h) + rf.sum(rf.log_softmax(h * 2.0, axis=0))

    def ag_f(x):
        h = anp.tanh(anp.matmul(anp.reshape(x, (3, 5)), w))
        sm = anp.exp(h - ag_logsumexp(h, axis=-1, keepdims=True))
        return anp.sum(sm * h) + anp.sum(2.0 * h - ag_logsumexp(h * 2.0, axis=0, keepdims=True))

    return rf_f, ag_f


@settings(max_examples=50)
@given(seed=st.integers(0, 2**32 - 1))
def test_hessian_vector_products_match_autograd(seed: int) -> None:
    rf_f, ag_f = _hvp_cases()
    rng = np.random.default_rng(seed)
    x, v = rng.standard_normal(15), rng.standard_normal(15)
    vt = rf.constant(v)
    hvp = rf.grad(lambda x: rf.sum(rf.grad(rf_f)(x) * vt))(x).numpy()
    ref = autograd.hessian_vector_product(ag_f)(x, v)
    assert rel_err(hvp, ref) <= 1e-12
    # the same HVP via gradients() with grad_ys, TensorFlow style
    xt = rf.constant(x)
    (g,) = rf.gradients(rf_f(xt), [xt])
    (hvp2,) = rf.gradients(g, [xt], grad_ys=[vt])
    assert rel_err(hvp2.numpy(), ref) <= 1e-12


def test_stop_gradient_first_and_second_order() -> None:
    x = rf.constant(np.array([1.5, -0.5]))
    y = rf.sum(x * rf.stop_gradient(x))  # d/dx = stop(x), not 2x
    (g,) = rf.gradients(y, [x])
    np.testing.assert_array_equal(g.numpy(), x.numpy())
    # second order: d/dx sum(stop(x) * x^2) = 2 x stop(x); d2 = 2 stop(x) (no term through stop)
    d2 = rf.grad(lambda z: rf.sum(rf.grad(lambda u: rf.sum(rf.stop_gradient(u) * u * u))(z)))(x.numpy())
    np.testing.assert_array_equal(d2.numpy(), 2.0 * x.numpy())
    # the only path through stop_gradient: unconnected
    (none,) = rf.gradients(rf.sum(rf.stop_gradient(x) * 2.0), [x])
    assert none is None


def test_stop_gradient_blend_keeps_value_and_scales_gradient() -> None:
    # y = a*x + (1-a)*stop(x): value x, gradient a
    x = rf.constant(np.array([2.0, 3.0]))
    a = 0.1
    y = a * x + (1 - a) * rf.stop_gradient(x)
    np.testing.assert_allclose(y.numpy(), x.numpy(), rtol=1e-15)
    (g,) = rf.gradients(rf.sum(y), [x])
    np.testing.assert_allclose(g.numpy(), [0.1, 0.1], rtol=0)


def test_custom_gradient_tensorflow_lr_mult_example() -> None:
    # TensorFlow's custom_gradient docs: scale the gradient of x1 by lr_mult.
    lr_mult = 0.1

    @rf.custom_gradient
    def lr_scaled(x):
        def grad_fn(dy):
            return dy * lr_mult

        return rf.identity(x), grad_fn

    x1 = rf.Variable(np.array([1.0, 2.0]), name="x1")
    x2 = rf.Variable(np.array([3.0, 4.0]), name="x2")
    loss = rf.sum(lr_scaled(x1) * x2) + rf.sum(x2 * x2)
    g1, g2 = rf.gradients(loss, [x1, x2])
    np.testing.assert_allclose(g1.numpy(), 0.1 * x2.numpy(), rtol=1e-15)
    np.testing.assert_array_equal(g2.numpy(), x1.numpy() + 2 * x2.numpy())
    np.testing.assert_array_equal(lr_scaled(x1).numpy(), x1.numpy())


def test_custom_gradient_second_order_through_grad_fn() -> None:
    # log1pexp with the stable gradient from TensorFlow's docs; its grad_fn is written with
    # refopt ops of the input, so the second derivative (sigmoid') comes out right.
    @rf.custom_gradient
    def log1pexp(x):
        e = rf.exp(x)

        def grad_fn(dy):
            return dy * (1.0 - 1.0 / (1.0 + e))

        return rf.log1p(e), grad_fn

    x = np.array([0.0, 1.0, 100.0])
    g = rf.grad(lambda z: rf.sum(log1pexp(z)))(x).numpy()
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-x)), rtol=1e-15)
    d2 = rf.grad(lambda z: rf.sum(rf.grad(lambda u: rf.sum(log1pexp(u)))(z)))(x[:2]).numpy()
    s = 1 / (1 + np.exp(-x[:2]))
    np.testing.assert_allclose(d2, s * (1 - s), rtol=1e-14)


def test_custom_gradient_errors() -> None:
    @rf.custom_gradient
    def bad(x, y):
        return x * y, lambda dy: dy  # one gradient for two inputs

    x = rf.constant(np.ones(2))
    with pytest.raises(ValueError, match="grad_fn returned 1 gradients for 2 positional inputs"):
        rf.gradients(rf.sum(bad(x, x)), [x])

    @rf.custom_gradient
    def wrong_shape(x):
        return x * 2.0, lambda dy: rf.sum(dy)

    with pytest.raises(ValueError, match=r"gradient 0 has shape \(\)"):
        rf.gradients(rf.sum(wrong_shape(x)), [x])


def test_scale_gradient() -> None:
    x = rf.constant(np.array([1.0, -2.0]))
    y = rf.scale_gradient(x, 0.25)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    (g,) = rf.gradients(rf.sum(y * y), [x])
    np.testing.assert_array_equal(g.numpy(), 0.25 * 2 * x.numpy())
    with pytest.raises(TypeError, match="alpha must be a Python float"):
        rf.scale_gradient(x, np.ones(2))
