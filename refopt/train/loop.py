"""The training loop behind ``refopt train``: minibatch training of a classifier with
evaluation each epoch, metrics, checkpoints, and resumption that reproduces an
uninterrupted run bit for bit.

One step (``Trainer.train_step``), for the minibatch ``B`` of the current epoch's order:

    logits = model(x[B]);  loss = mean_{i in B} -log softmax(logits_i)[y_i]
    grads  = d loss / d variables;  optimizer.apply_gradients(grads)   (clipped, scheduled)

Determinism.  ``SeedSequence(seed).spawn(2)`` gives two streams: the first initialises
the model (layer by layer, in order), the second (PCG64) draws each epoch's order, a
permutation of the training examples, at the epoch's first step.  Everything a step
depends on -- the variables, the optimizer's slots, step counts and running products,
the data-order generator's state, the current order and the position in it, the epoch's
running loss -- is in the checkpoint, so a resumed run performs exactly the operations
an uninterrupted run performs, and ends with the same bits.

Schedules span ``epochs * steps_per_epoch`` steps; ``max_steps`` only stops early (it
does not shorten the schedule), so a run stopped there and resumed equals a run that was
never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from refopt import backend
from refopt._version import __version__
from refopt.autodiff.tensor import Tensor, constant, to_numpy
from refopt.io import read_arrays, write_arrays
from refopt.nn.layers import Sequential
from refopt.nn.losses import sparse_softmax_cross_entropy
from refopt.nn.module import CheckpointError
from refopt.optim import SGD, Adam, AdamW, schedules
from refopt.optim.conventions import CONVENTIONS
from refopt.train.data import Dataset, load_dataset
from refopt.train.models import MODELS, build_model

__all__ = [
    "TrainConfig",
    "Trainer",
    "StepResult",
    "TrainResult",
    "TrainingError",
    "fit",
    "load_model",
    "plot_curves",
    "OPTIMIZERS",
    "SCHEDULES",
    "CHECKPOINT_KIND",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear")
CHECKPOINT_KIND = "refopt.train_checkpoint"
CHECKPOINT_SCHEMA = 1
CHECKPOINT_FILE = "checkpoint.npz"
MODEL_FILE = "model.npz"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
CONFIG_FILE = "config.json"
EVAL_BATCH = 1024
_SPLITS = ("train", "test")


class TrainingError(RuntimeError):
    """Training cannot go on (the loss is no longer finite); nothing was updated."""


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a run is: data, model, optimizer, schedule, batch size, epochs, seed, dtype,
    backend.  (Where it writes and when it stops are arguments of :func:`fit`.)"""

    data: str = "digits"
    label_column: str = "label"
    num_classes: int | None = None
    test_fraction: float = 0.2
    model: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    channels: tuple[int, ...] = (16, 32)
    optimizer: str = "adam"
    convention: str = "torch"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None
    schedule: str = "constant"
    warmup_steps: int = 0
    clip_norm: float | None = None
    clip_value: float | None = None
    batch_size: int = 32
    epochs: int = 20
    seed: int = 0
    dtype: str = "float32"
    backend: str = "numpy"

    def __post_init__(self) -> None:
        for name in ("hidden", "channels"):  # lists (JSON, argparse) become tuples
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))

    def validate(self) -> TrainConfig:
        """Check every field; raise ``ValueError`` naming the first bad one.  Returns self."""

        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        def choice(name: str, options: tuple[str, ...]) -> None:
            if getattr(self, name) not in options:
                raise bad(name, f"one of {', '.join(options)}")

        if not isinstance(self.data, str) or not self.data:
            raise bad("data", "'digits' or the path of a .npz or .csv file")
        if not isinstance(self.label_column, str) or not self.label_column:
            raise bad("label_column", "a column name")
        if self.num_classes is not None and not (_is_int(self.num_classes) and self.num_classes >= 2):
            raise bad("num_classes", "an integer >= 2 (or None: the largest label + 1)")
        if not (_is_num(self.test_fraction) and 0 < self.test_fraction < 1):
            raise bad("test_fraction", "a number in (0, 1)")
        choice("model", MODELS)
        for name in ("hidden", "channels"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not all(_is_int(w) and w > 0 for w in v):
                raise bad(name, "a list of positive integers")
        if self.model == "cnn" and not self.channels:
            raise bad("channels", "at least one channel count for the cnn")
        choice("optimizer", OPTIMIZERS)
        choice("convention", CONVENTIONS)
        if not (_is_num(self.learning_rate) and self.learning_rate > 0):
            raise bad("learning_rate", "a positive number")
        if not (_is_num(self.momentum) and self.momentum >= 0):
            raise bad("momentum", "a non-negative number")
        if self.optimizer != "sgd" and (self.momentum != 0 or self.nesterov):
            raise ValueError(f"momentum and nesterov apply to the sgd optimizer, not {self.optimizer}")
        if not isinstance(self.nesterov, bool):
            raise bad("nesterov", "true or false")
        if self.weight_decay is not None and not (_is_num(self.weight_decay) and self.weight_decay >= 0):
            raise bad("weight_decay", "a non-negative number (or None: the optimizer's default)")
        choice("schedule", SCHEDULES)
        if not (_is_int(self.warmup_steps) and self.warmup_steps >= 0):
            raise bad("warmup_steps", "a non-negative integer")
        for name in ("clip_norm", "clip_value"):
            v = getattr(self, name)
            if v is not None and not (_is_num(v) and v > 0):
                raise bad(name, "a positive number (or None: no clipping)")
        if self.clip_norm is not None and self.clip_value is not None:
            raise ValueError("set at most one of clip_norm and clip_value")
        for name in ("batch_size", "epochs"):
            if not (_is_int(getattr(self, name)) and getattr(self, name) >= 1):
                raise bad(name, "a positive integer")
        if not (_is_int(self.seed) and self.seed >= 0):
            raise bad("seed", "a non-negative integer")
        choice("dtype", ("float32", "float64"))
        choice("backend", ("numpy", "cupy"))
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in self.fields()}

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; unknown keys are refused."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a training configuration must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in cls.fields()}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {', '.join(sorted(known))}")
        return cls(**d).validate()


