"""``refopt verify``: run scenarios in refopt and in every installed framework, and say,
per scenario and framework, whether refopt's trajectory is within the stated tolerance.

Columns per convention (framework label: what runs, and its stated tolerance):

* torch: ``torch`` (fused Adam/AdamW, default SGD: the convention, 0 ULP), ``torch-foreach``
  and ``torch-default`` (SGD: 0 ULP; Adam/AdamW take MKL's sqrt, which is not correctly
  rounded: 1e-6 absolute in float32, 1e-14 in float64, as measured);
* keras: ``keras`` (TensorFlow backend: 0 ULP), ``keras-jax`` (float32: 0 ULP; float64:
  informational -- the JAX backend casts Python floats directly where TensorFlow goes
  through float32, a different arithmetic by design, so the distance is reported and
  never fails);
* tf1: ``tf1`` (graph mode, 0 ULP); bert: ``bert`` (BERT's optimizer on TF1, 0 ULP);
* optax: ``optax`` (eager, 0 ULP), ``optax-jit`` (XLA fuses differently: 1e-6 / 1e-14).

A scenario may state its own tolerance (clipping: the global norm's reduction order).
A framework that is not installed is checked through the golden file shipped for that
scenario when there is one (generated from the real framework by tools/make_golden.py),
and is otherwise reported as skipped -- never as passed.  A golden check replays the
file's own inputs (initial values, gradients, learning rates) through refopt, so it tests
the optimizer alone, on any machine.

Masked scenarios: a framework has no element masks, so the framework runs unmasked and
two properties are checked: frozen elements and their slots stay exactly as they were,
and the elements never frozen equal the framework's unmasked run within tolerance.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from refopt.oracle import scenarios as S
from refopt.oracle.compare import compare
from refopt.oracle.run import run_refopt
from refopt.oracle.trajectory import Trajectory, load
from refopt.testing import ulp_distance

__all__ = ["COLUMNS", "Cell", "Report", "verify", "golden_path", "check"]

_APPROX = {"float32": {"max_abs": 1e-6}, "float64": {"max_abs": 1e-14}}

# convention -> [(column label, adapter framework, adapter kwargs, tolerance policy)]
COLUMNS: dict[str, list[tuple[str, str, dict[str, Any], str]]] = {
    "torch": [
        ("torch", "torch", {"path": "fused"}, "scenario"),
        ("torch-foreach", "torch", {"path": "foreach"}, "torch-paths"),
        ("torch-default", "torch", {"path": "default"}, "torch-paths"),
    ],
    "keras": [
        ("keras", "keras", {"backend": "tensorflow"}, "scenario"),
        ("keras-jax", "keras", {"backend": "jax"}, "keras-jax"),
    ],
    "tf1": [("tf1", "tf1", {}, "scenario")],
    "bert": [("bert", "tf1", {}, "scenario")],
    "optax": [("optax", "optax", {}, "scenario"), ("optax-jit", "optax", {"jit": True}, "approx")],
}
ALL_COLUMNS = [c[0] for cols in COLUMNS.values() for c in cols]


def tolerance(policy: str, sc: S.Scenario) -> dict[str, float]:
    """The tolerance a column states for a scenario."""
    if policy == "scenario":
        return dict(sc.tolerance)
    if policy == "torch-paths":
        return dict(sc.tolerance) if sc.rule == "sgd" else dict(_APPROX[sc.dtype])
    if policy == "keras-jax":
        return dict(sc.tolerance) if sc.dtype == "float32" else {}
    return dict(_APPROX[sc.dtype])


@dataclasses.dataclass
class Cell:
    scenario: str
    dtype: str
    column: str
    status: str  # ok | fail | skipped | error | info (no tolerance stated: reported, never failing)
    text: str
    tolerance: dict[str, float] | None = None
    details: dict[str, Any] | None = None
    source: str = "framework"  # framework | golden

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error")


@dataclasses.dataclass
class Report:
    cells: list[Cell]
    columns: list[str]

    @property
    def failed(self) -> bool:
        return any(c.failed for c in self.cells)

    def rows(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for c in self.cells:
            if (c.scenario, c.dtype) not in out:
                out.append((c.scenario, c.dtype))
        return out

    def to_dict(self) -> dict[str, Any]:
        import refopt
        from refopt.oracle.adapters import FRAMEWORKS, available

        return {
            "refopt_version": refopt.__version__,
            "frameworks_installed": {f: available(f) for f in FRAMEWORKS},
            "passed": not self.failed,
            "cells": [dataclasses.asdict(c) for c in self.cells],
        }

    def to_markdown(self, title: bool = True) -> str:
        """The matrix as Markdown: a sentence on what a cell says, the table (scenario x
        dtype rows, one column per framework path), and the tally.  ``title=False`` leaves
        out the page title, for a fragment embedded in another page (``refopt verify
        --markdown``)."""
        lines = ["# refopt verify: conformance matrix", ""] if title else []
        lines += [
            "Each cell: refopt's trajectory against the framework's, parameters and slots, every step "
            "(`exact` = bit for bit). `golden` cells compare with files generated from the framework.",
            "",
        ]
        lines.append("| scenario | dtype | " + " | ".join(self.columns) + " |")
        lines.append("|---|---|" + "---|" * len(self.columns))
        index = {(c.scenario, c.dtype, c.column): c for c in self.cells}
        for scenario, dtype in self.rows():
            cells = []
            for col in self.columns:
                c = index.get((scenario, dtype, col))
                if c is None:
                    cells.append("")
                else:
                    mark = {
                        "ok": "",
                        "fail": " **FAIL**",
                        "error": " **ERROR**",
                        "skipped": "",
                        "info": " (informational)",
                    }[c.status]
                    cells.append(c.text + mark)
            lines.append(f"| {scenario} | {dtype} | " + " | ".join(cells) + " |")
        n_fail = sum(c.failed for c in self.cells)
        lines += [
            "",
            f"{'FAILED' if n_fail else 'passed'}: {sum(c.status == 'ok' for c in self.cells)} within "
            f"tolerance, {n_fail} failing, {sum(c.status == 'skipped' for c in self.cells)} skipped, "
            f"{sum(c.status == 'info' for c in self.cells)} informational",
        ]
        return "\n".join(lines) + "\n"

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        j, m = folder / "conformance.json", folder / "conformance.md"
        j.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n")
        m.write_text(self.to_markdown())
        return j, m


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x).__name__)


def _describe(maxulp: float, maxabs: float) -> str:
    if maxulp == 0:
        return "exact"
    return f"{maxulp:.4g} ULP (abs {maxabs:.2g})"


def check(sc: S.Scenario, mine: Trajectory, theirs: Trajectory, tol: dict[str, float]) -> tuple[bool, str, dict]:
    """Whether ``mine`` meets ``tol`` against ``theirs``: (ok, cell text, details)."""
    if sc.masks is None:
        cmp = compare(mine, theirs)
        ok = cmp.within(tol)
        text = _describe(cmp.max_ulp, cmp.max_abs)
        if cmp.differences:  # a tolerance never forgives these
            more = len(cmp.differences) - 1
            text += f"; {cmp.differences[0]}" + (f" (and {more} more)" if more else "")
        elif cmp.grads_max_ulp or cmp.lrs_max_ulp:
            text += "; the recorded inputs differ (gradients or learning rates)"
        return ok, text, cmp.to_dict()
    # masked: frozen elements exact; never-frozen elements equal the unmasked framework run
    run = S.materialize(sc)  # for its masks (drawn from the mask seed alone)
    keep = S.always_unmasked(sc, run.variables)
    frozen_moved = 0
    worst_ulp, worst_abs = 0.0, 0.0
    for n in mine.names:
        for k in range(mine.steps):
            frozen = ~run.masks[k][n]
            frozen_moved += int(np.sum(mine.params[n][k + 1][frozen] != mine.params[n][k][frozen]))
            for hist in mine.slots[n].values():
                prev = hist[k - 1] if k else np.zeros_like(hist[0])
                frozen_moved += int(np.sum(hist[k][frozen] != prev[frozen]))
        a, b = mine.params[n][:, keep[n]], theirs.params[n][:, keep[n]]
        if a.size:
            worst_ulp = max(worst_ulp, float(ulp_distance(a, b).max()))
            worst_abs = max(worst_abs, float(np.abs(a.astype(np.float64) - b).max()))
    within = ("max_ulp" in tol and worst_ulp <= tol["max_ulp"]) or ("max_abs" in tol and worst_abs <= tol["max_abs"])
    ok = frozen_moved == 0 and within
    text = (
        _describe(worst_ulp, worst_abs)
        + " (never-frozen)"
        + ("" if frozen_moved == 0 else f"; {frozen_moved} frozen values moved")
    )
    return (
        ok,
        text,
        {
            "frozen_values_that_moved": frozen_moved,
            "never_frozen_max_ulp": worst_ulp,
            "never_frozen_max_abs": worst_abs,
        },
    )


def golden_path(scenario: str, dtype: str) -> Path:
    """Where the golden file shipped for ``scenario`` in ``dtype`` lives (it may not exist)."""
    return Path(str(resources.files("refopt.oracle").joinpath("golden", f"{scenario}.{dtype}.npz")))


def verify(
    scenarios: Sequence[S.Scenario],
    dtypes: Sequence[str],
    frameworks: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    use_golden: bool = True,
) -> Report:
    """Build the conformance matrix (see the module docstring)."""
    from refopt.oracle.adapters import available

    wanted = set(frameworks) if frameworks else None
    plan = []
    for sc in scenarios:
        for dtype in dtypes:
            if sc.convention == "bert" and dtype != "float32":
                continue
            for col, fw, kw, policy in COLUMNS[sc.convention]:
                if wanted is None or col in wanted:
                    plan.append((sc, dtype, col, fw, kw, policy))
    cells: list[Cell] = []
    mine_cache: dict[tuple[str, str], Trajectory] = {}
    for i, (sc, dtype, col, fw, kw, policy) in enumerate(plan):
        if progress is not None:
            progress(i, len(plan), f"{sc.name} [{dtype}] vs {col}")
        scd = sc.with_dtype(dtype)
        tol = tolerance(policy, scd)
        key = (sc.name, dtype)
        try:
            if available(fw):
                if key not in mine_cache:
                    mine_cache[key] = S.run_scenario(scd)
                mine = mine_cache[key]
                theirs = S.run_scenario(scd, fw, _refopt=mine if scd.gradients["kind"] == "model" else None, **kw)
                source = "framework"
            else:
                gp = golden_path(sc.name, dtype)
                golden = load(gp) if (use_golden and gp.exists()) else None
                if golden is None or golden.meta.get("column") != col:
                    cells.append(Cell(sc.name, dtype, col, "skipped", f"skipped: {fw} not installed", tol))
                    continue
                # replay the golden file's own inputs, so that only the optimizer is on trial
                mine = run_refopt(S.replay_run(scd, golden), scd.backend)
                theirs, source = golden, "golden"
            ok, text, details = (
                check(scd, mine, theirs, tol) if tol else (True, *check(scd, mine, theirs, {"max_ulp": 0})[1:])
            )
            if source == "golden":
                text = f"{text} [golden: {theirs.meta.get('framework')} {theirs.meta.get('version')}]"
            status = ("ok" if ok else "fail") if tol else "info"
            cells.append(Cell(sc.name, dtype, col, status, text, tol, details, source))
        except Exception as exc:  # a framework that cannot run the scenario: reported, never passed
            cells.append(Cell(sc.name, dtype, col, "error", f"error: {type(exc).__name__}: {exc}"[:300], tol))
    if progress is not None:
        progress(len(plan), len(plan), "done")
    columns = [c for c in ALL_COLUMNS if any(cell.column == c for cell in cells)]
    return Report(cells, columns)
