"""The platform C library's ``pow`` and ``powf``, for the scalar powers in bias
corrections (and ``cosf``, for optax's cosine schedules).

TensorFlow's scalar ``Pow`` (Eigen's ``numext::pow``), XLA's ``pow`` and PyTorch's
``std::pow`` all call libm; NumPy's ``np.power`` does not (on AVX-512 machines it uses
its own SIMD routine and differs in the last bit for some inputs).  So beta powers are
computed here, never with ``np.power``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np

__all__ = ["pow64", "pow32", "cos32", "LIBM_POWF"]


def _load_powf():
    name = ctypes.util.find_library("m") or "libm.so.6"
    try:
        lib = ctypes.CDLL(name)
        fn = lib.powf
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float, ctypes.c_float]
    return fn


_powf = _load_powf()
LIBM_POWF = _powf is not None


def pow64(base: float, exponent: float) -> float:
    """libm ``pow`` in double (what Python's ``**`` on floats calls)."""
    return math.pow(float(base), float(exponent))


def pow32(base: float, exponent: float) -> np.float32:
    """libm ``powf``: both arguments rounded to float32 first, the result a float32."""
    b, e = float(np.float32(base)), float(np.float32(exponent))
    if _powf is None:  # no C library found: NumPy's float32 power (may differ in the last bit)
        return np.power(np.float32(b), np.float32(e))
    return np.float32(_powf(b, e))


def _load_cosf():
    name = ctypes.util.find_library("m") or "libm.so.6"
    try:
        fn = ctypes.CDLL(name).cosf
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    return fn


_cosf = _load_cosf()


def cos32(x: float) -> np.float32:
    """libm ``cosf`` (XLA's float32 ``cos`` on the CPU gives the same bits): the argument
    rounded to float32 first, the result a float32."""
    if _cosf is None:  # no C library found: NumPy's float32 cos (may differ in the last bit)
        return np.cos(np.float32(x))
    return np.float32(_cosf(float(np.float32(x))))
