"""Stochastic gradient descent: each convention's update defined once, as a scalar
preparation and an elementwise formula (notation and structure as in adam.py).

    buf_t = momentum * buf_{t-1} + (1 - dampening) * g_t      p_t = p_{t-1} - lr * buf_t
    (Nesterov: p_t = p_{t-1} - lr * (g_t + momentum * buf_t))

Keras and TF1 put the learning rate inside the velocity (``m = momentum*m - lr*g;
p += m``), which differs from PyTorch's form whenever the learning rate changes.
"""

from __future__ import annotations

from typing import Any

from refopt.optim.optimizer import UNSET, Hyper, Optimizer, StepContext
from refopt.optim.rules import Options, Rule, opts

__all__ = ["SGD", "SGD_RULES"]


def _sgd_slots(h: Hyper) -> tuple[str, ...]:
    return ("momentum",) if h.momentum else ()


# -- torch --------------------------------------------------------------------------------------
def _prepare_torch(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """``torch.optim.SGD`` default (single-tensor) path: ``grad.add(param, alpha=wd)``;
    the buffer is a copy of the first gradient, then ``buf.mul_(momentum).add_(g,
    alpha=1 - dampening)``; ``param.add_(g, alpha=-lr)``."""
    T = c.T
    s = {"step": T(-c.lr)}
    if h.weight_decay:
        s["wd"] = T(h.weight_decay)
    if h.momentum:
        s.update(one=T(1), damp=T(1 - h.dampening), mom=T(h.momentum))
    first = bool(h.momentum) and "momentum" not in present
    o = opts(maximize=h.maximize, wd=bool(h.weight_decay), momentum=bool(h.momentum), first=first, nesterov=h.nesterov)
    return o, s


def _formula_torch(K: Any, o: Options, a: dict, s: dict) -> dict:
    p, g = a["p"], a["g"]
    if o.maximize:
        g = -g
    if o.wd:
        g = K.fma(p, s["wd"], g)  # L2, before momentum
    out = {}
    if o.momentum:
        buf = g * s["one"] if o.first else K.fma(g, s["damp"], a["momentum"] * s["mom"])
        out["momentum"] = buf
        g = K.fma(buf, s["mom"], g) if o.nesterov else buf
    out["p"] = K.fma(g, s["step"], p)
    return out


# -- keras --------------------------------------------------------------------------------------
def _prepare_keras(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """Keras 3 ``SGD`` (TensorFlow backend), with Keras' decoupled weight decay first;
    the learning rate is inside the velocity (``m = momentum m - lr g; p += m``)."""
    F = c.F
    s = {"lr": F(c.lr)}
    if h.weight_decay:
        s["wd"] = F(h.weight_decay)
    if h.momentum:
        s["mom"] = F(h.momentum)
    return opts(wd=bool(h.weight_decay), momentum=bool(h.momentum), nesterov=h.nesterov), s


def _formula_keras(K: Any, o: Options, a: dict, s: dict) -> dict:
    p, g, lr = a["p"], a["g"], s["lr"]
    if o.wd:
        p = p - p * s["wd"] * lr
    if not o.momentum:  # nesterov without momentum: Keras ignores it
        return {"p": p - g * lr}
    m = a["momentum"] * s["mom"] - g * lr
    if o.nesterov:
        return {"p": p + (m * s["mom"] - g * lr), "momentum": m}
    return {"p": p + m, "momentum": m}


# -- tf1 ------------------------------------------------------------------------------------------
def _prepare_tf1(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """``tf.compat.v1.train.GradientDescentOptimizer`` (momentum 0) or
    ``MomentumOptimizer`` (``ApplyMomentum``: accum = accum * momentum + g)."""
    F = c.F
    s = {"lr": F(c.lr)}
    if h.momentum:
        s["mom"] = F(h.momentum)
    return opts(momentum=bool(h.momentum), nesterov=h.nesterov), s


def _formula_tf1(K: Any, o: Options, a: dict, s: dict) -> dict:
    p, g, lr = a["p"], a["g"], s["lr"]
    if not o.momentum:
        return {"p": p - g * lr}
    acc = a["momentum"] * s["mom"] + g
    if o.nesterov:
        return {"p": p - (g * lr + (acc * s["mom"]) * lr), "momentum": acc}
    return {"p": p - acc * lr, "momentum": acc}


# -- optax ----------------------------------------------------------------------------------------
def _prepare_optax(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """``optax.sgd`` = ``chain(trace(momentum, nesterov), scale_by_learning_rate(lr))``,
    with weight decay as ``add_decayed_weights`` in front (L2)."""
    T = c.T
    s = {"step": T(-c.lr)}
    if h.weight_decay:
        s["wd"] = T(h.weight_decay)
    if h.momentum:
        s["mom"] = T(h.momentum)
    return opts(wd=bool(h.weight_decay), momentum=bool(h.momentum), nesterov=h.nesterov), s


def _formula_optax(K: Any, o: Options, a: dict, s: dict) -> dict:
    p, g = a["p"], a["g"]
    if o.wd:
        g = g + s["wd"] * p
    out = {}
    if o.momentum:
        tr = g + s["mom"] * a["momentum"]
        out["momentum"] = tr
        g = g + s["mom"] * tr if o.nesterov else tr
    out["p"] = p + s["step"] * g
    return out


SGD_RULES = {
    # PyTorch creates its buffer from the first gradient; the others start at zero
    "torch": Rule(
        "sgd/torch", _sgd_slots, _prepare_torch, _formula_torch, slot_init=lambda n: None, per_variable_count=True
    ),
    "keras": Rule("sgd/keras", _sgd_slots, _prepare_keras, _formula_keras),
    "tf1": Rule("sgd/tf1", _sgd_slots, _prepare_tf1, _formula_tf1),
    "optax": Rule("sgd/optax", _sgd_slots, _prepare_optax, _formula_optax),
}


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
    _rules = SGD_RULES
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

    def _describe_columns(self) -> list[str]:
        return ["momentum", "dampening", "nesterov", "weight_decay", "maximize"]
