#!/usr/bin/env python
"""Derive every coefficient and table of refopt's transcendental functions with mpmath.

Writes ``refopt/kernels/_transcendental_coefficients.py``, which
``refopt/kernels/transcendental.py`` imports.  Everything is computed at 256-bit
precision and then rounded to float64 (to nearest, ties to even) or split into
double-doubles ``hi + lo``; nothing depends on the machine, so running the script again
gives the same file byte for byte::

    python tools/fit_transcendentals.py           # (re)write the coefficient file
    python tools/fit_transcendentals.py --check   # regenerate to a temporary file, compare

The polynomials are near-minimax: interpolation at the Chebyshev nodes of the interval
(within a small factor of the minimax error), in the variable the kernel evaluates them
in.  Each fit's approximation error is measured here, on a dense grid, with the
coefficients as rounded, and written into the file next to the coefficients; the script
fails if a fit misses its target.

What is fitted (see the kernel module for how each is used):

* exp: ``2^(j/128)`` as double-doubles; Cody-Waite constants for ``ln2/128``;
  ``e^r = 1 + r + r^2/2 + r^3 P(r)`` (float64 kernel) and ``e^r = 1 + r + r^2 Q(r)``
  (float32 kernel) on ``|r| <= ln2/256``.
* log: ``m`` in ``[sqrt(1/2), sqrt 2)`` cut into intervals by the top bits of its
  encoding, the interval holding 1 centred on it.  Per interval: a 26-bit ``c ~ 1/m``
  and ``-log c`` as a double-double whose head is a multiple of 2^-42 (float64 kernel);
  the centre ``F`` (computed from bits in the kernel), ``1/F`` and ``log F`` as a
  double-double whose head is a multiple of 2^-42 (float32 kernel).
  ``log1p(r) = r - r^2/2 + r^3 P(r)`` and ``log1p(r) = r + r^2 Q(r)``.
* erf / erfc: ``[0, 32)`` cut into 2^5 intervals per binade; on each a polynomial in
  ``d = x - centre``: ``erf`` for ``x < 8`` and ``erfcx(x) = e^(x^2) erfc(x)`` for
  ``0.5 <= x < 32``.  Below 2^-5 one interval centred on 0 carries ``erf``.  The float64
  table has its first two coefficients as double-doubles.  These tables are long, so the
  file holds them as the hexadecimal of their little-endian float64 bytes.
"""

from __future__ import annotations

import argparse
import difflib
import struct
import sys
import tempfile
from pathlib import Path

import mpmath as mp

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "refopt" / "kernels" / "_transcendental_coefficients.py"
PREC = 256

# Table geometry shared with the kernel module.
EXP_N = 128  # 2^(j/N) table
LOG_SHIFT = 44  # log intervals: 2^(52 - 44) = 256 per binade of the encoding of m
ERF_S = 5  # erf / erfcx: 2^5 intervals per binade
ERF_LOW = -5  # erf intervals from 2^-6 (below: interval 0, centred on 0)
ERF_HIGH = 3  # ... to 2^3 = 8
H_LOW = -1  # erfcx intervals from 2^-1 ...
H_HIGH = 5  # ... to 2^5 = 32

# Degrees and the approximation error each fit must reach (log2 of the relative error,
# in the sense the kernel uses it; see the checks below).
EXP64_DEG, EXP64_TARGET = 3, -74  # P: r^3 .. r^6
EXP32_DEG, EXP32_TARGET = 3, -58  # Q: r^2 .. r^5
LOG64_DEG, LOG64_TARGET = 5, -73  # P: r^3 .. r^8
LOG32_DEG, LOG32_TARGET = 4, -56  # Q: r^2 .. r^6
ERF64_DEG, ERF64_TARGET = 9, -65
ERF32_DEG, ERF32_TARGET = 7, -52


# -- rounding -----------------------------------------------------------------------------
def rn(x: mp.mpf, bits: int = 53) -> float:
    """Round to nearest (ties to even) at ``bits`` significant bits; exact as a float."""
    with mp.workprec(bits):
        y = +mp.mpf(x)
    return float(y)  # y has <= 53 bits: float() is exact


def rn_multiple(x: mp.mpf, q: int) -> float:
    """The nearest multiple of 2^q (ties to even multiple)."""
    scaled = mp.mpf(x) * mp.mpf(2) ** (-q)
    n = int(mp.nint(scaled))
    return float(mp.mpf(n) * mp.mpf(2) ** q)


def dd(x: mp.mpf) -> tuple[float, float]:
    hi = rn(x)
    return hi, rn(x - hi)


