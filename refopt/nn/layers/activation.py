"""Activation, dropout and reshaping layers (no variables)."""

from __future__ import annotations

from typing import Any

import numpy as np

from refopt import backend
from refopt.autodiff.tensor import Tensor
from refopt.nn import init as initializers
from refopt.nn.module import Module
from refopt.ops.elementwise import gelu, relu, sigmoid, tanh
from refopt.ops.nn import dropout
from refopt.ops.shape import _as_tensor, reshape


class ReLU(Module):
    def forward(self, x: Any) -> Tensor:
        return relu(x)


class Tanh(Module):
    def forward(self, x: Any) -> Tensor:
        return tanh(x)


class Sigmoid(Module):
    def forward(self, x: Any) -> Tensor:
        return sigmoid(x)


class GELU(Module):
    """``approximate="none"`` (erf form) or ``"tanh"``; see :func:`refopt.gelu`."""

    def __init__(self, approximate: str = "none", name: str | None = None) -> None:
        super().__init__(name)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Any) -> Tensor:
        return gelu(x, approximate=self.approximate)


class Flatten(Module):
    """Keep the first (batch) axis, flatten the rest (C order: NCHW flattens as C, H, W)."""

    def forward(self, x: Any) -> Tensor:
        x = _as_tensor(x)
        return reshape(x, (x.shape[0], -1))


class Dropout(Module):
    """Zero each element with probability ``rate`` while ``training`` (scale the rest by
    1/(1-rate)); the identity in ``eval()`` mode.  Masks come from a host generator
    seeded by ``seed`` (None: drawn from refopt's global initialiser generator), which
    advances with every call."""

    def __init__(self, rate: float, seed: int | np.random.Generator | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        if seed is None:
            seed = int(initializers._rng(None).integers(2**63))
        self._rng = backend.host_rng(seed)

    def forward(self, x: Any, training: bool | None = None) -> Tensor:
        if not (self.training if training is None else training) or self.rate == 0.0:
            return dropout(x, 0.0, self._rng)  # the identity (a Variable comes back as a Tensor)
        return dropout(x, self.rate, self._rng)
