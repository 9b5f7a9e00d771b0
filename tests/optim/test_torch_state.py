"""PyTorch optimizer state interchange: train 5 steps in torch, import, continue 5 in
refopt -- equal to 10 steps in torch, bit for bit; and the reverse direction."""

from __future__ import annotations

import numpy as np
import pytest

import refopt as rf
from refopt.optim import SGD, Adam, AdamW

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.frameworks

CONFIGS = [
    (Adam, torch.optim.Adam, {}, {"fused": True}),
    (
        Adam,
        torch.optim.Adam,
        {"amsgrad": True, "weight_decay": 0.01},
        {"fused": True, "amsgrad": True, "weight_decay": 0.01},
    ),
    (AdamW, torch.optim.AdamW, {"weight_decay": 0.1}, {"fused": True, "weight_decay": 0.1}),
    (SGD, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "nesterov": True}),
    (SGD, torch.optim.SGD, {"momentum": 0.8, "dampening": 0.3}, {"momentum": 0.8, "dampening": 0.3}),
]
SHAPES = [(6, 5), (7,), (3, 3)]


def _grads(rng, dtype, k):
    gs = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    if k == 2:
        gs[1] = None  # torch skips it: its step count lags the others
    return gs


@pytest.mark.parametrize("mine,theirs,kw,tkw", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_five_in_torch_then_five_in_refopt_equals_ten_in_torch(mine, theirs, kw, tkw, dtype) -> None:
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [_grads(rng, dtype, k) for k in range(10)]
    lrs = [0.01 * 0.9**k for k in range(10)]

    ref = [torch.tensor(x.copy(), requires_grad=True) for x in init]
    topt = theirs(ref, lr=lrs[0], **tkw)

    def torch_step(params, opt, k):
        for grp in opt.param_groups:
            grp["lr"] = lrs[k]
        for p, g in zip(params, grads[k]):
            p.grad = None if g is None else torch.tensor(g)
        opt.step()

    for k in range(10):
        torch_step(ref, topt, k)
    ten = [p.detach().numpy() for p in ref]

    half = [torch.tensor(x.copy(), requires_grad=True) for x in init]
    hopt = theirs(half, lr=lrs[0], **tkw)
    for k in range(5):
        torch_step(half, hopt, k)
    variables = [rf.Variable(p.detach().numpy().copy(), name=f"p{i}") for i, p in enumerate(half)]
    opt = mine(variables, learning_rate=lambda step: lrs[step], **kw)
    opt.load_torch_state_dict(hopt.state_dict(), iterations=5 if mine is SGD else None)
    assert opt.iterations == 5
    if mine is not SGD:
        assert opt.step_count(variables[1]) == 4  # it had no gradient at step 2
    for k in range(5, 10):
        opt.apply_gradients([(g, v) for g, v in zip(grads[k], variables)])
    for v, t in zip(variables, ten):
        assert v.numpy().tobytes() == t.tobytes()


@pytest.mark.parametrize("mine,theirs,kw,tkw", CONFIGS[:3] + CONFIGS[3:4])
def test_five_in_refopt_then_five_in_torch(mine, theirs, kw, tkw) -> None:
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [_grads(rng, np.float32, k) for k in range(10)]
    ref = [torch.tensor(x.copy(), requires_grad=True) for x in init]
    topt = theirs(ref, lr=0.01, **tkw)
    for k in range(10):
        for p, g in zip(ref, grads[k]):
            p.grad = None if g is None else torch.tensor(g)
        topt.step()
    variables = [rf.Variable(x.copy(), name=f"p{i}") for i, x in enumerate(init)]
    opt = mine(variables, learning_rate=0.01, **kw)
    for k in range(5):
        opt.apply_gradients([(g, v) for g, v in zip(grads[k], variables)])
    params = [torch.tensor(v.numpy(), requires_grad=True) for v in variables]
    cont = theirs(params, lr=0.01, **tkw)
    cont.load_state_dict(opt.torch_state_dict(like=cont.state_dict(), to_torch=True))
    for k in range(5, 10):
        for p, g in zip(params, grads[k]):
            p.grad = None if g is None else torch.tensor(g)
        cont.step()
    for p, t in zip(params, ref):
        assert p.detach().numpy().tobytes() == t.detach().numpy().tobytes()


def test_hyperparameter_mismatch_is_refused_and_nothing_changes() -> None:
    p = torch.tensor(np.ones(3, np.float32), requires_grad=True)
    topt = torch.optim.Adam([p], lr=0.1, betas=(0.8, 0.999))
    p.grad = torch.ones(3)
    topt.step()
    v = rf.Variable(np.ones(3, np.float32), name="w")
    opt = Adam([v], learning_rate=0.1)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"'w': betas torch=\(0.8, 0.999\) refopt=\(0.9, 0.999\)"):
        opt.load_torch_state_dict(topt.state_dict())
    assert opt.state_dict()["variables"]["w"]["step"] == before["variables"]["w"]["step"] == 0
    with pytest.raises(ValueError, match="fits convention='torch', not 'keras'"):
        Adam([v], convention="keras").load_torch_state_dict(topt.state_dict())


