"""Shape and indexing ops: reshape, transpose, expand_dims, squeeze, concat, stack, split,
indexing ``x[idx]``, take, pad, cast, to_device, one_hot.

Each primitive's VJP stands beside it.  The adjoint pairs are closed under
differentiation (indexing <-> scatter into zeros, take <-> scatter-add rows), so second
derivatives flow through them too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.tensor import Primitive, Tensor, constant, weak_constant

__all__ = [
    "reshape",
    "transpose",
    "swapaxes",
    "expand_dims",
    "squeeze",
    "concat",
    "stack",
    "split",
    "getitem",
    "take",
    "pad",
    "cast",
    "to_device",
    "one_hot",
    "normalize_axes",
]


_INT_NAMES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def _xp(a: Any) -> Any:
    return backend.namespace(a)


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else constant(x)


def _weak_lists(op: str, *values: Any) -> list[Any]:
    """``values`` with each list or tuple made a constant by :func:`weak_constant`, in the
    dtype and on the device of the first tensor or array among them (Python numbers are
    weak, alone or in a list); the other values as they are."""
    if not any(v.__class__ is list or v.__class__ is tuple for v in values):
        return list(values)
    like = None
    for v in values:
        if isinstance(v, Tensor):
            like = v
            break
        if hasattr(v, "__array_namespace__") or isinstance(v, np.generic):
            like = Tensor(v)
            break
    return [weak_constant(v, like, op, i) if v.__class__ in (list, tuple) else v for i, v in enumerate(values)]


def _unchanged(x: Tensor) -> bool:
    """Whether an op that leaves ``x`` as it is may return ``x`` itself: a plain Tensor is
    immutable, but a Variable must not come back -- the caller would hold the variable,
    not a Tensor, and see it change when an optimizer updates it in place -- so a
    Variable goes through the primitive (a Tensor recorded on the tape) like any input."""
    return x.__class__ is Tensor


def normalize_axes(axis: int | Sequence[int] | None, ndim: int, op: str) -> tuple[int, ...]:
    """Axis argument (NumPy style: None, int or sequence, negatives allowed) as sorted non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:
        return (axis % ndim,)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"refopt.{op}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"refopt.{op}: axis {a} is out of range for a tensor of {ndim} dimensions")
        a = int(a) % ndim if ndim else 0
        if a in out:
            raise ValueError(f"refopt.{op}: repeated axis {a} in {axis!r}")
        out.append(a)
    return tuple(sorted(out))


# -- reshape --------------------------------------------------------------------------------
_reshape = Primitive("reshape", lambda x, shape: _xp(x).reshape(x, shape), structural=True)
_reshape.defvjp(lambda g, ans, x, shape: reshape(g, x.shape))


