"""Keras 3 adapter (TensorFlow backend, eager ``apply_gradients``).

Keras has no per-variable learning rate: a run with multipliers uses one optimizer per
multiplier, each applied every step.  Exclusions from weight decay are passed by
variable (``exclude_from_weight_decay(var_list=...)``), since Keras names cannot hold
"/"; a ``None`` gradient is passed through (Keras drops it, its count advances).
"""

from __future__ import annotations

import os
import re

import numpy as np

from refopt.oracle.run import Recorder, Run, Trajectory


def run_keras(run: Run) -> Trajectory:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"the keras adapter needs the TensorFlow backend, found {keras.backend.backend()!r}")
    if run.masks:
        raise ValueError("Keras has no element masks")
    h = dict(run.hyper)
    variables = {
        n: keras.Variable(np.array(v), dtype=run.dtype, name=n.replace("/", "__")) for n, v in run.variables.items()
    }
    by_mult: dict[float, list[str]] = {}
    for n in run.variables:
        by_mult.setdefault(run.multiplier(n), []).append(n)

    def make():
        kw = dict(learning_rate=float(run.lrs[0]) if run.lrs else 1e-3, **run.clip)
        if run.rule == "sgd":
            return keras.optimizers.SGD(
                momentum=h.get("momentum", 0.0),
                nesterov=h.get("nesterov", False),
                weight_decay=h.get("weight_decay") or None,
                **kw,
            )
        common = dict(
            beta_1=h.get("beta1", 0.9),
            beta_2=h.get("beta2", 0.999),
            epsilon=h.get("epsilon", 1e-7),
            amsgrad=h.get("amsgrad", False),
            **kw,
        )
        if run.rule == "adam":
            return keras.optimizers.Adam(weight_decay=h.get("weight_decay") or None, **common)
        wd = h.get("weight_decay")
        return keras.optimizers.AdamW(weight_decay=0.004 if wd is None else wd, **common)

    opts = {}
    for mult, names in by_mult.items():
        opt = make()
        excluded = [variables[n] for n in names if any(re.search(p, n) for p in (run.exclude_from_weight_decay or []))]
        if excluded:
            opt.exclude_from_weight_decay(var_list=excluded)
        opts[mult] = opt
    rec = Recorder(run)
    for k, grads in enumerate(run.grads):
        for mult, names in by_mult.items():
            opt = opts[mult]
            if all(grads[n] is None for n in names):
                raise ValueError(f"step {k}: every gradient of a Keras optimizer is None (Keras refuses that step)")
            opt.learning_rate = float(run.lrs[k] * mult)
            opt.apply_gradients([(None if grads[n] is None else tf.constant(grads[n]), variables[n]) for n in names])
        slots = {}
        for mult, names in by_mult.items():
            opt = opts[mult]
            for n in names:
                i = opt._get_variable_index(variables[n])
                if run.rule == "sgd":
                    slots[n] = {"momentum": opt.momentums[i].numpy()} if h.get("momentum") else {}
                else:
                    slots[n] = {"m": opt._momentums[i].numpy(), "v": opt._velocities[i].numpy()}
                    if h.get("amsgrad"):
                        slots[n]["v_max"] = opt._velocity_hats[i].numpy()
        rec.step({n: v.numpy() for n, v in variables.items()}, slots)
    return rec.finish(
        {"framework": "keras", "version": keras.__version__, "backend": "tensorflow", "tensorflow": tf.__version__}
    )
