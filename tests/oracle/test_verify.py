"""refopt verify: every promised convention bit-exact with the frameworks; a perturbed
update fails it; without frameworks the shipped golden files decide; golden files match
refopt bit for bit and regenerate byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refopt import cli
from refopt.oracle import scenarios as S
from refopt.oracle.compare import compare
from refopt.oracle.run import run_refopt
from refopt.oracle.trajectory import load
from refopt.oracle.verify import COLUMNS, golden_path, verify
from refopt.testing import assert_trajectory_equal

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.frameworks
def test_full_matrix_with_every_framework(full_verify) -> None:
    """The real console script, every scenario, both dtypes: exit 0, and every column a
    convention promises bit-exact (tolerance 0 ULP) is exact."""
    proc, tmp_path = full_verify  # `refopt verify --markdown --dtype all`, run once (tests/conftest.py)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "conformance.json").read_text())
    assert report["passed"] and all(report["frameworks_installed"].values())
    promised = [c for c in report["cells"] if c["tolerance"] == {"max_ulp": 0}]
    assert len(promised) >= 30  # 37 today: every primary column but the clipped bert one, and more
    for c in promised:
        assert c["status"] == "ok" and c["text"].startswith("exact"), c
    assert not any(c["status"] in ("fail", "error", "skipped") for c in report["cells"])
    assert "| adam-torch-amsgrad | float32 | exact |" in (tmp_path / "conformance.md").read_text()


@pytest.mark.frameworks
def test_a_perturbed_update_fails_verify(tmp_path, monkeypatch) -> None:
    import dataclasses

    from refopt.optim.adam import Adam

    real = Adam._rules["torch"]

    def a_few_ulp_off(K, o, a, s):  # the formula's result moved by ~2^-20 relative (a few ULP)
        out = real.formula(K, o, a, s)
        out["p"] = out["p"] * (1.0 + 2.0**-20)
        return out

    monkeypatch.setitem(Adam._rules, "torch", dataclasses.replace(real, formula=a_few_ulp_off))
    code = cli.main(
        ["verify", "--scenarios", "adam-torch-amsgrad", "--frameworks", "torch", "--quiet", "--out", str(tmp_path)]
    )
    assert code == 1
    cells = json.loads((tmp_path / "conformance.json").read_text())["cells"]
    assert cells[0]["status"] == "fail" and "ULP" in cells[0]["text"]
    monkeypatch.undo()
    assert (
        cli.main(
            ["verify", "--scenarios", "adam-torch-amsgrad", "--frameworks", "torch", "--quiet", "--out", str(tmp_path)]
        )
        == 0
    )


def test_without_frameworks_the_golden_files_decide(monkeypatch) -> None:
    import refopt.oracle.adapters as adapters

    monkeypatch.setattr(adapters, "available", lambda fw: False)
    report = verify([S.get(n) for n in S.names()], ["float32", "float64"])
    assert not report.failed
    golden = [c for c in report.cells if c.source == "golden"]
    assert len(golden) == 30 and all(c.status == "ok" for c in golden)
    others = [c for c in report.cells if c.source != "golden"]
    assert others and all(c.status == "skipped" and "not installed" in c.text for c in others)


@pytest.mark.parametrize("name", S.names())
def test_shipped_golden_files_match_refopt_bit_for_bit(name) -> None:
    for dtype in ("float32", "float64"):
        sc = S.get(name)
        if sc.convention == "bert" and dtype == "float64":
            continue
        sc = sc.with_dtype(dtype)
        golden = load(golden_path(name, dtype))
        assert golden.meta["column"] == COLUMNS[sc.convention][0][0]
        assert golden.meta["framework"] != "refopt" and golden.meta["generated_by"] == "tools/make_golden.py"
        assert golden.scenario == sc.to_dict()
        mine = run_refopt(S.replay_run(sc, golden))
        if sc.masks is None and "max_abs" in sc.tolerance:
            # the scenario promises a distance, not bits (bert-adamw: the clip norm is a
            # reduction in TensorFlow's order, refopt's is its own fixed order)
            cmp = compare(mine, golden)
            assert cmp.within(sc.tolerance), cmp.summary()
        elif sc.masks is None:
            assert_trajectory_equal(mine, golden, max_ulp=sc.tolerance.get("max_ulp", 0))
        # the inputs the file holds are what the scenario generates on this machine too
        if sc.gradients["kind"] == "synthetic":
            fresh = S.materialize(sc)
            for n in golden.names:
                assert np.array_equal(fresh.variables[n], golden.params[n][0])


@pytest.mark.frameworks
def test_regenerating_golden_files_reproduces_the_same_bytes() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_golden.py"), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "30 golden files reproduced byte for byte" in proc.stderr


def test_a_tolerance_never_forgives_a_missing_slot_or_different_inputs() -> None:
    import copy

    from refopt.oracle.verify import check

    sc = S.get("adam-torch-amsgrad")
    mine = S.run_scenario(sc)
    theirs = copy.deepcopy(mine)
    del theirs.slots["head/kernel"]["v_max"]
    ok, text, details = check(sc, mine, theirs, {"max_ulp": 1e9})
    assert not ok and text == "exact; slot 'v_max' of 'head/kernel' only in the first trajectory"
    assert details["identical"] is False and details["differences"]
    theirs = copy.deepcopy(mine)
    theirs.lrs[0] = np.nextafter(theirs.lrs[0], 1.0)
    ok, text, _ = check(sc, mine, theirs, {"max_abs": 1.0})
    assert not ok and "the recorded inputs differ" in text
    assert check(sc, mine, copy.deepcopy(mine), {"max_ulp": 0})[:2] == (True, "exact")


def test_the_oracle_runs_reproducibly_whatever_the_mode() -> None:
    """A user's REFOPT_MODE=fast must not reach the oracle: the model scenarios' gradients
    (in the golden files) are the reproducible engine's."""
    import os

    env = {**os.environ, "REFOPT_MODE": "fast"}
    code = (
        "import refopt as rf; from refopt.oracle import scenarios as S; "
        "t = S.run_scenario(S.get('layerwise-lr')); "
        "print(rf.current_mode(), t.grads['dense/kernel'].tobytes().hex())"
    )
    fast = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    mode, bits = fast.stdout.split()
    assert mode == "fast"
    golden = load(golden_path("layerwise-lr", "float32"))
    assert bits == golden.grads["dense/kernel"].tobytes().hex()
