"""refopt.backend: namespaces, use_backend, moves, the host RNG, erf/erfc accuracy and
the deterministic scatter-add; and the CuPy tier (marked gpu)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import mpmath
import numpy as np
import pytest

import refopt as rf
from refopt import backend


def test_use_backend_plain_call_and_context() -> None:
    assert rf.current_backend() == "numpy"
    with rf.use_backend("array_api_strict"):
        assert rf.constant([1.0]).backend == "array_api_strict"
        assert rf.Variable(np.ones(2)).backend == "array_api_strict"
    assert rf.current_backend() == "numpy"
    rf.use_backend("array_api_strict")
    try:
        assert rf.current_backend() == "array_api_strict"
    finally:
        rf.use_backend("numpy")
    with pytest.raises(ValueError, match="unknown backend 'jax'; valid backends are numpy, cupy, array_api_strict"):
        rf.use_backend("jax")


def test_a_kept_use_backend_object_can_be_entered_again_and_nested() -> None:
    b = rf.use_backend("array_api_strict")
    with b:
        assert rf.current_backend() == "array_api_strict"
    assert rf.current_backend() == "numpy"
    for _ in range(2):  # each later entry sets the backend anew and its exit restores
        with b:
            assert rf.constant([1.0]).backend == "array_api_strict"
            with rf.use_backend("numpy"):
                with b:
                    assert rf.current_backend() == "array_api_strict"
                assert rf.current_backend() == "numpy"
            assert rf.current_backend() == "array_api_strict"
        assert rf.current_backend() == "numpy"


def test_use_backend_is_per_thread() -> None:
    """Inside one thread's ``with use_backend(...)``, another thread's new values stay on
    its own backend (and a plain call in a thread does not leak out of it)."""
    inside, checked = threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def holder() -> None:
        with rf.use_backend("array_api_strict"):
            seen["holder"] = rf.constant([1.0]).backend
            inside.set()
            checked.wait(timeout=30)
            seen["holder_after"] = rf.current_backend()

    def other() -> None:
        inside.wait(timeout=30)
        seen["other"] = rf.constant([1.0]).backend
        seen["other_var"] = rf.Variable(np.ones(2)).backend
        rf.use_backend("array_api_strict")  # a plain call: this thread only
        seen["other_plain"] = rf.current_backend()
        checked.set()

    threads = [threading.Thread(target=holder), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert seen == {
        "holder": "array_api_strict",
        "other": "numpy",
        "other_var": "numpy",
        "other_plain": "array_api_strict",
        "holder_after": "array_api_strict",
    }
    assert rf.current_backend() == "numpy"  # neither thread changed the main thread's backend


def test_use_backend_is_per_asyncio_task() -> None:
    async def strict(gate: asyncio.Event, done: asyncio.Event) -> str:
        with rf.use_backend("array_api_strict"):
            gate.set()
            await done.wait()  # the other task runs while this block is open
            return rf.constant([1.0]).backend

    async def plain(gate: asyncio.Event, done: asyncio.Event) -> str:
        await gate.wait()
        out = rf.constant([1.0]).backend
        done.set()
        return out

    async def main() -> list[str]:
        gate, done = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(strict(gate, done), plain(gate, done)))

    assert asyncio.run(main()) == ["array_api_strict", "numpy"]
    assert rf.current_backend() == "numpy"


def test_move_round_trip_is_exact() -> None:
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    y = backend.move(backend.move(x, "array_api_strict"), "numpy")
    assert y.dtype == np.float32 and y.tobytes() == x.tobytes()


def _ulps(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.spacing(np.abs(b) + 1e-300)))


def test_generic_erf_erfc_are_within_a_few_ulp_of_the_truth() -> None:
    mpmath.mp.dps = 40
    x = np.concatenate([np.linspace(-7, 7, 1401), np.geomspace(1e-300, 1e-3, 30), [0.0, 1.0, 0.999999, -1.0]])
    true_erf = np.array([float(mpmath.erf(v)) for v in x])
    true_erfc = np.array([float(mpmath.erfc(v)) for v in x])
    assert _ulps(backend._erf_generic(np, x, False), true_erf) <= 8
    # erfc loses only what exp(-x^2) loses at the far tail (scipy: 32 ulp on this grid)
    assert _ulps(backend._erf_generic(np, x, True), true_erfc) <= 40


def test_scatter_add_rounds_is_bitwise_np_add_at() -> None:
    rng = np.random.default_rng(1)
    for k, rows in ((0, 3), (1, 1), (50, 4), (500, 7)):
        idx = rng.integers(0, rows, k)
        vals = rng.standard_normal((k, 3)).astype(np.float32)
        ref = np.zeros((rows, 3), np.float32)
        np.add.at(ref, idx, vals)
        got = backend.scatter_add_rounds(np, vals, idx, rows)
        assert got.tobytes() == ref.tobytes()


def test_host_rng_validates_seed() -> None:
    assert backend.host_rng(3).random() == np.random.default_rng(3).random()
    with pytest.raises(TypeError, match="seed must be an int or numpy.random.Generator"):
        backend.host_rng(1.5)


def test_resolve_dtype_refuses_unsupported() -> None:
    with pytest.raises(TypeError, match="unsupported dtype 'complex64'"):
        backend.resolve_dtype("complex64", np)


# -- the GPU tier: runs where cupy.is_available() ---------------------------------------------
def test_missing_cupy_names_the_readme_install_command() -> None:
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    with pytest.raises(ImportError, match=r"backend 'cupy' is not installed \(pip install \"\.\[gpu\]\""):
        with rf.use_backend("cupy"):
            pass
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert 'pip install ".[gpu]"' in readme


@pytest.mark.gpu
def test_cupy_mixing_with_numpy_is_refused_naming_both_devices() -> None:
    a = rf.constant(np.ones(2))
    b = rf.to_device(rf.constant(np.ones(2)), "cupy")
    with pytest.raises(ValueError, match=r"cpu \(numpy\) and cuda:0 \(cupy\)"):
        a + b


@pytest.mark.gpu
def test_cupy_scatter_add_is_bitwise_numpy() -> None:
    import cupy

    rng = np.random.default_rng(2)
    idx = rng.integers(0, 11, 5000)
    vals = rng.standard_normal((5000, 4)).astype(np.float32)
    ref = backend.scatter_add_rows(vals, idx, 11)
    got = backend.scatter_add_rows(cupy.asarray(vals), cupy.asarray(idx), 11)
    assert cupy.asnumpy(got).tobytes() == ref.tobytes()


@pytest.mark.gpu
def test_cupy_gradients_match_numpy() -> None:
    rng = np.random.default_rng(3)
    xv, wv = rng.standard_normal((8, 5)), rng.standard_normal((5, 3))

    def grads(where: str) -> list[np.ndarray]:
        with rf.use_backend(where):
            x, w = rf.constant(xv), rf.Variable(wv, name="w")
            loss = rf.sum(rf.log_softmax(rf.gelu(x @ w)) * 0.5) + rf.sum(rf.take(x, np.array([1, 1, 4])))
            return [g.numpy() for g in rf.gradients(loss, [x, w])]

    for a, b in zip(grads("numpy"), grads("cupy")):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
