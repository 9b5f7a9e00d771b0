"""PyTorch weight interchange: a ``state_dict`` (as NumPy arrays) into the equivalent
refopt model, and back (as NumPy arrays, or torch tensors with ``to_torch=True``), so that
refopt and torch can start from identical weights.

The layouts, spelled out (``TORCH_LAYOUT``), torch parameter -> refopt variable:

* ``nn.Linear.weight`` (out, in) -> ``Dense.kernel`` (in, out) = ``weight.T``
* ``nn.Conv2d.weight`` OIHW -> ``Conv2D.kernel`` HWIO = ``weight.transpose(2, 3, 1, 0)``
* ``nn.Embedding.weight`` -> ``Embedding.embeddings`` (num, dim), unchanged
* ``nn.LayerNorm.weight`` / ``bias`` -> ``LayerNorm.gamma`` / ``beta``, unchanged
* every ``bias`` -> ``bias`` (out,), unchanged

Layers are paired in order: the refopt model's modules that own variables (depth first,
registration order) with the torch state dict's parameter prefixes (``"0"``, ``"2"``,
``"encoder.fc"``...) in the order they appear -- or explicitly with ``module_map``
(``{torch_prefix: refopt_module_path}``).  Every array is checked (shape and dtype)
before any variable changes; a torch key nothing consumes is an error.

A conv net's flatten order follows its data layout: a torch conv net flattens NCHW
(channel, row, column), so build its refopt twin with ``data_format="NCHW"``.

Optimizer state follows the same table: :func:`torch_layout_of` gives a variable's
conversion (from the layer that owns it), which ``Optimizer.load_torch_state_dict`` and
``Optimizer.torch_state_dict`` apply to every slot (``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``, ``momentum_buffer``) exactly as to the weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from refopt.autodiff.tensor import Variable, to_numpy
from refopt.nn.layers import Conv2D, Dense, Embedding, LayerNorm
from refopt.nn.module import CheckpointError, Module, owner_of

__all__ = ["TORCH_LAYOUT", "load_torch_state_dict", "export_torch_state_dict", "torch_layout_of"]


@dataclass(frozen=True)
class TorchParam:
    torch: str
    refopt: str
    layout: str
    to_refopt: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


def _same(a: np.ndarray) -> np.ndarray:
    return np.array(a)


def _transpose(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def _oihw_to_hwio(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(2, 3, 1, 0))


def _hwio_to_oihw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(3, 2, 0, 1))


_BIAS = TorchParam("bias", "bias", "same (out,)", _same, _same)
TORCH_LAYOUT: dict[type, tuple[TorchParam, ...]] = {
    Dense: (
        TorchParam(
            "weight", "kernel", "Linear.weight (out, in) -> kernel = weight.T (in, out)", _transpose, _transpose
        ),
        _BIAS,
    ),
    Conv2D: (
        TorchParam(
            "weight",
            "kernel",
            "Conv2d.weight OIHW -> kernel HWIO = weight.transpose(2, 3, 1, 0)",
            _oihw_to_hwio,
            _hwio_to_oihw,
        ),
        _BIAS,
    ),
    Embedding: (TorchParam("weight", "embeddings", "same (num, dim)", _same, _same),),
    LayerNorm: (TorchParam("weight", "gamma", "same", _same, _same), TorchParam("bias", "beta", "same", _same, _same)),
}


def torch_layout_of(var: Variable) -> TorchParam | None:
    """The ``TORCH_LAYOUT`` entry of ``var`` -- found from the layer that owns it (a
    ``Dense``'s ``kernel``, ...) -- or None for a variable with no torch layout (a free
    Variable, or one of a module type not in the table), which is taken as it is."""
    owner = owner_of(var)
    if owner is None:
        return None
    module, local = owner
    return next((rule for rule in TORCH_LAYOUT.get(type(module), ()) if rule.refopt == local), None)


def to_torch_tensors(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """NumPy arrays -> CPU torch tensors (None stays None); torch is imported here, lazily."""
    import torch

    return {k: None if a is None else torch.from_numpy(np.ascontiguousarray(a)) for k, a in arrays.items()}


def _torch_prefixes(keys: Sequence[str]) -> list[str]:
    out: list[str] = []
    for k in keys:
        prefix = k.rsplit(".", 1)[0] if "." in k else ""
        if prefix not in out:
            out.append(prefix)
    return out


def _pairs(model: Module, keys: Sequence[str], module_map: Mapping[str, str] | None) -> list[tuple[str, Module]]:
    layers = [m for m in model.modules() if m._variables]
    for m in layers:
        if type(m) not in TORCH_LAYOUT:
            raise CheckpointError(
                f"module {m.path or m.name!r} ({type(m).__name__}) has no PyTorch layout; known: "
                f"{', '.join(t.__name__ for t in TORCH_LAYOUT)}"
            )
    prefixes = _torch_prefixes(keys)
    if module_map is not None:
        by_path = {m.path: m for m in layers}
        pairs = []
        for tp, rp in module_map.items():
            if rp not in by_path:
                raise CheckpointError(f"module_map: refopt module {rp!r} not found (have {list(by_path)})")
            if tp not in prefixes:
                raise CheckpointError(f"module_map: torch prefix {tp!r} not found (have {prefixes})")
            pairs.append((tp, by_path[rp]))
        return pairs
    if len(prefixes) != len(layers):
        raise CheckpointError(
            f"the torch state dict has {len(prefixes)} parameterised modules {prefixes}, the refopt model has "
            f"{len(layers)} {[m.path for m in layers]}; pair them with module_map"
        )
    return list(zip(prefixes, layers))


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def load_torch_state_dict(
    model: Module, state_dict: Mapping[str, Any], module_map: Mapping[str, str] | None = None
) -> None:
    """Load a PyTorch ``state_dict`` (NumPy arrays, or CPU tensors) into ``model``,
    converting each layout by ``TORCH_LAYOUT``.  All-or-nothing."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"a torch state_dict is a mapping of names to arrays, not {type(state_dict).__name__}")
    keys = list(state_dict)
    used: set[str] = set()
    staged: dict[str, np.ndarray] = {}
    for prefix, layer in _pairs(model, keys, module_map):
        for rule in TORCH_LAYOUT[type(layer)]:
            var = layer._variables.get(rule.refopt)
            tkey = _key(prefix, rule.torch)
            if var is None:
                if tkey in state_dict:
                    raise CheckpointError(
                        f"torch key {tkey!r} has no counterpart: {layer.path!r} has no {rule.refopt!r}"
                    )
                continue
            if tkey not in state_dict:
                raise CheckpointError(f"torch key {tkey!r} (for {var.name!r}) is missing from the state dict")
            try:
                arr = rule.to_refopt(np.asarray(to_numpy(state_dict[tkey])))
            except Exception as exc:  # not an array, or one the layout cannot take (wrong rank)
                raise CheckpointError(
                    f"torch key {tkey!r} cannot become {var.name!r} by '{rule.layout}': {exc}"
                ) from exc
            if arr.shape != var.shape:
                raise CheckpointError(
                    f"torch key {tkey!r} gives shape {arr.shape} after '{rule.layout}', "
                    f"but {var.name!r} has {var.shape}"
                )
            staged[var.name] = arr
            used.add(tkey)
    unused = [k for k in keys if k not in used]
    if unused:
        raise CheckpointError(f"torch keys with no refopt counterpart: {unused}")
    model.load_state_dict(staged)


def export_torch_state_dict(
    model: Module,
    like: Mapping[str, Any] | Sequence[str],
    module_map: Mapping[str, str] | None = None,
    to_torch: bool = False,
) -> dict[str, Any]:
    """``model``'s weights in PyTorch layout under the keys of ``like`` (the torch
    model's ``state_dict()`` or its keys), in that order: NumPy arrays, or CPU torch
    tensors with ``to_torch=True`` -- what ``torch_model.load_state_dict`` accepts."""
    keys = list(like)
    out: dict[str, np.ndarray] = {}
    for prefix, layer in _pairs(model, keys, module_map):
        for rule in TORCH_LAYOUT[type(layer)]:
            var = layer._variables.get(rule.refopt)
            if var is not None:
                out[_key(prefix, rule.torch)] = rule.to_torch(to_numpy(var))
    missing = [k for k in keys if k not in out]
    if missing:
        raise CheckpointError(f"torch keys the refopt model cannot fill: {missing}")
    ordered = {k: out[k] for k in keys}
    return to_torch_tensors(ordered) if to_torch else ordered
