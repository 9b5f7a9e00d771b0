"""Layer-wise learning rates, five ways -- and why scaling the gradient does not scale
Adam's step.

    python examples/layerwise_lr.py

The recipe docs/recipes/layerwise-lr.md shows this script section by section, next to
what each section prints (the ``# --8<-- [start:NAME]`` comments mark the sections).
"""

# --8<-- [start:setup]
import numpy as np

import refopt as rf
from refopt.testing import max_ulp

LR, ENCODER_FACTOR = 1e-2, 0.1  # goal: the encoder learns at 0.1 x the head's rate


class Net(rf.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = rf.nn.Dense(4, 8, seed=1)
        self.head = rf.nn.Dense(8, 3, seed=2)

    def forward(self, x: rf.Tensor, through=lambda h: h) -> rf.Tensor:
        """``through`` is applied to the encoder's output (ways 4 and 5 below)."""
        return self.head(rf.tanh(through(self.encoder(x))))


rng = np.random.default_rng(0)
x = rf.constant(rng.standard_normal((16, 4)).astype(np.float32))
labels = rf.constant(rng.integers(0, 3, 16))


def loss_of(model: Net, through=lambda h: h) -> rf.Tensor:
    return rf.nn.losses.sparse_softmax_cross_entropy(labels, model(x, through), reduction="mean")


# --8<-- [end:setup]


# --8<-- [start:ways]
def two_optimizers(Opt, steps: int) -> Net:
    """1. Two optimizers, one gradient computation."""
    model = Net()
    enc_opt = Opt(model.encoder.variables(), learning_rate=LR * ENCODER_FACTOR)
    head_opt = Opt(model.head.variables(), learning_rate=LR)
    for _ in range(steps):
        grads = rf.gradients(loss_of(model), model.variables())  # once, for every variable
        pairs = list(zip(grads, model.variables()))
        enc_opt.apply_gradients(pairs[:2])
        head_opt.apply_gradients(pairs[2:])
    return model


def groups(Opt, steps: int) -> Net:
    """2. Parameter groups (PyTorch style)."""
    model = Net()
    enc, head = model.encoder.variables(), model.head.variables()
    opt = Opt([{"params": enc, "learning_rate": LR * ENCODER_FACTOR}, {"params": head}], learning_rate=LR)
    for _ in range(steps):
        opt.minimize(loss_of(model))
    return model


def multipliers(Opt, steps: int) -> Net:
    """3. Learning-rate multipliers matched against variable names."""
    model = Net()
    opt = Opt(model.variables(), learning_rate=LR, lr_multipliers={"^encoder/": ENCODER_FACTOR})
    for _ in range(steps):
        opt.minimize(loss_of(model))
    return model


@rf.custom_gradient
def scaled_backward(h):
    """Identity forward; the gradient flowing back is multiplied by ENCODER_FACTOR."""
    return rf.identity(h), lambda dy: dy * ENCODER_FACTOR


def custom_gradient(Opt, steps: int) -> Net:
    """4. custom_gradient: the encoder's gradients scaled by 0.1 (TensorFlow's lr_mult)."""
    model = Net()
    opt = Opt(model.variables(), learning_rate=LR)
    for _ in range(steps):
        opt.minimize(loss_of(model, through=scaled_backward))
    return model


def blend(h):
    """Value h, gradient 0.1: a * h + (1 - a) * stop_gradient(h)."""
    return ENCODER_FACTOR * h + (1 - ENCODER_FACTOR) * rf.stop_gradient(h)


def stop_gradient_blend(Opt, steps: int) -> Net:
    """5. The stop_gradient blend on the encoder's output."""
    model = Net()
    opt = Opt(model.variables(), learning_rate=LR)
    for _ in range(steps):
        opt.minimize(loss_of(model, through=blend))
    return model


def unscaled(Opt, steps: int) -> Net:
    """The reference: one learning rate for every layer."""
    model = Net()
    opt = Opt(model.variables(), learning_rate=LR)
    for _ in range(steps):
        opt.minimize(loss_of(model))
    return model


# --8<-- [end:ways]


# --8<-- [start:compare]
def encoder_move(model: Net) -> float:
    start = Net()  # the same seeded initial weights
    return np.sqrt(
        sum(np.sum((a.numpy() - b.numpy()) ** 2) for a, b in zip(model.encoder.variables(), start.encoder.variables()))
    )


ways = [two_optimizers, groups, multipliers, custom_gradient, stop_gradient_blend]
runs = [("SGD", rf.optim.SGD, 1), ("SGD", rf.optim.SGD, 10), ("Adam", rf.optim.Adam, 1), ("Adam", rf.optim.Adam, 10)]
print("[compare] how far the encoder moves, relative to one learning rate for every layer")
print(f"{'':20s}" + "".join(f"{f'{n}, {k} step' + 's' * (k > 1):>15s}" for n, _, k in runs))
for way in ways:
    ratios = [encoder_move(way(Opt, k)) / encoder_move(unscaled(Opt, k)) for _, Opt, k in runs]
    print(f"{way.__name__:20s}" + "".join(f"{r:15.4f}" for r in ratios))
print("largest distance from the groups' weights after 10 steps, in ULP")
for way in ways:
    ulps = [
        max(max_ulp(a.numpy(), b.numpy()) for a, b in zip(way(Opt, 10).variables(), groups(Opt, 10).variables()))
        for _, Opt, k in runs
        if k == 10
    ]
    print(f"{way.__name__:20s}  SGD {ulps[0]:<4g} Adam {ulps[1]:.3g}")
# --8<-- [end:compare]

# --8<-- [start:why]
print("[why] Adam's first step for a gradient g and for 0.1 g (lr = 1e-2, eps = 1e-8)")
print("    g         step for g       step for 0.1 g   ratio")
for g in (1.0, 1e-3, 1e-5, 1e-7):
    steps = []
    for scale in (1.0, ENCODER_FACTOR):
        w = rf.Variable(np.zeros(1), name="w")  # float64
        rf.optim.Adam([w], learning_rate=LR).apply_gradients([(np.array([g * scale]), w)])
        steps.append(-w.numpy()[0])
    print(f"{g:8.0e}   {steps[0]:.10f}   {steps[1]:.10f}   {steps[1] / steps[0]:.6f}")
# --8<-- [end:why]

# --8<-- [start:blend-value]
h = Net().encoder(x)
print("[blend-value] the blend's forward value is h only up to rounding")
print(f"largest distance of 0.1 h + 0.9 stop_gradient(h) from h: {max_ulp(blend(h).numpy(), h.numpy()):g} ULP")
# --8<-- [end:blend-value]
