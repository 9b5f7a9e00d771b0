"""Scenarios: JSON round trip, validation, the registry's coverage, model sources."""

from __future__ import annotations

import json

import numpy as np
import pytest

import refopt as rf
from refopt.oracle import scenarios as S
from refopt.testing import assert_trajectory_equal


def test_json_round_trip_gives_the_same_run() -> None:
    for name in ("adamw-bert", "joint-loss-routing", "dynamic-freezing-adam"):
        sc = S.get(name)
        again = S.Scenario.from_dict(json.loads(json.dumps(sc.to_dict())))
        assert again == sc
        assert_trajectory_equal(S.run_scenario(again), S.run_scenario(sc))


def test_registry_covers_every_optimizer_and_convention_and_each_user_problem() -> None:
    combos = {(S.get(n).rule, S.get(n).convention) for n in S.names()}
    for rule, conventions in (
        ("sgd", ("torch", "keras", "tf1", "optax")),
        ("adam", ("torch", "keras", "tf1", "optax")),
        ("adamw", ("torch", "keras", "optax", "bert")),
    ):
        for c in conventions:
            assert (rule, c) in combos
    assert S.get("dynamic-freezing-adam").masks is not None
    assert S.get("joint-loss-routing").gradients["routing"]
    assert S.get("layerwise-lr").optimizer["lr_multipliers"]
    bert = S.get("bert-adamw")
    assert bert.optimizer["clip"] == {"global_clipnorm": 1.0} and bert.optimizer["learning_rate"]["schedule"] == "bert"


def test_validation_errors_name_the_problem() -> None:
    base = S.get("adam-tf1").to_dict()
    with pytest.raises(S.ScenarioError, match=r"unknown fields \['colour'\]"):
        S.Scenario.from_dict({**base, "colour": "red"})
    with pytest.raises(S.ScenarioError, match="dtype must be float32 or float64"):
        S.Scenario.from_dict({**base, "dtype": "float16"})
    with pytest.raises(S.ScenarioError, match="bert convention is float32"):
        S.get("adamw-bert").with_dtype("float64")
    with pytest.raises(S.ScenarioError, match="optimizer.rule must be sgd, adam or adamw"):
        S.Scenario.from_dict({**base, "optimizer": {"rule": "lion"}})
    with pytest.raises(S.ScenarioError, match="unknown scenario 'nope'"):
        S.get("nope")
    with pytest.raises(S.ScenarioError, match="unknown schedule 'cosine'"):
        S.run_scenario(
            S.Scenario.from_dict(
                {**base, "optimizer": {"rule": "adam", "convention": "tf1", "learning_rate": {"schedule": "cosine"}}}
            )
        )


def test_synthetic_stream_has_zero_rows_and_missing_gradients() -> None:
    run = S.materialize(S.get("adam-torch-amsgrad"))
    assert any(g[n] is None for g in run.grads for n in g)
    k = next(k for k, g in enumerate(run.grads) if g["head/kernel"] is not None)
    assert not run.grads[k]["head/kernel"][0].any()
    assert run.lrs[0] == 0.01 and run.lrs[10] == pytest.approx(0.007)


def test_routing_scenario_gives_each_loss_its_own_variables() -> None:
    """joint-loss-routing: the hidden layer (dense/) learns from the auxiliary loss
    mean(h^2) only, the output layer (dense_1/) from the cross-entropy only -- checked at
    step 0 against gradients computed here by hand with rf.gradients."""
    sc = S.get("joint-loss-routing")
    traj = S.run_scenario(sc)
    model, x, y = S.build_model(sc)  # the same weights and data, before any update
    hidden = model.layers[0](x)
    out = model.layers[2](model.layers[1](hidden))
    ce = rf.nn.losses.sparse_softmax_cross_entropy(y, out, reduction="mean")
    aux = rf.mean(hidden * hidden)
    named = model.named_variables()
    want_aux = rf.gradients(aux, [named["dense/kernel"], named["dense/bias"]])
    want_ce = rf.gradients(ce, [named["dense_1/kernel"], named["dense_1/bias"]])
    for n, w in zip(["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"], want_aux + want_ce):
        np.testing.assert_array_equal(traj.grads[n][0], w.numpy())


