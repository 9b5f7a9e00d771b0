"""Optimizer benchmark: one Adam step (torch convention) on 1M / 10M / 100M values,
float32 and float64, at 1 and 2 threads -- refopt's compiled kernels (and, on the smaller
sizes, its NumPy reference path) against torch 2.13's default and fused CPU Adam and the
in-place memory-traffic floor, all in this one process; one step over 3,000 small
variables (per-variable overhead); where splitting a call between two threads starts to
pay; and the first call's compile time with a cold and a warm kernel cache (fresh
processes, numba's own import measured apart).

    python bench/bench_optim.py [--sizes 1000000 10000000 100000000]

The floor is a compiled loop with Adam's memory traffic and none of its arithmetic: read
p, g, m, v, write p, m, v, in place (7 arrays x itemsize bytes per element), on the same
threads.  Writes bench/results/optim.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, write  # noqa: E402

import refopt as rf  # noqa: E402


def _floor_kernels():
    import numba

    def body(p, g, m, v):
        for i in range(p.shape[0]):
            p[i] += g[i]
            m[i] += g[i]
            v[i] += g[i]

    def body_par(p, g, m, v):
        for i in numba.prange(p.shape[0]):
            p[i] += g[i]
            m[i] += g[i]
            v[i] += g[i]

    return numba.njit(body), numba.njit(body_par, parallel=True)


def adam_step(n: int, dtype: str, threads: int, numpy_path: bool) -> dict:
    import numba
    import torch

    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    rf.set_kernels("numba", threads=threads)
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    repeat = 5 if n >= 10**8 else 9

    var = rf.Variable(p0.copy(), name="w")
    opt = rf.optim.Adam([var], learning_rate=1e-3)
    out = {"refopt_numba": best_of(lambda: opt.apply_gradients([(g, var)]), repeat=repeat)}
    del var, opt
    if numpy_path:
        var = rf.Variable(p0.copy(), name="w")
        opt = rf.optim.Adam([var], learning_rate=1e-3)
        rf.set_kernels("numpy")
        out["refopt_numpy"] = best_of(lambda: opt.apply_gradients([(g, var)]), repeat=3, warmup=1)
        rf.set_kernels("numba", threads=threads)
        del var, opt
    for name, kw in (("torch_default", {"foreach": False}), ("torch_fused", {"fused": True})):
        tp = torch.tensor(p0.copy(), requires_grad=True)
        topt = torch.optim.Adam([tp], lr=1e-3, **kw)
        tp.grad = torch.tensor(g)
        out[name] = best_of(topt.step, repeat=repeat)
        del tp, topt
    serial, parallel = _floor_kernels()
    kernel = parallel if threads > 1 else serial
    arrs = [p0.copy(), g, np.zeros_like(p0), np.zeros_like(p0)]
    out["floor"] = best_of(lambda: kernel(*arrs), repeat=repeat)
    floor = out["floor"]["min_s"]
    return {
        "n": n,
        "dtype": dtype,
        "threads": threads,
        "seconds": out,
        "floor_GBps": 7 * np.dtype(dtype).itemsize * n / floor / 1e9,
        "ratio_refopt_over_torch_fused": out["refopt_numba"]["min_s"] / out["torch_fused"]["min_s"],
        "ratio_refopt_over_torch_default": out["refopt_numba"]["min_s"] / out["torch_default"]["min_s"],
        "ratio_refopt_over_floor": out["refopt_numba"]["min_s"] / floor,
    }


_FIRST_CALL = """
import time
t = time.perf_counter(); import numba; imported = time.perf_counter() - t
import numpy as np, refopt as rf
v = rf.Variable(np.ones(1000, np.float32), name="w")
opt = rf.optim.Adam([v], learning_rate=1e-3)
g = np.ones(1000, np.float32)
t = time.perf_counter(); opt.apply_gradients([(g, v)]); print(imported, time.perf_counter() - t)
"""


def first_call() -> dict:
    """The first Adam step of a fresh process -- its kernel traced and compiled (cold
    cache) or loaded from numba's cache (warm) -- each in a new process, with numba's
    one-time import measured apart."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "REFOPT_CACHE_DIR": cache}

        def once() -> tuple[float, float]:
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True)
            imported, call = out.stdout.split()
            return float(imported), float(call)

        cold = once()
        warm = min(once() for _ in range(3))
    return {"cold_cache_s": cold[1], "warm_cache_s": warm[1], "numba_import_s": warm[0]}


