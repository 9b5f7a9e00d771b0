"""Training data: the bundled 8x8 digits, and the user's ``.npz`` or ``.csv`` files.

Every loader returns a :class:`Dataset` (host NumPy arrays: features as float64, labels
as int64) or raises :class:`DataError` naming the file and what is wrong with it -- a
missing array or column, a wrong shape, a non-numeric value, NaN or infinity, a label
that is not an integer or is out of range.  Nothing is silently dropped or converted.

The train/test split is fixed: a permutation drawn from ``numpy.random.default_rng(0)``
(:data:`SPLIT_SEED`, independent of the training seed), its first
``round(n * test_fraction)`` indices the test split.  A ``.npz`` that carries its own
``x_test`` / ``y_test`` keeps that split instead.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from refopt.io import digest

__all__ = [
    "DataError",
    "Dataset",
    "DIGITS_SHA256",
    "SPLIT_SEED",
    "load_dataset",
    "load_digits",
    "load_npz",
    "load_csv",
    "from_arrays",
    "split",
]

SPLIT_SEED = 0
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


class DataError(ValueError):
    """Training data that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Dataset:
    """A classification data set split into train and test.

    ``x_*``: float64, shape ``(examples, *input_shape)``; ``y_*``: int64 labels in
    ``[0, num_classes)``.  Images are ``(H, W, C)`` (NHWC batches).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        return tuple(self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        """True for ``(H, W, C)`` examples (what the CNN takes)."""
        return len(self.input_shape) == 3

    def fingerprint(self) -> str:
        """sha256 over the four arrays (shapes and dtypes included) and the class count:
        a checkpoint records it so that a resumed run is refused other data."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(digest(a).encode())
        h.update(str(self.num_classes).encode())
        return h.hexdigest()

    def describe(self) -> str:
        """One line: name, sizes, example shape, classes."""
        return (
            f"{self.name}: {len(self.y_train):,} train / {len(self.y_test):,} test examples of shape "
            f"{self.input_shape}, {self.num_classes} classes"
        )


# -- the split -------------------------------------------------------------------------------


