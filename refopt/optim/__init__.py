"""refopt.optim: SGD, Adam and AdamW whose updates reproduce a named framework's
arithmetic bit for bit (``convention=``), with masks, slots, groups, learning-rate
multipliers, weight-decay exclusions, schedules and clipping."""

from refopt.optim import schedules
from refopt.optim.adam import Adam, AdamW
from refopt.optim.clipping import clip_by_global_norm, global_norm
from refopt.optim.conventions import CONVENTIONS
from refopt.optim.optimizer import SLOT_ALIASES, Optimizer
from refopt.optim.sgd import SGD

__all__ = [
    "Adam",
    "AdamW",
    "CONVENTIONS",
    "Optimizer",
    "SGD",
    "SLOT_ALIASES",
    "clip_by_global_norm",
    "global_norm",
    "schedules",
]
