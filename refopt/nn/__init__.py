"""refopt.nn: the layered model API -- modules, layers with named variables, losses,
initialisers, checkpoints and PyTorch weight interchange."""

from refopt.nn import init, layers, losses
from refopt.nn.interchange import TORCH_LAYOUT, export_torch_state_dict, load_torch_state_dict, torch_layout_of
from refopt.nn.layers import *  # noqa: F403  (refopt.nn.layers.__all__)
from refopt.nn.module import CheckpointError, Module

__all__ = [
    "CheckpointError",
    "Module",
    "TORCH_LAYOUT",
    "export_torch_state_dict",
    "init",
    "load_torch_state_dict",
    "losses",
    "torch_layout_of",
    *layers.__all__,
]
