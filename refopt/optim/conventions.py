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

Each convention's :class:`Convention` (``CONVENTION[name]``) holds its policies -- what
its framework validates and when, quoted in the messages -- which the optimizer front
asks instead of branching on names:

* ``check``: the constructor's hyperparameter checks (torch: ``0 <= lr``, ``0 <= eps``,
  ``0 <= beta < 1``, ``0 <= weight_decay``, ``0 <= momentum``, Nesterov needs momentum
  and zero dampening; Keras: SGD's ``momentum`` in [0, 1]; TF1, optax and BERT check
  none), applied when the optimizer is built, to parameter groups too;
* ``empty``: how the framework refuses an empty parameter list (refopt refuses it in
  every convention: an optimizer with nothing to train);
* ``no_gradients``: the refusal of an update where every gradient is None (Keras and
  TF1 raise; torch skips every variable; optax has no missing gradients -- JAX gives
  zeros and the count advances -- and BERT's loop skips them);
* ``clip_mixed_dtypes``: the refusal of global-norm clipping over float32 and float64
  gradients (TensorFlow's ops refuse; torch's ``clip_grad_norm_`` and optax handle it);
* ``schedule_value``: how a learning-rate schedule is evaluated (optax calls its
  schedules on an int32 count, in float32 arithmetic -- see
  :mod:`refopt.optim.schedules`; the others use the value in double).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["CONVENTIONS", "CONVENTION", "Convention", "DEFAULTS", "check_convention", "scalar", "via_float32"]

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


def _number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _refusal(value: str, rule: str, quote: str) -> str:
    return f"{value}: {rule} ({quote!r})"


def _check_torch(rule: str, h: Mapping[str, Any]) -> str | None:
    """torch.optim's constructor checks, in its order (torch/optim/adam.py, adamw.py, sgd.py)."""
    name = f"torch.optim.{rule_title(rule)}"
    lr = h.get("learning_rate")
    if _number(lr) and not 0.0 <= lr:
        return _refusal(f"learning_rate={lr!r}", f"{name} requires 0 <= lr", f"Invalid learning rate: {float(lr)}")
    wd = h.get("weight_decay", 0.0)
    bad_wd = _refusal(
        f"weight_decay={wd!r}", f"{name} requires 0 <= weight_decay", f"Invalid weight_decay value: {float(wd)}"
    )
    if rule == "sgd":
        m, damp = h.get("momentum", 0.0), h.get("dampening", 0.0)
        if not 0.0 <= m:
            return _refusal(f"momentum={m!r}", f"{name} requires 0 <= momentum", f"Invalid momentum value: {float(m)}")
        if not 0.0 <= wd:
            return bad_wd
        if h.get("nesterov") and (m <= 0 or damp != 0):
            return _refusal(
                f"nesterov=True with momentum={m!r}, dampening={damp!r}",
                f"{name} requires momentum > 0 and dampening = 0",
                "Nesterov momentum requires a momentum and zero dampening",
            )
        return None
    eps = h.get("epsilon")
    if not 0.0 <= eps:
        return _refusal(f"epsilon={eps!r}", f"{name} requires 0 <= eps", f"Invalid epsilon value: {float(eps)}")
    for i, b in enumerate((h.get("beta1"), h.get("beta2"))):
        if not 0.0 <= b < 1.0:
            return _refusal(
                f"beta{i + 1}={b!r}",
                f"{name} requires 0 <= beta < 1",
                f"Invalid beta parameter at index {i}: {float(b)}",
            )
    if not 0.0 <= wd:
        return bad_wd
    return None


def _check_keras(rule: str, h: Mapping[str, Any]) -> str | None:
    """Keras 3 checks only SGD's momentum (keras/src/optimizers/sgd.py); Adam and AdamW
    accept any betas, epsilon and learning rate."""
    m = h.get("momentum", 0.0)
    if rule == "sgd" and (m < 0 or m > 1):
        return _refusal(
            f"momentum={m!r}",
            "keras.optimizers.SGD requires 0 <= momentum <= 1",
            "`momentum` must be a float between [0, 1].",
        )
    return None


def _check_nothing(rule: str, h: Mapping[str, Any]) -> str | None:
    return None


def _schedule_in_double(schedule: Callable[[int], float], step: int, x64: bool) -> Any:
    return schedule(step)  # the optimizer checks the value and takes it as a double


def _schedule_optax(schedule: Callable[[int], float], step: int, x64: bool) -> Any:
    """optax calls a schedule on its int32 count: refopt's schedules that are optax's
    reproduce that evaluation (``optax_value``); any other callable is used in double."""
    optax_value = getattr(schedule, "optax_value", None)
    return optax_value(step, x64) if optax_value is not None else schedule(step)


_TF_MIXED = (
    "TensorFlow's ops take one dtype ('cannot compute Pack as input #1(zero-based) was expected to be a float "
    "tensor but is a double tensor')"
)


@dataclasses.dataclass(frozen=True)
class Convention:
    """One framework's policies, asked by the optimizer front (the arithmetic itself is in
    the rule modules, adam.py and sgd.py)."""

    name: str
    framework: str
    check: Callable[[str, Mapping[str, Any]], str | None]
    empty: str | None = None
    no_gradients: str | None = None
    clip_mixed_dtypes: str | None = None
    schedule_value: Callable[[Callable[[int], float], int, bool], Any] = _schedule_in_double


CONVENTION: dict[str, Convention] = {
    "torch": Convention("torch", "torch.optim", _check_torch, empty="optimizer got an empty parameter list"),
    "keras": Convention(
        "keras",
        "Keras",
        _check_keras,
        no_gradients="No gradients provided for any variable.",
        clip_mixed_dtypes=_TF_MIXED,
    ),
    "tf1": Convention(
        "tf1",
        "tf.compat.v1.train",
        _check_nothing,
        empty="No variables provided.",
        no_gradients="No gradients provided for any variable",
        clip_mixed_dtypes=_TF_MIXED,
    ),
    "optax": Convention("optax", "optax", _check_nothing, schedule_value=_schedule_optax),
    "bert": Convention("bert", "BERT's AdamWeightDecayOptimizer", _check_nothing, clip_mixed_dtypes=_TF_MIXED),
}
