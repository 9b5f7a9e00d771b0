"""Losses.  Each returns per-example values unless told otherwise: ``reduction`` is
``"none"`` (the default), ``"sum"`` or ``"mean"`` -- always explicit, never implied.

Cross-entropies are computed from logits in stable forms: finite for logits of +-1e4.
"""

from __future__ import annotations

from typing import Any

from refopt import backend
from refopt.autodiff.tensor import Tensor
from refopt.ops.elementwise import exp, log1p, where
from refopt.ops.nn import log_softmax
from refopt.ops.reduction import mean, sum
from refopt.ops.shape import _as_tensor, one_hot

__all__ = [
    "sparse_softmax_cross_entropy",
    "softmax_cross_entropy",
    "sigmoid_cross_entropy",
    "mean_squared_error",
    "l2_loss",
]

_REDUCTIONS = ("none", "sum", "mean")


def _reduce(per_example: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return sum(per_example)
    if reduction == "mean":
        return mean(per_example)
    raise ValueError(f"refopt.nn.losses.{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_pair(labels: Tensor, logits: Tensor, op: str) -> None:
    if labels.shape != logits.shape:
        raise ValueError(f"refopt.nn.losses.{op}: labels shape {labels.shape} != logits shape {logits.shape}")


def sparse_softmax_cross_entropy(labels: Any, logits: Any, reduction: str = "none") -> Tensor:
    """``-log softmax(logits)[label]`` per example, as
    ``tf.nn.sparse_softmax_cross_entropy_with_logits``.

    ``labels``: integer class ids of shape ``logits.shape[:-1]``, in ``[0, classes)``.
    Computed as ``-sum(one_hot(labels) * log_softmax(logits))``; the gradient with
    respect to the logits is ``softmax(logits) - one_hot(labels)``.
    """
    logits = _as_tensor(logits)
    lab = _as_tensor(labels)
    if backend.dtype_name(lab.dtype) not in ("int32", "int64", "int16", "int8", "uint8"):
        raise TypeError(f"refopt.nn.losses.sparse_softmax_cross_entropy: labels must be integers, got {lab.dtype}")
    if lab.shape != logits.shape[:-1]:
        raise ValueError(
            f"refopt.nn.losses.sparse_softmax_cross_entropy: labels shape {lab.shape} does not match logits "
            f"shape {logits.shape} without its class axis"
        )
    n = logits.shape[-1]
    if lab.size:
        xp = backend.namespace(lab.data)
        lo, hi = int(xp.min(lab.data)), int(xp.max(lab.data))
        if lo < 0 or hi >= n:
            raise ValueError(
                f"refopt.nn.losses.sparse_softmax_cross_entropy: label {lo if lo < 0 else hi} is outside [0, {n})"
            )
    target = one_hot(lab, n, dtype=backend.dtype_name(logits.dtype))
    per = -sum(target * log_softmax(logits, axis=-1), axis=-1)
    return _reduce(per, reduction, "sparse_softmax_cross_entropy")


def softmax_cross_entropy(labels: Any, logits: Any, reduction: str = "none") -> Tensor:
    """``-sum(labels * log_softmax(logits), axis=-1)`` per example (labels: a
    distribution over the last axis), as ``tf.nn.softmax_cross_entropy_with_logits``."""
    logits, labels = _as_tensor(logits), _as_tensor(labels)
    _check_pair(labels, logits, "softmax_cross_entropy")
    return _reduce(-sum(labels * log_softmax(logits, axis=-1), axis=-1), reduction, "softmax_cross_entropy")


def sigmoid_cross_entropy(labels: Any, logits: Any, reduction: str = "none") -> Tensor:
    """Elementwise ``-z log(sigmoid(x)) - (1-z) log(1-sigmoid(x))``, in TensorFlow's
    stable form ``max(x, 0) - x z + log(1 + exp(-|x|))``, with the max and |x| written
    as ``where(x >= 0, ...)`` so that the gradient at x = 0 is ``sigmoid(0) - z``."""
    logits, labels = _as_tensor(logits), _as_tensor(labels)
    _check_pair(labels, logits, "sigmoid_cross_entropy")
    pos = logits >= 0.0
    relu_part = where(pos, logits, 0.0)
    neg_abs = where(pos, -logits, logits)
    per = relu_part - logits * labels + log1p(exp(neg_abs))
    return _reduce(per, reduction, "sigmoid_cross_entropy")


def mean_squared_error(labels: Any, predictions: Any, reduction: str = "none") -> Tensor:
    """``mean((predictions - labels)^2, axis=-1)`` per example (Keras'
    ``mean_squared_error``); ``reduction="mean"`` then averages over the examples."""
    predictions, labels = _as_tensor(predictions), _as_tensor(labels)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"refopt.nn.losses.mean_squared_error: labels shape {labels.shape} != predictions shape {predictions.shape}"
        )
    d = predictions - labels
    per = mean(d * d, axis=-1) if d.ndim else d * d
    return _reduce(per, reduction, "mean_squared_error")


def l2_loss(x: Any) -> Tensor:
    """``sum(x^2) / 2``, as ``tf.nn.l2_loss`` (a scalar)."""
    x = _as_tensor(x)
    return sum(x * x) / 2.0
