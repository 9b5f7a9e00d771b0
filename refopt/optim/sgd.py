"""Stochastic gradient descent, one function per convention (notation as in adam.py).

    buf_t = momentum * buf_{t-1} + (1 - dampening) * g_t      p_t = p_{t-1} - lr * buf_t
    (Nesterov: p_t = p_{t-1} - lr * (g_t + momentum * buf_t))

Keras and TF1 put the learning rate inside the velocity (``m = momentum*m - lr*g;
p += m``), which differs from PyTorch's form whenever the learning rate changes.
"""

from __future__ import annotations

from typing import Any

from refopt.kernels.fma import fma
from refopt.optim.optimizer import UNSET, Hyper, Optimizer, StepContext

__all__ = ["SGD"]


def sgd_torch(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """``torch.optim.SGD`` default (single-tensor) path; the buffer is a copy of the first
    gradient, then ``buf.mul_(momentum).add_(g, alpha=1 - dampening)``."""
    T = c.T
    if h.maximize:
        g = -g
    if h.weight_decay:
        g = fma(p, T(h.weight_decay), g)  # grad.add(param, alpha=wd): L2, before momentum
    out = {}
    if h.momentum:
        buf = s.get("momentum")
        if buf is None:
            buf = g * T(1)  # the first step copies the gradient
        else:
            buf = fma(g, T(1 - h.dampening), buf * T(h.momentum))
        out["momentum"] = buf
        g = fma(buf, T(h.momentum), g) if h.nesterov else buf
    return fma(g, T(-c.lr), p), out  # param.add_(g, alpha=-lr)


def sgd_keras(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """Keras 3 ``SGD`` (TensorFlow backend), with Keras' decoupled weight decay first."""
    F = c.F
    lr = F(c.lr)
    if h.weight_decay:
        p = p - p * F(h.weight_decay) * lr
    if not h.momentum:
        return p - g * lr, {}
    mom = F(h.momentum)
    m = s["momentum"] * mom - g * lr
    if h.nesterov:
        return p + (m * mom - g * lr), {"momentum": m}
    return p + m, {"momentum": m}


def sgd_tf1(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """``tf.compat.v1.train.GradientDescentOptimizer`` (momentum 0) or
    ``MomentumOptimizer`` (``ApplyMomentum``: accum = accum * momentum + g)."""
    F = c.F
    lr = F(c.lr)
    if not h.momentum:
        return p - g * lr, {}
    mom = F(h.momentum)
    acc = s["momentum"] * mom + g
    if h.nesterov:
        return p - (g * lr + (acc * mom) * lr), {"momentum": acc}
    return p - acc * lr, {"momentum": acc}


def sgd_optax(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """``optax.sgd`` = ``chain(trace(momentum, nesterov), scale_by_learning_rate(lr))``,
    with weight decay as ``add_decayed_weights`` in front (L2)."""
    T = c.T
    if h.weight_decay:
        g = g + T(h.weight_decay) * p
    out = {}
    if h.momentum:
        tr = g + T(h.momentum) * s["momentum"]
        out["momentum"] = tr
        g = g + T(h.momentum) * tr if h.nesterov else tr
    return p + T(-c.lr) * g, out


class SGD(Optimizer):
    """SGD with momentum, dampening, Nesterov, weight decay and maximize, in the
    arithmetic of ``convention``.

    ``weight_decay`` is each framework's own form: L2 added to the gradient (torch,
    optax's ``add_decayed_weights``) or Keras' decoupled ``p -= p * wd * lr`` (keras).
    ``dampening`` and ``maximize`` exist in PyTorch only; TF1 has no weight decay.

    Keyword options shared by every optimizer: ``learning_rate=`` (when the first argument
    is variables or groups), ``lr_multipliers={regex: factor}``,
    ``exclude_from_weight_decay=[regex, ...]``, ``global_clipnorm=``, ``clipnorm=``,
    ``clipvalue=`` (see :class:`~refopt.optim.optimizer.Optimizer`).
    """

    rule = "sgd"
    _rules = {"torch": sgd_torch, "keras": sgd_keras, "tf1": sgd_tf1, "optax": sgd_optax}
    _options = {
        "torch": {"momentum", "dampening", "nesterov", "weight_decay", "maximize"},
        "keras": {"momentum", "nesterov", "weight_decay"},
        "tf1": {"momentum", "nesterov"},
        "optax": {"momentum", "nesterov", "weight_decay"},
    }

    def __init__(
        self,
        learning_rate: Any = UNSET,
        /,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
        convention: str = "torch",
        **options: Any,
    ) -> None:
        super().__init__(
            learning_rate,
            dict(
                momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay, maximize=maximize
            ),
            convention=convention,
            **options,
        )

    @property
    def _slot_init(self) -> dict[str, str | None]:  # type: ignore[override]
        # PyTorch creates its buffer from the first gradient; the others start at zero
        return {"momentum": None if self.convention == "torch" else "zeros"}

    def _slot_list(self, h: Hyper) -> tuple[str, ...]:
        return ("momentum",) if h.momentum else ()

    def _describe_columns(self) -> list[str]:
        return ["momentum", "dampening", "nesterov", "weight_decay", "maximize"]
