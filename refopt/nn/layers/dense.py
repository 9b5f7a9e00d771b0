"""Dense: y = x @ kernel + bias, kernel of shape (in_features, out_features)."""

from __future__ import annotations

from typing import Any

import numpy as np

from refopt.autodiff.tensor import Tensor
from refopt.nn.module import Module
from refopt.ops.shape import _as_tensor


class Dense(Module):
    """Fully connected layer: ``y = x @ kernel + bias`` over the last axis of ``x``.

    ``kernel`` is in x out (TensorFlow's layout; ``torch.nn.Linear.weight`` is out x in,
    its transpose).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        use_bias: bool = True,
        name: str | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        dtype: Any = "float32",
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(name)
        self.in_features, self.out_features, self.use_bias = int(in_features), int(out_features), bool(use_bias)
        self.kernel = self.add_variable(
            "kernel", kernel_initializer, (self.in_features, self.out_features), dtype, seed=seed
        )
        self.bias = self.add_variable("bias", bias_initializer, (self.out_features,), dtype) if use_bias else None

    def forward(self, x: Any) -> Tensor:
        x = _as_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Dense {self.path or self.name!r}: input has shape {x.shape}, expected {self.in_features} "
                "features on the last axis"
            )
        y = x @ self.kernel
        return y + self.bias if self.bias is not None else y
