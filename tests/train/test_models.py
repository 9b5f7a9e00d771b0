"""The MLP and CNN that ``refopt train`` builds: names, shapes, seeding, and their forward
pass against PyTorch twins holding the same weights (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import refopt as rf
from refopt.train import build_model, cnn, mlp


def test_mlp_layout_and_seeding() -> None:
    m = mlp((8, 8, 1), 10, hidden=(32, 16), dtype="float64", seed=3)
    shapes = {k: v.shape for k, v in m.named_variables().items()}
    assert shapes == {
        "fc1/kernel": (64, 32),
        "fc1/bias": (32,),
        "fc2/kernel": (32, 16),
        "fc2/bias": (16,),
        "fc3/kernel": (16, 10),
        "fc3/bias": (10,),
    }
    again = mlp((8, 8, 1), 10, hidden=(32, 16), dtype="float64", seed=3).state_dict()
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, again[k])
    other = mlp((8, 8, 1), 10, hidden=(32, 16), dtype="float64", seed=4).state_dict()
    assert not np.array_equal(other["fc1/kernel"], again["fc1/kernel"])
    assert mlp((5,), 3, hidden=()).named_variables().keys() == {"fc1/kernel", "fc1/bias"}  # logistic regression


def test_cnn_layout_and_errors() -> None:
    m = cnn((8, 8, 1), 10, channels=(4, 6), seed=0)
    shapes = {k: v.shape for k, v in m.named_variables().items()}
    assert shapes == {
        "conv1/kernel": (3, 3, 1, 4),
        "conv1/bias": (4,),
        "conv2/kernel": (3, 3, 4, 6),
        "conv2/bias": (6,),
        "fc/kernel": (2 * 2 * 6, 10),
        "fc/bias": (10,),
    }
    assert m(rf.constant(np.zeros((5, 8, 8, 1), np.float32))).shape == (5, 10)
    with pytest.raises(ValueError, match="cnn: needs images"):
        cnn((64,), 10)
    with pytest.raises(ValueError, match="3 pooling stages need images of at least 8x8"):
        cnn((4, 4, 1), 10, channels=(2, 2, 2))
    with pytest.raises(ValueError, match="unknown model 'rnn'"):
        build_model("rnn", (8,), 2)
    with pytest.raises(ValueError, match="positive integers"):
        mlp((8,), 2, hidden=(0,))


@pytest.mark.frameworks
def test_forward_matches_torch_twins() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x = np.random.default_rng(0).random((7, 8, 8, 1))

    m = mlp((8, 8, 1), 10, hidden=(12,), dtype="float64", seed=1)
    tm = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10)).double()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in rf.nn.export_torch_state_dict(m, tm.state_dict()).items()})
    want = tm(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(m(rf.constant(x)).numpy(), want, rtol=1e-12, atol=1e-14)

    c = cnn((8, 8, 1), 10, channels=(3, 5), dtype="float64", seed=2)
    tc = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 5, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(20, 10),
    ).double()
    sd = {k: v.numpy() for k, v in tc.state_dict().items()}
    # refopt's kernels HWIO -> torch's OIHW; refopt flattens NHWC (h, w, c), torch NCHW (c, h, w)
    sd["0.weight"] = c.named_variables()["conv1/kernel"].numpy().transpose(3, 2, 0, 1)
    sd["0.bias"] = c.named_variables()["conv1/bias"].numpy()
    sd["3.weight"] = c.named_variables()["conv2/kernel"].numpy().transpose(3, 2, 0, 1)
    sd["3.bias"] = c.named_variables()["conv2/bias"].numpy()
    k = c.named_variables()["fc/kernel"].numpy()  # rows in (h, w, c) order
    sd["7.weight"] = k.reshape(2, 2, 5, 10).transpose(2, 0, 1, 3).reshape(20, 10).T
    sd["7.bias"] = c.named_variables()["fc/bias"].numpy()
    tc.load_state_dict({n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in sd.items()})
    want = tc(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).detach().numpy()
    np.testing.assert_allclose(c(rf.constant(x)).numpy(), want, rtol=1e-12, atol=1e-14)
