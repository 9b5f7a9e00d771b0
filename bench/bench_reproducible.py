"""What reproducibility costs: refopt's reproducible mode against its fast mode (the
libraries' own BLAS, reductions and SIMD transcendentals) and torch, in one run.

    python bench/bench_reproducible.py [--threads N]

* a 1024 x 1024 x 1024 matrix product, float32 and float64: the correctly rounded
  product vs plain BLAS (``numpy.matmul``), and the ratio;
* one training step of an MLP 784-256-256-10 (batch 128, float32, ReLU, softmax
  cross-entropy, Adam in the torch convention): forward + backward + update, refopt
  reproducible vs refopt fast vs torch eager (``torch.optim.Adam``, default path);
* the elementwise transcendentals on 10^6 float32 and float64 values, ns per element,
  reproducible vs fast.

Writes bench/results/reproducible.json (``--threads`` sets the BLAS and torch threads).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _threads(argv: list[str]) -> int | None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="BLAS / torch threads (default: the libraries')")
    return ap.parse_args(argv).threads


THREADS = _threads(sys.argv[1:])
if THREADS is not None:  # before NumPy loads OpenBLAS
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(THREADS)

import numpy as np  # noqa: E402
from _common import best_of, mlp_problem, refopt_mlp, torch_mlp, write  # noqa: E402

import refopt as rf  # noqa: E402
from refopt import kernels  # noqa: E402


def matmul() -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for dtype in ("float32", "float64"):
        a = rng.standard_normal((1024, 1024)).astype(dtype)
        b = rng.standard_normal((1024, 1024)).astype(dtype)
        exact = best_of(lambda: kernels.gemm.matmul(a, b), repeat=5, warmup=1)
        plain = best_of(lambda: np.matmul(a, b), repeat=7)
        out[dtype] = {
            "reproducible_s": exact,
            "blas_s": plain,
            "ratio_median": exact["median_s"] / plain["median_s"],
            "ratio_best_of": exact["min_s"] / plain["min_s"],
        }
    return out


def mlp_step() -> dict:
    import torch

    if THREADS is not None:
        torch.set_num_threads(THREADS)
    loss, _, opt = refopt_mlp(*mlp_problem())
    _, _, torch_step = torch_mlp(*mlp_problem())

    def rf_step() -> None:
        opt.minimize(loss())

    with rf.use_mode("reproducible"):
        rep = best_of(rf_step, repeat=15, number=3)
    with rf.use_mode("fast"):
        fast = best_of(rf_step, repeat=15, number=3)
    tor = best_of(torch_step, repeat=15, number=3)
    return {
        "shape": "batch 128, 784-256-256-10, float32, ReLU, softmax cross-entropy, Adam (torch convention)",
        "seconds": {"reproducible": rep, "fast": fast, "torch_eager": tor},
        "ratio_reproducible_over_fast": rep["median_s"] / fast["median_s"],
        "ratio_reproducible_over_torch": rep["median_s"] / tor["median_s"],
        "ratio_fast_over_torch": fast["median_s"] / tor["median_s"],
    }


_ELEMENTWISE = {
    "exp": lambda x: rf.exp(x),
    "log": lambda x: rf.log(rf.abs(x) + 0.5),
    "tanh": lambda x: rf.tanh(x),
    "sigmoid": lambda x: rf.sigmoid(x),
    "erf": lambda x: rf.erf(x),
    "gelu": lambda x: rf.gelu(x),
    "gelu_tanh": lambda x: rf.gelu(x, approximate="tanh"),
}


def elementwise() -> dict:
    rng = np.random.default_rng(1)
    out = {}
    for dtype in ("float32", "float64"):
        x = rf.constant(rng.standard_normal(10**6).astype(dtype) * 3)
        for name, fn in _ELEMENTWISE.items():
            with rf.use_mode("reproducible"):
                rep = best_of(lambda: fn(x), repeat=5, warmup=1)["median_s"]
            with rf.use_mode("fast"):
                fast = best_of(lambda: fn(x), repeat=5, warmup=1)["median_s"]
            out[f"{name}/{dtype}"] = {"reproducible_ns": rep * 1e3, "fast_ns": fast * 1e3, "ratio": rep / fast}
    return out


def main() -> None:
    payload = {
        "threads": THREADS,
        "matmul_1024": matmul(),
        "mlp_training_step": mlp_step(),
        "elementwise": elementwise(),
    }
    path = write("reproducible" if THREADS is None else f"reproducible-{THREADS}thread", payload)
    import json

    summary = {
        "matmul_ratio_float32": payload["matmul_1024"]["float32"]["ratio_median"],
        "matmul_ratio_float64": payload["matmul_1024"]["float64"]["ratio_median"],
        **{k: v for k, v in payload["mlp_training_step"].items() if k.startswith("ratio")},
    }
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
