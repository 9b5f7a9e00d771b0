"""Learning-rate schedules: ``schedule(step) -> float``, evaluated in double precision.

Optimizers call a schedule with ``step = opt.iterations`` before each update, so the
first update uses ``schedule(0)``.  Each convention then rounds the value as its
framework rounds a learning rate (see docs/conventions.md).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "constant",
    "polynomial_decay",
    "linear_warmup",
    "cosine_decay",
    "warmup_cosine_decay",
    "piecewise_constant",
    "exponential_decay",
    "bert",
]

Schedule = Callable[[int], float]


def _check_steps(n: int, what: str) -> None:
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"{what} must be a positive int, got {n!r}")


@dataclass(frozen=True)
class constant:
    """``value`` at every step."""

    value: float

    def __call__(self, step: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class polynomial_decay:
    """``(init - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end``
    (``tf.compat.v1.train.polynomial_decay`` without cycling; optax's polynomial schedule)."""

    init: float
    decay_steps: int
    end: float = 0.0
    power: float = 1.0

    def __post_init__(self) -> None:
        _check_steps(self.decay_steps, "polynomial_decay: decay_steps")

    def __call__(self, step: int) -> float:
        c = min(step, self.decay_steps)
        return (self.init - self.end) * (1 - c / self.decay_steps) ** self.power + self.end


@dataclass(frozen=True)
class linear_warmup:
    """For ``step < warmup_steps``: ``init + (peak - init) * step / warmup_steps`` with
    ``peak = target`` (a float) or ``target(0)`` (a schedule); from then on ``target``
    (at the same, un-restarted step -- BERT's ``create_optimizer`` does this)."""

    target: float | Schedule
    warmup_steps: int
    init: float = 0.0

    def __post_init__(self) -> None:
        _check_steps(self.warmup_steps, "linear_warmup: warmup_steps")

    def _at(self, step: int) -> float:
        return float(self.target(step)) if callable(self.target) else float(self.target)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.init + (self._at(0) - self.init) * step / self.warmup_steps
        return self._at(step)


@dataclass(frozen=True)
class cosine_decay:
    """``init * ((1 - alpha) * (1 + cos(pi * min(step, D) / D)) / 2 + alpha)``."""

    init: float
    decay_steps: int
    alpha: float = 0.0

    def __post_init__(self) -> None:
        _check_steps(self.decay_steps, "cosine_decay: decay_steps")

    def __call__(self, step: int) -> float:
        c = min(step, self.decay_steps)
        return self.init * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * c / self.decay_steps)) + self.alpha)


@dataclass(frozen=True)
class warmup_cosine_decay:
    """optax's ``warmup_cosine_decay_schedule``: linear ``init -> peak`` over
    ``warmup_steps``, then cosine ``peak -> end`` over ``decay_steps - warmup_steps``
    (its clock restarting at the boundary)."""

    init: float
    peak: float
    warmup_steps: int
    decay_steps: int
    end: float = 0.0

    def __post_init__(self) -> None:
        _check_steps(self.warmup_steps, "warmup_cosine_decay: warmup_steps")
        if self.decay_steps <= self.warmup_steps:
            raise ValueError("warmup_cosine_decay: decay_steps must exceed warmup_steps")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.init + (self.peak - self.init) * step / self.warmup_steps
        d = self.decay_steps - self.warmup_steps
        c = min(step - self.warmup_steps, d)
        alpha = self.end / self.peak if self.peak else 0.0
        return self.peak * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * c / d)) + alpha)


@dataclass(frozen=True)
class piecewise_constant:
    """``values[0]`` for ``step <= boundaries[0]``, ``values[i]`` for
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after (TensorFlow's rule)."""

    boundaries: Sequence[int]
    values: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError("piecewise_constant: needs one more value than boundaries")
        if list(self.boundaries) != sorted(self.boundaries):
            raise ValueError("piecewise_constant: boundaries must increase")

    def __call__(self, step: int) -> float:
        return float(self.values[bisect.bisect_left(list(self.boundaries), step)])


@dataclass(frozen=True)
class exponential_decay:
    """``init * decay_rate ** (step / decay_steps)`` (the exponent floored if ``staircase``)."""

    init: float
    decay_steps: int
    decay_rate: float
    staircase: bool = False

    def __post_init__(self) -> None:
        _check_steps(self.decay_steps, "exponential_decay: decay_steps")

    def __call__(self, step: int) -> float:
        e = step / self.decay_steps
        return self.init * self.decay_rate ** (math.floor(e) if self.staircase else e)


def bert(init_lr: float, num_train_steps: int, num_warmup_steps: int) -> linear_warmup:
    """BERT's ``create_optimizer`` schedule: ``init_lr * step / W`` while ``step < W``,
    else ``init_lr * (1 - step / N)`` (linear decay to 0 at N, counted from step 0 --
    so the rate drops at the end of warmup, as in BERT)."""
    return linear_warmup(polynomial_decay(init_lr, num_train_steps, 0.0, 1.0), num_warmup_steps)