# -- a model imported from torch layers: slots convert as the weights do ---------------------


class _TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 12)
        self.conv = torch.nn.Conv2d(3, 4, 2)
        self.fc = torch.nn.Linear(4, 4)  # square: a missing transpose would pass every shape check
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, ids, k):
        h = self.fc(self.conv(self.emb(ids).reshape(-1, 3, 2, 2)).flatten(1))
        return h if k < 5 else self.norm(h)  # the norm has no gradient (no torch state) before step 5


class _Twin(rf.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = rf.nn.Embedding(10, 12)
        self.conv = rf.nn.Conv2D(3, 4, 2, data_format="NCHW")
        self.fc = rf.nn.Dense(4, 4)
        self.norm = rf.nn.LayerNorm(4)


LAYER_CONFIGS = [
    (Adam, lambda ps: torch.optim.Adam(ps, lr=0.01, fused=True), {}),
    (AdamW, lambda ps: torch.optim.AdamW(ps, lr=0.01, amsgrad=True, fused=True), {"amsgrad": True}),
    (SGD, lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), {"momentum": 0.9, "nesterov": True}),
]


def _torch_steps(net, opt, ks, record=None):
    torch.manual_seed(3)
    data = [(torch.randint(0, 10, (6,)), torch.randn(6, 4)) for _ in range(10)]
    for k in ks:
        ids, y = data[k]
        opt.zero_grad()
        loss = ((net(ids, k) - y) ** 2).sum()
        if k == 7:
            loss = net.fc.weight.square().sum()  # one parameter has a gradient, the others None
        loss.backward()
        if record is not None:
            record.append([None if p.grad is None else p.grad.detach().numpy().copy() for p in net.parameters()])
        opt.step()


def _refopt_grads(variables, grads):
    """torch's gradients in refopt's layouts (the same conversion as the weights')."""
    out = []
    for v, g in zip(variables, grads):
        rule = rf.nn.torch_layout_of(v)
        out.append((None if g is None else (rule.to_refopt(g) if rule else g), v))
    return out


def _uninterrupted(make_opt):
    torch.manual_seed(0)
    ref = _TorchNet()
    init = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    grads: list = []
    _torch_steps(ref, make_opt(ref.parameters()), range(10), grads)
    return init, grads, {k: v.detach().numpy() for k, v in ref.state_dict().items()}


@pytest.mark.parametrize("mine,make_opt,kw", LAYER_CONFIGS)
def test_a_torch_model_continued_in_refopt_equals_the_uninterrupted_torch_run(mine, make_opt, kw) -> None:
    init, grads, ten = _uninterrupted(make_opt)
    half = _TorchNet()
    half.load_state_dict(init)
    topt = make_opt(half.parameters())
    _torch_steps(half, topt, range(5))
    torch_state = topt.state_dict()
    assert len(torch_state["state"]) == 5  # the LayerNorm's two parameters never had a gradient

    model = _Twin()
    variables = model.trainable_variables()
    opt = mine(variables, learning_rate=0.05 if mine is SGD else 0.01, **kw)
    rng = np.random.default_rng(0)
    for _ in range(2):  # refopt's own, stale state: the import must replace all of it
        opt.apply_gradients([(rng.standard_normal(v.shape).astype(np.float32), v) for v in variables])
    rf.nn.load_torch_state_dict(model, {k: v.detach().numpy() for k, v in half.state_dict().items()})
    opt.load_torch_state_dict(torch_state, iterations=5 if mine is SGD else None)
    norm_gamma = model.norm.gamma
    assert opt.step_count(norm_gamma) == 0  # no torch state: a fresh one, as in torch
    if mine is SGD:
        with pytest.raises(KeyError, match="does not exist yet"):
            opt.get_slot(norm_gamma, "momentum")
    else:
        assert not opt.get_slot(norm_gamma, "m").numpy().any()
    for k in range(5, 10):
        opt.apply_gradients(_refopt_grads(variables, grads[k]))
    back = rf.nn.export_torch_state_dict(model, ten)
    assert all(back[k].tobytes() == ten[k].tobytes() for k in ten)


