"""Each convention validates what its framework validates, when it does, quoting its rule:
checked against the real frameworks (torch, Keras, tf.compat.v1, optax)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import refopt as rf
from refopt.optim import SGD, Adam, AdamW
from refopt.oracle.adapters import available, run_framework
from refopt.oracle.run import run_refopt
from refopt.testing import assert_trajectory_equal
from tests.optim.streams import make_run

pytestmark = pytest.mark.frameworks

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _vars(dtype="float32"):
    rng = np.random.default_rng(0)
    return [rf.Variable(rng.standard_normal((3, 4)).astype(dtype), name="w"), rf.Variable(np.ones(4, dtype), name="b")]


def _refusal(make):
    """The framework's own error message, or None where it accepts."""
    try:
        make()
    except ValueError as exc:
        return str(exc)
    return None


# (refopt class, refopt kwargs, torch class, torch kwargs)
TORCH_CASES = [
    (Adam, {"learning_rate": -1.0}, "Adam", {"lr": -1.0}),
    (Adam, {"learning_rate": math.nan}, "Adam", {"lr": math.nan}),
    (Adam, {"learning_rate": math.inf}, "Adam", {"lr": math.inf}),
    (Adam, {"epsilon": -1e-8}, "Adam", {"eps": -1e-8}),
    (Adam, {"beta1": 1.0}, "Adam", {"betas": (1.0, 0.999)}),
    (Adam, {"beta1": -0.1}, "Adam", {"betas": (-0.1, 0.999)}),
    (Adam, {"beta2": 1.0}, "Adam", {"betas": (0.9, 1.0)}),
    (Adam, {"weight_decay": -0.01}, "Adam", {"weight_decay": -0.01}),
    (AdamW, {"beta1": 1.0}, "AdamW", {"betas": (1.0, 0.999)}),
    (AdamW, {"weight_decay": -1.0}, "AdamW", {"weight_decay": -1.0}),
    (SGD, {"learning_rate": -0.1}, "SGD", {"lr": -0.1}),
    (SGD, {"momentum": -0.5}, "SGD", {"momentum": -0.5}),
    (SGD, {"momentum": 1.5}, "SGD", {"momentum": 1.5}),
    (SGD, {"momentum": 0.9, "dampening": -1.0}, "SGD", {"momentum": 0.9, "dampening": -1.0}),
    (SGD, {"weight_decay": -0.1}, "SGD", {"weight_decay": -0.1}),
    (SGD, {"nesterov": True}, "SGD", {"nesterov": True}),
    (
        SGD,
        {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
        "SGD",
        {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
    ),
]


@pytest.mark.parametrize("mine,kw,theirs,tkw", TORCH_CASES)
def test_torch_convention_refuses_exactly_what_torch_refuses(mine, kw, theirs, tkw) -> None:
    torch = pytest.importorskip("torch")
    expected = _refusal(lambda: getattr(torch.optim, theirs)([torch.nn.Parameter(torch.ones(2))], **tkw))
    group = {"params": _vars(), **kw}
    kw = dict(kw)
    lr = kw.pop("learning_rate", 1e-3)
    if expected is None:
        mine(_vars(), learning_rate=lr, **kw)  # accepted, as torch accepts it
        mine([group])
        return
    with pytest.raises(ValueError) as info:
        mine(_vars(), learning_rate=lr, **kw)
    msg = str(info.value)
    assert repr(expected) in msg  # torch's own words ...
    assert f"torch.optim.{theirs} requires" in msg  # ... and its rule
    # the same rule holds in a parameter group (where torch would fail only at the step)
    with pytest.raises(ValueError, match="in parameter group 0") as info:
        mine([group])
    assert repr(expected) in str(info.value)


def test_torch_messages_name_the_rule() -> None:
    with pytest.raises(
        ValueError,
        match=r"Adam\(convention='torch'\) in the optimizer: beta1=1.0: torch.optim.Adam requires 0 <= beta < 1 "
        r"\('Invalid beta parameter at index 0: 1.0'\)",
    ):
        Adam(_vars(), beta1=1.0)
    # Before: accepted here, then ZeroDivisionError at the step.
    with pytest.raises(ValueError, match="Invalid beta parameter at index 0"):
        Adam([{"params": _vars(), "betas": (1.0, 0.999)}])


@pytest.mark.parametrize(
    "cls,kw,keras_name,keras_kw",
    [
        (SGD, {"momentum": -0.1}, "SGD", {"momentum": -0.1}),
        (SGD, {"momentum": 1.5}, "SGD", {"momentum": 1.5}),
        (SGD, {"momentum": 1.0}, "SGD", {"momentum": 1.0}),
        (SGD, {"nesterov": True}, "SGD", {"nesterov": True}),
        (SGD, {"learning_rate": -0.1}, "SGD", {"learning_rate": -0.1}),
        (Adam, {"beta1": 1.0, "beta2": 1.5, "epsilon": -1.0}, "Adam", {"beta_1": 1.0, "beta_2": 1.5, "epsilon": -1.0}),
        (AdamW, {"weight_decay": -1.0, "learning_rate": -1.0}, "AdamW", {"weight_decay": -1.0, "learning_rate": -1.0}),
    ],
)
def test_keras_convention_refuses_exactly_what_keras_refuses(cls, kw, keras_name, keras_kw) -> None:
    keras = pytest.importorskip("keras")
    expected = _refusal(lambda: getattr(keras.optimizers, keras_name)(**keras_kw))
    kw = dict(kw)
    lr = kw.pop("learning_rate", 1e-3)
    if expected is None:
        cls(_vars(), learning_rate=lr, convention="keras", **kw)
        return
    with pytest.raises(ValueError) as info:
        cls(_vars(), learning_rate=lr, convention="keras", **kw)
    assert repr(expected) in str(info.value) and "keras.optimizers.SGD requires 0 <= momentum <= 1" in str(info.value)


def test_tf1_and_optax_conventions_accept_what_their_frameworks_accept() -> None:
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("optax")
    import optax

    tf1 = tf.compat.v1
    tf1.train.AdamOptimizer(-1.0, beta1=1.0, beta2=1.5, epsilon=-1.0)
    tf1.train.MomentumOptimizer(0.1, momentum=-1.0, use_nesterov=True)
    optax.adam(-1.0, b1=1.0, b2=1.5, eps=-1.0)
    optax.sgd(0.1, momentum=0.0, nesterov=True)
    for convention in ("tf1", "optax"):
        Adam(_vars(), learning_rate=-1.0, beta1=1.0, beta2=1.5, epsilon=-1.0, convention=convention)
        SGD(_vars(), learning_rate=0.1, momentum=-1.0, nesterov=True, convention=convention)
    AdamW(_vars(), beta1=1.0, epsilon=-1.0, weight_decay=-1.0, convention="bert")


def test_keras_sgd_nesterov_without_momentum_bit_for_bit() -> None:
    """Keras' own golden test builds SGD(nesterov=True) with momentum 0: nesterov is ignored."""
    if not available("keras"):
        pytest.skip("keras is not installed")
    for dtype in ("float32", "float64"):
        run = make_run("sgd", "keras", dtype, {"nesterov": True}, steps=20, seed=4)
        assert_trajectory_equal(run_refopt(run), run_framework(run, "keras"))


def test_tf1_momentum_optimizer_nesterov_without_momentum_bit_for_bit() -> None:
    tf = pytest.importorskip("tensorflow")
    tf1 = tf.compat.v1
    rng = np.random.default_rng(5)
    init = rng.standard_normal((4, 3)).astype(np.float32)
    grads = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(6)]
    with tf.Graph().as_default():
        v = tf1.Variable(init)
        g = tf1.placeholder(tf.float32, (4, 3))
        train = tf1.train.MomentumOptimizer(0.1, momentum=0.0, use_nesterov=True).apply_gradients([(g, v)])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            theirs = []
            for x in grads:
                sess.run(train, {g: x})
                theirs.append(sess.run(v))
    w = rf.Variable(init.copy(), name="w")
    opt = SGD([w], learning_rate=0.1, nesterov=True, convention="tf1")
    for x, t in zip(grads, theirs):
        opt.apply_gradients([(x, w)])
        assert w.numpy().tobytes() == t.tobytes()


def test_optax_sgd_nesterov_without_momentum_bit_for_bit() -> None:
    pytest.importorskip("optax")
    import jax

    jax.config.update("jax_enable_x64", False)
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(6)
    init = rng.standard_normal((4, 3)).astype(np.float32)
    tx = optax.sgd(0.1, momentum=0.0, nesterov=True)
    params = {"w": jnp.asarray(init)}
    state = tx.init(params)
    w = rf.Variable(init.copy(), name="w")
    opt = SGD([w], learning_rate=0.1, nesterov=True, convention="optax")
    for _ in range(6):
        x = rng.standard_normal((4, 3)).astype(np.float32)
        updates, state = tx.update({"w": jnp.asarray(x)}, state, params)
        params = optax.apply_updates(params, updates)
        opt.apply_gradients([(x, w)])
        assert w.numpy().tobytes() == np.asarray(params["w"]).tobytes()


# -- a loss that depends on none of the variables -----------------------------------------


def test_tf1_refuses_a_loss_without_gradients_as_tf1_does() -> None:
    tf = pytest.importorskip("tensorflow")
    tf1 = tf.compat.v1
    with tf.Graph().as_default():
        v = tf1.Variable(np.ones(2, np.float32))
        c = tf1.constant(np.ones(2, np.float32))
        with pytest.raises(ValueError, match="No gradients provided for any variable") as theirs:
            tf1.train.AdamOptimizer(0.1).minimize(tf1.reduce_sum(c * c), var_list=[v])
    assert "No gradients provided for any variable" in str(theirs.value)
    vs = _vars()
    opt = Adam(vs, learning_rate=0.1, convention="tf1")
    before = [x.numpy() for x in vs]
    unrelated = rf.Variable(np.ones(2, np.float32), name="unrelated")
    with pytest.raises(ValueError, match=r"tf.compat.v1.train refuses this step \('No gradients provided for any"):
        opt.minimize(rf.sum(unrelated * unrelated))
    assert opt.iterations == 0 and all(np.array_equal(a, b.numpy()) for a, b in zip(before, vs))
    with pytest.raises(ValueError, match="No variables provided"):
        opt.apply_gradients([])


def test_keras_refuses_a_step_without_gradients_as_keras_does() -> None:
    keras = pytest.importorskip("keras")
    kopt = keras.optimizers.Adam(0.1)
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        kopt.apply_gradients([(None, keras.Variable(np.ones(2, np.float32)))])
    assert int(kopt.iterations) == 0
    vs = _vars()
    opt = Adam(vs, learning_rate=0.1, convention="keras")
    with pytest.raises(ValueError, match=r"Keras refuses this step \('No gradients provided for any variable.'\)"):
        opt.apply_gradients([(None, v) for v in vs])
    assert opt.iterations == 0


def test_optax_and_torch_go_on_without_gradients_as_they_do() -> None:
    """optax has no missing gradients: JAX gives zeros for a loss that ignores the
    parameters, and the update (and its count) goes on; torch's step skips every
    parameter whose grad is None."""
    pytest.importorskip("optax")
    torch = pytest.importorskip("torch")
    import jax

    jax.config.update("jax_enable_x64", False)
    import jax.numpy as jnp
    import optax

    tx = optax.adam(0.1)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    grads = jax.grad(lambda p, c: jnp.sum(c * c))(params, jnp.ones(2))
    _, state = tx.update(grads, state, params)
    assert int(state[0].count) == 1
    p = torch.nn.Parameter(torch.ones(2))
    topt = torch.optim.Adam([p], lr=0.1)
    topt.step()  # p.grad is None: nothing happens, nothing is raised
    assert topt.state_dict()["state"] == {} and p.detach().numpy().tolist() == [1.0, 1.0]
    unrelated = rf.Variable(np.ones(2, np.float32), name="unrelated")
    for convention, iterations in (("optax", 1), ("torch", 1)):
        vs = _vars()
        before = [x.numpy() for x in vs]
        opt = Adam(vs, learning_rate=0.1, convention=convention)
        opt.minimize(rf.sum(unrelated * unrelated))
        assert opt.iterations == iterations and all(np.array_equal(a, b.numpy()) for a, b in zip(before, vs))
    assert opt.step_count(vs[0]) == 0  # torch: skipped, its count stays
