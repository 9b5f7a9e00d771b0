"""Engine benchmark: per-op overhead on tiny tensors, and forward+backward of a 2-layer
MLP (batch 128, 784-256-10, float32), refopt vs torch CPU eager vs HIPS autograd, all
measured in this one run.  Writes bench/results/engine.json.

    python bench/bench_engine.py

Targets (issue 2): per-op overhead <= 5 us; MLP forward+backward <= 1.5x torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, write  # noqa: E402

import refopt as rf  # noqa: E402

CHAIN = 100


def per_op() -> dict:
    import autograd
    import autograd.numpy as anp
    import torch

    x4 = np.linspace(0.1, 0.4, 4).astype(np.float32)
    rx, ry = rf.constant(x4), rf.constant(x4 * 2)
    tx = torch.tensor(x4, requires_grad=True)
    ty = torch.tensor(x4 * 2)
    rm, tm = rf.reshape(rx, (2, 2)), tx.reshape(2, 2)
    fwd = {
        "add": (lambda: rx + ry, lambda: tx + ty),
        "multiply": (lambda: rx * ry, lambda: tx * ty),
        "exp": (lambda: rf.exp(rx), lambda: torch.exp(tx)),
        "tanh": (lambda: rf.tanh(rx), lambda: torch.tanh(tx)),
        "sum": (lambda: rf.sum(rx), lambda: torch.sum(tx)),
        "matmul_2x2": (lambda: rm @ rm, lambda: tm @ tm),
        "reshape": (lambda: rf.reshape(rx, (2, 2)), lambda: tx.reshape(2, 2)),
        "getitem": (lambda: rx[1:3], lambda: tx[1:3]),
    }
    out = {}
    for name, (f_rf, f_torch) in fwd.items():
        r = best_of(f_rf, number=20000)["min_s"]
        t = best_of(f_torch, number=20000)["min_s"]
        out[name] = {"refopt_us": r * 1e6, "torch_us": t * 1e6}

    # forward + backward of a chain of CHAIN elementwise ops, per op
    def rf_chain():
        x = rf.constant(x4)
        y = x
        for _ in range(CHAIN // 2):
            y = rf.tanh(y) * 0.9
        return rf.gradients(rf.sum(y), [x])

    def torch_chain():
        x = torch.tensor(x4, requires_grad=True)
        y = x
        for _ in range(CHAIN // 2):
            y = torch.tanh(y) * 0.9
        return torch.autograd.grad(y.sum(), [x])

    def ag_loss(x):
        y = x
        for _ in range(CHAIN // 2):
            y = anp.tanh(y) * 0.9
        return anp.sum(y)

    ag_grad = autograd.grad(ag_loss)
    chain = {
        "refopt_us_per_op": best_of(rf_chain, number=50)["min_s"] / CHAIN * 1e6,
        "torch_us_per_op": best_of(torch_chain, number=50)["min_s"] / CHAIN * 1e6,
        "autograd_us_per_op": best_of(lambda: ag_grad(x4), number=50)["min_s"] / CHAIN * 1e6,
    }
    return {"forward_per_op": out, "forward_backward_chain": chain}


def mlp() -> dict:
    import autograd
    import autograd.numpy as anp
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    labels = rng.integers(0, 10, 128)
    w1 = (rng.standard_normal((784, 256)) * 0.05).astype(np.float32)
    b1 = np.zeros(256, np.float32)
    w2 = (rng.standard_normal((256, 10)) * 0.05).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    onehot = np.eye(10, dtype=np.float32)[labels]

    rx, roh = rf.constant(x), rf.constant(onehot)
    rparams = [rf.Variable(p, name=n) for p, n in zip((w1, b1, w2, b2), ("w1", "b1", "w2", "b2"))]

    def rf_step():
        W1, B1, W2, B2 = rparams
        logits = rf.relu(rx @ W1 + B1) @ W2 + B2
        loss = -rf.mean(rf.sum(roh * rf.log_softmax(logits, axis=-1), axis=-1))
        return rf.gradients(loss, rparams)

    tx, tl = torch.tensor(x), torch.tensor(labels)
    tparams = [torch.tensor(p, requires_grad=True) for p in (w1, b1, w2, b2)]

    def torch_step():
        W1, B1, W2, B2 = tparams
        logits = torch.relu(tx @ W1 + B1) @ W2 + B2
        loss = torch.nn.functional.cross_entropy(logits, tl)
        return torch.autograd.grad(loss, tparams)

    def ag_loss(params):
        W1, B1, W2, B2 = params
        logits = anp.maximum(anp.dot(x, W1) + B1, 0.0) @ W2 + B2
        m = anp.max(logits, axis=-1, keepdims=True)
        lsm = logits - m - anp.log(anp.sum(anp.exp(logits - m), axis=-1, keepdims=True))
        return -anp.mean(anp.sum(onehot * lsm, axis=-1))

    ag_step = autograd.grad(ag_loss)
    ag_params = [w1, b1, w2, b2]

    # all three compute the same gradient
    g_rf = [g.numpy() for g in rf_step()]
    g_t = [g.numpy() for g in torch_step()]
    g_ag = ag_step(ag_params)
    agree = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30)) for a, b in zip(g_rf, g_t))
    agree_ag = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30)) for a, b in zip(g_rf, g_ag))

    res = {
        "refopt": best_of(rf_step, repeat=15, number=5),
        "torch": best_of(torch_step, repeat=15, number=5),
        "autograd": best_of(lambda: ag_step(ag_params), repeat=15, number=5),
    }
    return {
        "shape": "batch 128, 784-256-10, float32, ReLU, softmax cross-entropy",
        "seconds": res,
        "ratio_refopt_over_torch": res["refopt"]["median_s"] / res["torch"]["median_s"],
        "ratio_refopt_over_torch_best_of": res["refopt"]["min_s"] / res["torch"]["min_s"],
        "ratio_refopt_over_autograd": res["refopt"]["median_s"] / res["autograd"]["median_s"],
        "max_rel_grad_diff_vs_torch": agree,
        "max_rel_grad_diff_vs_autograd": agree_ag,
    }


def main() -> None:
    payload = {"per_op": per_op(), "mlp": mlp()}
    fwd = payload["per_op"]["forward_per_op"]
    payload["summary"] = {
        "max_forward_overhead_refopt_us": max(v["refopt_us"] for v in fwd.values()),
        "target_forward_overhead_us": 5.0,
        "mlp_ratio_refopt_over_torch_median": payload["mlp"]["ratio_refopt_over_torch"],
        "mlp_ratio_refopt_over_torch_best_of": payload["mlp"]["ratio_refopt_over_torch_best_of"],
        "target_mlp_ratio": 1.5,
    }
    path = write("engine", payload)
    import json

    print(json.dumps(payload["summary"], indent=2))
    print(json.dumps(payload["per_op"]["forward_backward_chain"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