def bits_of(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def from_bits(i: int) -> float:
    return struct.unpack("<d", struct.pack("<q", i))[0]


# -- fitting ------------------------------------------------------------------------------
def cheb_fit(f, a: mp.mpf, b: mp.mpf, deg: int, centre: mp.mpf) -> list[mp.mpf]:
    """Coefficients (in d = x - centre) of the polynomial interpolating f at the
    Chebyshev nodes of [a, b]."""
    n = deg + 1
    xs = [(a + b) / 2 + (b - a) / 2 * mp.cos(mp.pi * (2 * j + 1) / (2 * n)) for j in range(n)]
    vander = mp.matrix([[(x - centre) ** k for k in range(n)] for x in xs])
    return list(mp.lu_solve(vander, mp.matrix([f(x) for x in xs])))


def poly(coefs, d):
    acc = mp.mpf(0)
    for c in reversed(coefs):
        acc = acc * d + c
    return acc


def series(term, k0: int) -> mp.mpf:
    """sum_{k >= k0} term(k) for a series whose terms fall by a factor <= 1/100 (|r| < 0.01)."""
    total, k = mp.mpf(0), k0
    while True:
        t = term(k)
        total += t
        if abs(t) < mp.mpf(2) ** (-PREC - 8):
            return total
        k += 1


def grid(a: mp.mpf, b: mp.mpf, n: int) -> list[mp.mpf]:
    return [a + (b - a) * j / n for j in range(n + 1)]


def check(name: str, err: mp.mpf, target: int) -> float:
    e = float(mp.log(err, 2)) if err > 0 else -999.0
    if e > target:
        raise SystemExit(f"fit_transcendentals: {name}: error 2^{e:.1f} misses the target 2^{target}")
    return e


# -- exp ----------------------------------------------------------------------------------
def fit_exp() -> dict:
    ln2 = mp.log(2)
    step = ln2 / EXP_N
    c1 = rn(step, 35)  # |k| < 2^18: k * C1 is exact
    c2 = rn(step - c1)
    inv = rn(EXP_N / ln2)
    th, tl = zip(*(dd(mp.mpf(2) ** (mp.mpf(j) / EXP_N)) for j in range(EXP_N)))
    # |r| <= ln2/256 (1 + 2^-40) plus the low part of a double-double argument (<= 2^-43)
    big_r = step / 2 * (1 + mp.mpf(2) ** -40) + mp.mpf(2) ** -43

    def tail64(r):  # (e^r - 1 - r - r^2/2) / r^3, by its series
        return series(lambda k: r ** (k - 3) / mp.factorial(k), 3)

    def tail32(r):  # (e^r - 1 - r) / r^2
        return series(lambda k: r ** (k - 2) / mp.factorial(k), 2)

    p64 = [rn(c) for c in cheb_fit(tail64, -big_r, big_r, EXP64_DEG, mp.mpf(0))]
    q32 = [rn(c) for c in cheb_fit(tail32, -big_r, big_r, EXP32_DEG, mp.mpf(0))]
    pts = grid(-big_r, big_r, 400)
    # errors relative to e^r (~1): r^3 * (P - tail) and r^2 * (Q - tail)
    e64 = max(abs(r**3 * (poly(p64, r) - tail64(r))) for r in pts)
    e32 = max(abs(r**2 * (poly(q32, r) - tail32(r))) for r in pts)
    return {
        "EXP_N": EXP_N,
        "EXP_INV": inv,
        "EXP_C1": c1,
        "EXP_C2": c2,
        "EXP_TH": list(th),
        "EXP_TL": list(tl),
        "EXP64_P": p64,
        "EXP32_Q": q32,
        "_err": {
            "EXP64_P": check("exp64", e64, EXP64_TARGET),
            "EXP32_Q": check("exp32", e32, EXP32_TARGET),
        },
        "_range": {"EXP64_P": float(big_r), "EXP32_Q": float(big_r)},
    }


# -- log ----------------------------------------------------------------------------------
def fit_log() -> dict:
    ln2 = mp.log(2)
    ln2h = rn_multiple(ln2, -42)
    ln2l = rn(ln2 - ln2h)
    one = bits_of(1.0)
    lo_bits = bits_of(float(rn(mp.sqrt(mp.mpf(1) / 2))))  # the encoding's m starts here
    hi_bits = bits_of(float(rn(mp.sqrt(2))))
    width = 1 << LOG_SHIFT
    # the interval holding 1 is centred on it: base = bits(1) - (i1 + 1/2) * width
    i1 = -((lo_bits - one + width // 2) // width)
    base = one - i1 * width - width // 2
    assert 0 <= lo_bits - base < width
    n = (hi_bits - base) // width + 1
    cs, lh, ll, fs, invf, lfh, lfl = [], [], [], [], [], [], []
    r64 = mp.mpf(0)
    r32 = mp.mpf(0)
    for i in range(n):
        a = mp.mpf(from_bits(max(base + i * width, lo_bits)))
        b = mp.mpf(from_bits(min(base + (i + 1) * width, hi_bits)))
        centre_bits = base + i * width + width // 2
        f = mp.mpf(from_bits(centre_bits))
        c = mp.mpf(1) if i == i1 else mp.mpf(rn(2 / (a + b), 26))
        cs.append(float(c))
        big_l = -mp.log(c)
        h = rn_multiple(big_l, -42)
        lh.append(h)
        ll.append(rn(big_l - h))
        r64 = max(r64, abs(a * c - 1), abs(b * c - 1))
        fs.append(float(f))
        invf.append(rn(1 / f))
        h32 = rn_multiple(mp.log(f), -42)
        lfh.append(h32)
        lfl.append(rn(mp.log(f) - h32))
        r32 = max(r32, abs((a - f) / f), abs((b - f) / f))
    r32 *= 1 + mp.mpf(2) ** -50
    assert cs[i1] == 1.0 and fs[i1] == 1.0 and lh[i1] == 0.0

    def tail64(r):  # (log1p(r) - r + r^2/2) / r^3
        return series(lambda k: (-1) ** (k + 1) * r ** (k - 3) / k, 3)

    def tail32(r):  # (log1p(r) - r) / r^2
        return series(lambda k: (-1) ** (k + 1) * r ** (k - 2) / k, 2)

    p64 = [rn(c) for c in cheb_fit(tail64, -r64, r64, LOG64_DEG, mp.mpf(0))]
    q32 = [rn(c) for c in cheb_fit(tail32, -r32, r32, LOG32_DEG, mp.mpf(0))]
    # errors relative to log1p(r) ~ r: r^2 * (P - tail) and r * (Q - tail)
    e64 = max(abs(r**2 * (poly(p64, r) - tail64(r))) for r in grid(-r64, r64, 400))
    e32 = max(abs(r * (poly(q32, r) - tail32(r))) for r in grid(-r32, r32, 400))
    return {
        "LOG_SHIFT": LOG_SHIFT,
        "LOG_BASE": base,
        "LOG_SQRTHALF_BITS": lo_bits,
        "LOG_LN2H": ln2h,
        "LOG_LN2L": ln2l,
        "LOG_LN2": rn(ln2),
        "LOG64_C": cs,
        "LOG64_LH": lh,
        "LOG64_LL": ll,
        "LOG32_INVF": invf,
        "LOG32_LFH": lfh,
        "LOG32_LFL": lfl,
        "LOG64_P": p64,
        "LOG32_Q": q32,
        "_err": {
            "LOG64_P": check("log64", e64, LOG64_TARGET),
            "LOG32_Q": check("log32", e32, LOG32_TARGET),
        },
        "_range": {"LOG64_P": float(r64), "LOG32_Q": float(r32)},
    }


# -- erf / erfc ----------------------------------------------------------------------------
def erfcx(x):
    return mp.erfc(x) * mp.exp(x * x)


def fit_erf_table(deg: int, target: int, split: bool, name: str) -> dict:
    """Intervals: 0 = [0, 2^ERF_LOW) for erf; then erf on the binades ERF_LOW..ERF_HIGH-1,
    then erfcx on H_LOW..H_HIGH-1, 2^ERF_S intervals each."""
    per = 1 << ERF_S
    intervals = [(mp.mpf(0), mp.mpf(2) ** ERF_LOW, mp.mpf(0), "erf0")]
    for lo_e, hi_e, kind in ((ERF_LOW, ERF_HIGH, "erf"), (H_LOW, H_HIGH, "erfcx")):
        for e in range(lo_e, hi_e):
            for s in range(per):
                a = mp.mpf(2) ** e * (1 + mp.mpf(s) / per)
                b = mp.mpf(2) ** e * (1 + mp.mpf(s + 1) / per)
                intervals.append((a, b, (a + b) / 2, kind))
    ncoef = deg + 1
    cols: list[list[float]] = [[] for _ in range(ncoef + (2 if split else 0))]
    worst = mp.mpf(0)
    for a, b, centre, kind in intervals:
        if kind == "erf0":  # erf(d) = d * g(d), fitted relative to erf
            g = cheb_fit(lambda d: mp.erf(d) / d, a, b, deg - 1, centre)
            coefs = [mp.mpf(0)] + g
            fn = mp.erf
        else:
            fn = mp.erf if kind == "erf" else erfcx
            coefs = cheb_fit(fn, a, b, deg, centre)
        if split:
            c0h, c0l = dd(coefs[0])
            c1h, c1l = dd(coefs[1])
            row = [c0h, c0l, c1h, c1l] + [rn(c) for c in coefs[2:]]
            used = [mp.mpf(c0h) + c0l, mp.mpf(c1h) + c1l] + [mp.mpf(c) for c in row[4:]]
        else:
            row = [rn(c) for c in coefs]
            used = [mp.mpf(c) for c in row]
        for col, v in zip(cols, row):
            col.append(v)
        lo_pt = a if kind != "erf0" else mp.mpf(2) ** (ERF_LOW - 40)
        for x in grid(lo_pt, b, 24):
            v = fn(x)
            worst = max(worst, abs(poly(used, x - centre) - v) / abs(v))
    err = check(name, worst, target)
    return {"cols": cols, "n": len(intervals), "err": err}


# -- constants ----------------------------------------------------------------------------
def constants() -> dict:
    out = {}
    out["INV_SQRT2_H"], out["INV_SQRT2_L"] = dd(1 / mp.sqrt(2))
    k2 = 2 * mp.sqrt(2 / mp.pi)  # gelu_tanh: 2u = K2 x + K3 x^3
    k3 = k2 * mp.mpf("0.044715")
    out["GELU_K2_H"], out["GELU_K2_L"] = dd(k2)
    out["GELU_K3_H"], out["GELU_K3_L"] = dd(k3)
    out["GELU_K2"] = rn(k2)
    out["GELU_K3"] = rn(k3)
    out["TWO_OVER_SQRTPI_H"], out["TWO_OVER_SQRTPI_L"] = dd(2 / mp.sqrt(mp.pi))
    return out


# -- output -------------------------------------------------------------------------------
def fmt_list(name: str, values: list[float]) -> str:
    lines = [f"{name} = _a(["]
    row: list[str] = []
    for v in values:
        row.append(repr(float(v)) + ",")
        if len(row) == 4:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines.append("])")
    return "\n".join(lines)


def fmt_hex(name: str, values: list[float]) -> str:
    """A table as the hex of its little-endian float64 bytes, 8 values a line."""
    lines = [f"{name} = _h("]
    for k in range(0, len(values), 8):
        chunk = b"".join(struct.pack("<d", float(v)) for v in values[k : k + 8])
        lines.append(f'    "{chunk.hex()}"')
    lines.append(")")
    return "\n".join(lines)


def generate() -> str:
    mp.mp.prec = PREC
    ex = fit_exp()
    lg = fit_log()
    t64 = fit_erf_table(ERF64_DEG, ERF64_TARGET, True, "erf64 table")
    t32 = fit_erf_table(ERF32_DEG, ERF32_TARGET, False, "erf32 table")
    const = constants()
    out = [
        '"""Coefficients and tables of refopt\'s transcendental functions.',
        "",
        "GENERATED by tools/fit_transcendentals.py (mpmath, 256-bit) -- do not edit; rerun the",
        "script (``--check`` verifies that this file is what it produces).  Approximation",
        "errors below are log2 of the largest error of each fit as rounded, measured there.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "# fmt: off",
        "import numpy as np",
        "",
        "",
        "def _a(values):",
        "    out = np.array(values, dtype=np.float64)",
        "    out.setflags(write=False)",
        "    return out",
        "",
        "",
        "def _h(text):",
        '    out = np.frombuffer(bytes.fromhex(text), dtype="<f8").astype(np.float64)',
        "    out.setflags(write=False)",
        "    return out",
        "",
        "",
        "# exp: x = k ln2/N + r, e^x = 2^(k//N) 2^((k%N)/N) e^r",
        f"EXP_N = {ex['EXP_N']}",
        f"EXP_INV = {ex['EXP_INV']!r}  # N/ln2",
        f"EXP_C1 = {ex['EXP_C1']!r}  # ln2/N, 35 bits",
        f"EXP_C2 = {ex['EXP_C2']!r}  # ln2/N - EXP_C1",
        fmt_list("EXP_TH", ex["EXP_TH"]),
        fmt_list("EXP_TL", ex["EXP_TL"]),
        f"# e^r = 1 + r + r^2/2 + r^3 P(r), |r| <= {ex['_range']['EXP64_P']!r}: error 2^{ex['_err']['EXP64_P']:.1f}",
        f"EXP64_P = {tuple(ex['EXP64_P'])!r}",
        f"# e^r = 1 + r + r^2 Q(r), |r| <= {ex['_range']['EXP32_Q']!r}: error 2^{ex['_err']['EXP32_Q']:.1f}",
        f"EXP32_Q = {tuple(ex['EXP32_Q'])!r}",
        "",
        "# log: x = 2^e m, m in [sqrt(1/2), sqrt 2); interval i = (bits(m) - LOG_BASE) >> LOG_SHIFT",
        f"LOG_SHIFT = {lg['LOG_SHIFT']}",
        f"LOG_BASE = {lg['LOG_BASE']}",
        f"LOG_SQRTHALF_BITS = {lg['LOG_SQRTHALF_BITS']}",
        f"LOG_LN2H = {lg['LOG_LN2H']!r}  # ln2, a multiple of 2^-42",
        f"LOG_LN2L = {lg['LOG_LN2L']!r}",
        f"LOG_LN2 = {lg['LOG_LN2']!r}",
        "# float64: r = m c - 1 exactly (c has 26 bits); log x = e ln2 - log c + log1p(r)",
        fmt_list("LOG64_C", lg["LOG64_C"]),
        fmt_list("LOG64_LH", lg["LOG64_LH"]),
        fmt_list("LOG64_LL", lg["LOG64_LL"]),
        f"# log1p(r) = r - r^2/2 + r^3 P(r), |r| <= {lg['_range']['LOG64_P']!r}: error 2^{lg['_err']['LOG64_P']:.1f}",
        f"LOG64_P = {tuple(lg['LOG64_P'])!r}",
        "# float32: r = (m - F) / F with F the interval's centre; log x = e ln2 + log F + log1p(r)",
        fmt_list("LOG32_INVF", lg["LOG32_INVF"]),
        fmt_list("LOG32_LFH", lg["LOG32_LFH"]),
        fmt_list("LOG32_LFL", lg["LOG32_LFL"]),
        f"# log1p(r) = r + r^2 Q(r), |r| <= {lg['_range']['LOG32_Q']!r}: error 2^{lg['_err']['LOG32_Q']:.1f}",
        f"LOG32_Q = {tuple(lg['LOG32_Q'])!r}",
        "",
        "# erf / erfcx tables: interval 0 = [0, 2^ERF_LOW) (erf, centre 0); then 2^ERF_S",
        "# intervals per binade, centred: erf on [2^ERF_LOW, 2^ERF_HIGH) from ERF_FIRST,",
        "# erfcx(x) = exp(x^2) erfc(x) on [2^H_LOW, 2^H_HIGH) from H_FIRST.",
        f"ERF_S = {ERF_S}",
        f"ERF_LOW = {ERF_LOW}",
        f"ERF_HIGH = {ERF_HIGH}",
        f"H_LOW = {H_LOW}",
        f"H_HIGH = {H_HIGH}",
        "ERF_FIRST = 1",
        f"H_FIRST = {1 + ((ERF_HIGH - ERF_LOW) << ERF_S)}",
        f"ERF_TABLE_SIZE = {t64['n']}",
        f"# float64: c0, c1 as double-doubles, c2..c{ERF64_DEG}: error 2^{t64['err']:.1f}",
    ]
    names64 = ["ERF64_C0H", "ERF64_C0L", "ERF64_C1H", "ERF64_C1L"] + [f"ERF64_C{k}" for k in range(2, ERF64_DEG + 1)]
    for name, col in zip(names64, t64["cols"]):
        out.append(fmt_hex(name, col))
    out.append(f"ERF64_TAIL = ({', '.join(names64[4:])},)")
    out.append(f"# float32 (evaluated in float64): c0..c{ERF32_DEG}: error 2^{t32['err']:.1f}")
    names32 = [f"ERF32_C{k}" for k in range(ERF32_DEG + 1)]
    for name, col in zip(names32, t32["cols"]):
        out.append(fmt_hex(name, col))
    out.append(f"ERF32_COEFS = ({', '.join(names32)},)")
    out.append("")
    out.append("# constants as double-doubles (hi, lo)")
    for name, v in const.items():
        out.append(f"{name} = {v!r}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="regenerate to a temporary file and compare")
    args = ap.parse_args(argv)
    text = generate()
    if args.check:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as tmp:
            tmp.write(text)
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(OUT), tmp.name, lineterm="")
            sys.stdout.write("\n".join(list(diff)[:40]) + "\n")
            print(f"{OUT} is not what tools/fit_transcendentals.py generates (regenerated: {tmp.name})")
            return 1
        Path(tmp.name).unlink()
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
