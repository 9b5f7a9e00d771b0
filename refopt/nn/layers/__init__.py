"""Layers: modules with named variables."""

from refopt.nn.layers.activation import GELU, Dropout, Flatten, ReLU, Sigmoid, Tanh
from refopt.nn.layers.conv import AvgPool2D, Conv2D, MaxPool2D
from refopt.nn.layers.dense import Dense
from refopt.nn.layers.embedding import Embedding
from refopt.nn.layers.norm import LayerNorm
from refopt.nn.layers.sequential import Sequential

__all__ = [
    "AvgPool2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GELU",
    "LayerNorm",
    "MaxPool2D",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
]
