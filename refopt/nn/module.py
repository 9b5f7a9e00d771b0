"""Module: the unit of a model -- registered variables and child modules.

Registration, as in PyTorch: a Module or Variable assigned as an attribute
(``self.fc1 = rf.nn.Dense(4, 8)``, ``self.scale = rf.Variable(...)``) is registered under
the attribute's name; ``add_module(module, name=None)`` and ``add_variable(name, ...)``
register under an explicit name.  Assigning ``None`` to (or deleting) a registered name
removes it; assigning a new Module or Variable replaces it, in the same position.

Names are the point.  A variable registered as ``"kernel"`` in a module registered as
``"fc1"`` in a module registered as ``"encoder"`` in the root is called
``"encoder/fc1/kernel"`` -- the root's own name is not part of it, as in PyTorch's
state-dict keys -- and that string is the Variable's ``name``, which optimizers match
their groups, learning-rate multipliers and weight-decay exclusions against.  Names are
fixed by registration order and names alone: stable across runs and backends.  A child
registered without a name takes its default name (``dense``, from the class); a sibling
already holding it gives it a suffix (``dense_1``, ``dense_2``), as Keras does.

A module has one parent and a variable one owning module; assigning one that belongs
elsewhere is refused (one already inside this module's tree is just referenced).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.tensor import Tensor, Variable, staged_for, to_numpy
from refopt.io import check_fields, read_arrays, write_arrays
from refopt.nn import init as initializers

__all__ = ["Module", "CheckpointError", "CHECKPOINT_KIND", "CHECKPOINT_SCHEMA", "owner_of"]

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


# Which module registered each Variable, and under which local name: {id(var): (weak var,
# weak module, local name)}.  Weak on both sides; an entry is trusted only while the
# module still holds that variable under that name (see owner_of).
_OWNERS: dict[int, tuple[weakref.ref, weakref.ref, str]] = {}


def _set_owner(var: Variable, module: Module, local: str) -> None:
    key = id(var)

    def forget(ref: weakref.ref, key: int = key) -> None:
        entry = _OWNERS.get(key)
        if entry is not None and entry[0] is ref:
            del _OWNERS[key]

    _OWNERS[key] = (weakref.ref(var, forget), weakref.ref(module), local)


def owner_of(var: Variable) -> tuple[Module, str] | None:
    """``(module, local_name)`` of the module that holds ``var`` (registered by
    ``add_variable`` or attribute assignment), or None for a free Variable."""
    entry = _OWNERS.get(id(var))
    if entry is None or entry[0]() is not var:
        return None
    module = entry[1]()
    if module is None or module.__dict__.get("_variables", {}).get(entry[2]) is not var:
        return None
    return module, entry[2]


# Module's own bookkeeping attributes: never registered, whatever they hold.
_INTERNAL = frozenset({"name", "training", "_explicit_name", "_variables", "_modules", "_path", "_parent"})


class Module:
    """Base class of layers and models.

    Subclasses call ``super().__init__(name)`` first, then assign their layers and
    variables as attributes (``self.fc1 = rf.nn.Dense(4, 8)``: registered as ``fc1``) or
    register them with :meth:`add_module` / :meth:`add_variable`, and compute in
    :meth:`forward`; ``module(x)`` calls ``forward(x)``.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self._check_name(name, "module")
        init = object.__setattr__
        init(self, "name", name or snake_case(type(self).__name__))
        init(self, "_explicit_name", name is not None)
        init(self, "_variables", {})
        init(self, "_modules", {})
        init(self, "_path", "")
        init(self, "_parent", None)
        init(self, "training", True)

    # -- attributes -----------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _INTERNAL:
            object.__setattr__(self, name, value)
            return
        if isinstance(value, (Module, Variable)):
            self._require_init(f"assign {type(value).__name__} {name!r}")
            if isinstance(value, Module):
                self._assign_module(name, value)
            else:
                self._assign_variable(name, value)
        else:
            if "_modules" in self.__dict__ and (name in self._modules or name in self._variables):
                if value is not None:
                    kind = "module" if name in self._modules else "variable"
                    raise TypeError(
                        f"cannot assign {type(value).__name__} to {name!r}: it is a registered {kind} of "
                        f"{self._where()}; assign a Module or Variable to replace it, or None to remove it"
                    )
                self._deregister(name)
            elif isinstance(value, (list, tuple, dict)):
                self._check_container(name, value)
        object.__setattr__(self, name, value)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # copy.deepcopy and pickle: the copied variables belong to the copied modules
        self.__dict__.update(state)
        for local, var in self.__dict__.get("_variables", {}).items():
            _set_owner(var, self, local)

    def __delattr__(self, name: str) -> None:
        if "_modules" in self.__dict__ and (name in self._modules or name in self._variables):
            self._deregister(name)
        object.__delattr__(self, name)

    def __getattr__(self, name: str) -> Any:  # only reached when normal lookup fails
        if name in _INTERNAL and "_modules" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}: its __init__ did not call super().__init__() "
                "(call it first, before assigning layers or variables)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _require_init(self, what: str) -> None:
        if "_modules" not in self.__dict__:
            raise AttributeError(
                f"cannot {what}: {type(self).__name__}.__init__ has not called super().__init__() "
                "(call it first: it sets up the registry of layers and variables)"
            )

    def _where(self) -> str:
        return repr(self._path or self.name)

    def _contains(self, module: Module) -> bool:
        """Whether ``module`` is this module or one of its descendants."""
        return module is self or any(m is self for m in module._ancestors())

    def _assign_module(self, name: str, module: Module) -> None:
        module._require_init(f"use {type(module).__name__} as a layer")
        if module is not self and self._contains(module):
            if name in self._modules and self._modules[name] is not module:
                self._deregister(name)
            return  # already in this tree (an add_module'd child kept in an attribute): a reference
        if module._parent is not None:
            raise ValueError(
                f"cannot assign module {module.path or module.name!r} to {name!r} of {self._where()}: it already "
                f"belongs to {module._parent._where()}, and a module has one parent (build a new layer, or keep "
                "the module where it is and call it from there)"
            )
        self._check_name(name, "module")
        self._attach(module, name, replace=True)

    def _assign_variable(self, name: str, var: Variable) -> None:
        owner = owner_of(var)
        if owner is not None and self._contains(owner[0]):
            if name in self._variables and self._variables[name] is not var:
                self._deregister(name)
            return  # already in this tree: a reference, not a second registration
        if owner is not None:
            raise ValueError(
                f"cannot assign variable {var.name!r} to {name!r} of {self._where()}: it already belongs to module "
                f"{owner[0]._where()}, and a variable has one owner (to share it, use it through its owner)"
            )
        self._check_name(name, "variable")
        if name in self._modules:
            self._deregister(name)
        var.name = _join(self._path, name)
        self._variables[name] = var
        _set_owner(var, self, name)

    def _check_container(self, name: str, value: list | tuple | dict) -> None:
        """Refuse a container holding modules or variables that belong nowhere: they would
        be neither trained nor saved (PyTorch's silent trap; Keras would track them)."""
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            if isinstance(item, Module):
                loose = "_modules" in item.__dict__ and item._parent is None and item is not self
            else:
                loose = isinstance(item, Variable) and owner_of(item) is None
            if loose:
                kind = "modules" if isinstance(item, Module) else "variables"
                raise TypeError(
                    f"{type(self).__name__}.{name}: a {type(value).__name__} of {kind} registers nothing, so they "
                    "would be neither trained nor saved; use rf.nn.Sequential([...]), or register each one (as an "
                    "attribute of its own, or with add_module / add_variable)"
                )

    def _deregister(self, name: str) -> None:
        if name in self._modules:
            old = self._modules.pop(name)
            object.__setattr__(old, "_parent", None)
            old._set_path("")
        else:
            self._variables.pop(name, None)

    # -- registration ---------------------------------------------------------------------
    @staticmethod
    def _check_name(name: str, what: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{what} name {name!r} must be a non-empty string of letters, digits, '_', '.', '-'")

    def _check_free(self, name: str) -> None:
        if name in self._variables or name in self._modules:
            raise ValueError(f"module {self._where()} already has a variable or module named {name!r}")

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
        self._require_init(f"add variable {name!r}")
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
        _set_owner(var, self, name)
        return var

    def add_module(self, module: Module, name: str | None = None) -> Module:
        """Register a child module under ``name`` and return it.

        Without ``name`` the child keeps its own name; a default (class-derived) name
        that a sibling already holds gets a suffix (``dense``, ``dense_1``, ...).  An
        explicit name that is taken is refused."""
        self._require_init("add a module")
        if not isinstance(module, Module):
            raise TypeError(f"add_module: expected a Module, got {type(module).__name__}")
        module._require_init(f"use {type(module).__name__} as a layer")
        if module._parent is not None:
            raise ValueError(
                f"module {module.name!r} already belongs to {module._parent._where()}; a module has one parent"
            )
        if name is None and not module._explicit_name:
            base, k, name = module.name, 0, module.name
            while name in self._modules or name in self._variables:
                k += 1
                name = f"{base}_{k}"
        name = name or module.name
        self._check_name(name, "module")
        self._check_free(name)
        self._attach(module, name)
        return module

    def _attach(self, module: Module, name: str, replace: bool = False) -> None:
        if module is self or any(m is module for m in self._ancestors()):
            raise ValueError("add_module: a module cannot contain itself")
        if replace and name in self._variables:
            self._deregister(name)
        old = self._modules.get(name)
        if old is not None and old is not module:
            object.__setattr__(old, "_parent", None)
            old._set_path("")
        object.__setattr__(module, "name", name)
        object.__setattr__(module, "_parent", self)
        self._modules[name] = module  # a replaced child keeps its place in the order
        module._set_path(_join(self._path, name))

    def _ancestors(self) -> Iterator[Module]:
        m = self._parent
        while m is not None:
            yield m
            m = m._parent

    def _set_path(self, path: str) -> None:
        object.__setattr__(self, "_path", path)
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
        staged = [(var, staged_for(var, state[name], repr(name), CheckpointError)) for name, var in own.items()]
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
    def summary(self, print_fn: Callable[[str], Any] | None = print) -> str | None:
        """A table of variable names, shapes, dtypes, parameter counts and trainable flags:
        passed to ``print_fn`` (default ``print``; nothing is returned, so a REPL shows it
        once, as Keras' ``summary()`` does), or returned as a string with ``print_fn=None``."""
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
        if print_fn is None:
            return text
        print_fn(text)
        return None

    def __repr__(self) -> str:
        inner = ", ".join(self._modules)
        return f"{type(self).__name__}(name={self.name!r}{', children=[' + inner + ']' if inner else ''})"
