"""The optimizer front end: construction, defaults, compute/apply/minimize, routing,
groups vs partitions, None gradients, slots, state, multipliers, and bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import refopt as rf
from refopt.optim import SGD, Adam, AdamW
from refopt.testing import assert_trajectory_equal

CONVENTIONS = ["torch", "keras", "tf1", "optax"]


def _vars(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    return [
        rf.Variable(rng.standard_normal((3, 4)).astype(dtype), name="a/kernel"),
        rf.Variable(rng.standard_normal(4).astype(dtype), name="a/bias"),
        rf.Variable(rng.standard_normal((2, 2)).astype(dtype), name="b/kernel"),
    ]


def _loss(vs, x):
    a, b, c = vs
    return rf.sum(rf.tanh(x @ a + b) ** 2) + rf.sum(c * c) * 0.5


def _snapshot(opt, vs):
    return [v.numpy() for v in vs], copy.deepcopy(opt.state_dict())


def _same(snap_a, snap_b) -> bool:
    (va, sa), (vb, sb) = snap_a, snap_b
    if any(not np.array_equal(x, y) for x, y in zip(va, vb)):
        return False
    if sa["iterations"] != sb["iterations"] or sa["variables"].keys() != sb["variables"].keys():
        return False
    for n in sa["variables"]:
        ea, eb = sa["variables"][n], sb["variables"][n]
        if ea["step"] != eb["step"] or ea["slots"].keys() != eb["slots"].keys():
            return False
        if any(not np.array_equal(ea["slots"][k], eb["slots"][k]) for k in ea["slots"]):
            return False
    return True


def test_construction_forms_and_defaults() -> None:
    vs = _vars()
    assert Adam(0.1).describe(None)
    assert Adam(vs)._defaults["learning_rate"] == 1e-3 == SGD(vs, convention="keras")._defaults["learning_rate"]
    for opt, lr in (
        (Adam(learning_rate=0.1), 0.1),
        (SGD(learning_rate=0.5, momentum=0.9), 0.5),
        (Adam(0.2), 0.2),
        (AdamW(), 1e-3),
        (Adam(vs), 1e-3),
        (AdamW(learning_rate=0.3, convention="bert"), 0.3),
    ):
        assert opt._defaults["learning_rate"] == lr
    opt = Adam(vs, learning_rate=0.05)
    assert opt.variables() == vs
    grouped = Adam(
        [{"params": vs[:2], "lr": 1e-4, "betas": (0.8, 0.9), "eps": 1e-6}, {"params": vs[2:]}], learning_rate=1e-3
    )
    h0, h2 = grouped._state(vs[0]).hyper, grouped._state(vs[2]).hyper
    assert (h0.beta1, h0.beta2, h0.epsilon, h2.beta1, h2.epsilon) == (0.8, 0.9, 1e-6, 0.9, 1e-8)
    assert Adam(convention="keras")._defaults["epsilon"] == 1e-7
    assert AdamW(convention="torch")._defaults["weight_decay"] == 1e-2
    assert AdamW(convention="keras")._defaults["weight_decay"] == 0.004
    assert AdamW(convention="optax")._defaults["weight_decay"] == 1e-4
    bert = AdamW(vs, convention="bert")
    assert bert._defaults["epsilon"] == 1e-6 and bert._state(vs[1]).hyper.weight_decay == 0.0
    assert bert._state(vs[0]).hyper.weight_decay == 0.01
    text = grouped.describe(None)
    assert "a/kernel" in text and "0.0001" in text and "torch" in text


def test_bad_construction_is_refused() -> None:
    with pytest.raises(
        ValueError, match="unknown convention 'pytorch'; valid conventions are torch, keras, tf1, optax, bert"
    ):
        Adam(convention="pytorch")
    with pytest.raises(
        ValueError, match=r"convention 'tf1' has no AdamW \(valid for AdamW: torch, keras, optax, bert\)"
    ):
        AdamW(convention="tf1")
    with pytest.raises(ValueError, match=r"maximize=True .* is not available in that framework"):
        Adam(maximize=True, convention="keras")
    with pytest.raises(ValueError, match="dampening=0.1"):
        SGD(momentum=0.9, dampening=0.1, convention="optax")
    with pytest.raises(ValueError, match="torch.optim.SGD requires momentum > 0 and dampening = 0"):
        SGD(nesterov=True)
    with pytest.raises(ValueError, match=r"parameter group 0: unknown keys \['momentum'\]"):
        Adam([{"params": _vars(), "momentum": 0.9}])
    with pytest.raises(TypeError, match="learning_rate given twice"):
        Adam(0.1, learning_rate=0.2)
    with pytest.raises(ValueError, match=r"torch.optim.Adam requires 0 <= lr \('Invalid learning rate: -1.0'\)"):
        Adam(-1.0)
    with pytest.raises(ValueError, match="learning_rate must be a number or a schedule"):
        Adam("fast")
    v = _vars()[0]
    with pytest.raises(ValueError, match="given to this optimizer twice"):
        Adam([v, v])


def test_compute_gradients_and_minimize_tf1_style() -> None:
    vs = _vars()
    frozen = rf.Variable(np.ones(4, np.float32), name="frozen", trainable=False)
    x = rf.constant(np.ones((5, 3), np.float32))
    opt = SGD(0.1)
    loss = _loss(vs, x) + rf.sum(frozen)
    gv = opt.compute_gradients(loss)
    assert sorted(v.name for _, v in gv) == ["a/bias", "a/kernel", "b/kernel"]  # not the non-trainable one
    assert all(g is not None for g, _ in gv)
    unrelated = rf.Variable(np.ones(2, np.float32), name="unrelated")
    ((g, _),) = opt.compute_gradients(loss, [unrelated])
    assert g is None
    before = vs[0].numpy()
    opt.minimize(lambda: _loss(vs, x))  # a callable loss, Keras style
    assert not np.array_equal(before, vs[0].numpy()) and opt.iterations == 1


def test_routed_minimize_equals_two_compute_gradients_and_one_apply() -> None:
    def setup():
        vs = _vars(seed=1)
        x = rf.constant(np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3))
        return vs, x

    vs1, x = setup()
    opt1 = Adam(vs1, learning_rate=0.01)
    vs2, _ = setup()
    opt2 = Adam(vs2, learning_rate=0.01)
    for _ in range(3):
        l1 = rf.sum(rf.tanh(x @ vs1[0] + vs1[1]))  # loss 1: a/kernel, a/bias
        l2 = rf.sum(vs1[2] * vs1[2]) + rf.sum(vs1[1] * vs1[1])  # loss 2: b/kernel and a/bias again
        opt1.minimize({l1: [vs1[0], vs1[1]], l2: [vs1[2], vs1[1]]})

        m1 = rf.sum(rf.tanh(x @ vs2[0] + vs2[1]))
        m2 = rf.sum(vs2[2] * vs2[2]) + rf.sum(vs2[1] * vs2[1])
        g1 = opt2.compute_gradients(m1, [vs2[0], vs2[1]])
        g2 = opt2.compute_gradients(m2, [vs2[2], vs2[1]])
        summed = [(g1[0][0], vs2[0]), (g1[1][0] + g2[1][0], vs2[1]), (g2[0][0], vs2[2])]
        opt2.apply_gradients(summed)
    for a, b in zip(vs1, vs2):
        assert a.numpy().tobytes() == b.numpy().tobytes()


def test_each_loss_updates_only_its_own_variables() -> None:
    vs = _vars(seed=2)
    before = [v.numpy() for v in vs]
    opt = SGD(0.1)
    joint_a = rf.sum(vs[0] * vs[2][0, 0])  # depends on a/kernel and b/kernel
    joint_b = rf.sum(vs[1] * vs[0][0])  # depends on a/bias and a/kernel
    opt.minimize({joint_a: [vs[0]], joint_b: [vs[1]]})
    assert not np.array_equal(vs[0].numpy(), before[0]) and not np.array_equal(vs[1].numpy(), before[1])
    np.testing.assert_array_equal(vs[2].numpy(), before[2])  # b/kernel is nobody's variable
    # a/kernel got only joint_a's gradient (b/kernel[0,0] everywhere), not joint_b's
    np.testing.assert_allclose(before[0] - vs[0].numpy(), 0.1 * before[2][0, 0], rtol=1e-5)


@pytest.mark.parametrize(
    "convention,cls,kw",
    [(c, cls, kw) for c in CONVENTIONS for cls, kw in ((Adam, {}), (SGD, {"momentum": 0.9}))]
    + [(c, AdamW, {"weight_decay": 0.1}) for c in ("torch", "keras", "optax", "bert")],
)
def test_two_optimizers_over_a_partition_equal_one_with_groups(convention, cls, kw) -> None:
    x = rf.constant(np.linspace(-1, 1, 15).reshape(5, 3).astype(np.float32))
    va, vb = _vars(seed=3), _vars(seed=3)
    one = cls(
        [{"params": va[:2], "learning_rate": 0.02}, {"params": va[2:], "learning_rate": 0.005}],
        convention=convention,
        **kw,
    )
    first = cls(vb[:2], learning_rate=0.02, convention=convention, **kw)
    second = cls(vb[2:], learning_rate=0.005, convention=convention, **kw)
    for _ in range(6):
        one.minimize(_loss(va, x))
        loss = _loss(vb, x)
        gv = first.compute_gradients(loss, vb)
        first.apply_gradients(gv[:2])
        second.apply_gradients(gv[2:])
    for a, b in zip(va, vb):
        assert a.numpy().tobytes() == b.numpy().tobytes()


def test_none_gradients_follow_the_convention() -> None:
    v = _vars()
    torch_opt = Adam(v, learning_rate=0.1)
    torch_opt.apply_gradients([(np.ones((3, 4), np.float32), v[0]), (None, v[1]), (None, v[2])])
    assert torch_opt.step_count(v[0]) == 1 and torch_opt.step_count(v[1]) == 0 and torch_opt.iterations == 1
    k = _vars()
    keras_opt = Adam(k, learning_rate=0.1, convention="keras")
    snap = _snapshot(keras_opt, k)
    with pytest.raises(ValueError, match="every gradient is None"):
        keras_opt.apply_gradients([(None, x) for x in k])
    assert _same(snap, _snapshot(keras_opt, k))


def test_bad_apply_gradients_input_changes_nothing() -> None:
    vs = _vars()
    opt = Adam(vs, learning_rate=0.1)
    good = [(np.ones(v.shape, np.float32), v) for v in vs]
    opt.apply_gradients(good)
    snap = _snapshot(opt, vs)
    cases = [
        (
            [(np.ones((4, 3), np.float32), vs[0])],
            ValueError,
            r"gradient of shape \(4, 3\) for variable 'a/kernel' of "
            r"shape \(3, 4\)",
        ),
        ([(np.ones((3, 4)), vs[0])], TypeError, "gradient of dtype float64 for variable 'a/kernel' of dtype float32"),
        ([good[0], (good[0][0], vs[0])], ValueError, "variable 'a/kernel' appears twice"),
        (
            [(np.ones(2, np.float32), rf.Variable(np.ones(2, np.float32), name="stranger"))],
            ValueError,
            "'stranger' is not one this optimizer was given",
        ),
    ]
    for gv, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            opt.apply_gradients(good[1:] + gv if len(gv) == 1 else gv)
        assert _same(snap, _snapshot(opt, vs))
    with pytest.raises(ValueError, match=r"masks: mask of shape \(4,\) for variable 'a/kernel'"):
        opt.apply_gradients(good, masks={vs[0]: np.ones(4, bool)})
    with pytest.raises(TypeError, match="masks: mask for variable 'a/kernel' has dtype float32, not bool"):
        opt.apply_gradients(good, masks={vs[0]: np.ones((3, 4), np.float32)})
    with pytest.raises(ValueError, match="masks: variable 'x' is not among the gradients"):
        opt.apply_gradients(good, masks={rf.Variable(np.ones(1), name="x"): np.ones(1, bool)})
    assert _same(snap, _snapshot(opt, vs))


def test_slots_read_write_aliases_and_errors() -> None:
    vs = _vars()
    opt = Adam(vs, learning_rate=0.1, amsgrad=True)
    assert opt.slot_names() == ["m", "v", "v_max"]
    opt.apply_gradients([(np.ones(v.shape, np.float32), v) for v in vs])
    m = opt.get_slot(vs[0], "m").numpy()
    np.testing.assert_array_equal(m, opt.get_slot(vs[0], "exp_avg").numpy())
    np.testing.assert_array_equal(m, opt.get_slot(vs[0], "mu").numpy())
    np.testing.assert_allclose(m, 0.1)  # lerp(0, 1, 0.1)
    opt.set_slot(vs[0], "exp_avg_sq", np.full((3, 4), 4.0, np.float32))
    np.testing.assert_array_equal(opt.get_slot(vs[0], "v").numpy(), 4.0)
    with pytest.raises(KeyError, match=r"unknown slot 'momentum' for Adam\(convention='torch'\); slots: m, v, v_max"):
        opt.get_slot(vs[0], "momentum")
    with pytest.raises(ValueError, match=r"set_slot: value of shape \(4,\) for slot 'm' of 'a/kernel'"):
        opt.set_slot(vs[0], "m", np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="set_slot: value of dtype float64 for slot 'm'"):
        opt.set_slot(vs[0], "m", np.zeros((3, 4)))
    np.testing.assert_array_equal(opt.get_slot(vs[0], "v").numpy(), 4.0)  # unchanged by the refusals
    sgd = SGD(vs, learning_rate=0.1, momentum=0.9)
    with pytest.raises(KeyError, match="does not exist yet"):
        sgd.get_slot(vs[0], "momentum_buffer")
    keras_sgd = SGD(vs, learning_rate=0.1, momentum=0.9, convention="keras")
    np.testing.assert_array_equal(keras_sgd.get_slot(vs[0], "momentum").numpy(), 0.0)


def test_written_slots_drive_the_next_update() -> None:
    # Adam (torch) from a hand-set state: p1 = p0 - lr/bc1 * m1 / (sqrt(v1)/sqrt(bc2) + eps), t = 1
    v = rf.Variable(np.array([1.0, -2.0]), name="w")
    opt = Adam([v], learning_rate=0.1, beta1=0.5, beta2=0.75)
    opt.set_slot(v, "m", np.array([2.0, 2.0]))
    opt.set_slot(v, "v", np.array([4.0, 4.0]))
    opt.apply_gradients([(np.array([0.0, 0.0]), v)])
    m1, v1 = 0.5 * 2.0, 0.75 * 4.0
    want = np.array([1.0, -2.0]) - 0.1 / 0.5 * m1 / (np.sqrt(v1) / np.sqrt(0.25) + 1e-8)
    np.testing.assert_allclose(v.numpy(), want, rtol=1e-15)


def test_state_dict_round_trip_and_refusals(tmp_path) -> None:
    x = rf.constant(np.linspace(-1, 1, 15).reshape(5, 3).astype(np.float32))
    va, vb = _vars(seed=4), _vars(seed=4)
    a = Adam(va, learning_rate=0.01, amsgrad=True)
    for _ in range(3):
        a.minimize(_loss(va, x))
    b = Adam(vb, learning_rate=0.01, amsgrad=True)
    for v_a, v_b in zip(va, vb):
        v_b.assign(v_a.numpy())
    b.load(a.save(tmp_path / "opt.npz"))
    for _ in range(3):
        a.minimize(_loss(va, x))
        b.minimize(_loss(vb, x))
    for v_a, v_b in zip(va, vb):
        assert v_a.numpy().tobytes() == v_b.numpy().tobytes()
    snap = _snapshot(b, vb)
    sd = a.state_dict()
    sd["variables"]["a/kernel"]["slots"]["m"] = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"slot 'm': shape \(4, 3\) does not match the variable's \(3, 4\)"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["variables"]["renamed"] = sd["variables"].pop("b/kernel")
    with pytest.raises(ValueError, match=r"unknown variables \['renamed'\], missing \['b/kernel'\]"):
        b.load_state_dict(sd)
    with pytest.raises(ValueError, match="state is for 'adam'/'torch', this optimizer is 'adam'/'keras'"):
        Adam(vb, convention="keras").load_state_dict(a.state_dict())
    assert _same(snap, _snapshot(b, vb))


def test_lr_multiplier_scales_the_step_not_the_gradient() -> None:
    """Question 4: a 0.1 multiplier makes Adam's step 10x smaller; a 10x smaller gradient
    leaves Adam's step (m / sqrt(v)) practically unchanged."""
    g = np.array([0.3, -1.2])

    def first_step(mult, grad_scale):
        v = rf.Variable(np.zeros(2), name="layer/kernel")
        opt = Adam([v], learning_rate=0.1, lr_multipliers={"^layer/": mult})
        opt.apply_gradients([(g * grad_scale, v)])
        return -v.numpy()

    base = first_step(1.0, 1.0)
    np.testing.assert_allclose(first_step(0.1, 1.0), 0.1 * base, rtol=1e-12)
    np.testing.assert_allclose(first_step(1.0, 0.1), base, rtol=1e-6)  # only eps notices
    opt = Adam(_vars(), lr_multipliers={"kernel": 0.5, "^a/": 2.0})
    assert [opt._state(v).hyper.lr_multiplier for v in opt.variables()] == [0.5, 2.0, 0.5]  # first match wins


