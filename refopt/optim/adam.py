"""Adam and AdamW: each convention's update defined once (:class:`~refopt.optim.rules.Rule`).

Per convention, ``_prepare_<convention>`` turns the Python doubles into the dtype as the
framework does and picks the formula's static variant; ``_formula_<convention>`` is one
element's update over the formula layer's operations, in the framework's operation order.
Notation: ``T(x)`` rounds a Python float to the variable's dtype, ``F(x)`` converts it
the way TensorFlow does (float32 first, then the dtype), ``fma(a, b, c)`` is a*b + c
rounded once; every other ``+ - * /`` and ``sqrt`` rounds once to the dtype.  ``c.count``
is the step number t (starting at 1), ``c.lr`` this variable's learning rate for the step
(schedule value times multiplier).

The mathematics all share (Kingma & Ba; Loshchilov & Hutter for decoupled decay):

    m_t = b1 m_{t-1} + (1 - b1) g_t          v_t = b2 v_{t-1} + (1 - b2) g_t^2
    p_t = p_{t-1} - lr * m_t / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)

They differ in where eps sits (``eps_hat = eps * sqrt(1 - b2^t)`` for Keras and TF1), in
how bias correction is rounded, and in the weight-decay form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from refopt.kernels.libm import pow32, pow64
from refopt.optim.optimizer import UNSET, Hyper, Optimizer, StepContext
from refopt.optim.rules import Options, Rule, opts

__all__ = ["Adam", "AdamW", "ADAM_RULES", "ADAMW_RULES"]


def _adam_slots(h: Hyper) -> tuple[str, ...]:
    return ("m", "v", "v_max") if h.amsgrad else ("m", "v")


def _vmax(K: Any, old: Any, v: Any) -> Any:
    """``maximum(old, v)`` as NumPy's: NaN in either propagates."""
    return K.where(K.isnan(old) | (old > v), old, v)


