"""refopt.io: the safe .npz + JSON format shared by checkpoints, optimizer state and
golden trajectories."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import struct
import subprocess
import sys
import zipfile
import zlib

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


def test_non_ascii_names_round_trip(tmp_path) -> None:
    arrays = {"größe/ß": np.arange(3.0), "模型/权重": np.ones(2, np.float32)}
    back, _ = rio.read_arrays(rio.write_arrays(tmp_path / "u.npz", arrays, "test", 1), "test", (1,))
    assert list(back) == list(arrays) and all(np.array_equal(back[k], v) for k, v in arrays.items())


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


# -- what the reader is given: bytes it must not trust -----------------------------------------
def test_byte_order_and_memory_order_are_read_faithfully(tmp_path) -> None:
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    path = rio.write_arrays(tmp_path / "f.npz", {"big": big, "fortran": fortran}, kind="test", schema_version=1)
    arrays, _ = rio.read_arrays(path, "test", (1,))
    assert arrays["big"].dtype == np.float32 and arrays["big"].dtype.isnative
    assert np.array_equal(arrays["big"], big) and np.array_equal(arrays["fortran"], fortran)
    assert arrays["fortran"].flags.c_contiguous and arrays["fortran"].flags.writeable


def test_random_bytes_empty_files_and_folders_say_what_they_are(tmp_path) -> None:
    rng = np.random.default_rng(0)
    cases = {
        "random.npz": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not a zip/.npz file"),
        "empty.npz": (b"", "it is empty"),
        "bare.npz": (None, "bare .npy array"),
    }
    np.save(tmp_path / "bare.npy", np.zeros(3))
    (tmp_path / "bare.npy").rename(tmp_path / "bare.npz")
    for name, (data, message) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(rio.FileFormatError, match=message) as e:
            rio.read_arrays(tmp_path / name, "test", (1,))
        assert "pickle" not in str(e.value) and name in str(e.value)
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(rio.FileFormatError, match="is a folder, not a file"):
        rio.read_arrays(tmp_path / "folder.npz", "test", (1,))
    os.mkfifo(tmp_path / "fifo.npz")  # opening it to read would wait for a writer forever
    with pytest.raises(rio.FileFormatError, match="is not a regular file"):
        rio.read_arrays(tmp_path / "fifo.npz", "test", (1,))


def _meta_member(arrays_meta: dict, kind: str = "test") -> bytes:
    meta = {"kind": kind, "schema_version": 1, "refopt_version": "0", "arrays": arrays_meta}
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return buf.getvalue()


def _npy_header(dtype: str, shape: tuple) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip(path, members, aliases=None) -> None:
    """A zip written by hand: ``members`` are (name, payload as stored, method, crc, size);
    ``aliases`` adds directory entries {new name: existing member} pointing at another
    member's bytes.  (zipfile cannot store a member compressed elsewhere, nor lie.)"""
    out, entries = bytearray(), []
    for name, payload, method, crc, size in members:
        n = name.encode()
        fields = (method, 0, 0x21, crc, len(payload), size, len(n))  # method, time, date (1980-01-01), ...
        entries.append((n, fields, len(out)))
        out += struct.pack("<IHH", 0x04034B50, 20, 0) + struct.pack("<HHHIIIH", *fields) + b"\0\0" + n + payload
    for alias, target in (aliases or {}).items():
        _, fields, offset = next(e for e in entries if e[0] == target.encode())
        entries.append((alias.encode(), fields[:-1] + (len(alias),), offset))
    central = bytearray()
    for n, fields, offset in entries:
        central += struct.pack("<IHHH", 0x02014B50, 20, 20, 0) + struct.pack("<HHHIIIH", *fields)
        central += struct.pack("<HHHHII", 0, 0, 0, 0, 0, offset) + n
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + eocd))


def _stored(name: str, data: bytes) -> tuple:
    return (name, data, zipfile.ZIP_STORED, zlib.crc32(data), len(data))