def test_exclusions_turn_decay_off_by_name() -> None:
    va, vb = _vars(), _vars()
    a = AdamW(va, learning_rate=0.1, weight_decay=0.5, exclude_from_weight_decay=["bias$"])
    b = AdamW(
        [{"params": [vb[0], vb[2]]}, {"params": [vb[1]], "weight_decay": 0.0}], learning_rate=0.1, weight_decay=0.5
    )
    grads = [np.full(v.shape, 0.5, np.float32) for v in va]
    for _ in range(3):
        a.apply_gradients(list(zip(grads, va)))
        b.apply_gradients(list(zip(grads, vb)))
    for x, y in zip(va, vb):
        assert x.numpy().tobytes() == y.numpy().tobytes()
    assert "(excluded)" in a.describe(None)


def test_schedule_is_called_with_iterations_before_the_update() -> None:
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.1

    v = rf.Variable(np.ones(2), name="w")
    opt = SGD([v], learning_rate=schedule)
    for _ in range(3):
        opt.apply_gradients([(np.ones(2), v)])
    assert seen == [0, 1, 2] and opt.iterations == 3


def test_one_trajectory_on_numpy_is_reproducible() -> None:
    from refopt.oracle.run import run_refopt
    from tests.optim.streams import make_run

    run = make_run("adamw", "keras", "float32", {"amsgrad": True}, steps=10, seed=1)
    assert_trajectory_equal(run_refopt(run), run_refopt(run))


