"""The real `refopt` console script, in subprocesses."""

from __future__ import annotations

import importlib.util
import json
import re
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


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one clear line


def test_every_kind_of_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path) -> None:
    """Exit 2 means "no answer" -- never 1, which means "the trajectories differ"."""
    good = tmp_path / "good.npz"
    assert _run("golden", "--scenario", "adam-tf1", "--out", str(good)).returncode == 0
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).integers(0, 256, 999, np.uint8).tobytes())
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "broken.json").write_text('{"name": ')
    sc = json.loads(_run("scenarios", "--json").stdout)["adam-tf1"]
    (tmp_path / "negative.json").write_text(json.dumps({**sc, "optimizer": {**sc["optimizer"], "learning_rate": -0.1}}))
    (tmp_path / "unknown.json").write_text(json.dumps({**sc, "colour": "red"}))
    (tmp_path / "afile").write_text("x")
    out = str(tmp_path / "o.npz")
    cases = [
        (("compare", str(tmp_path / "missing.npz"), str(good)), "does not exist"),
        (("compare", str(tmp_path / "trunc.npz"), str(good)), "truncated or corrupted|ends early"),
        (("compare", str(good), str(tmp_path / "random.npz")), "not a zip/.npz file"),
        (("compare", str(tmp_path), str(good)), "is a folder, not a file"),
        (("compare", str(good), str(good), "--plot", str(tmp_path)), "--plot .* is a folder"),
        (("verify", "--scenarios", "adam-tf1", "--out", str(tmp_path / "afile")), "is an existing file, not a folder"),
        (("golden", "--scenario", "adam-tf1", "--out", str(tmp_path)), "--out .* is a folder, not a file"),
        (("golden", "--config", str(tmp_path), "--out", out), "is a folder, not a JSON file"),
        (("golden", "--config", str(tmp_path / "list.json"), "--out", out), "a scenario is a JSON object"),
        (("golden", "--config", str(tmp_path / "broken.json"), "--out", out), "is not valid JSON"),
        (("golden", "--config", str(tmp_path / "negative.json"), "--out", out), "learning_rate at step 0 is -0.1"),
        (("golden", "--config", str(tmp_path / "unknown.json"), "--out", out), r"unknown fields \['colour'\]"),
        (("golden", "--config", str(tmp_path / "nope.json"), "--out", out), "No such file or directory"),
    ]
    if importlib.util.find_spec("cupy") is None:
        (tmp_path / "cupy.json").write_text(json.dumps({**sc, "backend": "cupy"}))
        cases.append(
            (("golden", "--config", str(tmp_path / "cupy.json"), "--out", out), "backend 'cupy' is not installed")
        )
    for args, message in cases:
        proc = _run(*args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        _no_traceback(proc)
        assert proc.stderr.startswith(f"refopt {args[0]}: ") and re.search(message, proc.stderr), (args, proc.stderr)
    assert not (tmp_path / "o.npz").exists()
    debug = _run("--debug", "compare", str(tmp_path / "random.npz"), str(good))
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "FileFormatError" in debug.stderr


def test_compare_exits_1_for_every_kind_of_difference_and_0_only_when_identical(tmp_path) -> None:
    good = _run("golden", "--scenario", "adam-tf1", "--out", str(tmp_path / "a.npz"))
    assert good.returncode == 0
    a = load(tmp_path / "a.npz")
    no_slot = load(tmp_path / "a.npz")
    del no_slot.slots["head/kernel"]["v"]
    lrs = load(tmp_path / "a.npz")
    lrs.lrs[3] *= 1.5
    grads = load(tmp_path / "a.npz")
    grads.grads["head/kernel"][2, 1, 1] += 1.0
    for name, traj in (("no_slot", no_slot), ("lrs", lrs), ("grads", grads)):
        traj.save(tmp_path / f"{name}.npz")
        proc = _run("compare", str(tmp_path / "a.npz"), str(tmp_path / f"{name}.npz"))
        assert proc.returncode == 1 and "identical" not in proc.stdout, (name, proc.stdout)
    assert (
        "slot 'v' of 'head/kernel' only in the first trajectory"
        in _run("compare", str(tmp_path / "a.npz"), str(tmp_path / "no_slot.npz")).stdout
    )
    a.save(tmp_path / "same.npz")
    assert _run("compare", str(tmp_path / "a.npz"), str(tmp_path / "same.npz")).returncode == 0


def test_an_internal_error_is_one_line_and_exit_2(monkeypatch, capsys) -> None:
    from refopt import cli

    def broken(args):
        raise ZeroDivisionError("a refopt bug")

    monkeypatch.setattr(cli, "cmd_scenarios", broken)
    assert cli.main(["scenarios"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "refopt scenarios: internal error: ZeroDivisionError: a refopt bug (run with --debug for the traceback)\n"
    )


def test_verify_markdown_prints_the_matrix_alone(tmp_path, monkeypatch, capsys) -> None:
    """`refopt verify --markdown`: stdout is the conformance matrix as a Markdown fragment
    (no title, no "wrote" line) -- what docs/conventions.md embeds; the files are written
    as usual, conformance.md being the same matrix under its title."""
    import refopt.oracle.adapters as adapters
    from refopt import cli

    monkeypatch.setattr(adapters, "available", lambda fw: False)  # the shipped golden files decide: fast
    code = cli.main(
        ["verify", "--markdown", "--scenarios", "adam-tf1", "sgd-tf1-momentum", "--quiet", "--out", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Each cell: ") and not out.startswith("#")
    assert "| scenario | dtype | tf1 |" in lines
    assert any(line.startswith("| adam-tf1 | float32 | exact [golden: tf1 ") for line in lines)
    assert lines[-1].startswith("passed: 2 within tolerance, 0 failing")
    assert "wrote" not in out and f"wrote {tmp_path / 'conformance.json'}" in err
    assert (tmp_path / "conformance.md").read_text() == "# refopt verify: conformance matrix\n\n" + out

    cli.main(["verify", "--scenarios", "adam-tf1", "--quiet", "--out", str(tmp_path)])  # without the flag
    plain = capsys.readouterr().out
    assert plain.startswith("# refopt verify: conformance matrix") and "\nwrote " in plain
