"""PyTorch ``Optimizer.state_dict`` import and export (SGD, Adam, AdamW), so a training
run can move between torch and refopt mid-way.

torch keys state by parameter *position* (0, 1, ... across its groups in order); refopt
keys it by variable *name*.  Both functions therefore take ``var_list``: the refopt
variables in torch's parameter order (default: the optimizer's own order).

=================  ===============================================
torch state        refopt
=================  ===============================================
``step`` (float)   the variable's step count (``opt.step_count(var)``)
``exp_avg``        slot ``m``
``exp_avg_sq``     slot ``v``
``max_exp_avg_sq`` slot ``v_max``
``momentum_buffer`` slot ``momentum`` (``None``: not created yet)
=================  ===============================================

Importing checks that the torch groups' hyperparameters (all but ``lr``) equal the refopt
variables' resolved ones -- continuing with different betas would not continue the run
-- and sets ``iterations`` to the largest step (Adam/AdamW; give it for SGD), so a
schedule resumes where torch was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.tensor import Variable
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
    variables = list(var_list) if var_list is not None else opt.variables()
    groups = state_dict["param_groups"]
    indices = [i for g in groups for i in g["params"]]
    if len(indices) != len(variables):
        raise ValueError(f"the torch state has {len(indices)} parameters, var_list has {len(variables)}")
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
    entries: dict[str, dict[str, Any]] = {}
    for idx in indices:
        var = variables[position[idx]]
        if var.name is None:
            raise ValueError(f"variable at position {position[idx]} has no name")
        tstate = state_dict["state"].get(idx, {})
        if not tstate and opt.rule != "sgd":  # torch makes Adam's state at a parameter's first step
            st = opt._states.get(id(var))
            fresh = opt._slot_list(st.hyper if st is not None else opt._resolve(var, 0))
            zeros = np.zeros(var.shape, backend.dtype_name(var.dtype))
            entries[var.name] = {"step": 0, "slots": {s: zeros for s in fresh}}
            continue
        slots = {}
        for key, value in tstate.items():
            if key == "step" or value is None:
                continue
            if key not in _TORCH_TO_SLOT:
                raise ValueError(f"torch state of parameter {idx} has an unknown entry {key!r}")
            slots[_TORCH_TO_SLOT[key]] = _as_numpy(value)
        step = _torch_step(tstate["step"], idx) if "step" in tstate else None
        entries[var.name] = {"step": step, "slots": slots}
    sd = opt.state_dict()
    for name, e in entries.items():
        if e["step"] is None:  # SGD: no count in torch's state; refopt's torch SGD does not use one
            e["step"] = sd["variables"].get(name, {}).get("step", 0)
    sd["variables"] = {**{k: v for k, v in sd["variables"].items() if k in entries}, **entries}
    if iterations is not None:
        sd["iterations"] = int(iterations)
    elif opt.rule != "sgd":
        sd["iterations"] = max([e["step"] for e in entries.values()], default=0)
    opt.load_state_dict(sd, var_list=variables)


def torch_state_dict(
    opt: Optimizer,
    var_list: Sequence[Variable] | None = None,
    like: Mapping[str, Any] | None = None,
    to_torch: bool = False,
) -> dict[str, Any]:
    """``opt``'s state in torch's ``state_dict`` format (``var_list`` in torch's order).

    ``like``: a torch ``state_dict`` whose ``param_groups`` are copied (with its
    ``params`` lists); otherwise one group per refopt group.  ``to_torch=True`` returns
    tensors, ready for ``torch_optimizer.load_state_dict``; else NumPy arrays.
    """
    _check(opt)
    variables = list(var_list) if var_list is not None else opt.variables()
    state: dict[int, dict[str, Any]] = {}
    for i, var in enumerate(variables):
        st = opt._state(var)
        if st.step == 0 and opt.rule != "sgd":
            continue  # torch creates state at a parameter's first step
        entry: dict[str, Any] = {}
        if opt.rule != "sgd":
            entry["step"] = np.array(float(st.step), dtype=np.float32)
        for slot, value in st.slots.items():
            entry[_SLOT_TO_TORCH[slot]] = _as_numpy(value) if value is not None else None
        if opt.rule == "sgd" and "momentum" in opt._slot_list(st.hyper) and "momentum_buffer" not in entry:
            entry["momentum_buffer"] = None
        if entry:
            state[i] = entry
    if like is not None:
        groups = [dict(g) for g in like["param_groups"]]
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
        import torch

        state = {i: {k: (None if v is None else torch.tensor(v)) for k, v in e.items()} for i, e in state.items()}
    return {"state": state, "param_groups": groups}
