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

refopt's own reader (:func:`read_arrays`) trusts nothing in the file and checks the
declared structure before it reads any data: the zip directory, then the metadata
member, then -- for every member, before the first array is read -- that the metadata
lists it, that it is stored (refopt never writes compressed members, and a compressed
member is how a small file expands into gigabytes), that the members do not overlap,
and that its size is exactly what its declared dtype and shape need.  Only then are the
arrays read, each checked against its ``.npy`` header, its CRC-32 and its sha256.  So a
file costs at most about twice its own size in memory, whatever it declares, and every
malformed file raises :class:`FileFormatError` naming the file and the problem.

Writes go to a temporary file in the destination's folder, are flushed to disk, then
renamed over the destination: a crash leaves either the old file or the new one, never
a half-written file under the real name, and an exception (a full disk, Ctrl-C) removes
the temporary file.  The new file gets the permissions a plain ``open(path, "w")`` would
give it: those of the file it replaces, else ``0o666`` less the umask.  A symbolic link
is written through: its target is replaced and the link stays a link.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import secrets
import stat
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from refopt._version import __version__

__all__ = ["META_KEY", "FileFormatError", "write_arrays", "read_arrays", "check_fields", "digest"]

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


def _write_target(path: Path) -> Path:
    """Where writing ``path`` lands: a symbolic link is followed to its final target (the
    link itself stays), any other path is itself."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


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
        if a.dtype.kind not in _ALLOWED_KINDS or a.dtype.fields is not None:
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
    target = _write_target(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {kind} file {str(path)!r}: it is a folder")
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)  # replacing a file keeps its permissions
    except FileNotFoundError:
        mode = None  # a new file: 0o666 less the umask, applied by the kernel at creation
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.tmp"
    created = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        created = True
        with os.fdopen(fd, "wb") as fh:
            _write_npz(fh, {**entries, META_KEY: blob})
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if created:
            try:
                os.unlink(tmp)
            except OSError:
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


# -- reading ------------------------------------------------------------------------------
_NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER = 1 << 16  # NumPy writes a header of a few hundred bytes at most
_ZIP_LOCAL_HEADER = 30  # fixed part of a zip local file header
_ENCRYPTED = 0x1
_UTF8_NAME = 0x800  # zip flag: the member's name is UTF-8 (else code page 437)


def _sniff(head: bytes) -> str:
    """What a file that is not a zip looks like, for the error message."""
    if not head:
        return "it is empty"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "it holds Python objects (a pickle); refusing to load it (unpickling can run code)"
    if head.startswith(_NPY_MAGIC):
        return "it is a bare .npy array, not a refopt .npz file"
    if head.startswith(b"PK"):
        return "it is a zip without entries or with a damaged first entry"
    return "it is not a zip/.npz file (no zip header at the start)"


def _exact(fp: IO[bytes], n: int, what: str) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise FileFormatError(f"{what} ends early (truncated)")
    return data


def _parse_dtype(descr: Any, what: str) -> np.dtype:
    """A plain numeric or boolean dtype from its string form; anything else is refused."""
    if not isinstance(descr, str) or len(descr) > 16:
        raise FileFormatError(f"{what} has dtype {descr!r}, not a plain numeric dtype")
    try:
        dt = np.dtype(descr)
    except Exception as exc:  # an unparseable dtype string is a malformed file
        raise FileFormatError(f"{what} has an unreadable dtype {descr!r}") from exc
    if dt.kind == "O":
        raise FileFormatError(f"{what} holds Python objects (dtype object, a pickle); refusing to load it")
    if dt.kind not in _ALLOWED_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise FileFormatError(f"{what} has dtype {descr!r}; refopt files hold numeric and boolean arrays only")
    return dt


def _parse_shape(shape: Any, what: str) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or len(shape) > 64 or not all(type(s) is int and s >= 0 for s in shape):
        raise FileFormatError(f"{what} has shape {shape!r}, not a list of non-negative ints")
    return tuple(shape)


def _npy_header(fp: IO[bytes], what: str) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """Parse an ``.npy`` header: ``(dtype, shape, fortran_order, header length)``."""
    magic = _exact(fp, 8, what)
    if magic[:6] != _NPY_MAGIC:
        raise FileFormatError(f"{what} is not an .npy array (bad magic)")
    major = magic[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", _exact(fp, 2, what))
        start = 10
    elif major in (2, 3):
        (hlen,) = struct.unpack("<I", _exact(fp, 4, what))
        start = 12
    else:
        raise FileFormatError(f"{what} has .npy format version {major}.{magic[7]}, which refopt does not read")
    if hlen > _MAX_NPY_HEADER:
        raise FileFormatError(f"{what} declares an .npy header of {hlen} bytes (at most {_MAX_NPY_HEADER})")
    raw = _exact(fp, hlen, what)
    try:
        header = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin1"))
    except Exception as exc:  # any parse failure of these bytes: a malformed header
        raise FileFormatError(f"{what} has an unreadable .npy header") from exc
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise FileFormatError(f"{what} has a malformed .npy header")
    if not isinstance(header["fortran_order"], bool):
        raise FileFormatError(f"{what} has a malformed .npy header (fortran_order)")
    dtype = _parse_dtype(header["descr"], what)
    shape = _parse_shape(header["shape"], what)
    return dtype, shape, header["fortran_order"], start + hlen


def _check_members(zf: zipfile.ZipFile, size: int, where: str) -> dict[str, zipfile.ZipInfo]:
    """The members by name, each checked from the zip directory alone (nothing read):
    stored, not encrypted, inside the file, and not overlapping another member -- so that
    reading every member reads at most the file's own bytes."""
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        if name in infos:
            raise FileFormatError(f"{where}: member {name!r} appears twice")
        if info.flag_bits & _ENCRYPTED:
            raise FileFormatError(f"{where}: member {name!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise FileFormatError(
                f"{where}: member {name!r} is compressed (zip method {info.compress_type}); refopt stores "
                "its members uncompressed and refuses compressed ones (they can expand without bound)"
            )
        if info.compress_size != info.file_size:
            raise FileFormatError(f"{where}: member {name!r} is stored but its two sizes differ (corrupted)")
        infos[name] = info
    end = 0  # each member spans at least its fixed header, its name and its data
    for info in sorted(infos.values(), key=lambda i: i.header_offset):
        if info.header_offset < end:
            raise FileFormatError(f"{where}: its members overlap (member {info.filename!r}; corrupted or crafted)")
        name_bytes = len(info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_NAME else "cp437"))
        end = info.header_offset + _ZIP_LOCAL_HEADER + name_bytes + info.file_size
        if end > size:
            raise FileFormatError(f"{where}: member {info.filename!r} extends past the end of the file (truncated)")
    return infos


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    """Read one member whose directory entry was checked: its header must declare
    ``dtype`` and ``shape``, its size must be exactly header + data, its CRC must match."""
    nbytes = dtype.itemsize * math.prod(shape)
    try:
        with zf.open(info) as fp:
            got_dtype, got_shape, fortran, offset = _npy_header(fp, what)
            if got_dtype != dtype or got_dtype.str != dtype.str or got_shape != shape:
                raise FileFormatError(
                    f"{what} is {got_dtype.str}{list(got_shape)}, its metadata says {dtype.str}{list(shape)}"
                )
            if offset + nbytes != info.file_size:
                raise FileFormatError(
                    f"{what} is {info.file_size} bytes, but its header ({offset} bytes) and its declared "
                    f"{dtype.str}{list(shape)} ({nbytes} bytes) make {offset + nbytes}"
                )
            data = _exact(fp, nbytes, what)
            if fp.read(1):  # also the read that completes the CRC-32 check
                raise FileFormatError(f"{what} holds more bytes than it declares")
    except FileFormatError:
        raise
    except Exception as exc:  # zipfile's errors on damaged bytes (CRC, headers, names)
        raise FileFormatError(f"{what} is corrupted: {exc}") from exc
    flat = np.frombuffer(data, dtype=dtype)
    arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return np.array(arr, order="C")  # a writable C-order copy