@dataclasses.dataclass
class StepResult:
    """One optimizer step: the minibatch (indices into the training split), its mean loss
    before the update, how many it classified correctly, the learning rate the update
    used -- and, when the step ended an epoch, that epoch's training loss and accuracy."""

    step: int
    epoch: int
    loss: float
    correct: int
    indices: np.ndarray
    learning_rate: float
    epoch_done: bool = False
    train_loss: float | None = None
    train_accuracy: float | None = None


def _check_backend(name: str) -> None:
    if name == "cupy" and not backend.cupy_available():
        try:
            import cupy  # noqa: F401
        except ImportError:
            raise ValueError("backend 'cupy' needs CuPy, which is not installed: pip install 'refopt[gpu]'") from None
        raise ValueError("backend 'cupy': CuPy is installed but sees no CUDA device")


def _resolve_data(spec: str) -> str:
    """A file's absolute path (so a checkpoint finds it from any folder); 'digits' as is."""
    if spec == "digits" or spec.startswith("memory:"):
        return spec
    return str(Path(spec).expanduser().resolve())


class Trainer:
    """The state of one training run and its step.

    >>> t = Trainer(TrainConfig(epochs=5))
    >>> while not t.finished:
    ...     r = t.train_step()
    ...     if r.epoch_done:
    ...         print(r.epoch, t.evaluate())
    """

    def __init__(self, config: TrainConfig | None = None, data: Dataset | str | None = None, **overrides: Any) -> None:
        known = {f.name for f in TrainConfig.fields()}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {', '.join(sorted(known))}")
        cfg = dataclasses.replace(config or TrainConfig(), **overrides)
        if isinstance(data, Dataset):
            cfg = dataclasses.replace(cfg, data=f"memory:{data.name}")
        elif data is not None:
            cfg = dataclasses.replace(cfg, data=str(data))
        cfg = dataclasses.replace(cfg, data=_resolve_data(cfg.data)).validate()
        _check_backend(cfg.backend)
        if not isinstance(data, Dataset):
            if cfg.data.startswith("memory:"):
                raise ValueError(
                    f"this run was trained on data given in Python ({cfg.data[7:]!r}); pass the same Dataset again"
                )
            data = load_dataset(cfg.data, cfg.label_column, cfg.test_fraction, cfg.num_classes)
        self.config = cfg
        self.data = data
        self.steps_per_epoch = math.ceil(len(data.y_train) / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps ({cfg.warmup_steps}) must be fewer than the run's {self.total_steps} steps")
        init_seq, data_seq = np.random.SeedSequence(cfg.seed).spawn(2)
        with backend.use_backend(cfg.backend):
            self.model: Sequential = build_model(
                cfg.model,
                data.input_shape,
                data.num_classes,
                cfg.hidden,
                cfg.channels,
                cfg.dtype,
                np.random.default_rng(init_seq),
            )
            self.schedule = self._schedule()
            self.optimizer = self._optimizer()
            self._x = {s: backend.move(getattr(data, f"x_{s}").astype(cfg.dtype), cfg.backend) for s in _SPLITS}
            self._y = {s: backend.move(getattr(data, f"y_{s}"), cfg.backend) for s in _SPLITS}
        self._data_rng = np.random.Generator(np.random.PCG64(data_seq))
        self.step = 0  # optimizer steps taken
        self.epoch = 0  # epochs completed
        self.batch = 0  # steps taken in the current epoch
        self._order: np.ndarray | None = None
        self._loss_sum, self._correct, self._seen = 0.0, 0, 0

    # -- construction ----------------------------------------------------------------------
    def _schedule(self) -> Any:
        cfg = self.config
        sched: Any = float(cfg.learning_rate)
        if cfg.schedule == "cosine":
            sched = schedules.cosine_decay(cfg.learning_rate, self.total_steps)
        elif cfg.schedule == "linear":
            sched = schedules.polynomial_decay(cfg.learning_rate, self.total_steps, 0.0, 1.0)
        if cfg.warmup_steps:
            sched = schedules.linear_warmup(sched, cfg.warmup_steps)
        return sched

    def _optimizer(self) -> Any:
        cfg = self.config
        common = dict(
            learning_rate=self.schedule,
            convention=cfg.convention,
            global_clipnorm=cfg.clip_norm,
            clipvalue=cfg.clip_value,
        )
        params = self.model.trainable_variables()
        if cfg.optimizer == "sgd":
            return SGD(
                params,
                momentum=cfg.momentum,
                nesterov=cfg.nesterov,
                weight_decay=cfg.weight_decay or 0.0,
                **common,
            )
        if cfg.optimizer == "adam":
            return Adam(params, weight_decay=cfg.weight_decay or 0.0, **common)
        return AdamW(params, weight_decay=cfg.weight_decay, **common)

    # -- stepping ---------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """True once every epoch is done."""
        return self.step >= self.total_steps

    def learning_rate(self) -> float:
        """The learning rate the next update uses: ``schedule(optimizer.iterations)``."""
        s = self.schedule
        return float(s(self.optimizer.iterations)) if callable(s) else float(s)

    def _batch(self, split: str, rows: Any) -> tuple[Tensor, Tensor]:
        if split == "train":
            idx = backend.move(rows, self.config.backend)
            return constant(self._x[split][idx]), constant(self._y[split][idx])
        return constant(self._x[split][rows]), constant(self._y[split][rows])

    def train_step(self) -> StepResult:
        """One optimizer update on the next minibatch; rolls over to the next epoch after
        its last batch.  A non-finite loss raises :class:`TrainingError` before anything
        changes."""
        if self.finished:
            raise RuntimeError(f"training is complete ({self.config.epochs} epochs, {self.total_steps} steps)")
        cfg = self.config
        if self._order is None:
            self._order = self._data_rng.permutation(len(self.data.y_train))
        idx = self._order[self.batch * cfg.batch_size : (self.batch + 1) * cfg.batch_size]
        # a diverging run overflows: the loss check below reports it, NumPy need not warn
        with backend.use_backend(cfg.backend), np.errstate(over="ignore", invalid="ignore"):
            xb, yb = self._batch("train", idx)
            self.model.train()
            logits = self.model(xb)
            loss = sparse_softmax_cross_entropy(yb, logits, reduction="mean")
            value = float(loss.item())
            if not math.isfinite(value):
                raise TrainingError(
                    f"the loss is {value} at step {self.step + 1} (epoch {self.epoch + 1}); nothing was updated. "
                    "Lower the learning rate or clip the gradients (--clip-norm)."
                )
            lr = self.learning_rate()
            self.optimizer.apply_gradients(self.optimizer.compute_gradients(loss))
            xp = backend.namespace(logits.data)
            correct = int(xp.sum(xp.argmax(logits.data, axis=-1) == yb.data))
        self._loss_sum += value * len(idx)
        self._correct += correct
        self._seen += len(idx)
        self.step += 1
        self.batch += 1
        result = StepResult(self.step, self.epoch + 1, value, correct, idx, lr)
        if self.batch == self.steps_per_epoch:
            result.epoch_done = True
            result.train_loss = self._loss_sum / self._seen
            result.train_accuracy = self._correct / self._seen
            self.epoch += 1
            self.batch = 0
            self._order = None
            self._loss_sum, self._correct, self._seen = 0.0, 0, 0
        return result

    @property
    def running(self) -> tuple[float, float]:
        """The current epoch's mean training loss and accuracy so far (NaN before a step)."""
        if not self._seen:
            return math.nan, math.nan
        return self._loss_sum / self._seen, self._correct / self._seen

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """``{"loss": mean cross-entropy, "accuracy": fraction correct}`` on a split
        (``"test"`` or ``"train"``), in eval mode, batches of 1024; changes no state."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        n = int(self._y[split].shape[0])
        total, correct = 0.0, 0
        with backend.use_backend(self.config.backend), np.errstate(over="ignore", invalid="ignore"):
            self.model.eval()
            try:
                for lo in range(0, n, EVAL_BATCH):
                    xb, yb = self._batch(split, slice(lo, min(lo + EVAL_BATCH, n)))
                    logits = self.model(xb)
                    per = sparse_softmax_cross_entropy(yb, logits)
                    total += float(np.sum(to_numpy(per), dtype=np.float64))
                    xp = backend.namespace(logits.data)
                    correct += int(xp.sum(xp.argmax(logits.data, axis=-1) == yb.data))
            finally:
                self.model.train()
        return {"loss": total / n, "accuracy": correct / n}

    # -- checkpoints ------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, metadata)``: everything the next step depends on."""
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        osd = self.optimizer.state_dict()
        for name, entry in osd["variables"].items():
            for slot, a in entry["slots"].items():
                arrays[f"optimizer/{name}/{slot}"] = a
        if self._order is not None:
            arrays["data/order"] = self._order
        meta = {
            "config": self.config.to_dict(),
            "data": {"name": self.data.name, "fingerprint": self.data.fingerprint()},
            "progress": {
                "step": self.step,
                "epoch": self.epoch,
                "batch": self.batch,
                "loss_sum": self._loss_sum,
                "correct": self._correct,
                "seen": self._seen,
            },
            "data_rng": self._data_rng.bit_generator.state,
            "optimizer": {
                **{k: osd[k] for k in ("rule", "convention", "iterations", "groups")},
                "steps": {n: e["step"] for n, e in osd["variables"].items()},
            },
        }
        return arrays, meta

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write :meth:`state` to ``path`` atomically (refopt.io: temporary file, fsync,
        rename): a crash leaves the previous checkpoint whole."""
        arrays, meta = self.state()
        return write_arrays(path, arrays, CHECKPOINT_KIND, CHECKPOINT_SCHEMA, extra=meta)

    @classmethod
    def from_checkpoint(cls, path: str | Path, data: Dataset | str | None = None) -> Trainer:
        """A trainer continuing from a checkpoint written by :meth:`save_checkpoint`.

        ``data``: the data to use instead of the configured path (a moved file, or the
        Dataset given in Python); it must be the data the run was trained on."""
        arrays, meta = read_arrays(path, CHECKPOINT_KIND, (CHECKPOINT_SCHEMA,))
        where = f"checkpoint {str(path)!r}"
        try:
            config = TrainConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: its training configuration is unusable: {exc}") from None
        trainer = cls(config, data)
        trainer._restore(arrays, meta, where)
        return trainer

    def _restore(self, arrays: dict[str, np.ndarray], meta: Mapping[str, Any], where: str) -> None:
        try:
            fingerprint = meta["data"]["fingerprint"]
            progress = dict(meta["progress"])
            rng_state = meta["data_rng"]
            opt_meta = dict(meta["optimizer"])
            step, epoch, batch = (progress[k] for k in ("step", "epoch", "batch"))
            loss_sum, correct, seen = (progress[k] for k in ("loss_sum", "correct", "seen"))
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{where}: metadata is incomplete (missing {exc})") from None
        if fingerprint != self.data.fingerprint():
            raise CheckpointError(
                f"{where}: was trained on other data than {self.data.name!r} (the arrays' sha256 differ); "
                "resume with the same data"
            )
        if not all(_is_int(v) and v >= 0 for v in (step, epoch, batch, correct, seen)) or not _is_num(loss_sum):
            raise CheckpointError(f"{where}: progress counters are invalid: {progress}")
        if batch >= self.steps_per_epoch or step != epoch * self.steps_per_epoch + batch or step > self.total_steps:
            raise CheckpointError(
                f"{where}: step {step} does not fit epoch {epoch}, batch {batch} at {self.steps_per_epoch} steps "
                "per epoch"
            )
        order = arrays.pop("data/order", None)
        n = len(self.data.y_train)
        if batch > 0 and (
            order is None
            or order.shape != (n,)
            or order.dtype.kind not in "iu"
            or not np.array_equal(np.sort(order), np.arange(n))
        ):
            raise CheckpointError(f"{where}: the data order is missing or not a permutation of {n} examples")
        model_state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
        variables: dict[str, dict[str, Any]] = {}
        steps = opt_meta.get("steps", {})
        for name, s in steps.items() if isinstance(steps, dict) else ():
            variables[name] = {"step": s, "slots": {}}
        for key, a in arrays.items():
            if key.startswith("optimizer/"):
                name, slot = key[len("optimizer/") :].rsplit("/", 1)
                variables.setdefault(name, {"step": 0, "slots": {}})["slots"][slot] = a
        unknown = [k for k in arrays if not k.startswith(("model/", "optimizer/"))]
        if unknown:
            raise CheckpointError(f"{where}: unexpected arrays {unknown}")
        rng = np.random.Generator(np.random.PCG64())
        try:
            rng.bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{where}: the data-order generator state is unusable: {exc}") from None
        osd = {**{k: opt_meta.get(k) for k in ("rule", "convention", "iterations", "groups")}, "variables": variables}
        if not _is_int(osd["iterations"]) or osd["iterations"] < 0:
            raise CheckpointError(f"{where}: optimizer iterations {osd['iterations']!r} is not a count")
        # check both before changing either: the model refuses a bad state whole, the
        # optimizer too; a fresh optimizer stands in to trial the optimizer state
        trial = self._optimizer()
        try:
            trial.load_state_dict(osd)
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{where}: optimizer state does not fit: {exc}") from None
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(osd)
        self._data_rng = rng
        self._order = None if batch == 0 else order.astype(np.int64)
        self.step, self.epoch, self.batch = int(step), int(epoch), int(batch)
        self._loss_sum, self._correct, self._seen = float(loss_sum), int(correct), int(seen)


# -- outputs ------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[Any], None], binary: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plot_curves(history: list[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Write a PNG of training and test loss (left) and accuracy (right) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], marker=".", label="train")
    ax1.plot(epochs, [r["test_loss"] for r in history], marker=".", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.set_yscale("log")
    ax1.set_title("loss")
    ax2.plot(epochs, [100 * r["train_accuracy"] for r in history], marker=".", label="train")
    ax2.plot(epochs, [100 * r["test_accuracy"] for r in history], marker=".", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.set_title("accuracy")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110), binary=True)
    plt.close(fig)
    return path


def _read_metrics(path: Path, keep_epochs: int) -> list[dict[str, Any]]:
    """The records of the first ``keep_epochs`` epochs (a resumed run recomputes the rest;
    a line torn by a crash is dropped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and _is_int(rec.get("epoch")) and 1 <= rec["epoch"] <= keep_epochs:
            out.append(rec)
    return out


@dataclasses.dataclass
class TrainResult:
    """What :func:`fit` did: the trainer (model, optimizer, data), the per-epoch records,
    and why it stopped (``"finished"``, ``"max_steps"`` or ``"interrupted"``)."""

    trainer: Trainer
    history: list[dict[str, Any]]
    stopped: str
    out: Path | None = None

    @property
    def model(self) -> Sequential:
        return self.trainer.model

    @property
    def optimizer(self) -> Any:
        return self.trainer.optimizer

    @property
    def step(self) -> int:
        return self.trainer.step

    @property
    def final(self) -> dict[str, Any] | None:
        """The last epoch's record (None before the first epoch ends)."""
        return self.history[-1] if self.history else None


class _StopOnInterrupt:
    """While active (main thread only), the first Ctrl-C sets ``requested`` -- the loop
    then stops after the current step and saves -- and a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
                self._installed = True
            except ValueError:
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


_OUR_FILES = (CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE, CURVES_FILE, CONFIG_FILE)


def fit(
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    data: Dataset | str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
    checkpoint_every: int = 100,
    progress: bool = True,
    log: Callable[[str], Any] | None = print,
    **overrides: Any,
) -> TrainResult:
    """Train, evaluating on the test split after every epoch.

    With ``out``, writes there: ``config.json``; ``metrics.jsonl`` (one JSON object per
    epoch: ``epoch``, ``step``, ``train_loss``, ``train_accuracy``, ``test_loss``,
    ``test_accuracy``, ``learning_rate``, ``seconds``, ``examples_per_second``);
    ``checkpoint.npz`` every ``checkpoint_every`` steps and at the end (atomically);
    ``model.npz`` (``Module.save``'s format) and ``curves.png`` at the end.

    ``resume=True`` continues the run in ``out`` from its checkpoint, with the
    checkpoint's configuration (``config`` / ``overrides``, if given, must agree with it;
    ``data`` may point to the same data moved elsewhere).  ``max_steps`` stops once the
    run has taken that many steps in all (0 for no limit).  Ctrl-C stops after the
    current step and saves, as ``max_steps`` does.  ``progress``: a tqdm bar on stderr;
    ``log``: where the one-line epoch summaries go (None: nowhere).
    """
    if max_steps is not None and not (_is_int(max_steps) and max_steps >= 0):
        raise ValueError(f"max_steps must be a non-negative integer, got {max_steps!r}")
    if not (_is_int(checkpoint_every) and checkpoint_every >= 1):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    unknown = sorted(set(overrides) - {f.name for f in TrainConfig.fields()})
    if unknown:
        raise ValueError(f"unknown training options {unknown}")
    max_steps = max_steps or None
    folder = Path(out) if out is not None else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise ValueError(f"out: {str(folder)!r} exists and is not a folder")
    if resume:
        if folder is None:
            raise ValueError("resume needs out: the folder holding the run's checkpoint")
        ckpt = folder / CHECKPOINT_FILE
        if not ckpt.exists():
            raise FileNotFoundError(f"no checkpoint to resume in {str(folder)!r} ({CHECKPOINT_FILE} is missing)")
        trainer = Trainer.from_checkpoint(ckpt, data)
        asked = dataclasses.replace(config, **overrides) if config is not None else None
        given = asked.to_dict() if asked is not None else dict(overrides)
        stored = trainer.config.to_dict()
        diff = [
            f"{k}={given[k]!r} (checkpoint: {stored[k]!r})"
            for k in given
            if k != "data" and (list(given[k]) if isinstance(given[k], tuple) else given[k]) != stored.get(k, given[k])
        ]
        if diff:
            raise ValueError(
                f"a resumed run keeps the configuration of its checkpoint; these options differ: {', '.join(diff)}"
            )
    else:
        present = [n for n in _OUR_FILES if folder is not None and (folder / n).exists()]
        if present and not overwrite:
            raise ValueError(
                f"{str(folder)!r} already holds a training run ({', '.join(present)}); continue it with resume "
                "(--resume) or start over with overwrite (--overwrite)"
            )
        trainer = Trainer(config, data, **overrides)  # options and data checked before the old run goes
        for n in present:
            (folder / n).unlink()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.tmp"):  # left by a process killed while writing
            if any(stale.name.startswith(f".{n}.") for n in _OUR_FILES):
                stale.unlink()
        history = _read_metrics(folder / METRICS_FILE, trainer.epoch) if resume else []
        _atomic_write(folder / METRICS_FILE, lambda fh: fh.writelines(json.dumps(r) + "\n" for r in history), False)
        if not resume:
            info = {
                "config": trainer.config.to_dict(),
                "data": {
                    "name": trainer.data.name,
                    "input_shape": list(trainer.data.input_shape),
                    "num_classes": trainer.data.num_classes,
                    "train_examples": len(trainer.data.y_train),
                    "test_examples": len(trainer.data.y_test),
                    "fingerprint": trainer.data.fingerprint(),
                },
                "refopt_version": __version__,
            }
            _atomic_write(folder / CONFIG_FILE, lambda fh: fh.write(json.dumps(info, indent=2) + "\n"), False)
    else:
        history = []
    return _run(trainer, folder, history, max_steps, checkpoint_every, progress, log)


def _run(
    trainer: Trainer,
    folder: Path | None,
    history: list[dict[str, Any]],
    max_steps: int | None,
    checkpoint_every: int,
    progress: bool,
    log: Callable[[str], Any] | None,
) -> TrainResult:
    from tqdm import tqdm

    cfg = trainer.config
    target = trainer.total_steps if max_steps is None else min(trainer.total_steps, max_steps)
    say = log or (lambda s: None)
    say(
        f"{trainer.data.describe()}; {cfg.model} ({sum(v.size for v in trainer.model.variables()):,} parameters), "
        f"{cfg.optimizer} ({cfg.convention}), {cfg.epochs} epochs of {trainer.steps_per_epoch} steps, "
        f"{cfg.dtype} on {cfg.backend}"
    )
    if trainer.step:
        say(f"resuming at step {trainer.step} (epoch {trainer.epoch + 1}, batch {trainer.batch})")
    saved_at = trainer.step if folder is not None and trainer.step else -1
    stopped = "finished"
    mininterval = 0.25 if sys.stderr.isatty() else 2.0
    bar = tqdm(
        total=target,
        initial=min(trainer.step, target),
        unit="step",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=mininterval,
        leave=True,
    )
    write = (lambda s: bar.write(s, file=sys.stdout)) if progress and log is not None else say
    t_epoch, n_epoch = time.perf_counter(), 0
    try:
        with _StopOnInterrupt() as interrupt:
            while trainer.step < target:
                bar.set_description(f"epoch {trainer.epoch + 1}/{cfg.epochs}", refresh=False)
                r = trainer.train_step()
                n_epoch += len(r.indices)
                elapsed = max(time.perf_counter() - t_epoch, 1e-9)
                loss, acc = (r.train_loss, r.train_accuracy) if r.epoch_done else trainer.running
                rate = n_epoch / elapsed
                bar.set_postfix_str(f"loss {loss:.4f}  acc {100 * acc:.1f}%  {rate:,.0f} ex/s", refresh=False)
                bar.update(1)
                if r.epoch_done:
                    ev = trainer.evaluate("test")
                    rec = {
                        "epoch": r.epoch,
                        "step": r.step,
                        "train_loss": r.train_loss,
                        "train_accuracy": r.train_accuracy,
                        "test_loss": ev["loss"],
                        "test_accuracy": ev["accuracy"],
                        "learning_rate": r.learning_rate,
                        "seconds": round(elapsed, 6),
                        "examples_per_second": round(n_epoch / elapsed, 3),
                    }
                    history.append(rec)
                    if folder is not None:
                        with open(folder / METRICS_FILE, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(rec) + "\n")
                            fh.flush()
                            os.fsync(fh.fileno())
                    write(
                        f"epoch {r.epoch:>3}/{cfg.epochs}  step {r.step:>6}  train_loss {r.train_loss:.4f}  "
                        f"test_loss {ev['loss']:.4f}  test_acc {100 * ev['accuracy']:.2f}%  "
                        f"({elapsed:.2f} s, {n_epoch / elapsed:,.0f} ex/s)"
                    )
                    t_epoch, n_epoch = time.perf_counter(), 0
                if folder is not None and trainer.step % checkpoint_every == 0:
                    trainer.save_checkpoint(folder / CHECKPOINT_FILE)
                    saved_at = trainer.step
                if interrupt.requested:
                    stopped = "interrupted"
                    break
    finally:
        bar.close()
    if stopped != "interrupted" and not trainer.finished:
        stopped = "max_steps"
    if folder is not None:
        if saved_at != trainer.step:
            trainer.save_checkpoint(folder / CHECKPOINT_FILE)
        trainer.model.save(folder / MODEL_FILE)
        if history:
            title = f"{cfg.model} on {trainer.data.name}: {cfg.optimizer} ({cfg.convention})"
            plot_curves(history, folder / CURVES_FILE, title)
        if stopped == "finished":
            say(f"wrote {folder / MODEL_FILE}, {folder / METRICS_FILE}, {folder / CURVES_FILE}")
        else:
            how = "interrupted" if stopped == "interrupted" else f"stopped at --max-steps {max_steps}"
            say(f"{how} at step {trainer.step}/{trainer.total_steps}; continue: refopt train --out {folder} --resume")
    return TrainResult(trainer, history, stopped, folder)


def load_model(out: str | Path) -> Sequential:
    """The model a run in ``out`` trained (``config.json`` + ``model.npz``), on the
    current backend."""
    folder = Path(out)
    try:
        info = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        cfg = TrainConfig.from_dict(info["config"])
        shape, k = tuple(info["data"]["input_shape"]), int(info["data"]["num_classes"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(folder)!r} holds no training run ({CONFIG_FILE} is missing)") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{str(folder / CONFIG_FILE)!r} is not a usable run description: {exc}") from None
    model = build_model(cfg.model, shape, k, cfg.hidden, cfg.channels, cfg.dtype, 0)
    model.load(folder / MODEL_FILE)
    return model
