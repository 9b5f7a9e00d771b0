"""Random gradient streams for optimizer tests: several shapes (some with vector
remainders), exactly-zero slices, None gradients on some steps, a changing learning rate."""

from __future__ import annotations

from typing import Any

import numpy as np

from refopt.oracle.run import Run

SHAPES = {
    "encoder/dense/kernel": (7, 5),
    "encoder/dense/bias": (5,),
    "encoder/layer_norm/gamma": (3, 4),
    "head/kernel": (33, 17),
}


def make_run(
    rule: str,
    convention: str,
    dtype: str,
    hyper: dict[str, Any] | None = None,
    steps: int = 50,
    seed: int = 0,
    none_every: int = 7,
    **kwargs: Any,
) -> Run:
    rng = np.random.default_rng(seed)
    variables = {n: rng.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
    grads = []
    names = list(SHAPES)
    for k in range(steps):
        g = {n: rng.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
        g["encoder/dense/kernel"][:2] = 0.0  # exactly-zero rows
        g["head/kernel"][:, 3] = 0.0  # an exactly-zero column
        if none_every and k % none_every == none_every - 1:
            g[names[(k // none_every) % len(names)]] = None  # one variable without a gradient
        grads.append(g)
    lrs = [1e-2 * (0.96**k) * (1.0 + 0.5 * np.sin(k)) for k in range(steps)]
    return Run(rule, convention, dtype, variables, grads, lrs, dict(hyper or {}), **kwargs)