@pytest.mark.gpu
@pytest.mark.parametrize("convention", ["torch", "keras", "tf1", "optax"])
def test_cupy_updates_equal_numpy_bit_for_bit(convention) -> None:
    from refopt.oracle.run import run_refopt
    from tests.optim.streams import make_run

    run = make_run("adam", convention, "float32", {}, steps=10, seed=6)
    assert_trajectory_equal(run_refopt(run, "cupy"), run_refopt(run, "numpy"))


def test_a_refused_first_update_leaves_an_unbound_optimizer_empty() -> None:
    opt = Adam(0.1)
    w = rf.Variable(np.ones(3, np.float32), name="w")
    with pytest.raises(ValueError, match="masks: mask of shape"):
        opt.apply_gradients([(np.ones(3, np.float32), w)], masks={w: np.ones(2, bool)})
    assert opt.variables() == [] and opt.iterations == 0
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    assert opt.variables() == [w] and opt.step_count(w) == 1


# -- PyTorch / Keras habits ------------------------------------------------------------------


def _three_layers(seed=0):
    return [rf.nn.Dense(3, 3, seed=seed + i) for i in range(3)]


def _fit(layers, opt, steps=4):
    x = rf.constant(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    for _ in range(steps):
        h = x
        for layer in layers:
            h = rf.tanh(layer(h))
        opt.minimize(rf.sum(h * h))


@pytest.mark.parametrize("form", ["bound", "named", "groups", "unbound"])
def test_layers_without_a_parent_train_in_one_optimizer(form) -> None:
    """Three standalone Dense layers -- each holds 'kernel' and 'bias' -- in one Adam, as
    in PyTorch and Keras; the result equals the same layers inside one model, bit for bit."""
    if form == "named":
        layers = [rf.nn.Dense(3, 3, seed=i, name=f"l{i + 1}") for i in range(3)]  # the root's name is left out
    else:
        layers = _three_layers()
    variables = [v for layer in layers for v in layer.variables()]
    assert sorted({v.name for v in variables}) == ["bias", "kernel"]
    if form == "groups":
        opt = Adam([{"params": layers[0].variables(), "lr": 0.05}, {"params": variables[2:]}], learning_rate=0.05)
    elif form == "unbound":
        opt = Adam(0.05)
    else:
        opt = Adam(variables, learning_rate=0.05)
    _fit(layers, opt)
    assert opt.iterations == 4 and len(opt.variables()) == 6

    twins = _three_layers()
    model = rf.nn.Sequential(twins)
    _fit(twins, Adam(model.trainable_variables(), learning_rate=0.05))
    for a, b in zip(variables, model.variables()):
        assert a.numpy().tobytes() == b.numpy().tobytes()


def test_saving_state_with_clashing_names_says_how_to_fix_it(tmp_path) -> None:
    layers = _three_layers()
    opt = Adam([v for layer in layers for v in layer.variables()], learning_rate=0.05)
    _fit(layers, opt, steps=1)
    fix = r"3 variables are named 'kernel'.*rf.nn.Sequential\(\[l1, l2\]\).*torch_state_dict\(\)"
    for call in (opt.state_dict, lambda: opt.save(tmp_path / "opt.npz")):
        with pytest.raises(ValueError, match=fix):
            call()
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match=fix):
        opt.load_state_dict(
            {
                "rule": "adam",
                "convention": "torch",
                "iterations": 1,
                "groups": [{"powers": [0.9, 0.999]}],
                "variables": {},
            }
        )
    rf.nn.Sequential(layers)  # the fix: one model names them dense/kernel, dense_1/kernel, ...
    assert sorted(opt.state_dict()["variables"])[:2] == ["dense/bias", "dense/kernel"]
    unnamed = rf.Variable(np.ones(2, np.float32))
    bare = SGD([unnamed], learning_rate=0.1)
    with pytest.raises(ValueError, match="variable 0 has no name.*torch_state_dict"):
        bare.state_dict()


