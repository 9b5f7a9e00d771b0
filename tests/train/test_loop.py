"""The training loop: the defaults reach their accuracy; a run stopped and resumed equals
an uninterrupted one bit for bit (model and optimizer state) in every convention; a
crash while writing a checkpoint leaves the previous one loadable; the loss curve
tracks the same training written in PyTorch."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import refopt.io
from refopt.io import FileFormatError, read_arrays
from refopt.nn.module import CheckpointError
from refopt.train import TrainConfig, Trainer, TrainingError, fit, from_arrays, load_digits, load_model
from refopt.train.loop import CHECKPOINT_KIND

QUIET = dict(progress=False, log=None)
SMALL = dict(hidden=(16,), batch_size=64, epochs=2)  # digits: 23 steps per epoch, 46 in all
TIME_FIELDS = ("seconds", "examples_per_second")


def _bits(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    return a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes()


def _model(out: Path) -> dict[str, np.ndarray]:
    arrays, _ = read_arrays(out / "model.npz", "refopt.checkpoint", (1,))
    return arrays


def _checkpoint(out: Path) -> tuple[dict[str, np.ndarray], dict]:
    return read_arrays(out / "checkpoint.npz", CHECKPOINT_KIND, (1,))


def _metrics(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIME_FIELDS} for line in lines]


def assert_same_run(a: Path, b: Path) -> None:
    """model.npz, every checkpoint array (model, optimizer slots) and its counters,
    generator state and metrics: identical bits."""
    ma, mb = _model(a), _model(b)
    assert list(ma) == list(mb)
    for k in ma:
        assert _bits(ma[k]) == _bits(mb[k]), f"model.npz {k} differs"
    (ca, meta_a), (cb, meta_b) = _checkpoint(a), _checkpoint(b)
    assert list(ca) == list(cb)
    assert any(k.startswith("optimizer/") for k in ca), "the optimizer kept no slots to compare"
    for k in ca:
        assert _bits(ca[k]) == _bits(cb[k]), f"checkpoint {k} differs"
    for key in ("progress", "optimizer", "data_rng", "config", "data"):
        assert meta_a[key] == meta_b[key], key
    assert _metrics(a) == _metrics(b)


CASES = {
    "adam-torch": dict(optimizer="adam", convention="torch"),
    "adam-tf1": dict(optimizer="adam", convention="tf1"),  # float32 running beta powers in the state
    "sgd-keras-momentum-cosine": dict(
        optimizer="sgd", convention="keras", momentum=0.9, learning_rate=0.05, schedule="cosine"
    ),
    "adamw-optax-warmup-clip": dict(optimizer="adamw", convention="optax", warmup_steps=10, clip_norm=1.0),
    "adamw-bert-linear": dict(optimizer="adamw", convention="bert", schedule="linear", warmup_steps=5),
    "sgd-torch-nesterov-float64": dict(
        optimizer="sgd", convention="torch", momentum=0.9, nesterov=True, learning_rate=0.05, dtype="float64"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stopped_and_resumed_equals_uninterrupted(tmp_path, case) -> None:
    kw = {**SMALL, **CASES[case]}
    full = fit(out=tmp_path / "full", checkpoint_every=10, **QUIET, **kw)
    assert full.stopped == "finished" and full.step == 46
    out = tmp_path / "stopped"
    part = fit(out=out, max_steps=31, checkpoint_every=10, **QUIET, **kw)  # mid-epoch 2
    assert part.stopped == "max_steps" and part.step == 31 and len(part.history) == 1
    _, meta = _checkpoint(out)
    assert meta["progress"]["step"] == 31 and meta["progress"]["batch"] == 8
    again = fit(out=out, resume=True, max_steps=40, checkpoint_every=7, **QUIET)  # stopped a second time
    assert again.step == 40
    done = fit(out=out, resume=True, checkpoint_every=10, **QUIET)
    assert done.stopped == "finished" and len(done.history) == 2
    assert_same_run(tmp_path / "full", out)


@pytest.mark.parametrize("mode", ["reproducible", "fast"])
def test_resumed_equals_uninterrupted_in_both_numerics_modes(tmp_path, mode) -> None:
    from refopt.kernels import use_mode

    with use_mode(mode):
        fit(out=tmp_path / "full", **QUIET, **SMALL)
        fit(out=tmp_path / "part", max_steps=40, **QUIET, **SMALL)
        fit(out=tmp_path / "part", resume=True, **QUIET)
    assert_same_run(tmp_path / "full", tmp_path / "part")


def test_same_seed_same_bytes_other_seed_other_bits(tmp_path) -> None:
    fit(out=tmp_path / "a", epochs=1, **QUIET)
    fit(out=tmp_path / "b", epochs=1, **QUIET)
    fit(out=tmp_path / "c", epochs=1, seed=1, **QUIET)
    assert (tmp_path / "a" / "model.npz").read_bytes() == (tmp_path / "b" / "model.npz").read_bytes()
    assert (tmp_path / "a" / "checkpoint.npz").read_bytes() == (tmp_path / "b" / "checkpoint.npz").read_bytes()
    assert (tmp_path / "a" / "model.npz").read_bytes() != (tmp_path / "c" / "model.npz").read_bytes()


def test_defaults_reach_96_percent_and_write_every_output(tmp_path) -> None:
    out = tmp_path / "run"
    result = fit(out=out, **QUIET)
    cfg = TrainConfig()
    assert (cfg.model, cfg.optimizer, cfg.epochs, cfg.data) == ("mlp", "adam", 20, "digits")
    assert result.final["test_accuracy"] >= 0.96
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 21))
    assert [r["step"] for r in records] == [45 * e for e in range(1, 21)]
    for r in records:
        assert {"epoch", "step", "train_loss", "test_loss", "test_accuracy", "train_accuracy"} <= set(r)
        assert math.isfinite(r["test_loss"]) and 0 <= r["test_accuracy"] <= 1
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((out / "config.json").read_text())
    assert info["data"]["input_shape"] == [8, 8, 1] and info["config"]["hidden"] == [128]
    # the final model: refopt's checkpoint format, readable with NumPy alone, loadable by load_model
    with np.load(out / "model.npz", allow_pickle=False) as f:
        assert json.loads(f["__refopt__"].tobytes())["kind"] == "refopt.checkpoint"
        kernel = f["fc1/kernel"]
    np.testing.assert_array_equal(kernel, result.model.named_variables()["fc1/kernel"].numpy())
    model = load_model(out)
    x = load_digits().x_test.astype(np.float32)
    acc = float(np.mean(np.argmax(model(x).numpy(), axis=1) == load_digits().y_test))
    assert acc == result.final["test_accuracy"]


def test_epoch_order_is_a_permutation_and_evaluation_changes_nothing() -> None:
    t = Trainer(hidden=(8,), batch_size=100, epochs=2)
    assert t.steps_per_epoch == 15 and t.total_steps == 30  # 1438 = 14 * 100 + 38
    seen, sizes = [], []
    while t.epoch == 0:
        before = t.evaluate()
        assert t.evaluate() == before
        r = t.train_step()
        seen.extend(r.indices.tolist())
        sizes.append(len(r.indices))
    assert sorted(seen) == list(range(1438)) and sizes[-1] == 38
    assert r.epoch_done and r.train_loss is not None and 0 <= r.train_accuracy <= 1
    second = [i for _ in range(15) for i in t.train_step().indices.tolist()]
    assert sorted(second) == list(range(1438)) and second != seen
    assert t.finished
    with pytest.raises(RuntimeError, match="training is complete"):
        t.train_step()


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    fit(out=out, max_steps=40, checkpoint_every=20, **QUIET, **SMALL)
    before = (out / "checkpoint.npz").read_bytes()
    real = refopt.io._write_npz

    def torn(fh, arrays):  # writes part of the file, then the disk "fails"
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(refopt.io, "_write_npz", torn)
    with pytest.raises(OSError, match="simulated"):
        fit(out=out, resume=True, checkpoint_every=5, **QUIET)
    assert (out / "checkpoint.npz").read_bytes() == before
    arrays, meta = _checkpoint(out)  # loadable, and still step 40
    assert meta["progress"]["step"] == 40
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(refopt.io, "_write_npz", real)
    fit(out=out, resume=True, **QUIET)
    fit(out=tmp_path / "full", **QUIET, **SMALL)
    assert_same_run(tmp_path / "full", out)


_KILLED_WHILE_WRITING = textwrap.dedent(
    """
    import os, sys
    import refopt.io
    from refopt.train import fit

    real, calls = refopt.io._write_npz, []

    def dying(fh, arrays):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint: half written, then the process is killed
            fh.write(b"PK\\x03\\x04 half a zip")
            fh.flush()
            os._exit(137)
        real(fh, arrays)

    refopt.io._write_npz = dying
    fit(out=sys.argv[1], checkpoint_every=20, progress=False, log=None, hidden=(16,), batch_size=64, epochs=2)
    """
)


def test_a_process_killed_while_writing_leaves_a_loadable_checkpoint(tmp_path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WHILE_WRITING, str(out)], capture_output=True, text=True)
    assert proc.returncode == 137, proc.stderr
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert leftovers and all(n.startswith(".checkpoint.npz.") for n in leftovers)
    _, meta = _checkpoint(out)
    assert meta["progress"]["step"] == 20
    exe = Path(sys.executable).with_name("refopt")
    done = subprocess.run([str(exe), "train", "--out", str(out), "--resume", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # the stale file is cleared
    fit(out=tmp_path / "full", **QUIET, **SMALL)
    assert_same_run(tmp_path / "full", out)


def test_ctrl_c_stops_after_the_step_and_saves(tmp_path, monkeypatch) -> None:
    real = Trainer.train_step

    def step(self):
        r = real(self)
        if self.step == 17:
            signal.raise_signal(signal.SIGINT)  # handled: the loop stops after this step
        return r

    monkeypatch.setattr(Trainer, "train_step", step)
    out = tmp_path / "run"
    result = fit(out=out, checkpoint_every=50, **QUIET, **SMALL)
    assert result.stopped == "interrupted" and result.step == 17
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    monkeypatch.setattr(Trainer, "train_step", real)
    assert fit(out=out, resume=True, **QUIET).stopped == "finished"
    fit(out=tmp_path / "full", **QUIET, **SMALL)
    assert_same_run(tmp_path / "full", out)


def test_resume_refuses_what_does_not_fit(tmp_path) -> None:
    out = tmp_path / "run"
    fit(out=out, max_steps=5, **QUIET, **SMALL)
    with pytest.raises(ValueError, match=r"these options differ: learning_rate=0.1 \(checkpoint: 0.001\)"):
        fit(out=out, resume=True, learning_rate=0.1, **QUIET)
    with pytest.raises(ValueError, match="already holds a training run"):
        fit(out=out, **QUIET, **SMALL)
    rng = np.random.default_rng(0)
    other = from_arrays(rng.random((100, 64)), np.arange(100) % 10, name="other")
    with pytest.raises(CheckpointError, match="trained on other data"):
        fit(out=out, resume=True, data=other, **QUIET)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        fit(out=tmp_path / "empty", resume=True, **QUIET)
    blob = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FileFormatError, match="truncated or corrupted"):
        fit(out=out, resume=True, **QUIET)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        fit(out=out, overwrite=True, learning_rate=-1.0, **QUIET)
    assert (out / "metrics.jsonl").exists() and (out / "config.json").exists()  # bad options delete nothing
    fresh = fit(out=out, overwrite=True, epochs=1, **QUIET)  # --overwrite starts over
    assert fresh.stopped == "finished" and len(_metrics(out)) == 1


def test_a_run_given_arrays_resumes_with_the_same_arrays(tmp_path) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    data = from_arrays(x, y, name="blobs")
    fit(out=tmp_path / "full", data=data, epochs=4, batch_size=16, **QUIET)
    fit(out=tmp_path / "part", data=data, epochs=4, batch_size=16, max_steps=33, **QUIET)
    with pytest.raises(ValueError, match="pass the same Dataset again"):
        fit(out=tmp_path / "part", resume=True, **QUIET)
    fit(out=tmp_path / "part", resume=True, data=data, **QUIET)
    assert_same_run(tmp_path / "full", tmp_path / "part")


def test_a_diverging_run_stops_without_saving_nan(tmp_path) -> None:
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"the loss is (nan|inf) at step \d+"):
        fit(out=out, optimizer="sgd", learning_rate=1e30, checkpoint_every=1, **QUIET, **SMALL)
    arrays, _ = _checkpoint(out)
    assert all(np.isfinite(a).all() for k, a in arrays.items() if k.startswith("model/"))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(model="rnn"), "model must be one of mlp, cnn"),
        (dict(optimizer="lamb"), "optimizer must be one of sgd, adam, adamw"),
        (dict(convention="mxnet"), "convention must be one of"),
        (dict(learning_rate=-1.0), "learning_rate must be a positive number"),
        (dict(momentum=0.9), "momentum and nesterov apply to the sgd optimizer"),
        (dict(clip_norm=1.0, clip_value=1.0), "at most one of clip_norm and clip_value"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(epochs=1, warmup_steps=1000), r"warmup_steps \(1000\) must be fewer than the run's 45 steps"),
        (dict(backend="tpu"), "backend must be one of numpy, cupy"),
        (dict(convention="bert"), "convention"),  # bert is AdamW's only
        (dict(model="cnn", data="x.npz"), "x.npz"),
        (dict(colour="red"), "unknown training options ['colour']"),
    ],
)
def test_bad_options_are_named(options, message) -> None:
    with pytest.raises(ValueError, match=message if "(" in message else None) as info:
        Trainer(**options)
    if "(" not in message:
        assert message in str(info.value)


def test_cupy_backend_without_a_gpu_is_a_clear_error() -> None:
    from refopt import backend

    if backend.cupy_available():
        pytest.skip("a GPU is present: see test_cupy_training_matches_numpy_loss_curve")
    with pytest.raises(ValueError, match="backend 'cupy'"):
        Trainer(backend="cupy")


@pytest.mark.gpu
def test_cupy_training_matches_numpy_loss_curve(tmp_path) -> None:
    gpu = fit(out=tmp_path / "gpu", backend="cupy", dtype="float64", **QUIET, **SMALL)
    cpu = fit(out=tmp_path / "cpu", dtype="float64", **QUIET, **SMALL)
    for g, c in zip(gpu.history, cpu.history):
        assert abs(g["train_loss"] - c["train_loss"]) <= 1e-9 * abs(c["train_loss"])
    part = tmp_path / "gpu-part"
    fit(out=part, backend="cupy", dtype="float64", max_steps=31, **QUIET, **SMALL)
    fit(out=part, resume=True, **QUIET)
    assert_same_run(tmp_path / "gpu", part)


# -- against PyTorch --------------------------------------------------------------------------


def _torch_lr(case: dict, step: int, total: int) -> float:
    """The learning rate of update ``step`` (0-based), from the schedules' formulas."""
    lr, warm = case["learning_rate"], case.get("warmup_steps", 0)
    if step < warm:
        return lr * step / warm
    if case.get("schedule") == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    return lr


