"""The autodiff engine: Tensor/Variable, the graph walk, and gradient control."""

from refopt.autodiff.functional import custom_gradient, grad, identity, scale_gradient, stop_gradient, value_and_grad
from refopt.autodiff.graph import StaleGraphError, gradients
from refopt.autodiff.tensor import Primitive, Tensor, Variable, constant, to_numpy

__all__ = [
    "Primitive",
    "StaleGraphError",
    "Tensor",
    "Variable",
    "constant",
    "custom_gradient",
    "grad",
    "gradients",
    "identity",
    "scale_gradient",
    "stop_gradient",
    "to_numpy",
    "value_and_grad",
]
