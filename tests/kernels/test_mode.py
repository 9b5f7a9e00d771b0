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
