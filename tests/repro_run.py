"""A small training run whose every bit is hashed: the workload of the machine-variant
tests (``tests/test_reproducibility.py`` runs it in subprocesses under different BLAS
kernels, SIMD levels and thread counts).

    python -m tests.repro_run [numpy|cupy]   # prints {"float32": sha256, "float64": sha256}

Forward (conv2d, Dense, GELU in both forms, tanh, sigmoid, LayerNorm, log-softmax
cross-entropy, logsumexp, power, log1p), backward (every VJP, a second-order term) and
AdamW updates; the hash covers the losses, every gradient and every parameter after
every step.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

import refopt as rf


def run(dtype: str, steps: int = 6, backend: str = "numpy") -> str:
    """The hash of the whole run; every value is created on ``backend``."""
    with rf.use_backend(backend):
        return _run(dtype, steps)


def _run(dtype: str, steps: int) -> str:
    rng = np.random.default_rng(0)
    h = hashlib.sha256()
    conv = rf.Variable(rng.standard_normal((3, 3, 2, 4)).astype(dtype) * 0.3, name="conv")
    dense1 = rf.nn.Dense(4 * 6 * 6, 24, dtype=dtype, seed=1)
    norm = rf.nn.LayerNorm(24, dtype=dtype)
    dense2 = rf.nn.Dense(24, 10, dtype=dtype, seed=2)
    variables = [conv, *rf.nn.Sequential([dense1, norm, dense2]).variables()]
    opt = rf.optim.AdamW(variables, learning_rate=0.01, weight_decay=0.01)
    x = rf.constant(rng.standard_normal((16, 8, 8, 2)).astype(dtype))
    y = rf.constant(rng.integers(0, 10, 16))
    for _ in range(steps):
        z = rf.conv2d(x, conv, padding="valid")
        z = rf.gelu(z, approximate="tanh")
        z = rf.reshape(z, (16, -1))
        z = rf.gelu(dense1(z))
        z = rf.tanh(norm(z)) + rf.sigmoid(z) * 0.1
        logits = dense2(z)
        loss = rf.mean(rf.nn.losses.sparse_softmax_cross_entropy(y, logits))
        loss = loss + 1e-3 * rf.mean(rf.logsumexp(logits, axis=-1) ** 2) + 1e-3 * rf.mean(rf.log1p(z * z))
        (g_conv,) = rf.gradients(rf.sum(rf.gradients(loss, [conv])[0] ** 2), [conv])  # a second-order term
        grads = rf.gradients(loss, variables)
        for t in (loss, g_conv, *grads):
            h.update(t.numpy().tobytes())
        opt.apply_gradients(list(zip(grads, variables)))
        for v in variables:
            h.update(v.numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "numpy"
    print(json.dumps({d: run(d, backend=backend) for d in ("float32", "float64")}))


if __name__ == "__main__":
    main()
