"""Optimizer benchmark: one Adam step on 10M float32 values, refopt (torch convention:
the fused-path arithmetic with exact FMA emulation) vs torch's default and fused CPU
paths, and vs the memory-traffic bound -- 7 arrays x 4 bytes per element (read p, g, m,
v; write p, m, v) over the bandwidth NumPy's copy reaches -- all measured in this run.
Writes bench/results/optim.json.  The bound uses the bandwidth of a single-threaded
copy; torch's fused step runs on every core, so it can beat it.

    python bench/bench_optim.py [--n 10000000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, write  # noqa: E402

import refopt as rf  # noqa: E402


def copy_bandwidth(n: int) -> float:
    """Bytes per second NumPy's copy moves (read + write) on n float32 values."""
    src = np.random.default_rng(0).random(n, dtype=np.float32)
    dst = np.empty_like(src)
    t = best_of(lambda: np.copyto(dst, src), repeat=9)["min_s"]
    return 2 * 4 * n / t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    n = ap.parse_args().n
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)

    bw = copy_bandwidth(n)
    bound = 7 * 4 * n / bw

    var = rf.Variable(p0.copy(), name="w")
    opt = rf.optim.Adam([var], learning_rate=1e-3)
    opt.apply_gradients([(g, var)])  # create state, warm up
    t_rf = best_of(lambda: opt.apply_gradients([(g, var)]), repeat=5, warmup=1)

    results = {"refopt_torch_convention": t_rf}
    import torch

    for path, kw in (("torch_default", {"foreach": False}), ("torch_fused", {"fused": True})):
        tp = torch.tensor(p0.copy(), requires_grad=True)
        topt = torch.optim.Adam([tp], lr=1e-3, **kw)
        tp.grad = torch.tensor(g)
        results[path] = best_of(topt.step, repeat=5, warmup=2)

    payload = {
        "n": n,
        "dtype": "float32",
        "copy_bandwidth_GBps": bw / 1e9,
        "memory_bound_s": bound,
        "seconds": results,
        "ratio_over_bound": {k: v["min_s"] / bound for k, v in results.items()},
        "ratio_refopt_over_torch_default": t_rf["min_s"] / results["torch_default"]["min_s"],
        "ratio_refopt_over_torch_fused": t_rf["min_s"] / results["torch_fused"]["min_s"],
    }
    path = write("optim", payload)
    print(
        json.dumps(
            {
                k: payload[k]
                for k in (
                    "copy_bandwidth_GBps",
                    "memory_bound_s",
                    "ratio_over_bound",
                    "ratio_refopt_over_torch_default",
                    "ratio_refopt_over_torch_fused",
                )
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
