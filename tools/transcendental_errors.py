#!/usr/bin/env python
"""Measure refopt's transcendental functions against mpmath: the error table in the docs.

For every function and dtype, >= 10^6 points (``--points``): the whole finite range
(uniformly random encodings, i.e. log-uniform over every binade, subnormals and both
signs included), dense sampling where the function is interesting, the overflow and
underflow thresholds, subnormals, tiny arguments, and the special values (+-0, +-inf,
NaN; for ``power`` the whole C99 table).  Each result is compared with the exact value
(mpmath at 192 bits; 256 for ``power``):

* ulp error ``|computed - exact| / ulp(exact)``, ``ulp`` taken at the exact value's
  binade (the subnormal quantum below the normal range; an infinite result counts as
  ``2^emax``, so an overflow that should round to the largest finite number is an
  error, and one that should round to infinity is not);
* correctly rounded: the computed value is the exact value rounded to nearest, ties to
  even;
* special inputs and the sign of zero results must match exactly (C99 Annex F / NumPy;
  the limits for ``gelu(-inf)``, ``gelu_tanh(-inf)``).

Writes ``bench/results/transcendental_errors.json`` and ``docs/transcendental-errors.md``,
including ns/element for 10^6 elements next to NumPy's (or SciPy's) functions measured in
the same run.  Uses every core (multiprocessing)::

    python tools/transcendental_errors.py                 # the full run (~10^6 points each)
    python tools/transcendental_errors.py --points 20000  # a quick look, writes nothing
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import mpmath as mp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refopt.kernels import transcendental as T  # noqa: E402

JSON_OUT = ROOT / "bench" / "results" / "transcendental_errors.json"
MD_OUT = ROOT / "docs" / "transcendental-errors.md"

UNARY = ["exp", "log", "log1p", "tanh", "sigmoid", "erf", "erfc", "gelu", "gelu_tanh"]
FUNCTIONS = UNARY + ["power"]
DTYPES = ["float32", "float64"]
FORMAT = {"float64": (53, -1022, 1024), "float32": (24, -126, 128)}  # p, emin, emax
TINY = mp.mpf(2) ** -3000  # a stand-in for exact values provably far below every subnormal
HUGE = mp.mpf(2) ** 3000


# -- the exact values ---------------------------------------------------------------------
def _sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def exact(name: str, x: float, y: float | None = None):
    """The exact value (an mpf) of a finite, non-special point; provably tiny or huge
    values are replaced by +-TINY / +-HUGE (same rounding, far quicker)."""
    xm = mp.mpf(x)
    if name == "exp":
        return HUGE if x > 1000 else TINY if x < -1000 else mp.exp(xm)
    if name == "log":
        return mp.log(xm)
    if name == "log1p":
        return mp.log1p(xm)
    if name == "tanh":  # 1 - tanh|x| < 2 e^(-2|x|) < 2^-200 beyond 70
        return mp.tanh(xm) if abs(x) < 70 else mp.sign(xm) * (1 - TINY)
    if name == "sigmoid":
        return _sigmoid(xm) if x > -1000 else TINY if x < 0 else 1 - TINY
    if name == "erf":
        return mp.erf(xm) if abs(x) < 30 else mp.sign(xm) * (1 - TINY)
    if name == "erfc":
        return mp.erfc(xm) if -30 < x < 40 else (2 - TINY if x < 0 else TINY)
    if name in ("gelu", "gelu_tanh") and 0 < abs(x) < 2.0**-30:
        # ~ x/2 + x^2/sqrt(2 pi): enough bits to see the second term (it decides ties)
        with mp.workprec(mp.mp.prec + 2 * int(-np.log2(abs(x)))):
            return +_gelu_exact(name, xm)
    return _gelu_exact(name, xm) if name in ("gelu", "gelu_tanh") else _power_exact(x, y)


def _gelu_exact(name: str, xm):
    x = float(xm)
    if name == "gelu":  # x Phi(x): below -60 |x Phi(x)| < 2^-2500
        if x < -60:
            return -TINY
        if x > 60:
            return xm * (1 - TINY)
        return xm / 2 * mp.erfc(-xm / mp.sqrt(2))
    if name == "gelu_tanh":  # x/2 (1 + tanh u) = x sigmoid(2u)
        if x < -60:
            return -TINY
        if x > 60:
            return xm * (1 - TINY)
        u = mp.sqrt(2 / mp.pi) * (xm + mp.mpf("0.044715") * xm**3)
        return xm * _sigmoid(2 * u)
    raise ValueError(name)


def _power_exact(x: float, y: float):
    xm, ym = mp.mpf(x), mp.mpf(y)
    sign = -1 if (x < 0 and ym % 2 == 1) else 1
    t = ym * mp.log(abs(xm))
    if t > 2000:
        return sign * HUGE
    if t < -2000:
        return sign * TINY
    return sign * mp.exp(t)


def _odd_integer(y: float) -> bool:
    return float(y).is_integer() and abs(y) < 2.0**53 and int(y) % 2 == 1


def special(name: str, x: float, y: float | None = None) -> float | None:
    """The required result at a special point (C99 Annex F / NumPy), None elsewhere."""
    inf, nan = float("inf"), float("nan")
    if name == "power":
        if y == 0 or x == 1:
            return 1.0
        if np.isnan(x) or np.isnan(y):
            return nan
        odd = _odd_integer(y)
        if x == 0:
            if y < 0:
                return (-inf if np.signbit(x) else inf) if odd else inf
            return x if odd else 0.0
        if np.isinf(y):
            if x == -1:
                return 1.0
            return (inf if y > 0 else 0.0) if abs(x) > 1 else (0.0 if y > 0 else inf)
        if np.isinf(x):
            if x > 0:
                return inf if y > 0 else 0.0
            if y < 0:
                return -0.0 if odd else 0.0
            return -inf if odd else inf
        if x < 0 and not float(y).is_integer():
            return nan
        return None
    if np.isnan(x):
        return nan
    table = {
        "exp": (inf, 0.0),
        "log": (inf, nan),
        "log1p": (inf, nan),
        "tanh": (1.0, -1.0),
        "sigmoid": (1.0, 0.0),
        "erf": (1.0, -1.0),
        "erfc": (0.0, 2.0),
        "gelu": (inf, -0.0),
        "gelu_tanh": (inf, -0.0),
    }
    if np.isinf(x):
        return table[name][0] if x > 0 else table[name][1]
    if x == 0 and name in ("tanh", "erf", "log1p", "gelu", "gelu_tanh"):
        return x  # the sign of zero is kept
    if name == "log" and x <= 0:
        return -inf if x == 0 else nan
    if name == "log1p" and x <= -1:
        return -inf if x == -1 else nan
    return None


# -- ulp error ----------------------------------------------------------------------------
def ulp_error(got: float, ex, dtype: str) -> tuple[float, bool, bool]:
    """(ulp error, correctly rounded, zero sign wrong) of ``got`` against the exact ``ex``."""
    p, emin, emax = FORMAT[dtype]
    if ex == 0:
        return (0.0 if got == 0 else float("inf")), got == 0, False
    neg = ex < 0
    if np.isnan(got):
        return float("inf"), False, False
    if abs(ex) >= mp.ldexp(1, emax) * (1 - mp.ldexp(1, -p - 1)):  # rounds to +-inf
        ok = bool(np.isinf(got)) and (got < 0) == neg
        return (0.0 if ok else float("inf")), ok, False
    _, e = mp.frexp(ex)  # |ex| = m 2^e, 1/2 <= m < 1
    binade = min(max(int(e) - 1, emin), emax - 1)
    ulp = mp.ldexp(1, binade - p + 1)
    g = mp.ldexp(-1 if got < 0 else 1, emax) if np.isinf(got) else mp.mpf(got)
    diff = mp.fsub(g, ex, exact=True)  # exact (abs() would round): ties are decided exactly
    if diff < 0:
        diff = mp.fneg(diff, exact=True)
    err = diff / ulp
    half = ulp / 2
    if diff < half:
        cr = True
    elif diff == half:  # a tie: the even neighbour is the rounded value
        bits = np.array(got, dtype=dtype).view(np.int64 if dtype == "float64" else np.int32)
        cr = int(bits) % 2 == 0 and not np.isinf(got)
    else:
        cr = False
    zero_sign = got == 0 and bool(np.signbit(got)) != bool(neg)
    return float(err), cr, zero_sign


def _same(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return a == b and bool(np.signbit(a)) == bool(np.signbit(b))


def _worker_init(prec: int) -> None:
    mp.mp.prec = prec


def check_chunk(args: tuple) -> dict:
    """Errors of one chunk of points (runs in a worker process)."""
    name, dtype, xs, ys, got = args
    errs = np.zeros(len(xs))
    cr = np.zeros(len(xs), dtype=bool)
    special_bad: list[list[float]] = []
    n_special = 0
    zero_sign_bad = 0
    for k in range(len(xs)):
        x = float(xs[k])
        y = None if ys is None else float(ys[k])
        g = float(got[k])
        want = special(name, x, y)
        if want is not None:
            n_special += 1
            ok = _same(g, float(np.array(want, dtype=dtype)))
            cr[k] = ok
            errs[k] = 0.0 if ok else float("inf")
            if not ok:
                special_bad.append([x, y, g, want])
            continue
        if name == "power":
            with mp.workprec(256):
                ex = exact(name, x, y)
        else:
            ex = exact(name, x, y)
        errs[k], cr[k], zs = ulp_error(g, ex, dtype)
        zero_sign_bad += zs
    return {"errs": errs, "cr": cr, "n_special": n_special, "special_bad": special_bad, "zero_sign_bad": zero_sign_bad}


# -- the samples --------------------------------------------------------------------------
def _encodings(rng: np.random.Generator, n: int, dtype: str, positive: bool = False) -> np.ndarray:
    """Uniformly random finite encodings: every binade equally likely, subnormals too."""
    if dtype == "float64":
        b = rng.integers(0, 0x7FF0000000000000, n, dtype=np.int64)
        if not positive:
            b |= rng.integers(0, 2, n, dtype=np.int64) << 63
        return b.view(np.float64)
    b = rng.integers(0, 0x7F800000, n, dtype=np.int64).astype(np.uint32)
    if not positive:
        b |= rng.integers(0, 2, n, dtype=np.int64).astype(np.uint32) << 31
    return b.view(np.float32).astype(np.float32)


def _subnormals(rng: np.random.Generator, n: int, dtype: str) -> np.ndarray:
    if dtype == "float64":
        b = rng.integers(1, 1 << 52, n, dtype=np.int64)
        return b.view(np.float64) * rng.choice([-1.0, 1.0], n)
    b = rng.integers(1, 1 << 23, n, dtype=np.int64).astype(np.uint32)
    return b.view(np.float32) * rng.choice(np.array([-1.0, 1.0], np.float32), n)


def _tiny(rng: np.random.Generator, n: int, dtype: str, top: float = 2.0**-20) -> np.ndarray:
    """Log-uniform magnitudes in [smallest normal, top), both signs."""
    lo = -1022 if dtype == "float64" else -126
    mag = np.exp2(rng.uniform(lo, np.log2(top), n))
    return (mag * rng.choice([-1.0, 1.0], n)).astype(dtype)


SPECIALS = [0.0, -0.0, float("inf"), float("-inf"), float("nan")]


def unary_sample(name: str, dtype: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[int]]:
    f64 = dtype == "float64"

    def u(lo, hi, k):
        return rng.uniform(lo, hi, k)

    parts: list[tuple[str, float, Any]] = []  # (label, share, generator(k))
    enc = ("whole range (random encodings)", 0.3, lambda k: _encodings(rng, k, dtype))
    tiny = ("tiny |x| < 2^-20", 0.05, lambda k: _tiny(rng, k, dtype))
    sub = ("subnormal x", 0.03, lambda k: _subnormals(rng, k, dtype))
    if name == "exp":
        hi, lo, sub_lo = (709.79, -745.14, -708.4) if f64 else (88.73, -103.98, -87.34)
        parts = [
            enc,
            ("dense [min, max] of finite results", 0.3, lambda k: u(lo - 1, hi + 1, k)),
            ("dense [-2, 2]", 0.12, lambda k: u(-2, 2, k)),
            ("overflow threshold +-0.01", 0.05, lambda k: u(hi - 0.01, hi + 0.01, k)),
            ("underflow threshold +-0.01", 0.05, lambda k: u(lo - 0.01, lo + 0.01, k)),
            ("subnormal results", 0.1, lambda k: u(lo, sub_lo, k)),
            tiny,
            sub,
        ]
    elif name == "log":
        parts = [
            ("whole positive range (random encodings)", 0.4, lambda k: _encodings(rng, k, dtype, positive=True)),
            enc[:1] + (0.05,) + enc[2:],
            ("dense (0, 10]", 0.2, lambda k: u(0, 10, k)),
            ("near 1: [0.9, 1.1]", 0.15, lambda k: u(0.9, 1.1, k)),
            ("near 1: 1 +- 2^-20", 0.1, lambda k: 1 + u(-(2.0**-20), 2.0**-20, k)),
            ("subnormal x", 0.1, lambda k: np.abs(_subnormals(rng, k, dtype))),
        ]
    elif name == "log1p":
        parts = [
            enc,
            ("dense [-1, 1]", 0.2, lambda k: u(-1, 1, k)),
            ("dense [-1, 100]", 0.1, lambda k: u(-1, 100, k)),
            ("near -1: -1 + 2^-k u", 0.1, lambda k: -1 + np.exp2(u(-52 if f64 else -23, -1, k))),
            ("tiny |x| < 2^-20", 0.2, lambda k: _tiny(rng, k, dtype)),
            ("moderate |x| in [2^-20, 2^-5]", 0.07, lambda k: np.exp2(u(-20, -5, k)) * rng.choice([-1, 1], k)),
            sub,
        ]
    elif name in ("tanh", "erf"):
        edge = (19.06 if f64 else 9.01) if name == "tanh" else (5.92 if f64 else 3.92)
        parts = [
            enc,
            ("dense [-30, 30]", 0.3, lambda k: u(-30, 30, k)),
            ("dense [-2, 2]", 0.15, lambda k: u(-2, 2, k)),
            ("where it rounds to +-1: +-0.1", 0.1, lambda k: u(edge - 0.1, edge + 0.1, k) * rng.choice([-1, 1], k)),
            ("tiny |x| < 2^-20", 0.1, lambda k: _tiny(rng, k, dtype)),
            sub,
            ("dense [-2^-10, 2^-10]", 0.02, lambda k: u(-(2.0**-10), 2.0**-10, k)),
        ]
    elif name == "sigmoid":
        lo, sub_hi = (-745.14, -708.4) if f64 else (-103.98, -87.34)
        parts = [
            enc,
            ("dense [min, 40]", 0.3, lambda k: u(lo - 1, 40, k)),
            ("dense [-10, 10]", 0.15, lambda k: u(-10, 10, k)),
            ("underflow threshold +-0.01", 0.07, lambda k: u(lo - 0.01, lo + 0.01, k)),
            ("subnormal results", 0.1, lambda k: u(lo, sub_hi, k)),
            tiny,
            sub,
        ]
    elif name == "erfc":
        lo, hi = (26.54, 27.3) if f64 else (9.19, 10.06)  # first subnormal result .. underflow to 0
        parts = [
            enc,
            ("dense [-30, 30]", 0.25, lambda k: u(-30, 30, k)),
            ("dense [-1, 3]", 0.15, lambda k: u(-1, 3, k)),
            ("dense [3, max]", 0.1, lambda k: u(3, hi, k)),
            ("subnormal results and underflow", 0.1, lambda k: u(lo, hi + 0.05, k)),
            tiny,
            sub,
            ("near -6 (rounds to 2)", 0.02, lambda k: u(-6.5, -5.5, k)),
        ]
    elif name in ("gelu", "gelu_tanh"):
        if name == "gelu":
            lo, sub_hi = (-38.5, -37.7) if f64 else (-14.3, -13.2)
        else:
            lo, sub_hi = (-22.1, -21.7) if f64 else (-11.9, -11.0)
        parts = [
            enc,
            ("dense [-40, 40]", 0.25, lambda k: u(-40, 40, k)),
            ("dense [-5, 5]", 0.2, lambda k: u(-5, 5, k)),
            ("subnormal results and underflow", 0.1, lambda k: u(lo - 0.2, sub_hi, k)),
            ("large negative: dense [-40, -5]", 0.07, lambda k: u(-40, -5, k)),
            tiny,
            sub,
        ]
    else:
        raise ValueError(name)
    xs, labels, counts = [], [], []
    for label, share, gen in parts:
        k = max(int(round(share * n)), 1)
        xs.append(np.asarray(gen(k), dtype=np.float64).astype(dtype))
        labels.append(label)
        counts.append(k)
    xs.append(np.array(SPECIALS + [1.0, -1.0, -2.0], dtype=dtype))
    labels.append("special values")
    counts.append(len(SPECIALS) + 3)
    return np.concatenate(xs), labels, counts


def power_sample(dtype: str, n: int, rng: np.random.Generator):
    f64 = dtype == "float64"
    tmax, tmin = (709.78, -745.13) if f64 else (88.72, -103.97)
    parts = []

    def add(label, share, gx, gy):
        k = max(int(round(share * n)), 1)
        parts.append((label, k, gx, gy))

    def result_range(x, lo, hi):  # y with y log|x| uniform in [lo, hi]
        with np.errstate(divide="ignore"):
            return rng.uniform(lo, hi, len(x)) / np.log(np.abs(x))

    pos_enc = lambda k: _encodings(rng, k, dtype, positive=True)
    add("x whole range, y log x uniform over the finite results", 0.2, pos_enc, lambda x: result_range(x, tmin, tmax))
    add(
        "x, y whole range (random encodings)",
        0.1,
        lambda k: _encodings(rng, k, dtype),
        lambda x: _encodings(rng, len(x), dtype),
    )
    add("x in (0, 10], y in [-10, 10]", 0.17, lambda k: rng.uniform(0, 10, k), lambda x: rng.uniform(-10, 10, len(x)))
    add(
        "integer y in [-64, 64], x of both signs",
        0.1,
        lambda k: rng.uniform(0.25, 4, k) * rng.choice([-1, 1], k),
        lambda x: np.rint(rng.uniform(-64, 64, len(x))),
    )
    add(
        "integer y, x of both signs, results near the range ends",
        0.05,
        lambda k: np.exp(rng.uniform(-20, 20, k)) * rng.choice([-1, 1], k),
        lambda x: np.rint(result_range(x, tmin, tmax)),
    )
    near = (lambda k: 1 + rng.uniform(-1e-6, 1e-6, k)) if f64 else (lambda k: 1 + rng.uniform(-1e-3, 1e-3, k))
    add("x near 1, large y", 0.1, near, lambda x: result_range(x, tmin, tmax))
    add(
        "x = 1 +- 2^-k, y with y log x in [-40, 40]",
        0.05,
        lambda k: 1 + np.exp2(-rng.integers(1, 53 if f64 else 24, k).astype(float)) * rng.choice([-1, 1], k),
        lambda x: result_range(x, -40, 40),
    )
    add("results near overflow", 0.07, pos_enc, lambda x: result_range(x, tmax - 5, tmax + 0.01))
    add("results near underflow (subnormal)", 0.1, pos_enc, lambda x: result_range(x, tmin - 0.01, tmin + 40))
    add(
        "x < 0 whole range, integer y",
        0.05,
        lambda k: -np.abs(_encodings(rng, k, dtype)),
        lambda x: np.rint(rng.uniform(-40, 40, len(x))),
    )
    add(
        "x < 0, y non-integer (NaN)",
        0.01,
        lambda k: -rng.uniform(0.1, 10, k),
        lambda x: np.rint(rng.uniform(-40, 40, len(x))) + 0.5,
    )
    xs, ys, labels, counts = [], [], [], []
    for label, k, gx, gy in parts:
        with np.errstate(all="ignore"):
            x = np.asarray(gx(k), dtype=np.float64).astype(dtype)
            y = np.asarray(gy(x.astype(np.float64)), dtype=np.float64)
            y = np.where(np.isfinite(y), y, 1.0).astype(dtype)
        xs.append(x)
        ys.append(y)
        labels.append(label)
        counts.append(k)
    sv = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, float("inf"), float("-inf"), float("nan")]
    sx = np.array([a for a in sv for _ in sv], dtype=dtype)
    sy = np.array([b for _ in sv for b in sv], dtype=dtype)
    xs.append(sx)
    ys.append(sy)
    labels.append("C99 table: every pair of special values")
    counts.append(len(sx))
    return np.concatenate(xs), np.concatenate(ys), labels, counts


# -- timing -------------------------------------------------------------------------------
def timings(n: int = 1_000_000, repeat: int = 5) -> dict:
    import scipy.special as sp

    def best(fn):
        fn()
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts) / n * 1e9

    rng = np.random.default_rng(7)
    inv_sqrt2 = 1 / np.sqrt(2.0)
    k = np.sqrt(2 / np.pi)
    library = {
        "exp": ("numpy.exp", np.exp),
        "log": ("numpy.log", np.log),
        "log1p": ("numpy.log1p", np.log1p),
        "tanh": ("numpy.tanh", np.tanh),
        "sigmoid": ("scipy.special.expit", sp.expit),
        "erf": ("scipy.special.erf", sp.erf),
        "erfc": ("scipy.special.erfc", sp.erfc),
        "gelu": ("x/2 * scipy erfc(-x/sqrt 2)", lambda x: x * 0.5 * sp.erfc(-x * x.dtype.type(inv_sqrt2))),
        "gelu_tanh": (
            "numpy 0.5x(1 + tanh(...))",
            lambda x: 0.5 * x * (1 + np.tanh(x.dtype.type(k) * (x + x.dtype.type(0.044715) * (x * x * x)))),
        ),
        "power": ("numpy.power", np.power),
    }
    domain = {
        "exp": (-20, 20),
        "log": (0, 100),
        "log1p": (-0.9, 100),
        "power": (0, 10),
    }
    out = {}
    for name in FUNCTIONS:
        lo, hi = domain.get(name, (-8, 8))
        for dtype in DTYPES:
            x = rng.uniform(lo, hi, n).astype(dtype)
            if name == "power":
                y = rng.uniform(-5, 5, n).astype(dtype)
                ours = best(lambda: T.power(x, y))
                lib = best(lambda: library[name][1](x, y))
            else:
                f = getattr(T, name)
                ours = best(lambda: f(x))
                lib = best(lambda: library[name][1](x))
            out[f"{name}/{dtype}"] = {
                "refopt_ns": round(ours, 2),
                "library": library[name][0],
                "library_ns": round(lib, 2),
            }
    return out


# -- the run ------------------------------------------------------------------------------
def measure(name: str, dtype: str, n: int, pool, chunk: int) -> dict:
    seed = 1000 * FUNCTIONS.index(name) + DTYPES.index(dtype)
    rng = np.random.default_rng(seed)
    if name == "power":
        xs, ys, labels, counts = power_sample(dtype, n, rng)
        got = T.power(xs, ys)
    else:
        xs, labels, counts = unary_sample(name, dtype, n, rng)
        ys = None
        got = getattr(T, name)(xs)
    jobs = [
        (name, dtype, xs[s : s + chunk], None if ys is None else ys[s : s + chunk], got[s : s + chunk])
        for s in range(0, len(xs), chunk)
    ]
    results = pool.map(check_chunk, jobs, chunksize=1)
    errs = np.concatenate([r["errs"] for r in results])
    cr = np.concatenate([r["cr"] for r in results])
    k = int(np.argmax(errs))

    def point(i):
        return {
            "x": float(xs[i]),
            "y": None if ys is None else float(ys[i]),
            "got": float(got[i]),
            "ulp_error": float(errs[i]),
        }

    comps = []
    start = 0
    for label, c in zip(labels, counts):
        e = errs[start : start + c]
        comps.append(
            {
                "sample": label,
                "points": int(c),
                "max_ulp": float(e.max()),
                "correctly_rounded": float(cr[start : start + c].mean()),
            }
        )
        start += c
    return {
        "function": name,
        "dtype": dtype,
        "points": int(len(xs)),
        "max_ulp": float(errs[k]),
        "worst": point(k),
        "correctly_rounded": float(cr.mean()),
        "not_correctly_rounded": int((~cr).sum()),
        "over_half_ulp": int((errs > 0.5).sum()),
        "over_one_ulp": int((errs > 1.0).sum()),
        "special_points": int(sum(r["n_special"] for r in results)),
        "special_mismatches": [b for r in results for b in r["special_bad"]][:20],
        "zero_sign_errors": int(sum(r["zero_sign_bad"] for r in results)),
        "samples": comps,
    }


def markdown(payload: dict) -> str:
    lines = [
        "# Transcendental functions: measured error",
        "",
        "Generated by `tools/transcendental_errors.py` -- do not edit.  Command:",
        "",
        f"    {payload['command']}",
        "",
        "refopt's own `exp log log1p tanh sigmoid erf erfc gelu gelu_tanh power`",
        "(`refopt/kernels/transcendental.py`, coefficients from `tools/fit_transcendentals.py`)",
        "against mpmath (192 bits; 256 for `power`).  Error in ulps: `|computed - exact| /",
        "ulp(exact)`, the ulp of the exact value's binade (the subnormal quantum below the normal",
        "range).  *Correctly rounded*: the result is the exact value rounded to nearest-even.",
        "Points: the whole finite range (random encodings: every binade equally likely,",
        "subnormals and both signs), dense sampling where the function is interesting, the",
        "overflow / underflow thresholds, subnormal and tiny arguments, and the special values",
        "(which must match C99 / NumPy exactly, as must the sign of zero results).",
        "",
        "| function | dtype | points | max error (ulp) | at x | correctly rounded | > 0.5 ulp | > 1 ulp "
        "| special points (mismatches) | zero-sign errors |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in payload["results"]:
        w = r["worst"]
        at = f"{w['x']!r}" if w["y"] is None else f"{w['x']!r}, y = {w['y']!r}"
        lines.append(
            f"| `{r['function']}` | {r['dtype']} | {r['points']:,} | {r['max_ulp']:.6f} | {at} | "
            f"{100 * r['correctly_rounded']:.5f} % | {r['over_half_ulp']:,} | {r['over_one_ulp']} | "
            f"{r['special_points']:,} ({len(r['special_mismatches'])}) | {r['zero_sign_errors']} |"
        )
    if payload.get("timings"):
        lines += [
            "",
            "## Speed",
            "",
            f"ns per element on 10^6 elements (best of 5, one thread; {payload['machine']}), next to",
            "the library function on the same arrays in the same run.  refopt evaluates NumPy arrays",
            "in blocks of 8192 elements with one NumPy call per formula operation.",
            "",
            "| function | dtype | refopt (ns/elem) | library | library (ns/elem) | ratio |",
            "|---|---|---:|---|---:|---:|",
        ]
        for key, t in payload["timings"].items():
            name, dtype = key.split("/")
            ratio = t["refopt_ns"] / t["library_ns"] if t["library_ns"] else float("nan")
            lines.append(
                f"| `{name}` | {dtype} | {t['refopt_ns']:.1f} | {t['library']} | {t['library_ns']:.1f} | {ratio:.1f} |"
            )
    lines += ["", "## Per sample", ""]
    lines += [
        "| function | dtype | sample | points | max error (ulp) | correctly rounded |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in payload["results"]:
        for c in r["samples"]:
            sample = c["sample"].replace("|", "\\|")  # a bare | would split the table cell
            lines.append(
                f"| `{r['function']}` | {r['dtype']} | {sample} | {c['points']:,} | {c['max_ulp']:.4f} | "
                f"{100 * c['correctly_rounded']:.5f} % |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="points per function and dtype (>= 10^6 to write)")
    ap.add_argument("--functions", nargs="*", default=FUNCTIONS, choices=FUNCTIONS)
    ap.add_argument("--dtypes", nargs="*", default=DTYPES, choices=DTYPES)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-timings", action="store_true")
    ap.add_argument("--write", action="store_true", help="write the outputs even for a partial run")
    args = ap.parse_args(argv)
    full = args.points >= 1_000_000 and args.functions == FUNCTIONS and args.dtypes == DTYPES
    t0 = time.time()
    timing = None if args.no_timings else timings()
    results = []
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(args.workers, initializer=_worker_init, initargs=(192,)) as pool:
        for name in args.functions:
            for dtype in args.dtypes:
                t1 = time.time()
                r = measure(name, dtype, args.points, pool, chunk=2000)
                results.append(r)
                print(
                    f"{name:10s} {dtype:8s} points={r['points']:>9,d} max={r['max_ulp']:.4f} ulp "
                    f"CR={100 * r['correctly_rounded']:.5f}% >1ulp={r['over_one_ulp']} "
                    f"special={r['special_points']}({len(r['special_mismatches'])}) "
                    f"zero-sign={r['zero_sign_errors']} at {r['worst']}  [{time.time() - t1:.0f} s]",
                    flush=True,
                )
    cmd = "python tools/transcendental_errors.py" + ("" if full else " " + " ".join(argv or sys.argv[1:]))
    payload = {
        "command": cmd,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, mpmath {mp.__version__} ({mp.libmp.BACKEND})"
        ),
        "seconds": round(time.time() - t0),
        "results": results,
        "timings": timing,
    }
    if full or args.write:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
        MD_OUT.write_text(markdown(payload))
        print(f"wrote {JSON_OUT.relative_to(ROOT)} and {MD_OUT.relative_to(ROOT)}")
    bad = [r for r in results if r["over_one_ulp"] or r["special_mismatches"] or r["zero_sign_errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
