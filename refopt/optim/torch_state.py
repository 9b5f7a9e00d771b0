"""PyTorch ``Optimizer.state_dict`` import and export (SGD, Adam, AdamW), so a training
run can move between torch and refopt mid-way.

torch keys state by parameter *position* (0, 1, ... across its groups in order); so do
these functions -- no variable names are needed, and variables with equal names are fine.
Both take ``var_list``: the refopt variables in torch's parameter order (default: the
optimizer's own order, which for a model imported with ``rf.nn.load_torch_state_dict`` is
torch's).

=================  ===============================================
torch state        refopt
=================  ===============================================
``step`` (float)   the variable's step count (``opt.step_count(var)``)
``exp_avg``        slot ``m``
``exp_avg_sq``     slot ``v``
``max_exp_avg_sq`` slot ``v_max``
``momentum_buffer`` slot ``momentum`` (``None``: not created yet)
no entry           a parameter that never had a gradient: a fresh state
=================  ===============================================

Layouts: every slot is converted exactly as its variable's weight is by
``rf.nn.TORCH_LAYOUT`` (``Linear.weight`` (out, in) -> ``Dense.kernel`` (in, out) is a
transpose, a Conv2d's OIHW -> HWIO, ...), found from the layer that owns the variable
(:func:`refopt.nn.torch_layout_of`); a variable of no such layer is taken as it is.

Importing checks that the torch groups' hyperparameters (all but ``lr``) equal the refopt
variables' resolved ones -- continuing with different betas would not continue the run
-- and sets ``iterations`` to the largest step (Adam/AdamW; give it for SGD), so a
schedule resumes where torch was.  A parameter torch holds no state for (it never had a
gradient) gets a fresh state, as in torch: step 0, zero moments, no momentum buffer.
Everything is checked before anything changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.tensor import Variable
from refopt.nn.interchange import to_torch_tensors, torch_layout_of
from refopt.optim.optimizer import Hyper, Optimizer

__all__ = ["load_torch_state_dict", "torch_state_dict"]

_SLOT_TO_TORCH = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq", "momentum": "momentum_buffer"}
_TORCH_TO_SLOT = {v: k for k, v in _SLOT_TO_TORCH.items()}


def _check(opt: Optimizer) -> None:
    if opt.convention != "torch":
        raise ValueError(f"PyTorch optimizer state fits convention='torch', not {opt.convention!r}")


def _torch_group(opt: Optimizer, h: Hyper) -> dict[str, Any]:
    """The torch param-group entries (all but lr and params) equivalent to ``h``."""
    if opt.rule == "sgd":
        return {
            "momentum": h.momentum,
            "dampening": h.dampening,
            "weight_decay": h.weight_decay,
            "nesterov": h.nesterov,
            "maximize": h.maximize,
        }
    return {
        "betas": (h.beta1, h.beta2),
        "eps": h.epsilon,
        "weight_decay": h.weight_decay,
        "amsgrad": h.amsgrad,
        "maximize": h.maximize,
    }


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.array(x)


def _variables(opt: Optimizer, var_list: Sequence[Variable] | None) -> list[Variable]:
    variables = list(var_list) if var_list is not None else opt.variables()
    seen: set[int] = set()
    for i, v in enumerate(variables):
        if not isinstance(v, Variable):
            raise TypeError(f"var_list[{i}] is a {type(v).__name__}, not a Variable")
        if id(v) in seen:
            raise ValueError(f"var_list[{i}] ({v.name!r}) appears twice")
        seen.add(id(v))
    return variables


def _layout_text(var: Variable) -> str:
    rule = torch_layout_of(var)
    return f" after '{rule.layout}'" if rule is not None else ""


def _check_torch_state(state_dict: Any) -> None:
    """The shape of a torch optimizer ``state_dict``: ``{"state": {index: {...}},
    "param_groups": [{"params": [index, ...], ...}]}``, every state index in a group."""
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"a torch optimizer state_dict is a mapping, not {type(state_dict).__name__}")
    missing = [k for k in ("state", "param_groups") if k not in state_dict]
    extra = [k for k in state_dict if k not in ("state", "param_groups")]
    if missing or extra:
        raise ValueError(f"torch optimizer state_dict: missing keys {missing}, unexpected keys {extra}")
    groups, state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, Mapping) and "params" in g for g in groups):
        raise ValueError("torch optimizer state_dict: param_groups must be a list of dicts, each with 'params'")
    seen: set[Any] = set()
    for i, g in enumerate(groups):
        if not isinstance(g["params"], (list, tuple)):
            raise ValueError(f"torch optimizer state_dict: param_groups[{i}]['params'] must be a list of indices")
        for idx in g["params"]:
            if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool):
                raise ValueError(f"torch optimizer state_dict: parameter index {idx!r} is not an int")
            if idx in seen:
                raise ValueError(f"torch optimizer state_dict: parameter index {idx} appears twice")
            seen.add(idx)
    if not isinstance(state, Mapping):
        raise ValueError(f"torch optimizer state_dict: state must be a mapping, not {type(state).__name__}")
    for idx, entry in state.items():
        if idx not in seen:
            raise ValueError(f"torch optimizer state_dict: state of parameter {idx!r}, which no param group holds")
        if not isinstance(entry, Mapping):
            raise ValueError(f"torch optimizer state_dict: state of parameter {idx} must be a mapping")


def _torch_step(value: Any, idx: Any) -> int:
    """torch's per-parameter ``step`` (a float tensor): a whole number >= 0."""
    try:
        step = float(_as_numpy(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"torch state of parameter {idx}: step {value!r} is not a number") from exc
    if not (math.isfinite(step) and step >= 0 and step == int(step)):
        raise ValueError(f"torch state of parameter {idx}: step must be a whole number >= 0, got {step!r}")
    return int(step)


def load_torch_state_dict(
    opt: Optimizer,
    state_dict: Mapping[str, Any],
    var_list: Sequence[Variable] | None = None,
    iterations: int | None = None,
) -> None:
    """Load a torch SGD/Adam/AdamW ``state_dict()`` into ``opt`` (all-or-nothing).

    ``iterations`` (what a schedule is evaluated at next) defaults to the largest
    ``step`` in an Adam/AdamW state; torch's SGD state has no step count, so for SGD it
    stays as it was unless given."""
    _check(opt)
    _check_torch_state(state_dict)
    if iterations is not None and (
        not isinstance(iterations, (int, np.integer)) or isinstance(iterations, bool) or iterations < 0
    ):
        raise ValueError(f"iterations must be a whole number >= 0, got {iterations!r}")
    variables = _variables(opt, var_list)
    groups = state_dict["param_groups"]
    indices = [i for g in groups for i in g["params"]]
    if len(indices) != len(variables):
        raise ValueError(f"the torch state has {len(indices)} parameters, var_list has {len(variables)}")
    listed = {id(v) for v in variables}
    unlisted = [st.var.name for st in opt._states.values() if id(st.var) not in listed]
    if unlisted:
        raise ValueError(f"the optimizer holds variables the torch state does not cover: {unlisted}")
    position = {idx: k for k, idx in enumerate(indices)}
    problems = []
    for g in groups:
        for idx in g["params"]:
            var = variables[position[idx]]
            st = opt._states.get(id(var))
            hyper = st.hyper if st is not None else opt._resolve(var, 0)
            mine = _torch_group(opt, hyper)
            theirs = {k: (tuple(g[k]) if k == "betas" else g[k]) for k in mine if k in g}
            diff = {k: (theirs[k], mine[k]) for k in theirs if theirs[k] != mine[k]}
            if diff:
                problems.append(
                    f"{var.name!r}: " + ", ".join(f"{k} torch={a!r} refopt={b!r}" for k, (a, b) in diff.items())
                )
    if problems:
        raise ValueError("torch hyperparameters differ from the refopt optimizer's: " + "; ".join(problems))

    torch_state = state_dict.get("state", {})
    staged = []
    for idx in indices:
        var = variables[position[idx]]
        old = opt._states.get(id(var))
        st = old if old is not None else opt._new_state(var, 0)  # a new one is held from the commit on
        valid = opt._slot_list(st.hyper)
        tstate = torch_state.get(idx) or {}
        unknown = [k for k in tstate if k != "step" and k not in _TORCH_TO_SLOT]
        if unknown:
            raise ValueError(f"torch state of parameter {idx} has unknown entries {unknown}")
        rule = torch_layout_of(var)
        slots: dict[str, Any] = {}
        for name in valid:
            value = tstate.get(_SLOT_TO_TORCH[name])
            if value is None:
                if tstate and opt.rule != "sgd":
                    raise ValueError(f"torch state of parameter {idx} ({var.name!r}) lacks {_SLOT_TO_TORCH[name]!r}")
                # no state yet (or SGD's buffer not created): torch starts from zeros / a copy of the gradient
                slots[name] = (
                    backend.namespace(var.data).zeros(var.data.shape, dtype=var.data.dtype)
                    if opt._slot_starts(name) == "zeros"
                    else None
                )
                continue
            arr = _as_numpy(value)
            if rule is not None:
                try:
                    arr = rule.to_refopt(arr)
                except ValueError as exc:
                    raise ValueError(f"torch state of parameter {idx}: {_SLOT_TO_TORCH[name]!r}: {exc}") from None
            if arr.shape != var.shape or backend.dtype_name(arr.dtype) != backend.dtype_name(var.dtype):
                raise ValueError(
                    f"torch state of parameter {idx}: {_SLOT_TO_TORCH[name]!r} is "
                    f"{backend.dtype_name(arr.dtype)}{arr.shape}{_layout_text(var)}, the variable {var.name!r} "
                    f"{backend.dtype_name(var.dtype)}{var.shape}"
                )
            slots[name] = backend.move(arr, var.backend)
        extra = [k for k in tstate if k != "step" and _TORCH_TO_SLOT[k] not in valid and tstate[k] is not None]
        if extra:
            raise ValueError(
                f"torch state of parameter {idx} ({var.name!r}) has {extra}, which this optimizer does not keep "
                f"(its slots: {', '.join(_SLOT_TO_TORCH[n] for n in valid) or 'none'})"
            )
        if "step" in tstate:
            step = _torch_step(tstate["step"], idx)
        elif not tstate:
            step = 0  # never stepped in torch
        else:  # SGD: torch keeps no count; refopt's torch SGD does not use one
            step = old.step if old is not None else 0
        staged.append((var, st, slots, step))

    # commit: everything above is checked
    for var, st, slots, step in staged:
        opt._states[id(var)] = st
        st.slots = slots
        st.step = step
    if iterations is not None:
        opt.iterations = int(iterations)
    elif opt.rule != "sgd":
        opt.iterations = max([step for *_, step in staged], default=0)


def torch_state_dict(
    opt: Optimizer,
    var_list: Sequence[Variable] | None = None,
    like: Mapping[str, Any] | None = None,
    to_torch: bool = False,
) -> dict[str, Any]:
    """``opt``'s state in torch's ``state_dict`` format (``var_list`` in torch's order).

    Slots are converted to torch's layout as the weights are (``rf.nn.TORCH_LAYOUT``);
    a parameter that has never been updated (or SGD's without a momentum buffer) has no
    entry, as in torch.  ``like``: a torch ``state_dict`` whose ``param_groups`` are
    copied (with its ``params`` lists); otherwise one group per refopt group.
    ``to_torch=True`` returns CPU tensors, ready for ``torch_optimizer.load_state_dict``;
    else NumPy arrays.
    """
    _check(opt)
    variables = _variables(opt, var_list)
    state: dict[int, dict[str, Any]] = {}
    for i, var in enumerate(variables):
        st = opt._state(var)
        rule = torch_layout_of(var)
        entry: dict[str, Any] = {}
        for slot, value in st.slots.items():
            if value is not None:
                arr = _as_numpy(value)
                entry[_SLOT_TO_TORCH[slot]] = rule.to_torch(arr) if rule is not None else arr
        if opt.rule == "sgd":
            if entry:  # torch's SGD keeps a buffer (and nothing else) once one exists
                state[i] = entry
        elif st.step > 0:  # torch creates Adam's state at a parameter's first step
            state[i] = {"step": np.array(float(st.step), dtype=np.float32), **entry}
    if like is not None:
        groups = [dict(g) for g in like["param_groups"]]
        n = sum(len(g["params"]) for g in groups)
        if n != len(variables):
            raise ValueError(f"like has {n} parameters, var_list {len(variables)}")
    else:
        groups = []
        for gi in range(len(opt._groups)):
            members = [i for i, v in enumerate(variables) if opt._state(v).group == gi]
            if members:
                h = opt._state(variables[members[0]]).hyper
                groups.append(
                    {"lr": opt._lr(opt._state(variables[members[0]])), **_torch_group(opt, h), "params": members}
                )
    if to_torch:
        state = {i: to_torch_tensors(e) for i, e in state.items()}
    return {"state": state, "param_groups": groups}
