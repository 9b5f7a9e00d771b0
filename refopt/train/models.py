"""The models ``refopt train`` builds: an MLP and a small CNN, as ``rf.nn.Sequential``.

Both draw their initial weights, layer by layer in order, from one NumPy generator
(``seed``: an int or a ``numpy.random.Generator``), so the same seed gives the same
weights on every backend.  Kernels are Glorot-uniform, biases zero.

* ``mlp``: ``flatten -> [Dense(h_i) -> ReLU]* -> Dense(classes)``; variables
  ``fc1/kernel``, ``fc1/bias``, ..., the last layer ``fc{len(hidden)+1}``.
* ``cnn``: ``[Conv2D(c_i, 3x3, "same") -> ReLU -> MaxPool2D(2)]* -> flatten ->
  Dense(classes)`` on NHWC images; variables ``conv1/...``, ..., ``fc/...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from refopt.nn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential

__all__ = ["MODELS", "mlp", "cnn", "build_model"]

MODELS = ("mlp", "cnn")


def _widths(values: Sequence[int], what: str) -> list[int]:
    out = [int(v) for v in values]
    if any(v <= 0 for v in out):
        raise ValueError(f"{what} must be positive integers, got {list(values)}")
    return out


def mlp(
    input_shape: Sequence[int],
    num_classes: int,
    hidden: Sequence[int] = (128,),
    dtype: str = "float32",
    seed: int | np.random.Generator = 0,
) -> Sequential:
    """A multilayer perceptron on flattened inputs: ``logits = fc_L(relu(...relu(fc_1(x))))``."""
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    widths = _widths(hidden, "mlp: hidden layer widths")
    layers: list[Any] = [Flatten()]
    prev = int(np.prod(input_shape))
    for i, h in enumerate(widths, start=1):
        layers += [Dense(prev, h, name=f"fc{i}", dtype=dtype, seed=rng), ReLU()]
        prev = h
    layers.append(Dense(prev, int(num_classes), name=f"fc{len(widths) + 1}", dtype=dtype, seed=rng))
    return Sequential(layers, name="mlp")


def cnn(
    input_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (16, 32),
    dtype: str = "float32",
    seed: int | np.random.Generator = 0,
) -> Sequential:
    """A small convolutional net on NHWC images of shape ``(H, W, C)``: per entry of
    ``channels`` a 3x3 "same" convolution, ReLU and 2x2 max pooling, then one Dense layer."""
    if len(input_shape) != 3:
        raise ValueError(
            f"cnn: needs images, examples of shape (height, width[, channels]); got examples of shape "
            f"{tuple(input_shape)} (use --model mlp, or give x as (examples, height, width[, channels]))"
        )
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    widths = _widths(channels, "cnn: channel counts")
    h, w, c = (int(s) for s in input_shape)
    layers: list[Any] = []
    for i, out in enumerate(widths, start=1):
        if h < 2 or w < 2:
            raise ValueError(
                f"cnn: {len(widths)} pooling stages need images of at least {2 ** len(widths)}x{2 ** len(widths)}; "
                f"got {input_shape[0]}x{input_shape[1]}"
            )
        layers += [Conv2D(c, out, 3, padding="same", name=f"conv{i}", dtype=dtype, seed=rng), ReLU(), MaxPool2D(2)]
        h, w, c = h // 2, w // 2, out
    layers += [Flatten(), Dense(h * w * c, int(num_classes), name="fc", dtype=dtype, seed=rng)]
    return Sequential(layers, name="cnn")


def build_model(
    kind: str,
    input_shape: Sequence[int],
    num_classes: int,
    hidden: Sequence[int] = (128,),
    channels: Sequence[int] = (16, 32),
    dtype: str = "float32",
    seed: int | np.random.Generator = 0,
) -> Sequential:
    """``mlp(...)`` or ``cnn(...)`` by name."""
    if kind == "mlp":
        return mlp(input_shape, num_classes, hidden, dtype, seed)
    if kind == "cnn":
        return cnn(input_shape, num_classes, channels, dtype, seed)
    raise ValueError(f"unknown model {kind!r}; choose from {', '.join(MODELS)}")
