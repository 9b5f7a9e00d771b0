"""Checkpoint formats: refopt's .npz (what `Module.save` writes) against safetensors, for
the decision recorded in docs/nn.md.  Writes bench/results/io.json.

safetensors is implemented here from its specification (an 8-byte little-endian header
length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}},
then the raw little-endian bytes), with the same care refopt takes: atomic write with
fsync, and a header-first reader that checks every offset against the file's size before
it reads data.  Both sides are measured doing the same work:

* write: atomic, fsynced, with a sha256 per array (refopt's metadata; safetensors has no
  integrity check of its own, so the sha256s go into ``__metadata__``);
* read: every structural check, then the data; "checked" also verifies the sha256s (and,
  for .npz, the zip CRC-32s), "unchecked" is what a plain reader does (safetensors as
  the Hugging Face tools read it; ``np.load`` for .npz).

    python bench/bench_io.py [--large-params 25000000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, write  # noqa: E402

import refopt as rf  # noqa: E402
from refopt.io import digest, read_arrays  # noqa: E402

_ST_DTYPES = {"float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32", "bool": "BOOL", "uint8": "U8"}
_NP_DTYPES = {v: np.dtype(k).newbyteorder("<") for k, v in _ST_DTYPES.items()}


def st_write(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file, atomically (temporary file, fsync, rename)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, a in arrays.items():
        header[name] = {
            "dtype": _ST_DTYPES[a.dtype.name],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for a in arrays.values():
            f.write(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def st_read(path: Path, check_sha: bool) -> dict[str, np.ndarray]:
    """Header first: its length, its JSON, every tensor's offsets against the file's size
    and against its dtype and shape, contiguous and non-overlapping -- then the data."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(size - 8, 100 << 20):
            raise ValueError("header length beyond the file")
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", {})
        end = 0
        specs = []
        for name, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            dtype, shape, (b, e) = _NP_DTYPES[h["dtype"]], tuple(h["shape"]), h["data_offsets"]
            if b != end or e - b != dtype.itemsize * math.prod(shape):
                raise ValueError(f"tensor {name!r}: offsets do not fit")
            end = e
            specs.append((name, dtype, shape))
        if 8 + n + end != size:
            raise ValueError("data size does not match the header")
        out = {}
        for name, dtype, shape in specs:
            a = np.empty(shape, dtype)
            f.readinto(memoryview(a).cast("B"))
            if check_sha and digest(a) != meta[f"sha256/{name}"]:
                raise ValueError(f"tensor {name!r} fails its sha256 check")
            out[name] = a
    return out


def model(kind: str, large_params: int) -> rf.nn.Module:
    if kind == "small":  # the oracle's MLP scenarios
        return rf.nn.Sequential([rf.nn.Dense(6, 8, seed=0), rf.nn.Tanh(), rf.nn.Dense(8, 3, seed=1)])
    if kind == "medium":  # four 512x512 layers: 1M parameters
        return rf.nn.Sequential([rf.nn.Dense(512, 512, seed=i) for i in range(4)])
    width = int(math.sqrt(large_params / 8))  # eight width x width layers
    return rf.nn.Sequential([rf.nn.Dense(width, width, use_bias=False, seed=i) for i in range(8)])


def measure(kind: str, large_params: int, folder: Path) -> dict[str, Any]:
    m = model(kind, large_params)
    arrays = m.state_dict()
    params = sum(a.size for a in arrays.values())
    npz, st = folder / f"{kind}.npz", folder / f"{kind}.safetensors"
    meta = {"format": "refopt.checkpoint", **{f"sha256/{k}": digest(a) for k, a in arrays.items()}}
    repeat = 3 if params > 5_000_000 else 7
    write_npz = best_of(lambda: m.save(npz), repeat=repeat, warmup=1)
    write_st = best_of(
        lambda: st_write(st, arrays, {**meta, **{f"sha256/{k}": digest(a) for k, a in arrays.items()}}),
        repeat=repeat,
        warmup=1,
    )

    def np_load() -> None:
        with np.load(npz, allow_pickle=False) as f:
            [f[k] for k in f.files]

    assert all(np.array_equal(st_read(st, True)[k], a) for k, a in arrays.items())
    return {
        "parameters": int(params),
        "tensors": len(arrays),
        "data_bytes": int(sum(a.nbytes for a in arrays.values())),
        "size_bytes": {"npz": npz.stat().st_size, "safetensors": st.stat().st_size},
        "write_s": {"npz": write_npz["min_s"], "safetensors": write_st["min_s"]},
        "read_checked_s": {
            "npz": best_of(lambda: read_arrays(npz, "refopt.checkpoint", (1,)), repeat=repeat)["min_s"],
            "safetensors": best_of(lambda: st_read(st, True), repeat=repeat)["min_s"],
        },
        "read_unchecked_s": {
            "npz (np.load)": best_of(np_load, repeat=repeat)["min_s"],
            "safetensors": best_of(lambda: st_read(st, False), repeat=repeat)["min_s"],
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large-params", type=int, default=25_000_000)
    large = ap.parse_args().large_params
    with tempfile.TemporaryDirectory() as d:
        results = {kind: measure(kind, large, Path(d)) for kind in ("small", "medium", "large")}
    print(json.dumps(results, indent=2))
    print(f"wrote {write('io', {'checkpoints': results})}")


if __name__ == "__main__":
    main()
