"""Sequential: layers applied in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from refopt.autodiff.functional import identity
from refopt.autodiff.tensor import Variable
from refopt.nn.module import Module


class Sequential(Module):
    """``y = layers[-1](...layers[1](layers[0](x)))``.

    Layers keep their own names; a default (class-derived) name that is taken gets a
    suffix, Keras style: ``dense``, ``dense_1``, ``dense_2``.  Two layers given the same
    explicit name are refused.
    """

    def __init__(self, layers: Iterable[Module] = (), name: str | None = None) -> None:
        super().__init__(name)
        self.layers: list[Module] = []
        for layer in layers:
            self.append(layer)

    def append(self, layer: Module) -> Module:
        self.add_module(layer)  # a taken default name gets a suffix; a taken explicit name is refused
        self.layers.append(layer)
        return layer

    def forward(self, x: Any) -> Any:
        if not self.layers:
            return identity(x) if isinstance(x, Variable) else x  # never the variable itself
        for layer in self.layers:
            x = layer(x)
        return x
