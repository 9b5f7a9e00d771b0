"""Same bits on every machine: the training run of ``tests/repro_run.py`` and the golden
model scenarios, in subprocesses that differ only in what they let the libraries choose
-- OpenBLAS's kernel (as on a Haswell or a Sandy Bridge), NumPy's SIMD level (as on an
AVX2 machine), the thread count.  Variants this CPU cannot run are skipped, said why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "default": {},
    "openblas-haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "openblas-sandybridge": {"OPENBLAS_CORETYPE": "SandyBridge"},
    "numpy-avx2": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"},
    "avx2-machine": {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"},
    "1-thread": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    "2-threads": {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"},
}
_NEEDS = {  # CPU flags a variant's kernels execute (forcing them elsewhere is an illegal instruction)
    "openblas-haswell": {"avx2", "fma"},
    "openblas-sandybridge": {"avx"},
    "numpy-avx2": {"avx512f"},  # disabling AVX-512 is only a variant where NumPy would use it
    "avx2-machine": {"avx2", "fma", "avx512f"},
}


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _env(variant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
    env.update(VARIANTS[variant])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _skip_unless_runnable(variant: str) -> None:
    missing = _NEEDS.get(variant, set()) - _cpu_flags()
    if missing:
        pytest.skip(f"this CPU lacks {sorted(missing)}: variant {variant!r} cannot run here")


@cache
def _hashes(variant: str) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.repro_run"], env=_env(variant), cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "default"])
def test_training_bits_do_not_depend_on_blas_simd_or_threads(variant: str) -> None:
    _skip_unless_runnable(variant)
    assert _hashes(variant) == _hashes("default")


@pytest.mark.frameworks
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "default"])
def test_golden_model_scenarios_regenerate_byte_for_byte(variant: str) -> None:
    """The golden files whose inputs refopt's engine computes (model scenarios) come out
    the same bytes under every variant (the others do not involve the engine)."""
    _skip_unless_runnable(variant)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_golden.py"), "--check", "--kind", "model"],
        env=_env(variant),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "golden files reproduced byte for byte" in proc.stderr


@pytest.mark.gpu
def test_cupy_forward_backward_and_update_bits_equal_numpys() -> None:
    """The same run on the GPU: every loss, gradient and parameter the same bits."""
    from tests.repro_run import run

    for dtype in ("float32", "float64"):
        assert run(dtype, backend="cupy") == run(dtype, backend="numpy"), dtype
