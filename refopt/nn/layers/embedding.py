"""Embedding: rows of a (num, dim) table looked up by integer ids."""

from __future__ import annotations

from typing import Any

import numpy as np

from refopt.autodiff.tensor import Tensor
from refopt.nn.module import Module
from refopt.ops.shape import take


class Embedding(Module):
    """``y[..., :] = embeddings[ids[...], :]``; the gradient sums over repeated ids.
    Ids must lie in ``[0, num)`` (checked on every backend)."""

    def __init__(
        self,
        num: int,
        dim: int,
        name: str | None = None,
        initializer: Any = "normal",
        dtype: Any = "float32",
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(name)
        self.num, self.dim = int(num), int(dim)
        self.embeddings = self.add_variable("embeddings", initializer, (self.num, self.dim), dtype, seed=seed)

    def forward(self, ids: Any) -> Tensor:
        return take(self.embeddings, ids, axis=0)