def split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, where: str = "data"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: the fixed permutation of
    ``default_rng(SPLIT_SEED)``, its first ``round(n * test_fraction)`` indices held out."""
    n = len(y)
    if not (isinstance(test_fraction, (int, float)) and 0.0 < test_fraction < 1.0):
        raise DataError(f"{where}: test_fraction must be in (0, 1), got {test_fraction!r}")
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n_test > n - 1:
        raise DataError(
            f"{where}: a test fraction of {test_fraction} of {n} examples leaves "
            f"{'no test' if n_test < 1 else 'no training'} example"
        )
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


# -- checks shared by the loaders ------------------------------------------------------------


def _check_features(x: np.ndarray, where: str, what: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: {what} is not numeric (dtype {x.dtype})")
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{where}: {what} has shape {x.shape}; expected (examples, features) or images "
            "(examples, height, width) or (examples, height, width, channels)"
        )
    if x.shape[0] == 0:
        raise DataError(f"{where}: {what} holds no examples")
    if min(x.shape[1:]) == 0:
        raise DataError(f"{where}: {what} has shape {x.shape}: an example holds no features")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(x[idx]) else "an infinite value"
        raise DataError(f"{where}: {what} holds {kind} at index {idx} (example {idx[0]})")
    if x.ndim == 3:  # (n, H, W): one channel
        x = x[..., None]
    return x


def _check_labels(y: np.ndarray, n: int, where: str, what: str) -> np.ndarray:
    if y.dtype.kind not in "iuf":
        raise DataError(f"{where}: {what} is not numeric (dtype {y.dtype}); labels are integers 0, 1, 2, ...")
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{where}: {what} has shape {y.shape}; expected ({n},): one integer label per example")
    if y.dtype.kind == "f":
        nan = np.isnan(y)
        if nan.any():
            raise DataError(f"{where}: {what} holds NaN at example {int(np.argmax(nan))}")
        frac = ~np.isfinite(y) | (y != np.round(y))
        if frac.any():
            i = int(np.argmax(frac))
            raise DataError(f"{where}: {what}: label {float(y[i])!r} at example {i} is not an integer")
    return y.astype(np.int64)


def _check_range(labels: list[tuple[np.ndarray, str]], num_classes: int | None, where: str) -> int:
    """The class count: ``num_classes``, or the largest label + 1; every label in range."""
    if num_classes is not None and int(num_classes) < 2:
        raise DataError(f"{where}: num_classes must be at least 2, got {num_classes}")
    k = max(int(y.max()) for y, _ in labels) + 1 if num_classes is None else int(num_classes)
    rule = "non-negative (0, 1, 2, ...)" if num_classes is None else f"in [0, {k})"
    for y, what in labels:
        bad = (y < 0) | (y >= k)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: {what}: label {int(y[i])} at example {i} is out of range: labels must be {rule}")
    if k < 2:
        raise DataError(f"{where}: every label is 0; a classifier needs at least 2 classes")
    return k


# -- loaders -------------------------------------------------------------------------------


def load_digits(test_fraction: float = 0.2) -> Dataset:
    """The bundled 8x8 handwritten digits (UCI "Optical Recognition of Handwritten
    Digits", Alpaydin & Kaynak, CC BY 4.0; the copy scikit-learn ships): 1,797 images
    of shape (8, 8, 1), pixels 0..16 scaled to [0, 1] (divided by 16), labels 0..9.
    See refopt/data/README.md."""
    blob = resources.files("refopt").joinpath("data/digits.csv.gz").read_bytes()
    if hashlib.sha256(blob).hexdigest() != DIGITS_SHA256:
        raise DataError("the bundled digits file refopt/data/digits.csv.gz fails its sha256 check (reinstall refopt)")
    table = np.loadtxt(io.BytesIO(gzip.decompress(blob)), delimiter=",", dtype=np.int64)
    x = (table[:, :64].astype(np.float64) / 16.0).reshape(-1, 8, 8, 1)
    y = table[:, 64]
    xtr, ytr, xte, yte = split(x, y, test_fraction, "digits")
    return Dataset("digits", xtr, ytr, xte, yte, 10)


def load_npz(path: str | Path, test_fraction: float = 0.2, num_classes: int | None = None) -> Dataset:
    """Arrays ``x`` (features ``(n, d)`` or images ``(n, H, W[, C])``) and ``y``
    (``n`` integer labels), optionally ``x_test`` / ``y_test`` (then no split is made).
    Read without pickle."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{where}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.files)
            arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test") if k in names}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"{where}: holds a non-numeric (object, pickled) array; refusing to load it") from None
        raise DataError(f"{where}: not a readable .npz file ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{where}: not a readable .npz file ({exc})") from None
    for k in ("x", "y"):
        if k not in arrays:
            raise DataError(f"{where}: missing array {k!r} (the file holds: {', '.join(names) or 'nothing'})")
    return from_arrays(
        arrays["x"],
        arrays["y"],
        arrays.get("x_test"),
        arrays.get("y_test"),
        num_classes,
        test_fraction,
        path.name,
        where,
    )


def from_arrays(
    x: Any,
    y: Any,
    x_test: Any = None,
    y_test: Any = None,
    num_classes: int | None = None,
    test_fraction: float = 0.2,
    name: str = "arrays",
    where: str | None = None,
) -> Dataset:
    """A :class:`Dataset` from arrays in memory, checked as :func:`load_npz` checks a file:
    ``x`` features ``(n, d)`` or images ``(n, H, W[, C])``, ``y`` ``n`` integer labels;
    with ``x_test`` / ``y_test`` that split is used, otherwise the fixed split is made."""
    where = where or name
    if (x_test is None) != (y_test is None):
        have, lack = ("x_test", "y_test") if x_test is not None else ("y_test", "x_test")
        raise DataError(f"{where}: has {have!r} but is missing array {lack!r}")
    x = _check_features(np.asarray(x), where, "array 'x'")
    y = _check_labels(np.asarray(y), x.shape[0], where, "array 'y'")
    if x_test is not None:
        xte = _check_features(np.asarray(x_test), where, "array 'x_test'")
        if xte.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{where}: array 'x_test' has examples of shape {xte.shape[1:]}, array 'x' of shape {x.shape[1:]}"
            )
        yte = _check_labels(np.asarray(y_test), xte.shape[0], where, "array 'y_test'")
        k = _check_range([(y, "array 'y'"), (yte, "array 'y_test'")], num_classes, where)
        return Dataset(name, x, y, xte, yte, k)
    k = _check_range([(y, "array 'y'")], num_classes, where)
    return Dataset(name, *split(x, y, test_fraction, where), k)


