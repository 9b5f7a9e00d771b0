"""Trajectory files: exact round trip; corrupted, truncated, pickled and future-version
files refused; the documented NumPy-only loader works."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from refopt.io import FileFormatError, write_arrays
from refopt.oracle import scenarios as S
from refopt.oracle.trajectory import load


@pytest.fixture(scope="module")
def traj():
    return S.run_scenario(S.get("adam-torch-amsgrad"))


def test_round_trip_is_exact(traj, tmp_path) -> None:
    path = traj.save(tmp_path / "t.npz")
    back = load(path)
    assert back.names == traj.names and back.meta == traj.meta and back.scenario == traj.scenario
    for n in traj.names:
        assert back.params[n].tobytes() == traj.params[n].tobytes()
        assert back.grads[n].tobytes() == traj.grads[n].tobytes()
        assert np.array_equal(back.grad_present[n], traj.grad_present[n])
        for s in traj.slots[n]:
            assert back.slots[n][s].tobytes() == traj.slots[n][s].tobytes()
    assert back.lrs.tobytes() == traj.lrs.tobytes()


def test_numpy_only_loader_from_the_docs(traj, tmp_path) -> None:
    path = traj.save(tmp_path / "golden.npz")
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["__refopt__"].tobytes())
        params = {n: f[f"params/{n}"] for n in meta["names"]}
        grads = {n: f[f"grads/{n}"] for n in meta["names"]}
        lrs = f["lrs"]
    assert set(params) == set(traj.names) and lrs.shape == (traj.steps,)
    assert params["head/kernel"].shape == (traj.steps + 1, 9, 7) and grads["head/kernel"].shape == (traj.steps, 9, 7)
    assert meta["scenario"]["name"] == "adam-torch-amsgrad" and meta["machine"]["cpu"]


def test_bad_files_are_refused(traj, tmp_path) -> None:
    path = traj.save(tmp_path / "t.npz")
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(FileFormatError, match="truncated or corrupted|not a readable"):
        load(tmp_path / "trunc.npz")
    bad = bytearray(raw)
    bad[len(bad) // 2] ^= 0x55
    (tmp_path / "flip.npz").write_bytes(bytes(bad))
    with pytest.raises(FileFormatError):
        load(tmp_path / "flip.npz")
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"params": traj.params}))
    with pytest.raises(FileFormatError, match="Python objects"):
        load(tmp_path / "p.npz")
    future = write_arrays(tmp_path / "future.npz", {"lrs": traj.lrs}, "refopt.trajectory", 2, extra={"names": []})
    with pytest.raises(FileFormatError, match="schema version 2; this refopt .* reads 1"):
        load(future)
    other = write_arrays(tmp_path / "other.npz", {"x": np.zeros(1)}, "refopt.checkpoint", 1)
    with pytest.raises(FileFormatError, match="holds a 'refopt.checkpoint', not a 'refopt.trajectory'"):
        load(other)
