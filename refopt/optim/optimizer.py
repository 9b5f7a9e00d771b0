"""The optimizer front end shared by SGD, Adam and AdamW.

TensorFlow-1 style::

    grads_and_vars = opt.compute_gradients(loss, var_list)   # [(grad, var)]
    opt.apply_gradients(grads_and_vars, masks={var: keep})    # one update
    opt.minimize(loss, var_list)                              # the two together
    opt.minimize({loss1: vars1, loss2: vars2})                # each loss -> its own variables

PyTorch style: bind the optimizer to variables or parameter groups at construction
(``Adam(model.trainable_variables(), learning_rate=1e-3)``, or
``Adam([{"params": v1, "learning_rate": 1e-5}, {"params": v2}], learning_rate=1e-3)``)
and call ``minimize(loss)``.  Variables of separate modules (or of none) train together;
they need distinct names only to save the state by name (``state_dict``, ``save``).

The learning rate defaults to 1e-3 in every convention (PyTorch's default; Keras' SGD
defaults to 0.01, TF1 and optax have no default) when neither the first argument nor
``learning_rate=`` gives one.  Each convention validates hyperparameters as its framework
does, when the optimizer is built (``refopt.optim.conventions.CONVENTION``).

An update is transactional: every gradient, mask and value is checked and every new
value computed before any variable or slot changes, so a bad input raises with nothing
half-applied.

Per-variable hyperparameters resolve in this order: the group's value, else the
optimizer's, else the convention's default; then ``exclude_from_weight_decay`` (regexes,
``re.search`` on the variable name) zeroes the decay and ``lr_multipliers`` (regex ->
factor, the first matching pattern wins) scales the *step size* -- the learning rate --
never the gradient (a scaled gradient does not scale Adam's step: m / sqrt(v) is
invariant to it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.graph import gradients
from refopt.autodiff.tensor import Tensor, Variable, staged_for, to_numpy
from refopt.io import FileFormatError, check_fields, read_arrays, write_arrays
from refopt.optim import execute
from refopt.optim.clipping import clip_arrays
from refopt.optim.conventions import CONVENTION, DEFAULTS, check_convention, rule_title, scalar, via_float32
from refopt.optim.execute import Task
from refopt.optim.rules import Rule

__all__ = ["Optimizer", "Hyper", "StepContext", "SLOT_ALIASES"]

STATE_KIND = "refopt.optimizer_state"
STATE_SCHEMA = 1

# Framework slot names accepted as aliases of refopt's canonical ones.
SLOT_ALIASES = {
    "exp_avg": "m",
    "mu": "m",
    "exp_avg_sq": "v",
    "nu": "v",
    "max_exp_avg_sq": "v_max",
    "vhat": "v_max",
    "velocity_hat": "v_max",
    "nu_max": "v_max",
    "momentum_buffer": "momentum",
    "trace": "momentum",
}

_GROUP_ALIASES = {"lr": "learning_rate", "eps": "epsilon"}


@dataclasses.dataclass(frozen=True)
class Hyper:
    """The resolved hyperparameters of one variable."""

    learning_rate: Any
    lr_multiplier: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.0
    decay_excluded: bool = False
    amsgrad: bool = False
    maximize: bool = False
    eps_root: float = 0.0
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    decoupled: bool = False


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What one variable's update needs besides its arrays: the dtype, this step's
    learning rate (schedule value times multiplier, a Python float), the step number t
    the update uses, TF1's float32 beta powers, and the size of optax's tree."""

    dtype: Any
    lr: float
    count: int
    powers: tuple[Any, Any] | None = None
    leaves: int = 1

    def T(self, x: float) -> Any:
        """A Python float rounded once to the dtype."""
        return scalar(x, self.dtype)

    def F(self, x: float) -> Any:
        """A Python float as TensorFlow converts it: float32 first, then the dtype."""
        return via_float32(x, self.dtype)


@dataclasses.dataclass
class _Group:
    overrides: dict[str, Any]
    bound: list[Variable] | None
    powers: tuple[Any, Any] | None = None  # tf1: float32 running products beta^t


@dataclasses.dataclass
class _VarState:
    var: Variable
    group: int
    hyper: Hyper
    slots: dict[str, Any]
    step: int = 0
    addresses: dict[str, tuple[Any, int]] = dataclasses.field(default_factory=dict)  # the kernels' cache


class _Unset:
    """The default of the first positional argument: "not given" (the learning rate is then
    the ``learning_rate`` keyword, or ``DEFAULT_LR`` = 1e-3 in every convention)."""

    def __repr__(self) -> str:
        return "1e-3"


UNSET: Any = _Unset()
_FLOAT64 = np.dtype("float64")
DEFAULT_LR = 1e-3


def _detached(g: Tensor) -> Tensor:
    """The same value, no graph (its array shared, not copied)."""
    t = Tensor.__new__(Tensor)
    t.data = g.data
    t._node = None
    return t


def _is_schedule(x: Any) -> bool:
    return callable(x) and not isinstance(x, (int, float))


