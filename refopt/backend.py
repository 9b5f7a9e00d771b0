"""Array backends: which namespace an array belongs to, where new values are made, moves.

refopt's ops never import NumPy or CuPy to compute: they ask each array for its
namespace (``xp = namespace(a)``) and call the array-API functions on it.  This module
is the one place that knows the libraries by name.  It holds

* :func:`namespace` / :func:`device_of` — the namespace and device of an array;
* :func:`use_backend` — where *new* values are created (NumPy by default), per thread and
  per asyncio task;
* :func:`asarray` / :func:`move` — explicit creation and device moves (never implicit);
* :func:`host_rng` — the seeded NumPy generator every random draw comes from, so that
  NumPy and CuPy runs see the same numbers;
* the few functions the libraries spell differently: :func:`erf`, :func:`erfc`,
  :func:`scatter_add_rows`.

Besides ``"numpy"`` and ``"cupy"``, the strict reference implementation
``"array_api_strict"`` is accepted as a backend; the test suite runs the op suite on it
to prove that no op relies on a NumPy-only function.
"""

from __future__ import annotations

import contextvars
import importlib
import math
from types import ModuleType
from typing import Any

import numpy as np

from refopt._scoped import Scoped

__all__ = [
    "BACKENDS",
    "namespace",
    "backend_name",
    "device_of",
    "current_backend",
    "use_backend",
    "asarray",
    "move",
    "host_rng",
    "is_floating",
    "dtype_name",
    "resolve_dtype",
    "erf",
    "erfc",
    "scatter_add_rows",
    "cupy_available",
]

BACKENDS = ("numpy", "cupy", "array_api_strict")

# Where new values are created: a context variable, so that a ``with use_backend(...)``
# in one thread (or asyncio task) never changes where another thread's values land.
_current: contextvars.ContextVar[str] = contextvars.ContextVar("refopt_backend", default="numpy")
_modules: dict[str, ModuleType] = {"numpy": np}


