"""Safe array files: ``.npz`` (no pickle) with JSON metadata, written atomically.

One format serves checkpoints, optimizer state and golden trajectories:

* the arrays, under their names and in the writer's order, in an uncompressed ``.npz``
  (a zip: every member has a CRC-32 that NumPy checks when reading), with a fixed
  member timestamp so that equal content gives equal bytes;
* one more member, ``__refopt__``, holding UTF-8 JSON metadata: ``kind``,
  ``schema_version``, ``refopt_version``, and per array its ``shape``, ``dtype`` and
  ``sha256`` -- plus whatever the caller adds.

Reading it needs NumPy alone::

    import json, numpy as np
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["__refopt__"].tobytes())
        arrays = {k: f[k] for k in f.files if k != "__refopt__"}

Writes go to a temporary file in the destination folder, are flushed to disk, then
renamed over the destination: a crash leaves either the old file or the new one, never
a half-written file under the real name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from refopt._version import __version__

__all__ = ["META_KEY", "FileFormatError", "write_arrays", "read_arrays", "digest"]

META_KEY = "__refopt__"
_ALLOWED_KINDS = "biufc"  # bool, ints, uints, floats, complex: never object arrays


class FileFormatError(ValueError):
    """A refopt array file that cannot be trusted: unreadable, truncated, corrupted,
    pickle-bearing, of another kind, or of an unknown schema version."""


def digest(a: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (with its dtype and shape, so a reshape or
    reinterpretation does not collide)."""
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed zip timestamp: the same content gives the same bytes


def _write_npz(fh: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """What ``np.savez`` writes (uncompressed, one ``.npy`` member per array), but with a
    fixed member timestamp so that the file's bytes depend on its content alone."""
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asarray(a), allow_pickle=False)


def write_arrays(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    kind: str,
    schema_version: int,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``arrays`` and metadata to ``path`` atomically; return the path."""
    path = Path(path)
    entries = {}
    for name, a in arrays.items():
        if name == META_KEY:
            raise ValueError(f"array name {META_KEY!r} is reserved")
        a = np.asarray(a)
        if a.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(f"array {name!r} has dtype {a.dtype}; only numeric and boolean arrays are stored")
        entries[name] = a
    meta = {
        "kind": kind,
        "schema_version": int(schema_version),
        "refopt_version": __version__,
        "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": digest(a)} for k, a in entries.items()},
        **(dict(extra) if extra else {}),
    }
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)  # insertion order is the order
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_npz(fh, {**entries, META_KEY: blob})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def read_arrays(
    path: str | os.PathLike[str], kind: str, schema_versions: tuple[int, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a file written by :func:`write_arrays`.

    Refuses (with :class:`FileFormatError` naming the file and the problem) files that are
    not zip/npz, are truncated, fail a CRC or sha256 check, hold pickled objects, lack
    refopt metadata, are of another ``kind``, or carry a schema version not in
    ``schema_versions``.
    """
    path = Path(path)
    where = f"{kind} file {str(path)!r}"
    if not path.exists():
        raise FileNotFoundError(f"{where} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            members = {k: f[k] for k in f.files}  # an object (pickle) member is refused here
        if META_KEY not in members:
            raise FileFormatError(f"{where} has no refopt metadata ({META_KEY!r}); it was not written by refopt")
        meta = json.loads(members.pop(META_KEY).tobytes().decode("utf-8"))
        arrays = members
    except FileFormatError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise FileFormatError(f"{where} holds Python objects (pickle); refusing to load it") from exc
        raise FileFormatError(f"{where} is not a readable .npz file: {exc}") from exc
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{where} is truncated or corrupted: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        raise FileFormatError(
            f"{where} holds a {meta.get('kind') if isinstance(meta, dict) else '?'!r}, not a {kind!r}"
        )
    version = meta.get("schema_version")
    if version not in schema_versions:
        raise FileFormatError(
            f"{where} has schema version {version!r}; this refopt ({__version__}) reads "
            f"{', '.join(map(str, schema_versions))}"
        )
    listed = meta.get("arrays", {})
    if set(listed) != set(arrays):
        missing = sorted(set(listed) - set(arrays))
        extra = sorted(set(arrays) - set(listed))
        raise FileFormatError(f"{where}: arrays do not match its metadata (missing {missing}, unlisted {extra})")
    for name, a in arrays.items():
        info = listed[name]
        if list(a.shape) != info["shape"] or a.dtype.str != info["dtype"]:
            raise FileFormatError(
                f"{where}: array {name!r} is {a.dtype.str}{list(a.shape)}, metadata says {info['dtype']}{info['shape']}"
            )
        if digest(a) != info["sha256"]:
            raise FileFormatError(f"{where}: array {name!r} fails its sha256 check (corrupted)")
    ordered = {k: arrays[k] for k in listed}  # the writer's order
    return ordered, meta
