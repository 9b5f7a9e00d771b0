"""Train a tiny linear regression with refopt's engine and print the loss going down.

    python -m refopt.examples.regression

Data: y = X w* + b* + noise with fixed seeds; model y_hat = X w + b; loss = mean squared
error; plain gradient descent on the gradients from ``rf.value_and_grad``.
"""

from __future__ import annotations

import numpy as np

import refopt as rf


def train(steps: int = 50, learning_rate: float = 0.1, seed: int = 0, verbose: bool = True) -> list[float]:
    """Fit the regression; return the loss before each step."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((128, 4))
    w_true, b_true = np.array([1.5, -2.0, 0.5, 3.0]), 0.7
    y = x @ w_true + b_true + 0.01 * rng.standard_normal(128)
    xs, ys = rf.constant(x), rf.constant(y)

    def loss_fn(w: rf.Tensor, b: rf.Tensor) -> rf.Tensor:
        return rf.mean(rf.square(xs @ w + b - ys))

    w = rf.Variable(np.zeros(4), name="w")
    b = rf.Variable(np.zeros(()), name="b")
    step = rf.value_and_grad(loss_fn, argnums=(0, 1))
    losses = []
    for i in range(steps):
        loss, (gw, gb) = step(w, b)
        losses.append(loss.item())
        w.assign(w.data - learning_rate * gw.data)
        b.assign(b.data - learning_rate * gb.data)
        if verbose and (i % 10 == 0 or i == steps - 1):
            print(f"step {i:3d}  loss {losses[-1]:.6f}")
    if verbose:
        print(f"learned w = {np.round(w.numpy(), 3)}, b = {b.item():.3f} (true {w_true}, {b_true})")
    return losses


if __name__ == "__main__":
    train()
