"""Schedules: the formulas, and agreement with optax's, Keras' and BERT's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refopt.optim import schedules as S


def test_formulas() -> None:
    assert S.constant(0.3)(17) == 0.3
    p = S.polynomial_decay(1.0, 10, end=0.1, power=2.0)
    assert p(0) == 1.0 and p(10) == pytest.approx(0.1) and p(25) == pytest.approx(0.1)
    assert p(5) == pytest.approx(0.9 * 0.25 + 0.1)
    w = S.linear_warmup(2.0, 4, init=0.0)
    assert [w(k) for k in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    c = S.cosine_decay(1.0, 100, alpha=0.1)
    assert c(0) == pytest.approx(1.0) and c(100) == pytest.approx(0.1) and c(50) == pytest.approx(0.55)
    wc = S.warmup_cosine_decay(0.0, 1.0, 10, 110, end=0.0)
    assert wc(5) == 0.5 and wc(10) == 1.0 and wc(60) == pytest.approx(0.5) and wc(200) == pytest.approx(0.0)
    pc = S.piecewise_constant([10, 20], [1.0, 0.5, 0.1])
    assert [pc(k) for k in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    e = S.exponential_decay(1.0, 10, 0.5, staircase=True)
    assert e(9) == 1.0 and e(10) == 0.5 and S.exponential_decay(1.0, 10, 0.5)(5) == pytest.approx(0.5**0.5)


def test_bert_schedule_is_warmup_then_linear_decay_from_step_zero() -> None:
    b = S.bert(1e-4, num_train_steps=100, num_warmup_steps=10)
    assert b(0) == 0.0 and b(5) == pytest.approx(5e-5) and b(9) == pytest.approx(9e-5)
    assert b(10) == pytest.approx(1e-4 * 0.9)  # BERT drops at the end of warmup
    assert b(100) == 0.0 and b(150) == 0.0


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="decay_steps must be a positive int"):
        S.cosine_decay(1.0, 0)
    with pytest.raises(ValueError, match="one more value than boundaries"):
        S.piecewise_constant([1, 2], [1.0])
    with pytest.raises(ValueError, match="decay_steps must exceed warmup_steps"):
        S.warmup_cosine_decay(0.0, 1.0, 10, 10)


@pytest.mark.frameworks
def test_agreement_with_optax() -> None:
    optax = pytest.importorskip("optax")
    pairs = [
        (S.polynomial_decay(0.1, 50, 0.01, 2.0), optax.polynomial_schedule(0.1, 0.01, 2.0, 50)),
        (S.cosine_decay(0.1, 50, 0.2), optax.cosine_decay_schedule(0.1, 50, 0.2)),
        (S.warmup_cosine_decay(0.0, 0.1, 10, 60, 0.001), optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 60, 0.001)),
        (S.exponential_decay(0.1, 7, 0.5), optax.exponential_decay(0.1, 7, 0.5)),
    ]
    for mine, theirs in pairs:
        for k in range(0, 80, 3):
            assert mine(k) == pytest.approx(float(theirs(k)), rel=2e-6, abs=1e-9)  # optax computes in float32


@pytest.mark.frameworks
def test_agreement_with_keras_and_bert() -> None:
    pytest.importorskip("keras")
    import keras

    pc = keras.optimizers.schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    ed = keras.optimizers.schedules.ExponentialDecay(0.1, 7, 0.5, staircase=True)
    for k in range(30):
        assert S.piecewise_constant([10, 20], [1.0, 0.5, 0.1])(k) == pytest.approx(float(pc(k)))
        assert S.exponential_decay(0.1, 7, 0.5, staircase=True)(k) == pytest.approx(float(ed(k)), rel=1e-6)
    # BERT's create_optimizer schedule, computed as optimization.py does (float32 TF ops)
    tf = pytest.importorskip("tensorflow")
    init_lr, n, w = 5e-5, 100, 10
    for step in range(0, 120, 7):
        gs = tf.constant(step, tf.int64)
        lr = tf.compat.v1.train.polynomial_decay(
            tf.constant(init_lr), gs, n, end_learning_rate=0.0, power=1.0, cycle=False
        )
        lr = lr() if callable(lr) else lr  # eager TF returns the schedule as a function
        gs_f, ws_f = tf.cast(gs, tf.float32), tf.cast(tf.constant(w, tf.int32), tf.float32)
        warm = init_lr * (gs_f / ws_f)
        is_warm = tf.cast(gs_f < ws_f, tf.float32)
        lr = (1.0 - is_warm) * lr + is_warm * warm
        # TF evaluates in float32: 1 - step/N loses relative precision near the end
        assert S.bert(init_lr, n, w)(step) == pytest.approx(float(lr), rel=1e-6, abs=init_lr * 1e-6)
    assert math.isclose(S.bert(init_lr, n, w)(w), init_lr * (1 - w / n))
    np.testing.assert_equal(S.linear_warmup(S.polynomial_decay(1.0, 10), 5)(3), 0.6)


OPTAX_PAIRS = [
    ("constant", (0.0123,), "constant_schedule", (0.0123,)),
    ("polynomial_decay", (0.1, 50, 0.01, 2.0), "polynomial_schedule", (0.1, 0.01, 2.0, 50)),
    ("polynomial_decay", (0.1, 50, 0.01, 3), "polynomial_schedule", (0.1, 0.01, 3, 50)),
    ("polynomial_decay", (3e-4, 37), "polynomial_schedule", (3e-4, 0.0, 1.0, 37)),
    ("cosine_decay", (0.1, 50, 0.2), "cosine_decay_schedule", (0.1, 50, 0.2)),
    ("warmup_cosine_decay", (1e-5, 3e-3, 7, 45, 1e-4), "warmup_cosine_decay_schedule", (1e-5, 3e-3, 7, 45, 1e-4)),
    ("exponential_decay", (0.1, 7, 0.5), "exponential_decay", (0.1, 7, 0.5)),
    ("exponential_decay", (0.1, 7, 0.93, True), "exponential_decay", (0.1, 7, 0.93, 0, True)),
]


@pytest.fixture
def jax_x64():
    """Set JAX's float64 mode for one test, then restore it."""
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    before = jax.config.jax_enable_x64

    def set_mode(on: bool) -> None:
        jax.config.update("jax_enable_x64", on)

    yield set_mode
    jax.config.update("jax_enable_x64", before)


