"""The numerics mode: ``"reproducible"`` (the default) or ``"fast"``.

* ``reproducible``: every op whose bits a library would choose -- matrix products,
  reductions, transcendental functions -- runs refopt's own kernels, whose results are
  a function of the inputs alone: the same bits on every CPU, BLAS, thread count and
  backend (see docs/reproducibility.md).
* ``fast``: those ops call the array library (BLAS, NumPy's SIMD loops, CuPy); the bits
  may change with the machine.  Everything else is unchanged.

The mode is per thread and per asyncio task (a context variable).  Set it with
:func:`use_mode` (a plain call or a ``with`` block) or, for a whole process, with the
environment variable ``REFOPT_MODE``.
"""

from __future__ import annotations

import contextvars
import numbers
import os

from refopt._scoped import Scoped

__all__ = [
    "MODES",
    "KERNELS",
    "current_mode",
    "use_mode",
    "reproducible",
    "set_kernels",
    "current_kernels",
    "current_threads",
    "numba_available",
]

MODES = ("reproducible", "fast")


def _from_environment() -> str:
    name = os.environ.get("REFOPT_MODE", "reproducible").strip().lower() or "reproducible"
    if name not in MODES:
        raise ValueError(f"REFOPT_MODE={name!r} is not a numerics mode; valid modes are {', '.join(MODES)}")
    return name


_DEFAULT = _from_environment()  # a str: immutable, safe as a ContextVar default
_mode: contextvars.ContextVar[str] = contextvars.ContextVar("refopt_mode", default=_DEFAULT)


def current_mode() -> str:
    """The numerics mode of this thread / task: ``"reproducible"`` or ``"fast"``."""
    return _mode.get()


def reproducible() -> bool:
    """True when ops must give machine-independent bits (the default)."""
    return _mode.get() == "reproducible"


def _mode_name(name: object) -> str:
    """A mode's name, case and surrounding spaces ignored (as ``REFOPT_MODE`` reads it)."""
    canon = name.strip().lower() if isinstance(name, str) else None
    if canon not in MODES:
        raise ValueError(f"unknown numerics mode {name!r}; valid modes are {', '.join(MODES)}")
    return canon


class use_mode(Scoped):
    """Set the numerics mode: a plain call sets it for this thread or task, a ``with``
    block restores the previous mode on exit.  The name is case-insensitive.

    >>> rf.use_mode("fast")                    # from now on, in this thread
    >>> with rf.use_mode("reproducible"): ...  # only inside the block

    The object may be kept and entered again (``m = rf.use_mode("fast")``, then ``with
    m:`` as often as wanted, nested too): each later entry sets the mode anew and its
    exit restores the mode found at that entry.
    """

    def __init__(self, name: str) -> None:
        self.name = _mode_name(name)
        super().__init__(_mode, self.name)


# -- which implementation runs the compiled kernels ---------------------------------------------
KERNELS = ("numba", "numpy")


def numba_available() -> bool:
    """True when numba imports (the compiled kernels' CPU path)."""
    global _NUMBA
    if _NUMBA is None:
        try:
            import numba  # noqa: F401
        except Exception:  # not installed, or broken: the NumPy path serves
            _NUMBA = False
        else:
            _NUMBA = True
    return _NUMBA


_NUMBA: bool | None = None


def _kernels_from_environment() -> str:
    name = os.environ.get("REFOPT_KERNELS", "numba").strip().lower() or "numba"
    if name not in KERNELS:
        raise ValueError(f"REFOPT_KERNELS={name!r} is not a kernel implementation; valid ones are {', '.join(KERNELS)}")
    return name


def _threads_from_environment() -> int:
    raw = os.environ.get("REFOPT_THREADS", "1").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"REFOPT_THREADS={raw!r} must be a whole number >= 1")
    return int(raw)


_KERNELS_DEFAULT = _kernels_from_environment()
_THREADS_DEFAULT = _threads_from_environment()
_kernels: contextvars.ContextVar[str] = contextvars.ContextVar("refopt_kernels", default=_KERNELS_DEFAULT)
_threads: contextvars.ContextVar[int] = contextvars.ContextVar("refopt_threads", default=_THREADS_DEFAULT)


def set_kernels(name: str, threads: int | None = None) -> None:
    """Choose how the elementwise kernels (optimizer updates, transcendental functions) run
    on NumPy arrays, for this thread or task: ``"numba"`` (compiled; the default) or
    ``"numpy"`` (the reference: one NumPy call per formula operation); case-insensitive.
    Both give the same bits.  Without numba installed, ``"numba"`` runs the NumPy path.

    ``threads``: how many threads a compiled kernel may use on large arrays (default 1,
    or ``REFOPT_THREADS``): one, so that a kernel never competes with the BLAS threads of
    the matrix products around it; more splits a call of 2^19 elements and up into runs
    of at least 2^18 (:mod:`refopt.kernels.threads`).  The bits do not depend on it."""
    canon = name.strip().lower() if isinstance(name, str) else None
    if canon not in KERNELS:
        raise ValueError(f"unknown kernels {name!r}; valid ones are {', '.join(KERNELS)}")
    # Python and NumPy integers (numbers.Integral); bool is one but says nothing of a count
    if threads is not None and (not isinstance(threads, numbers.Integral) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    _kernels.set(canon)
    if threads is not None:
        _threads.set(int(threads))


def current_threads() -> int:
    """The threads a compiled kernel may use (see :func:`set_kernels`)."""
    return _threads.get()


def current_kernels() -> str:
    """The kernels that run now: ``"numba"`` when chosen and importable, else ``"numpy"``."""
    name = _kernels.get()
    return name if name == "numpy" or numba_available() else "numpy"
