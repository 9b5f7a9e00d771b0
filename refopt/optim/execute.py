"""Running update rules on variables: every path generated from the rule definitions.

:func:`run` takes one rule and the step's tasks -- one per variable: its arrays, mask,
static options and prepared scalars -- and returns each variable's new value and slots.

* ``numpy`` (the reference): the formula evaluated by
  :class:`~refopt.kernels.formula.ArrayOps`, one array operation per formula operation,
  the FMA exact; the torch tail on the last ``numel mod W`` elements.
* ``cuda`` (CuPy arrays): the same graphs as CUDA C kernels (:mod:`refopt.kernels.cuda`).
* ``numba``: the same formula traced once per variant (:mod:`refopt.kernels.compile`)
  and compiled to one kernel that updates every variable of the call -- the variables of
  one variant, dtype and set of slots -- in a single loop over segments (torch's tail as
  a second loop), FMA as ``llvm.fma``, no fast-math.

A mask keeps every output where it is False: ``where(mask, new, old)`` for the value and
each slot (a slot that did not exist yet stays zero there).
"""

from __future__ import annotations

import dataclasses
import sys
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from refopt import backend
from refopt.kernels import compile as C
from refopt.kernels import threads
from refopt.kernels.formula import array_ops
from refopt.kernels.mode import current_kernels, current_threads
from refopt.optim.rules import Options, Rule

__all__ = ["Task", "run", "masked_formula", "with_tail"]


@dataclasses.dataclass(slots=True)
class Task:
    """One variable's update: its value ``p``, gradient ``g``, current slots, optional
    boolean mask, the static options ``o``, the prepared scalars ``s``, and the names of
    the outputs that may be written over their inputs (``inplace``: no one else holds
    those arrays)."""

    p: Any
    g: Any
    slots: dict[str, Any]
    mask: Any
    o: Options
    s: dict[str, Any]
    inplace: frozenset[str] = frozenset()
    addresses: dict[str, tuple[Any, int]] | None = None  # per variable: name -> (weakref, address)


class _Holder:
    __slots__ = ("data",)


def _baselines() -> tuple[int, int]:
    """``sys.getrefcount`` of an array held by one object attribute and by one dict value
    (calibrated here, not assumed: the counts differ between Python versions)."""
    h = _Holder()
    h.data = np.empty(1)
    d = {"x": np.empty(1)}
    return sys.getrefcount(h.data), sys.getrefcount(d["x"])


_ATTR_REFS, _DICT_REFS = _baselines()


def inplace_names(
    var: Any, slots: dict[str, Any], addresses: dict[str, tuple[Any, int]] | None = None
) -> frozenset[str]:
    """The arrays of an update that can be overwritten: NumPy arrays, C-contiguous and
    writable, held by nothing but the variable (``p``) or the optimizer's slot dict -- no
    view, no Tensor, no state_dict a caller kept.  Writing any other in place would
    change a value someone can see; those get fresh arrays.  (An array whose address the
    kernels cached -- ``addresses`` -- was checked for layout already.)

    The address cache holds a weak reference to each array, not its id: an id is reused
    once its array is freed (after an ``assign`` or ``set_slot``), and a stale address
    would be written through.  (The checks are inline: this runs per variable per step.)"""
    names = []
    known = addresses or {}
    hit = known.get("p")
    if hit is not None and hit[0]() is var.data:
        ok = type(var.data) is np.ndarray
    else:
        d = var.data
        ok = type(d) is np.ndarray and d.flags.c_contiguous and d.flags.writeable
        del d
    if ok and sys.getrefcount(var.data) == _ATTR_REFS:
        names.append("p")
    for k in slots:
        hit = known.get(k)
        if hit is not None and hit[0]() is slots[k]:
            ok = type(slots[k]) is np.ndarray
        else:
            a = slots[k]
            ok = type(a) is np.ndarray and a.flags.c_contiguous and a.flags.writeable
            del a
        if ok and sys.getrefcount(slots[k]) == _DICT_REFS:
            names.append(k)
    return frozenset(names)


def masked_formula(rule: Rule) -> Any:
    """The rule's formula followed by the mask (when the arrays hold one):
    ``where(mask, new, old)`` per output, 0 for a slot that did not exist yet."""

    def formula(K: Any, o: Options, a: dict, s: dict) -> dict:
        out = rule.formula(K, o, a, s)
        mask = a.get("mask")
        if mask is None:
            return out
        return {k: K.where(mask, v, a[k] if k in a else 0.0) for k, v in out.items()}

    return formula


def with_tail(o: Options) -> Options:
    """The options of the same variant's remainder-loop formula."""
    return Options(tuple((k, True if k == "tail" else v) for k, v in o))


