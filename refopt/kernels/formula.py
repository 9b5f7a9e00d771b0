"""The formula layer: elementwise arithmetic written once, over IEEE basic operations.

A *formula* is a Python function whose first argument is an ops object ``K`` and whose
other arguments are values ``K`` computes with.  It may use only

* the operators ``+ - * /`` on float64 values (each one IEEE rounding to nearest, never
  contracted into a fused multiply-add), unary ``-``, the comparisons, ``& | ~`` on
  masks, and ``+ - * & | >> <<`` on int64 values, with Python numbers as constants;
* ``K.where(c, a, b)``, ``K.abs``, ``K.sqrt`` (correctly rounded), ``K.rint`` (to the
  nearest integral value, ties to even), ``K.floor``, ``K.isnan``, ``K.signbit``;
* ``K.bits(x)`` / ``K.from_bits(i)``: a float64 read as its int64 bit pattern and back;
  ``K.to_int(x)``: an integral float64 as int64; ``K.to_float(i)``: an int64 of magnitude
  below 2^53 as float64 (exact);
* ``K.to_f64(x)`` (exact widening) and ``K.to_f32(x)`` (rounding to nearest float32);
* ``K.lookup(table, i)``: entry ``i`` of a constant NumPy table;
* ``K.fma(a, b, c)``: ``a*b + c`` rounded once (exact on every path; costly in NumPy).

Those are the operations that round the same way everywhere: in NumPy and CuPy
elementwise calls, in numba without fast-math, and in CUDA C with the ``_rn``
intrinsics.  A formula written with nothing else therefore has one set of bits, which is
what every path that evaluates it is tested against.  :class:`ArrayOps` is the reference
evaluator: it applies a formula to NumPy or CuPy arrays, one elementwise call per
operation.  Data-dependent control flow is written with ``K.where``, never ``if``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["ArrayOps", "array_ops"]


class ArrayOps:
    """Evaluate formulas on the arrays of one namespace (NumPy or CuPy)."""

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp
        self._tables: dict[int, tuple[np.ndarray, Any]] = {}

    def where(self, c: Any, a: Any, b: Any) -> Any:
        return self.xp.where(c, a, b)

    def abs(self, x: Any) -> Any:
        return self.xp.abs(x)

    def sqrt(self, x: Any) -> Any:
        return self.xp.sqrt(x)

    def rint(self, x: Any) -> Any:
        return self.xp.rint(x)

    def floor(self, x: Any) -> Any:
        return self.xp.floor(x)

    def isnan(self, x: Any) -> Any:
        return self.xp.isnan(x)

    def signbit(self, x: Any) -> Any:
        return self.xp.signbit(x)

    def bits(self, x: Any) -> Any:
        xp = self.xp
        return xp.asarray(x, dtype=xp.float64).view(xp.int64)

    def from_bits(self, i: Any) -> Any:
        xp = self.xp
        return xp.asarray(i, dtype=xp.int64).view(xp.float64)

    def to_int(self, x: Any) -> Any:
        return self.xp.asarray(x).astype(self.xp.int64)

    def to_float(self, i: Any) -> Any:
        return self.xp.asarray(i).astype(self.xp.float64)

    def to_f64(self, x: Any) -> Any:
        return self.xp.asarray(x).astype(self.xp.float64)

    def to_f32(self, x: Any) -> Any:
        return self.xp.asarray(x).astype(self.xp.float32)

    def lookup(self, table: np.ndarray, i: Any) -> Any:
        """``table[i]``; the table is copied to the device once and kept."""
        hit = self._tables.get(id(table))
        if hit is None:
            hit = self._tables[id(table)] = (table, self.xp.asarray(table))
        return self.xp.take(hit[1], i)  # = hit[1][i] for a 1-D table, and faster in NumPy

    def fma(self, a: Any, b: Any, c: Any) -> Any:
        from refopt.kernels.fma import fma

        return fma(a, b, c)


_by_namespace: dict[int, ArrayOps] = {}


def array_ops(xp: ModuleType) -> ArrayOps:
    """The (cached) evaluator for namespace ``xp``."""
    ops = _by_namespace.get(id(xp))
    if ops is None:
        ops = _by_namespace[id(xp)] = ArrayOps(xp)
    return ops