def _number(cell: str, where: str, line: int, column: str) -> float:
    text = cell.strip()
    if not text:
        raise DataError(f"{where}: line {line}, column {column!r} is empty")
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: line {line}, column {column!r}: {text!r} is not a number") from None
    if math.isnan(value):
        raise DataError(f"{where}: line {line}, column {column!r} is NaN")
    if math.isinf(value):
        raise DataError(f"{where}: line {line}, column {column!r} is infinite ({text!r})")
    return value


def load_csv(
    path: str | Path, label_column: str = "label", test_fraction: float = 0.2, num_classes: int | None = None
) -> Dataset:
    """A CSV file (optionally gzip-compressed, ``.csv.gz``) with a header row: the column
    named ``label_column`` holds integer labels, every other column is a feature."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{where}: cannot be read ({exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{where}: is not UTF-8 text; expected a CSV file") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise DataError(f"{where}: not valid CSV ({exc})") from None
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]  # blank lines skipped
    if not numbered:
        raise DataError(f"{where}: is empty; expected a header row naming the columns, then one row per example")
    header_line, header = numbered[0]
    header = [h.strip() for h in header]
    if label_column not in header:
        shown = ", ".join(repr(h) for h in header[:12]) + (", ..." if len(header) > 12 else "")
        raise DataError(f"{where}: no column named {label_column!r} for the labels (the header has {shown})")
    if header.count(label_column) > 1:
        raise DataError(f"{where}: the header names column {label_column!r} {header.count(label_column)} times")
    if len(header) < 2:
        raise DataError(f"{where}: has no feature column besides the label column {label_column!r}")
    body = numbered[1:]
    if not body:
        raise DataError(f"{where}: has a header but no examples")
    li = header.index(label_column)
    feats = [j for j in range(len(header)) if j != li]
    x = np.empty((len(body), len(feats)), dtype=np.float64)
    y = np.empty(len(body), dtype=np.float64)
    for r, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise DataError(
                f"{where}: line {line} has {len(row)} fields, the header (line {header_line}) {len(header)}"
            )
        for c, j in enumerate(feats):
            x[r, c] = _number(row[j], where, line, header[j])
        label = _number(row[li], where, line, label_column)
        if label != round(label):
            raise DataError(
                f"{where}: line {line}, column {label_column!r}: label {row[li].strip()!r} is not an integer"
            )
        y[r] = label
    labels = y.astype(np.int64)
    limit = num_classes if num_classes is not None else None
    bad = (labels < 0) if limit is None else (labels < 0) | (labels >= limit)
    if bad.any():
        r = int(np.argmax(bad))
        rule = "non-negative (0, 1, 2, ...)" if limit is None else f"in [0, {limit})"
        raise DataError(
            f"{where}: line {body[r][0]}, column {label_column!r}: label {int(labels[r])} is out of range: labels "
            f"must be {rule}"
        )
    k = _check_range([(labels, f"column {label_column!r}")], num_classes, where)
    return Dataset(path.name, *split(x, labels, test_fraction, where), k)


def load_dataset(
    spec: str | Path = "digits",
    label_column: str = "label",
    test_fraction: float = 0.2,
    num_classes: int | None = None,
) -> Dataset:
    """``"digits"`` (bundled), a ``.npz`` file (arrays ``x``, ``y``) or a ``.csv`` /
    ``.csv.gz`` file (header row; labels in ``label_column``)."""
    text = str(spec)
    if text == "digits":
        if num_classes not in (None, 10):
            raise DataError(f"digits: has 10 classes, num_classes={num_classes} was asked for")
        return load_digits(test_fraction)
    lower = text.lower()
    if lower.endswith(".npz"):
        return load_npz(text, test_fraction, num_classes)
    if lower.endswith(".csv") or lower.endswith(".csv.gz"):
        return load_csv(text, label_column, test_fraction, num_classes)
    raise DataError(
        f"{text}: unknown data format; use 'digits', a .npz file (arrays x, y) or a .csv file (header row, "
        "a label column)"
    )