def test_an_optimizer_with_nothing_to_train_is_refused() -> None:
    class Forgot(rf.nn.Module):  # a model whose weights are all frozen
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = rf.nn.Dense(2, 8)

    model = Forgot().freeze()
    for make in (
        lambda: Adam(model.trainable_variables()),
        lambda: Adam([{"params": []}]),
        lambda: SGD([], learning_rate=0.1, convention="keras"),
    ):
        with pytest.raises(ValueError, match="nothing to train: the variable list is empty"):
            make()
    with pytest.raises(ValueError, match=r"\(torch.optim: 'optimizer got an empty parameter list'\)"):
        Adam([])
    opt = Adam(model.variables(), learning_rate=0.1)  # bound to variables frozen at the time of the step
    x = rf.constant(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"all 2 variables of this optimizer are frozen \(trainable=False\)"):
        opt.minimize(rf.sum(model.fc1(x)))
    unbound = Adam(0.1)
    with pytest.raises(ValueError, match="minimize: nothing to train: the loss depends on no trainable Variable"):
        unbound.minimize(rf.sum(model.fc1(x)))
    with pytest.raises(ValueError, match=r"apply_gradients: nothing to train: no \(gradient, variable\) pairs"):
        unbound.apply_gradients([])
    assert opt.iterations == unbound.iterations == 0 and unbound.variables() == []


