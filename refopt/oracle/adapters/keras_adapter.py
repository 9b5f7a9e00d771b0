"""Keras 3 adapter: eager ``apply_gradients`` on the TensorFlow backend (what the keras
convention reproduces) or the JAX backend.  Keras fixes its backend when first imported,
so a backend other than this process's runs in a subprocess.

Keras has no per-variable learning rate: a run with multipliers uses one optimizer per
multiplier, each applied every step.  Exclusions from weight decay are passed by
variable (``exclude_from_weight_decay(var_list=...)``), since Keras names cannot hold
"/"; a ``None`` gradient is passed through (Keras drops it, its count advances).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from refopt.oracle.run import Run
from refopt.oracle.trajectory import Recorder, Trajectory


def run_keras(run: Run, backend: str = "tensorflow") -> Trajectory:
    if backend not in ("tensorflow", "jax"):
        raise ValueError(f"keras backend must be 'tensorflow' or 'jax', got {backend!r}")
    loaded = sys.modules.get("keras")
    current = loaded.backend.backend() if loaded is not None else os.environ.get("KERAS_BACKEND", "tensorflow")
    if current != backend:
        return _in_subprocess(run, backend)
    os.environ.setdefault("KERAS_BACKEND", backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", run.dtype == "float64")
    import keras

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
            opt.apply_gradients(
                [(None if grads[n] is None else keras.ops.convert_to_tensor(grads[n]), variables[n]) for n in names]
            )
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
    return rec.finish({"framework": "keras", "version": keras.__version__, "backend": keras.backend.backend()})


def _in_subprocess(run: Run, backend: str) -> Trajectory:
    from refopt.oracle.trajectory import load

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "run.npz", Path(tmp) / "trajectory.npz"
        run.save(src)
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run(
            [sys.executable, "-m", "refopt.oracle.adapters.keras_adapter", str(src), str(dst), backend],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"keras ({backend}) subprocess failed:\n{proc.stderr[-3000:]}")
        return load(dst)


if __name__ == "__main__":
    src, dst, which = sys.argv[1:4]
    run_keras(Run.load(src), which).save(dst, machine=False)
