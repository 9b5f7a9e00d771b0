"""Scenarios: declarative, JSON-serialisable descriptions of optimizer runs, and the
registry ``refopt verify`` checks.

A scenario says everything a run depends on::

    {
      "name": "adam-torch", "description": "...",
      "dtype": "float32", "backend": "numpy", "steps": 20,
      "variables": {"encoder/kernel": [6, 5], ...},        # synthetic source only
      "init_seed": 0,
      "gradients": {"kind": "synthetic", "seed": 1, "zero_slices": true, "missing_every": 5}
                 | {"kind": "model", "sizes": [6, 8, 3], "activation": "tanh",
                    "loss": "sparse_softmax_cross_entropy" | "mean_squared_error",
                    "batch": 16, "data_seed": 1, "routing": null | {"aux": ["^dense/"]}},
      "optimizer": {"rule": "adam", "convention": "torch", "hyper": {...},
                    "learning_rate": 0.01 | {"schedule": "bert", "args": {...}},
                    "lr_multipliers": {...}, "exclude_from_weight_decay": [...] | null,
                    "clip": {"global_clipnorm": 1.0}},
      "masks": null | {"seed": 3, "keep": 0.5, "always": 0.3},
      "tolerance": {"max_ulp": 0} | {"max_abs": 1e-6}
    }

A *synthetic* source is a seeded stream: normal gradients, optionally exactly-zero
slices and, every ``missing_every`` steps, one variable without a gradient.  A *model*
source is a small MLP trained by refopt on seeded data: refopt computes the gradients
(its engine), and frameworks replay them -- what is compared is the optimizer.  With
``routing``, a second loss (the mean square of the hidden activations) is routed to the
variables its patterns match, the main loss to the rest, in one ``minimize``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from refopt.backend import BACKENDS
from refopt.oracle.run import Run, make_optimizer
from refopt.oracle.trajectory import Recorder, Trajectory

__all__ = ["Scenario", "REGISTRY", "get", "names", "materialize", "run_scenario", "ScenarioError"]


class ScenarioError(ValueError):
    """A scenario description that cannot be run."""


_DEFAULT_VARIABLES = {
    "encoder/dense/kernel": [6, 5],
    "encoder/dense/bias": [5],
    "encoder/layer_norm/gamma": [3, 4],
    "head/kernel": [9, 7],
}


@dataclasses.dataclass
class Scenario:
    """One runnable description (see the module docstring for the fields)."""

    name: str
    optimizer: dict[str, Any]
    dtype: str = "float32"
    steps: int = 20
    variables: dict[str, list[int]] | None = None
    init_seed: int = 0
    gradients: dict[str, Any] = dataclasses.field(default_factory=lambda: {"kind": "synthetic", "seed": 1})
    masks: dict[str, Any] | None = None
    backend: str = "numpy"
    tolerance: dict[str, float] = dataclasses.field(default_factory=lambda: {"max_ulp": 0})
    description: str = ""

    def __post_init__(self) -> None:
        self.validate()

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scenario:
        if not isinstance(d, Mapping):
            raise ScenarioError(f"a scenario is a JSON object (a mapping), not {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ScenarioError(f"scenario {d.get('name')!r}: unknown fields {unknown}; fields: {sorted(fields)}")
        if "name" not in d or "optimizer" not in d:
            raise ScenarioError("a scenario needs at least 'name' and 'optimizer'")
        return cls(**copy.deepcopy(dict(d)))

    def with_dtype(self, dtype: str) -> Scenario:
        d = self.to_dict()
        d["dtype"] = dtype
        return Scenario.from_dict(d)

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Check every field -- types, ranges, and every number that enters a run (each
        step's learning rate, multipliers, clipping, tolerances) -- and that the
        optimizer constructs; a :class:`ScenarioError` names the field."""
        where = f"scenario {self.name!r}"

        def fail(problem: str) -> ScenarioError:
            return ScenarioError(f"{where}: {problem}")

        if not isinstance(self.name, str) or not self.name:
            raise ScenarioError(f"a scenario's name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.description, str):
            raise fail("description must be a string")
        if self.dtype not in ("float32", "float64"):
            raise fail(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not _is_int(self.steps) or self.steps < 1:
            raise fail(f"steps must be a positive int, got {self.steps!r}")
        if not _is_int(self.init_seed) or self.init_seed < 0:
            raise fail(f"init_seed must be an int >= 0, got {self.init_seed!r}")
        if self.backend not in BACKENDS:
            raise fail(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.variables is not None and not (
            isinstance(self.variables, dict)
            and self.variables
            and all(
                isinstance(n, str) and isinstance(s, list) and all(_is_int(d) and d >= 0 for d in s)
                for n, s in self.variables.items()
            )
        ):
            raise fail(f"variables must map names to shapes (lists of ints >= 0), got {self.variables!r}")
        self._validate_gradients(fail)
        self._validate_optimizer(fail)
        if self.masks is not None:
            _check_keys(self.masks, "masks", {"seed", "keep", "always"}, fail)
            if not _is_int(self.masks.get("seed", 0)) or self.masks.get("seed", 0) < 0:
                raise fail(f"masks.seed must be an int >= 0, got {self.masks.get('seed')!r}")
            for key in ("keep", "always"):
                if not _is_number(self.masks.get(key, 0.5)) or not 0 <= self.masks.get(key, 0.5) <= 1:
                    raise fail(f"masks.{key} must be a fraction in [0, 1], got {self.masks.get(key)!r}")
        if (
            not isinstance(self.tolerance, dict)
            or not self.tolerance
            or not set(self.tolerance) <= {"max_ulp", "max_abs"}
        ):
            raise fail(f"tolerance takes max_ulp and/or max_abs, got {self.tolerance!r}")
        for key, value in self.tolerance.items():
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise fail(f"tolerance.{key} must be a finite number >= 0, got {value!r}")

    def _validate_gradients(self, fail: Any) -> None:
        g = self.gradients
        kind = g.get("kind") if isinstance(g, dict) else None
        if kind not in ("synthetic", "model"):
            raise fail(f"gradients.kind must be 'synthetic' or 'model', got {kind!r}")
        if kind == "synthetic":
            _check_keys(g, "gradients", {"kind", "seed", "zero_slices", "missing_every"}, fail)
            for key in ("seed", "missing_every"):
                if not _is_int(g.get(key, 0)) or g.get(key, 0) < 0:
                    raise fail(f"gradients.{key} must be an int >= 0, got {g.get(key)!r}")
            if not isinstance(g.get("zero_slices", True), bool):
                raise fail(f"gradients.zero_slices must be true or false, got {g.get('zero_slices')!r}")
            return
        if self.variables is not None:
            raise fail("a model source defines its own variables; drop 'variables'")
        _check_keys(g, "gradients", {"kind", "sizes", "activation", "loss", "batch", "data_seed", "routing"}, fail)
        sizes = g.get("sizes", [6, 8, 3])
        if not (isinstance(sizes, list) and len(sizes) >= 2 and all(_is_int(n) and n > 0 for n in sizes)):
            raise fail(f"gradients.sizes must list at least two layer widths (ints > 0), got {sizes!r}")
        if g.get("activation", "tanh") not in ("tanh", "relu", "gelu"):
            raise fail(f"unknown activation {g.get('activation')!r}; known: tanh, relu, gelu")
        if g.get("loss", "sparse_softmax_cross_entropy") not in ("sparse_softmax_cross_entropy", "mean_squared_error"):
            raise fail(f"unknown loss {g.get('loss')!r}; known: sparse_softmax_cross_entropy, mean_squared_error")
        if not _is_int(g.get("batch", 16)) or g.get("batch", 16) < 1:
            raise fail(f"gradients.batch must be an int > 0, got {g.get('batch')!r}")
        if not _is_int(g.get("data_seed", 1)) or g.get("data_seed", 1) < 0:
            raise fail(f"gradients.data_seed must be an int >= 0, got {g.get('data_seed')!r}")
        routing = g.get("routing")
        if routing is not None:
            _check_keys(routing, "gradients.routing", {"aux"}, fail)
            aux = routing.get("aux")
            if not (isinstance(aux, list) and aux and all(_is_pattern(p) for p in aux)):
                raise fail(f"gradients.routing.aux must be a list of regexes, got {aux!r}")

    def _validate_optimizer(self, fail: Any) -> None:
        opt = self.optimizer
        if not isinstance(opt, dict):
            raise fail(f"optimizer must be an object, got {type(opt).__name__}")
        if opt.get("rule") not in ("sgd", "adam", "adamw"):
            raise fail(f"optimizer.rule must be sgd, adam or adamw, got {opt.get('rule')!r}")
        unknown = sorted(
            set(opt)
            - {"rule", "convention", "hyper", "learning_rate", "lr_multipliers", "exclude_from_weight_decay", "clip"}
        )
        if unknown:
            raise fail(f"unknown optimizer fields {unknown}")
        if self.convention == "bert" and self.dtype != "float32":
            raise fail("the bert convention is float32 (BERT's slots are float32)")
        hyper = opt.get("hyper", {})
        if not isinstance(hyper, dict):
            raise fail(f"optimizer.hyper must be an object, got {hyper!r}")
        from refopt.oracle.run import HYPER_NAMES

        for key, value in hyper.items():
            if key not in HYPER_NAMES:
                raise fail(f"unknown hyperparameter optimizer.hyper.{key}; known: {', '.join(HYPER_NAMES)}")
            if not (isinstance(value, bool) or (_is_number(value) and math.isfinite(value))):
                raise fail(f"optimizer.hyper.{key} must be a finite number or a bool, got {value!r}")
        try:
            lrs = _learning_rates(opt.get("learning_rate", 0.01), self.steps)  # every step's value, checked
        except ScenarioError as exc:
            raise fail(f"optimizer: {exc}") from None
        mults = opt.get("lr_multipliers", {})
        if not isinstance(mults, dict):
            raise fail(f"optimizer.lr_multipliers must map regexes to factors, got {mults!r}")
        excl = opt.get("exclude_from_weight_decay")
        if excl is not None and not (isinstance(excl, list) and all(_is_pattern(p) for p in excl)):
            raise fail(f"optimizer.exclude_from_weight_decay must be null or a list of regexes, got {excl!r}")
        clip = opt.get("clip", {})
        if not isinstance(clip, dict):
            raise fail(f"optimizer.clip must be an object, got {clip!r}")
        _check_keys(clip, "optimizer.clip", {"global_clipnorm", "clipnorm", "clipvalue"}, fail)
        # the optimizer's own checks, at load: hyperparameters, multipliers, clipping, regexes
        from refopt import optim

        cls = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}[self.rule]
        takes = [k for k in inspect.signature(cls).parameters if k in HYPER_NAMES]
        for key in hyper:
            if key not in takes:
                raise fail(f"optimizer.hyper.{key}: {cls.__name__} has no such hyperparameter (it takes {takes})")
        kwargs: dict[str, Any] = dict(hyper)
        if excl is not None:
            kwargs["exclude_from_weight_decay"] = excl
        try:
            cls(learning_rate=lrs[0], convention=self.convention, lr_multipliers=mults or None, **clip, **kwargs)
        except (ValueError, TypeError) as exc:
            raise fail(f"optimizer: {exc}") from None

    @property
    def convention(self) -> str:
        return self.optimizer.get("convention", "torch")

    @property
    def rule(self) -> str:
        return self.optimizer["rule"]


# -- materialisation ------------------------------------------------------------------------
def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_pattern(p: Any) -> bool:
    if not isinstance(p, str):
        return False
    try:
        re.compile(p)
    except re.error:
        return False
    return True


def _check_keys(d: Any, what: str, allowed: set[str], fail: Any) -> None:
    if not isinstance(d, dict):
        raise fail(f"{what} must be an object, got {d!r}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise fail(f"unknown {what} fields {unknown}; fields: {sorted(allowed)}")


def _learning_rates(spec: Any, steps: int) -> list[float]:
    """Each step's learning rate; every one a finite number >= 0."""
    from refopt.optim import schedules

    if _is_number(spec):
        lrs = [float(spec)] * steps
    elif isinstance(spec, Mapping) and "schedule" in spec:
        name = spec["schedule"]
        fn = getattr(schedules, name, None) if isinstance(name, str) and not name.startswith("_") else None
        if fn is None or name not in schedules.__all__:
            raise ScenarioError(
                f"unknown schedule {name!r}; see refopt.optim.schedules: {', '.join(schedules.__all__)}"
            )
        unknown = sorted(set(spec) - {"schedule", "args"})
        args = spec.get("args", {})
        if unknown or not isinstance(args, dict):
            raise ScenarioError(f"a schedule is {{'schedule': name, 'args': {{...}}}}, got {spec!r}")
        try:
            sched = fn(**args)
            lrs = [float(sched(k)) for k in range(steps)]
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ScenarioError(f"schedule {name!r} with args {args!r}: {exc}") from None
    elif isinstance(spec, (list, tuple)) and len(spec) == steps and all(_is_number(x) for x in spec):
        lrs = [float(x) for x in spec]
    else:
        raise ScenarioError(
            f"learning_rate must be a number, a list of one number per step ({steps}) or "
            f"{{'schedule': ..., 'args': ...}}, got {spec!r}"
        )
    for k, lr in enumerate(lrs):
        if not (math.isfinite(lr) and lr >= 0):
            raise ScenarioError(f"learning_rate at step {k} is {lr!r}; a learning rate must be a finite number >= 0")
    return lrs


def _masks(sc: Scenario, variables: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]] | None:
    if sc.masks is None:
        return None
    rng = np.random.default_rng(sc.masks.get("seed", 0))
    keep, always_frac = sc.masks.get("keep", 0.5), sc.masks.get("always", 0.3)
    always = {n: rng.random(v.shape) < always_frac for n, v in variables.items()}
    return [{n: always[n] | (rng.random(v.shape) < keep) for n, v in variables.items()} for _ in range(sc.steps)]


def always_unmasked(sc: Scenario, variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The elements a scenario's masks never freeze (drawn first from the mask seed)."""
    rng = np.random.default_rng(sc.masks.get("seed", 0))
    frac = sc.masks.get("always", 0.3)
    return {n: rng.random(v.shape) < frac for n, v in variables.items()}


def _run_from(sc: Scenario, variables: dict[str, np.ndarray], grads: list[dict[str, Any]]) -> Run:
    opt = sc.optimizer
    return Run(
        rule=sc.rule,
        convention=sc.convention,
        dtype=sc.dtype,
        variables=variables,
        grads=grads,
        lrs=_learning_rates(opt.get("learning_rate", 0.01), sc.steps),
        hyper=dict(opt.get("hyper", {})),
        lr_multipliers=dict(opt.get("lr_multipliers", {})),
        exclude_from_weight_decay=opt.get("exclude_from_weight_decay"),
        clip=dict(opt.get("clip", {})),
        masks=_masks(sc, variables),
    )


def materialize(sc: Scenario) -> Run:
    """The concrete run of a synthetic scenario (model scenarios: see :func:`run_scenario`)."""
    if sc.gradients["kind"] != "synthetic":
        raise ScenarioError(f"scenario {sc.name!r} has a model source: run it with run_scenario")
    shapes = sc.variables or _DEFAULT_VARIABLES
    rng = np.random.default_rng(sc.init_seed)
    variables = {n: rng.standard_normal(tuple(s)).astype(sc.dtype) for n, s in shapes.items()}
    g = sc.gradients
    grng = np.random.default_rng(g.get("seed", 1))
    names = list(variables)
    every = g.get("missing_every", 0)
    grads = []
    for k in range(sc.steps):
        step = {n: grng.standard_normal(v.shape).astype(sc.dtype) for n, v in variables.items()}
        if g.get("zero_slices", True):
            for n in names:
                if step[n].ndim == 2 and step[n].shape[0] > 2:
                    step[n][0] = 0.0  # an exactly-zero row
        if every and k % every == every - 1:
            step[names[(k // every) % len(names)]] = None
        grads.append(step)
    return _run_from(sc, variables, grads)


def build_model(sc: Scenario) -> tuple[Any, Any, Any]:
    """The MLP and data of a model scenario: ``(model, x, y)``, weights drawn from
    ``init_seed`` and data from ``data_seed`` (explicit generators, no global state)."""
    import refopt as rf

    g = sc.gradients
    sizes = g.get("sizes", [6, 8, 3])
    acts = {"tanh": rf.nn.Tanh, "relu": rf.nn.ReLU, "gelu": rf.nn.GELU}
    if g.get("activation", "tanh") not in acts:
        raise ScenarioError(f"scenario {sc.name!r}: unknown activation {g.get('activation')!r}; known: {list(acts)}")
    batch = g.get("batch", 16)
    with rf.use_backend(sc.backend):
        wrng = np.random.default_rng(sc.init_seed)
        layers: list[Any] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(rf.nn.Dense(a, b, dtype=sc.dtype, seed=wrng))
            if i < len(sizes) - 2:
                layers.append(acts[g.get("activation", "tanh")]())
        model = rf.nn.Sequential(layers)
        drng = np.random.default_rng(g.get("data_seed", 1))
        x = rf.constant(drng.standard_normal((batch, sizes[0])).astype(sc.dtype))
        loss_kind = g.get("loss", "sparse_softmax_cross_entropy")
        if loss_kind == "sparse_softmax_cross_entropy":
            y = rf.constant(drng.integers(0, sizes[-1], batch))
        elif loss_kind == "mean_squared_error":
            y = rf.constant(drng.standard_normal((batch, sizes[-1])).astype(sc.dtype))
        else:
            raise ScenarioError(f"scenario {sc.name!r}: unknown loss {loss_kind!r}")
    return model, x, y


def _model_run(sc: Scenario) -> Trajectory:
    """Train the scenario's MLP with refopt, recording gradients, slots and values -- in
    reproducible mode whatever the caller's (the golden files hold these bits)."""
    import refopt as rf

    with rf.use_mode("reproducible"):
        return _model_run_reproducible(sc)


def _model_run_reproducible(sc: Scenario) -> Trajectory:
    import refopt as rf
    from refopt.nn import losses
    from refopt.oracle.run import collect_slots, refopt_meta

    model, x, y = build_model(sc)
    loss_fn = getattr(losses, sc.gradients.get("loss", "sparse_softmax_cross_entropy"))
    variables = model.variables()
    run = _run_from(sc, {v.name: v.numpy() for v in variables}, [{} for _ in range(sc.steps)])
    opt = make_optimizer(run, variables)
    routing = sc.gradients.get("routing")
    if routing:
        aux_ids = {id(v) for v in variables if any(re.search(p, v.name) for p in routing["aux"])}
        aux_vars = [v for v in variables if id(v) in aux_ids]  # identity: == on tensors is elementwise
        main_vars = [v for v in variables if id(v) not in aux_ids]
    rec = Recorder(run)
    grads: list[dict[str, Any]] = []
    for k in range(sc.steps):
        masks = None if run.masks is None else {v: run.masks[k][v.name] for v in variables}
        hidden = model.layers[0](x)
        out = hidden
        for layer in model.layers[1:]:
            out = layer(out)
        main = loss_fn(y, out, reduction="mean")
        if routing:
            gv = opt.minimize({main: main_vars, rf.mean(hidden * hidden): aux_vars}, masks=masks)
        else:
            gv = opt.minimize(main, list(variables), masks=masks)
        grads.append({v.name: None if gr is None else rf.to_numpy(gr) for gr, v in gv})
        rec.step({v.name: v.numpy() for v in variables}, collect_slots(opt, variables))
    run.grads = grads
    return rec.finish(refopt_meta(sc.backend))


def replay_run(sc: Scenario, traj: Trajectory) -> Run:
    """The run that replays a trajectory's recorded inputs -- initial values, gradients and
    learning rates -- under ``sc``'s optimizer (model scenarios; golden checks)."""
    init = {n: traj.params[n][0] for n in traj.names}
    grads = [
        {n: (traj.grads[n][k] if traj.grad_present[n][k] else None) for n in traj.names} for k in range(traj.steps)
    ]
    run = _run_from(sc, init, grads)
    run.lrs = [float(x) for x in traj.lrs]
    return run


def run_scenario(
    sc: Scenario, framework: str = "refopt", _refopt: Trajectory | None = None, **kwargs: Any
) -> Trajectory:
    """Run ``sc`` in refopt or a framework adapter ("torch", "keras", "tf1", "optax";
    kwargs select a path: ``path=`` for torch, ``backend=`` for keras, ``jit=`` for
    optax).  Model scenarios run in refopt first; frameworks replay its gradients.
    A framework never sees masks: it runs the unmasked update (see verify)."""
    if framework == "refopt":
        if sc.gradients["kind"] == "model":
            traj = _model_run(sc)
        else:
            from refopt.oracle.run import run_refopt

            traj = run_refopt(materialize(sc), sc.backend, **kwargs)
    else:
        from refopt.oracle.adapters import run_framework

        if sc.gradients["kind"] == "model":
            run = replay_run(sc, _refopt if _refopt is not None else _model_run(sc))
        else:
            run = materialize(sc)
        run.masks = None
        traj = run_framework(run, framework, **kwargs)
    traj.scenario = sc.to_dict()
    return traj


# -- the registry ---------------------------------------------------------------------------
def _base(rule: str, convention: str, hyper: dict[str, Any], **kw: Any) -> Scenario:
    name = f"{rule}-{convention}" + ("".join(f"-{k}" for k in hyper if k not in ("weight_decay",)) if hyper else "")
    return Scenario(
        name=name,
        description=f"{rule} ({', '.join(f'{k}={v}' for k, v in hyper.items()) or 'defaults'}) in the {convention} "
        "convention on a seeded gradient stream with zero rows and missing gradients",
        optimizer={
            "rule": rule,
            "convention": convention,
            "hyper": hyper,
            "learning_rate": {
                "schedule": "exponential_decay",
                "args": {"init": 0.01, "decay_steps": 10, "decay_rate": 0.7},
            },
        },
        gradients={"kind": "synthetic", "seed": 1, "zero_slices": True, "missing_every": 6},
        **kw,
    )


_SCENARIOS = [
    _base("sgd", "torch", {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    _base("sgd", "keras", {"momentum": 0.9, "nesterov": True}),
    _base("sgd", "tf1", {"momentum": 0.9}),
    _base("sgd", "optax", {"momentum": 0.9, "nesterov": True}),
    _base("adam", "torch", {"amsgrad": True, "weight_decay": 0.01}),
    _base("adam", "keras", {"amsgrad": True}),
    _base("adam", "tf1", {}),
    _base("adam", "optax", {"eps_root": 1e-8}),
    _base("adamw", "torch", {"weight_decay": 0.05}),
    _base("adamw", "keras", {"weight_decay": 0.05}),
    _base("adamw", "optax", {"weight_decay": 0.05}),
    _base("adamw", "bert", {}),
    Scenario(
        name="dynamic-freezing-adam",
        description="Question 1: Adam with a different random subset of elements frozen every step (masks). "
        "Frozen elements and their slots stay exact; never-frozen elements follow the framework's "
        "unmasked run bit for bit.",
        optimizer={"rule": "adam", "convention": "torch", "learning_rate": 0.01},
        gradients={"kind": "synthetic", "seed": 4, "zero_slices": True, "missing_every": 0},
        masks={"seed": 5, "keep": 0.5, "always": 0.3},
    ),
    Scenario(
        name="joint-loss-routing",
        description="Question 2: an MLP whose cross-entropy updates the output layer and whose auxiliary loss "
        "(mean square of the hidden activations) updates only the hidden layer, in one minimize.",
        optimizer={"rule": "adam", "convention": "keras", "learning_rate": 0.01},
        gradients={
            "kind": "model",
            "sizes": [6, 8, 3],
            "activation": "tanh",
            "loss": "sparse_softmax_cross_entropy",
            "batch": 16,
            "data_seed": 2,
            "routing": {"aux": ["^dense/"]},
        },
    ),
    Scenario(
        name="layerwise-lr",
        description="Question 4: layer-wise learning rates as multipliers of the step size (per-group lr in "
        "PyTorch), Adam, on an MLP regression.",
        optimizer={
            "rule": "adam",
            "convention": "torch",
            "learning_rate": 0.01,
            "lr_multipliers": {"^dense/": 0.1, "^dense_1/": 0.5},
        },
        gradients={
            "kind": "model",
            "sizes": [5, 7, 4, 2],
            "activation": "gelu",
            "loss": "mean_squared_error",
            "batch": 12,
            "data_seed": 3,
        },
    ),
    Scenario(
        name="bert-adamw",
        description="Question 5: BERT's AdamWeightDecay with its exclusions (LayerNorm, layer_norm, bias), "
        "warmup then linear decay, and global-norm clipping at 1.0 (the clip scale's global norm is "
        "a reduction in TensorFlow's order, so the tolerance is 1e-6 absolute, not 0 ULP).",
        optimizer={
            "rule": "adamw",
            "convention": "bert",
            "learning_rate": {
                "schedule": "bert",
                "args": {"init_lr": 5e-3, "num_train_steps": 20, "num_warmup_steps": 5},
            },
            "clip": {"global_clipnorm": 1.0},
        },
        gradients={"kind": "synthetic", "seed": 6, "zero_slices": True, "missing_every": 0},
        tolerance={"max_abs": 1e-6},
    ),
]

REGISTRY: dict[str, Scenario] = {s.name: s for s in _SCENARIOS}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Scenario:
    try:
        return Scenario.from_dict(REGISTRY[name].to_dict())
    except KeyError:
        raise ScenarioError(
            f"unknown scenario {name!r}; `refopt scenarios` lists them: {', '.join(REGISTRY)}"
        ) from None
