"""Losses against torch and TensorFlow in float64 (values and gradients), including
logits of +-1e4."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refopt as rf
from refopt.nn import losses
from tests.checks import rel_err
from tests.nn.twins import check_twin

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.frameworks
seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=40)
@given(seed=seeds, scale=st.sampled_from([1.0, 10.0]), batch=st.integers(1, 6), classes=st.integers(2, 7))
def test_sparse_softmax_cross_entropy_matches_torch(seed, scale, batch, classes) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, classes)) * scale
    labels = rng.integers(0, classes, batch)
    check_twin(
        lambda lg, lb: losses.sparse_softmax_cross_entropy(lb, lg),
        lambda lg, lb: F.cross_entropy(lg, lb, reduction="none"),
        [logits, labels],
        [0],
        seed,
        cotangent_atol=1e-13 if scale > 1 else 0.0,
    )


def test_sparse_softmax_cross_entropy_huge_logits_match_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4 - 1.0], [3.0, 1e4, -1e4]])
    labels = np.array([0, 2, 0])
    t = rf.constant(logits)
    per = losses.sparse_softmax_cross_entropy(labels, t)
    (g,) = rf.gradients(rf.sum(per), [t])
    tl = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(tl)
        ref = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tl)
        total = tf.reduce_sum(ref)
    tg = tape.gradient(total, tl)
    assert np.all(np.isfinite(per.numpy())) and np.all(np.isfinite(g.numpy()))
    assert rel_err(per.numpy(), ref.numpy()) <= 1e-12
    assert rel_err(g.numpy(), tg.numpy()) <= 1e-12


@settings(max_examples=30)
@given(seed=seeds, batch=st.integers(1, 5), classes=st.integers(2, 6))
def test_softmax_cross_entropy_matches_torch_soft_labels(seed, batch, classes) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, classes)) * 3
    probs = rng.random((batch, classes))
    probs /= probs.sum(-1, keepdims=True)
    check_twin(
        lambda lg, p: losses.softmax_cross_entropy(p, lg),
        lambda lg, p: F.cross_entropy(lg, p, reduction="none"),
        [logits, probs],
        [0, 1],
        seed,
    )


@settings(max_examples=30)
@given(seed=seeds, scale=st.sampled_from([1.0, 30.0]))
def test_sigmoid_cross_entropy_matches_torch(seed, scale) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((4, 3)) * scale
    logits[0, 0] = 0.0  # the kink of the stable form
    z = rng.random((4, 3))
    check_twin(
        lambda x, z: losses.sigmoid_cross_entropy(z, x),
        lambda x, z: F.binary_cross_entropy_with_logits(x, z, reduction="none"),
        [logits, z],
        [0, 1],
        seed,
    )


def test_sigmoid_cross_entropy_huge_logits() -> None:
    x = rf.constant(np.array([1e4, -1e4, 0.0]))
    z = rf.constant(np.array([0.0, 1.0, 1.0]))
    per = losses.sigmoid_cross_entropy(z, x)
    np.testing.assert_allclose(per.numpy(), [1e4, 1e4, np.log(2)])
    (g,) = rf.gradients(rf.sum(per), [x])
    np.testing.assert_allclose(g.numpy(), [1.0, -1.0, -0.5])


@settings(max_examples=30)
@given(seed=seeds, shape=st.sampled_from([(4, 3), (2, 3, 2), (5,)]))
def test_mean_squared_error_matches_torch(seed, shape) -> None:
    rng = np.random.default_rng(seed)
    y, p = rng.standard_normal(shape), rng.standard_normal(shape)
    check_twin(
        lambda p, y: losses.mean_squared_error(y, p),
        lambda p, y: F.mse_loss(p, y, reduction="none").mean(-1),
        [p, y],
        [0, 1],
        seed,
    )


def test_l2_loss_matches_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert rel_err(losses.l2_loss(x).numpy(), tf.nn.l2_loss(x).numpy()) <= 1e-15


def test_reductions_are_explicit() -> None:
    logits = rf.constant(np.array([[2.0, 0.0], [0.0, 1.0]]))
    labels = np.array([0, 1])
    per = losses.sparse_softmax_cross_entropy(labels, logits)
    assert per.shape == (2,)
    assert losses.sparse_softmax_cross_entropy(labels, logits, reduction="sum").item() == pytest.approx(
        per.numpy().sum(), rel=1e-15
    )
    assert losses.sparse_softmax_cross_entropy(labels, logits, reduction="mean").item() == pytest.approx(
        per.numpy().mean(), rel=1e-15
    )
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.mean_squared_error(logits, logits, reduction="avg")


def test_loss_input_errors() -> None:
    logits = rf.constant(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"label 3 is outside \[0, 3\)"):
        losses.sparse_softmax_cross_entropy(np.array([0, 3]), logits)
    with pytest.raises(TypeError, match="labels must be integers"):
        losses.sparse_softmax_cross_entropy(np.array([0.0, 1.0]), logits)
    with pytest.raises(ValueError, match=r"labels shape \(3,\) does not match logits shape \(2, 3\)"):
        losses.sparse_softmax_cross_entropy(np.array([0, 1, 2]), logits)