def _check_meta(meta: Any, where: str, kind: str, schema_versions: tuple[int, ...]) -> dict[str, tuple]:
    """The arrays the metadata declares: ``{name: (dtype, shape, sha256)}``."""
    if not isinstance(meta, dict):
        raise FileFormatError(f"{where}: its metadata is not a JSON object")
    if meta.get("kind") != kind:
        raise FileFormatError(f"{where} holds a {meta.get('kind')!r}, not a {kind!r}")
    version = meta.get("schema_version")
    if type(version) is not int or version not in schema_versions:
        raise FileFormatError(
            f"{where} has schema version {version!r}; this refopt ({__version__}) reads "
            f"{', '.join(map(str, schema_versions))}"
        )
    listed = meta.get("arrays")
    if not isinstance(listed, dict):
        raise FileFormatError(f"{where}: its metadata has no 'arrays' table")
    out: dict[str, tuple] = {}
    for name, info in listed.items():
        what = f"{where}: array {name!r}"
        if not isinstance(info, dict) or set(info) != {"shape", "dtype", "sha256"}:
            raise FileFormatError(f"{what}: its metadata entry must hold exactly shape, dtype and sha256")
        sha = info["sha256"]
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise FileFormatError(f"{what}: its metadata has a malformed sha256")
        out[name] = (_parse_dtype(info["dtype"], what), _parse_shape(info["shape"], what), sha)
    return out


