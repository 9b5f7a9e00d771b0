"""Module: the unit of a model -- explicitly registered variables and child modules.

Names are the point.  A variable registered as ``"kernel"`` in a module registered as
``"dense_1"`` in a module registered as ``"encoder"`` in the root is called
``"encoder/dense_1/kernel"`` -- the root's own name is not part of it, as in PyTorch's
state-dict keys -- and that string is the Variable's ``name``, which optimizers match
their groups, learning-rate multipliers and weight-decay exclusions against.  Names are
fixed by registration order and explicit names alone: stable across runs and backends.

Registration is explicit (``add_variable``, ``add_module``); attribute assignment does
not register anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.tensor import Tensor, Variable, to_numpy
from refopt.io import check_fields, read_arrays, write_arrays
from refopt.nn import init as initializers

__all__ = ["Module", "CheckpointError", "CHECKPOINT_KIND", "CHECKPOINT_SCHEMA"]

CHECKPOINT_KIND = "refopt.checkpoint"
CHECKPOINT_SCHEMA = 1
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class CheckpointError(ValueError):
    """A state dict or checkpoint that does not fit the model; the model is left unchanged."""


def snake_case(name: str) -> str:
    """``"LayerNorm" -> "layer_norm"``, ``"Conv2D" -> "conv2d"``."""
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s).lower()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _staged_value(name: str, value: Any, var: Variable) -> Any:
    """``value`` as the array ``var.assign`` will take without complaint -- same shape,
    the exact dtype (a non-native byte order converted), the variable's backend -- or a
    :class:`CheckpointError` naming ``name``."""
    arr = value.data if isinstance(value, Tensor) else value
    if not hasattr(arr, "__array_namespace__"):
        try:
            arr = np.asarray(arr)
        except Exception as exc:  # ragged lists, objects that refuse conversion
            raise CheckpointError(f"{name!r}: {type(value).__name__} is not an array ({exc})") from exc
    if tuple(arr.shape) != var.shape:
        raise CheckpointError(f"{name!r}: shape {tuple(arr.shape)} does not match the variable's {var.shape}")
    if backend.dtype_name(arr.dtype) != backend.dtype_name(var.dtype):
        raise CheckpointError(
            f"{name!r}: dtype {backend.dtype_name(arr.dtype)} does not match the variable's "
            f"{backend.dtype_name(var.dtype)}"
        )
    if isinstance(arr, np.ndarray) and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = backend.move(arr, var.backend)
    if arr.dtype != var.dtype:  # what assign compares; never expected after the checks above
        raise CheckpointError(f"{name!r}: dtype {arr.dtype!r} cannot be assigned to the variable's {var.dtype!r}")
    return arr


class Module:
    """Base class of layers and models.

    Subclasses register their variables with :meth:`add_variable` and their children
    with :meth:`add_module` in ``__init__``, and compute in :meth:`forward`;
    ``module(x)`` calls ``forward(x)``.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self._check_name(name, "module")
        self.name: str = name or snake_case(type(self).__name__)
        self._explicit_name = name is not None
        self._variables: dict[str, Variable] = {}
        self._modules: dict[str, Module] = {}
        self._path = ""
        self._parent: Module | None = None
        self.training = True

    # -- registration ---------------------------------------------------------------------
    @staticmethod
    def _check_name(name: str, what: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{what} name {name!r} must be a non-empty string of letters, digits, '_', '.', '-'")

    def _check_free(self, name: str) -> None:
        if name in self._variables or name in self._modules:
            raise ValueError(f"module {self._path or self.name!r} already has a variable or module named {name!r}")

    def add_variable(
        self,
        name: str,
        initializer: str | Callable[..., Any] | Any,
        shape: Sequence[int] | None = None,
        dtype: Any = "float32",
        trainable: bool = True,
        seed: int | np.random.Generator | None = None,
    ) -> Variable:
        """Create and register a variable.

        ``initializer`` is an initialiser (name or callable, drawn on the host with
        ``seed``; needs ``shape``) or an initial value (array or Tensor).
        """
        self._check_name(name, "variable")
        self._check_free(name)
        if isinstance(initializer, str) or (callable(initializer) and not isinstance(initializer, Tensor)):
            if shape is None:
                raise ValueError(f"add_variable {name!r}: an initialiser needs a shape")
            value = initializers.get(initializer)(tuple(shape), seed=seed, dtype=dtype)
        else:
            value = initializer.data if isinstance(initializer, Tensor) else initializer
            if shape is not None and tuple(np.shape(value)) != tuple(shape):
                raise ValueError(f"add_variable {name!r}: value has shape {np.shape(value)}, expected {tuple(shape)}")
        var = Variable(value, name=_join(self._path, name), trainable=trainable, dtype=dtype)
        self._variables[name] = var
        return var

    def add_module(self, module: Module, name: str | None = None) -> Module:
        """Register a child module (under ``name``, default: its own name); return it."""
        if not isinstance(module, Module):
            raise TypeError(f"add_module: expected a Module, got {type(module).__name__}")
        if module._parent is not None:
            raise ValueError(
                f"module {module.name!r} already belongs to {module._parent._path or module._parent.name!r}; "
                "a module has one parent"
            )
        if module is self or module in self._ancestors():
            raise ValueError("add_module: a module cannot contain itself")
        name = name or module.name
        self._check_name(name, "module")
        self._check_free(name)
        module.name = name
        module._parent = self
        self._modules[name] = module
        module._set_path(_join(self._path, name))
        return module

    def _ancestors(self) -> Iterator[Module]:
        m = self._parent
        while m is not None:
            yield m
            m = m._parent

    def _set_path(self, path: str) -> None:
        self._path = path
        for local, var in self._variables.items():
            var.name = _join(path, local)
        for local, child in self._modules.items():
            child._set_path(_join(path, local))

    @property
    def path(self) -> str:
        """This module's name within its root ("" for the root)."""
        return self._path

    # -- calling --------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def train(self, mode: bool = True) -> Module:
        """Set ``training`` on this module and every descendant (Dropout reads it)."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> Module:
        """``train(False)``."""
        return self.train(False)

    # -- traversal ------------------------------------------------------------------------
    def modules(self) -> list[Module]:
        """This module and its descendants, depth first in registration order."""
        out = [self]
        for child in self._modules.values():
            out.extend(child.modules())
        return out

    def named_modules(self) -> dict[str, Module]:
        """``{path: module}`` for this module and its descendants (the root's path is "")."""
        return {m._path: m for m in self.modules()}

    def children(self) -> dict[str, Module]:
        """The directly registered child modules, by local name."""
        return dict(self._modules)

    def named_variables(self) -> dict[str, Variable]:
        """``{name: Variable}`` in order: each module's own variables, then its children's."""
        out: dict[str, Variable] = {}
        seen: set[int] = set()
        for m in self.modules():
            for var in m._variables.values():
                if var.name in out or id(var) in seen:
                    raise ValueError(f"duplicate variable {var.name!r} in model {self.name!r}")
                seen.add(id(var))
                out[var.name] = var
        return out

    def variables(self) -> list[Variable]:
        """Every variable, in :meth:`named_variables` order."""
        return list(self.named_variables().values())

    def trainable_variables(self) -> list[Variable]:
        """The variables with ``trainable`` set, in order."""
        return [v for v in self.variables() if v.trainable]

    def freeze(self) -> Module:
        """Mark every variable of this subtree non-trainable."""
        for v in self.variables():
            v.trainable = False
        return self

    def unfreeze(self) -> Module:
        """Mark every variable of this subtree trainable."""
        for v in self.variables():
            v.trainable = True
        return self

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``{name: host NumPy copy}`` of every variable, in order."""
        return {name: to_numpy(v) for name, v in self.named_variables().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Assign every variable from ``state`` (arrays or tensors, by name).

        All names, shapes, dtypes and devices are checked, and every value converted
        (byte order, backend), before any variable changes; on any mismatch
        :class:`CheckpointError` names the key and nothing is assigned.
        """
        if not isinstance(state, Mapping):
            raise CheckpointError(
                f"state for {self.name!r} must be a mapping of names to arrays, not {type(state).__name__}"
            )
        own = self.named_variables()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise CheckpointError(f"state does not fit {self.name!r}: missing {missing}, unexpected {unexpected}")
        staged = [(var, _staged_value(name, state[name], var)) for name, var in own.items()]
        for var, arr in staged:  # nothing below can fail: shapes, dtypes, devices are right
            var.assign(arr)

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint: ``.npz`` (no pickle) + JSON metadata, atomically."""
        variables = self.named_variables()
        info = [
            {"name": n, "shape": list(v.shape), "dtype": backend.dtype_name(v.dtype), "trainable": v.trainable}
            for n, v in variables.items()
        ]
        return write_arrays(
            path,
            {n: to_numpy(v) for n, v in variables.items()},
            kind=CHECKPOINT_KIND,
            schema_version=CHECKPOINT_SCHEMA,
            extra={"model": type(self).__name__, "variables": info},
        )

    def load(self, path: str | Path) -> None:
        """Load a checkpoint written by :meth:`save`; refuses pickles, corrupted or
        truncated files and mismatched names, shapes or dtypes, leaving the model
        unchanged."""
        arrays, meta = read_arrays(path, CHECKPOINT_KIND, (CHECKPOINT_SCHEMA,))
        check_fields(meta, f"{CHECKPOINT_KIND} file {str(path)!r}", ("model", "variables"))
        self.load_state_dict(arrays)

    # -- display --------------------------------------------------------------------------
    def summary(self, print_fn: Callable[[str], Any] | None = print) -> str:
        """A table of variable names, shapes, dtypes, parameter counts and trainable flags."""
        rows = [("Variable", "Shape", "Dtype", "Params", "Trainable")]
        total = trainable = 0
        for name, v in self.named_variables().items():
            rows.append(
                (name, str(v.shape), backend.dtype_name(v.dtype), f"{v.size:,}", "yes" if v.trainable else "no")
            )
            total += v.size
            trainable += v.size if v.trainable else 0
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [f"Model: {self.name} ({type(self).__name__})"]
        for i, r in enumerate(rows):
            lines.append(
                "  ".join(c.ljust(w) if j in (0, 1, 2) else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
            )
            if i == 0:
                lines.append("-" * len(lines[-1]))
        lines.append(f"Total params: {total:,} (trainable: {trainable:,}, non-trainable: {total - trainable:,})")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        inner = ", ".join(self._modules)
        return f"{type(self).__name__}(name={self.name!r}{', children=[' + inner + ']' if inner else ''})"
