"""``refopt train``: the real console script in subprocesses -- outputs, progress,
stop and resume bit for bit, and every kind of bad input refused with exit status 2 and
one line naming the problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

_BESIDE = Path(sys.executable).with_name("refopt")
EXE = str(_BESIDE) if _BESIDE.exists() else shutil.which("refopt")
SMALL = ["--hidden", "16", "--batch-size", "64", "--epochs", "2"]  # 23 steps per epoch


def train(*args: str) -> subprocess.CompletedProcess:
    assert EXE, "the refopt console script is not installed next to this Python or on PATH (pip install .)"
    return subprocess.run([EXE, "train", *args], capture_output=True, text=True)


def refused(proc: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refopt train: "), proc.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_train_writes_every_output_and_shows_progress(tmp_path) -> None:
    out = tmp_path / "run"
    proc = train("--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "digits: 1,438 train / 359 test examples" in proc.stdout
    assert "epoch   2/2  step     46" in proc.stdout and "test_acc" in proc.stdout
    assert "ex/s" in proc.stderr and "step/s" in proc.stderr and "loss" in proc.stderr  # the tqdm bar
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 23), (2, 46)]
    assert {"train_loss", "test_loss", "test_accuracy"} <= set(records[0])
    for name in ("model.npz", "checkpoint.npz", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    quiet = train("--out", str(tmp_path / "quiet"), *SMALL, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


@pytest.mark.parametrize(
    "options",
    [
        ["--optimizer", "adamw", "--convention", "keras"],
        ["--optimizer", "sgd", "--convention", "tf1", "--momentum", "0.9", "--lr", "0.05"],
    ],
)
def test_stopped_and_resumed_in_new_processes_equals_uninterrupted(tmp_path, options) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    assert train("--out", str(full), *SMALL, *options, "--quiet").returncode == 0
    stop = train("--out", str(part), *SMALL, *options, "--max-steps", "30", "--checkpoint-every", "7")
    assert stop.returncode == 0 and "stopped at --max-steps 30 at step 30/46" in stop.stdout
    resume = train("--out", str(part), "--resume", "--checkpoint-every", "7")
    assert resume.returncode == 0, resume.stderr
    assert "resuming at step 30 (epoch 2, batch 7)" in resume.stdout
    assert (full / "model.npz").read_bytes() == (part / "model.npz").read_bytes()
    assert (full / "checkpoint.npz").read_bytes() == (part / "checkpoint.npz").read_bytes()  # optimizer slots too


def test_run_level_refusals(tmp_path) -> None:
    out = tmp_path / "run"
    assert train("--out", str(out), *SMALL, "--max-steps", "3", "--quiet").returncode == 0
    refused(train("--out", str(out), *SMALL), 2, "already holds a training run")
    refused(train("--out", str(out), "--resume", "--lr", "0.5"), 2, "learning_rate=0.5 (checkpoint: 0.001)")
    refused(train("--out", str(tmp_path / "none"), "--resume"), 2, "no checkpoint to resume")
    (out / "checkpoint.npz").write_bytes(b"garbage")
    refused(train("--out", str(out), "--resume"), 2, "checkpoint.npz")
    refused(train("--out", str(tmp_path / "x"), "--momentum", "0.9"), 2, "momentum and nesterov apply to the sgd")
    refused(
        train("--out", str(tmp_path / "y"), "--optimizer", "sgd", "--lr", "1e30", *SMALL, "--quiet"), 1, "the loss is"
    )


def test_cupy_backend_without_cupy(tmp_path) -> None:
    from refopt import backend

    if backend.cupy_available():
        pytest.skip("a GPU is present")
    refused(train("--out", str(tmp_path / "gpu"), "--backend", "cupy"), 2, "backend 'cupy'")


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


GOOD_X = np.random.default_rng(0).random((20, 4))
GOOD_Y = np.arange(20) % 3


@pytest.mark.parametrize(
    "name, make, extra, message",
    [
        ("missing-array", lambda p: _npz(p, x=GOOD_X), [], "missing array 'y'"),
        ("wrong-shape", lambda p: _npz(p, x=GOOD_X, y=GOOD_Y[:, None]), [], "array 'y' has shape (20, 1)"),
        ("non-numeric", lambda p: _npz(p, x=GOOD_X.astype(str), y=GOOD_Y), [], "array 'x' is not numeric"),
        ("label-range", lambda p: _npz(p, x=GOOD_X, y=GOOD_Y), ["--num-classes", "2"], "label 2 at example 2 is out"),
        ("nan", lambda p: _npz(p, x=np.where(GOOD_X > 0.9, np.nan, GOOD_X), y=GOOD_Y), [], "holds NaN at index"),
        ("not-images", lambda p: _npz(p, x=GOOD_X, y=GOOD_Y), ["--model", "cnn"], "cnn: needs images"),
        ("csv-column", lambda p: p.with_suffix(".csv"), ["--label-column", "digit"], "no column named 'digit'"),
        ("csv-value", lambda p: p.with_suffix(".csv"), ["--label-column", "bad"], "line 3, column 'a': 'x' is not"),
    ],
)
def test_bad_data_is_refused_with_exit_2(tmp_path, name, make, extra, message) -> None:
    (tmp_path / "d.csv").write_text("a,label,bad\n1,0,0\nx,1,1\n")
    path = make(tmp_path / "d.npz")
    refused(train("--out", str(tmp_path / "run"), "--data", str(path), *extra), 2, message)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()
