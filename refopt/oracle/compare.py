"""Comparing trajectories: where two runs diverge, per step and per variable.

Everything a trajectory records is compared, and every difference reported:

* its structure -- variables held by one trajectory only, different step counts (the
  common steps are still compared), a variable of another dtype or shape, a slot one
  trajectory has and the other lacks, a gradient present in one and missing in the
  other at some step -- as one line each in :attr:`Comparison.differences`;
* its numbers, per step and variable: the largest absolute and relative error and the
  largest ULP distance of the parameters; the largest ULP distance of each slot both
  trajectories have, of the gradients (where both have one) and of the learning rates.

Relative error is ``|a - b| / max(|b|, tiny)``; ULPs count representable floats between
the values (``refopt.testing.ulp_distance``).  Two trajectories are *identical* only
when there is no structural difference and every number is bit for bit the same."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from refopt.oracle.trajectory import Trajectory
from refopt.testing import ulp_distance

__all__ = ["Comparison", "compare"]


@dataclasses.dataclass
class Comparison:
    """``names``: the variables both trajectories hold (with the same dtype and shape);
    ``params[name]``: per-step arrays (steps + 1,) of ``max_abs``, ``max_rel``,
    ``max_ulp``; ``slots[name][slot]``: per-step ``max_ulp`` (steps,) of the slots both
    have; ``grads[name]``: per-step ``max_ulp`` of the gradients (0 where either is
    missing; a presence mismatch is a difference); ``lrs``: per-step ULP distance of the
    learning rates; ``differences``: the structural differences, one line each; ``steps``:
    the two step counts (the first ``min`` are compared)."""

    names: list[str]
    params: dict[str, dict[str, np.ndarray]]
    slots: dict[str, dict[str, np.ndarray]]
    grads: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    lrs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    differences: list[str] = dataclasses.field(default_factory=list)
    steps: tuple[int, int] = (0, 0)

    @property
    def max_ulp(self) -> float:
        """The largest ULP distance of the parameters and slots (the optimizer's output)."""
        values = [float(d["max_ulp"].max(initial=0.0)) for d in self.params.values()]
        values += [float(a.max(initial=0.0)) for s in self.slots.values() for a in s.values()]
        return max(values, default=0.0)

    @property
    def max_abs(self) -> float:
        return max((float(d["max_abs"].max(initial=0.0)) for d in self.params.values()), default=0.0)

    @property
    def grads_max_ulp(self) -> float:
        return max((float(a.max(initial=0.0)) for a in self.grads.values()), default=0.0)

    @property
    def lrs_max_ulp(self) -> float:
        return float(self.lrs.max(initial=0.0))

    @property
    def identical(self) -> bool:
        """No structural difference, and every parameter, slot, gradient and learning
        rate bit for bit the same."""
        return not self.differences and self.max_ulp == 0 and self.grads_max_ulp == 0 and self.lrs_max_ulp == 0

    def first_divergence(self) -> tuple[int, str] | None:
        """The first (step, variable) whose parameters differ at all, or None."""
        steps = len(next(iter(self.params.values()))["max_ulp"]) if self.params else 0
        for k in range(steps):
            for n in self.names:
                if self.params[n]["max_ulp"][k] > 0:
                    return k, n
        return None

    def within(self, tolerance: dict[str, float]) -> bool:
        """True when the structures match, the inputs (gradients, learning rates) are the
        same, and every parameter and slot meets ``tolerance`` (max_ulp and/or max_abs;
        meeting either one is enough when both are given)."""
        if self.differences or self.grads_max_ulp or self.lrs_max_ulp:
            return False
        ok_ulp = "max_ulp" in tolerance and self.max_ulp <= tolerance["max_ulp"]
        ok_abs = "max_abs" in tolerance and self.max_abs <= tolerance["max_abs"]
        return ok_ulp or ok_abs

    def to_dict(self) -> dict[str, Any]:
        fd = self.first_divergence()
        return {
            "identical": self.identical,
            "differences": list(self.differences),
            "steps": list(self.steps),
            "max_ulp": self.max_ulp,
            "max_abs": self.max_abs,
            "grads_max_ulp": self.grads_max_ulp,
            "lrs_max_ulp": self.lrs_max_ulp,
            "first_divergence": None if fd is None else {"step": fd[0], "variable": fd[1]},
            "per_variable": {
                n: {
                    "max_ulp": float(self.params[n]["max_ulp"].max(initial=0.0)),
                    "max_abs": float(self.params[n]["max_abs"].max(initial=0.0)),
                    "max_rel": float(self.params[n]["max_rel"].max(initial=0.0)),
                    "slots_max_ulp": {s: float(a.max(initial=0.0)) for s, a in self.slots.get(n, {}).items()},
                    "grads_max_ulp": float(self.grads[n].max(initial=0.0)) if n in self.grads else 0.0,
                }
                for n in self.names
            },
        }

    def summary(self) -> str:
        """A short human-readable report: every difference, then the numbers."""
        if self.identical:
            return "identical: every parameter, slot, gradient and learning rate, every step, bit for bit"
        lines = [f"differs: {d}" for d in self.differences]
        fd = self.first_divergence()
        if fd is not None:
            lines.append(f"first divergence at step {fd[0]} in {fd[1]!r}")
        lines.append(f"max {self.max_ulp:g} ULP, max absolute error {self.max_abs:.3g}")
        if self.grads_max_ulp:
            lines.append(f"the recorded gradients differ: max {self.grads_max_ulp:g} ULP")
        if self.lrs_max_ulp:
            first = int(np.argmax(self.lrs > 0))
            lines.append(f"the learning rates differ: max {self.lrs_max_ulp:g} ULP, first at step {first}")
        for n, d in self.to_dict()["per_variable"].items():
            slots = ", ".join(f"{s} {u:g} ULP" for s, u in d["slots_max_ulp"].items())
            lines.append(
                f"  {n}: {d['max_ulp']:g} ULP, abs {d['max_abs']:.3g}, rel {d['max_rel']:.3g}"
                + (f" (slots: {slots})" if slots else "")
                + (f", gradients {d['grads_max_ulp']:g} ULP" if d["grads_max_ulp"] else "")
            )
        return "\n".join(lines)


def _per_step_max(x: np.ndarray) -> np.ndarray:
    """``x.max()`` over every axis but the first (0 for empty rows), for any step count."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:])).max(axis=1, initial=0.0)


def _stats(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    scale = np.maximum(np.abs(b.astype(np.float64)), np.finfo(b.dtype).tiny)
    with np.errstate(invalid="ignore"):
        return {
            "max_abs": _per_step_max(diff),
            "max_rel": _per_step_max(diff / scale),
            "max_ulp": _per_step_max(ulp_distance(a, b)),
        }


def _spec(x: np.ndarray) -> str:
    return f"{x.dtype}{tuple(x.shape[1:])}"


def compare(a: Trajectory, b: Trajectory) -> Comparison:
    """Compare two trajectories: every structural difference and, over the steps and
    variables both hold, every number (see the module docstring).  Never raises for
    trajectories that differ; ``Comparison.identical`` says whether they do."""
    differences = []
    only_a = [n for n in a.names if n not in b.params]
    only_b = [n for n in b.names if n not in a.params]
    if only_a:
        differences.append(f"variables only in the first trajectory: {only_a}")
    if only_b:
        differences.append(f"variables only in the second trajectory: {only_b}")
    k = min(a.steps, b.steps)
    if a.steps != b.steps:
        differences.append(f"step counts {a.steps} and {b.steps} (the first {k} compared)")
    params, slots, grads, names = {}, {}, {}, []
    for n in a.names:
        if n not in b.params:
            continue
        pa, pb = a.params[n], b.params[n]
        if pa.dtype != pb.dtype or pa.shape[1:] != pb.shape[1:]:
            differences.append(f"variable {n!r} is {_spec(pa)} in the first trajectory, {_spec(pb)} in the second")
            continue
        names.append(n)
        params[n] = _stats(pa[: k + 1], pb[: k + 1])
        sa, sb = a.slots.get(n, {}), b.slots.get(n, {})
        for s in sa:
            if s not in sb:
                differences.append(f"slot {s!r} of {n!r} only in the first trajectory")
        for s in sb:
            if s not in sa:
                differences.append(f"slot {s!r} of {n!r} only in the second trajectory")
        slots[n] = {s: _per_step_max(ulp_distance(sa[s][:k], sb[s][:k])) for s in sa if s in sb}
        ga, gb = a.grad_present[n][:k], b.grad_present[n][:k]
        mismatch = np.flatnonzero(ga != gb)
        if mismatch.size:
            differences.append(
                f"gradient of {n!r} present in one trajectory only, at steps {mismatch.tolist()[:10]}"
                + (f" and {mismatch.size - 10} more" if mismatch.size > 10 else "")
            )
        both = (ga & gb).reshape((k,) + (1,) * (pa.ndim - 1))
        grads[n] = _per_step_max(np.where(both, ulp_distance(a.grads[n][:k], b.grads[n][:k]), 0.0))
    lrs = ulp_distance(np.asarray(a.lrs, np.float64)[:k], np.asarray(b.lrs, np.float64)[:k])
    return Comparison(names, params, slots, grads, lrs, differences, (a.steps, b.steps))
