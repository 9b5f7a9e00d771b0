"""Run files (what refopt hands a framework in a subprocess): exact round trip, and
files that do not make a run refused with the format error."""

from __future__ import annotations

import numpy as np
import pytest

from refopt.io import FileFormatError, read_arrays, write_arrays
from refopt.oracle import scenarios as S
from refopt.oracle.run import Run


def test_round_trip_is_exact(tmp_path) -> None:
    for name in ("adam-torch-amsgrad", "dynamic-freezing-adam"):  # missing gradients; masks
        run = S.materialize(S.get(name))
        back = Run.load(run.save(tmp_path / f"{name}.npz"))
        assert back.steps == run.steps and back.lrs == run.lrs and back.hyper == run.hyper
        for k in range(run.steps):
            for n, g in run.grads[k].items():
                assert (back.grads[k][n] is None) if g is None else back.grads[k][n].tobytes() == g.tobytes()
            if run.masks:
                assert all(np.array_equal(back.masks[k][n], m) for n, m in run.masks[k].items())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, m: a.pop("init/head/kernel"), r"missing \['init/head/kernel'\]"),
        (
            lambda a, m: a.update({"grad/99/head/kernel": a["init/head/kernel"]}),
            r"unexpected \['grad/99/head/kernel'\]",
        ),
        (lambda a, m: a.update({"grad/0/head/kernel": a["grad/0/head/kernel"][:2]}), "'grad/0/head/kernel' is float32"),
        (lambda a, m: a["lrs"].__setitem__(0, np.nan), "finite float64 learning rates"),
        (lambda a, m: m.update(steps="20"), "'steps' must be an int"),
        (lambda a, m: m.update(hyper={"betas": 1}), r"unknown hyperparameters \['betas'\]"),
        (lambda a, m: m.update(rule="lion"), "rule must be sgd, adam or adamw"),
        (lambda a, m: m.pop("clip"), r"missing \['clip'\], unexpected \[\]"),
        (lambda a, m: m.update(note=1), r"missing \[\], unexpected \['note'\]"),
    ],
)
def test_files_that_do_not_make_a_run_are_refused(tmp_path, change, message) -> None:
    path = S.materialize(S.get("adam-torch-amsgrad")).save(tmp_path / "run.npz")
    arrays, meta = read_arrays(path, "refopt.run", (1,))
    extra = {k: v for k, v in meta.items() if k not in ("kind", "schema_version", "refopt_version", "arrays")}
    change(arrays, extra)
    with pytest.raises(FileFormatError, match=message):
        Run.load(write_arrays(tmp_path / "changed.npz", arrays, "refopt.run", 1, extra=extra))