def _numpy_one(rule: Rule, task: Task) -> dict[str, Any]:
    p = task.p
    xp = backend.namespace(p)
    K = array_ops(np if isinstance(p, np.ndarray) else _cupy())
    shape = p.shape
    arrays = {"p": p, "g": task.g, **task.slots}
    if task.mask is not None:
        arrays["mask"] = task.mask
    flat = {k: xp.reshape(v, (-1,)) for k, v in arrays.items()}
    n = flat["p"].shape[0]
    width = rule.tail(p.dtype.itemsize)
    k = n % width if width else 0
    formula = masked_formula(rule)
    with np.errstate(all="ignore"):
        if not k:
            out = formula(K, task.o, flat, task.s)
        else:
            body = formula(K, task.o, {a: v[: n - k] for a, v in flat.items()}, task.s)
            tail = formula(K, with_tail(task.o), {a: v[n - k :] for a, v in flat.items()}, task.s)
            out = {name: xp.concat([body[name], tail[name]]) for name in body}
    return {name: xp.reshape(v, shape) for name, v in out.items()}


def _cupy() -> Any:
    import cupy

    return cupy


# -- numba ----------------------------------------------------------------------------------------
_KERNELS: dict[tuple, tuple[Any, tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = {}


def _variant(rule: Rule, task: Task) -> tuple:
    """What selects one compiled kernel: the formula variant, dtype, slots, mask, and
    which outputs overwrite their inputs.  (The dtype object, not its name: ``.name`` costs
    microseconds, per variable.)"""
    return (rule, task.o, task.p.dtype, tuple(sorted(task.slots)), task.mask is not None, task.inplace)


_TRACED: dict[tuple, tuple[list[Any], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}


def _traced(rule: Rule, task: Task) -> tuple[list[Any], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The graphs of ``task``'s variant -- the body and, for torch's fused kernel, the
    remainder loop -- with their array, scalar and output names."""
    key = (rule, task.o, np.dtype(task.p.dtype).name, tuple(sorted(task.slots)), task.mask is not None, tuple(task.s))
    hit = _TRACED.get(key)
    if hit is not None:
        return hit
    dtype = np.dtype(task.p.dtype).name
    arrays = ("p", "g", *sorted(task.slots), *(("mask",) if task.mask is not None else ()))
    scalars = tuple(task.s)
    formula = masked_formula(rule)
    names: list[tuple[str, ...]] = []

    def traced(o: Options) -> Any:
        def f(K: Any, *vals: Any) -> tuple:
            a = dict(zip(arrays, vals[: len(arrays)]))
            out = formula(K, o, a, dict(zip(scalars, vals[len(arrays) :])))
            order = ("p", *sorted(k for k in out if k != "p"))
            names.append(order)
            return tuple(out[k] for k in order)

        inputs = [(n, "bool" if n == "mask" else dtype) for n in arrays] + [(n, dtype) for n in scalars]
        return C.trace(f, inputs)

    graphs = [traced(task.o)]
    if rule.tail(task.p.dtype.itemsize):
        graphs.append(traced(with_tail(task.o)))
    if len(set(names)) != 1:  # pragma: no cover - a rule's tail variant must write what its body writes
        raise AssertionError(f"{rule.name}: the tail formula writes {names[-1]}, the body {names[0]}")
    hit = _TRACED[key] = (graphs, arrays, scalars, names[0])
    return hit


def _kernel(rule: Rule, task: Task) -> tuple[Any, tuple[str, ...], tuple[str, ...], tuple[str, ...], str]:
    """The compiled kernel of ``task``'s variant, with its array, scalar and output names
    and its source."""
    key = _variant(rule, task) + (tuple(task.s),)
    hit = _KERNELS.get(key)
    if hit is not None:
        return hit
    graphs, arrays, scalars, outputs = _traced(rule, task)
    fname = "update_" + rule.name.replace("/", "_")
    over = [name if name in task.inplace and name in arrays else None for name in outputs]
    source = C.numba_segments_source(graphs, fname, arrays, scalars, over)
    hit = _KERNELS[key] = (C.compile_numba(source, fname), arrays, scalars, outputs, source)
    return hit


def _cuda_one(rule: Rule, task: Task) -> dict[str, Any]:
    """One CuPy variable's update by the generated CUDA kernels (body, then torch's
    remainder elements); the reference path if they cannot run (see refopt.kernels.cuda)."""
    import cupy

    from refopt.kernels import cuda

    graphs, arrays, scalars, outputs = _traced(rule, task)
    src = {"p": task.p, "g": task.g, **task.slots, "mask": task.mask}
    flat = {a: cupy.ascontiguousarray(src[a]).reshape(-1) for a in arrays}
    n = task.p.size
    width = rule.tail(task.p.dtype.itemsize)
    k = n % width if width else 0
    parts = []
    name = "update_" + rule.name.replace("/", "_")
    for g, lo, hi in ((graphs[0], 0, n - k), *(((graphs[1], n - k, n),) if k else ())):
        ins = [flat[a][lo:hi] for a in arrays] + [task.s[x] for x in scalars]
        out = cuda.run(g, name, arrays, ins, hi - lo, [task.p.dtype] * len(outputs))
        if out is None:
            return _numpy_one(rule, task)
        parts.append(out)
    joined = [cupy.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i] for i in range(len(outputs))]
    return {name: v.reshape(task.p.shape) for name, v in zip(outputs, joined)}


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


_CONCAT_BELOW = 4096  # gradients smaller than this are copied into one buffer per call


def _cached_address(t: Task, name: str, arr: np.ndarray) -> int:
    """The address of a persistent array (a value or slot updated in place), remembered
    on the variable's state with a weak reference to the array it belongs to."""
    cache = t.addresses
    if cache is None:
        return _address(arr)
    hit = cache.get(name)
    if hit is not None and hit[0]() is arr:  # a weak reference: see inplace_names
        return hit[1]
    a = _address(arr)
    cache[name] = (weakref.ref(arr), a)
    return a


def _numba_group(rule: Rule, tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """One kernel call for tasks of one variant (NumPy arrays).

    Per variable the cost is a few attribute reads: the addresses of values and slots
    are cached on the variables' states, small gradients (and masks) are copied into one
    buffer, and the scalar arrays come from the few distinct prepared dicts."""
    t0 = tasks[0]
    fn, arrays, scalars, outputs, _ = _kernel(rule, t0)
    n = len(tasks)
    dtype = t0.p.dtype
    sizes = np.fromiter((t.p.size for t in tasks), np.int64, n)
    width = rule.tail(dtype.itemsize)
    tails = sizes % width if width else np.zeros(n, np.int64)
    addr = {a: np.empty(n, np.int64) for a in arrays}
    keep: list[np.ndarray] = []  # arrays whose addresses the kernel reads: alive until it returns
    for a in ("g", "mask") if "mask" in arrays else ("g",):
        col = [t.g if a == "g" else t.mask for t in tasks]
        small = [j for j, x in enumerate(col) if x.size < _CONCAT_BELOW]
        if small:
            buf = np.concatenate([col[j] for j in small], axis=None)
            keep.append(buf)
            offsets = np.concatenate([[0], np.cumsum(sizes[small])[:-1]]) * buf.itemsize
            addr[a][small] = _address(buf) + offsets
        for j, x in enumerate(col):
            if x.size >= _CONCAT_BELOW:
                x = np.ascontiguousarray(x)
                keep.append(x)
                addr[a][j] = _address(x)
    persistent = [a for a in arrays if a not in ("g", "mask")]
    for j, t in enumerate(tasks):
        for a in persistent:
            arr = t.p if a == "p" else t.slots[a]
            if arr.flags.c_contiguous:
                addr[a][j] = _cached_address(t, a, arr)
            else:
                arr = np.ascontiguousarray(arr)
                keep.append(arr)
                addr[a][j] = _address(arr)
    distinct: dict[int, int] = {}
    firsts: list[dict[str, Any]] = []
    which = np.empty(n, np.int64)
    for j, t in enumerate(tasks):
        k = distinct.get(id(t.s))
        if k is None:
            k = distinct[id(t.s)] = len(firsts)
            firsts.append(t.s)
        which[j] = k
    vals = {x: np.array([f[x] for f in firsts], dtype)[which] for x in scalars}
    fresh = [name for name in outputs if name not in t0.inplace or name not in arrays]
    out_addr = [np.empty(n, np.int64) for _ in fresh]
    results = []
    for j, t in enumerate(tasks):
        out = {}
        for name in outputs:
            if name in fresh:
                out[name] = np.empty(t.p.shape, dtype)
            else:
                out[name] = t.p if name == "p" else t.slots[name]
        for k, name in enumerate(fresh):
            out_addr[k][j] = _address(out[name])
        results.append(out)
    args = [(addr[a], 1 if a == "mask" else dtype.itemsize) for a in arrays]
    args += [(vals[x], 0) for x in scalars] + [(o, dtype.itemsize) for o in out_addr]
    threads.call(fn, args, sizes, tails, current_threads())
    return results


def run(rule: Rule, tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """Each task's new value and slots (``{"p": ..., slot: ...}``): compiled (numba) for
    NumPy arrays when the kernels are ``"numba"``, else the NumPy reference path."""
    if current_kernels() != "numba":
        return [_numpy_one(rule, t) for t in tasks]
    results: list[Any] = [None] * len(tasks)
    groups: dict[tuple, list[int]] = {}
    for j, t in enumerate(tasks):
        if isinstance(t.p, np.ndarray):
            groups.setdefault(_variant(rule, t) + (tuple(t.s),), []).append(j)  # tuple(s): the scalar names
        elif backend.backend_name(t.p) == "cupy":  # generated CUDA kernels
            results[j] = _cuda_one(rule, t)
        else:  # other array-API arrays: the reference path
            results[j] = _numpy_one(rule, t)
    for idx in groups.values():
        for j, out in zip(idx, _numba_group(rule, [tasks[j] for j in idx])):
            results[j] = out
    return results