def test_describe_prints_once_or_returns(capsys) -> None:
    opt = Adam(_vars(), learning_rate=0.1)
    assert opt.describe() is None
    out = capsys.readouterr().out
    assert out == opt.describe(None) + "\n" and "a/kernel" in out


def _adam_pair(tmp_path=None):
    """Two identical float32 Adam(amsgrad) optimizers, ``a`` three steps ahead of ``b``."""
    x = rf.constant(np.linspace(-1, 1, 15).reshape(5, 3).astype(np.float32))
    va, vb = _vars(seed=4), _vars(seed=4)
    a = Adam(va, learning_rate=0.01, amsgrad=True)
    for _ in range(3):
        a.minimize(_loss(va, x))
    b = Adam(vb, learning_rate=0.01, amsgrad=True)
    b.minimize(_loss(vb, x))
    return a, b, vb


def _break(sd, how):
    sd = copy.deepcopy(sd)
    how(sd)
    return sd


@pytest.mark.parametrize(
    "how, message",
    [
        # the last check of all: the last variable's slots (every other field is fine)
        (lambda sd: sd["variables"]["b/kernel"]["slots"].pop("v_max"), r"'b/kernel': missing slots \['v_max'\]"),
        (
            lambda sd: sd["variables"]["b/kernel"]["slots"].update(exp_avg=np.zeros((2, 2), np.float32)),
            "slot 'm' given twice",
        ),
        (
            lambda sd: sd["variables"]["b/kernel"]["slots"].update(v=np.zeros((2, 2), np.float64)),
            r"slot 'v': dtype float64 does not match the variable's float32",
        ),
        (lambda sd: sd["variables"]["b/kernel"].update(step=-1), "step must be a non-negative int, got -1"),
        (lambda sd: sd["variables"]["b/kernel"].update(extra=1), r"unexpected keys \['extra'\]"),
        # fields the old code read only after it had committed the slots and steps
        (lambda sd: sd.update(iterations="3"), "iterations must be a non-negative int, got '3'"),
        (lambda sd: sd.update(iterations=True), "iterations must be a non-negative int"),
        (lambda sd: sd["groups"][0].update(powers=[0.5]), "powers must be two numbers in"),
        (lambda sd: sd["groups"][0].update(powers=[0.5, float("nan")]), "powers must be two numbers in"),
        (lambda sd: sd.pop("groups"), r"missing keys \['groups'\]"),
        (lambda sd: sd.update(note="hi"), r"unexpected keys \['note'\]"),
    ],
)
def test_load_state_dict_checks_everything_before_changing_anything(how, message) -> None:
    a, b, vb = _adam_pair()
    snap = _snapshot(b, vb)
    with pytest.raises(ValueError, match=message):
        b.load_state_dict(_break(a.state_dict(), how))
    assert _same(snap, _snapshot(b, vb))
    b.load_state_dict(a.state_dict())  # the intact state loads: b's state is now a's, field for field
    assert _same(_snapshot(a, vb), _snapshot(b, vb)) and b.iterations == 3


