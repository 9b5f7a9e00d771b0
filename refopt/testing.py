"""Assertions for users' own test suites: ULP distances and trajectory equality.

    from refopt.testing import assert_allclose_ulp, assert_trajectory_equal
    assert_trajectory_equal(my_trajectory, refopt.oracle.load("golden.npz"), max_ulp=0)

A ULP distance counts the representable floats between two values of one dtype
(0 = bit-identical, +0 and -0 are 0 apart, NaN is 0 from NaN and infinitely far from
anything else).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ulp_distance", "max_ulp", "assert_allclose_ulp", "assert_trajectory_equal"]

_INT = {
    np.dtype(np.float32): (np.int32, 2**31),
    np.dtype(np.float64): (np.int64, 2**63),
    np.dtype(np.float16): (np.int16, 2**15),
}


def _keys(x: np.ndarray) -> np.ndarray:
    """Monotone int64 keys: consecutive floats get consecutive keys, +0 and -0 one key."""
    ity, top = _INT[x.dtype]
    bits = x.view(ity).astype(np.int64)
    with np.errstate(over="ignore"):
        return np.where(bits < 0, np.int64(-top) - bits if ity is not np.int64 else np.iinfo(np.int64).min - bits, bits)


def ulp_distance(a: Any, b: Any) -> np.ndarray:
    """Elementwise ULP distance between two arrays of the same float dtype and shape, as
    float64 (exact below 2**53)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.dtype not in _INT:
        raise TypeError(f"ulp_distance: both arrays must share one float dtype, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"ulp_distance: shapes {a.shape} and {b.shape} differ")
    ka, kb = _keys(a), _keys(b)
    # |ka - kb| without int64 overflow: magnitudes add when the signs differ
    same = (ka >= 0) == (kb >= 0)
    with np.errstate(over="ignore"):
        close = np.abs(ka - kb).astype(np.uint64)
    apart = np.abs(ka).astype(np.uint64) + np.abs(kb).astype(np.uint64)
    d = np.where(same, close, apart).astype(np.float64)
    na, nb = np.isnan(a), np.isnan(b)
    return np.where(na | nb, np.where(na & nb, 0.0, np.inf), d)


def max_ulp(a: Any, b: Any) -> float:
    """The largest elementwise ULP distance (0 for empty arrays)."""
    d = ulp_distance(a, b)
    return float(d.max()) if d.size else 0.0


def assert_allclose_ulp(actual: Any, desired: Any, max_ulp: float = 0, err_msg: str = "") -> None:
    """Fail unless every element of ``actual`` is within ``max_ulp`` ULPs of ``desired``;
    the message gives the worst element, both values and the count outside."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    d = ulp_distance(actual, desired)
    bad = d > max_ulp
    if bad.any():
        i = np.unravel_index(int(np.argmax(d)), d.shape)
        raise AssertionError(
            f"{err_msg + ': ' if err_msg else ''}{int(bad.sum())} of {d.size} elements differ by more than "
            f"{max_ulp:g} ULP; worst at index {tuple(int(k) for k in i)}: {actual[i]!r} vs {desired[i]!r} "
            f"({d[i]:g} ULP)"
        )


def assert_trajectory_equal(actual: Any, golden: Any, max_ulp: float = 0, slots: bool = True) -> None:
    """Fail at the first step and variable where ``actual`` leaves ``max_ulp`` ULPs of
    ``golden`` (parameters, and slots unless ``slots=False``)."""
    if set(actual.params) != set(golden.params):
        raise AssertionError(f"variables differ: {sorted(actual.params)} vs {sorted(golden.params)}")
    if actual.steps != golden.steps:
        raise AssertionError(f"{actual.steps} steps vs {golden.steps} in the golden trajectory")
    for k in range(golden.steps + 1):
        for name in golden.params:
            assert_allclose_ulp(actual.params[name][k], golden.params[name][k], max_ulp, f"step {k}, variable {name!r}")
            if slots and k > 0:
                for s, g in golden.slots[name].items():
                    if s not in actual.slots[name]:
                        raise AssertionError(f"variable {name!r} has no slot {s!r}")
                    assert_allclose_ulp(
                        actual.slots[name][s][k - 1], g[k - 1], max_ulp, f"step {k}, variable {name!r}, slot {s!r}"
                    )
