"""PyTorch state_dict interchange: an MLP and a small conv net give the same outputs as
their torch twins; export reproduces torch's arrays bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import refopt as rf
from refopt.nn import CheckpointError
from tests.checks import rel_err

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.frameworks


def _np_state(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def test_mlp_twin() -> None:
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.GELU(), torch.nn.Linear(7, 3)).double()
    net = rf.nn.Sequential([rf.nn.Dense(5, 7, dtype="float64"), rf.nn.GELU(), rf.nn.Dense(7, 3, dtype="float64")])
    sd = _np_state(tnet)
    rf.nn.load_torch_state_dict(net, sd)
    np.testing.assert_array_equal(net.layers[0].kernel.numpy(), sd["0.weight"].T)
    x = np.random.default_rng(0).standard_normal((4, 5))
    assert rel_err(net(x).numpy(), tnet(torch.tensor(x)).detach().numpy()) <= 1e-12
    back = rf.nn.export_torch_state_dict(net, tnet.state_dict())
    assert list(back) == list(sd)
    assert all(back[k].tobytes() == sd[k].tobytes() for k in sd)
    tnet2 = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.GELU(), torch.nn.Linear(7, 3)).double()
    with pytest.raises(RuntimeError, match="expected torch.Tensor"):  # NumPy arrays are not what torch loads ...
        tnet2.load_state_dict(back)
    tnet2.load_state_dict(rf.nn.export_torch_state_dict(net, tnet2.state_dict(), to_torch=True))  # ... tensors are
    np.testing.assert_array_equal(tnet2(torch.tensor(x)).detach().numpy(), tnet(torch.tensor(x)).detach().numpy())


def test_small_conv_net_twin() -> None:
    torch.manual_seed(1)
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=2),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 1 * 1, 5),
        torch.nn.LayerNorm(5),
    ).double()
    f64 = {"dtype": "float64"}
    net = rf.nn.Sequential(
        [
            rf.nn.Conv2D(3, 4, 3, padding=1, data_format="NCHW", **f64),
            rf.nn.ReLU(),
            rf.nn.MaxPool2D(2, data_format="NCHW"),
            rf.nn.Conv2D(4, 6, 3, strides=2, data_format="NCHW", **f64),
            rf.nn.Tanh(),
            rf.nn.Flatten(),
            rf.nn.Dense(6, 5, **f64),
            rf.nn.LayerNorm(5, **f64),
        ]
    )
    sd = _np_state(tnet)
    rf.nn.load_torch_state_dict(net, sd)
    np.testing.assert_array_equal(net.layers[0].kernel.numpy(), sd["0.weight"].transpose(2, 3, 1, 0))
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6))
    assert rel_err(net(x).numpy(), tnet(torch.tensor(x)).detach().numpy()) <= 1e-12
    back = rf.nn.export_torch_state_dict(net, sd)
    assert all(back[k].tobytes() == sd[k].tobytes() for k in sd)


def test_embedding_and_module_map() -> None:
    temb = torch.nn.Embedding(9, 4).double()
    sd = {"tok.weight": temb.weight.detach().numpy().copy()}
    model = rf.nn.Module(name="m")
    model.add_module(rf.nn.Embedding(9, 4, dtype="float64"), "embed")
    rf.nn.load_torch_state_dict(model, sd, module_map={"tok": "embed"})
    np.testing.assert_array_equal(model.named_variables()["embed/embeddings"].numpy(), sd["tok.weight"])


def test_interchange_errors_leave_the_model_unchanged() -> None:
    net = rf.nn.Sequential([rf.nn.Dense(5, 7, dtype="float64"), rf.nn.Dense(7, 3, dtype="float64")])
    before = net.state_dict()
    tnet = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 4)).double()
    with pytest.raises(
        CheckpointError, match=r"torch key '1.weight' gives shape \(7, 4\) .* 'dense_1/kernel' has \(7, 3\)"
    ):
        rf.nn.load_torch_state_dict(net, _np_state(tnet))
    tnet = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.BatchNorm1d(7), torch.nn.Linear(7, 3)).double()
    with pytest.raises(CheckpointError, match="parameterised modules"):
        rf.nn.load_torch_state_dict(net, _np_state(tnet))
    tnet = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 3))  # float32
    with pytest.raises(CheckpointError, match="dtype float32 does not match the variable's float64"):
        rf.nn.load_torch_state_dict(net, _np_state(tnet))
    assert all(before[k].tobytes() == v.tobytes() for k, v in net.state_dict().items())


def test_torch_layout_of_names_each_variables_conversion() -> None:
    net = rf.nn.Sequential([rf.nn.Embedding(9, 4), rf.nn.Conv2D(3, 4, 2), rf.nn.Dense(4, 4), rf.nn.LayerNorm(4)])
    layouts = {n: rf.nn.torch_layout_of(v) for n, v in net.named_variables().items()}
    assert {n: (r.torch, r.refopt) for n, r in layouts.items()} == {
        "embedding/embeddings": ("weight", "embeddings"),
        "conv2_d/kernel": ("weight", "kernel"),
        "conv2_d/bias": ("bias", "bias"),
        "dense/kernel": ("weight", "kernel"),
        "dense/bias": ("bias", "bias"),
        "layer_norm/gamma": ("weight", "gamma"),
        "layer_norm/beta": ("bias", "beta"),
    }
    w = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(layouts["dense/kernel"].to_refopt(w), w.T)
    assert rf.nn.torch_layout_of(rf.Variable(np.ones(2), name="free")) is None


def test_interchange_checks_the_last_key_before_anything_changes() -> None:
    net = rf.nn.Sequential([rf.nn.Conv2D(2, 3, 3, dtype="float64"), rf.nn.Dense(3, 2, dtype="float64")])
    tnet = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Linear(3, 2)).double()
    state = _np_state(tnet)
    rf.nn.load_torch_state_dict(net, state)  # the intact state loads
    before = net.state_dict()
    for key, value, message in (
        ("1.bias", np.zeros(2, np.float32), "dtype float32 does not match the variable's float64"),  # the last key
        ("0.weight", np.zeros((3, 2)), r"torch key '0.weight' cannot become 'conv2_d/kernel' by 'Conv2d.weight OIHW"),
        ("1.bias", [[1.0], [2.0, 3.0]], "torch key '1.bias' cannot become"),
    ):
        bad = {k: v + 1.0 for k, v in state.items()}
        bad[key] = value
        with pytest.raises(CheckpointError, match=message):
            rf.nn.load_torch_state_dict(net, bad)
        assert all(before[k].tobytes() == v.tobytes() for k, v in net.state_dict().items())
    with pytest.raises(CheckpointError, match="a torch state_dict is a mapping"):
        rf.nn.load_torch_state_dict(net, list(state.items()))
