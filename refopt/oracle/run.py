"""A fully materialised optimizer run -- what refopt and every framework adapter consume --
and :class:`Trajectory`, what they all return.

A :class:`Run` holds concrete arrays: initial values, per-step gradients (``None``: no
gradient that step), per-step learning rates, optional per-step masks.  Scenarios
(:mod:`refopt.oracle.scenarios`) describe runs declaratively and materialise into one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Run", "Trajectory", "run_refopt", "HYPER_NAMES"]

HYPER_NAMES = (
    "beta1",
    "beta2",
    "epsilon",
    "weight_decay",
    "amsgrad",
    "maximize",
    "eps_root",
    "momentum",
    "dampening",
    "nesterov",
)


@dataclasses.dataclass
class Run:
    """``rule`` in sgd/adam/adamw; ``hyper`` holds only the options given (the rest take
    each convention's defaults); ``clip`` is ``{"global_clipnorm"|"clipnorm"|"clipvalue": c}``."""

    rule: str
    convention: str
    dtype: str
    variables: dict[str, np.ndarray]
    grads: list[dict[str, np.ndarray | None]]
    lrs: list[float]
    hyper: dict[str, Any] = dataclasses.field(default_factory=dict)
    lr_multipliers: dict[str, float] = dataclasses.field(default_factory=dict)
    exclude_from_weight_decay: list[str] | None = None
    clip: dict[str, float] = dataclasses.field(default_factory=dict)
    masks: list[dict[str, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        if len(self.grads) != len(self.lrs):
            raise ValueError(f"Run: {len(self.grads)} gradient steps but {len(self.lrs)} learning rates")
        unknown = set(self.hyper) - set(HYPER_NAMES)
        if unknown:
            raise ValueError(f"Run: unknown hyperparameters {sorted(unknown)}")
        for name, v in self.variables.items():
            if v.dtype != np.dtype(self.dtype):
                raise TypeError(f"Run: variable {name!r} is {v.dtype}, the run is {self.dtype}")

    @property
    def steps(self) -> int:
        return len(self.grads)

    def multiplier(self, name: str) -> float:
        import re

        return next((f for pat, f in self.lr_multipliers.items() if re.search(pat, name)), 1.0)


@dataclasses.dataclass
class Trajectory:
    """Per-step record of a run.  Arrays are stacked over steps:
    ``params[name]`` has shape ``(steps + 1, *shape)`` (the initial value first),
    ``slots[name][slot]`` and ``grads[name]`` ``(steps, *shape)`` (slots after each step;
    a missing gradient is stored as zeros with ``grad_present[name][step]`` False),
    ``lrs`` ``(steps,)``.  ``meta`` says who produced it."""

    params: dict[str, np.ndarray]
    slots: dict[str, dict[str, np.ndarray]]
    grads: dict[str, np.ndarray]
    grad_present: dict[str, np.ndarray]
    lrs: np.ndarray
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.lrs.shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.params)


class Recorder:
    """Collects a trajectory step by step (used by refopt and every adapter)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.params = {n: [np.array(v)] for n, v in run.variables.items()}
        self.slots: dict[str, dict[str, list]] = {n: {} for n in run.variables}

    def step(self, values: Mapping[str, np.ndarray], slots: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        k = len(self.params[next(iter(self.params))]) - 1
        for n in self.params:
            self.params[n].append(np.array(values[n]))
            for s, a in slots.get(n, {}).items():
                lst = self.slots[n].setdefault(s, [])
                while len(lst) < k:  # a slot that appears late (torch's momentum buffer)
                    lst.append(np.zeros_like(self.run.variables[n]))
                lst.append(np.array(a))

    def finish(self, meta: dict[str, Any]) -> Trajectory:
        run = self.run
        grads = {
            n: np.stack([np.zeros_like(v) if s[n] is None else s[n] for s in run.grads])
            if run.steps
            else np.zeros((0,) + v.shape, v.dtype)
            for n, v in run.variables.items()
        }
        present = {n: np.array([s[n] is not None for s in run.grads], dtype=bool) for n in run.variables}
        return Trajectory(
            params={n: np.stack(v) for n, v in self.params.items()},
            slots={n: {s: np.stack(v) for s, v in d.items()} for n, d in self.slots.items()},
            grads=grads,
            grad_present=present,
            lrs=np.asarray(run.lrs, dtype=np.float64),
            meta={"rule": run.rule, "convention": run.convention, "dtype": run.dtype, **meta},
        )


def make_optimizer(run: Run, variables: list[Any]) -> Any:
    """The refopt optimizer a run describes, bound to ``variables`` (schedule = run.lrs)."""
    from refopt import optim

    cls = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}[run.rule]
    lrs = list(run.lrs)
    kwargs: dict[str, Any] = dict(run.hyper)
    if run.exclude_from_weight_decay is not None:
        kwargs["exclude_from_weight_decay"] = run.exclude_from_weight_decay
    return cls(
        variables,
        learning_rate=_StepList(lrs),
        convention=run.convention,
        lr_multipliers=run.lr_multipliers or None,
        **run.clip,
        **kwargs,
    )


class _StepList:
    """A schedule that replays given per-step learning rates."""

    def __init__(self, lrs: list[float]) -> None:
        self.lrs = lrs

    def __call__(self, step: int) -> float:
        return self.lrs[step]

    def __repr__(self) -> str:
        return f"per-step list of {len(self.lrs)} rates"


def run_refopt(run: Run, backend_name: str = "numpy") -> Trajectory:
    """Run ``run`` with refopt's optimizer on ``backend_name``."""
    import refopt as rf
    from refopt import backend

    with rf.use_backend(backend_name):
        variables = [rf.Variable(v, name=n) for n, v in run.variables.items()]
    opt = make_optimizer(run, variables)
    rec = Recorder(run)
    by_name = {v.name: v for v in variables}
    for k, step_grads in enumerate(run.grads):
        pairs = [
            (None if step_grads[n] is None else backend.move(step_grads[n], backend_name), by_name[n])
            for n in run.variables
        ]
        masks = None
        if run.masks is not None and run.masks[k]:
            masks = {by_name[n]: backend.move(m, backend_name) for n, m in run.masks[k].items()}
        opt.apply_gradients(pairs, masks=masks)
        slots = {}
        for n, v in by_name.items():
            slots[n] = {}
            for s in opt.slot_names():
                try:
                    slots[n][s] = opt.get_slot(v, s).numpy()
                except KeyError:
                    pass
        rec.step({n: v.numpy() for n, v in by_name.items()}, slots)
    import refopt

    return rec.finish({"framework": "refopt", "version": refopt.__version__, "backend": backend_name})
