"""Trajectories: what a run produced, step by step -- and their file format.

A trajectory file is a refopt array file (``refopt.io``: ``.npz``, no pickle, JSON
metadata, written atomically) of kind ``refopt.trajectory``, schema version 1:

* ``params/<name>``: ``(steps + 1, *shape)`` -- the initial value, then the value after
  each step;
* ``grads/<name>``: ``(steps, *shape)`` and ``grad_present/<name>``: ``(steps,)`` bools
  (a missing gradient is stored as zeros, marked False);
* ``slots/<name>/<slot>``: ``(steps, *shape)`` -- the slot after each step;
* ``lrs``: ``(steps,)`` float64 learning rates;
* metadata: ``names``, ``slots`` (per name), ``meta`` (who produced it: framework and
  version, path, backend...), ``scenario`` (its description, when it came from one),
  ``machine`` (CPU and GPU names, or null), plus refopt's version and the schema.

It reads with NumPy alone, in any framework's test suite::

    import json, numpy as np
    with np.load("golden.npz", allow_pickle=False) as f:
        meta = json.loads(f["__refopt__"].tobytes())
        params = {n: f[f"params/{n}"] for n in meta["names"]}   # (steps + 1, *shape)
        grads = {n: f[f"grads/{n}"] for n in meta["names"]}; lrs = f["lrs"]
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from refopt.io import FileFormatError, check_fields, read_arrays, write_arrays

__all__ = ["Trajectory", "Recorder", "save", "load", "machine_info", "KIND", "SCHEMA"]

KIND = "refopt.trajectory"
SCHEMA = 1


@dataclasses.dataclass
class Trajectory:
    """Per-step record of a run.  Arrays are stacked over steps:
    ``params[name]`` has shape ``(steps + 1, *shape)`` (the initial value first),
    ``slots[name][slot]`` and ``grads[name]`` ``(steps, *shape)`` (slots after each step;
    a missing gradient is stored as zeros with ``grad_present[name][step]`` False),
    ``lrs`` ``(steps,)``.  ``meta`` says who produced it; ``scenario`` what was run."""

    params: dict[str, np.ndarray]
    slots: dict[str, dict[str, np.ndarray]]
    grads: dict[str, np.ndarray]
    grad_present: dict[str, np.ndarray]
    lrs: np.ndarray
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    scenario: dict[str, Any] | None = None

    @property
    def steps(self) -> int:
        return int(self.lrs.shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.params)

    def save(self, path: str | Path, machine: bool = True) -> Path:
        """Write this trajectory (see the module docstring); ``machine=False`` leaves the
        CPU/GPU names out, so that the file's bytes depend on its content alone."""
        return save(self, path, machine=machine)

    @staticmethod
    def load(path: str | Path) -> Trajectory:
        return load(path)


class Recorder:
    """Collects a trajectory step by step (used by refopt and every adapter)."""

    def __init__(self, run: Any) -> None:
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


