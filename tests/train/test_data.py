"""Training data: the bundled digits against the raw file and the published facts, the
fixed split, and every kind of bad user data refused with a message naming it."""

from __future__ import annotations

import csv
import gzip
import hashlib
from importlib import resources

import numpy as np
import pytest

from refopt.train import DataError, from_arrays, load_csv, load_dataset, load_digits, load_npz, split


def _raw_digits() -> list[list[int]]:
    """The bundled file parsed with the csv module alone (no refopt, no NumPy parsing)."""
    blob = resources.files("refopt").joinpath("data/digits.csv.gz").read_bytes()
    text = gzip.decompress(blob).decode("ascii")
    return [[int(c) for c in row] for row in csv.reader(text.splitlines())]


def test_bundled_digits_are_the_uci_set_scikit_learn_ships() -> None:
    blob = resources.files("refopt").joinpath("data/digits.csv.gz").read_bytes()
    # sha256 of sklearn/datasets/data/digits.csv.gz in the scikit-learn 1.9.1 wheel
    assert hashlib.sha256(blob).hexdigest() == "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
    rows = _raw_digits()
    # the published facts: 1,797 instances, 64 attributes 0..16, 10 classes of ~180
    assert len(rows) == 1797 and {len(r) for r in rows} == {65}
    pixels = [v for r in rows for v in r[:64]]
    assert min(pixels) == 0 and max(pixels) == 16
    counts = [sum(r[64] == k for r in rows) for k in range(10)]
    assert counts == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert resources.files("refopt").joinpath("data/README.md").read_text().count("CC BY 4.0") >= 1


def test_load_digits_scales_reshapes_and_splits_the_raw_rows() -> None:
    rows = np.array(_raw_digits())
    d = load_digits()
    assert (d.name, d.num_classes, d.input_shape) == ("digits", 10, (8, 8, 1))
    assert len(d.y_train) == 1438 and len(d.y_test) == 359  # round(1797 * 0.2) held out
    assert d.x_train.dtype == np.float64 and d.y_train.dtype == np.int64
    # the split: default_rng(0)'s permutation, first 359 held out -- rebuilt here by hand
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(d.x_test.reshape(-1, 64) * 16, rows[perm[:359], :64])
    np.testing.assert_array_equal(d.y_test, rows[perm[:359], 64])
    np.testing.assert_array_equal(d.x_train.reshape(-1, 64) * 16, rows[perm[359:], :64])
    np.testing.assert_array_equal(d.y_train, rows[perm[359:], 64])
    # fixed: the same on every call, whatever the global NumPy state
    np.random.seed(123)
    assert load_digits().fingerprint() == d.fingerprint()
    assert load_dataset("digits").fingerprint() == d.fingerprint()


def test_split_is_disjoint_and_covers_everything() -> None:
    x = np.arange(50.0).reshape(25, 2)
    y = np.arange(25) % 3
    xtr, ytr, xte, yte = split(x, y, 0.2)
    assert len(yte) == 5 and len(ytr) == 20
    assert sorted(np.concatenate([xtr[:, 0], xte[:, 0]]).tolist()) == x[:, 0].tolist()
    with pytest.raises(DataError, match="leaves no test example"):
        split(x[:2], y[:2], 0.1)
    with pytest.raises(DataError, match="leaves no training example"):
        split(x[:2], y[:2], 0.9)


def _npz(path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def test_npz_user_data_with_and_without_its_own_split(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 3)), rng.integers(0, 4, 40)
    d = load_npz(_npz(tmp_path / "a.npz", x=x, y=y))
    assert d.num_classes == int(y.max()) + 1 and len(d.y_test) == 8 and d.input_shape == (3,)
    d = load_npz(_npz(tmp_path / "b.npz", x=x[:30], y=y[:30], x_test=x[30:], y_test=y[30:]), num_classes=6)
    assert d.num_classes == 6 and len(d.y_test) == 10
    np.testing.assert_array_equal(d.x_test, x[30:])
    images = load_npz(_npz(tmp_path / "c.npz", x=rng.random((20, 5, 5)), y=np.arange(20) % 2))
    assert images.input_shape == (5, 5, 1) and images.is_image
    floats = load_npz(_npz(tmp_path / "d.npz", x=x, y=y.astype(np.float32)))  # integral floats are labels
    assert floats.y_train.dtype == np.int64


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((4, 2))}, "missing array 'y'"),
        ({"y": np.zeros(4, int)}, "missing array 'x'"),
        ({"x": np.zeros(4), "y": np.zeros(4, int)}, "array 'x' has shape (4,)"),
        ({"x": np.zeros((4, 2)), "y": np.zeros((4, 2), int)}, "array 'y' has shape (4, 2); expected (4,)"),
        ({"x": np.zeros((4, 2)), "y": np.zeros(3, int)}, "array 'y' has shape (3,); expected (4,)"),
        ({"x": np.array([["a", "b"], ["c", "d"]]), "y": np.zeros(2, int)}, "array 'x' is not numeric"),
        ({"x": np.zeros((4, 2)), "y": np.array(["0", "1", "0", "1"])}, "array 'y' is not numeric"),
        ({"x": np.array([[0.0, 1.0], [np.nan, 2.0]]), "y": np.array([0, 1])}, "holds NaN at index (1, 0)"),
        ({"x": np.array([[0.0, np.inf], [1.0, 2.0]]), "y": np.array([0, 1])}, "an infinite value at index (0, 1)"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, -1, 1])}, "label -1 at example 1 is out of range"),
        ({"x": np.zeros((3, 2)), "y": np.array([0.0, 1.5, 1.0])}, "label 1.5 at example 1 is not an integer"),
        ({"x": np.zeros((3, 2)), "y": np.array([0.0, np.nan, 1.0])}, "array 'y' holds NaN at example 1"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(3, int)}, "every label is 0"),
        ({"x": np.zeros((4, 2)), "y": np.zeros(4, int), "x_test": np.zeros((2, 2))}, "missing array 'y_test'"),
        (
            {"x": np.zeros((4, 2)), "y": np.arange(4) % 2, "x_test": np.zeros((2, 3)), "y_test": np.zeros(2, int)},
            "array 'x_test' has examples of shape (3,)",
        ),
    ],
)
def test_bad_npz_is_refused_with_its_problem(tmp_path, arrays, message) -> None:
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as info:
        load_npz(path)
    assert message in str(info.value) and "bad.npz" in str(info.value)