@pytest.mark.parametrize("mine,make_opt,kw", LAYER_CONFIGS)
def test_a_refopt_run_continued_in_torch_equals_the_uninterrupted_torch_run(mine, make_opt, kw) -> None:
    init, grads, ten = _uninterrupted(make_opt)
    model = _Twin()
    rf.nn.load_torch_state_dict(model, {k: v.numpy() for k, v in init.items()})
    variables = model.trainable_variables()
    opt = mine(variables, learning_rate=0.05 if mine is SGD else 0.01, **kw)
    for k in range(5):
        opt.apply_gradients(_refopt_grads(variables, grads[k]))

    half = _TorchNet()
    half.load_state_dict(init)
    topt = make_opt(half.parameters())
    _torch_steps(half, topt, range(5))
    exported = opt.torch_state_dict(like=topt.state_dict(), to_torch=True)
    theirs = topt.state_dict()["state"]
    assert {i: sorted(e) for i, e in exported["state"].items()} == {i: sorted(e) for i, e in theirs.items()}
    assert all(isinstance(t, torch.Tensor) for e in exported["state"].values() for t in e.values())

    cont = _TorchNet()
    cont.load_state_dict(rf.nn.export_torch_state_dict(model, cont.state_dict(), to_torch=True))
    copt = make_opt(cont.parameters())
    copt.load_state_dict(exported)
    _torch_steps(cont, copt, range(5, 10))
    assert all(v.detach().numpy().tobytes() == ten[k].tobytes() for k, v in cont.state_dict().items())


def test_layers_without_a_parent_and_equal_names_interchange_by_position() -> None:
    torch.manual_seed(0)
    tl1, tl2 = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    params = [*tl1.parameters(), *tl2.parameters()]
    topt = torch.optim.Adam(params, lr=0.01, fused=True)
    for p in params:
        p.grad = torch.randn(p.shape)
    topt.step()
    l1, l2 = rf.nn.Dense(3, 3), rf.nn.Dense(3, 3)  # both hold 'kernel' and 'bias'
    for layer, t in ((l1, tl1), (l2, tl2)):
        rf.nn.load_torch_state_dict(layer, {k: v.detach().numpy() for k, v in t.state_dict().items()})
    opt = Adam(l1.variables() + l2.variables(), learning_rate=0.01)
    opt.load_torch_state_dict(topt.state_dict())
    np.testing.assert_array_equal(opt.get_slot(l2.kernel, "exp_avg").numpy(), topt.state[tl2.weight]["exp_avg"].T)
    out = opt.torch_state_dict(like=topt.state_dict())
    assert out["state"][2]["exp_avg"].tobytes() == topt.state[tl2.weight]["exp_avg"].numpy().tobytes()


def _torch_adam_after_two_steps():
    """A torch Adam state for three parameters (the second never had a gradient: no state)."""
    params = [torch.tensor(np.ones(s, np.float32), requires_grad=True) for s in SHAPES]
    topt = torch.optim.Adam(params, lr=0.1)
    for _ in range(2):
        for p, g in zip(params, [np.ones(SHAPES[0], np.float32), None, np.ones(SHAPES[2], np.float32)]):
            p.grad = None if g is None else torch.tensor(g)
        topt.step()
    return topt.state_dict()


def _refopt_adam():
    vs = [rf.Variable(np.ones(s, np.float32), name=f"p{i}") for i, s in enumerate(SHAPES)]
    opt = Adam(vs, learning_rate=0.1)
    opt.apply_gradients([(np.full(v.shape, 0.5, np.float32), v) for v in vs])
    return opt, vs


def test_a_parameter_torch_has_no_state_for_loads_as_fresh() -> None:
    opt, vs = _refopt_adam()
    opt.load_torch_state_dict(_torch_adam_after_two_steps())
    sd = opt.state_dict()
    assert sd["variables"]["p1"]["step"] == 0 and not sd["variables"]["p1"]["slots"]["m"].any()
    assert sd["variables"]["p0"]["step"] == sd["variables"]["p2"]["step"] == sd["iterations"] == 2


@pytest.mark.parametrize(
    "how, message",
    [
        # the last check: the last parameter's slot (every other field is fine)
        (lambda sd: sd["state"][2].__setitem__("exp_avg_sq", torch.zeros(3, 3, dtype=torch.float64)), "float64"),
        (lambda sd: sd["state"][2].pop("exp_avg_sq"), r"parameter 2 \('p2'\) lacks 'exp_avg_sq'"),
        (lambda sd: sd["state"][2].__setitem__("step", torch.tensor(1.5)), "step must be a whole number"),
        (lambda sd: sd["state"][2].__setitem__("step", torch.tensor(float("nan"))), "step must be a whole number"),
        (lambda sd: sd["state"].__setitem__(7, {}), "state of parameter 7, which no param group holds"),
        (lambda sd: sd["param_groups"][0]["params"].append(0), "parameter index 0 appears twice"),
        (lambda sd: sd.pop("state"), r"missing keys \['state'\]"),
    ],
)
def test_torch_state_is_checked_before_anything_changes(how, message) -> None:
    opt, vs = _refopt_adam()
    before = opt.state_dict()
    sd = _torch_adam_after_two_steps()
    how(sd)
    with pytest.raises(ValueError, match=message):
        opt.load_torch_state_dict(sd)
    after = opt.state_dict()
    assert after["iterations"] == before["iterations"] == 1
    for n, e in before["variables"].items():
        assert after["variables"][n]["step"] == e["step"]
        assert all(np.array_equal(after["variables"][n]["slots"][k], a) for k, a in e["slots"].items())
