"""Framework adapters: run a :class:`~refopt.oracle.run.Run` in a real framework and
return a :class:`~refopt.oracle.run.Trajectory` in refopt's format.

Each adapter imports its framework only when called; :func:`available` tells which are
installed.  Every adapter gives each variable its own parameter group / label when the
run has learning-rate multipliers, applies weight-decay exclusions the framework's own
way, and treats a ``None`` gradient as its framework does.
"""

from __future__ import annotations

import importlib.util

__all__ = ["FRAMEWORKS", "available", "run_framework"]

# framework name -> (module to probe, the conventions it checks)
FRAMEWORKS = {
    "torch": ("torch", ("torch",)),
    "keras": ("keras", ("keras",)),
    "tf1": ("tensorflow", ("tf1", "bert")),
    "optax": ("optax", ("optax",)),
}


def available(framework: str) -> bool:
    """Whether ``framework`` (and what its adapter needs) is importable."""
    module = FRAMEWORKS[framework][0]
    needs = {"keras": ("keras", "tensorflow"), "optax": ("optax", "jax")}.get(framework, (module,))
    return all(importlib.util.find_spec(m) is not None for m in needs)


def run_framework(run, framework: str, **kwargs):
    """Run ``run`` in ``framework`` ("torch", "keras", "tf1" -- which also runs the bert
    convention through BERT's published optimizer -- or "optax")."""
    if framework == "torch":
        from refopt.oracle.adapters.torch_adapter import run_torch

        return run_torch(run, **kwargs)
    if framework == "keras":
        from refopt.oracle.adapters.keras_adapter import run_keras

        return run_keras(run, **kwargs)
    if framework == "tf1":
        if run.convention == "bert":
            from refopt.oracle.adapters.bert_adapter import run_bert

            return run_bert(run, **kwargs)
        from refopt.oracle.adapters.tf1_adapter import run_tf1

        return run_tf1(run, **kwargs)
    if framework == "optax":
        from refopt.oracle.adapters.optax_adapter import run_optax

        return run_optax(run, **kwargs)
    raise ValueError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