def _is_real(x: Any) -> bool:
    """A real number: a Python or NumPy int or float, not a bool."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _exact_keys(d: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in d]
    extra = [k for k in d if k not in keys]
    if missing or extra:
        raise ValueError(f"{what}: missing keys {missing}, unexpected keys {extra}")


def _count(x: Any, what: str) -> int:
    """A step count: an int >= 0 (a NumPy integer too; never a bool)."""
    if not isinstance(x, (int, np.integer)) or isinstance(x, bool) or x < 0:
        raise ValueError(f"{what} must be a non-negative int, got {x!r}")
    return int(x)


class Optimizer:
    """Base class; use :class:`~refopt.optim.SGD`, :class:`~refopt.optim.Adam` or
    :class:`~refopt.optim.AdamW`."""

    rule = ""
    _rules: dict[str, Rule] = {}
    _options: dict[str, set[str]] = {}
    _decoupled = False
    # hyperparameters whose default is "no effect", checked against _options
    _NEUTRAL = {
        "amsgrad": False,
        "maximize": False,
        "eps_root": 0.0,
        "weight_decay": 0.0,
        "dampening": 0.0,
        "nesterov": False,
        "momentum": 0.0,
    }

    def __init__(
        self,
        params_or_lr: Any,
        hyper: dict[str, Any],
        convention: str = "torch",
        learning_rate: Any = None,
        lr_multipliers: Mapping[str, float] | None = None,
        exclude_from_weight_decay: Sequence[str] | None = None,
        global_clipnorm: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
    ) -> None:
        self.convention = check_convention(convention, self.rule)
        self._conv = CONVENTION[self.convention]
        if isinstance(params_or_lr, (list, tuple)):
            params = list(params_or_lr)
            lr = DEFAULT_LR if learning_rate is None else learning_rate
        elif params_or_lr is UNSET:
            params, lr = None, DEFAULT_LR if learning_rate is None else learning_rate
        else:
            if learning_rate is not None:
                raise TypeError(
                    f"{type(self).__name__}: learning_rate given twice (as the first argument and by keyword)"
                )
            params, lr = None, params_or_lr
        self._check_lr(lr, "learning_rate")
        defaults = dict(DEFAULTS[self.rule][self.convention])
        exclude_default = defaults.pop("exclude_from_weight_decay", None)
        self._defaults: dict[str, Any] = {"learning_rate": lr}
        for name, value in hyper.items():
            self._defaults[name] = defaults.get(name) if value is None else value
        for name, value in self._defaults.items():
            if value is None:
                raise ValueError(f"{type(self).__name__}: {name} has no default for convention {convention!r}")
        self._check_options(self._defaults, "the optimizer")
        self.lr_multipliers = {}
        for pattern, factor in (lr_multipliers or {}).items():
            self._check_pattern(pattern, "lr_multipliers")
            if not _is_real(factor) or not math.isfinite(factor) or factor < 0:
                raise ValueError(
                    f"{type(self).__name__}: lr_multipliers[{pattern!r}] must be a finite number >= 0 (it scales "
                    f"the step size), got {factor!r}"
                )
            self.lr_multipliers[str(pattern)] = float(factor)
        excl = exclude_default if exclude_from_weight_decay is None else exclude_from_weight_decay
        self.exclude_from_weight_decay = [str(p) for p in (excl or [])]
        for pattern in self.exclude_from_weight_decay:
            self._check_pattern(pattern, "exclude_from_weight_decay")
        for name, v in (("global_clipnorm", global_clipnorm), ("clipnorm", clipnorm), ("clipvalue", clipvalue)):
            if v is not None and not (_is_real(v) and math.isfinite(v) and v > 0):
                raise ValueError(f"{type(self).__name__}: {name} must be a finite positive number, got {v!r}")
        if sum(v is not None for v in (global_clipnorm, clipnorm, clipvalue)) > 1:
            raise ValueError(f"{type(self).__name__}: set at most one of global_clipnorm, clipnorm, clipvalue")
        self.global_clipnorm, self.clipnorm, self.clipvalue = global_clipnorm, clipnorm, clipvalue
        self.iterations = 0
        self._states: dict[int, _VarState] = {}
        self._groups: list[_Group] = []
        self._interned: dict[Hyper, Hyper] = {}
        self._bound = params is not None
        if params is None:
            self._groups.append(_Group({}, None))
        else:
            self._bind(params)
        self._reset_powers()

    # -- construction helpers --------------------------------------------------------------
    def _check_pattern(self, pattern: Any, what: str) -> None:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise ValueError(f"{type(self).__name__}: {what} pattern {pattern!r} is not a valid regex: {exc}") from None

    @staticmethod
    def _check_lr(lr: Any, what: str) -> None:
        # the type only: the range is each convention's check (torch: 0 <= lr; the others none)
        if _is_schedule(lr):
            return
        if not isinstance(lr, (int, float)) or isinstance(lr, bool):
            raise ValueError(f"{what} must be a number or a schedule (callable), got {lr!r}")

    def _check_options(self, values: Mapping[str, Any], where: str) -> None:
        allowed = self._options[self.convention]
        for name, neutral in self._NEUTRAL.items():
            if name in values and values[name] != neutral and name not in allowed:
                raise ValueError(
                    f"{type(self).__name__}(convention={self.convention!r}): {name}={values[name]!r} in {where} is "
                    f"not available in that framework ({rule_title(self.rule)} there has: "
                    f"{', '.join(sorted(allowed)) or 'no such options'})"
                )
        problem = self._conv.check(self.rule, values)
        if problem is not None:
            raise ValueError(f"{type(self).__name__}(convention={self.convention!r}) in {where}: {problem}")

    def _bind(self, params: list) -> None:
        if params and all(isinstance(p, dict) for p in params):
            groups = params
        elif all(isinstance(p, Variable) for p in params):
            groups = [{"params": params}]
        else:
            raise TypeError(
                f"{type(self).__name__}: the first argument must be a learning rate, a list of Variables or a list "
                "of parameter-group dicts"
            )
        valid = set(self._defaults) | {"params"}
        for i, grp in enumerate(groups):
            grp = {_GROUP_ALIASES.get(k, k): v for k, v in grp.items()}
            if "betas" in grp:
                grp["beta1"], grp["beta2"] = grp.pop("betas")
            unknown = sorted(set(grp) - valid)
            if unknown:
                raise ValueError(f"parameter group {i}: unknown keys {unknown}; valid keys: {sorted(valid)}")
            if "params" not in grp:
                raise ValueError(f"parameter group {i} has no 'params'")
            variables = list(grp.pop("params"))
            if "learning_rate" in grp:
                self._check_lr(grp["learning_rate"], f"parameter group {i}: learning_rate")
            self._check_options({**self._defaults, **grp}, f"parameter group {i}")
            self._groups.append(_Group(grp, variables))
            for v in variables:
                if not isinstance(v, Variable):
                    raise TypeError(f"parameter group {i}: {type(v).__name__} is not a Variable")
                self._register(v, len(self._groups) - 1)
        if not self._states:
            raise ValueError(f"{type(self).__name__}: {self._nothing_to_train('the variable list is empty')}")

    def _nothing_to_train(self, why: str) -> str:
        quote = f" ({self._conv.framework}: {self._conv.empty!r})" if self._conv.empty else ""
        return (
            f"nothing to train: {why}{quote}. A Module registers the layers and Variables assigned as its "
            "attributes (self.fc1 = rf.nn.Dense(...)) or given to add_module / add_variable; check "
            "model.trainable_variables()"
        )

    def _resolve(self, var: Variable, group: int) -> Hyper:
        values = {**self._defaults, **self._groups[group].overrides}
        name = var.name or ""
        mult = next((f for pat, f in self.lr_multipliers.items() if re.search(pat, name)), 1.0)
        excluded = any(re.search(pat, name) for pat in self.exclude_from_weight_decay)
        fields = {f.name for f in dataclasses.fields(Hyper)}
        kw = {k: v for k, v in values.items() if k in fields}
        if excluded:
            kw["weight_decay"] = 0.0
        h = Hyper(lr_multiplier=mult, decay_excluded=excluded, decoupled=self._decoupled, **kw)
        try:  # one object per distinct value: the update prepares its scalars once per object
            return self._interned.setdefault(h, h)
        except TypeError:  # an unhashable learning-rate schedule: its own object
            return h

    def _check_registrable(self, var: Variable) -> None:
        # Names need not be unique here (layers of separate roots train together); only a
        # state saved by name needs them unique (see _by_name).
        if id(var) in self._states:
            raise ValueError(f"variable {var.name!r} is given to this optimizer twice")
        if backend.dtype_name(var.dtype) not in ("float32", "float64"):
            raise TypeError(f"variable {var.name!r} has dtype {backend.dtype_name(var.dtype)}; only floats are trained")

    def _register(self, var: Variable, group: int) -> _VarState:
        st = self._new_state(var, group)
        self._states[id(var)] = st
        return st

    def _new_state(self, var: Variable, group: int) -> _VarState:
        """A fresh state for ``var`` (checked), not yet held by the optimizer."""
        self._check_registrable(var)
        hyper = self._resolve(var, group)
        st = _VarState(var, group, hyper, {})
        xp = backend.namespace(var.data)
        for name in self._slot_list(hyper):
            if self._slot_starts(name) == "zeros":
                st.slots[name] = xp.zeros(var.data.shape, dtype=var.data.dtype)
        return st

    def _reset_powers(self) -> None:
        for grp in self._groups:
            values = {**self._defaults, **grp.overrides}
            grp.powers = (np.float32(values.get("beta1", 0.9)), np.float32(values.get("beta2", 0.999)))

    # -- subclass hooks ---------------------------------------------------------------------
    @property
    def _rule(self) -> Rule:
        """This optimizer's update rule in its convention (policies, scalars, formula)."""
        return self._rules[self.convention]

    def _slot_list(self, h: Hyper) -> tuple[str, ...]:
        return self._rule.slots(h)

    def _slot_starts(self, name: str) -> str | None:
        """How slot ``name`` starts: ``"zeros"``, or None (made by the first update)."""
        return self._rule.slot_init(name)

    def slot_names(self) -> list[str]:
        """Canonical slot names this optimizer keeps (for its resolved hyperparameters)."""
        names: list[str] = []
        hypers = [st.hyper for st in self._states.values()] or [self._resolve(Variable(np.zeros(1)), 0)]
        for h in hypers:
            for n in self._slot_list(h):
                if n not in names:
                    names.append(n)
        return names

    # -- gradients --------------------------------------------------------------------------
    def _trainable_in(self, loss: Tensor) -> list[Variable]:
        if self._bound:
            return [st.var for st in self._states.values() if st.var.trainable]
        found: list[Variable] = []
        seen: set[int] = set()
        stack = [loss]
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            if isinstance(t, Variable) and t.trainable:
                found.append(t)
            if t._node is not None:
                stack.extend(a for a in reversed(t._node[1]) if isinstance(a, Tensor))
        return found

    def compute_gradients(self, loss: Tensor | Callable[[], Tensor], var_list: Sequence[Variable] | None = None):
        """``[(gradient or None, variable)]`` of ``loss`` (a Tensor, or a function returning
        one) for ``var_list`` -- by default the bound variables, or every trainable
        Variable the loss depends on."""
        if callable(loss) and not isinstance(loss, Tensor):
            loss = loss()
        if not isinstance(loss, Tensor):
            raise TypeError(f"compute_gradients: loss must be a Tensor or a callable, got {type(loss).__name__}")
        variables = self._trainable_in(loss) if var_list is None else list(var_list)
        for v in variables:
            if not isinstance(v, Variable):
                raise TypeError(f"compute_gradients: var_list holds a {type(v).__name__}, not a Variable")
        grads = gradients(loss, variables) if variables else []
        return list(zip(grads, variables))

    def minimize(
        self,
        loss: Tensor | Callable[[], Tensor] | Mapping[Any, Sequence[Variable]],
        var_list: Sequence[Variable] | None = None,
        masks: Mapping[Variable, Any] | None = None,
    ):
        """``apply_gradients(compute_gradients(loss, var_list))``; returns the pairs of
        (gradient, variable), the gradients detached from their graph.

        With a dict ``{loss1: vars1, loss2: vars2}`` each loss is differentiated only with
        respect to its own variables and all are applied in one update; a variable under
        several losses gets the sum of their gradients (in the dict's order).
        """
        if isinstance(loss, Mapping):
            if var_list is not None:
                raise TypeError("minimize: with a dict of losses the variables come from the dict; omit var_list")
            merged: dict[int, list] = {}
            for one_loss, variables in loss.items():
                for g, v in self.compute_gradients(one_loss, list(variables)):
                    slot = merged.setdefault(id(v), [None, v])
                    if g is not None:
                        slot[0] = g if slot[0] is None else slot[0] + g
            grads_and_vars = [(g, v) for g, v in merged.values()]
            if not grads_and_vars:
                raise ValueError(f"minimize: {self._nothing_to_train('the dict of losses names no variables')}")
        else:
            grads_and_vars = self.compute_gradients(loss, var_list)
            if not grads_and_vars:
                if var_list is not None:
                    why = "var_list is empty"
                elif self._bound:
                    why = f"all {len(self._states)} variables of this optimizer are frozen (trainable=False)"
                else:
                    why = "the loss depends on no trainable Variable"
                raise ValueError(f"minimize: {self._nothing_to_train(why)}")
        # The gradients, detached from their backward graph before the update: that graph
        # holds views of the variables (a transposed weight in matmul's VJP), which would
        # keep the update from writing in place -- and it is stale once the variables change.
        grads_and_vars = [(None if g is None else _detached(g), v) for g, v in grads_and_vars]
        self.apply_gradients(grads_and_vars, masks=masks)
        return grads_and_vars

    # -- the update -------------------------------------------------------------------------
    def _lr(self, st: _VarState, x64: bool = False) -> float:
        """This step's learning rate of ``st``'s variable: a schedule evaluated at
        ``iterations`` as the convention's framework evaluates it (``x64``: JAX's float64
        mode, for optax) and checked (a finite number >= 0), times the variable's multiplier."""
        lr = self._groups[st.group].overrides.get("learning_rate", self._defaults["learning_rate"])
        if not _is_schedule(lr):
            return float(lr) * st.hyper.lr_multiplier
        raw = self._conv.schedule_value(lr, self.iterations, x64)
        try:
            value = float(raw) if not isinstance(raw, (bool, str, bytes)) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"{type(self).__name__}: the learning-rate schedule {lr!r} returned {raw!r} at step "
                f"{self.iterations} (for {st.var.name!r}); a learning rate must be a finite number >= 0 "
                "(nothing was changed)"
            )
        return value * st.hyper.lr_multiplier

    def _as_array(self, g: Any, var: Variable, what: str) -> Any:
        if type(g) is np.ndarray and type(var.data) is np.ndarray:  # the common case, checked cheaply
            return g
        if isinstance(g, Tensor):
            g = g.data
        elif not hasattr(g, "__array_namespace__"):
            g = np.asarray(g)
        if backend.backend_name(g) != var.backend:
            raise ValueError(
                f"{what} for variable {var.name!r} is on {backend.device_of(g)} ({backend.backend_name(g)}), the "
                f"variable on {var.device} ({var.backend})"
            )
        return g

    def apply_gradients(
        self, grads_and_vars: Iterable[tuple[Any, Variable]], masks: Mapping[Variable, Any] | None = None
    ) -> int:
        """One update of every variable in ``grads_and_vars``; returns ``iterations``.

        A ``None`` gradient follows the convention: torch skips the variable and its step
        count stays; keras, tf1 and optax skip it while the shared count advances.  When
        every gradient is None, Keras and TF1 refuse the step (as they do); an empty list
        is refused in every convention (nothing to train).
        ``masks={var: bool_array}``: where the mask is False the element is frozen for
        this step -- its value and every slot stay exactly as they were (the step count,
        per variable or shared, advances as usual; see docs/optim.md).
        """
        pairs = list(grads_and_vars)
        if not pairs:
            raise ValueError(f"apply_gradients: {self._nothing_to_train('no (gradient, variable) pairs')}")
        checked: list[tuple[Variable, Any]] = []
        seen: set[int] = set()
        for item in pairs:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise TypeError("apply_gradients: expected (gradient, variable) pairs")
            g, var = item
            if not isinstance(var, Variable):
                raise TypeError(f"apply_gradients: {type(var).__name__} is not a Variable")
            if id(var) in seen:
                raise ValueError(f"apply_gradients: variable {var.name!r} appears twice")
            seen.add(id(var))
            if id(var) not in self._states:
                if self._bound:
                    raise ValueError(f"apply_gradients: variable {var.name!r} is not one this optimizer was given")
                self._check_registrable(var)
            if g is not None:
                g = self._as_array(g, var, "gradient")
                if tuple(g.shape) != var.shape:
                    raise ValueError(
                        f"apply_gradients: gradient of shape {tuple(g.shape)} for variable {var.name!r} of shape "
                        f"{var.shape}"
                    )
                if g.dtype != var.dtype:
                    raise TypeError(
                        f"apply_gradients: gradient of dtype {backend.dtype_name(g.dtype)} for variable "
                        f"{var.name!r} of dtype {backend.dtype_name(var.dtype)}"
                    )
            checked.append((var, g))
        checked_masks = self._check_masks(masks, seen)
        if self._conv.no_gradients and all(g is None for _, g in checked):
            raise ValueError(
                f"apply_gradients: every gradient is None (variables {[v.name for v, _ in checked]}: the loss "
                f"depends on none of them); {self._conv.framework} refuses this step ({self._conv.no_gradients!r}); "
                "nothing changed"
            )

        # everything checked: unbound optimizers meet their new variables here (held from
        # the commit on)
        fresh = {id(var): self._new_state(var, 0) for var, _ in checked if id(var) not in self._states}
        resolved = [(self._states.get(id(var)) or fresh[id(var)], g) for var, g in checked]

        live = [(st, g) for st, g in resolved if g is not None]
        if live:
            clipped = clip_arrays(
                [g for _, g in live], self.convention, self.global_clipnorm, self.clipnorm, self.clipvalue
            )
            live = [(st, g) for (st, _), g in zip(live, clipped)]
        # optax's tree: the variables sharing one transform (group and lr multiplier, as a
        # multi_transform label would hold them) -- all bound ones, or all in this call.
        pool = self._states.values() if self._bound else [st for st, _ in resolved]
        leaves: dict[tuple, int] = {}
        for st in pool:
            key = (st.group, st.hyper.lr_multiplier)
            leaves[key] = leaves.get(key, 0) + 1
        x64 = any(st.var.data.dtype == _FLOAT64 for st in pool)  # optax: float64 needs x64 on
        rule = self._rule
        tasks, owners = [], []
        prepared: dict[tuple, tuple] = {}
        for st, g in live:
            count = st.step + 1 if rule.per_variable_count else self.iterations + 1
            lr = self._lr(st, x64)
            powers = self._groups[st.group].powers
            inplace = execute.inplace_names(st.var, st.slots, st.addresses)  # before anything else holds them
            slots = {k: v for k, v in st.slots.items() if v is not None}  # None: not made yet (torch SGD)
            present = frozenset(slots)
            nleaves = leaves[(st.group, st.hyper.lr_multiplier)]
            key = (id(st.hyper), st.var.data.dtype, lr, count, powers, nleaves, present)
            hit = prepared.get(key)
            if hit is None:
                ctx = StepContext(st.var.data.dtype, lr, count, powers, nleaves)
                hit = prepared[key] = rule.prepare(st.hyper, ctx, present)
            tasks.append(Task(st.var.data, g, slots, checked_masks.get(id(st.var)), *hit, inplace, st.addresses))
            owners.append(st)
        results = execute.run(rule, tasks)

        # commit: nothing above changed any state
        self._states.update(fresh)
        for st, out in zip(owners, results):
            st.var._commit(out.pop("p"))  # fresh arrays, or the variable's own updated in place
            st.slots.update(out)
            st.step += 1
        if rule.after_step is not None:
            rule.after_step(self)
        self.iterations += 1
        return self.iterations

    def _check_masks(self, masks: Mapping[Variable, Any] | None, seen: set[int]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for var, mask in (masks or {}).items():
            if not isinstance(var, Variable):
                raise TypeError(f"masks: key {type(var).__name__} is not a Variable")
            if id(var) not in seen:
                raise ValueError(f"masks: variable {var.name!r} is not among the gradients being applied")
            m = self._as_array(mask, var, "mask")
            if tuple(m.shape) != var.shape:
                raise ValueError(
                    f"masks: mask of shape {tuple(m.shape)} for variable {var.name!r} of shape {var.shape}"
                )
            if backend.dtype_name(m.dtype) != "bool":
                raise TypeError(
                    f"masks: mask for variable {var.name!r} has dtype {backend.dtype_name(m.dtype)}, not bool"
                )
            out[id(var)] = m
        return out

    # -- slots --------------------------------------------------------------------------------
    def _canonical(self, name: str, st: _VarState | None = None) -> str:
        canon = SLOT_ALIASES.get(name, name)
        valid = self._slot_list(st.hyper) if st is not None else tuple(self.slot_names())
        if canon not in valid:
            aliases = sorted(a for a, c in SLOT_ALIASES.items() if c in valid)
            raise KeyError(
                f"unknown slot {name!r} for {type(self).__name__}(convention={self.convention!r}); slots: "
                f"{', '.join(valid) or 'none'} (aliases: {', '.join(aliases) or 'none'})"
            )
        return canon

    def _state(self, var: Variable) -> _VarState:
        st = self._states.get(id(var))
        if st is None:
            raise KeyError(f"variable {getattr(var, 'name', None)!r} is not known to this optimizer")
        return st

    def get_slot(self, var: Variable, name: str) -> Tensor:
        """A copy of slot ``name`` ("m", "v", "v_max", "momentum", or a framework alias)
        of ``var``."""
        st = self._state(var)
        canon = self._canonical(name, st)
        value = st.slots.get(canon)
        if value is None:
            raise KeyError(
                f"slot {canon!r} of variable {var.name!r} does not exist yet: PyTorch creates the momentum buffer "
                "from the first gradient"
            )
        return Tensor(backend.namespace(value).asarray(value, copy=True))

    def set_slot(self, var: Variable, name: str, value: Any) -> None:
        """Overwrite slot ``name`` of ``var`` (same shape, dtype and device as ``var``)."""
        st = self._state(var)
        canon = self._canonical(name, st)
        arr = self._as_array(value, var, f"slot {canon!r}")
        if tuple(arr.shape) != var.shape:
            raise ValueError(
                f"set_slot: value of shape {tuple(arr.shape)} for slot {canon!r} of {var.name!r} (shape {var.shape})"
            )
        if arr.dtype != var.dtype:
            raise TypeError(
                f"set_slot: value of dtype {backend.dtype_name(arr.dtype)} for slot {canon!r} of "
                f"{var.name!r} (dtype {backend.dtype_name(var.dtype)})"
            )
        st.slots[canon] = backend.namespace(arr).asarray(arr, copy=True)

    def variables(self) -> list[Variable]:
        """The variables this optimizer holds state for, in registration order."""
        return [st.var for st in self._states.values()]

    def step_count(self, var: Variable) -> int:
        """How many updates ``var`` has received (torch's per-parameter ``step``)."""
        return self._state(var).step

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the next update depends on, keyed by variable *name*::

        {"rule", "convention", "iterations", "groups": [{"powers": [b1p, b2p]}],
         "variables": {name: {"step": int, "slots": {slot: NumPy array}}}}
        """
        self._by_name([st.var for st in self._states.values()], "state_dict")
        variables = {
            st.var.name: {"step": st.step, "slots": {k: to_numpy(v) for k, v in st.slots.items() if v is not None}}
            for st in self._states.values()
        }
        return {
            "rule": self.rule,
            "convention": self.convention,
            "iterations": self.iterations,
            "groups": [{"powers": [float(g.powers[0]), float(g.powers[1])]} for g in self._groups],
            "variables": variables,
        }

    @staticmethod
    def _by_name(variables: Sequence[Variable], what: str) -> dict[str, Variable]:
        """``{name: variable}`` for a state keyed by name; an unnamed variable or a name
        shared by two variables makes that state ambiguous, and is refused with the fix."""
        out: dict[str, Variable] = {}
        for i, var in enumerate(variables):
            if var.name is None:
                raise ValueError(
                    f"{what}: variable {i} has no name, and this state is keyed by name; give it one "
                    "(rf.Variable(..., name=...), or register it in a Module), or use torch_state_dict(), which keys "
                    "by position"
                )
            if var.name in out:
                n = sum(v.name == var.name for v in variables)
                raise ValueError(
                    f"{what}: {n} variables are named {var.name!r}, and this state is keyed by name (layers used "
                    "without a parent module are named without a prefix). Give them distinct names: put the layers "
                    "in one model -- rf.nn.Sequential([l1, l2]), or attributes of a Module (self.l1 = ...), which "
                    f"names them 'l1/{var.name}', ... -- or set each Variable's name; torch_state_dict() keys by "
                    "position and needs no names"
                )
            out[var.name] = var
        return out

    _STATE_KEYS = ("rule", "convention", "iterations", "groups", "variables")

    def load_state_dict(self, state: Mapping[str, Any], var_list: Sequence[Variable] | None = None) -> None:
        """Restore :meth:`state_dict` output.  Variables are matched by name among those
        the optimizer holds and ``var_list`` (new ones only for an unbound optimizer).

        Everything is checked before anything changes: the keys (a missing or extra one is
        an error naming it), the rule and convention, ``iterations``, the groups' running
        products, the variable names, each variable's step count and slots -- every slot
        the variable keeps must be there (torch's SGD momentum buffer may be absent: not
        created yet), none other -- and their shapes and dtypes.  The loaded slots replace
        the current ones; nothing is merged.
        """
        iterations, powers, staged = self._check_state(state, var_list)
        for var, st, slots, step in staged:  # commit: nothing below can fail
            if st is None:
                st = self._register(var, 0)
            st.slots = slots
            st.step = step
        for grp, p in zip(self._groups, powers):
            grp.powers = p
        self.iterations = iterations

    def _check_state(self, state: Any, var_list: Sequence[Variable] | None) -> tuple[int, list, list]:
        """Validate a state dict; return what :meth:`load_state_dict` commits."""
        if not isinstance(state, Mapping):
            raise ValueError(f"optimizer state must be a mapping, not {type(state).__name__}")
        _exact_keys(state, self._STATE_KEYS, "optimizer state")
        if state["rule"] != self.rule or state["convention"] != self.convention:
            raise ValueError(
                f"state is for {state['rule']!r}/{state['convention']!r}, this optimizer is "
                f"{self.rule!r}/{self.convention!r}"
            )
        iterations = _count(state["iterations"], "optimizer state: iterations")
        groups = state["groups"]
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self._groups):
            n = len(groups) if isinstance(groups, (list, tuple)) else type(groups).__name__
            raise ValueError(f"state has {n} groups, the optimizer {len(self._groups)}")
        powers = []
        for i, grp in enumerate(groups):
            what = f"optimizer state: group {i}"
            if not isinstance(grp, Mapping):
                raise ValueError(f"{what} must be a mapping, not {type(grp).__name__}")
            _exact_keys(grp, ("powers",), what)
            p = grp["powers"]
            if not (
                isinstance(p, (list, tuple))
                and len(p) == 2
                and all(_is_real(x) and math.isfinite(x) and 0 <= x <= 1 for x in p)
            ):
                raise ValueError(f"{what}: powers must be two numbers in [0, 1] (beta1^t, beta2^t), got {p!r}")
            powers.append((np.float32(p[0]), np.float32(p[1])))

        held_names = {st.var.name for st in self._states.values()}
        extra: list[Variable] = []
        for v in var_list or []:
            if not isinstance(v, Variable):
                raise TypeError(f"var_list holds a {type(v).__name__}, not a Variable")
            if id(v) in self._states or any(v is e for e in extra):
                continue
            if v.name is not None and v.name in held_names:
                raise ValueError(f"var_list: two different variables are named {v.name!r}")
            if self._bound:
                raise ValueError(f"var_list: variable {v.name!r} is not one this optimizer was given")
            self._check_registrable(v)
            extra.append(v)
        by_name = self._by_name([st.var for st in self._states.values()] + extra, "load_state_dict")
        saved = state["variables"]
        if not isinstance(saved, Mapping):
            raise ValueError(f"optimizer state: variables must be a mapping, not {type(saved).__name__}")
        unknown = [n for n in saved if n not in by_name]
        missing = [st.var.name for st in self._states.values() if st.var.name not in saved]
        if unknown or missing:
            raise ValueError(f"optimizer state does not fit: unknown variables {unknown}, missing {missing}")
        staged = []
        for name, entry in saved.items():
            what = f"state for {name!r}"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{what} must be a mapping, not {type(entry).__name__}")
            _exact_keys(entry, ("step", "slots"), what)
            step = _count(entry["step"], f"{what}: step")
            if not isinstance(entry["slots"], Mapping):
                raise ValueError(f"{what}: slots must be a mapping, not {type(entry['slots']).__name__}")
            var = by_name[name]
            st = self._states.get(id(var))
            valid = self._slot_list(st.hyper if st is not None else self._resolve(var, 0))
            slots: dict[str, Any] = {}
            given: dict[str, str] = {}
            for sname, value in entry["slots"].items():
                canon = SLOT_ALIASES.get(sname, sname)
                if canon not in valid:
                    raise ValueError(f"{what}: unknown slot {sname!r} (slots: {', '.join(valid) or 'none'})")
                if canon in given:
                    raise ValueError(f"{what}: slot {canon!r} given twice (as {given[canon]!r} and {sname!r})")
                given[canon] = sname
                slots[canon] = staged_for(var, value, f"{what}: slot {sname!r}")
            lacking = [s for s in valid if s not in slots and self._slot_starts(s) is not None]
            if lacking:
                raise ValueError(f"{what}: missing slots {lacking} (a state holds every slot the variable keeps)")
            staged.append((var, st, slots, step))
        return iterations, powers, staged

    def load_torch_state_dict(
        self, state_dict: Mapping[str, Any], var_list: Sequence[Variable] | None = None, iterations: int | None = None
    ) -> None:
        """Continue from a PyTorch SGD/Adam/AdamW ``state_dict()`` (``var_list`` in torch's
        parameter order); see :mod:`refopt.optim.torch_state`."""
        from refopt.optim.torch_state import load_torch_state_dict

        load_torch_state_dict(self, state_dict, var_list, iterations)

    def torch_state_dict(
        self, var_list: Sequence[Variable] | None = None, like: Mapping[str, Any] | None = None, to_torch: bool = False
    ) -> dict[str, Any]:
        """This optimizer's state in PyTorch's ``state_dict`` format; see
        :mod:`refopt.optim.torch_state`."""
        from refopt.optim.torch_state import torch_state_dict

        return torch_state_dict(self, var_list, like, to_torch)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` atomically as ``.npz`` + JSON (refopt.io)."""
        sd = self.state_dict()
        arrays = {f"{name}/{slot}": a for name, e in sd["variables"].items() for slot, a in e["slots"].items()}
        meta = {k: sd[k] for k in ("rule", "convention", "iterations", "groups")}
        meta["steps"] = {name: e["step"] for name, e in sd["variables"].items()}
        return write_arrays(path, arrays, STATE_KIND, STATE_SCHEMA, extra=meta)

    def load(self, path: str | Path, var_list: Sequence[Variable] | None = None) -> None:
        """Read a file written by :meth:`save` (pickle-free, checked) into this optimizer."""
        arrays, meta = read_arrays(path, STATE_KIND, (STATE_SCHEMA,))
        where = f"{STATE_KIND} file {str(path)!r}"
        check_fields(meta, where, ("rule", "convention", "iterations", "groups", "steps"))
        if not isinstance(meta["steps"], dict):
            raise FileFormatError(f"{where}: its metadata's 'steps' must map variable names to step counts")
        variables: dict[str, dict] = {n: {"step": s, "slots": {}} for n, s in meta["steps"].items()}
        for key, a in arrays.items():
            name, _, slot = key.rpartition("/")
            if name not in variables:
                raise FileFormatError(f"{where}: array {key!r} belongs to no variable of its 'steps' table")
            variables[name]["slots"][slot] = a
        self.load_state_dict(
            {**{k: meta[k] for k in ("rule", "convention", "iterations", "groups")}, "variables": variables}, var_list
        )

    # -- display --------------------------------------------------------------------------------
    def describe(self, print_fn: Callable[[str], Any] | None = print) -> str | None:
        """The resolved hyperparameters, one row per variable: passed to ``print_fn``
        (default ``print``; nothing is returned, so a REPL shows the table once), or
        returned as a string with ``print_fn=None``."""
        cols = self._describe_columns()
        rows = [["variable", "group", "learning_rate", "lr_mult", *cols, "convention"]]
        for st in self._states.values():
            lr = self._groups[st.group].overrides.get("learning_rate", self._defaults["learning_rate"])
            lr_text = repr(lr) if _is_schedule(lr) else f"{lr:g}"
            h = st.hyper
            vals = []
            for c in cols:
                v = getattr(h, c)
                text = f"{v:g}" if isinstance(v, float) else str(v)
                if c == "weight_decay" and h.decay_excluded:
                    text += " (excluded)"
                vals.append(text)
            rows.append([str(st.var.name), str(st.group), lr_text, f"{h.lr_multiplier:g}", *vals, self.convention])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"{type(self).__name__} (convention={self.convention!r}, iterations={self.iterations})"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        if len(rows) == 1:
            lines.append("(no variables yet: an unbound optimizer learns them at its first update)")
        text = "\n".join(lines)
        if print_fn is None:
            return text
        print_fn(text)
        return None

    def _describe_columns(self) -> list[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(convention={self.convention!r}, variables={len(self._states)})"
