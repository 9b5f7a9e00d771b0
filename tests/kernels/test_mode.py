"""The numerics mode: default, scoping (with blocks, threads, asyncio tasks), environment."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import refopt as rf
from refopt import kernels


def test_reproducible_is_the_default_and_with_blocks_restore() -> None:
    assert rf.current_mode() == "reproducible"
    with rf.use_mode("fast"):
        assert rf.current_mode() == "fast" and not kernels.reproducible()
        with rf.use_mode("reproducible"):
            assert kernels.reproducible()
        assert rf.current_mode() == "fast"
    assert rf.current_mode() == "reproducible"
    with pytest.raises(ValueError, match="unknown numerics mode 'exact'.*reproducible, fast"):
        rf.use_mode("exact")


def test_the_mode_is_per_thread_and_per_task() -> None:
    seen = {}
    inside = threading.Event()
    leave = threading.Event()

    def worker() -> None:
        with rf.use_mode("fast"):
            inside.set()
            leave.wait(5)
            seen["worker"] = rf.current_mode()

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    seen["main"] = rf.current_mode()  # the other thread's block does not reach here
    leave.set()
    t.join()
    assert seen == {"worker": "fast", "main": "reproducible"}

    async def task(mode: str) -> str:
        with rf.use_mode(mode):
            await asyncio.sleep(0.01)
            return rf.current_mode()

    async def both() -> list:
        return await asyncio.gather(task("fast"), task("reproducible"))

    assert asyncio.run(both()) == ["fast", "reproducible"]


def test_fast_mode_calls_the_library() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 40)).astype(np.float32), rng.standard_normal((40, 20)).astype(np.float32)
    with rf.use_mode("fast"):
        assert np.array_equal(kernels.matmul(a, b), a @ b)
        assert np.array_equal(kernels.sum(a, (0, 1), False), np.sum(a))
    assert np.allclose(kernels.matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_environment_variable_sets_the_process_default() -> None:
    code = "import refopt as rf; print(rf.current_mode())"
    env = {**os.environ, "REFOPT_MODE": "fast"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "fast", out.stderr
    env["REFOPT_MODE"] = "quick"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "REFOPT_MODE='quick' is not a numerics mode" in out.stderr


_STEP = """
import sys
{block}
import numpy as np, refopt as rf
v = rf.Variable(np.linspace(-1, 1, 37, dtype=np.float32), name="w")
opt = rf.optim.Adam([v], learning_rate=0.01, amsgrad=True)
for k in range(3):
    opt.apply_gradients([(np.cos(np.arange(37, dtype=np.float32) * (k + 1)), v)])
x = rf.tanh(rf.constant(np.linspace(-3, 3, 11)))
print(rf.current_kernels(), v.numpy().tobytes().hex(), x.numpy().tobytes().hex())
"""


def test_without_numba_the_numpy_path_runs_and_gives_the_same_bits() -> None:
    block = "sys.modules['numba'] = None  # import numba now fails"
    without = subprocess.run([sys.executable, "-c", _STEP.format(block=block)], capture_output=True, text=True)
    assert without.returncode == 0, without.stderr
    kind, *bits = without.stdout.split()
    assert kind == "numpy"
    pytest.importorskip("numba")
    normal = subprocess.run([sys.executable, "-c", _STEP.format(block="")], capture_output=True, text=True)
    kind2, *bits2 = normal.stdout.split()
    assert kind2 == "numba" and bits2 == bits


def test_kernel_selection_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown kernels 'cuda'; valid ones are numba, numpy"):
        rf.set_kernels("cuda")
    with pytest.raises(ValueError, match="threads must be a whole number >= 1, got 0"):
        rf.set_kernels("numba", threads=0)
    env = {**os.environ, "REFOPT_THREADS": "two"}
    out = subprocess.run([sys.executable, "-c", "import refopt"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "REFOPT_THREADS='two' must be a whole number >= 1" in out.stderr


def test_a_kept_use_mode_object_can_be_entered_again_and_nested() -> None:
    m = rf.use_mode("fast")  # a plain call: fast from here ...
    assert rf.current_mode() == "fast"
    with m:
        assert rf.current_mode() == "fast"
    assert rf.current_mode() == "reproducible"  # ... until the first exit restores the mode found
    for _ in range(2):  # each later entry sets the mode anew and its exit restores
        with m:
            assert rf.current_mode() == "fast"
            with rf.use_mode("reproducible"):
                assert rf.current_mode() == "reproducible"
                with m:  # nested inside itself
                    assert rf.current_mode() == "fast"
                assert rf.current_mode() == "reproducible"
            assert rf.current_mode() == "fast"
        assert rf.current_mode() == "reproducible"


def test_mode_and_kernel_names_are_case_insensitive() -> None:
    with rf.use_mode("Fast") as m:
        assert rf.current_mode() == "fast" and m.name == "fast"
        with rf.use_mode(" REPRODUCIBLE "):
            assert rf.current_mode() == "reproducible"
    assert rf.current_mode() == "reproducible"
    for bad in ("repro", None, 1):
        with pytest.raises(ValueError, match=f"unknown numerics mode {bad!r}; valid modes are reproducible, fast"):
            rf.use_mode(bad)
    assert rf.current_mode() == "reproducible"
    try:
        rf.set_kernels("NumPy")
        assert rf.current_kernels() == "numpy"
    finally:
        rf.set_kernels("numba")


def test_set_kernels_takes_numpy_integers_for_threads_but_not_bools() -> None:
    try:
        for n in (np.int64(2), np.int32(3), np.uint8(1), 2):
            rf.set_kernels("numba", threads=n)
            assert kernels.mode.current_threads() == int(n) and type(kernels.mode.current_threads()) is int
        for bad in (True, np.bool_(True), 2.0, "2", np.int64(0), -1):
            with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
                rf.set_kernels("numpy", threads=bad)
            assert rf.current_kernels() == "numba" and kernels.mode.current_threads() == 2  # nothing half-changed
    finally:
        rf.set_kernels("numba", threads=1)


def test_the_kernel_dispatcher_names_a_call_without_an_array() -> None:
    """An op converts Python values first; a direct call of a kernel with none used to
    end in a bare StopIteration."""
    msg = "refopt.kernels: expected a NumPy, CuPy or array-API array among the inputs, got str"
    with pytest.raises(TypeError, match=msg):
        kernels.exp("a")
    with pytest.raises(TypeError, match="got float, float"):
        kernels.maximum(1.0, 2.0)
