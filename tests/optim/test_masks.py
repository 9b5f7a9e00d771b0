"""Masks: a frozen element keeps its value and every slot exactly; the mask may change
every step; elements never frozen follow the unmasked run bit for bit.  And question 1:
zero gradients do not freeze a parameter under Adam, masks do."""

from __future__ import annotations

import numpy as np
import pytest

import refopt as rf
from refopt.oracle.run import run_refopt
from tests.optim.streams import make_run

RULES = [
    ("adam", "torch", {}),
    ("adam", "keras", {"amsgrad": True}),
    ("adam", "tf1", {}),
    ("adam", "optax", {}),
    ("adamw", "torch", {"amsgrad": True}),
    ("adamw", "bert", {}),
    ("adamw", "optax", {}),
    ("sgd", "torch", {"momentum": 0.9, "dampening": 0.2}),
    ("sgd", "keras", {"momentum": 0.9}),
    ("sgd", "tf1", {"momentum": 0.9, "nesterov": True}),
    ("sgd", "optax", {"momentum": 0.9}),
]


@pytest.mark.parametrize("rule,convention,options", RULES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_changing_masks_freeze_exactly(rule, convention, options, dtype) -> None:
    steps = 25
    plain = make_run(rule, convention, dtype, options, steps=steps, seed=11, none_every=0)
    rng = np.random.default_rng(12)
    masks = []
    always = {}
    for n, v in plain.variables.items():
        always[n] = rng.random(v.shape) < 0.3  # these elements are never frozen
    for _ in range(steps):
        masks.append({n: always[n] | (rng.random(v.shape) < 0.5) for n, v in plain.variables.items()})
    masked = make_run(rule, convention, dtype, options, steps=steps, seed=11, none_every=0, masks=masks)
    a, b = run_refopt(plain), run_refopt(masked)
    for n in plain.variables:
        for k in range(steps):
            frozen = ~masks[k][n]
            before, after = b.params[n][k], b.params[n][k + 1]
            assert np.array_equal(after[frozen], before[frozen]), (n, k)
            for s, hist in b.slots[n].items():
                prev = hist[k - 1] if k else np.zeros_like(hist[0])
                assert np.array_equal(hist[k][frozen], prev[frozen]), (n, k, s)
            keep = always[n]
            assert np.array_equal(after[keep], a.params[n][k + 1][keep]), (n, k)
            for s in a.slots[n]:
                assert np.array_equal(b.slots[n][s][k][keep], a.slots[n][s][k][keep]), (n, k, s)


def test_zero_gradients_do_not_freeze_adam_but_masks_do() -> None:
    """Question 1 (pytorch/pytorch#18404): once m is non-zero, a zero gradient still
    moves a parameter under Adam; a mask leaves it exactly where it is."""
    w = rf.Variable(np.array([1.0, 1.0]), name="w")
    opt = rf.optim.Adam([w], learning_rate=0.1)
    opt.apply_gradients([(np.array([0.5, 0.5]), w)])  # m becomes non-zero
    after_one = w.numpy()
    opt.apply_gradients([(np.array([0.0, 0.0]), w)])
    assert np.all(w.numpy() != after_one)  # zero gradients: both still move
    frozen = w.numpy()
    opt.apply_gradients([(np.array([0.0, 0.0]), w)], masks={w: np.array([False, True])})
    assert w.numpy()[0] == frozen[0] and w.numpy()[1] != frozen[1]
    m = opt.get_slot(w, "m").numpy()
    assert m[0] != m[1]  # the frozen element's moment did not decay either


@pytest.mark.parametrize("t", [1, 2, 10, 100, 1000])
def test_thawed_element_first_step_follows_the_documented_formula(t) -> None:
    """docs/optim.md: an element frozen from the start, thawed at step t, moves by
    lr * r(t) with r(t) = ((1-b1)/(1-b1^t)) / sqrt((1-b2)/(1-b2^t))."""
    b1, b2, lr = 0.9, 0.999, 0.1
    w = rf.Variable(np.zeros(2), name="w")
    opt = rf.optim.Adam([w], learning_rate=lr, epsilon=0.0)
    for _ in range(t - 1):
        opt.apply_gradients([(np.array([1.0, 0.5]), w)], masks={w: np.array([True, False])})
    assert w.numpy()[1] == 0.0
    opt.apply_gradients([(np.array([1.0, 0.5]), w)])
    r = ((1 - b1) / (1 - b1**t)) / np.sqrt((1 - b2) / (1 - b2**t))
    assert -w.numpy()[1] == pytest.approx(lr * r, rel=1e-12)
