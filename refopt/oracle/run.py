"""A fully materialised optimizer run -- what refopt and every framework adapter consume;
they all return a :class:`~refopt.oracle.trajectory.Trajectory`.

A :class:`Run` holds concrete arrays: initial values, per-step gradients (``None``: no
gradient that step), per-step learning rates, optional per-step masks.  Scenarios
(:mod:`refopt.oracle.scenarios`) describe runs declaratively and materialise into one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from refopt.oracle.trajectory import Recorder, Trajectory

__all__ = ["Run", "run_refopt", "make_optimizer", "HYPER_NAMES"]

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
        if self.rule not in ("sgd", "adam", "adamw"):
            raise ValueError(f"Run: rule must be sgd, adam or adamw, got {self.rule!r}")
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

    def save(self, path: Any) -> Any:
        """Write the run (arrays and settings) as a refopt array file of kind refopt.run."""
        from refopt.io import write_arrays

        arrays = {f"init/{n}": v for n, v in self.variables.items()}
        for k, g in enumerate(self.grads):
            for n, a in g.items():
                if a is not None:
                    arrays[f"grad/{k}/{n}"] = a
        for k, m in enumerate(self.masks or []):
            for n, a in m.items():
                arrays[f"mask/{k}/{n}"] = a
        arrays["lrs"] = np.asarray(self.lrs, dtype=np.float64)
        extra = {
            "rule": self.rule,
            "convention": self.convention,
            "dtype": self.dtype,
            "names": list(self.variables),
            "hyper": self.hyper,
            "lr_multipliers": self.lr_multipliers,
            "exclude_from_weight_decay": self.exclude_from_weight_decay,
            "clip": self.clip,
            "steps": self.steps,
            "masked": self.masks is not None,
        }
        return write_arrays(path, arrays, "refopt.run", 1, extra=extra)

    @staticmethod
    def load(path: Any) -> Run:
        """Read a file written by :meth:`save`; every field and array is checked first
        (``refopt.io.FileFormatError`` names the file and the problem)."""
        from refopt.io import FileFormatError, check_fields, read_arrays

        arrays, meta = read_arrays(path, "refopt.run", (1,))
        where = f"refopt.run file {str(path)!r}"
        fields = ("rule", "convention", "dtype", "names", "hyper", "lr_multipliers", "exclude_from_weight_decay")
        fields += ("clip", "steps", "masked")
        check_fields(meta, where, fields)
        names, steps, masked = meta["names"], meta["steps"], meta["masked"]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)):
            raise FileFormatError(f"{where}: 'names' must be a list of distinct strings")
        if type(steps) is not int or steps < 0 or not isinstance(masked, bool):
            raise FileFormatError(f"{where}: 'steps' must be an int >= 0 and 'masked' a bool")
        allowed = {"lrs"} | {f"init/{n}" for n in names}
        allowed |= {f"{kind}/{k}/{n}" for kind in ("grad", "mask") for k in range(steps) for n in names}
        missing = [k for k in ["lrs", *(f"init/{n}" for n in names)] if k not in arrays]
        extra = [k for k in arrays if k not in allowed or (k.startswith("mask/") and not masked)]
        if missing or extra:
            raise FileFormatError(f"{where}: its arrays do not make a run (missing {missing}, unexpected {extra})")
        lrs = arrays["lrs"]
        if lrs.shape != (steps,) or lrs.dtype != np.float64 or not np.all(np.isfinite(lrs) & (lrs >= 0)):
            raise FileFormatError(f"{where}: 'lrs' must hold {steps} finite float64 learning rates >= 0")
        for key, a in arrays.items():
            if key == "lrs":
                continue
            n = key.split("/", 2)[-1] if not key.startswith("init/") else key[5:]
            want = arrays[f"init/{n}"]
            dtype = np.bool_ if key.startswith("mask/") else want.dtype
            if a.shape != want.shape or a.dtype != dtype:
                raise FileFormatError(f"{where}: {key!r} is {a.dtype}{a.shape}, expected {np.dtype(dtype)}{want.shape}")
        grads = [{n: arrays.get(f"grad/{k}/{n}") for n in names} for k in range(steps)]
        masks = None
        if masked:
            masks = [{n: arrays[f"mask/{k}/{n}"] for n in names if f"mask/{k}/{n}" in arrays} for k in range(steps)]
        try:
            return Run(
                meta["rule"],
                meta["convention"],
                meta["dtype"],
                {n: arrays[f"init/{n}"] for n in names},
                grads,
                [float(x) for x in lrs],
                meta["hyper"],
                meta["lr_multipliers"],
                meta["exclude_from_weight_decay"],
                meta["clip"],
                masks,
            )
        except (TypeError, ValueError) as exc:
            raise FileFormatError(f"{where}: {exc}") from None

    def multiplier(self, name: str) -> float:
        import re

        return next((f for pat, f in self.lr_multipliers.items() if re.search(pat, name)), 1.0)


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


def collect_slots(opt: Any, variables: list[Any]) -> dict[str, dict[str, np.ndarray]]:
    """Every existing slot of every variable, by name (torch's SGD buffer may not exist yet)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for v in variables:
        out[v.name] = {}
        for s in opt.slot_names():
            try:
                out[v.name][s] = opt.get_slot(v, s).numpy()
            except KeyError:
                pass
    return out


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
        slots = collect_slots(opt, list(by_name.values()))
        rec.step({n: v.numpy() for n, v in by_name.items()}, slots)
    return rec.finish(refopt_meta(backend_name))


def refopt_meta(backend_name: str) -> dict[str, Any]:
    """Who produced a refopt trajectory."""
    import refopt

    return {"framework": "refopt", "version": refopt.__version__, "backend": backend_name}