def test_load_state_dict_var_list_is_checked_before_anything_changes() -> None:
    a, b, vb = _adam_pair()
    snap = _snapshot(b, vb)
    stranger = rf.Variable(np.zeros(2, np.float32), name="b/kernel")  # same name, another variable
    with pytest.raises(ValueError, match="two different variables are named 'b/kernel'"):
        b.load_state_dict(a.state_dict(), var_list=[stranger])
    with pytest.raises(ValueError, match="'new' is not one this optimizer was given"):
        b.load_state_dict(a.state_dict(), var_list=[rf.Variable(np.zeros(2, np.float32), name="new")])
    with pytest.raises(TypeError, match="var_list holds a ndarray"):
        b.load_state_dict(a.state_dict(), var_list=[np.zeros(2)])
    assert _same(snap, _snapshot(b, vb))


def test_torch_sgd_momentum_may_be_absent_and_then_is_not_created() -> None:
    v = rf.Variable(np.ones(2), name="w")
    opt = SGD([v], learning_rate=0.1, momentum=0.9)
    fresh = copy.deepcopy(opt.state_dict())  # before any step: no momentum buffer yet
    opt.apply_gradients([(np.ones(2), v)])
    assert "momentum" in opt.state_dict()["variables"]["w"]["slots"]
    opt.load_state_dict(fresh)
    assert opt.state_dict()["variables"]["w"]["slots"] == {}  # replaced, not merged with the old buffer


