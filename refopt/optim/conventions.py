"""Conventions: whose arithmetic an update reproduces, and its defaults.

``convention=`` names a framework; refopt then reproduces that framework's optimizer
arithmetic bit for bit (see ``docs/conventions.md`` and the frameworks' sources cited
there).  What differs between them:

============  =====================  =======================  ============================
convention    reproduces             step count               Python scalars become
============  =====================  =======================  ============================
torch         torch.optim (2.13):    per variable; a None     the tensor dtype directly
              fused CPU Adam/AdamW,  gradient skips the       (``float(x)`` rounded once)
              default-path SGD       variable
keras         Keras 3, TensorFlow    shared (``iterations``)  ``ops.cast``: through float32
              backend, eager                                   first, then the dtype
tf1           tf.compat.v1.train     shared (beta powers are  every hyperparameter a
              (graph mode)           float32 running          float32 tensor first
                                     products)
optax         optax (eager; x64 on   shared per group         weakly typed: the dtype
              for float64)                                     directly
bert          BERT AdamWeightDecay   none (no bias            the dtype directly
              (optimization.py)      correction)
============  =====================  =======================  ============================
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CONVENTIONS", "DEFAULTS", "check_convention", "scalar", "via_float32"]

CONVENTIONS = ("torch", "keras", "tf1", "optax", "bert")

# Defaults that differ by convention ({rule: {convention: {name: value}}}).
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "adam": {
        "torch": {"epsilon": 1e-8},
        "keras": {"epsilon": 1e-7},
        "tf1": {"epsilon": 1e-8},
        "optax": {"epsilon": 1e-8},
    },
    "adamw": {
        "torch": {"epsilon": 1e-8, "weight_decay": 1e-2},
        "keras": {"epsilon": 1e-7, "weight_decay": 0.004},
        "optax": {"epsilon": 1e-8, "weight_decay": 1e-4},
        "bert": {
            "epsilon": 1e-6,
            "weight_decay": 0.01,
            "exclude_from_weight_decay": ["LayerNorm", "layer_norm", "bias"],
        },
    },
    "sgd": {"torch": {}, "keras": {}, "tf1": {}, "optax": {}},
}


def check_convention(convention: str, rule: str) -> str:
    """Validate ``convention`` for ``rule``; the error lists the valid ones."""
    valid = tuple(DEFAULTS[rule])
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; valid conventions are {', '.join(CONVENTIONS)}")
    if convention not in valid:
        raise ValueError(
            f"convention {convention!r} has no {rule_title(rule)} (valid for {rule_title(rule)}: {', '.join(valid)})"
        )
    return convention


def rule_title(rule: str) -> str:
    return {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}[rule]


def scalar(x: float, dtype: Any) -> Any:
    """A Python float rounded once to ``dtype`` (a NumPy scalar of that dtype)."""
    return np.asarray(x, dtype=dtype)[()]


def via_float32(x: float, dtype: Any) -> Any:
    """A Python float as TensorFlow converts it: to a float32 tensor, then cast to ``dtype``."""
    return np.asarray(np.float32(x), dtype=dtype)[()]