def _load(name: str) -> ModuleType:
    """Import a backend's namespace once; raise a clear error naming the backend."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends are {', '.join(BACKENDS)}")
    mod = _modules.get(name)
    if mod is None:
        try:
            if name == "cupy":
                importlib.import_module("cupy")
                # CuPy's own namespace predates some array-API names (concat,
                # permute_dims, astype); the compat wrapper supplies them.
                mod = importlib.import_module("array_api_compat.cupy")
            else:
                mod = importlib.import_module(name)
        except ImportError as exc:
            extra = ' (pip install ".[gpu]" in the refopt source folder)' if name == "cupy" else ""
            raise ImportError(f"backend {name!r} is not installed{extra}") from exc
        _modules[name] = mod
    return mod


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.is_available())
    except Exception:  # a driver problem means: not available
        return False


def backend_name(a: Any) -> str:
    """The backend an array belongs to: ``"numpy"``, ``"cupy"`` or ``"array_api_strict"``."""
    if isinstance(a, (np.ndarray, np.generic)):
        return "numpy"
    mod = type(a).__module__.split(".", 1)[0]
    if mod in BACKENDS:
        return mod
    raise TypeError(f"not an array of a supported backend: {type(a).__name__}")


def namespace(a: Any) -> ModuleType:
    """The array-API namespace of array ``a`` (NumPy's main namespace for NumPy arrays)."""
    if isinstance(a, np.ndarray):
        return np
    return _load(backend_name(a))


def device_of(a: Any) -> str:
    """A short device label for messages: ``"cpu"`` or ``"cuda:N"``."""
    name = backend_name(a)
    if name == "cupy":
        return f"cuda:{a.device.id}"
    return "cpu"


def current_backend() -> str:
    """The backend new values are created on (in this thread / asyncio task)."""
    return _current.get()


class use_backend(Scoped):
    """Set where new values are created: a plain call sets it for this thread or asyncio
    task, a ``with`` block restores the previous backend on exit.

    The setting is a context variable: other threads keep their own (a new thread starts
    on NumPy), and an asyncio task sees the setting of the code that created it.

    >>> rf.use_backend("cupy")            # from now on, in this thread
    >>> with rf.use_backend("numpy"): ... # only inside the block

    The object may be kept and entered again, nested too (see :class:`refopt.use_mode`).
    """

    def __init__(self, name: str) -> None:
        _load(name)
        self.name = name
        super().__init__(_current, name)


_DTYPE_NAMES = ("float32", "float64", "int32", "int64", "bool", "int8", "int16", "uint8")


def resolve_dtype(dtype: Any, xp: ModuleType) -> Any:
    """Map a dtype given as a string, NumPy dtype or backend dtype to ``xp``'s dtype object."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = dtype_name(dtype)
    if name not in _DTYPE_NAMES:
        raise TypeError(f"unsupported dtype {dtype!r}; refopt computes in float32 and float64")
    return getattr(xp, name)


def dtype_name(dtype: Any) -> str:
    """The canonical name of a dtype of any backend (``"float32"``...)."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


def is_floating(dtype: Any) -> bool:
    """True for float32 and float64 on any backend."""
    return dtype_name(dtype) in ("float32", "float64")


def asarray(value: Any, dtype: Any = None, backend: str | None = None) -> Any:
    """Create a new array on ``backend`` (default: the current one) holding ``value``.

    Python scalars and lists follow NumPy's inference (float -> float64, int -> int64).
    An array already on another device is *not* moved here: use :func:`move`.
    """
    name = backend or _current.get()
    xp = _load(name)
    if hasattr(value, "__array_namespace__") or isinstance(value, np.generic):
        src = backend_name(value)
        if src not in (name, "numpy"):  # host values may be created anywhere; device values never move here
            raise ValueError(
                f"refopt.asarray: value lives on {src} ({device_of(value)}); "
                f"move it explicitly with rf.to_device(x, {name!r})"
            )
    if name == "numpy":
        return np.array(value, dtype=None if dtype is None else resolve_dtype(dtype, np))
    if isinstance(value, (np.ndarray, np.generic)) or not hasattr(value, "__array_namespace__"):
        host = np.asarray(value, dtype=None if dtype is None else resolve_dtype(dtype, np))
        return _from_host(host, name)
    out = xp.asarray(value, copy=True)
    return out if dtype is None else xp.astype(out, resolve_dtype(dtype, xp))


def _from_host(host: np.ndarray, name: str) -> Any:
    if name == "numpy":
        return np.array(host)
    if name == "cupy":
        import cupy

        return cupy.asarray(host)
    xp = _load(name)
    return xp.asarray(host.tolist() if host.ndim == 0 else host, dtype=getattr(xp, host.dtype.name))


def to_host(a: Any) -> np.ndarray:
    """A NumPy copy of any backend's array (the one sanctioned device->host path)."""
    name = backend_name(a)
    if name == "numpy":
        return np.array(a)
    if name == "cupy":
        return a.get()
    return np.array(np.from_dlpack(a))


def move(a: Any, backend: str) -> Any:
    """Move array ``a`` to ``backend`` explicitly (a copy; same dtype and values)."""
    _load(backend)
    if backend_name(a) == backend:
        return a
    return _from_host(to_host(a), backend)


def host_rng(seed: int | np.random.Generator) -> np.random.Generator:
    """The host generator all random draws use (NumPy PCG64), so every backend sees the same numbers."""
    if isinstance(seed, np.random.Generator):
        return seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or numpy.random.Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


# ---------------------------------------------------------------------------------------
# Functions the libraries spell differently
# ---------------------------------------------------------------------------------------

_SQRT_PI = math.sqrt(math.pi)
_SPLIT = 1.0  # series below, continued fraction above (see _erf_generic)


def _special(name: str, x: Any) -> Any:
    """SciPy's special function ``name`` on NumPy, cupyx.scipy's on CuPy, else the portable one."""
    kind = backend_name(x)
    if kind == "numpy":
        from scipy import special

        return getattr(special, name)(x)
    if kind == "cupy":
        from cupyx.scipy import special

        return getattr(special, name)(x)
    return _erf_generic(namespace(x), x, complement=name == "erfc")


def erf(x: Any) -> Any:
    """The error function erf(x) = 2/sqrt(pi) * int_0^x exp(-t^2) dt, elementwise."""
    return _special("erf", x)


def erfc(x: Any) -> Any:
    """The complementary error function erfc(x) = 1 - erf(x), accurate where erf(x) ~ 1."""
    return _special("erfc", x)


def _erf_generic(xp: ModuleType, x: Any, complement: bool) -> Any:
    """erf / erfc from array-API operations alone (the path for strict arrays).

    For |x| < 1 the positive series (Abramowitz & Stegun 7.1.6)
        erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1))
    has no cancellation; from 1 up, the continued fraction (A&S 7.1.14)
        erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
    evaluated bottom-up at depth 200 (converged to float64 precision for x >= 1).
    Both are within a few ULP of the true values in float64.
    """
    a = xp.abs(x)
    small = xp.minimum(a, _SPLIT)
    x2 = small * small
    term = small
    total = small
    for n in range(1, 30):
        term = term * (2.0 * x2 / (2 * n + 1))
        total = total + term
    erf_small = (2.0 / _SQRT_PI) * xp.exp(-x2) * total
    big = xp.maximum(a, _SPLIT)
    f = big
    for k in range(200, 0, -1):
        f = big + (k / 2.0) / f
    erfc_big = xp.exp(-big * big) / (_SQRT_PI * f)
    is_small = a < _SPLIT
    if not complement:
        erf_abs = xp.where(is_small, erf_small, 1.0 - erfc_big)
        return xp.where(x < 0, -erf_abs, erf_abs)
    erfc_abs = xp.where(is_small, 1.0 - erf_small, erfc_big)
    return xp.where(x < 0, 2.0 - erfc_abs, erfc_abs)


def scatter_add_rows(values: Any, indices: Any, num_rows: int) -> Any:
    """``out[indices[i]] += values[i]`` into zeros of shape ``(num_rows,) + values.shape[1:]``.

    Duplicate indices are summed in the order they appear (row 0 first), so the result is
    the same bits on every run and every backend that takes the NumPy or CuPy path.
    """
    name = backend_name(values)
    xp = namespace(values)
    shape = (num_rows,) + tuple(values.shape[1:])
    if name == "numpy":
        out = np.zeros(shape, dtype=values.dtype)
        np.add.at(out, indices, values)
        return out
    if name == "cupy":
        return scatter_add_rounds(xp, values, indices, num_rows)
    # Strict arrays have no scatter: a one-hot matrix product (exact sums, other order).
    onehot = xp.astype(
        xp.reshape(indices, (-1, 1)) == xp.reshape(xp.arange(num_rows, dtype=indices.dtype), (1, -1)),
        values.dtype,
    )
    width = math.prod(values.shape[1:])
    flat = xp.reshape(values, (values.shape[0], width))
    return xp.reshape(xp.matmul(xp.permute_dims(onehot, (1, 0)), flat), shape)


def scatter_add_rounds(xp: ModuleType, values: Any, indices: Any, num_rows: int) -> Any:
    """Deterministic scatter-add without atomics: one round per duplicate rank.

    Sorting the indices stably gives each occurrence a rank within its run of equal
    indices; round r adds every rank-r row at once (no two rows of a round collide), so
    row j's sum is built in the order the duplicates appear -- exactly ``np.add.at``'s
    order and bits.  Used on CuPy, where ``scatter_add`` uses atomics in no fixed order.
    """
    shape = (num_rows,) + tuple(values.shape[1:])
    out = xp.zeros(shape, dtype=values.dtype)
    k = indices.shape[0]
    if k == 0:
        return out
    order = xp.argsort(indices, stable=True)
    sorted_idx = xp.take(indices, order)
    sorted_vals = xp.take(values, order, axis=0)
    start = xp.searchsorted(sorted_idx, sorted_idx, side="left")
    rank = xp.arange(k, dtype=start.dtype) - start
    for r in range(int(xp.max(rank)) + 1):
        (pos,) = xp.nonzero(rank == r)
        rows = xp.take(sorted_idx, pos)
        out[rows] = out[rows] + xp.take(sorted_vals, pos, axis=0)
    return out
