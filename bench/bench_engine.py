"""Engine benchmark: per-op overhead on tiny tensors (fast mode: the engine's own cost),
and forward + backward and one Adam training step of an MLP 784-256-256-10 (batch 128,
float32) in both numerics modes, refopt vs torch CPU eager vs HIPS autograd, all measured
in this one run.  Writes bench/results/engine.json.

    python bench/bench_engine.py

Targets: per-op overhead <= 5 us; MLP forward+backward <= 1.2x torch eager and the
training step <= 1.3x (fast mode; issue 9).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, mlp_problem, refopt_mlp, torch_mlp, write  # noqa: E402

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
    """Forward + backward, and one training step (+ Adam), of an MLP 784-256-256-10 (batch
    128, float32, ReLU, softmax cross-entropy): refopt in both numerics modes vs torch
    eager vs HIPS autograd (its step: the gradient, then Adam written in NumPy)."""
    import autograd
    import autograd.numpy as anp
    import torch

    x, labels, weights = mlp_problem()
    onehot = np.eye(10, dtype=np.float32)[labels]
    rf_loss, rparams, ropt = refopt_mlp(x, labels, weights)
    torch_loss, tparams, torch_step = torch_mlp(x, labels, weights)

    def ag_loss(params):
        h = x
        for i in range(0, len(params) - 2, 2):
            h = anp.maximum(anp.dot(h, params[i]) + params[i + 1], 0.0)
        logits = anp.dot(h, params[-2]) + params[-1]
        m = anp.max(logits, axis=-1, keepdims=True)
        lsm = logits - m - anp.log(anp.sum(anp.exp(logits - m), axis=-1, keepdims=True))
        return -anp.mean(anp.sum(onehot * lsm, axis=-1))

    ag_grad = autograd.grad(ag_loss)
    ag_params = [w.copy() for w in weights]
    ag_m = [np.zeros_like(w) for w in weights]
    ag_v = [np.zeros_like(w) for w in weights]
    ag_t = [0]

    def ag_step():  # Adam in NumPy (PyTorch's formula, no fused arithmetic)
        ag_t[0] += 1
        t = ag_t[0]
        for p, m, v, g in zip(ag_params, ag_m, ag_v, ag_grad(ag_params)):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= (1e-3 / (1 - 0.9**t)) * m / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)

    fwd_bwd = {"torch": best_of(lambda: torch.autograd.grad(torch_loss(), tparams), repeat=25, number=5)}
    fwd_bwd["autograd"] = best_of(lambda: ag_grad(ag_params), repeat=25, number=5)
    step = {"torch": best_of(torch_step, repeat=25, number=5), "autograd": best_of(ag_step, repeat=25, number=5)}
    for mode in ("fast", "reproducible"):
        with rf.use_mode(mode):
            fwd_bwd[f"refopt_{mode}"] = best_of(lambda: rf.gradients(rf_loss(), rparams), repeat=25, number=5)
            step[f"refopt_{mode}"] = best_of(lambda: ropt.minimize(rf_loss()), repeat=25, number=5)

    def ratios(res: dict) -> dict:
        return {
            f"{k}_over_{ref}": res[k]["median_s"] / res[ref]["median_s"]
            for k in res
            if k.startswith("refopt")
            for ref in ("torch", "autograd")
        }

    return {
        "shape": "batch 128, 784-256-256-10, float32, ReLU, softmax cross-entropy; step: + Adam",
        "forward_backward_s": fwd_bwd,
        "training_step_s": step,
        "forward_backward_ratios": ratios(fwd_bwd),
        "training_step_ratios": ratios(step),
    }


def main() -> None:
    with rf.use_mode("fast"):  # per-op overhead: the engine's own cost, not the kernels'
        per = per_op()
    payload = {"per_op_fast_mode": per, "mlp": mlp()}
    fwd = per["forward_per_op"]
    payload["summary"] = {
        "max_forward_overhead_refopt_us": max(v["refopt_us"] for v in fwd.values()),
        "mlp_forward_backward_over_torch": {
            k: v for k, v in payload["mlp"]["forward_backward_ratios"].items() if k.endswith("torch")
        },
        "mlp_training_step_over_torch": {
            k: v for k, v in payload["mlp"]["training_step_ratios"].items() if k.endswith("torch")
        },
    }
    path = write("engine", payload)
    import json

    print(json.dumps(payload["summary"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