def _with(change):
    d = json.loads(json.dumps(S.get("adam-tf1").to_dict()))
    change(d)
    return d


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["optimizer"].update(learning_rate=-0.1), "learning_rate at step 0 is -0.1"),
        (lambda d: d["optimizer"].update(learning_rate=float("nan")), "learning_rate at step 0 is nan"),
        (lambda d: d["optimizer"].update(learning_rate=[0.1] * 19 + [-1.0]), "learning_rate at step 19 is -1.0"),
        (lambda d: d["optimizer"].update(learning_rate=[0.1] * 3), "a list of one number per step"),
        (
            lambda d: d["optimizer"].update(
                learning_rate={"schedule": "polynomial_decay", "args": {"init": 0.1, "decay_steps": 10, "end": -0.1}}
            ),
            "learning_rate at step 6 is",  # decays through zero to -0.1
        ),
        (lambda d: d["optimizer"].update(learning_rate={"schedule": "bert", "args": {"x": 1}}), "unexpected keyword"),
        (lambda d: d["optimizer"]["hyper"].update(epsilon=float("inf")), "optimizer.hyper.epsilon must be a finite"),
        (
            lambda d: d["optimizer"]["hyper"].update(momentum=0.9),
            "optimizer.hyper.momentum: Adam has no such hyperparameter",
        ),
        (lambda d: d["optimizer"]["hyper"].update(amsgrad=True), "amsgrad=True .* not available"),
        (lambda d: d["optimizer"].update(lr_multipliers={"^head/": -2.0}), r"lr_multipliers\['\^head/'\] must be"),
        (lambda d: d["optimizer"].update(clip={"global_clipnorm": float("nan")}), "global_clipnorm must be a finite"),
        (lambda d: d["optimizer"].update(clip={"clipnorm": 1.0, "clipvalue": 1.0}), "at most one of"),
        (lambda d: d["optimizer"].update(clip={"norm": 1.0}), r"unknown optimizer.clip fields \['norm'\]"),
        (lambda d: d["optimizer"].update(exclude_from_weight_decay=["("]), "list of regexes"),
        (lambda d: d.update(steps=0), "steps must be a positive int"),
        (lambda d: d.update(steps=True), "steps must be a positive int"),
        (lambda d: d.update(init_seed=-1), "init_seed must be an int >= 0"),
        (lambda d: d.update(backend="tpu"), "backend must be one of"),
        (lambda d: d.update(variables={"w": [2, -3]}), "variables must map names to shapes"),
        (lambda d: d["gradients"].update(missing_every=-1), "gradients.missing_every must be an int >= 0"),
        (lambda d: d["gradients"].update(noise=1), r"unknown gradients fields \['noise'\]"),
        (lambda d: d.update(masks={"seed": 1, "keep": 1.5}), r"masks.keep must be a fraction in \[0, 1\]"),
        (lambda d: d.update(tolerance={"max_abs": -1e-6}), "tolerance.max_abs must be a finite number >= 0"),
        (lambda d: d.update(tolerance={}), "tolerance takes max_ulp and/or max_abs"),
        (lambda d: d.update(optimizer=["adam"]), "optimizer must be an object"),
    ],
)
def test_config_values_are_checked_at_load(change, message) -> None:
    with pytest.raises(S.ScenarioError, match=message):
        S.Scenario.from_dict(_with(change))


def test_model_source_fields_are_checked_at_load() -> None:
    d = json.loads(json.dumps(S.get("layerwise-lr").to_dict()))
    for field, value, message in (
        ("sizes", [5], "at least two layer widths"),
        ("activation", "swish", "unknown activation 'swish'"),
        ("loss", "hinge", "unknown loss 'hinge'"),
        ("batch", 0, "gradients.batch must be an int > 0"),
        ("routing", {"aux": "^dense/"}, "routing.aux must be a list of regexes"),
    ):
        with pytest.raises(S.ScenarioError, match=message):
            S.Scenario.from_dict({**d, "gradients": {**d["gradients"], field: value}})
    with pytest.raises(S.ScenarioError, match="a scenario is a JSON object"):
        S.Scenario.from_dict([d])