def test_optimizer_file_refusals_change_nothing(tmp_path) -> None:
    from refopt.io import FileFormatError, read_arrays, write_arrays

    a, b, vb = _adam_pair()
    path = a.save(tmp_path / "opt.npz")
    snap = _snapshot(b, vb)
    arrays, meta = read_arrays(path, "refopt.optimizer_state", (1,))
    keys = ("rule", "convention", "iterations", "groups", "steps")
    extra = copy.deepcopy({k: meta[k] for k in keys})
    del extra["steps"]["b/kernel"]  # its arrays now belong to no variable
    orphan = write_arrays(tmp_path / "orphan.npz", arrays, "refopt.optimizer_state", 1, extra=extra)
    with pytest.raises(FileFormatError, match="array 'b/kernel/m' belongs to no variable"):
        b.load(orphan)
    extra = {k: meta[k] for k in ("rule", "convention", "groups", "steps")}
    no_count = write_arrays(tmp_path / "nocount.npz", arrays, "refopt.optimizer_state", 1, extra=extra)
    with pytest.raises(FileFormatError, match=r"missing \['iterations'\], unexpected \[\]"):
        b.load(no_count)
    less = {k: v for k, v in arrays.items() if k != "b/kernel/v_max"}  # one slot missing: an error, not a merge
    short = write_arrays(tmp_path / "short.npz", less, "refopt.optimizer_state", 1, extra={k: meta[k] for k in keys})
    with pytest.raises(ValueError, match=r"'b/kernel': missing slots \['v_max'\]"):
        b.load(short)
    assert _same(snap, _snapshot(b, vb))


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", None, 1j])
def test_a_bad_schedule_value_stops_the_step_before_anything_changes(bad) -> None:
    vs = _vars()
    opt = Adam(vs, learning_rate=lambda step: 0.01 if step < 2 else bad)
    grads = [(np.ones(v.shape, np.float32), v) for v in vs]
    opt.apply_gradients(grads)
    opt.apply_gradients(grads)
    snap = _snapshot(opt, vs)
    with pytest.raises(ValueError, match=r"schedule .* returned .* at step 2 \(for 'a/kernel'\); a learning rate"):
        opt.apply_gradients(grads)
    assert _same(snap, _snapshot(opt, vs)) and opt.iterations == 2


def test_lr_multipliers_clip_thresholds_and_patterns_are_checked_at_construction() -> None:
    for mult in (-0.5, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match=r"lr_multipliers\['\^a/'\] must be a finite number >= 0"):
            Adam(_vars(), lr_multipliers={"^a/": mult})
    assert Adam(_vars(), lr_multipliers={"^a/": 0}).lr_multipliers == {"^a/": 0.0}  # 0 freezes: allowed
    with pytest.raises(ValueError, match=r"lr_multipliers pattern '\(' is not a valid regex"):
        Adam(_vars(), lr_multipliers={"(": 1.0})
    with pytest.raises(ValueError, match=r"exclude_from_weight_decay pattern '\[' is not a valid regex"):
        AdamW(_vars(), exclude_from_weight_decay=["["])
    for name in ("global_clipnorm", "clipnorm", "clipvalue"):
        for value in (float("nan"), float("inf"), 0.0, True):
            with pytest.raises(ValueError, match=f"{name} must be a finite positive number"):
                Adam(_vars(), **{name: value})
