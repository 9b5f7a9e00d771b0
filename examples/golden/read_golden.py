"""Reading a refopt golden trajectory with NumPy alone (no refopt needed).

A trajectory file is an ``.npz`` (no pickle) whose ``__refopt__`` member is JSON
metadata; per variable ``name`` it holds ``params/name`` (steps + 1, *shape: the initial
value, then the value after each step), ``grads/name`` and ``grad_present/name`` (the
gradient each step, and whether there was one), ``slots/name/slot`` (each slot after
each step: ``m``, ``v``, ...), and ``lrs`` (the learning rate of each step).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def golden_dir() -> Path:
    """Where the golden files are: ``$GOLDEN_DIR``, else ``golden/`` in the working folder."""
    return Path(os.environ.get("GOLDEN_DIR", "golden"))


def read_golden(path: str | Path) -> dict:
    """Every array of a trajectory file, and its metadata (which holds the scenario)."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["__refopt__"].tobytes())
        names = meta["names"]
        return {
            "meta": meta,
            "names": names,
            "params": {n: f[f"params/{n}"] for n in names},
            "grads": {n: f[f"grads/{n}"] for n in names},
            "present": {n: f[f"grad_present/{n}"] for n in names},
            "slots": {n: {s: f[f"slots/{n}/{s}"] for s in meta["slots"][n]} for n in names},
            "lrs": f["lrs"],
        }
