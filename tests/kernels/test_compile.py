"""The formula compiler: numba kernels equal the NumPy reference evaluation bit for bit,
their IR holds exactly the formula's FMAs and no fast-math flags, the CUDA source
compiles (nvcc, when installed) with exactly the formula's FMAs; and the checks catch a
kernel with an FMA removed or a product contracted."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from refopt.kernels import compile as C
from refopt.kernels.eft import two_prod, two_sum
from refopt.kernels.formula import array_ops

numba = pytest.importorskip("numba")

TABLE = np.array([1.0, 0.5, 0.25, 0.125])


def mixed(K, x, y, s):
    """Everything the formula layer offers, in one formula."""
    p, e = two_prod(x, y)
    h, lo = two_sum(p, s)
    z = K.fma(x, y, h)
    k = K.to_int(K.floor(K.where(K.isnan(x), 0.0, K.abs(x)))) & 3
    u = K.from_bits(K.bits(z) & ~1)
    sign = K.where(K.signbit(x), -1.0, 1.0)
    return z + lo * K.lookup(TABLE, k), u * sign + K.sqrt(K.abs(y)), K.where((x > y) | (x != x), e, -e)


def lerp_update(K, p, g, m, w, lr):
    """A float32 update in the style of the optimizer rules: lerp by FMA, then a step."""
    m = K.where(w < 0.5, K.fma(w, g - m, m), K.fma(w - 1.0, g - m, g))
    return p - lr * m / (K.sqrt(K.abs(m)) + 1e-8), m


def inputs(dtype: str, n: int = 1003, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 2.0 ** rng.integers(-30, 30, n)).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    x[:6] = [np.nan, -0.0, np.inf, -np.inf, 0.0, np.finfo(dtype).smallest_subnormal]
    return [x, y]


def run(formula, names, dtypes, arrays, args):
    g = C.trace(formula, list(zip(names, dtypes)))
    fn = C.compile_numba(C.numba_source(g, "kern", arrays), "kern")
    outs = [np.empty(args[0].shape, o.dtype) for o in g.outputs]
    fn(*args, *outs)
    with np.errstate(all="ignore"):
        ref = formula(array_ops(np), *args)
    ref = ref if isinstance(ref, tuple) else (ref,)
    return g, fn, outs, [np.asarray(r) for r in ref]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REFOPT_CACHE_DIR", str(tmp_path))


def test_numba_equals_the_numpy_reference_bit_for_bit() -> None:
    x, y = inputs("float64")
    g, _, outs, ref = run(mixed, ["x", "y", "s"], ["float64"] * 3, ("x", "y"), [x, y, np.float64(0.3)])
    assert len(outs) == 3 and all(same_bits(o, r) for o, r in zip(outs, ref))
    for dtype in ("float32", "float64"):
        p, gr = inputs(dtype, seed=1)
        m = np.random.default_rng(2).standard_normal(p.size).astype(dtype)
        args = [p, gr, m, np.asarray(0.1, dtype)[()], np.asarray(1e-3, dtype)[()]]
        g, _, outs, ref = run(lerp_update, ["p", "g", "m", "w", "lr"], [dtype] * 5, ("p", "g", "m"), args)
        assert all(same_bits(o, r) for o, r in zip(outs, ref)), dtype


def _llvm(fn) -> str:
    return "\n".join(fn.inspect_llvm().values())


def test_the_ir_holds_exactly_the_formulas_fmas_and_no_fast_math() -> None:
    for formula, names, dtype, arrays in [
        (mixed, ["x", "y", "s"], "float64", ("x", "y")),
        (lerp_update, ["p", "g", "m", "w", "lr"], "float32", ("p", "g", "m")),
    ]:
        args = inputs(dtype)
        args = args + [np.random.default_rng(3).standard_normal(args[0].size).astype(dtype)] * (len(arrays) - 2)
        args += [np.asarray(0.25, dtype)[()]] * (len(names) - len(arrays))
        g, fn, _, _ = run(formula, names, [dtype] * len(names), arrays, args)
        flags = r"\b(?:fadd|fsub|fmul|fdiv|call)\s+(?:fast|contract|reassoc|nnan|ninf|nsz|arcp|afn)\b"
        assert not re.findall(flags, _llvm(fn))  # the kernel as compiled and optimised
        ir = C.numba_unoptimized_ir(C.numba_source(g, "kern", arrays), "kern", fn.signatures[0])
        width = "double" if dtype == "float64" else "float"
        assert len(re.findall(rf"call {width} @llvm\.fma\.f(?:64|32)\(", ir)) == g.fma_count() > 0
        assert not re.findall(flags, ir)


def test_mutants_are_caught() -> None:
    """The bit-for-bit comparison must fail for a kernel with an FMA removed and for one
    with a product contracted into an FMA."""

    def fma_removed(K, p, g, m, w, lr):
        m = K.where(w < 0.5, w * (g - m) + m, K.fma(w - 1.0, g - m, g))
        return p - lr * m / (K.sqrt(K.abs(m)) + 1e-8), m

    def contracted(K, p, g, m, w, lr):
        m = K.where(w < 0.5, K.fma(w, g - m, m), K.fma(w - 1.0, g - m, g))
        return K.fma(-lr, m / (K.sqrt(K.abs(m)) + 1e-8), p), m

    dtype = "float32"
    p, gr = inputs(dtype, seed=4)
    m = np.random.default_rng(5).standard_normal(p.size).astype(dtype)
    args = [p, gr, m, np.asarray(0.1, dtype)[()], np.asarray(1e-3, dtype)[()]]
    names = ["p", "g", "m", "w", "lr"]
    _, _, good, _ = run(lerp_update, names, [dtype] * 5, ("p", "g", "m"), args)
    for mutant in (fma_removed, contracted):
        _, _, bad, _ = run(mutant, names, [dtype] * 5, ("p", "g", "m"), args)
        assert not all(same_bits(a, b) for a, b in zip(good, bad)), mutant.__name__


def test_traced_formulas_refuse_what_they_cannot_compile() -> None:
    with pytest.raises(C.FormulaError, match="use K.where, not if"):
        C.trace(lambda K, x: x if x > 0 else -x, [("x", "float64")])
    with pytest.raises(C.FormulaError, match="float32 and float64|cast one explicitly"):
        C.trace(lambda K, x, y: x + y, [("x", "float32"), ("y", "float64")])
    with pytest.raises(C.FormulaError, match="division of integers"):
        C.trace(lambda K, i: i / 2, [("i", "int64")])


def test_numba_kernels_are_cached_on_disk(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(C, "_compiled", {})  # forget this process's kernels
    g = C.trace(lerp_update, [(n, "float32") for n in ("p", "g", "m", "w", "lr")])
    src = C.numba_source(g, "kern", ("p", "g", "m"))
    C.compile_numba(src, "kern")
    files = list((tmp_path / "kernels").glob("k_*.py"))
    assert len(files) == 1 and files[0].read_text() == src


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: the CUDA source is not compiled here")
def test_cuda_source_compiles_with_exactly_the_formulas_fmas(tmp_path) -> None:
    for formula, names, dtype, arrays, fma_ptx in [
        (mixed, ["x", "y", "s"], "float64", ("x", "y"), r"\bfma\.rn\.f64"),
        (lerp_update, ["p", "g", "m", "w", "lr"], "float32", ("p", "g", "m"), r"\bfma\.rn\.f32"),
    ]:
        g = C.trace(formula, [(n, dtype) for n in names])
        cu = Path(tmp_path) / f"{formula.__name__}.cu"
        cu.write_text(C.cuda_source(g, "kern", arrays))
        ptx = cu.with_suffix(".ptx")
        proc = subprocess.run(["nvcc", "--ptx", "-arch=sm_80", str(cu), "-o", str(ptx)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        text = ptx.read_text()
        assert len(re.findall(fma_ptx, text)) == g.fma_count()
        assert not re.findall(r"\bmad\.|\bfma\.rn\.ftz|\.approx\.", text)  # nothing contracted or approximate