# -- torch --------------------------------------------------------------------------------------
def _prepare_torch(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """PyTorch 2.13 ``Adam``/``AdamW(fused=True)`` on the CPU (FusedAdamKernel.cpp): bias
    corrections, the step size and sqrt(bc2) are Python doubles rounded to the dtype
    once; ``exp_avg.lerp_(grad, 1 - beta1)`` is fma(w, g - m, m) for |w| < 0.5, else
    fma(w - 1, g - m, g)."""
    T = c.T
    w = T(1 - h.beta1)
    bc1 = 1 - pow64(h.beta1, c.count)
    bc2 = 1 - pow64(h.beta2, c.count)
    s = {"w": w, "w1": w - T(1), "b2": T(h.beta2), "c2": T(1 - h.beta2), "step": T(-(c.lr / bc1))}
    s.update(sbc2=T(math.sqrt(bc2)), eps=T(h.epsilon))
    wd = "none"
    if h.weight_decay:
        wd = "decoupled" if h.decoupled else "l2"
        s["decay" if h.decoupled else "wd"] = T(1 - c.lr * h.weight_decay) if h.decoupled else T(h.weight_decay)
    return opts(maximize=h.maximize, wd=wd, lerp_low=abs(float(w)) < 0.5, amsgrad=h.amsgrad, tail=False), s


def _formula_torch(K: Any, o: Options, a: dict, s: dict) -> dict:
    """One element of the fused kernel; ``o.tail``: the scalar remainder loop, which
    fuses the other product of v (measured on this wheel, AVX2 and AVX-512 alike)."""
    p, g, m, v = a["p"], a["g"], a["m"], a["v"]
    if o.maximize:
        g = -g
    if o.wd == "decoupled":
        p = p * s["decay"]  # AdamW: decay first, by the same lr
    elif o.wd == "l2":
        g = K.fma(p, s["wd"], g)  # grad.add(param, alpha=wd)
    d = g - m
    m = K.fma(s["w"], d, m) if o.lerp_low else K.fma(s["w1"], d, g)
    if o.tail:
        v = K.fma(v, s["b2"], (s["c2"] * g) * g)
    else:
        v = K.fma(s["c2"] * g, g, v * s["b2"])
    out = {"m": m, "v": v}
    if o.amsgrad:
        v = out["v_max"] = _vmax(K, a["v_max"], v)
    denom = K.sqrt(v) / s["sbc2"] + s["eps"]
    out["p"] = p + (s["step"] * m) / denom
    return out


# -- keras --------------------------------------------------------------------------------------
def _prepare_keras(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """Keras 3 ``Adam``/``AdamW`` (TensorFlow backend): ``BaseOptimizer._apply_weight_decay``
    then ``Adam.update_step``; eps is eps-hat, ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``
    with the beta powers from float32 betas (libm powf/pow)."""
    T, F = c.T, c.F
    lr = F(c.lr)  # the learning-rate variable is float32; ops.cast to the dtype
    pw = pow32 if T(0).dtype.itemsize == 4 else pow64
    one = T(1)
    b1p = T(pw(F(h.beta1), c.count))
    b2p = T(pw(F(h.beta2), c.count))
    s = {"alpha": lr * np.sqrt(one - b2p) / (one - b1p), "c1": T(1 - h.beta1), "c2": T(1 - h.beta2)}
    s["eps"] = T(h.epsilon)
    if h.weight_decay:
        s.update(lr=lr, wd=F(h.weight_decay))
    return opts(wd=bool(h.weight_decay), amsgrad=h.amsgrad), s


def _formula_keras(K: Any, o: Options, a: dict, s: dict) -> dict:
    p, g = a["p"], a["g"]
    if o.wd:
        p = p - p * s["wd"] * s["lr"]  # variable.assign_sub(variable * wd * lr)
    m = a["m"] + (g - a["m"]) * s["c1"]
    v = a["v"] + (g * g - a["v"]) * s["c2"]
    out = {"m": m, "v": v}
    if o.amsgrad:
        v = out["v_max"] = _vmax(K, a["v_max"], v)
    out["p"] = p - (m * s["alpha"]) / (K.sqrt(v) + s["eps"])
    return out


# -- tf1 ------------------------------------------------------------------------------------------
def _prepare_tf1(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """``tf.compat.v1.train.AdamOptimizer`` (graph mode; ``ApplyAdam``): beta1^t, beta2^t
    are float32 running products shared by the optimizer; ``1 - beta`` is computed in the
    dtype from the float32 beta (``1 - 0.9f = 0.100000024f``)."""
    T, F = c.T, c.F
    one = T(1)
    b1p, b2p = T(c.powers[0]), T(c.powers[1])
    alpha = (F(c.lr) * np.sqrt(one - b2p)) / (one - b1p)
    return opts(), {"alpha": alpha, "c1": one - F(h.beta1), "c2": one - F(h.beta2), "eps": F(h.epsilon)}


def _formula_tf1(K: Any, o: Options, a: dict, s: dict) -> dict:
    g = a["g"]
    m = a["m"] + (g - a["m"]) * s["c1"]
    v = a["v"] + (g * g - a["v"]) * s["c2"]
    return {"p": a["p"] - (m * s["alpha"]) / (K.sqrt(v) + s["eps"]), "m": m, "v": v}


def _tf1_powers(opt: Any) -> None:
    """After each step: beta^t <- beta^t * beta, in float32 (TF1's beta power variables)."""
    for grp in opt._groups:
        values = {**opt._defaults, **grp.overrides}
        grp.powers = (
            np.float32(grp.powers[0] * np.float32(values["beta1"])),
            np.float32(grp.powers[1] * np.float32(values["beta2"])),
        )


# -- optax ----------------------------------------------------------------------------------------
def _prepare_optax(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """``optax.adam`` / ``amsgrad`` / ``adamw`` run eagerly: ``chain([add_decayed_weights],
    scale_by_adam|amsgrad, [add_decayed_weights], scale_by_learning_rate)`` -- L2 before
    the moments for Adam, decoupled after them for AdamW; bias corrections ``1 - b^t`` in
    the dtype (libm pow).  optax.tree.bias_correction is jit-compiled: XLA turns x / bc
    into x * (1 / bc) when the tree has a single leaf, and keeps the division otherwise
    (measured)."""
    T = c.T
    pw = pow32 if T(0).dtype.itemsize == 4 else pow64
    bc1 = T(1) - T(pw(h.beta1, c.count))
    bc2 = T(1) - T(pw(h.beta2, c.count))
    recip = c.leaves == 1
    s = {"c1": T(1 - h.beta1), "b1": T(h.beta1), "c2": T(1 - h.beta2), "b2": T(h.beta2)}
    s.update(bc1=T(1) / bc1 if recip else bc1, bc2=T(1) / bc2 if recip else bc2)
    s.update(eps_root=T(h.eps_root), eps=T(h.epsilon), step=T(-c.lr))
    wd = "none"
    if h.weight_decay:
        wd = "decoupled" if h.decoupled else "l2"
        s["wd"] = T(h.weight_decay)
    return opts(wd=wd, recip=recip, amsgrad=h.amsgrad), s


def _formula_optax(K: Any, o: Options, a: dict, s: dict) -> dict:
    """amsgrad takes the maximum of the *bias-corrected* v."""
    p, g = a["p"], a["g"]
    if o.wd == "l2":
        g = g + s["wd"] * p
    m = s["c1"] * g + s["b1"] * a["m"]
    v = s["c2"] * (g * g) + s["b2"] * a["v"]
    m_hat = m * s["bc1"] if o.recip else m / s["bc1"]
    v_hat = v * s["bc2"] if o.recip else v / s["bc2"]
    out = {"m": m, "v": v}
    if o.amsgrad:
        v_hat = out["v_max"] = _vmax(K, a["v_max"], v_hat)
    u = m_hat / (K.sqrt(v_hat + s["eps_root"]) + s["eps"])
    if o.wd == "decoupled":
        u = u + s["wd"] * p
    out["p"] = p + s["step"] * u
    return out


# -- bert -----------------------------------------------------------------------------------------
def _prepare_bert(h: Hyper, c: StepContext, present: frozenset[str]) -> tuple[Options, dict[str, Any]]:
    """BERT's ``AdamWeightDecayOptimizer`` (google-research/bert, optimization.py): no bias
    correction, eps = 1e-6 outside sqrt, the decay added to the update before the lr.

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        u = m / (sqrt(v) + eps) [+ wd * p];  p = p - lr * u
    """
    T = c.T
    s = {"b1": T(h.beta1), "c1": T(1 - h.beta1), "b2": T(h.beta2), "c2": T(1 - h.beta2), "eps": T(h.epsilon)}
    s["lr"] = T(c.lr)
    if h.weight_decay:
        s["wd"] = T(h.weight_decay)
    return opts(wd=bool(h.weight_decay)), s


def _formula_bert(K: Any, o: Options, a: dict, s: dict) -> dict:
    p, g = a["p"], a["g"]
    m = s["b1"] * a["m"] + s["c1"] * g
    v = s["b2"] * a["v"] + s["c2"] * (g * g)
    u = m / (K.sqrt(v) + s["eps"])
    if o.wd:
        u = u + s["wd"] * p
    return {"p": p - s["lr"] * u, "m": m, "v": v}


def _rule(name: str, prepare: Any, formula: Any, **kw: Any) -> Rule:
    return Rule(name, _adam_slots, prepare, formula, **kw)


_TORCH = dict(per_variable_count=True, tail_bytes=32)
ADAM_RULES = {
    "torch": _rule("adam/torch", _prepare_torch, _formula_torch, **_TORCH),
    "keras": _rule("adam/keras", _prepare_keras, _formula_keras),
    "tf1": _rule("adam/tf1", _prepare_tf1, _formula_tf1, after_step=_tf1_powers),
    "optax": _rule("adam/optax", _prepare_optax, _formula_optax),
}
ADAMW_RULES = {
    "torch": _rule("adamw/torch", _prepare_torch, _formula_torch, **_TORCH),
    "keras": _rule("adamw/keras", _prepare_keras, _formula_keras),
    "optax": _rule("adamw/optax", _prepare_optax, _formula_optax),
    "bert": _rule("adamw/bert", _prepare_bert, _formula_bert),
}

# options each convention has (anything else set to a non-default value is refused)
_ADAM_OPTIONS = {
    "torch": {"amsgrad", "weight_decay", "maximize"},
    "keras": {"amsgrad", "weight_decay"},
    "tf1": set(),
    "optax": {"amsgrad", "weight_decay", "eps_root"},
}
_ADAMW_OPTIONS = {
    "torch": {"weight_decay", "amsgrad", "maximize"},
    "keras": {"weight_decay", "amsgrad"},
    "optax": {"weight_decay", "eps_root"},
    "bert": {"weight_decay"},
}


class _AdamBase(Optimizer):
    pass


class Adam(_AdamBase):
    """Adam (Kingma & Ba), with the arithmetic of ``convention``.

    ``weight_decay`` is each framework's own form for ``Adam``: L2 added to the gradient
    (torch, optax), or Keras' decoupled ``p -= p * wd * lr`` (keras).  For decoupled
    decay in every framework's AdamW form, use :class:`AdamW`.  ``epsilon=None`` takes
    the convention's default (1e-7 keras, 1e-8 otherwise).

    ``Adam(learning_rate, ...)`` or ``Adam(variables_or_groups, learning_rate=...)``.

    Keyword options shared by every optimizer: ``learning_rate=`` (when the first argument
    is variables or groups), ``lr_multipliers={regex: factor}``,
    ``exclude_from_weight_decay=[regex, ...]``, ``global_clipnorm=``, ``clipnorm=``,
    ``clipvalue=`` (see :class:`~refopt.optim.optimizer.Optimizer`).
    """

    rule = "adam"
    _rules = ADAM_RULES
    _options = _ADAM_OPTIONS

    def __init__(
        self,
        learning_rate: Any = UNSET,
        /,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float | None = None,
        amsgrad: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
        eps_root: float = 0.0,
        convention: str = "torch",
        **options: Any,
    ) -> None:
        super().__init__(
            learning_rate,
            dict(
                beta1=beta1,
                beta2=beta2,
                epsilon=epsilon,
                amsgrad=amsgrad,
                weight_decay=weight_decay,
                maximize=maximize,
                eps_root=eps_root,
            ),
            convention=convention,
            **options,
        )


class AdamW(_AdamBase):
    """AdamW: Adam with weight decay decoupled from the gradient, in ``convention``'s form:

    * torch: ``p *= 1 - lr * wd`` before the Adam step (wd default 1e-2);
    * keras: ``p -= p * wd * lr`` before the Adam step (wd default 0.004);
    * optax: ``u = adam_u + wd * p`` then ``p -= lr * u`` (wd default 1e-4);
    * bert: BERT's AdamWeightDecay (no bias correction, eps 1e-6, wd default 0.01,
      excluding names matching LayerNorm, layer_norm, bias).

    ``exclude_from_weight_decay=[regex, ...]`` turns decay off for matching names
    (``re.search``); multipliers from ``lr_multipliers`` scale the decay with the step,
    as a PyTorch parameter group's lr would.

    Keyword options shared by every optimizer: ``learning_rate=`` (when the first argument
    is variables or groups), ``lr_multipliers={regex: factor}``,
    ``exclude_from_weight_decay=[regex, ...]``, ``global_clipnorm=``, ``clipnorm=``,
    ``clipvalue=`` (see :class:`~refopt.optim.optimizer.Optimizer`).
    """

    rule = "adamw"
    _rules = ADAMW_RULES
    _options = _ADAMW_OPTIONS
    _decoupled = True

    def __init__(
        self,
        learning_rate: Any = UNSET,
        /,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float | None = None,
        weight_decay: float | None = None,
        amsgrad: bool = False,
        exclude_from_weight_decay: list[str] | None = None,
        eps_root: float = 0.0,
        convention: str = "torch",
        maximize: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            learning_rate,
            dict(
                beta1=beta1,
                beta2=beta2,
                epsilon=epsilon,
                amsgrad=amsgrad,
                weight_decay=weight_decay,
                maximize=maximize,
                eps_root=eps_root,
            ),
            convention=convention,
            exclude_from_weight_decay=exclude_from_weight_decay,
            **options,
        )


def _adam_columns(self: _AdamBase) -> list[str]:
    return ["beta1", "beta2", "epsilon", "weight_decay", "amsgrad", "maximize", "eps_root"]


_AdamBase._describe_columns = _adam_columns  # type: ignore[method-assign]
