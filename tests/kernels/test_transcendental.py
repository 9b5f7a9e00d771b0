"""refopt's transcendental functions against mpmath, C99's special values and themselves.

The full error table (>= 10^6 points per function and dtype) is made by
``tools/transcendental_errors.py``; these are the fast checks: sampled points against
mpmath (every float32 one correctly rounded, float64 within 0.51 ulp), every special value
and C99's pow table, monotonicity across the kernels' interval boundaries, odd symmetry,
shapes and dtypes, the operations the formulas may use, the same bits with NumPy's
AVX-512 loops disabled, and the coefficient file being what the fitting script makes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest

from refopt.kernels import transcendental as T
from refopt.kernels.formula import ArrayOps

ROOT = Path(__file__).resolve().parents[2]
UNARY = ["exp", "log", "log1p", "tanh", "sigmoid", "erf", "erfc", "gelu", "gelu_tanh"]
DTYPES = [np.float32, np.float64]
FMT = {np.float32: (24, -126, 128), np.float64: (53, -1022, 1024)}
INF, NAN = float("inf"), float("nan")


# -- mpmath references --------------------------------------------------------------------
def _exact(name: str, x: float, y: float | None = None):
    xm = mp.mpf(x)
    if name == "exp":
        return mp.exp(xm)
    if name == "log":
        return mp.log(xm)
    if name == "log1p":
        return mp.log1p(xm)
    if name == "tanh":
        return mp.tanh(xm)
    if name == "sigmoid":
        return 1 / (1 + mp.exp(-xm))
    if name == "erf":
        return mp.erf(xm)
    if name == "erfc":
        return mp.erfc(xm)
    if name == "gelu":
        return xm / 2 * mp.erfc(-xm / mp.sqrt(2))
    if name == "gelu_tanh":  # x/2 (1 + tanh u) = x / (1 + e^(-2u)), no cancellation
        u = mp.sqrt(2 / mp.pi) * (xm + mp.mpf("0.044715") * xm**3)
        return xm / (1 + mp.exp(-2 * u))
    if name == "power":
        ym = mp.mpf(y)
        sign = -1 if (x < 0 and ym % 2 == 1) else 1
        return sign * mp.exp(ym * mp.log(abs(xm)))
    raise ValueError(name)


def _ulps(got: float, ex, dtype) -> float:
    """|got - exact| in ulps of the exact value's binade (subnormal quantum below)."""
    p, emin, emax = FMT[dtype]
    if ex == 0:
        return 0.0 if got == 0 else INF
    if abs(ex) >= mp.ldexp(1, emax) * (1 - mp.ldexp(1, -p - 1)):
        return 0.0 if np.isinf(got) and (got > 0) == (ex > 0) else INF
    _, e = mp.frexp(ex)
    binade = min(max(int(e) - 1, emin), emax - 1)
    g = mp.ldexp(1 if got > 0 else -1, emax) if np.isinf(got) else mp.mpf(float(got))
    return float(abs(g - ex) / mp.ldexp(1, binade - p + 1))


