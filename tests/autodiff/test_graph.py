"""rf.gradients: TensorFlow-1 semantics, pruning, stale graphs, determinism."""

from __future__ import annotations

import numpy as np
import pytest

import refopt as rf


def test_unconnected_inputs_get_none_or_zeros() -> None:
    x = rf.Variable(np.array([1.0, 2.0]), name="x")
    y = rf.Variable(np.array([3.0]), name="y")
    loss = rf.sum(x * x)
    gx, gy = rf.gradients(loss, [x, y])
    np.testing.assert_array_equal(gx.numpy(), [2.0, 4.0])
    assert gy is None
    _, gy0 = rf.gradients(loss, [x, y], unconnected_gradients="zero")
    np.testing.assert_array_equal(gy0.numpy(), [0.0])
    with pytest.raises(ValueError, match="unconnected_gradients must be one of"):
        rf.gradients(loss, [x], unconnected_gradients="zeros")


def test_list_of_ys_is_summed_and_grad_ys_weights_them() -> None:
    x = rf.constant(np.array([1.0, 2.0, 3.0]))
    y1, y2 = x * 2.0, rf.square(x)
    (g,) = rf.gradients([y1, y2], [x])
    np.testing.assert_array_equal(g.numpy(), 2.0 + 2.0 * x.numpy())
    w1, w2 = np.array([1.0, 0.0, -1.0]), np.array([0.5, 0.5, 0.5])
    (gw,) = rf.gradients([y1, y2], [x], grad_ys=[w1, w2])
    np.testing.assert_array_equal(gw.numpy(), 2.0 * w1 + 2.0 * x.numpy() * w2)
    # the same y twice counts twice, as in TensorFlow
    (g2,) = rf.gradients([y1, y1], [x])
    np.testing.assert_array_equal(g2.numpy(), [4.0, 4.0, 4.0])


def test_gradient_with_respect_to_intermediate_tensors() -> None:
    x = rf.constant(np.array([0.5, -1.0]))
    h = rf.tanh(x)
    y = rf.sum(h * h)
    gh, gx = rf.gradients(y, [h, x])
    np.testing.assert_allclose(gh.numpy(), 2 * np.tanh(x.numpy()), rtol=1e-15)
    np.testing.assert_allclose(gx.numpy(), 2 * np.tanh(x.numpy()) * (1 - np.tanh(x.numpy()) ** 2), rtol=1e-15)


def test_gradient_of_a_tensor_with_respect_to_itself_is_the_cotangent() -> None:
    x = rf.constant(np.array([1.0, 2.0]))
    (g,) = rf.gradients(x, [x])
    np.testing.assert_array_equal(g.numpy(), [1.0, 1.0])


def test_bad_grad_ys_are_refused() -> None:
    x = rf.constant(np.ones(3))
    y = x * 2.0
    with pytest.raises(ValueError, match=r"grad_ys\[0\] has shape \(2,\), ys\[0\] has shape \(3,\)"):
        rf.gradients(y, [x], grad_ys=[np.ones(2)])
    with pytest.raises(TypeError, match=r"grad_ys\[0\] has dtype float32, ys\[0\] has dtype float64"):
        rf.gradients(y, [x], grad_ys=[np.ones(3, np.float32)])
    with pytest.raises(ValueError, match="2 grad_ys for 1 ys"):
        rf.gradients(y, [x], grad_ys=[np.ones(3), np.ones(3)])


def test_integer_ys_cannot_be_differentiated() -> None:
    labels = rf.constant(np.array([1, 2]))
    with pytest.raises(TypeError, match=r"ys\[0\] has dtype int64"):
        rf.gradients(labels, [labels])


def test_stale_graph_after_assign_raises_naming_the_variable() -> None:
    w = rf.Variable(np.array([1.0, 2.0]), name="encoder/dense_1/kernel")
    loss = rf.sum(w * w)
    w.assign(np.array([3.0, 4.0]))
    with pytest.raises(rf.StaleGraphError, match=r"Variable 'encoder/dense_1/kernel' was assigned after this graph"):
        rf.gradients(loss, [w])
    # a fresh forward pass is fine and sees the new value
    (g,) = rf.gradients(rf.sum(w * w), [w])
    np.testing.assert_array_equal(g.numpy(), [6.0, 8.0])


def test_stale_graph_detected_deep_in_the_graph() -> None:
    w = rf.Variable(np.array([1.0]), name="w")
    x = rf.constant(np.array([2.0]))
    h = rf.tanh(x * w)  # w is read here, far from the loss
    loss = rf.sum(rf.exp(h) + x)
    w.assign_add(np.array([1.0]))
    with pytest.raises(rf.StaleGraphError, match="'w'"):
        rf.gradients(loss, [x])


def test_assign_checks_shape_dtype_and_keeps_value_on_error() -> None:
    w = rf.Variable(np.zeros((2, 3), np.float32), name="k")
    with pytest.raises(ValueError, match=r"Variable 'k': cannot assign shape \(3, 2\) to shape \(2, 3\)"):
        w.assign(np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="Variable 'k': cannot assign dtype float64 to dtype float32"):
        w.assign(np.ones((2, 3)))
    assert w.version == 0 and not w.numpy().any()


def test_gradients_are_bitwise_deterministic() -> None:
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal((32, 16)).astype(np.float32)

    def run() -> list[np.ndarray]:
        x, w = rf.constant(xv), rf.Variable(wv, name="w")
        h = rf.tanh(x @ w)
        # a diamond and repeated uses: cotangents meet and are summed
        loss = rf.sum(h * h) + rf.sum(rf.softmax(h) * h) + rf.mean(rf.take(h, np.array([0, 3, 3, 1])))
        return [g.numpy() for g in rf.gradients(loss, [x, w])]

    first = run()
    for _ in range(3):
        again = run()
        for a, b in zip(first, again):
            assert a.tobytes() == b.tobytes()


def test_deep_chains_do_not_hit_the_recursion_limit() -> None:
    x = rf.constant(np.array(1.0))
    y = x
    for _ in range(5000):
        y = y * 1.0001
    (g,) = rf.gradients(y, [x])
    np.testing.assert_allclose(g.item(), 1.0001**5000, rtol=1e-12)


def test_a_variable_given_as_grad_ys_comes_back_as_a_tensor() -> None:
    """d y/d y is the cotangent itself: given a Variable, the gradient is a recorded
    Tensor holding its value, not the Variable (which an optimizer may change in place),
    and it still differentiates with respect to the Variable (a JVP by double VJP)."""
    u = rf.Variable(np.array([1.0, -2.0, 0.5]), name="u")
    x = rf.constant(np.array([3.0, 4.0, 5.0]))
    y = x + 0.0
    gy, gx = rf.gradients(y, [y, x], grad_ys=[u])
    for g in (gy, gx):
        assert type(g) is rf.Tensor
        np.testing.assert_array_equal(g.numpy(), [1.0, -2.0, 0.5])
    w = rf.Variable(np.array([1.0, 2.0, 3.0]), name="w")
    (gw,) = rf.gradients(w * w, [w], grad_ys=[u])  # 2 w u
    (gu,) = rf.gradients(rf.sum(gw), [u])  # d/du sum(2 w u) = 2 w
    np.testing.assert_array_equal(gu.numpy(), [2.0, 4.0, 6.0])