def _deflate_bomb(header: bytes, gib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``header`` then ``gib`` GiB of zeros, about 1 MB per GiB,
    built in a fraction of a second: after a full flush, every further 16 MiB of zeros
    compresses to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 24)
    first = c.compress(header + chunk) + c.flush(zlib.Z_FULL_FLUSH)
    unit = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert unit == c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    n = (gib << 30) >> 24
    return first + unit * (n - 2) + c.flush(), len(header) + (n - 1) * len(chunk)


_PROBE = r"""
import json, resource, sys, time
from refopt.io import FileFormatError, read_arrays


def peak_mib():
    # This process's own high-water mark: VmHWM belongs to the memory map made at exec.
    # (ru_maxrss would not do: Linux carries the parent's peak across fork and exec.)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


start = time.perf_counter()
try:
    read_arrays(sys.argv[1], "test", (1,))
    outcome = "loaded"
except FileFormatError as exc:
    outcome = "refused: " + str(exc)
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - start, "peak_mib": peak_mib()}))
"""


def _probe(path) -> dict:
    """Read ``path`` in a fresh interpreter; its outcome, time and peak memory (MiB)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr  # a refusal, never a traceback
    return json.loads(proc.stdout)


def test_crafted_files_are_refused_before_their_data_is_read(tmp_path) -> None:
    """A 2 MB checkpoint that inflates to 2 GiB, a header declaring 10^13 elements, an
    unlisted member, overlapping members: each refused by structure alone, in a fresh
    process whose peak memory stays far below what the file declares."""
    sha = "0" * 64
    w = np.arange(4.0)
    w_npy = _npy_header("<f8", (4,)) + w.tobytes()
    good_meta = _meta_member({"w": {"shape": [4], "dtype": "<f8", "sha256": rio.digest(w)}})

    huge = 1 << 28  # float64: 2 GiB of zeros
    stream, size = _deflate_bomb(_npy_header("<f8", (huge,)), 2)
    bomb_meta = _meta_member({"w": {"shape": [huge], "dtype": "<f8", "sha256": sha}})
    _zip(tmp_path / "bomb.npz", [_stored("__refopt__.npy", bomb_meta), ("w.npy", stream, 8, 0, size)])
    assert (tmp_path / "bomb.npz").stat().st_size < 3 << 20

    _zip(
        tmp_path / "unlisted_bomb.npz",
        [_stored("__refopt__.npy", good_meta), _stored("w.npy", w_npy)] + [("x.npy", stream, 8, 0, size)],
    )
    _zip(
        tmp_path / "unlisted.npz",
        [
            _stored("__refopt__.npy", good_meta),
            _stored("w.npy", w_npy),
            _stored("x.npy", _npy_header("<f8", (1 << 17,)) + bytes(1 << 20)),
        ],
    )

    ten13 = 10**13  # a header that declares 80 TB, with 80 bytes behind it
    big_meta = _meta_member({"w": {"shape": [ten13], "dtype": "<f8", "sha256": sha}})
    _zip(
        tmp_path / "declared.npz",
        [_stored("__refopt__.npy", big_meta), _stored("w.npy", _npy_header("<f8", (ten13,)) + bytes(80))],
    )
    lying = _npy_header("<f8", (ten13,))[: len(_npy_header("<f8", (4,)))]  # same length, bigger claim
    _zip(tmp_path / "header_lies.npz", [_stored("__refopt__.npy", good_meta), _stored("w.npy", lying + w.tobytes())])

    one = _stored("w.npy", w_npy)
    _zip(tmp_path / "good.npz", [_stored("__refopt__.npy", good_meta), one])
    _zip(tmp_path / "twice.npz", [_stored("__refopt__.npy", good_meta), one], aliases={"w.npy": "w.npy"})
    two_meta = _meta_member({k: {"shape": [4], "dtype": "<f8", "sha256": rio.digest(w)} for k in ("w", "v")})
    _zip(tmp_path / "overlap.npz", [_stored("__refopt__.npy", two_meta), one], aliases={"v.npy": "w.npy"})

    expected = {
        "good.npz": "loaded",
        "bomb.npz": "member 'w.npy' is compressed",
        "unlisted_bomb.npz": "member 'x.npy' is compressed",
        "unlisted.npz": r"unlisted \['x.npy'\]",
        "declared.npz": r"declared <f8\[10000000000000\] \(80000000000000 bytes of data\), but its member holds",
        "header_lies.npz": r"array 'w'",
        "twice.npz": "member 'w.npy' appears twice",
        "overlap.npz": "its members overlap",
    }
    for name, pattern in expected.items():
        result = _probe(tmp_path / name)
        print(name, result)  # measured: refused in milliseconds (pytest -s shows it)
        assert re.search(pattern, result["outcome"]), (name, result)
        assert result["peak_mib"] < 300, (name, result)


def test_malformed_metadata_is_a_format_error(tmp_path) -> None:
    w = np.arange(4.0)
    w_npy = _npy_header("<f8", (4,)) + w.tobytes()
    good = {"shape": [4], "dtype": "<f8", "sha256": rio.digest(w)}
    cases = {
        "not JSON": (b"\xff\xfe not json", "not valid UTF-8 JSON"),
        "a list": (json.dumps([1, 2]).encode(), "not a JSON object"),
        "no arrays": (json.dumps({"kind": "test", "schema_version": 1}).encode(), "no 'arrays' table"),
        "bool version": (json.dumps({"kind": "test", "schema_version": True, "arrays": {}}).encode(), "schema version"),
        "bad shape": (_meta_json({"w": {**good, "shape": [-4]}}), "not a list of non-negative ints"),
        "bad dtype": (_meta_json({"w": {**good, "dtype": "<U8"}}), "numeric and boolean arrays only"),
        "object dtype": (_meta_json({"w": {**good, "dtype": "|O"}}), "Python objects"),
        "bad sha": (_meta_json({"w": {**good, "sha256": "xyz"}}), "malformed sha256"),
        "extra field": (_meta_json({"w": {**good, "note": 1}}), "exactly shape, dtype and sha256"),
        "deep": (b"[" * 100000 + b"]" * 100000, "not valid UTF-8 JSON"),
    }
    for label, (blob, message) in cases.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(blob, np.uint8))
        path = tmp_path / f"{label.replace(' ', '_')}.npz"
        _zip(path, [_stored("__refopt__.npy", buf.getvalue()), _stored("w.npy", w_npy)])
        with pytest.raises(rio.FileFormatError, match=message):
            rio.read_arrays(path, "test", (1,))


def _meta_json(arrays_meta: dict) -> bytes:
    return json.dumps({"kind": "test", "schema_version": 1, "arrays": arrays_meta}).encode()


# -- how files are written -----------------------------------------------------------------------
def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        path = rio.write_arrays(tmp_path / "f.npz", _arrays(), kind="test", schema_version=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 less the umask, as open() would make it
    os.chmod(path, 0o604)
    rio.write_arrays(path, {"x": np.zeros(2)}, kind="test", schema_version=1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


def test_a_symlink_is_written_through(tmp_path) -> None:
    real = rio.write_arrays(tmp_path / "store" / "real.npz", _arrays(), kind="test", schema_version=1)
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    rio.write_arrays(link, {"x": np.ones(3)}, kind="test", schema_version=1)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert list(rio.read_arrays(real, "test", (1,))[0]) == ["x"]
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "store" / "later.npz")
    rio.write_arrays(dangling, {"y": np.ones(1)}, kind="test", schema_version=1)
    assert dangling.is_symlink() and list(rio.read_arrays(tmp_path / "store" / "later.npz", "test", (1,))[0]) == ["y"]
    assert sorted(os.listdir(tmp_path / "store")) == ["later.npz", "real.npz"]  # no temporary files


@pytest.mark.parametrize("where", ["writing", "renaming"])
def test_an_interrupted_save_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch, where) -> None:
    path = rio.write_arrays(tmp_path / "f.npz", _arrays(), kind="test", schema_version=1)
    before = path.read_bytes()
    if where == "writing":

        def fail(*args, **kwargs):
            raise KeyboardInterrupt("Ctrl-C")

        monkeypatch.setattr(np.lib.format, "write_array", fail)
    else:

        def fail(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", fail)
    with pytest.raises((KeyboardInterrupt, OSError)):
        rio.write_arrays(path, {"x": np.zeros(3)}, kind="test", schema_version=1)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["f.npz"]
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        rio.write_arrays(tmp_path, {"x": np.zeros(3)}, kind="test", schema_version=1)


# -- the fuzz suite: every truncation and a bit flip at every offset of small real files ---------
def _loader(fresh, want, same):
    """``attempt(path)``: load ``path`` into a target made by ``fresh``, reused while loads
    fail (they must leave it as it was): ("refused", unchanged?) or ("loaded", == want?)."""
    target = [fresh()]
    before = target[0].state_dict()

    def attempt(p):
        try:
            target[0].load(p)
        except rio.FileFormatError:
            return "refused", same(target[0].state_dict(), before)
        loaded = target[0].state_dict()
        target[0] = fresh()
        return "loaded", same(loaded, want)

    return attempt


def _checkpoint_case(tmp_path):
    import refopt as rf

    def model(seed):
        return rf.nn.Sequential([rf.nn.Dense(2, 2, seed=seed)])

    return model(1).save(tmp_path / "ckpt.npz"), _loader(lambda: model(2), model(1).state_dict(), _same_arrays)


def _optimizer_case(tmp_path):
    import refopt as rf
    from refopt.optim import Adam

    def opt(steps):
        vs = [rf.Variable(np.full((2, 2), 0.5, np.float32), name="w"), rf.Variable(np.ones(2, np.float32), name="b")]
        o = Adam(vs, learning_rate=0.1)
        for k in range(steps):
            o.apply_gradients([(np.full(v.shape, k + 1.0, np.float32), v) for v in vs])
        return o

    return opt(2).save(tmp_path / "opt.npz"), _loader(lambda: opt(1), opt(2).state_dict(), _same_state)


def _trajectory_case(tmp_path):
    from refopt.oracle.compare import compare
    from refopt.oracle.run import Run, run_refopt
    from refopt.oracle.trajectory import load

    g = np.array([0.5, -1.0], np.float32)
    run = Run("sgd", "torch", "float32", {"w": np.array([1.0, 2.0], np.float32)}, [{"w": g}, {"w": None}], [0.1, 0.1])
    run.hyper = {"momentum": 0.9}
    traj = run_refopt(run)
    path = traj.save(tmp_path / "traj.npz", machine=False)

    def attempt(p):
        try:
            back = load(p)
        except rio.FileFormatError:
            return "refused", True
        return "loaded", compare(back, traj).identical and back.meta == traj.meta

    return path, attempt


def _same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


def _same_state(a: dict, b: dict) -> bool:
    if {k: a[k] for k in ("iterations", "groups")} != {k: b[k] for k in ("iterations", "groups")}:
        return False
    va, vb = a["variables"], b["variables"]
    return va.keys() == vb.keys() and all(
        va[n]["step"] == vb[n]["step"] and _same_arrays(va[n]["slots"], vb[n]["slots"]) for n in va
    )


@pytest.mark.parametrize("case", [_checkpoint_case, _optimizer_case, _trajectory_case], ids=lambda f: f.__name__[1:-5])
def test_fuzz_every_truncation_and_a_bit_flip_at_every_offset(tmp_path, case) -> None:
    """Only refopt's format error (and the target untouched) or a correct load; never
    another exception, never a partial or wrong load."""
    path, attempt = case(tmp_path)
    raw = path.read_bytes()
    assert len(raw) < 4096  # small files: the whole suite runs in seconds
    outcomes = {"refused": 0, "loaded": 0}
    variants = [raw[:n] for n in range(len(raw))]
    variants += [raw[:i] + bytes([raw[i] ^ (1 << (i % 8))]) + raw[i + 1 :] for i in range(len(raw))]
    for i, data in enumerate(variants):
        bad = tmp_path / f"bad{i}.npz"  # a new file each time: rewriting one in place flushes on ext4
        bad.write_bytes(data)
        outcome, ok = attempt(bad)  # any other exception fails the test here
        bad.unlink()
        assert ok, (outcome, len(data))
        outcomes[outcome] += 1
    assert outcomes["refused"] > len(raw)  # every truncation, and most flips (the rest: bytes no reader uses)
