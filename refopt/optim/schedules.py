"""Learning-rate schedules: ``schedule(step) -> float``, evaluated in double precision.

Optimizers call a schedule with ``step = opt.iterations`` before each update, so the
first update uses ``schedule(0)``.  Each convention then rounds the value as its
framework rounds a learning rate (see docs/conventions.md).

optax evaluates its schedules differently: on its int32 step count, so in float32
arithmetic even with JAX's float64 mode on (only the cosine's inner part is float64
then).  The schedules that are optax's -- ``constant``, ``polynomial_decay``
(``polynomial_schedule``), ``cosine_decay`` (``cosine_decay_schedule``),
``warmup_cosine_decay`` (``warmup_cosine_decay_schedule``), ``exponential_decay`` --
have ``optax_value(count, x64)``, which reproduces that evaluation bit for bit; the
optimizer uses it under ``convention="optax"``.  ``linear_warmup``, ``bert`` and
``piecewise_constant`` (TensorFlow's boundary rule, not optax's) have no optax
counterpart and are used in double there too.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from refopt.kernels.libm import cos32, pow32, pow64

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


_f32 = np.float32


def _integer_pow(x: np.float32, n: int) -> np.float32:
    """``lax.integer_pow`` (what ``x ** 2`` becomes in JAX): binary exponentiation."""
    if n == 0:
        return _f32(1)
    acc, y, k = None, x, abs(n)
    while k > 0:
        if k & 1:
            acc = y if acc is None else _f32(acc * y)
        k >>= 1
        if k > 0:
            y = _f32(y * y)
    return _f32(_f32(1) / acc) if n < 0 else acc


def _optax_linear(init: float, end: float, power: float, steps: int, count: int) -> np.float32:
    """optax's ``polynomial_schedule`` at an int32 count: float32 throughout (x64 or not)."""
    k = min(max(count, 0), steps)
    frac = _f32(1) - _f32(k) / _f32(steps)
    if isinstance(power, int) and not isinstance(power, bool):
        pw = _integer_pow(frac, power)
    else:
        pw = pow32(frac, power)
    return _f32(_f32(init - end) * pw) + _f32(end)


def _optax_cosine(init: float, steps: int, alpha: float, count: int, x64: bool) -> float:
    """optax's ``cosine_decay_schedule`` at an int32 count (exponent 1): ``min(count,
    steps)`` is weakly typed, so the arithmetic is float64 with x64 on, float32 without."""
    if x64:
        c = float(min(count, steps))
        decay = 0.5 * (1 + math.cos(math.pi * c / steps))
        return init * ((1 - alpha) * pow64(decay, 1.0) + alpha)
    c = _f32(min(count, steps))
    decay = _f32(0.5) * (_f32(1) + cos32(_f32(_f32(math.pi) * c) / _f32(steps)))
    return float(_f32(init) * (_f32(1 - alpha) * pow32(decay, 1.0) + _f32(alpha)))


@dataclass(frozen=True)
class constant:
    """``value`` at every step."""

    value: float

    def __call__(self, step: int) -> float:
        return float(self.value)

    def optax_value(self, count: int, x64: bool) -> float:
        """``optax.constant_schedule``: the Python value itself."""
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

    def optax_value(self, count: int, x64: bool) -> float:
        """``optax.polynomial_schedule(init, end, power, decay_steps)`` at ``count``:
        ``f32(init - end) * (1 - f32(c) / f32(D)) ** power + f32(end)`` in float32 (powf;
        an int power is JAX's integer_pow)."""
        return float(_optax_linear(self.init, self.end, self.power, self.decay_steps, count))


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

    def optax_value(self, count: int, x64: bool) -> float:
        """``optax.cosine_decay_schedule(init, decay_steps, alpha)`` at ``count``: float64
        with x64 on, float32 (libm cosf) without."""
        return _optax_cosine(self.init, self.decay_steps, self.alpha, count, x64)


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

    def optax_value(self, count: int, x64: bool) -> float:
        """``optax.warmup_cosine_decay_schedule``: ``join_schedules`` of a
        ``linear_schedule`` (float32) and a cosine decay whose clock restarts at the
        boundary; ``jnp.where`` keeps the float32 of the linear part, so the cosine is
        rounded to float32 even with x64 on."""
        if count < self.warmup_steps:
            return float(_optax_linear(self.init, self.peak, 1, self.warmup_steps, count))
        alpha = 0.0 if self.peak == 0.0 else self.end / self.peak
        d = self.decay_steps - self.warmup_steps
        return float(_f32(_optax_cosine(self.peak, d, alpha, count - self.warmup_steps, x64)))


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

    def optax_value(self, count: int, x64: bool) -> float:
        """``optax.exponential_decay(init, decay_steps, decay_rate, staircase=)`` at
        ``count``: ``f32(init) * powf(f32(rate), f32(c) / f32(D))`` (the exponent floored
        if ``staircase``), ``f32(init)`` at ``c <= 0``; a zero rate is optax's constant
        ``init``."""
        if self.decay_rate == 0:
            return float(self.init)
        if count <= 0:
            return float(_f32(self.init))
        e = _f32(count) / _f32(self.decay_steps)
        if self.staircase:
            e = np.floor(e)
        return float(_f32(self.init) * pow32(self.decay_rate, e))


def bert(init_lr: float, num_train_steps: int, num_warmup_steps: int) -> linear_warmup:
    """BERT's ``create_optimizer`` schedule: ``init_lr * step / W`` while ``step < W``,
    else ``init_lr * (1 - step / N)`` (linear decay to 0 at N, counted from step 0 --
    so the rate drops at the end of warmup, as in BERT)."""
    return linear_warmup(polynomial_decay(init_lr, num_train_steps, 0.0, 1.0), num_warmup_steps)
