"""Exact arithmetic kernels: FMA against exact rational arithmetic, libm pow."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refopt.kernels.fma import fma
from refopt.kernels.libm import pow32, pow64
from tests.kernels.exact import round_fraction


def _exact64(a, b, c):
    return float(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


def _exact32(a, b, c):
    v = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    f = np.float32(float(v))  # may round twice: pick the nearest of the neighbours, ties to even
    cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    return min(cands, key=lambda q: (abs(Fraction(float(q)) - v), int(np.asarray(q).view(np.int32)) & 1))


floats64 = st.floats(min_value=-1e100, max_value=1e100, allow_nan=False, allow_infinity=False, allow_subnormal=False)
floats32 = st.floats(
    min_value=-(2.0**60), max_value=2.0**60, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False
)


@settings(max_examples=400)
@given(a=floats64, b=floats64, c=floats64)
def test_fma64_is_correctly_rounded(a, b, c) -> None:
    assert fma(np.array([a]), np.array([b]), np.array([c]))[0] == _exact64(a, b, c)


@settings(max_examples=400)
@given(a=floats32, b=floats32, c=floats32)
def test_fma32_is_correctly_rounded(a, b, c) -> None:
    got = fma(np.array([a], np.float32), np.array([b], np.float32), np.array([c], np.float32))[0]
    assert got == _exact32(a, b, c)


def _ieee64(a: float, b: float, c: float) -> float:
    """IEEE 754's fma in round-to-nearest, from exact rationals: an exact zero sum is -0
    only for (-0) + (-0) -- a zero product with the sign of a*b, plus c = -0 -- else +0;
    a nonzero value rounds once (a negative one that rounds to zero is -0)."""
    p = Fraction(a) * Fraction(b)
    v = p + Fraction(c)
    if v == 0:
        negative_product = math.copysign(1.0, a) * math.copysign(1.0, b) < 0
        return -0.0 if p == 0 and c == 0 and negative_product and math.copysign(1.0, c) < 0 else 0.0
    return float(round_fraction(v, np.float64))


def _same64(got: np.ndarray, want: list[float]) -> bool:
    return np.array_equal(got.view(np.int64), np.array(want, np.float64).view(np.int64))


def test_fma64_signs_of_zero_and_subnormal_operands() -> None:
    """Every combination of signed zeros, +-1, 3 and the smallest subnormal: the bits."""
    vals = [0.0, -0.0, 1.0, -1.0, 3.0, 2.0**-1074, -(2.0**-1074)]
    a, b, c = (np.array(x) for x in zip(*[(x, y, z) for x in vals for y in vals for z in vals]))
    assert _same64(fma(a, b, c), [_ieee64(x, y, z) for x, y, z in zip(a.tolist(), b.tolist(), c.tolist())])


@pytest.mark.parametrize("seed", range(3))
def test_fma64_products_below_dekkers_range(seed) -> None:
    """Products from 2^-1130 to 2^-930 -- where TwoProduct's error term underflows --
    plus c cancelling the product, c tiny, c subnormal, c normal: the bits."""
    rng = np.random.default_rng(seed)
    n = 3000
    a = rng.standard_normal(n) * 2.0 ** rng.integers(-600, -450, n)
    b = rng.standard_normal(n) * 2.0 ** rng.integers(-560, -420, n)
    kind = rng.integers(0, 4, n)
    c = np.select(
        [kind == 0, kind == 1, kind == 2],
        [-(a * b), rng.standard_normal(n) * 2.0 ** rng.integers(-1074, -1000, n), rng.standard_normal(n) * 2.0**-960],
        rng.standard_normal(n) * 2.0 ** rng.integers(-905, -895, n),
    )
    want = [_ieee64(x, y, z) for x, y, z in zip(a.tolist(), b.tolist(), c.tolist())]
    assert _same64(fma(a, b, c), want)


@settings(max_examples=400)
@given(
    a=st.floats(-(2.0**500), 2.0**500, allow_nan=False),
    b=st.floats(-(2.0**500), 2.0**500, allow_nan=False),
    c=st.floats(allow_nan=False, allow_infinity=False),
)
def test_fma64_bits_with_subnormals_and_zeros(a, b, c) -> None:
    assert _same64(fma(np.array([a]), np.array([b]), np.array([c])), [_ieee64(a, b, c)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_on_cancellation_heavy_arrays(dtype) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(3000).astype(dtype), rng.standard_normal(3000).astype(dtype)
    c = (-(a.astype(np.float64) * b) * (1 + 1e-7 * rng.standard_normal(3000))).astype(dtype)
    exact = _exact64 if dtype == np.float64 else _exact32
    want = np.array([exact(x, y, z) for x, y, z in zip(a, b, c)], dtype)
    got = fma(a, b, c)
    assert got.dtype == dtype and np.array_equal(got, want)
    assert not np.array_equal((a * b + c).astype(dtype), want)  # the unfused form does differ here
    assert fma(a, dtype(0.5), c).dtype == dtype  # scalars in the dtype broadcast


def test_libm_pow_is_the_c_library() -> None:
    import ctypes
    import ctypes.util

    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.powf.restype, libm.powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
    for t in range(1, 300):
        assert pow32(0.9, t) == np.float32(libm.powf(0.9, float(t)))
        assert pow64(0.999, t) == math.pow(0.999, t)


def test_fma32_where_rounding_twice_would_be_wrong() -> None:
    """a*b + c whose float64 rounding lands exactly on a float32 midpoint (so rounding it
    again to float32 would tie to even), float32 subnormal results and the overflow
    threshold: each against exact rational arithmetic."""
    m = np.float32(1 + 2**-12)  # m*m = 1 + 2^-11 + 2^-24: a float32 midpoint
    tiny = np.float32(2.0**-70)
    sub = np.float32(2.0**-75)
    big = np.finfo(np.float32).max
    cases = [
        (m, m, tiny),  # a hair above the midpoint: up (twice-rounded: even, down)
        (m, m, -tiny),  # a hair below: down
        (m, -m, tiny),  # negative
        (sub, np.float32(3.0), np.float32(2.0**-149)),  # subnormal results
        (sub, np.float32(0.5), np.float32(-(2.0**-149))),
        (big, np.float32(1.0), np.float32(2.0**103)),  # the overflow threshold
        (big, np.float32(1.0), np.float32(2.0**102)),
    ]
    a, b, c = (np.array(col, np.float32) for col in zip(*cases))
    got = fma(a, b, c)
    want = [
        round_fraction(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)), np.float32) for x, y, z in cases
    ]
    assert [np.float32(g).tobytes() for g in got] == [np.float32(w).tobytes() for w in want]
    with np.errstate(over="ignore"):
        plain = (a.astype(np.float64) * b + c).astype(np.float32)
    assert plain[0] != got[0]  # the hazard is real: rounding twice gets the first case wrong