def many_variables(count: int = 3000) -> dict:
    """One Adam step over ``count`` variables of 1-23 elements (per-variable overhead):
    refopt's one kernel call vs torch's fused (multi-tensor) and foreach paths, 1 thread."""
    import torch

    torch.set_num_threads(1)
    rf.set_kernels("numba", threads=1)
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 24, count)
    values = [rng.standard_normal(int(n)).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(int(n)).astype(np.float32) for n in sizes]
    vs = [rf.Variable(v.copy(), name=f"v{i}") for i, v in enumerate(values)]
    opt = rf.optim.Adam(vs, learning_rate=1e-3)
    pairs = list(zip(grads, vs))
    out = {"refopt_numba": best_of(lambda: opt.apply_gradients(pairs), repeat=9)}
    for name, kw in (("torch_fused", {"fused": True}), ("torch_foreach", {"foreach": True})):
        tps = [torch.tensor(v.copy(), requires_grad=True) for v in values]
        for t, g in zip(tps, grads):
            t.grad = torch.tensor(g)
        topt = torch.optim.Adam(tps, lr=1e-3, **kw)
        out[name] = best_of(topt.step, repeat=9)
    return {
        "variables": count,
        "elements": int(sizes.sum()),
        "seconds": out,
        "us_per_variable_refopt": out["refopt_numba"]["min_s"] / count * 1e6,
        "ratio_refopt_over_torch_fused": out["refopt_numba"]["min_s"] / out["torch_fused"]["min_s"],
        "ratio_refopt_over_torch_foreach": out["refopt_numba"]["min_s"] / out["torch_foreach"]["min_s"],
    }


def split_threshold() -> list[dict]:
    """Where splitting one call between two threads starts to pay (the choice of
    ``refopt.kernels.threads.SPLIT_MIN``): an Adam step on 2^16 .. 2^21 values, one
    thread vs always split in two, with torch fused on two threads beside it."""
    import torch

    from refopt.kernels import threads as kthreads

    rows = []
    saved = kthreads.SPLIT_MIN
    kthreads.SPLIT_MIN = 1  # split every call
    try:
        for dtype in ("float32", "float64"):
            for e in range(16, 22):
                n = 2**e
                rng = np.random.default_rng(0)
                p0, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
                row = {"n": n, "dtype": dtype}
                for t in (1, 2):
                    rf.set_kernels("numba", threads=t)
                    var = rf.Variable(p0.copy(), name="w")
                    opt = rf.optim.Adam([var], learning_rate=1e-3)
                    row[f"refopt_{t}t_s"] = best_of(lambda: opt.apply_gradients([(g, var)]), repeat=21)["median_s"]
                torch.set_num_threads(2)
                tp = torch.tensor(p0.copy(), requires_grad=True)
                tp.grad = torch.tensor(g)
                topt = torch.optim.Adam([tp], lr=1e-3, fused=True)
                row["torch_fused_2t_s"] = best_of(topt.step, repeat=21)["median_s"]
                rows.append(row)
                print(
                    f"split {n:>9,} {dtype}: 1 thread {row['refopt_1t_s'] * 1e6:7.0f} us, split in two "
                    f"{row['refopt_2t_s'] * 1e6:7.0f} us, torch fused 2t {row['torch_fused_2t_s'] * 1e6:7.0f} us",
                    flush=True,
                )
    finally:
        kthreads.SPLIT_MIN = saved
        rf.set_kernels("numba", threads=1)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**6, 10**7, 10**8])
    sizes = ap.parse_args().sizes
    rows = []
    for n in sizes:
        for dtype in ("float32", "float64"):
            for threads in (1, 2):
                row = adam_step(n, dtype, threads, numpy_path=n <= 10**6)
                rows.append(row)
                ms = {k: v["min_s"] * 1e3 for k, v in row["seconds"].items()}
                print(
                    f"{n:>11,} {dtype} {threads}t: refopt {ms['refopt_numba']:8.2f} ms, torch fused "
                    f"{ms['torch_fused']:8.2f}, default {ms['torch_default']:8.2f}, floor {ms['floor']:8.2f}  "
                    f"(x{row['ratio_refopt_over_torch_fused']:.2f} fused, x{row['ratio_refopt_over_floor']:.2f} floor)",
                    flush=True,
                )
    payload = {
        "adam_step": rows,
        "many_variables": many_variables(),
        "split_threshold": split_threshold(),
        "first_call": first_call(),
        "started": time.strftime("%Y-%m-%d"),
    }
    path = write("optim", payload)
    print(json.dumps({k: payload[k] for k in ("many_variables", "first_call")}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