def test_npz_labels_out_of_a_given_class_count(tmp_path) -> None:
    path = _npz(tmp_path / "k.npz", x=np.zeros((5, 2)), y=np.array([0, 1, 2, 4, 1]))
    with pytest.raises(DataError, match=r"label 4 at example 3 is out of range: labels must be in \[0, 3\)"):
        load_npz(path, num_classes=3)


def test_unreadable_and_pickled_npz_files(tmp_path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2, int))
    with pytest.raises(DataError, match="object, pickled"):
        load_npz(tmp_path / "obj.npz")
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="unknown data format"):
        load_dataset(tmp_path / "data.parquet")


def _csv(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_csv_user_data(tmp_path) -> None:
    rows = ["a,b,label,c"] + [f"{i},{i * 0.5},{i % 3},-{i}" for i in range(20)] + [""]
    d = load_csv(_csv(tmp_path / "ok.csv", "\n".join(rows)))
    assert d.num_classes == 3 and d.input_shape == (3,) and len(d.y_test) == 4
    # features in header order without the label; labels from the label column
    both = np.concatenate([d.x_train, d.x_test])
    labels = np.concatenate([d.y_train, d.y_test])
    order = np.argsort(both[:, 0])
    np.testing.assert_array_equal(both[order], [[i, i * 0.5, -i] for i in range(20)])
    np.testing.assert_array_equal(labels[order], [i % 3 for i in range(20)])
    gz = tmp_path / "ok.csv.gz"
    gz.write_bytes(gzip.compress("\n".join(rows).encode()))
    assert load_dataset(gz).fingerprint() == d.fingerprint()
    renamed = load_csv(_csv(tmp_path / "t.csv", "\n".join(r.replace("label", "digit") for r in rows)), "digit")
    assert renamed.fingerprint() == d.fingerprint()


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b,c\n1,2,0\n", "no column named 'label' for the labels (the header has 'a', 'b', 'c')"),
        ("a,label\n1,0\n2,x1\n", "line 3, column 'label': 'x1' is not a number"),
        ("a,label\n1,0\nabc,1\n", "line 3, column 'a': 'abc' is not a number"),
        ("a,label\n1,0\n,1\n", "line 3, column 'a' is empty"),
        ("a,label\n1,0\nnan,1\n", "line 3, column 'a' is NaN"),
        ("a,label\n1,0\ninf,1\n", "line 3, column 'a' is infinite"),
        ("a,b,label\n1,2,0\n3,1\n", "line 3 has 2 fields, the header (line 1) 3"),
        ("a,label\n1,0\n2,-2\n", "line 3, column 'label': label -2 is out of range"),
        ("a,label\n1,0\n2,1.5\n", "line 3, column 'label': label '1.5' is not an integer"),
        ("", "is empty"),
        ("a,label\n", "has a header but no examples"),
        ("label\n1\n0\n", "no feature column"),
    ],
)
def test_bad_csv_is_refused_with_its_problem(tmp_path, text, message) -> None:
    path = _csv(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert message in str(info.value) and "bad.csv" in str(info.value)


def test_csv_labels_out_of_a_given_class_count(tmp_path) -> None:
    path = _csv(tmp_path / "k.csv", "a,label\n1,0\n2,1\n3,7\n")
    with pytest.raises(DataError, match=r"line 4, column 'label': label 7 is out of range: labels must be in \[0, 2\)"):
        load_csv(path, num_classes=2)


def test_from_arrays_checks_like_a_file() -> None:
    d = from_arrays(np.eye(10), np.arange(10) % 2, name="eye")
    assert d.name == "eye" and d.num_classes == 2
    with pytest.raises(DataError, match="eye: array 'x' holds NaN"):
        from_arrays(np.full((3, 2), np.nan), np.arange(3), name="eye")
