"""Tensor, Variable and Primitive: the values of the graph and how ops record themselves.

Every op result is a :class:`Tensor` that remembers how it was made: the
:class:`Primitive` that computed it, its arguments and keyword arguments (a *node*).
:func:`refopt.gradients` walks these nodes backwards.  Every node is recorded, always,
as in a TensorFlow-1 graph, so that the gradient with respect to *any* tensor can be
asked for, and so that backward passes (whose VJPs are themselves refopt ops) are
differentiable again.

A :class:`Variable` is a mutable leaf.  ``assign`` rebinds its array (never writes into
the old one) and bumps a version counter; a node that read the variable remembers the
version it saw, so differentiating a stale graph raises instead of silently using the
new value.

Dtype rules (checked here, once, for every primitive): differentiable inputs must be
float32 or float64 and all share one dtype -- no silent promotion; Python numbers are
weak, alone or in a list or tuple (they take the tensor's dtype: :func:`weak_constant`);
arrays of two devices never meet in one op.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from refopt import backend

__all__ = ["Tensor", "Variable", "Primitive", "constant", "to_numpy", "make_node", "staged_for", "weak_constant"]

_FLOAT_NAMES = frozenset(("float32", "float64"))


_float_by_id: dict[int, tuple[Any, bool]] = {}


def _is_float_dtype(dtype: Any) -> bool:
    """float32 or float64, on any backend.  Cached by identity (the cache holds the dtype
    object, so its id cannot be reused); dtype objects of different libraries never meet
    in an equality test."""
    hit = _float_by_id.get(id(dtype))
    if hit is None:
        hit = _float_by_id[id(dtype)] = (dtype, backend.dtype_name(dtype) in _FLOAT_NAMES)
    return hit[1]


def _normalize(data: Any) -> Any:
    """NumPy returns scalars (np.float64) from 0-d computations; keep arrays throughout."""
    if isinstance(data, np.generic):
        return np.asarray(data)
    return data


class Tensor:
    """An immutable differentiable value wrapping one backend array (``.data``).

    Arithmetic operators, comparisons (non-differentiable) and indexing ``x[idx]``
    (basic and integer-array, differentiable) are defined in :mod:`refopt.ops`.
    """

    __slots__ = ("data", "_node", "__weakref__")
    _version = 0  # Tensors never change; Variable overrides with a per-instance counter.
    __array_ufunc__ = None  # make NumPy defer to our reflected operators
    __array_priority__ = 1000

    def __init__(self, data: Any) -> None:
        if isinstance(data, Tensor):
            data = data.data
        elif not hasattr(data, "__array_namespace__"):
            data = backend.asarray(data)
        self.data = _normalize(data)
        self._node = None

    # -- array-like attributes ----------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return math.prod(self.data.shape)

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``."""
        return backend.device_of(self.data)

    @property
    def backend(self) -> str:
        """``"numpy"``, ``"cupy"`` or ``"array_api_strict"``."""
        return backend.backend_name(self.data)

    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the value."""
        return backend.to_host(self.data)

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python scalar."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor of one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    __hash__ = object.__hash__  # identity: tensors are dict keys (masks={var: ...})

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        kind = type(self).__name__
        name = getattr(self, "name", None)
        label = f" name={name!r}" if name is not None else ""
        dtype = backend.dtype_name(self.dtype)
        return f"<refopt.{kind}{label} shape={self.shape} dtype={dtype} device={self.device}>\n{self.numpy()!r}"


class Variable(Tensor):
    """A mutable leaf Tensor: model weights, optimizer-trained values.

    ``assign`` replaces the value (same shape and dtype) and increments ``version``;
    graphs built from the old value refuse to be differentiated afterwards.
    """

    __slots__ = ("_version", "name", "trainable")

    def __init__(self, value: Any, name: str | None = None, trainable: bool = True, dtype: Any = None) -> None:
        if isinstance(value, Tensor):
            value = value.data
        if hasattr(value, "__array_namespace__") and not isinstance(value, np.ndarray):
            data = backend.asarray(value, dtype=dtype, backend=backend.backend_name(value))
        else:
            data = backend.asarray(value, dtype=dtype)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Variable name must be a string, got {type(name).__name__}")
        self.data = _normalize(data)
        self._node = None
        self._version = 0
        self.name = name
        self.trainable = bool(trainable)

    @property
    def version(self) -> int:
        """How many times this variable has been assigned."""
        return self._version

    def assign(self, value: Any) -> Variable:
        """Replace the value; shape, dtype and device must match.  Returns ``self``."""
        if isinstance(value, Tensor):
            value = value.data
        if not hasattr(value, "__array_namespace__"):
            value = backend.asarray(value, dtype=self.dtype, backend=backend.backend_name(self.data))
        if backend.backend_name(value) != backend.backend_name(self.data):
            raise ValueError(
                f"Variable {self.name!r}: cannot assign a value on {backend.device_of(value)} "
                f"to a variable on {self.device}; move it with rf.to_device"
            )
        if tuple(value.shape) != self.shape:
            raise ValueError(f"Variable {self.name!r}: cannot assign shape {tuple(value.shape)} to shape {self.shape}")
        if value.dtype != self.dtype:
            raise TypeError(
                f"Variable {self.name!r}: cannot assign dtype {backend.dtype_name(value.dtype)} "
                f"to dtype {backend.dtype_name(self.dtype)}; cast explicitly"
            )
        xp = backend.namespace(value)
        self.data = _normalize(xp.asarray(value, copy=True))
        self._version += 1
        return self

    def _commit(self, data: Any) -> None:
        """Take ``data`` as the new value without copying (an optimizer's fresh array, or
        this variable's own array updated in place) and count the change: graphs built
        from the old value refuse to be differentiated afterwards."""
        self.data = data
        self._version += 1

    def assign_add(self, delta: Any) -> Variable:
        """``self.assign(self + delta)`` evaluated on the arrays (no graph)."""
        d = delta.data if isinstance(delta, Tensor) else delta
        return self.assign(self.data + d)

    def assign_sub(self, delta: Any) -> Variable:
        """``self.assign(self - delta)`` evaluated on the arrays (no graph)."""
        d = delta.data if isinstance(delta, Tensor) else delta
        return self.assign(self.data - d)


def constant(value: Any, dtype: Any = None) -> Tensor:
    """A new Tensor on the current backend (a NumPy/CuPy array is used on its own device).

    Python floats and lists follow NumPy's inference (float -> float64).
    """
    if isinstance(value, Tensor):
        value = value.data
    if hasattr(value, "__array_namespace__") and not isinstance(value, np.ndarray):
        data = value
        if dtype is not None:
            xp = backend.namespace(value)
            data = xp.astype(value, backend.resolve_dtype(dtype, xp))
    else:
        data = backend.asarray(value, dtype=dtype)
    t = Tensor.__new__(Tensor)
    t.data = _normalize(data)
    t._node = None
    return t


def _wrap_array(a: Any) -> Tensor:
    """A raw array met as an op input: a constant copy, on the array's own device."""
    t = Tensor.__new__(Tensor)
    t.data = _normalize(backend.asarray(a, backend=backend.backend_name(a)))
    t._node = None
    return t


_PY_NUMBERS = (bool, int, float)


def _first_non_number(value: list | tuple) -> tuple[bool, Any]:
    """``(True, e)`` for the first element of a nested list or tuple that is not a Python
    number -- compared by exact class: ``np.float64`` subclasses ``float`` but carries a
    dtype -- else ``(False, None)``."""
    stack = [value]
    while stack:
        for e in stack.pop():
            c = e.__class__
            if c is list or c is tuple:
                stack.append(e)
            elif c not in _PY_NUMBERS:
                return True, e
    return False, None


def weak_constant(
    value: list | tuple, like: Tensor | None, op: str, position: int, follow_dtype: bool = True
) -> Tensor:
    """A list or tuple of Python numbers met as input ``position`` of op ``op``, as a
    constant.  Python numbers are weak, alone or in a list: the values take the dtype of
    ``like`` (the op's tensor input) when it is float32 or float64 -- ``x32 * [2, 0.5]``
    is float32, as ``x32 * 2`` is -- and are made on ``like``'s device.  With no float
    tensor to follow (or ``follow_dtype=False``) they follow NumPy's inference, as
    :func:`constant` does (a float is float64).  A list holding anything else (NumPy
    scalars, arrays, tensors, strings) is refused: it has a dtype of its own, or none."""
    bad, e = _first_non_number(value)
    kind = type(value).__name__
    if bad:
        if isinstance(e, complex):
            raise TypeError(
                f"refopt.{op}: input {position} is a {kind} holding the complex {e!r}; refopt computes "
                "in float32 and float64 (a complex value would silently promote the result to complex)"
            )
        raise TypeError(
            f"refopt.{op}: input {position} is a {kind} holding a {type(e).__name__}; only a list or tuple "
            "of Python numbers is taken as a value (in the dtype of the op's tensor input) -- build a tensor "
            "explicitly: rf.stack for tensors, rf.constant(np.asarray(value), dtype=...) for arrays and "
            "NumPy scalars"
        )
    dtype = None
    if like is not None and follow_dtype and _is_float_dtype(like.dtype):
        dtype = backend.dtype_name(like.dtype)
    place = backend.backend_name(like.data) if like is not None else None
    try:
        data = backend.asarray(value, dtype=dtype, backend=place)
    except (ValueError, OverflowError) as exc:  # a ragged list; an int beyond the dtype's range
        raise type(exc)(
            f"refopt.{op}: input {position} ({kind}) cannot be made an array{' of ' + dtype if dtype else ''}: {exc}"
        ) from exc
    t = Tensor.__new__(Tensor)
    t.data = _normalize(data)
    t._node = None
    return t


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy array from a Tensor, Variable, NumPy, CuPy or array-API array."""
    if isinstance(x, Tensor):
        return x.numpy()
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    if hasattr(x, "__array_namespace__"):
        return backend.to_host(x)
    return np.asarray(x)


def _describe_input(d: Any) -> str:
    if hasattr(d, "shape") and hasattr(d, "dtype"):
        return f"{backend.dtype_name(d.dtype)}{tuple(d.shape)}"
    return type(d).__name__


def _op_error(name: str, exc: Exception, datas: Sequence[Any], kwargs: dict) -> Exception:
    """The error an op raises when its forward fails: the op, its inputs' dtypes and
    shapes, and the original message, as the nearest built-in class of the original (a
    library's exception class may not take a message alone); the caller chains the
    original with ``from``."""
    msg = str(exc)
    if not msg.startswith(f"refopt.{name}:"):
        inputs = ", ".join(_describe_input(d) for d in datas)
        opts = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        msg = f"refopt.{name}: {type(exc).__name__}: {msg} (inputs: {inputs}{'; ' + opts if opts else ''})"
    cls = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
    try:
        return cls(msg)
    except Exception:  # a built-in with another constructor (UnicodeError's family)
        return RuntimeError(msg)


def staged_for(var: Variable, value: Any, what: str, error: type[Exception] = ValueError) -> Any:
    """``value`` (an array, Tensor or nested list) as an array ``var`` can take without
    complaint -- its shape, its exact dtype (a non-native byte order converted), its
    backend -- always a fresh array of its own, never sharing memory with what the caller
    passed (``np.asarray`` of a memoryview, an ``array.array`` or a torch tensor is a
    view of the caller's buffer: an optimizer writing its state in place would write into
    the caller's object, and the caller's later writes would change the state); otherwise
    ``error`` naming ``what``.  What a load checks of every value before it changes
    anything."""
    arr = value.data if isinstance(value, Tensor) else value
    if not hasattr(arr, "__array_namespace__"):
        try:
            arr = np.asarray(arr)
        except Exception as exc:  # ragged lists, objects that refuse conversion
            raise error(f"{what}: {type(value).__name__} is not an array ({exc})") from exc
    if tuple(arr.shape) != var.shape:
        raise error(f"{what}: shape {tuple(arr.shape)} does not match the variable's {var.shape}")
    if backend.dtype_name(arr.dtype) != backend.dtype_name(var.dtype):
        raise error(
            f"{what}: dtype {backend.dtype_name(arr.dtype)} does not match the variable's "
            f"{backend.dtype_name(var.dtype)}"
        )
    fresh = False  # whether arr is already a new array (a conversion's copy)
    if isinstance(arr, np.ndarray) and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="), order="C")
        fresh = True
    if backend.backend_name(arr) != var.backend:
        arr = backend.move(arr, var.backend)
        fresh = True
    if arr.dtype != var.dtype:  # what assign compares; never expected after the checks above
        raise error(f"{what}: dtype {arr.dtype!r} cannot be assigned to the variable's {var.dtype!r}")
    if not fresh:
        if isinstance(arr, np.ndarray):  # C order, so that an optimizer may update it in place
            arr = np.array(arr, order="C", copy=True)
        else:
            arr = backend.namespace(arr).asarray(arr, copy=True)
    return arr


def make_node(data: Any, prim: Primitive, args: tuple, kwargs: dict) -> Tensor:
    """A Tensor with value ``data`` recorded as ``prim(*args, **kwargs)`` (no forward run)."""
    t = Tensor.__new__(Tensor)
    t.data = _normalize(data)
    vers = None
    for i, a in enumerate(args):
        if isinstance(a, Variable):
            vers = (vers or ()) + ((i, a._version),)
    t._node = (prim, args, kwargs, vers)
    return t


class Primitive:
    """A differentiable op: a forward on arrays and one VJP per differentiable input.

    ``fwd(*arrays, **kwargs)`` computes on backend arrays.  ``vjps[i](g, ans, *args,
    **kwargs)`` returns the cotangent of positional input ``i`` as a refopt Tensor,
    written with refopt ops so that it is itself differentiable.  ``vjp_all`` (instead of
    ``vjps``) returns all input cotangents at once.  Inputs listed in ``nondiff`` (index
    arrays, masks, conditions) are passed through unchecked and get no gradient.
    ``structural`` ops (reshape, indexing...) also accept integer or boolean tensors, for
    which no node is recorded.
    """

    __slots__ = ("name", "fwd", "vjps", "vjp_all", "nondiff", "structural")

    def __init__(
        self,
        name: str,
        fwd: Callable[..., Any],
        nondiff: Sequence[int] = (),
        structural: bool = False,
    ) -> None:
        self.name = name
        self.fwd = fwd
        self.vjps: tuple[Callable[..., Any] | None, ...] = ()
        self.vjp_all: Callable[..., Any] | None = None
        self.nondiff = frozenset(nondiff)
        self.structural = structural

    def defvjp(self, *vjps: Callable[..., Any] | None) -> None:
        self.vjps = vjps

    def __repr__(self) -> str:
        return f"<Primitive {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        # The hot path of the engine: every op of every forward and backward pass.
        nondiff = self.nondiff
        datas = []
        cls = None
        dtype = None
        converted = False
        record = False
        vers = None
        python_values = False
        for i, a in enumerate(args):
            ac = a.__class__
            if ac is Tensor:
                d = a.data
            elif ac is float or ac is int:  # weak; NumPy scalars are arrays
                datas.append(a)
                continue
            elif ac is complex:
                self._complex_error(a)
            elif isinstance(a, Tensor):
                d = a.data
                if isinstance(a, Variable):
                    vers = (vers or ()) + ((i, a._version),)
            elif hasattr(a, "__array_namespace__") or isinstance(a, np.generic):
                if not converted:
                    args = list(args)
                    converted = True
                a = args[i] = _wrap_array(a)
                d = a.data
            else:
                if ac is list or ac is tuple:
                    python_values = True
                datas.append(a)
                continue
            datas.append(d)
            c = d.__class__
            if cls is None:
                cls = c
            elif c is not cls:
                self._device_error(args)
            if i in nondiff:
                continue
            dt = d.dtype
            if dtype is None:
                dtype = dt
                if _is_float_dtype(dt):
                    record = True
                elif not self.structural:
                    self._dtype_error(args)
            elif dt is not dtype and dt != dtype:
                self._dtype_error(args)
        if python_values or cls is None:  # lists or tuples; or no array input at all
            return self._with_python_values(args, kwargs)
        try:
            out = self.fwd(*datas, **kwargs)
        except Exception as exc:
            raise _op_error(self.name, exc, datas, kwargs) from exc
        if out.__class__ is not cls:
            out = _normalize(out)
        t = Tensor.__new__(Tensor)
        t.data = out
        # Integer/boolean results (casts, indexing of labels) end the graph.
        if record and (not self.structural or _is_float_dtype(out.dtype)):
            t._node = (self, tuple(args) if converted else args, kwargs, vers)
        else:
            t._node = None
        return t

    def _with_python_values(self, args: Sequence[Any], kwargs: dict) -> Tensor:
        """The call with its list and tuple inputs made constants by :func:`weak_constant`
        (following the op's first differentiable tensor input).  With no tensor input at
        all, a Python number becomes a constant as :func:`constant` makes it (``rf.exp(1.0)``
        is float64), and anything else is refused, naming the op and the type."""
        tensors = [(i, a) for i, a in enumerate(args) if isinstance(a, Tensor)]
        like = next((a for i, a in tensors if i not in self.nondiff), tensors[0][1] if tensors else None)
        new = list(args)
        for i, a in enumerate(args):
            c = a.__class__
            if c is list or c is tuple:
                new[i] = weak_constant(a, like, self.name, i, follow_dtype=i not in self.nondiff)
            elif like is None and c in _PY_NUMBERS:
                new[i] = constant(a)
            elif like is None:
                raise TypeError(
                    f"refopt.{self.name}: input {i} is a {c.__name__}; expected a Tensor, an array or Python numbers"
                )
        return self(*new, **kwargs)

    def _complex_error(self, value: complex) -> None:
        raise TypeError(
            f"refopt.{self.name}: complex input {value!r}; refopt computes in float32 and float64 "
            "(a complex scalar would silently promote the result to complex)"
        )

    def _device_error(self, args: Sequence[Any]) -> None:
        places = []
        for a in args:
            if isinstance(a, Tensor):
                p = f"{backend.device_of(a.data)} ({backend.backend_name(a.data)})"
                if p not in places:
                    places.append(p)
        raise ValueError(
            f"refopt.{self.name}: inputs live on different devices: {' and '.join(places)}; "
            "move one explicitly with rf.to_device"
        )

    def _dtype_error(self, args: Sequence[Any]) -> None:
        names = []
        for i, a in enumerate(args):
            if isinstance(a, Tensor) and i not in self.nondiff:
                n = backend.dtype_name(a.dtype)
                if n not in names:
                    names.append(n)
        if len(names) > 1:
            raise TypeError(
                f"refopt.{self.name}: mixed dtypes {' and '.join(names)}; refopt never promotes "
                "silently -- cast one input explicitly with rf.cast"
            )
        raise TypeError(
            f"refopt.{self.name}: expected float32 or float64 input, got {names[0]} "
            "(integer tensors serve as indices and labels; cast with rf.cast to compute)"
        )
