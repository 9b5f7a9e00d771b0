"""Each adapter reproduces its framework driven by hand: for one scenario, a loop written
here against the framework's own API gives the same trajectory as the adapter."""

from __future__ import annotations

import numpy as np
import pytest

from refopt.oracle import scenarios as S
from refopt.oracle.adapters import run_framework

pytestmark = pytest.mark.frameworks


def _run(name):
    return S.materialize(S.get(name))


def _same(params_by_step, traj):
    for k, params in enumerate(params_by_step, start=1):
        for n, v in params.items():
            assert np.array_equal(v, traj.params[n][k]), (k, n)


def test_torch_adapter() -> None:
    torch = pytest.importorskip("torch")
    run = _run("adam-torch-amsgrad")
    ps = {n: torch.tensor(v.copy(), requires_grad=True) for n, v in run.variables.items()}
    opt = torch.optim.Adam(list(ps.values()), lr=run.lrs[0], amsgrad=True, weight_decay=0.01, fused=True)
    hand = []
    for k, grads in enumerate(run.grads):
        opt.param_groups[0]["lr"] = run.lrs[k]
        for n, p in ps.items():
            p.grad = None if grads[n] is None else torch.tensor(grads[n])
        opt.step()
        hand.append({n: p.detach().numpy().copy() for n, p in ps.items()})
    _same(hand, run_framework(run, "torch", path="fused"))


def test_keras_adapter() -> None:
    keras = pytest.importorskip("keras")
    run = _run("adam-keras-amsgrad")
    vs = {n: keras.Variable(v.copy(), name=n.replace("/", "_")) for n, v in run.variables.items()}
    opt = keras.optimizers.Adam(learning_rate=run.lrs[0], amsgrad=True)
    hand = []
    for k, grads in enumerate(run.grads):
        opt.learning_rate = run.lrs[k]
        opt.apply_gradients(
            [(None if grads[n] is None else keras.ops.convert_to_tensor(grads[n]), v) for n, v in vs.items()]
        )
        hand.append({n: v.numpy() for n, v in vs.items()})
    _same(hand, run_framework(run, "keras"))


def test_tf1_adapter() -> None:
    tf = pytest.importorskip("tensorflow")
    tf1 = tf.compat.v1
    run = _run("adam-tf1")
    graph = tf.Graph()
    with graph.as_default():
        vs = {n: tf1.Variable(v) for n, v in run.variables.items()}
        phs = {n: tf1.placeholder(tf.float32, v.shape) for n, v in run.variables.items()}
        lr = tf1.placeholder(tf.float32, [])
        opt = tf1.train.AdamOptimizer(lr)
        ops = {}
        for pattern in {tuple(g[n] is not None for n in run.variables) for g in run.grads} | {(True,) * 4}:
            ops[pattern] = opt.apply_gradients([(phs[n], vs[n]) for n, has in zip(run.variables, pattern) if has])
        init = tf1.global_variables_initializer()
    hand = []
    with tf1.Session(graph=graph) as sess:
        sess.run(init)
        for k, grads in enumerate(run.grads):
            pattern = tuple(grads[n] is not None for n in run.variables)
            feed = {phs[n]: grads[n] for n in run.variables if grads[n] is not None}
            feed[lr] = run.lrs[k]
            sess.run(ops[pattern], feed)
            hand.append(sess.run(vs))
    _same(hand, run_framework(run, "tf1"))


def test_optax_adapter() -> None:
    optax = pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", False)
    sc = S.get("adam-optax-eps_root")
    run = _run("adam-optax-eps_root")
    run.grads = [
        {n: (np.zeros_like(v) if g[n] is None else g[n]) for n, v in run.variables.items()} for g in run.grads
    ]  # by hand, optax sees no missing gradients: use a stream without them
    tx = optax.adam(lambda c: run.lrs[int(c)], eps_root=sc.optimizer["hyper"]["eps_root"])
    params = {n: jnp.asarray(v) for n, v in run.variables.items()}
    state = tx.init(params)
    hand = []
    for grads in run.grads:
        upd, state = tx.update({n: jnp.asarray(g) for n, g in grads.items()}, state, params)
        params = optax.apply_updates(params, upd)
        hand.append({n: np.asarray(v) for n, v in params.items()})
    _same(hand, run_framework(run, "optax"))


def test_bert_adapter_against_the_formula_in_tensorflow_eager() -> None:
    tf = pytest.importorskip("tensorflow")
    import re

    run = _run("adamw-bert")
    ps = {n: tf.Variable(v) for n, v in run.variables.items()}
    ms = {n: tf.Variable(tf.zeros_like(v)) for n, v in run.variables.items()}
    vs = {n: tf.Variable(tf.zeros_like(v)) for n, v in run.variables.items()}
    hand = []
    for k, grads in enumerate(run.grads):
        lr = tf.constant(run.lrs[k], tf.float32)
        for n, g in grads.items():
            if g is None:
                continue
            next_m = tf.multiply(0.9, ms[n]) + tf.multiply(1.0 - 0.9, g)
            next_v = tf.multiply(0.999, vs[n]) + tf.multiply(1.0 - 0.999, tf.square(g))
            update = next_m / (tf.sqrt(next_v) + 1e-6)
            if not any(re.search(r, n) for r in ["LayerNorm", "layer_norm", "bias"]):
                update += 0.01 * ps[n]
            ps[n].assign(ps[n] - lr * update)
            ms[n].assign(next_m)
            vs[n].assign(next_v)
        hand.append({n: p.numpy() for n, p in ps.items()})
    _same(hand, run_framework(run, "tf1"))
