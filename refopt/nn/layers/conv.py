"""Conv2D and pooling layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from refopt.autodiff.tensor import Tensor
from refopt.nn.module import Module
from refopt.ops.nn import _pair, avg_pool2d, conv2d, max_pool2d
from refopt.ops.shape import reshape


class Conv2D(Module):
    """2-D convolution with ``kernel`` of shape (kh, kw, in, out) -- HWIO, TensorFlow's
    layout (``torch.nn.Conv2d.weight`` is OIHW: ``kernel = weight.transpose(2, 3, 1, 0)``)
    -- and ``bias`` of shape (out,).  See :func:`refopt.conv2d` for padding and layouts.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: Any = "valid",
        data_format: str = "NHWC",
        use_bias: bool = True,
        name: str | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        dtype: Any = "float32",
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(name)
        if data_format not in ("NHWC", "NCHW"):
            raise ValueError(f"Conv2D: data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
        kh, kw = _pair(kernel_size, "kernel_size", "Conv2D")
        self.strides, self.padding, self.data_format = strides, padding, data_format
        self.kernel = self.add_variable(
            "kernel", kernel_initializer, (kh, kw, int(in_channels), int(out_channels)), dtype, seed=seed
        )
        self.bias = self.add_variable("bias", bias_initializer, (int(out_channels),), dtype) if use_bias else None

    def forward(self, x: Any) -> Tensor:
        y = conv2d(x, self.kernel, self.strides, self.padding, self.data_format)
        if self.bias is None:
            return y
        b = self.bias if self.data_format == "NHWC" else reshape(self.bias, (-1, 1, 1))
        return y + b


class _Pool2D(Module):
    _fn = staticmethod(max_pool2d)

    def __init__(
        self,
        pool_size: Any = 2,
        strides: Any = None,
        padding: Any = "valid",
        data_format: str = "NHWC",
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.args = (pool_size, strides, padding, data_format)

    def forward(self, x: Any) -> Tensor:
        return self._fn(x, *self.args)


class MaxPool2D(_Pool2D):
    """:func:`refopt.max_pool2d` as a layer."""

    _fn = staticmethod(max_pool2d)


class AvgPool2D(_Pool2D):
    """:func:`refopt.avg_pool2d` as a layer."""

    _fn = staticmethod(avg_pool2d)
