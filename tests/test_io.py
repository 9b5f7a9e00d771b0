"""refopt.io: the safe .npz + JSON format shared by checkpoints, optimizer state and
golden trajectories."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from refopt import io as rio


def _arrays():
    return {"b/x": np.arange(6, dtype=np.float32).reshape(2, 3), "a/y": np.array([1.5, -2.0]), "n": np.int64(3)}


def test_round_trip_order_and_numpy_only_reader(tmp_path) -> None:
    path = rio.write_arrays(tmp_path / "f.npz", _arrays(), kind="test", schema_version=2, extra={"note": "hi"})
    arrays, meta = rio.read_arrays(path, "test", (1, 2))
    assert list(arrays) == ["b/x", "a/y", "n"]
    assert all(arrays[k].tobytes() == np.asarray(v).tobytes() for k, v in _arrays().items())
    assert meta["note"] == "hi" and meta["schema_version"] == 2 and "refopt_version" in meta
    with np.load(path, allow_pickle=False) as f:  # the documented five-line loader
        plain_meta = json.loads(f["__refopt__"].tobytes())
        plain = {k: f[k] for k in f.files if k != "__refopt__"}
    assert plain_meta == meta and set(plain) == set(arrays)


def test_same_content_same_bytes(tmp_path) -> None:
    a = rio.write_arrays(tmp_path / "a.npz", _arrays(), kind="test", schema_version=1)
    b = rio.write_arrays(tmp_path / "b.npz", _arrays(), kind="test", schema_version=1)
    assert a.read_bytes() == b.read_bytes()


def test_future_schema_and_wrong_kind_are_refused(tmp_path) -> None:
    path = rio.write_arrays(tmp_path / "f.npz", _arrays(), kind="test", schema_version=7)
    with pytest.raises(rio.FileFormatError, match="schema version 7; this refopt .* reads 1, 2"):
        rio.read_arrays(path, "test", (1, 2))
    with pytest.raises(rio.FileFormatError, match="holds a 'test', not a 'refopt.checkpoint'"):
        rio.read_arrays(path, "refopt.checkpoint", (7,))


def test_tampering_with_valid_zip_crcs_is_caught_by_sha256(tmp_path) -> None:
    path = rio.write_arrays(tmp_path / "f.npz", _arrays(), kind="test", schema_version=1)
    with zipfile.ZipFile(path) as z:
        meta = z.read("__refopt__.npy")
    forged = tmp_path / "forged.npz"
    with zipfile.ZipFile(forged, "w") as z:  # a well-formed zip, new CRCs, one array changed
        for name, a in _arrays().items():
            a = np.asarray(a)
            if name == "a/y":
                a = a + 1.0
            with z.open(f"{name}.npy", "w") as out:
                np.lib.format.write_array(out, a)
        z.writestr("__refopt__.npy", meta)
    with pytest.raises(rio.FileFormatError, match="array 'a/y' fails its sha256 check"):
        rio.read_arrays(forged, "test", (1,))


def test_missing_file_and_bad_arrays(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rio.read_arrays(tmp_path / "nope.npz", "test", (1,))
    with pytest.raises(TypeError, match="only numeric and boolean arrays"):
        rio.write_arrays(tmp_path / "o.npz", {"o": np.array([None])}, kind="test", schema_version=1)
    with pytest.raises(ValueError, match="reserved"):
        rio.write_arrays(tmp_path / "r.npz", {"__refopt__": np.zeros(1)}, kind="test", schema_version=1)
    assert not list(tmp_path.iterdir())