def _points(name: str, dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    """A spread of arguments: the function's busy range, tiny ones, and its edges."""
    f64 = dtype == np.float64
    busy = {
        "exp": (-745.0, 709.0) if f64 else (-103.0, 88.0),
        "log": (0.0, 10.0),
        "log1p": (-1.0, 10.0),
        "tanh": (-20.0, 20.0),
        "sigmoid": (-745.0, 40.0) if f64 else (-103.0, 20.0),
        "erf": (-6.0, 6.0),
        "erfc": (-6.0, 27.0) if f64 else (-6.0, 10.0),
        "gelu": (-38.0, 10.0) if f64 else (-14.0, 10.0),
        "gelu_tanh": (-22.0, 10.0) if f64 else (-11.5, 10.0),
    }[name]
    near = {"log": (0.0, 2.0), "log1p": (-1.0, 2.0)}.get(name, (-2.0, 2.0))
    x = [rng.uniform(*busy, n), rng.uniform(*near, n // 2)]
    if name == "log":
        x.append(np.exp(rng.uniform(-700 if f64 else -100, 700 if f64 else 88, n // 2)))
        x.append(1 + rng.uniform(-(2.0**-20), 2.0**-20, n // 4))
    else:
        tiny = np.exp2(rng.uniform(-1000 if f64 else -120, -10, n // 4)) * rng.choice([-1, 1], n // 4)
        x.append(tiny if name != "log1p" else np.abs(tiny) * rng.choice([-1, 1], n // 4))
    return np.concatenate(x).astype(dtype)


@pytest.fixture(scope="module", autouse=True)
def _precision():
    with mp.workprec(160):
        yield


def _check_against_mpmath(name: str, dtype, xs: np.ndarray, ys: np.ndarray | None = None) -> None:
    got = T.power(xs, ys) if name == "power" else getattr(T, name)(xs)
    assert got.dtype == dtype and got.shape == xs.shape
    worst = (0.0, None)
    for k in range(xs.size):
        y = None if ys is None else float(ys[k])
        err = _ulps(float(got[k]), _exact(name, float(xs[k]), y), dtype)
        if err > worst[0]:
            worst = (err, (float(xs[k]), y, float(got[k])))
    # float32: one rounding of a float64 core good to ~2^-50, so correctly rounded on a
    # sample of this size; float64: within 0.51 ulp (correctly rounded in > 99.9 %).
    bound = 0.5 if dtype == np.float32 else 0.51
    assert worst[0] <= bound, f"{name} {np.dtype(dtype).name}: {worst[0]:.4f} ulp at (x, y, got) = {worst[1]}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_against_mpmath(name, dtype) -> None:
    rng = np.random.default_rng(UNARY.index(name))
    _check_against_mpmath(name, dtype, _points(name, dtype, 300, rng))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_power_against_mpmath(dtype) -> None:
    rng = np.random.default_rng(11)
    f64 = dtype == np.float64
    top = 709.0 if f64 else 88.0
    bottom = -744.0 if f64 else -103.0
    x1 = np.exp(rng.uniform(-20, 20, 200))
    y1 = rng.uniform(bottom, top, 200) / np.log(x1)  # results over the whole range
    x2 = rng.uniform(-4, 4, 150)
    y2 = np.rint(rng.uniform(-40, 40, 150))  # integer exponents, negative bases
    x3 = 1 + rng.uniform(-1e-6, 1e-6, 100) if f64 else 1 + rng.uniform(-1e-3, 1e-3, 100)
    y3 = rng.uniform(-600, 600, 100) / np.log(x3)  # x near 1, huge y
    xs = np.concatenate([x1, x2, x3]).astype(dtype)
    ys = np.concatenate([y1, y2, y3]).astype(dtype)
    _check_against_mpmath("power", dtype, xs, ys)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_thresholds_and_subnormal_results(dtype) -> None:
    """Overflow to inf, gradual underflow and the last subnormals, rounded once."""
    f64 = dtype == np.float64
    cases = {
        "exp": [709.782712893384, 709.7827128933841, -708.3964185322641, -745.1332191019411, -745.1332191019412]
        if f64
        else [88.72283, 88.72284, -87.33654, -103.97207, -103.97208],
        "sigmoid": [-745.1332191019411, -745.1332191019412, -740.5, -708.4] if f64 else [-103.97207, -103.972, -90.0],
        "erfc": [26.5, 26.55, 27.2, 27.3] if f64 else [9.2, 10.0, 10.05, 10.06],
        "gelu": [-37.5, -38.2, -38.4, -38.5] if f64 else [-13.5, -14.0, -14.2, -14.3],
        "gelu_tanh": [-21.7, -21.9, -22.0, -22.05] if f64 else [-11.2, -11.6, -11.8, -12.0],
    }
    for name, xs in cases.items():
        _check_against_mpmath(name, dtype, np.array(xs, dtype=dtype))
    tiny = np.array([5e-324, -5e-324, 1e-310, -3e-309, 2.5e-308] if f64 else [1e-45, -3e-45, 1e-40, -1.5e-38], dtype)
    for name in ("erf", "gelu", "gelu_tanh", "tanh", "log1p"):
        _check_against_mpmath(name, dtype, tiny)


# -- special values -----------------------------------------------------------------------
SPECIAL = {  # f(+0), f(-0), f(+inf), f(-inf); NaN -> NaN everywhere
    "exp": (1.0, 1.0, INF, 0.0),
    "log": (-INF, -INF, INF, NAN),
    "log1p": (0.0, -0.0, INF, NAN),
    "tanh": (0.0, -0.0, 1.0, -1.0),
    "sigmoid": (0.5, 0.5, 1.0, 0.0),
    "erf": (0.0, -0.0, 1.0, -1.0),
    "erfc": (1.0, 1.0, 0.0, 2.0),
    "gelu": (0.0, -0.0, INF, -0.0),
    "gelu_tanh": (0.0, -0.0, INF, -0.0),
}


def _same(a, b) -> bool:
    a, b = float(a), float(b)
    if np.isnan(a) or np.isnan(b):
        return np.isnan(a) and np.isnan(b)
    return a == b and np.signbit(a) == np.signbit(b)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", UNARY)
def test_special_values(name, dtype) -> None:
    got = getattr(T, name)(np.array([0.0, -0.0, INF, -INF, NAN], dtype=dtype))
    for g, w in zip(got, SPECIAL[name] + (NAN,)):
        assert _same(g, w), f"{name}: got {got}, want {SPECIAL[name]} and nan"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_domain_edges(dtype) -> None:
    assert _same(T.log(np.array(-1.0, dtype)), NAN) and _same(T.log(np.array(1.0, dtype)), 0.0)
    assert _same(T.log(np.array(-0.0, dtype)), -INF)
    out = T.log1p(np.array([-1.0, -1.5, -INF, 0.0], dtype))
    assert _same(out[0], -INF) and _same(out[1], NAN) and _same(out[2], NAN) and _same(out[3], 0.0)
    big = np.finfo(dtype).max
    assert _same(T.exp(np.array(big, dtype)), INF) and _same(T.exp(np.array(-big, dtype)), 0.0)
    assert _same(T.erfc(np.array(big, dtype)), 0.0) and _same(T.erfc(np.array(-big, dtype)), 2.0)
    assert _same(T.tanh(np.array(-big, dtype)), -1.0) and _same(T.sigmoid(np.array(-big, dtype)), 0.0)
    assert _same(T.gelu(np.array(-big, dtype)), -0.0) and _same(T.gelu_tanh(np.array(big, dtype)), big)
    assert _same(T.gelu(np.array(-50.0, dtype)), -0.0)  # underflow of a negative value: -0


def _c99_pow(x: float, y: float) -> float:
    """C99 F.9.4.4, written out from the standard (and the general case from mpmath)."""
    odd = float(y).is_integer() and abs(y) < 2**53 and int(y) % 2 == 1
    if y == 0 or x == 1:
        return 1.0
    if np.isnan(x) or np.isnan(y):
        return NAN
    if x == 0:
        if y < 0:
            return (-INF if np.signbit(x) else INF) if odd else INF
        return x if odd else 0.0
    if x == -1 and np.isinf(y):
        return 1.0
    if np.isinf(y):
        return (INF if y > 0 else 0.0) if abs(x) > 1 else (0.0 if y > 0 else INF)
    if x == -INF:
        return (-0.0 if odd else 0.0) if y < 0 else (-INF if odd else INF)
    if x == INF:
        return 0.0 if y < 0 else INF
    if x < 0 and not float(y).is_integer():
        return NAN
    return float(_exact("power", x, y))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_pow_c99_table(dtype) -> None:
    vals = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, INF, -INF, NAN]
    pairs = list(itertools.product(vals, vals))
    xs = np.array([a for a, _ in pairs], dtype)
    ys = np.array([b for _, b in pairs], dtype)
    got = T.power(xs, ys)
    with np.errstate(all="ignore"):
        numpy_says = np.power(xs, ys)
    for x, y, g, n in zip(xs, ys, got, numpy_says):
        want = _c99_pow(float(x), float(y))
        assert _same(g, np.array(want, dtype)), f"pow({x}, {y}) = {g}, C99 says {want}"
        if not (np.isfinite(x) and np.isfinite(y) and x not in (0, 1, -1) and y != 0):  # a special case
            assert _same(g, n), f"pow({x}, {y}) = {g}, NumPy says {n}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_pow_signs_and_limits(dtype) -> None:
    t = 1e-30 if dtype == np.float32 else 1e-200
    x = np.array([-2.0, -2.0, -0.5, -t, -1 / t, t, -3.0, -3.0], dtype)
    y = np.array([3.0, 4.0, -3.0, 3.0, -3.0, 1e4, 1.5, 1e30], dtype)
    got = T.power(x, y)
    assert _same(got[0], -8.0) and _same(got[1], 16.0) and _same(got[2], -8.0)
    assert _same(got[3], -0.0)  # underflow of a negative result keeps its sign
    assert _same(got[4], -0.0) and _same(got[5], 0.0)
    assert _same(got[6], NAN) and _same(got[7], INF)  # 1e30 is an even integer


# -- structure ----------------------------------------------------------------------------
def _sweep(lo: float, hi: float, dtype, n: int = 20001) -> np.ndarray:
    return np.unique(np.linspace(lo, hi, n).astype(dtype))


MONOTONE = {  # direction, ranges crossing the kernels' interval and branch boundaries
    "exp": (1, [(-2, 2), (-50, 50), (80, 88.7)]),
    "log": (1, [(0.5, 2), (0.999, 1.001), (1e-3, 1e3)]),
    "log1p": (1, [(-0.99, 1), (-1e-3, 1e-3), (1, 1e3)]),
    "tanh": (1, [(-3, 3), (-0.01, 0.01), (5, 20)]),
    "sigmoid": (1, [(-40, 40), (-1, 1)]),
    "erf": (1, [(-6, 6), (0.49, 0.51), (0.03, 0.032)]),
    "erfc": (-1, [(-6, 27), (0.49, 0.51), (1.99, 2.01)]),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(MONOTONE))
def test_monotone(name, dtype) -> None:
    sign, ranges = MONOTONE[name]
    for lo, hi in ranges:
        x = _sweep(lo, hi, dtype)
        d = np.diff(getattr(T, name)(x).astype(np.float64)) * sign
        assert (d >= 0).all(), f"{name} not monotone on [{lo}, {hi}] near x = {x[np.argmin(d)]}"
    # consecutive floats across an erf-table interval boundary and the log table's 1
    for c in (0.5, 1.0, 2.0, 0.75):
        x = c + np.arange(-50, 51) * np.spacing(dtype(c))
        d = np.diff(getattr(T, name)(x.astype(dtype)).astype(np.float64)) * sign
        assert (d >= 0).all(), f"{name} not monotone next to {c}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_odd_symmetry(dtype) -> None:
    x = np.concatenate([np.linspace(0, 30, 3001), np.exp2(np.arange(-140, 0, 0.5))]).astype(dtype)
    for name in ("tanh", "erf"):
        f = getattr(T, name)
        assert np.array_equal(f(-x), -f(x))
    s = T.sigmoid(x).astype(np.float64) + T.sigmoid(-x).astype(np.float64)
    assert np.all(np.abs(s - 1) <= 2 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_shapes_and_dtypes(dtype) -> None:
    x = np.linspace(0.1, 3, 24).astype(dtype).reshape(2, 3, 4)
    for name in UNARY:
        f = getattr(T, name)
        out = f(x)
        assert out.shape == (2, 3, 4) and out.dtype == dtype
        assert np.array_equal(out.ravel(), f(x.ravel()))
        assert np.array_equal(f(x[:, ::2].T), f(np.ascontiguousarray(x[:, ::2].T)))
        zero_d = f(np.array(1.5, dtype))
        assert isinstance(zero_d, np.ndarray) and zero_d.shape == () and zero_d.dtype == dtype
        assert f(np.zeros((0, 3), dtype)).shape == (0, 3)
    p = T.power(x, np.array([0.5, 2.0, -1.0, 3.0], dtype))  # broadcasting
    assert p.shape == (2, 3, 4) and p.dtype == dtype
    assert np.array_equal(p[1, 2], T.power(x[1, 2], np.array([0.5, 2.0, -1.0, 3.0], dtype)))
    big = np.linspace(-5, 5, 3 * T._BLOCK + 17).astype(dtype)  # several evaluation blocks
    assert np.array_equal(T.tanh(big)[T._BLOCK - 3 : T._BLOCK + 3], T.tanh(big[T._BLOCK - 3 : T._BLOCK + 3]))


def test_bad_input_is_named() -> None:
    with pytest.raises(TypeError, match=r"exp: dtype must be float32 or float64, got int64"):
        T.exp(np.arange(3))
    with pytest.raises(TypeError, match=r"power: arguments must share one dtype, got float32, float64"):
        T.power(np.ones(2, np.float32), np.ones(2))
    with pytest.raises(ValueError, match=r"power: shapes \(2,\) and \(3,\) do not broadcast"):
        T.power(np.ones(2), np.ones(3))
    with pytest.raises(TypeError, match=r"tanh: expected a NumPy or CuPy array, got list"):
        T.tanh([1.0])


# -- the formulas use formula operations only ----------------------------------------------
_ALLOWED_UFUNCS = {
    "add", "subtract", "multiply", "divide", "negative", "absolute", "sqrt", "rint", "floor", "isnan", "signbit",
    "less", "less_equal", "greater", "greater_equal", "equal", "not_equal", "bitwise_and", "bitwise_or",
    "invert", "right_shift", "left_shift",
}  # fmt: skip


class _Strict(np.ndarray):
    """An array on which any ufunc outside the formula layer's list raises."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or ufunc.__name__ not in _ALLOWED_UFUNCS:
            raise AssertionError(f"formula used {ufunc.__name__}.{method}")
        args = [a.view(np.ndarray) if isinstance(a, _Strict) else a for a in inputs]
        out = ufunc(*args, **kwargs)
        return out.view(_Strict) if isinstance(out, np.ndarray) else out

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ not in ("where", "take", "astype"):
            raise AssertionError(f"formula used numpy.{func.__name__}")
        plain = [a.view(np.ndarray) if isinstance(a, _Strict) else a for a in args]
        out = func(*plain, **kwargs)
        return out.view(_Strict) if isinstance(out, np.ndarray) else out


class _StrictOps(ArrayOps):
    """ArrayOps whose results stay _Strict (NumPy's asarray/astype/view would drop it)."""

    def __init__(self) -> None:
        super().__init__(np)

    def _keep(self, out):
        return out.view(_Strict) if isinstance(out, np.ndarray) else out

    def bits(self, x):
        return self._keep(super().bits(x))

    def from_bits(self, i):
        return self._keep(super().from_bits(i))

    def to_int(self, x):
        return self._keep(super().to_int(x))

    def to_float(self, i):
        return self._keep(super().to_float(i))

    def to_f64(self, x):
        return self._keep(super().to_f64(x))

    def to_f32(self, x):
        return self._keep(super().to_f32(x))

    def lookup(self, table, i):
        return self._keep(super().lookup(table, i))


def test_formulas_use_only_formula_operations() -> None:
    K = _StrictOps()
    rng = np.random.default_rng(5)
    x64 = np.concatenate([rng.uniform(-30, 30, 64), [0.0, -0.0, INF, -INF, NAN, 1e-310]])
    for (name, dtype), formula in T.FORMULAS.items():
        x = x64.astype(dtype).view(_Strict)
        with np.errstate(all="ignore"):
            out = formula(K, np.abs(x), x) if name == "power" else formula(K, x)
        plain = (
            T.power(np.abs(x64.astype(dtype)), x64.astype(dtype))
            if name == "power"
            else getattr(T, name)(x64.astype(dtype))
        )
        assert isinstance(out, _Strict), f"{name} {dtype}: the check lost track of the arrays"
        assert np.array_equal(out.view(np.ndarray), plain, equal_nan=True)


# -- the same bits everywhere -------------------------------------------------------------
_HASH_SCRIPT = """
import hashlib, numpy as np
from refopt.kernels import transcendental as T

def digest():
    rng = np.random.default_rng(2024)
    h = hashlib.sha256()
    for dtype in (np.float32, np.float64):
        wide = np.ldexp(rng.uniform(-2, 2, 5000), rng.integers(-1074, 1024, 5000))  # exact: no libm here
        x = np.concatenate([rng.uniform(-40, 40, 20000), wide, rng.uniform(-3, 3, 5000),
                            [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(dtype)
        for name in ("exp", "log", "log1p", "tanh", "sigmoid", "erf", "erfc", "gelu", "gelu_tanh"):
            h.update(getattr(T, name)(x).tobytes())
        h.update(T.power(np.abs(x), x[::-1] / 8).tobytes())
    return h.hexdigest()
"""


def test_same_bits_without_avx512() -> None:
    """NumPy's own exp/log/... change bits with the SIMD loops; refopt's must not."""
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"}
    script = _HASH_SCRIPT + "print(digest())"
    there = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    namespace: dict = {}
    exec(_HASH_SCRIPT, namespace)
    assert there.stdout.strip() == namespace["digest"]()


def test_hash_depends_on_the_bits() -> None:
    """The hash above would see a one-ulp change (guards against hashing nothing)."""
    x = np.linspace(-3, 3, 1001)
    a = T.tanh(x)
    b = a.copy()
    b[500 + 7] = np.nextafter(b[507], 2.0)
    assert hashlib.sha256(a.tobytes()).hexdigest() != hashlib.sha256(b.tobytes()).hexdigest()


@pytest.mark.gpu
def test_cupy_gives_numpy_bits() -> None:
    import cupy

    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        x = np.concatenate([rng.uniform(-40, 40, 50000), [0.0, -0.0, INF, -INF, NAN, 5e-324]]).astype(dtype)
        for name in UNARY:
            f = getattr(T, name)
            assert np.array_equal(cupy.asnumpy(f(cupy.asarray(x))), f(x), equal_nan=True), name
        y = x[::-1] / 8
        got = cupy.asnumpy(T.power(cupy.asarray(np.abs(x)), cupy.asarray(y)))
        assert np.array_equal(got, T.power(np.abs(x), y), equal_nan=True)


def test_coefficient_file_is_what_the_fitting_script_makes() -> None:
    """tools/fit_transcendentals.py --check regenerates the file (a few seconds) and compares."""
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "fit_transcendentals.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


# -- the compiled path: the same bits as the NumPy evaluation ----------------------------------
def _bits_sample(dtype: str, n: int = 20000) -> np.ndarray:
    """Random encodings (every binade, both signs, subnormals), a dense band, the specials."""
    rng = np.random.default_rng(11)
    width = np.uint32 if dtype == "float32" else np.uint64
    raw = rng.integers(0, np.iinfo(width).max, n, dtype=width, endpoint=True).view(dtype)
    dense = rng.uniform(-30, 30, n).astype(dtype)
    fi = np.finfo(dtype)
    special = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, fi.tiny, -fi.tiny, fi.smallest_subnormal, fi.max, -fi.max, 1.0, -1.0],
        dtype,
    )
    x = np.concatenate([raw, dense, special])
    return x[~np.isnan(x) | (np.arange(x.size) == x.size - 8)]  # one NaN is enough


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "name", ["exp", "log", "log1p", "tanh", "sigmoid", "erf", "erfc", "gelu", "gelu_tanh", "power"]
)
def test_compiled_kernels_give_the_numpy_paths_bits(name, dtype) -> None:
    pytest.importorskip("numba")
    import refopt as rf

    x = _bits_sample(dtype)
    args = (np.abs(x), np.random.default_rng(3).permutation(x) / 7) if name == "power" else (x,)
    fn = getattr(T, name)
    rf.set_kernels("numpy")
    try:
        want = fn(*args)
    finally:
        rf.set_kernels("numba")
    got = fn(*args)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: the CUDA source is not compiled here")
def test_cuda_source_of_every_function_compiles(tmp_path) -> None:
    """Every function's formula as CUDA C (what CuPy arrays run), compiled by nvcc in one
    file: no contraction (mad), no approximate or flush-to-zero instruction."""
    from refopt.kernels import compile as Cc

    sources = []
    for (name, dtype), formula in T.FORMULAS.items():
        arrays = ("x", "y") if name == "power" else ("x",)
        sources.append(Cc.cuda_source(Cc.trace(formula, [(a, dtype) for a in arrays]), f"{name}_{dtype}", arrays))
    cu = tmp_path / "all.cu"
    cu.write_text("\n".join(sources))
    ptx = tmp_path / "all.ptx"
    proc = subprocess.run(
        ["nvcc", "--ptx", "-arch=sm_80", "--fmad=false", str(cu), "-o", str(ptx)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = ptx.read_text()
    assert text.count(".entry") == len(T.FORMULAS)
    assert not re.findall(r"\bmad\.|\.approx\.|\.ftz\.", text)