TORCH_CASES = {
    "adam": dict(optimizer="adam", learning_rate=3e-3),
    "sgd-nesterov-warmup-cosine-clip": dict(
        optimizer="sgd",
        learning_rate=0.05,
        momentum=0.9,
        nesterov=True,
        schedule="cosine",
        warmup_steps=20,
        clip_norm=1.0,
    ),
}


@pytest.mark.frameworks
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_loss_curve_tracks_pytorch_over_100_steps(case) -> None:
    torch = pytest.importorskip("torch")
    import refopt as rf

    kw = TORCH_CASES[case]
    t = Trainer(hidden=(32,), batch_size=32, epochs=3, dtype="float64", convention="torch", **kw)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    ).double()
    torch.manual_seed(0)
    for layer in (net[1], net[3]):
        layer.reset_parameters()  # torch's own initialisation ...
    rf.nn.load_torch_state_dict(t.model, net.state_dict())  # ... imported into the refopt model
    if kw["optimizer"] == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=kw["learning_rate"])
    else:
        opt = torch.optim.SGD(net.parameters(), lr=kw["learning_rate"], momentum=0.9, nesterov=True)
    x, y = t.data.x_train, t.data.y_train
    ours, theirs = [], []
    for step in range(100):
        r = t.train_step()  # the batch refopt drew; torch trains on the same rows
        for group in opt.param_groups:
            group["lr"] = _torch_lr(kw, step, t.total_steps)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x[r.indices])), torch.from_numpy(y[r.indices]))
        loss.backward()
        if kw.get("clip_norm"):
            torch.nn.utils.clip_grad_norm_(net.parameters(), kw["clip_norm"])
        opt.step()
        ours.append(r.loss)
        theirs.append(loss.item())
        assert r.learning_rate == pytest.approx(_torch_lr(kw, step, t.total_steps), rel=1e-15)
    ours, theirs = np.array(ours), np.array(theirs)
    assert ours[-10:].mean() < 0.5 * ours[:10].mean()  # it learned
    rel = np.abs(ours - theirs) / np.abs(theirs)
    print(f"{case}: loss {ours[0]:.4f} -> {ours[-1]:.4f}, largest relative difference from torch {rel.max():.3g}")
    assert rel.max() <= 1e-10, f"largest relative difference {rel.max():.3g} at step {int(rel.argmax()) + 1}"
    final = rf.nn.export_torch_state_dict(t.model, net.state_dict())
    for k, v in net.state_dict().items():
        np.testing.assert_allclose(final[k], v.numpy(), rtol=1e-9, atol=1e-12)


def test_checkpoint_has_no_pickle_and_reads_with_numpy_alone(tmp_path) -> None:
    fit(out=tmp_path, max_steps=3, **QUIET, **SMALL)
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as f:
        meta = json.loads(f["__refopt__"].tobytes())
        names = set(f.files)
    assert meta["kind"] == CHECKPOINT_KIND and meta["progress"]["step"] == 3
    assert {"model/fc1/kernel", "optimizer/fc1/kernel/m", "optimizer/fc1/kernel/v", "data/order"} <= names
    assert oct(os.stat(tmp_path / "metrics.jsonl").st_mode & 0o777) != "0o600"
