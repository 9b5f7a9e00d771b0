"""Shared helpers for the benchmarks: timing and the machine description in the JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn: Callable[[], Any], repeat: int = 7, number: int = 1, warmup: int = 2) -> dict[str, float]:
    """Run fn number times per sample; return min and median seconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return {"min_s": min(samples), "median_s": statistics.median(samples)}


def machine() -> dict[str, Any]:
    import numpy as np

    from refopt.oracle.trajectory import machine_info

    info: dict[str, Any] = {
        **machine_info(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def _blas() -> str:
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts")
        return cfg["Build Dependencies"]["blas"]["name"]
    except Exception:
        return "unknown"


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


# -- the MLP both engine benchmarks time: 784-256-256-10, batch 128, float32 ---------------------
def mlp_problem() -> tuple[Any, Any, list]:
    """``(x, labels, weights)``: seeded data and He-style initial weights (kernels, biases)."""
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = [784, 256, 256, 10]
    x = rng.standard_normal((128, 784)).astype(np.float32)
    labels = rng.integers(0, 10, 128)
    weights = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        weights += [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), np.zeros(b, np.float32)]
    return x, labels, weights


def refopt_mlp(x: Any, labels: Any, weights: list) -> tuple[Callable[[], Any], list, Any]:
    """``(loss, params, adam)``: the MLP (ReLU, softmax cross-entropy) in refopt."""
    import refopt as rf

    params = [rf.Variable(w.copy(), name=f"p{i}") for i, w in enumerate(weights)]
    rx, ry = rf.constant(x), rf.constant(labels)

    def loss() -> Any:
        h = rx
        for i in range(0, len(params) - 2, 2):
            h = rf.relu(h @ params[i] + params[i + 1])
        return rf.mean(rf.nn.losses.sparse_softmax_cross_entropy(ry, h @ params[-2] + params[-1]))

    return loss, params, rf.optim.Adam(params, learning_rate=1e-3)


def torch_mlp(x: Any, labels: Any, weights: list) -> tuple[Callable[[], Any], list, Callable[[], None]]:
    """``(loss, params, step)``: the same MLP in torch eager, and one Adam training step."""
    import torch

    params = [torch.tensor(w.copy(), requires_grad=True) for w in weights]
    opt = torch.optim.Adam(params, lr=1e-3)
    tx, ty = torch.tensor(x), torch.tensor(labels)

    def loss() -> Any:
        h = tx
        for i in range(0, len(params) - 2, 2):
            h = torch.relu(h @ params[i] + params[i + 1])
        return torch.nn.functional.cross_entropy(h @ params[-2] + params[-1], ty)

    def step() -> None:
        opt.zero_grad()
        loss().backward()
        opt.step()

    return loss, params, step