def read_arrays(
    path: str | os.PathLike[str], kind: str, schema_versions: tuple[int, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a file written by :func:`write_arrays`.

    Refuses (with :class:`FileFormatError` naming the file and the problem) files that are
    not zip/npz, are truncated, fail a size, CRC or sha256 check, hold pickled objects,
    compressed, unlisted or overlapping members, lack refopt metadata, are of another
    ``kind``, or carry a schema version not in ``schema_versions``.  Arrays come back in
    native byte order, in the writer's order.
    """
    path = Path(path)
    where = f"{kind} file {str(path)!r}"
    if not path.exists():
        raise FileNotFoundError(f"{where} does not exist")
    if path.is_dir():
        raise FileFormatError(f"{where} is a folder, not a file")
    if not path.is_file():  # a FIFO would block, a device never end
        raise FileFormatError(f"{where} is not a regular file")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(4)
        if head != b"PK\x03\x04":
            raise FileFormatError(f"{where} is not a refopt array file: {_sniff(head + fh.read(4))}")
        fh.seek(0)
        try:
            zf = zipfile.ZipFile(fh)  # reads the zip directory alone (bounded by the file's size)
        except Exception as exc:  # zipfile's errors on damaged bytes
            raise FileFormatError(f"{where} is truncated or corrupted (unreadable zip directory: {exc})") from exc
        with zf:
            infos = _check_members(zf, size, where)
            meta_info = infos.get(f"{META_KEY}.npy")
            if meta_info is None:
                raise FileFormatError(f"{where} has no refopt metadata ({META_KEY!r}); it was not written by refopt")
            blob = _read_meta(zf, meta_info, f"{where}: metadata")
            try:
                meta = json.loads(blob.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise FileFormatError(f"{where}: its metadata is not valid UTF-8 JSON ({exc})") from exc
            listed = _check_meta(meta, where, kind, schema_versions)
            missing = [k for k in listed if f"{k}.npy" not in infos or k == META_KEY]
            unlisted = sorted(
                n for n in infos if n != meta_info.filename and not (n.endswith(".npy") and n[:-4] in listed)
            )
            if missing or unlisted:
                raise FileFormatError(
                    f"{where}: its arrays do not match its metadata (missing {missing}, unlisted {unlisted})"
                )
            for name, (dtype, shape, _) in listed.items():  # every size, before any array is read
                info = infos[f"{name}.npy"]
                nbytes = dtype.itemsize * math.prod(shape)
                if not 10 <= info.file_size - nbytes <= 12 + _MAX_NPY_HEADER:
                    raise FileFormatError(
                        f"{where}: array {name!r} is declared {dtype.str}{list(shape)} ({nbytes} bytes of data), "
                        f"but its member holds {info.file_size} bytes"
                    )
            arrays = {}
            for name, (dtype, shape, sha) in listed.items():
                what = f"{where}: array {name!r}"
                a = _read_member(zf, infos[f"{name}.npy"], what, dtype, shape)
                if digest(a) != sha:
                    raise FileFormatError(f"{what} fails its sha256 check (corrupted)")
                if not a.dtype.isnative:
                    a = a.astype(a.dtype.newbyteorder("="))
                arrays[name] = a
    return arrays, meta


def _read_meta(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    """The metadata member: a 1-d uint8 array filling its member exactly."""
    try:
        with zf.open(info) as fp:
            dtype, shape, _, offset = _npy_header(fp, what)
            if dtype != np.dtype(np.uint8) or len(shape) != 1 or offset + shape[0] != info.file_size:
                raise FileFormatError(f"{what} is not a byte string filling its member")
            data = _exact(fp, shape[0], what)
            if fp.read(1):
                raise FileFormatError(f"{what} holds more bytes than it declares")
    except FileFormatError:
        raise
    except Exception as exc:  # zipfile's errors on damaged bytes (CRC, headers, names)
        raise FileFormatError(f"{what} is corrupted: {exc}") from exc
    return data


_OWN_FIELDS = ("kind", "schema_version", "refopt_version", "arrays")


def check_fields(meta: Mapping[str, Any], where: str, fields: tuple[str, ...]) -> None:
    """A file kind's metadata must hold exactly ``fields`` besides :func:`write_arrays`'s
    own; a missing or unexpected one is a :class:`FileFormatError` naming it."""
    missing = [k for k in fields if k not in meta]
    unexpected = [k for k in meta if k not in fields and k not in _OWN_FIELDS]
    if missing or unexpected:
        raise FileFormatError(f"{where}: its metadata fields do not fit (missing {missing}, unexpected {unexpected})")
