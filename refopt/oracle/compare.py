"""Comparing trajectories: where two runs diverge, per step and per variable.

For every step and variable: the largest absolute and relative error and the largest
ULP distance of the parameters (and of each slot both trajectories have).  Relative
error is ``|a - b| / max(|b|, tiny)``; ULPs count representable floats between the
values (``refopt.testing.ulp_distance``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from refopt.oracle.trajectory import Trajectory
from refopt.testing import ulp_distance

__all__ = ["Comparison", "compare"]


@dataclasses.dataclass
class Comparison:
    """``params[name]``: per-step arrays (steps + 1,) of ``max_abs``, ``max_rel``, ``max_ulp``;
    ``slots[name][slot]``: per-step ``max_ulp`` (steps,)."""

    names: list[str]
    params: dict[str, dict[str, np.ndarray]]
    slots: dict[str, dict[str, np.ndarray]]

    @property
    def max_ulp(self) -> float:
        values = [float(d["max_ulp"].max()) for d in self.params.values() if d["max_ulp"].size]
        values += [float(a.max()) for s in self.slots.values() for a in s.values() if a.size]
        return max(values, default=0.0)

    @property
    def max_abs(self) -> float:
        return max((float(d["max_abs"].max()) for d in self.params.values() if d["max_abs"].size), default=0.0)

    @property
    def identical(self) -> bool:
        return self.max_ulp == 0.0

    def first_divergence(self) -> tuple[int, str] | None:
        """The first (step, variable) whose parameters differ at all, or None."""
        steps = len(next(iter(self.params.values()))["max_ulp"]) if self.params else 0
        for k in range(steps):
            for n in self.names:
                if self.params[n]["max_ulp"][k] > 0:
                    return k, n
        return None

    def within(self, tolerance: dict[str, float]) -> bool:
        """True when every parameter meets ``tolerance`` (max_ulp and/or max_abs; meeting
        either one is enough when both are given)."""
        ok_ulp = "max_ulp" in tolerance and self.max_ulp <= tolerance["max_ulp"]
        ok_abs = "max_abs" in tolerance and self.max_abs <= tolerance["max_abs"]
        return ok_ulp or ok_abs

    def to_dict(self) -> dict[str, Any]:
        fd = self.first_divergence()
        return {
            "identical": self.identical,
            "max_ulp": self.max_ulp,
            "max_abs": self.max_abs,
            "first_divergence": None if fd is None else {"step": fd[0], "variable": fd[1]},
            "per_variable": {
                n: {
                    "max_ulp": float(self.params[n]["max_ulp"].max(initial=0.0)),
                    "max_abs": float(self.params[n]["max_abs"].max(initial=0.0)),
                    "max_rel": float(self.params[n]["max_rel"].max(initial=0.0)),
                    "slots_max_ulp": {s: float(a.max(initial=0.0)) for s, a in self.slots.get(n, {}).items()},
                }
                for n in self.names
            },
        }

    def summary(self) -> str:
        """A short human-readable report."""
        fd = self.first_divergence()
        if fd is None and self.max_ulp == 0:
            return "identical: every parameter and slot, every step, bit for bit"
        lines = []
        if fd is not None:
            lines.append(f"first divergence at step {fd[0]} in {fd[1]!r}")
        lines.append(f"max {self.max_ulp:g} ULP, max absolute error {self.max_abs:.3g}")
        for n, d in self.to_dict()["per_variable"].items():
            slots = ", ".join(f"{s} {u:g} ULP" for s, u in d["slots_max_ulp"].items())
            lines.append(
                f"  {n}: {d['max_ulp']:g} ULP, abs {d['max_abs']:.3g}, rel {d['max_rel']:.3g}"
                + (f" (slots: {slots})" if slots else "")
            )
        return "\n".join(lines)


def _stats(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    k = a.shape[0]
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).reshape(k, -1)
    scale = np.maximum(np.abs(b.astype(np.float64)), np.finfo(b.dtype).tiny).reshape(k, -1)
    ulps = ulp_distance(a, b).reshape(k, -1)
    empty = diff.shape[1] == 0
    return {
        "max_abs": np.zeros(k) if empty else diff.max(axis=1),
        "max_rel": np.zeros(k) if empty else (diff / scale).max(axis=1),
        "max_ulp": np.zeros(k) if empty else ulps.max(axis=1),
    }


def compare(a: Trajectory, b: Trajectory) -> Comparison:
    """Compare two trajectories of the same variables, steps and dtypes."""
    if a.names != b.names and set(a.names) != set(b.names):
        raise ValueError(f"the trajectories hold different variables: {a.names} vs {b.names}")
    if a.steps != b.steps:
        raise ValueError(f"the trajectories have {a.steps} and {b.steps} steps")
    params, slots = {}, {}
    for n in a.names:
        if a.params[n].dtype != b.params[n].dtype or a.params[n].shape != b.params[n].shape:
            raise ValueError(
                f"variable {n!r}: {a.params[n].dtype}{a.params[n].shape[1:]} vs "
                f"{b.params[n].dtype}{b.params[n].shape[1:]}"
            )
        params[n] = _stats(a.params[n], b.params[n])
        slots[n] = {
            s: ulp_distance(v, b.slots[n][s]).reshape(v.shape[0], -1).max(axis=1, initial=0.0)
            for s, v in a.slots.get(n, {}).items()
            if s in b.slots.get(n, {})
        }
    return Comparison(list(a.names), params, slots)
