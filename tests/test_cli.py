"""The real `refopt` console script, in subprocesses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from refopt.oracle.trajectory import load
from refopt.oracle.verify import golden_path

_BESIDE = Path(sys.executable).with_name("refopt")
EXE = str(_BESIDE) if _BESIDE.exists() else shutil.which("refopt")


def _run(*args, cwd=None):
    # a missing console script means the install is broken: fail, do not skip
    assert EXE, "the refopt console script is not installed next to this Python or on PATH (pip install .)"
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd)


def test_scenarios_lists_the_registry() -> None:
    proc = _run("scenarios")
    assert proc.returncode == 0
    for name in (
        "adam-torch-amsgrad",
        "adamw-bert",
        "dynamic-freezing-adam",
        "joint-loss-routing",
        "layerwise-lr",
        "bert-adamw",
    ):
        assert name in proc.stdout
    data = json.loads(_run("scenarios", "--json").stdout)
    assert data["bert-adamw"]["optimizer"]["convention"] == "bert"


def test_golden_then_compare(tmp_path) -> None:
    out = tmp_path / "adam-tf1.npz"
    proc = _run("golden", "--scenario", "adam-tf1", "--out", str(out), "--dtype", "float64")
    assert proc.returncode == 0, proc.stderr
    traj = load(out)
    assert traj.meta["framework"] == "refopt" and traj.scenario["dtype"] == "float64"
    same = _run("compare", str(out), str(golden_path("adam-tf1", "float64")))
    assert same.returncode == 0 and "identical" in same.stdout
    # a config file, one value nudged: compare finds the first divergence and plots it
    cfg = tmp_path / "sc.json"
    sc = json.loads(_run("scenarios", "--json").stdout)["adam-tf1"]
    sc["optimizer"]["hyper"] = {"epsilon": 1e-3}  # (beta1 would first show at step 2: step 1 is beta1-free)
    cfg.write_text(json.dumps(sc))
    other = tmp_path / "other.npz"
    assert _run("golden", "--config", str(cfg), "--out", str(other), "--dtype", "float64").returncode == 0
    png = tmp_path / "ulp.png"
    diff = _run("compare", str(out), str(other), "--plot", str(png))
    assert diff.returncode == 1 and "first divergence at step 1" in diff.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    js = json.loads(_run("compare", str(out), str(other), "--json").stdout)
    assert js["first_divergence"]["step"] == 1 and js["max_ulp"] > 0


def test_verify_one_scenario_writes_json_and_markdown(tmp_path) -> None:
    proc = _run("verify", "--scenarios", "adam-tf1", "dynamic-freezing-adam", "--out", str(tmp_path / "v"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[" in proc.stderr and "done" in proc.stderr  # the progress display
    md = (tmp_path / "v" / "conformance.md").read_text()
    assert "| adam-tf1 | float32 |" in md and "exact" in md
    data = json.loads((tmp_path / "v" / "conformance.json").read_text())
    assert data["passed"] is True


def test_bad_arguments_are_clear(tmp_path) -> None:
    proc = _run("verify", "--frameworks", "mxnet", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown frameworks ['mxnet']" in proc.stderr
    proc = _run("golden", "--scenario", "nope", "--out", str(tmp_path / "x.npz"))
    assert proc.returncode == 2 and "unknown scenario 'nope'" in proc.stderr
    bad = tmp_path / "bad.npz"
    np.save(bad, np.zeros(3))
    proc = _run("compare", str(bad), str(bad))
    assert proc.returncode == 2 and "refopt compare" in proc.stderr


def test_version_and_bare_command_print_help() -> None:
    import refopt

    proc = _run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"refopt {refopt.__version__}"
    proc = _run()
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: refopt") and "verify" in proc.stdout and "--version" in proc.stdout
