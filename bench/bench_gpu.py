"""GPU benchmark: one Adam step (torch convention) on 100M float32 values on a CUDA
device -- refopt's generated CUDA kernels on CuPy arrays vs torch's fused CUDA Adam and
the device's copy bandwidth (Adam's traffic: read p, g, m, v, write p, m, v) -- and a
check that the result's bits equal refopt's CPU path on a sample.

    python bench/bench_gpu.py [--n 100000000]

Needs CuPy and a CUDA device (and torch with CUDA for its column); writes
bench/results/gpu-<device>.json.  Targets (issue 9): >= 80% of the copy bandwidth and
>= 0.9x torch's fused CUDA Adam.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

import refopt as rf  # noqa: E402
from refopt import backend  # noqa: E402


def _timed(fn, repeat: int = 10) -> float:
    """Median seconds of ``fn`` on the device (CUDA events)."""
    import cupy

    fn()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000_000)
    n = ap.parse_args().n
    if not backend.cupy_available():
        raise SystemExit("bench_gpu.py needs CuPy and a CUDA device (cupy.is_available() is false)")
    import cupy

    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n, dtype=np.float32)
    g0 = rng.standard_normal(n, dtype=np.float32)
    with rf.use_backend("cupy"):
        var = rf.Variable(p0, name="w")
        g = cupy.asarray(g0)
        opt = rf.optim.Adam([var], learning_rate=1e-3)
        refopt_s = _timed(lambda: opt.apply_gradients([(g, var)]))
    src, dst = cupy.asarray(p0), cupy.empty(n, np.float32)
    copy_s = _timed(lambda: cupy.copyto(dst, src))
    copy_bw = 2 * 4 * n / copy_s
    adam_traffic = 7 * 4 * n
    out = {
        "n": n,
        "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
        "refopt_s": refopt_s,
        "copy_GBps": copy_bw / 1e9,
        "refopt_fraction_of_copy_bandwidth": adam_traffic / refopt_s / copy_bw,
    }
    try:
        import torch

        tp = torch.tensor(p0, device="cuda", requires_grad=True)
        tp.grad = torch.tensor(g0, device="cuda")
        topt = torch.optim.Adam([tp], lr=1e-3, fused=True)
        out["torch_fused_s"] = _timed(topt.step)
        out["ratio_refopt_over_torch_fused"] = refopt_s / out["torch_fused_s"]
    except Exception as exc:  # torch without CUDA: no column
        out["torch_fused_s"] = f"not measured: {exc}"
    # the bits: the first 10^5 values after the timed steps equal the CPU path's
    steps = 1 + 10  # _timed's warm-up call and its 10 timed ones
    cpu = rf.Variable(p0[:100_000].copy(), name="w")
    copt = rf.optim.Adam([cpu], learning_rate=1e-3)
    for _ in range(steps):
        copt.apply_gradients([(g0[:100_000], cpu)])
    out["bits_equal_cpu_on_first_1e5"] = bool(np.array_equal(var.numpy()[:100_000], cpu.numpy()))
    name = "gpu-" + "".join(c if c.isalnum() else "-" for c in out["device"]).strip("-").lower()
    print(out)
    print(f"wrote {write(name, out)}")


if __name__ == "__main__":
    main()
