"""Splitting a kernel call between threads: the pieces, and the bits of the functions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refopt as rf
from refopt.kernels import threads
from refopt.kernels import transcendental as T


@st.composite
def _calls(draw):
    sizes = draw(st.lists(st.integers(0, 60), min_size=1, max_size=12))
    tails = [draw(st.integers(0, min(n, 15))) for n in sizes]
    return np.array(sizes, np.int64), np.array(tails, np.int64), draw(st.integers(1, 9)), draw(st.integers(1, 40))


@settings(max_examples=400, deadline=None)
@given(_calls())
def test_pieces_cover_each_element_once_and_keep_each_elements_formula(call) -> None:
    """Every element of every segment is in exactly one piece, computed by the formula it
    would get in one call (the remainder formula exactly for a segment's last ``tail``
    elements), with at most ``threads`` nearly equal runs."""
    sizes, tails, n_threads, min_piece = call
    pieces = threads.plan(sizes, tails, n_threads, min_piece)
    total = int(sizes.sum())
    assert 1 <= len(pieces) <= max(1, min(n_threads, total // min_piece))
    seen = [np.zeros(n, np.int64) for n in sizes]
    remainder = [np.zeros(n, bool) for n in sizes]
    counts = []
    for seg, off, n, tail in pieces:
        assert np.all(n >= 0) and np.all(tail >= 0) and np.all(tail <= n)
        counts.append(int(n.sum()))
        for j, o, k, t in zip(seg, off, n, tail):
            seen[j][o : o + k] += 1
            remainder[j][o + k - t : o + k] = True
    for j, n in enumerate(sizes):
        assert np.all(seen[j] == 1), (j, seen[j])
        assert np.array_equal(remainder[j], np.arange(n) >= n - tails[j]), j
    m = min(n_threads, total // min_piece)
    if m > 1:  # thread b runs elements [b step, (b+1) step) of the segments laid end to end
        step = -(-total // m)
        assert all(c == step for c in counts[:-1]) and 0 < counts[-1] <= step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["exp", "log1p", "tanh", "erfc", "gelu", "power"])
def test_functions_split_between_threads_give_the_same_bits(name, dtype) -> None:
    pytest.importorskip("numba")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(3 * threads.SPLIT_MIN + 11).astype(dtype) * 4
    args = (np.abs(x), x[::-1] / 3) if name == "power" else (x,)
    fn = getattr(T, name)
    assert len(threads.plan(np.array([x.size]), np.zeros(1, np.int64), 3)) == 3
    rf.set_kernels("numpy")
    try:
        want = fn(*args)
        rf.set_kernels("numba", threads=3)
        got = fn(*args)
    finally:
        rf.set_kernels("numba", threads=1)
    assert got.tobytes() == want.tobytes()


def test_functions_from_several_python_threads_at_once() -> None:
    pytest.importorskip("numba")
    x = np.random.default_rng(6).standard_normal(2 * threads.SPLIT_MIN + 3).astype(np.float32)
    want = T.exp(x).tobytes()
    bad: list[int] = []

    def work() -> None:
        rf.set_kernels("numba", threads=2)
        for _ in range(10):
            bad.append(T.exp(x).tobytes() != want)

    pool = [threading.Thread(target=work) for _ in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert len(bad) == 40 and not any(bad)


def test_an_error_in_a_piece_reaches_the_caller() -> None:
    def fn(a, sizes, tails):
        if int(a[0]) != 0:
            raise RuntimeError("piece failed")

    args = [(np.zeros(1, np.int64), 4)]
    with pytest.raises(RuntimeError, match="piece failed"):
        threads.call(fn, args, np.array([100], np.int64), np.zeros(1, np.int64), 4, min_piece=10)
