"""Launching generated CUDA kernels on CuPy arrays.

:func:`run` compiles a formula's CUDA source (:func:`refopt.kernels.compile.cuda_source`:
every operation an explicit ``_rn`` intrinsic) with NVRTC through ``cupy.RawKernel``,
``--fmad=false`` besides, and launches it over flat CuPy arrays, one thread per element.
The result is the formula's bits, as on the CPU.

Status: no GPU has been available to run this path; the source of every rule and
transcendental function compiles with nvcc in the tests, and the ``gpu`` test tier holds
the results to the NumPy reference when a GPU is present.  Should a kernel fail to
compile or launch on a device, :func:`run` warns once for that kernel and returns None:
the caller then runs the reference path (the formula evaluated one CuPy call per
operation -- the same bits, slower).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from refopt.kernels import compile as C

__all__ = ["run"]

_BLOCK = 256
_kernels: dict[str, Any] = {}
_sources: dict[tuple, tuple[Any, str]] = {}  # (id(graph), name, arrays) -> (graph, source)
_broken: set[str] = set()


def _kernel(source: str, name: str) -> Any:
    import cupy

    key = f"{name}:{hash(source)}"
    k = _kernels.get(key)
    if k is None:
        k = _kernels[key] = cupy.RawKernel(source, name, options=("--fmad=false",))
    return k


def run(
    graph: C.Graph, name: str, arrays: Sequence[str], inputs: Sequence[Any], n: int, out_dtypes: Sequence[Any]
) -> list[Any] | None:
    """The graph's outputs over ``n`` elements: ``inputs`` are the flat CuPy arrays named in
    ``arrays`` followed by the scalars (NumPy scalars of the graph's input dtypes), in the
    graph's input order.  None if the kernel cannot run here (warned once)."""
    import cupy

    key = (id(graph), name, tuple(arrays))
    hit = _sources.get(key)
    if hit is None or hit[0] is not graph:
        hit = _sources[key] = (graph, C.cuda_source(graph, name, arrays))
    source = hit[1]
    if source in _broken:
        return None
    outs = [cupy.empty(n, dtype=dt) for dt in out_dtypes]
    if n == 0:
        return outs
    try:
        k = _kernel(source, name)
        k(((n + _BLOCK - 1) // _BLOCK,), (_BLOCK,), (*inputs, *outs, np.int64(n)))
    except Exception as exc:  # a device or toolkit this source has not met: the reference path
        _broken.add(source)
        warnings.warn(
            f"refopt: the CUDA kernel {name!r} could not run ({type(exc).__name__}: {exc}); refopt computes it "
            "with the reference path on the GPU instead (the same bits, slower) -- please report this",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return outs