def reshape(x: Any, shape: Sequence[int] | int) -> Tensor:
    """``x`` with a new shape of the same size (one dimension may be -1)."""
    x = _as_tensor(x)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(map(int, shape))
    old = tuple(x.data.shape)
    if shape == old and _unchanged(x):
        return x
    size = math.prod(old)
    if -1 in shape:
        known = -math.prod(shape)
        if shape.count(-1) > 1 or known <= 0 or size % known:
            raise ValueError(f"refopt.reshape: cannot reshape shape {old} (size {size}) into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    elif math.prod(shape) != size or min(shape, default=0) < 0:
        raise ValueError(f"refopt.reshape: cannot reshape shape {old} (size {size}) into {shape}")
    return _reshape(x, shape=shape)


def expand_dims(x: Any, axis: int | Sequence[int]) -> Tensor:
    """Insert size-1 axes at the positions ``axis`` (of the result)."""
    x = _as_tensor(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = x.ndim + len(axes)
    pos = normalize_axes(axes, nd, "expand_dims")
    it = iter(x.shape)
    return reshape(x, tuple(1 if i in pos else next(it) for i in range(nd)))


def squeeze(x: Any, axis: int | Sequence[int] | None = None) -> Tensor:
    """Remove size-1 axes (all of them, or those named in ``axis``)."""
    x = _as_tensor(x)
    if axis is None:
        axes = tuple(i for i, s in enumerate(x.shape) if s == 1)
    else:
        axes = normalize_axes(axis, x.ndim, "squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"refopt.squeeze: axis {a} has size {x.shape[a]}, not 1 (shape {x.shape})")
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


# -- transpose ------------------------------------------------------------------------------
_transpose = Primitive("transpose", lambda x, axes: _xp(x).permute_dims(x, axes), structural=True)
_transpose.defvjp(lambda g, ans, x, axes: _transpose(g, axes=tuple(int(i) for i in np.argsort(axes))))


def transpose(x: Any, axes: Sequence[int] | None = None) -> Tensor:
    """Permute the axes (NumPy: reverse them when ``axes`` is None)."""
    x = _as_tensor(x)
    if axes is None:
        axes = tuple(range(x.ndim))[::-1]
    axes = tuple(int(a) % max(x.ndim, 1) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"refopt.transpose: axes {axes} is not a permutation of {x.ndim} axes")
    if axes == tuple(range(x.ndim)) and _unchanged(x):
        return x
    return _transpose(x, axes=axes)


def swapaxes(x: Any, a: int = -2, b: int = -1) -> Tensor:
    """Exchange two axes (the last two by default: the matrix transpose)."""
    x = _as_tensor(x)
    perm = list(range(x.ndim))
    (a,), (b,) = normalize_axes(a, x.ndim, "swapaxes"), normalize_axes(b, x.ndim, "swapaxes")
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


# -- concat / stack / split -----------------------------------------------------------------
def _concat_fwd(*xs: Any, axis: int) -> Any:
    return _xp(xs[0]).concat(xs, axis=axis)


def _concat_vjp_all(g: Tensor, ans: Tensor, *xs: Any, axis: int) -> tuple:
    out = []
    start = 0
    for x in xs:
        n = x.shape[axis]
        idx = (slice(None),) * axis + (slice(start, start + n),)
        out.append(getitem(g, idx))
        start += n
    return tuple(out)


_concat = Primitive("concat", _concat_fwd, structural=True)
_concat.vjp_all = _concat_vjp_all


def concat(values: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    values = [_as_tensor(v) for v in values]
    if not values:
        raise ValueError("refopt.concat: needs at least one tensor")
    nd = values[0].ndim
    if nd == 0:
        raise ValueError("refopt.concat: cannot concatenate 0-d tensors (use stack)")
    (axis,) = normalize_axes(axis, nd, "concat")
    ref = values[0].shape
    for i, v in enumerate(values):
        if v.ndim != nd or any(s != r for j, (s, r) in enumerate(zip(v.shape, ref)) if j != axis):
            raise ValueError(
                f"refopt.concat: tensor {i} has shape {v.shape}, incompatible with shape {ref} along axis {axis}"
            )
    if len(values) == 1 and _unchanged(values[0]):
        return values[0]
    return _concat(*values, axis=axis)


def stack(values: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors of equal shape along a new axis."""
    values = [_as_tensor(v) for v in values]
    if not values:
        raise ValueError("refopt.stack: needs at least one tensor")
    shape = values[0].shape
    for i, v in enumerate(values):
        if v.shape != shape:
            raise ValueError(f"refopt.stack: tensor {i} has shape {v.shape}, tensor 0 has {shape}")
    (axis,) = normalize_axes(axis, len(shape) + 1, "stack")
    return concat([expand_dims(v, axis) for v in values], axis=axis)


def split(x: Any, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split along ``axis`` into equal sections (an int) or at the given indices (NumPy)."""
    x = _as_tensor(x)
    (axis,) = normalize_axes(axis, x.ndim, "split")
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"refopt.split: axis {axis} of size {n} does not split into {k} equal parts")
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    pre = (slice(None),) * axis
    return [getitem(x, pre + (slice(a, b),)) for a, b in zip(bounds[:-1], bounds[1:])]


# -- indexing -------------------------------------------------------------------------------
def _is_basic(idx: tuple) -> bool:
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice, np.integer)) for i in idx)


def _unindex_fwd(g: Any, idx: tuple, shape: tuple, basic: bool) -> Any:
    """Adjoint of ``x[idx]``: zeros of ``shape`` with ``g`` added at ``idx`` (duplicates summed)."""
    xp = _xp(g)
    if basic:
        out = xp.zeros(shape, dtype=g.dtype)
        sub = tuple(i for i in idx if i is not None)  # None only added size-1 axes to g
        out[sub] = xp.reshape(g, out[sub].shape)
        return out
    size = int(np.prod(shape, dtype=np.int64))
    pos = xp.reshape(xp.arange(size), shape)[idx]
    flat = backend.scatter_add_rows(xp.reshape(g, (-1,)), xp.reshape(pos, (-1,)), size)
    return xp.reshape(flat, shape)


_getitem = Primitive("getitem", lambda x, idx, basic: x[idx], structural=True)
_getitem.defvjp(lambda g, ans, x, idx, basic: _unindex(g, idx=idx, shape=x.shape, basic=basic))
_unindex = Primitive("unindex", _unindex_fwd)
_unindex.defvjp(lambda g, ans, gx, idx, shape, basic: _getitem(g, idx=idx, basic=basic))


def _is_int_array(i: Any) -> bool:
    return hasattr(i, "dtype") and getattr(i, "ndim", 0) > 0 and backend.dtype_name(i.dtype) in _INT_NAMES


def _single_array_axis(idx: tuple, ndim: int) -> int | None:
    """The axis of ``x[idx]`` when idx is one integer array among full slices and '...'."""
    arrays = [k for k, i in enumerate(idx) if _is_int_array(i)]
    if len(arrays) != 1:
        return None
    full = slice(None)
    k = arrays[0]
    if any(not (i is Ellipsis or i == full) for j, i in enumerate(idx) if j != k):
        return None
    if any(i is Ellipsis for i in idx[:k]):
        return ndim - sum(1 for i in idx[k + 1 :] if i is not Ellipsis) - 1
    return k


def getitem(x: Any, idx: Any) -> Tensor:
    """``x[idx]`` with NumPy's semantics: basic indexing (ints, slices, None, Ellipsis),
    boolean masks, and integer arrays (repeats sum in the gradient).

    One integer array along one axis (``x[:, ind]``) runs as :func:`take` on every
    backend; NumPy's other advanced forms need a backend that has them (NumPy, CuPy).
    """
    x = _as_tensor(x)
    if not isinstance(idx, tuple):
        idx = (idx,)
    clean = []
    for i in idx:
        if isinstance(i, Tensor):
            i = i.data
        elif isinstance(i, (list, np.ndarray)) and backend.backend_name(x.data) != "numpy":
            i = backend.asarray(np.asarray(i), backend=backend.backend_name(x.data))
        elif isinstance(i, list):
            i = np.asarray(i)
        clean.append(i)
    idx = tuple(clean)
    axis = _single_array_axis(idx, x.ndim)
    if axis is not None:
        ind = next(i for i in idx if _is_int_array(i))
        xp = _xp(ind)
        n = x.shape[axis]
        if ind.size and int(xp.min(ind)) < -n:
            raise IndexError(f"refopt.getitem: index {int(xp.min(ind))} is out of range for axis {axis} of size {n}")
        return take(x, constant(xp.where(ind < 0, ind + n, ind)), axis=axis)
    # NumPy reads a short index as if '...' followed it; the array API does not, so say it.
    if not any(i is Ellipsis for i in idx):
        used = 0
        for i in idx:
            if i is None:
                continue
            is_bool = hasattr(i, "dtype") and backend.dtype_name(i.dtype) == "bool"
            used += i.ndim if is_bool else 1
        if used < x.ndim:
            idx = idx + (Ellipsis,)
    return _getitem(x, idx=idx, basic=_is_basic(idx))


# -- take -----------------------------------------------------------------------------------
def _take_fwd(x: Any, indices: Any, axis: int) -> Any:
    xp = _xp(x)
    flat = xp.reshape(indices, (-1,))
    out = xp.take(x, flat, axis=axis)
    return xp.reshape(out, tuple(x.shape[:axis]) + tuple(indices.shape) + tuple(x.shape[axis + 1 :]))


def _untake_fwd(g: Any, indices: Any, axis: int, n: int) -> Any:
    """Adjoint of take: rows of ``g`` added into zeros at ``indices`` along ``axis``."""
    xp = _xp(g)
    k = int(np.prod(indices.shape, dtype=np.int64))
    lead = tuple(g.shape[:axis])
    rest = tuple(g.shape[axis + indices.ndim :])
    g2 = xp.reshape(g, lead + (k,) + rest)
    perm = (len(lead),) + tuple(range(len(lead))) + tuple(range(len(lead) + 1, g2.ndim))
    moved = xp.permute_dims(g2, perm)
    summed = backend.scatter_add_rows(moved, xp.reshape(indices, (-1,)), n)
    back = tuple(int(i) for i in np.argsort(perm))
    return xp.permute_dims(summed, back)


_take = Primitive("take", _take_fwd, nondiff=(1,), structural=True)
_take.defvjp(lambda g, ans, x, indices, axis: _untake(g, indices, axis=axis, n=x.shape[axis]))
_untake = Primitive("untake", _untake_fwd, nondiff=(1,))
_untake.defvjp(lambda g, ans, gy, indices, axis, n: _take(g, indices, axis=axis))


def take(x: Any, indices: Any, axis: int = 0) -> Tensor:
    """Gather slices of ``x`` along ``axis`` at integer ``indices`` (any shape): the embedding
    lookup.  The result has shape ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``.
    Indices must lie in ``[0, x.shape[axis])``; repeated indices sum in the gradient."""
    x = _as_tensor(x)
    (axis,) = normalize_axes(axis, x.ndim, "take")
    ind = indices if isinstance(indices, Tensor) else _index_array(indices, x)
    if backend.dtype_name(ind.dtype) not in _INT_NAMES:
        raise TypeError(f"refopt.take: indices must be integers, got {backend.dtype_name(ind.dtype)}")
    n = x.shape[axis]
    if ind.size:
        xp = _xp(ind.data)
        lo, hi = int(xp.min(ind.data)), int(xp.max(ind.data))
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(f"refopt.take: index {bad} is out of range for axis {axis} of size {n}")
    return _take(x, ind, axis=axis)


def _index_array(indices: Any, like: Tensor) -> Tensor:
    if hasattr(indices, "__array_namespace__") and not isinstance(indices, np.ndarray):
        return constant(indices)
    arr = np.asarray(indices)
    return constant(backend.asarray(arr, backend=backend.backend_name(like.data)))


# -- pad ------------------------------------------------------------------------------------
def _pad_fwd(x: Any, widths: tuple, value: float) -> Any:
    xp = _xp(x)
    shape = tuple(s + a + b for s, (a, b) in zip(x.shape, widths))
    out = xp.full(shape, value, dtype=x.dtype)
    out[tuple(slice(a, a + s) for s, (a, _) in zip(x.shape, widths))] = x
    return out


_pad = Primitive("pad", _pad_fwd, structural=True)
_pad.defvjp(lambda g, ans, x, widths, value: getitem(g, tuple(slice(a, a + s) for s, (a, _) in zip(x.shape, widths))))


def pad(x: Any, pad_width: Any, constant_values: float = 0.0) -> Tensor:
    """Constant padding, NumPy's ``pad_width`` forms: an int, ``(before, after)``, or one
    ``(before, after)`` pair per axis."""
    x = _as_tensor(x)
    w = np.asarray(pad_width, dtype=np.int64)
    try:
        w = np.broadcast_to(w.reshape((-1, 2)) if w.ndim else w, (x.ndim, 2))
    except ValueError:
        raise ValueError(f"refopt.pad: pad_width {pad_width!r} does not fit a tensor of shape {x.shape}") from None
    if (w < 0).any():
        raise ValueError(f"refopt.pad: negative pad_width {pad_width!r}")
    widths = tuple((int(a), int(b)) for a, b in w)
    return _pad(x, widths=widths, value=float(constant_values))


# -- cast / device --------------------------------------------------------------------------
_cast = Primitive("cast", lambda x, dtype: _xp(x).astype(x, dtype), structural=True)
_cast.defvjp(lambda g, ans, x, dtype: cast(g, x.dtype))


def cast(x: Any, dtype: Any) -> Tensor:
    """``x`` converted to ``dtype`` ("float32", "float64", "int64"...); differentiable
    between float dtypes (the gradient is cast back)."""
    x = _as_tensor(x)
    target = backend.resolve_dtype(dtype, _xp(x.data))
    if x.dtype == target and _unchanged(x):
        return x
    return _cast(x, dtype=target)


_to_device = Primitive("to_device", lambda x, target: backend.move(x, target), structural=True)
_to_device.defvjp(lambda g, ans, x, target: to_device(g, x.backend))


def to_device(x: Any, target: str) -> Tensor:
    """Move ``x`` to backend ``"numpy"`` (host) or ``"cupy"`` (GPU); differentiable."""
    if target not in backend.BACKENDS:
        raise ValueError(f"refopt.to_device: unknown target {target!r}; valid: {', '.join(backend.BACKENDS)}")
    if not isinstance(x, Tensor):
        x = constant(x)
    if x.backend == target and _unchanged(x):
        return x
    return _to_device(x, target=target)


def one_hot(indices: Any, depth: int, dtype: Any = "float64") -> Tensor:
    """``out[..., k] = 1 if indices[...] == k else 0`` (not differentiable)."""
    ind = indices.data if isinstance(indices, Tensor) else indices
    if not hasattr(ind, "__array_namespace__"):
        ind = backend.asarray(np.asarray(ind))
    xp = _xp(ind)
    if backend.dtype_name(ind.dtype) not in _INT_NAMES:
        raise TypeError(f"refopt.one_hot: indices must be integers, got {backend.dtype_name(ind.dtype)}")
    hit = xp.reshape(ind, tuple(ind.shape) + (1,)) == xp.arange(int(depth), dtype=ind.dtype)
    return constant(xp.astype(hit, backend.resolve_dtype(dtype, xp)))