def machine_info() -> dict[str, Any]:
    """The CPU (and GPU, when CuPy sees one) a trajectory was computed on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    from refopt import backend

    if backend.cupy_available():
        import cupy

        gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return {"cpu": cpu, "gpu": gpu, "platform": platform.platform()}


def save(traj: Trajectory, path: str | Path, machine: bool = True) -> Path:
    """Write ``traj`` as a refopt trajectory file."""
    arrays: dict[str, np.ndarray] = {"lrs": np.asarray(traj.lrs, dtype=np.float64)}
    for n in traj.names:
        arrays[f"params/{n}"] = traj.params[n]
        arrays[f"grads/{n}"] = traj.grads[n]
        arrays[f"grad_present/{n}"] = traj.grad_present[n]
        for s, a in traj.slots.get(n, {}).items():
            arrays[f"slots/{n}/{s}"] = a
    extra = {
        "names": traj.names,
        "slots": {n: list(traj.slots.get(n, {})) for n in traj.names},
        "meta": traj.meta,
        "scenario": traj.scenario,
        "machine": machine_info() if machine else None,
        "numpy_version": np.__version__,
    }
    return write_arrays(path, arrays, KIND, SCHEMA, extra=extra)


def load(path: str | Path) -> Trajectory:
    """Read a trajectory file; refuses pickles, corrupted or truncated files, other kinds,
    unknown schema versions, and files whose arrays do not make a trajectory -- a missing
    or extra array or field, or one whose shape, dtype or number of steps does not fit
    (``refopt.io.FileFormatError``, naming the file and the problem)."""
    arrays, meta = read_arrays(path, KIND, (SCHEMA,))
    where = f"{KIND} file {str(path)!r}"
    return _assemble(arrays, meta, where)


_META_FIELDS = ("names", "slots", "meta", "scenario", "machine", "numpy_version")


def _assemble(arrays: dict[str, np.ndarray], meta: dict[str, Any], where: str) -> Trajectory:
    """A trajectory from a file's checked arrays and metadata, or a FileFormatError."""

    def bad(problem: str) -> FileFormatError:
        return FileFormatError(f"{where}: {problem}")

    check_fields(meta, where, _META_FIELDS)
    names, slot_names = meta["names"], meta["slots"]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)):
        raise bad("'names' must be a list of distinct strings")
    if not (
        isinstance(slot_names, dict)
        and list(slot_names) == names
        and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v)
            for v in slot_names.values()
        )
    ):
        raise bad("'slots' must list each variable's slot names, in the order of 'names'")
    if not isinstance(meta["meta"], dict) or not (meta["scenario"] is None or isinstance(meta["scenario"], dict)):
        raise bad("'meta' must be an object and 'scenario' an object or null")
    expected = ["lrs"]
    for n in names:
        expected += [f"params/{n}", f"grads/{n}", f"grad_present/{n}"]
        expected += [f"slots/{n}/{s}" for s in slot_names[n]]
    missing = [k for k in expected if k not in arrays]
    extra = [k for k in arrays if k not in set(expected)]
    if missing or extra:
        raise bad(f"its arrays do not make a trajectory (missing {missing}, unexpected {extra})")
    lrs = arrays["lrs"]
    if lrs.dtype != np.float64 or lrs.ndim != 1:
        raise bad(f"'lrs' must be float64 of shape (steps,), got {lrs.dtype}{lrs.shape}")
    if not np.all(np.isfinite(lrs) & (lrs >= 0)):
        raise bad("'lrs' holds a negative or non-finite learning rate")
    steps = lrs.shape[0]
    for n in names:
        p, g, present = arrays[f"params/{n}"], arrays[f"grads/{n}"], arrays[f"grad_present/{n}"]
        if p.dtype not in (np.float32, np.float64) or p.ndim < 1 or p.shape[0] != steps + 1:
            raise bad(f"'params/{n}' must be float32 or float64 of shape ({steps + 1}, ...), got {p.dtype}{p.shape}")
        shape = p.shape[1:]
        if g.dtype != p.dtype or g.shape != (steps, *shape):
            raise bad(f"'grads/{n}' must be {p.dtype}{(steps, *shape)}, got {g.dtype}{g.shape}")
        if present.dtype != np.bool_ or present.shape != (steps,):
            raise bad(f"'grad_present/{n}' must be bool{(steps,)}, got {present.dtype}{present.shape}")
        for s in slot_names[n]:
            a = arrays[f"slots/{n}/{s}"]
            if a.dtype != p.dtype or a.shape != (steps, *shape):
                raise bad(f"'slots/{n}/{s}' must be {p.dtype}{(steps, *shape)}, got {a.dtype}{a.shape}")
    return Trajectory(
        params={n: arrays[f"params/{n}"] for n in names},
        slots={n: {s: arrays[f"slots/{n}/{s}"] for s in slot_names[n]} for n in names},
        grads={n: arrays[f"grads/{n}"] for n in names},
        grad_present={n: arrays[f"grad_present/{n}"] for n in names},
        lrs=lrs,
        meta=dict(meta["meta"]),
        scenario=meta["scenario"],
    )