@pytest.mark.frameworks
@pytest.mark.parametrize("x64", [False, True])
def test_optax_evaluation_of_optax_schedules_bit_for_bit(jax_x64, x64) -> None:
    """optax calls a schedule on its int32 count: float32 arithmetic even with x64 on."""
    jax_x64(x64)
    import jax.numpy as jnp
    import optax

    differs_from_double = 0
    for mine_name, args, theirs_name, targs in OPTAX_PAIRS:
        mine, theirs = getattr(S, mine_name)(*args), getattr(optax, theirs_name)(*targs)
        for k in range(90):
            want = theirs(jnp.asarray(k, jnp.int32))
            assert mine.optax_value(k, x64) == float(np.asarray(want)), (mine_name, args, k)
            differs_from_double += mine.optax_value(k, x64) != mine(k)
    assert differs_from_double > 100  # what the plain double evaluation would have missed


@pytest.mark.frameworks
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optax_adam_with_a_schedule_bit_for_bit(jax_x64, dtype) -> None:
    import refopt as rf
    from refopt.optim import Adam

    jax_x64(dtype == "float64")
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(0)
    init = {"w": rng.standard_normal((5, 3)).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    for mine, theirs in (
        (S.polynomial_decay(0.1, 20, 0.001), optax.polynomial_schedule(0.1, 0.001, 1.0, 20)),
        (S.warmup_cosine_decay(0.0, 0.05, 3, 20, 1e-3), optax.warmup_cosine_decay_schedule(0.0, 0.05, 3, 20, 1e-3)),
    ):
        tx = optax.adam(theirs)
        params = {k: jnp.asarray(v) for k, v in init.items()}
        state = tx.init(params)
        variables = {k: rf.Variable(v.copy(), name=k) for k, v in init.items()}
        opt = Adam(list(variables.values()), learning_rate=mine, convention="optax")
        for _ in range(12):
            grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in init.items()}
            updates, state = tx.update({k: jnp.asarray(g) for k, g in grads.items()}, state, params)
            params = optax.apply_updates(params, updates)
            opt.apply_gradients([(grads[k], v) for k, v in variables.items()])
            for k, v in variables.items():
                assert v.numpy().tobytes() == np.asarray(params[k]).tobytes(), (type(mine).__name__, k)
