"""LayerNorm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from refopt.autodiff.tensor import Tensor
from refopt.nn.module import Module
from refopt.ops.elementwise import sqrt
from refopt.ops.reduction import mean
from refopt.ops.shape import _as_tensor


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` axes, then scale and shift:

        y = (x - mean(x)) / sqrt(var(x) + epsilon) * gamma + beta

    with the biased variance (divide by n), as PyTorch, TensorFlow and BERT do.
    ``epsilon`` defaults to 1e-5 (PyTorch; Keras uses 1e-3, BERT 1e-12).
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        epsilon: float = 1e-5,
        name: str | None = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__(name)
        shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(map(int, normalized_shape))
        self.normalized_shape, self.epsilon = shape, float(epsilon)
        self.gamma = self.add_variable("gamma", "ones", shape, dtype)
        self.beta = self.add_variable("beta", "zeros", shape, dtype)

    def forward(self, x: Any) -> Tensor:
        x = _as_tensor(x)
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k :] != self.normalized_shape:
            raise ValueError(
                f"LayerNorm {self.path or self.name!r}: input shape {x.shape} does not end in {self.normalized_shape}"
            )
        axes = tuple(range(x.ndim - k, x.ndim))
        centred = x - mean(x, axes, keepdims=True)
        var = mean(centred * centred, axes, keepdims=True)
        return centred / sqrt(var + self.epsilon) * self.gamma + self.beta
