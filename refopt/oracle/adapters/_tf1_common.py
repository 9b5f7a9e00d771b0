"""Shared graph-mode scaffolding for the TF1 and BERT adapters."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from refopt.oracle.run import Run
from refopt.oracle.trajectory import Recorder, Trajectory


def run_graph(run: Run, build: Callable, slots_of: Callable, framework_meta: dict) -> Trajectory:
    """Build variables, gradient placeholders and one train op per pattern of missing
    gradients (all before initialisation), then feed the run step by step.

    ``build(tf1, var_names_and_vars, grads_and_vars, lr, group_key)`` returns a train op;
    ``slots_of(sess, name, var)`` the slots of one variable.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf1 = tf.compat.v1
    if run.masks:
        raise ValueError("TensorFlow has no element masks")
    dtype = tf.float32 if run.dtype == "float32" else tf.float64
    graph = tf.Graph()
    by_mult: dict[float, list[str]] = {}
    for n in run.variables:
        by_mult.setdefault(run.multiplier(n), []).append(n)
    patterns = sorted({tuple(g[n] is not None for n in run.variables) for g in run.grads})
    with graph.as_default():
        variables = {n: tf1.Variable(np.array(v), name=n, dtype=dtype) for n, v in run.variables.items()}
        holders = {
            n: tf1.placeholder(dtype, v.shape, name=f"grad_{i}") for i, (n, v) in enumerate(run.variables.items())
        }
        # one float32 learning rate per multiplier, fed as f32(lr * mult)
        lrs = {mult: tf1.placeholder(tf.float32, [], name=f"learning_rate_{i}") for i, mult in enumerate(by_mult)}
        optimizers: dict[float, object] = {}
        ops = {}
        for pattern in [tuple([True] * len(run.variables))] + patterns:
            present = {n for n, has in zip(run.variables, pattern) if has}
            train = []
            for mult, names in by_mult.items():
                gv = [(holders[n], variables[n]) for n in names if n in present]
                if not gv:
                    raise ValueError("a step where every gradient of one TF1 optimizer is None cannot be applied")
                if "global_clipnorm" in run.clip:
                    clipped, _ = tf.clip_by_global_norm([g for g, _ in gv], run.clip["global_clipnorm"])
                    gv = list(zip(clipped, [v for _, v in gv]))
                elif run.clip:
                    raise ValueError(f"the TF1 adapter clips by global norm only, not {sorted(run.clip)}")
                train.append(build(tf1, optimizers, mult, gv, lrs[mult]))
            ops[pattern] = tf.group(*train)
        init = tf1.global_variables_initializer()
    sess = tf1.Session(graph=graph)
    sess.run(init)
    rec = Recorder(run)
    for k, grads in enumerate(run.grads):
        pattern = tuple(grads[n] is not None for n in run.variables)
        feed = {holders[n]: grads[n] for n in run.variables if grads[n] is not None}
        for mult, holder in lrs.items():
            feed[holder] = np.float32(run.lrs[k] * mult)
        sess.run(ops[pattern], feed)
        values = sess.run(variables)
        rec.step(values, {n: slots_of(sess, optimizers[run.multiplier(n)], n, variables[n]) for n in run.variables})
    sess.close()
    return rec.finish({**framework_meta, "version": tf.__version__, "tensorflow": tf.__version__})
