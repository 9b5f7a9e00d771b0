"""Splitting a compiled segment kernel between threads.

The generated kernels (:func:`refopt.kernels.compile.numba_segments_source`) take, per
segment, the addresses of its arrays, its scalars, its size and its tail (how many of the
last elements run the remainder formula).  Every element is computed on its own, so a
segment can be cut anywhere: a piece ``[off, end)`` of a segment is a segment of its own
whose addresses are ``off`` elements further on and whose tail is the part of the piece
that lies in the segment's tail.  :func:`call` cuts the segments of one call into
``threads`` runs of nearly equal element counts and runs the kernel on each run at once
-- the kernels are compiled ``nogil``, so plain Python threads run them in parallel.  When
another Python thread's call holds the workers, a call runs its pieces in turn.  The
bits are those of one call: which thread computes an element changes nothing about how.

(numba's own ``parallel=True`` is not used: its ``prange`` loops inside a loop over
segments gave wrong values for some segment sizes, and its workqueue runtime aborts when
two Python threads enter it at once.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["SPLIT_MIN", "call", "plan"]

SPLIT_MIN = 2**18  # elements per thread below which a split costs more than it saves (measured: bench/README.md)


class _Worker:
    """A thread that runs one job at a time: ``start`` hands it over, ``wait`` returns
    when it is done (with the exception it raised, if any).  Two locks, no queue: the
    hand-over costs a few microseconds."""

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._job: tuple[Callable[..., Any], Sequence[Any]] | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._loop, name="refopt-kernel", daemon=True).start()

    def start(self, fn: Callable[..., Any], args: Sequence[Any]) -> None:
        self._job = (fn, args)
        self._go.release()

    def wait(self) -> BaseException | None:
        self._done.acquire()
        error, self._error = self._error, None
        return error

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            fn, args = self._job  # type: ignore[misc]
            self._job = None
            try:
                fn(*args)
            except BaseException as e:  # handed to the caller by wait()
                self._error = e
            self._done.release()


class _Team:
    """The workers of this process.  One call uses them at a time; a call that finds
    them busy (another Python thread's) runs its pieces one after another itself -- the
    same bits, and no more threads than the machine was asked for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workers: list[_Worker] = []

    def run(self, fn: Callable[..., Any], runs: Sequence[Sequence[Any]]) -> None:
        if not self.lock.acquire(blocking=False):
            for r in runs:
                fn(*r)
            return
        try:
            while len(self.workers) < len(runs) - 1:
                self.workers.append(_Worker())
            helpers = self.workers[: len(runs) - 1]
            for w, r in zip(helpers, runs[1:]):
                w.start(fn, r)
            try:
                fn(*runs[0])
            finally:
                errors = [w.wait() for w in helpers]  # the arrays they write must outlive them
            for e in errors:
                if e is not None:
                    raise e
        finally:
            self.lock.release()


_team = _Team()


def _reset_after_fork() -> None:
    global _team
    _team = _Team()  # the parent's workers do not exist in the child


os.register_at_fork(after_in_child=_reset_after_fork)


def _pieces(
    sizes: np.ndarray, tails: np.ndarray, threads: int, min_piece: int | None
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """All pieces of a split call as flat ``(segment, offset, size, tail)`` arrays, and
    where each thread's run of pieces starts in them (its last entry: the piece count)."""
    total = int(sizes.sum())
    m = min(threads, total // (min_piece or SPLIT_MIN))
    if m <= 1:
        return (np.arange(sizes.shape[0]), np.zeros_like(sizes), sizes, tails), np.array([0, sizes.shape[0]])
    ends = np.cumsum(sizes)
    starts = ends - sizes
    step = -(-total // m)
    firsts = np.arange(0, total, step)
    # a piece starts at every segment start and every thread start: between two
    # consecutive cuts lies one segment's elements, all for one thread
    cuts = np.union1d(starts[sizes > 0], firsts)
    seg = np.searchsorted(ends, cuts, side="right")
    n = np.diff(cuts, append=total)
    body_end = ends[seg] - tails[seg]
    tail = np.maximum(cuts + n - np.maximum(cuts, body_end), 0)
    return (seg, cuts - starts[seg], n, tail), np.append(np.searchsorted(cuts, firsts), cuts.shape[0])


def plan(
    sizes: np.ndarray, tails: np.ndarray, threads: int, min_piece: int | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The pieces each thread runs: per thread ``(segment, offset, size, tail)`` arrays.

    Thread ``b`` gets elements ``[b T, (b+1) T)`` of the segments laid end to end, with
    ``T = ceil(total / m)``, ``m = min(threads, total // min_piece)`` (``min_piece``:
    :data:`SPLIT_MIN` unless given): a piece of segment ``j`` covering its elements
    ``[off, end)`` has tail ``max(0, end - max(off, n_j - t_j))`` -- the piece's elements
    at or past the segment's body.  One thread (the whole call) when the call is too
    small to share."""
    flat, bounds = _pieces(sizes, tails, threads, min_piece)
    return [tuple(a[i:j] for a in flat) for i, j in zip(bounds[:-1], bounds[1:])]


def call(
    fn: Callable[..., Any],
    args: Sequence[tuple[np.ndarray, int]],
    sizes: np.ndarray,
    tails: np.ndarray,
    threads: int,
    min_piece: int | None = None,
) -> None:
    """``fn(*args, sizes, tails)`` split between up to ``threads`` threads (:func:`plan`).

    ``args``: the kernel's per-segment arguments in order, each with the item size of
    the array its addresses point into (0 for a per-segment scalar, which a piece copies
    unchanged)."""
    if threads > 1 and int(sizes.sum()) >= 2 * (min_piece or SPLIT_MIN):  # else one call, no plan
        (seg, off, n, tail), bounds = _pieces(sizes, tails, threads, min_piece)
        flat = [a[seg] + off * w if w else a[seg] for a, w in args] + [n, tail]
        _team.run(fn, [[a[i:j] for a in flat] for i, j in zip(bounds[:-1], bounds[1:])])
        return
    fn(*(a for a, _ in args), sizes, tails)
