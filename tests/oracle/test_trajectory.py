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


def _rewritten(path, tmp_path, change):
    """The trajectory file at ``path`` with its arrays / metadata changed, re-signed."""
    from refopt.io import read_arrays

    arrays, meta = read_arrays(path, "refopt.trajectory", (1,))
    extra = {k: meta[k] for k in ("names", "slots", "meta", "scenario", "machine", "numpy_version")}
    change(arrays, extra)
    return write_arrays(tmp_path / "changed.npz", arrays, "refopt.trajectory", 1, extra=extra)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, m: a.pop("slots/head/kernel/v_max"), r"missing \['slots/head/kernel/v_max'\]"),
        (lambda a, m: a.update({"slots/head/kernel/extra": a["slots/head/kernel/m"]}), r"unexpected \['slots/head"),
        (lambda a, m: m["slots"]["head/kernel"].append("w"), r"missing \['slots/head/kernel/w'\]"),
        (lambda a, m: m.pop("names"), r"metadata fields do not fit \(missing \['names'\], unexpected \[\]\)"),
        (lambda a, m: m.update(colour="red"), r"metadata fields do not fit \(missing \[\], unexpected \['colour'\]\)"),
        (lambda a, m: m.update(names=["head/kernel", "head/kernel"]), "'names' must be a list of distinct strings"),
        (
            lambda a, m: a.update(lrs=a["lrs"][:-1]),
            r"'params/encoder/dense/kernel' must be float32 or float64 of shape \(20, ...\), got float32\(21",
        ),
        (lambda a, m: a["lrs"].__setitem__(3, -0.1), "'lrs' holds a negative or non-finite learning rate"),
        (lambda a, m: a.update(lrs=a["lrs"].astype(np.float32)), "'lrs' must be float64"),
        (
            lambda a, m: a.update({"grads/head/kernel": a["grads/head/kernel"].astype(np.float64)}),
            r"'grads/head/kernel' must be float32\(20, 9, 7\), got float64",
        ),
        (
            lambda a, m: a.update({"grad_present/head/kernel": a["grad_present/head/kernel"][:5]}),
            r"'grad_present/head/kernel' must be bool\(20,\)",
        ),
        (
            lambda a, m: a.update({"slots/head/kernel/m": a["slots/head/kernel/m"][:, :3]}),
            r"'slots/head/kernel/m' must be float32\(20, 9, 7\)",
        ),
    ],
)
def test_files_that_do_not_make_a_trajectory_are_refused(traj, tmp_path, change, message) -> None:
    path = traj.save(tmp_path / "t.npz")
    with pytest.raises(FileFormatError, match=message):
        load(_rewritten(path, tmp_path, change))
