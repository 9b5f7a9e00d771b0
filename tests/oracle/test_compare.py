"""compare(): per-step, per-variable errors and the first divergence."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from refopt.oracle import scenarios as S
from refopt.oracle.compare import compare


def test_identical_and_perturbed() -> None:
    a = S.run_scenario(S.get("adam-tf1"))
    assert compare(a, a).identical and compare(a, a).first_divergence() is None
    b = copy.deepcopy(a)
    p = b.params["head/kernel"]
    p[7, 2, 3] = np.nextafter(p[7, 2, 3], np.float32(np.inf))
    p[9, 0, 0] = p[9, 0, 0] + np.float32(1e-3)
    c = compare(b, a)
    assert c.first_divergence() == (7, "head/kernel")
    assert c.params["head/kernel"]["max_ulp"][7] == 1 and c.params["head/kernel"]["max_ulp"][8] == 0
    assert c.params["head/kernel"]["max_abs"][9] == pytest.approx(1e-3, rel=1e-3)
    assert not c.identical and c.within({"max_abs": 2e-3}) and not c.within({"max_ulp": 0})
    d = c.to_dict()
    assert d["first_divergence"] == {"step": 7, "variable": "head/kernel"}
    assert "first divergence at step 7 in 'head/kernel'" in c.summary()
    short = compare(a, S.run_scenario(S.Scenario.from_dict({**S.get("adam-tf1").to_dict(), "steps": 3})))
    assert not short.identical and short.differences == ["step counts 20 and 3 (the first 3 compared)"]
    assert short.max_ulp == 0  # the three common steps agree


@pytest.fixture(scope="module")
def torch_sgd():
    return S.run_scenario(S.get("sgd-torch-momentum-dampening"))


def _one_change(traj, change):
    other = copy.deepcopy(traj)
    change(other)
    return compare(traj, other), compare(other, traj)


@pytest.mark.parametrize(
    "change, needle",
    [
        # the cases that used to print "identical" and exit 0
        (lambda t: t.slots["head/kernel"].pop("momentum"), "slot 'momentum' of 'head/kernel' only in the"),
        (lambda t: t.grads["head/kernel"].__setitem__((4, 1, 1), 7.0), "the recorded gradients differ"),
        (lambda t: t.lrs.__setitem__(5, t.lrs[5] * 2), "the learning rates differ: max .* first at step 5"),
        (lambda t: t.grad_present["head/kernel"].__setitem__(5, False), "gradient of 'head/kernel' present in one"),
        # and the rest of the structure
        (lambda t: t.params.__setitem__("extra", t.params["head/kernel"]), "variables only in the"),
        (
            lambda t: t.params.__setitem__("head/kernel", t.params["head/kernel"].astype(np.float64)),
            "variable 'head/kernel' is float(32|64)",
        ),
        (lambda t: t.slots["head/kernel"]["momentum"].__setitem__((19, 0, 0), 1.0), "slots: momentum"),
    ],
)
def test_every_difference_is_reported_and_none_is_identical(torch_sgd, change, needle) -> None:
    forward, backward = _one_change(torch_sgd, change)
    for cmp in (forward, backward):
        assert not cmp.identical
        # a tolerance forgives numbers, never a structural or input difference
        assert cmp.within({"max_ulp": np.inf}) == (needle == "slots: momentum")
        assert re.search(needle, cmp.summary()), cmp.summary()
        assert "identical" not in cmp.summary()
        assert cmp.to_dict()["identical"] is False


def test_zero_step_trajectories_compare(tmp_path) -> None:
    from refopt.oracle.run import run_refopt
    from refopt.oracle.trajectory import load

    run = S.materialize(S.get("adam-torch-amsgrad"))
    run.grads, run.lrs = [], []
    empty = run_refopt(run)
    empty.slots = {n: {"m": np.zeros((0, *p.shape[1:]), p.dtype)} for n, p in empty.params.items()}
    back = load(empty.save(tmp_path / "zero.npz"))  # zero steps, slots declared: used to crash the comparison
    assert back.steps == 0 and back.slots["head/kernel"]["m"].shape == (0, 9, 7)
    cmp = compare(empty, back)
    assert cmp.identical and "identical" in cmp.summary() and cmp.first_divergence() is None
    moved = copy.deepcopy(back)
    moved.params["head/kernel"][0, 0, 0] += 1.0
    assert compare(empty, moved).first_divergence() == (0, "head/kernel")
