"""Adam and AdamW, one function per convention.

Each function is one variable's update, written in the framework's operation order.
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

from refopt.kernels.fma import fma
from refopt.kernels.libm import pow32, pow64
from refopt.optim.optimizer import UNSET, Hyper, Optimizer, StepContext

__all__ = ["Adam", "AdamW"]


def _xp(a: Any) -> Any:
    from refopt.backend import namespace

    return namespace(a)


def torch_lerp(start: Any, end: Any, w: Any) -> Any:
    """``torch.lerp(start, end, w)`` as PyTorch's CPU kernel computes it: for |w| < 0.5,
    fma(w, end - start, start); else fma(w - 1, end - start, end)."""
    d = end - start
    if abs(float(w)) < 0.5:
        return fma(w, d, start)
    return fma(w - type(w)(1), d, end)


def _torch_fused_v(v: Any, g: Any, b2: Any, c2: Any) -> Any:
    """``v * b2 + (c2 * g) * g`` as torch 2.13's CPU wheel computes it: the vectorised body
    fuses the second product, ``fma(c2*g, g, v*b2)``; the scalar remainder loop -- the last
    ``numel % (32 bytes / itemsize)`` elements -- fuses the first, ``fma(v, b2, (c2*g)*g)``
    (measured on this wheel with AVX2 and AVX-512 dispatch alike)."""
    xp = _xp(v)
    body = fma(c2 * g, g, v * b2)
    n = math.prod(v.shape)
    k = n % (32 // v.dtype.itemsize)
    if not k:
        return body
    vf, gf = xp.reshape(v, (-1,))[n - k :], xp.reshape(g, (-1,))[n - k :]
    tail = fma(vf, b2, (c2 * gf) * gf)
    return xp.reshape(xp.concat([xp.reshape(body, (-1,))[: n - k], tail]), v.shape)


def adam_torch(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """PyTorch 2.13 ``Adam``/``AdamW(fused=True)`` on the CPU (FusedAdamKernel.cpp).

    Bias corrections, step size and sqrt(bc2) are Python doubles rounded to the dtype
    once; v's two products are fused differently in the kernel's remainder loop
    (:func:`_torch_fused_v`); sqrt is correctly rounded (the default, non-fused CPU path uses MKL's vsSqrt,
    which is not -- see docs/conventions.md for the measured distance).
    """
    xp, T = _xp(p), c.T
    if h.maximize:
        g = -g
    if h.weight_decay:
        if h.decoupled:
            p = p * T(1 - c.lr * h.weight_decay)  # AdamW: decay first, by the same lr
        else:
            g = fma(p, T(h.weight_decay), g)  # grad.add(param, alpha=wd)
    m = torch_lerp(s["m"], g, T(1 - h.beta1))  # exp_avg.lerp_(grad, 1 - beta1)
    v = _torch_fused_v(s["v"], g, T(h.beta2), T(1 - h.beta2))
    bc1 = 1 - pow64(h.beta1, c.count)
    bc2 = 1 - pow64(h.beta2, c.count)
    step_size = c.lr / bc1
    out = {"m": m, "v": v}
    if h.amsgrad:
        v = out["v_max"] = xp.maximum(s["v_max"], v)
    denom = xp.sqrt(v) / T(math.sqrt(bc2)) + T(h.epsilon)
    return p + (T(-step_size) * m) / denom, out


def adam_keras(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """Keras 3 ``Adam``/``AdamW`` (TensorFlow backend): ``BaseOptimizer._apply_weight_decay``
    then ``Adam.update_step``.  eps is eps-hat: ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``.
    """
    xp, T, F = _xp(p), c.T, c.F
    lr = F(c.lr)  # the learning-rate variable is float32; ops.cast to the dtype
    if h.weight_decay:
        p = p - p * F(h.weight_decay) * lr  # variable.assign_sub(variable * wd * lr)
    pw = pow32 if T(0).dtype.itemsize == 4 else pow64
    one = T(1)
    b1p = T(pw(F(h.beta1), c.count))
    b2p = T(pw(F(h.beta2), c.count))
    alpha = lr * xp.sqrt(one - b2p) / (one - b1p)
    m = s["m"] + (g - s["m"]) * T(1 - h.beta1)
    v = s["v"] + (g * g - s["v"]) * T(1 - h.beta2)
    out = {"m": m, "v": v}
    if h.amsgrad:
        v = out["v_max"] = xp.maximum(s["v_max"], v)
    return p - (m * alpha) / (xp.sqrt(v) + T(h.epsilon)), out


def adam_tf1(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """``tf.compat.v1.train.AdamOptimizer`` (graph mode; ``ApplyAdam`` CPU kernel).

    beta1^t, beta2^t are float32 running products shared by the optimizer; ``1 - beta``
    is computed in the dtype from the float32 beta (``1 - 0.9f = 0.100000024f``).
    """
    xp, T, F = _xp(p), c.T, c.F
    one = T(1)
    b1p, b2p = T(c.powers[0]), T(c.powers[1])
    alpha = (F(c.lr) * xp.sqrt(one - b2p)) / (one - b1p)
    m = s["m"] + (g - s["m"]) * (one - F(h.beta1))
    v = s["v"] + (g * g - s["v"]) * (one - F(h.beta2))
    return p - (m * alpha) / (xp.sqrt(v) + F(h.epsilon)), {"m": m, "v": v}


def _optax_bias(x: Any, bc: Any, leaves: int) -> Any:
    # optax.tree.bias_correction is jit-compiled: XLA turns x / bc into x * (1 / bc) when
    # the tree has a single leaf, and keeps the division otherwise (measured).
    if leaves == 1:
        return x * (type(bc)(1) / bc)
    return x / bc


def adam_optax(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """``optax.adam`` / ``optax.amsgrad`` / ``optax.adamw`` run eagerly:
    ``chain([add_decayed_weights(wd)], scale_by_adam|amsgrad, [add_decayed_weights(wd)],
    scale_by_learning_rate(lr))`` then ``apply_updates`` -- L2 before the moments for
    Adam, decoupled after them for AdamW.  bias corrections ``1 - b^t`` are computed in
    the dtype (libm pow); amsgrad takes the maximum of the *bias-corrected* v.
    """
    xp, T = _xp(p), c.T
    if h.weight_decay and not h.decoupled:
        g = g + T(h.weight_decay) * p
    m = T(1 - h.beta1) * g + T(h.beta1) * s["m"]
    v = T(1 - h.beta2) * (g * g) + T(h.beta2) * s["v"]
    pw = pow32 if T(0).dtype.itemsize == 4 else pow64
    bc1 = T(1) - T(pw(h.beta1, c.count))
    bc2 = T(1) - T(pw(h.beta2, c.count))
    m_hat = _optax_bias(m, bc1, c.leaves)
    v_hat = _optax_bias(v, bc2, c.leaves)
    out = {"m": m, "v": v}
    if h.amsgrad:
        v_hat = out["v_max"] = xp.maximum(s["v_max"], v_hat)
    u = m_hat / (xp.sqrt(v_hat + T(h.eps_root)) + T(h.epsilon))
    if h.weight_decay and h.decoupled:
        u = u + T(h.weight_decay) * p
    return p + T(-c.lr) * u, out


def adamw_bert(p: Any, g: Any, s: dict, h: Hyper, c: StepContext) -> tuple[Any, dict]:
    """BERT's ``AdamWeightDecayOptimizer`` (google-research/bert, optimization.py): no bias
    correction, eps = 1e-6 outside sqrt, the decay added to the update before the lr.

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        u = m / (sqrt(v) + eps) [+ wd * p];  p = p - lr * u
    """
    xp, T = _xp(p), c.T
    m = T(h.beta1) * s["m"] + T(1 - h.beta1) * g
    v = T(h.beta2) * s["v"] + T(1 - h.beta2) * (g * g)
    u = m / (xp.sqrt(v) + T(h.epsilon))
    if h.weight_decay:
        u = u + T(h.weight_decay) * p
    return p - T(c.lr) * u, {"m": m, "v": v}


_ADAM_RULES = {"torch": adam_torch, "keras": adam_keras, "tf1": adam_tf1, "optax": adam_optax}
_ADAMW_RULES = {"torch": adam_torch, "keras": adam_keras, "optax": adam_optax, "bert": adamw_bert}

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
    _slot_init = {"m": "zeros", "v": "zeros", "v_max": "zeros"}

    def _slot_list(self, h: Hyper) -> tuple[str, ...]:
        return ("m", "v", "v_max") if h.amsgrad else ("m", "v")


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
    _rules = _ADAM_RULES
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
    _rules = _ADAMW_RULES
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
