"""A PyTorch test that consumes refopt's golden trajectory (NumPy and torch only).

    python examples/golden_trajectory.py         # writes golden/adam-torch.npz
    pytest examples/golden/test_torch_adam.py    # GOLDEN_DIR=... if the files are elsewhere

It replays the golden file's gradients through ``torch.optim.Adam`` from the golden
initial values and checks the parameters and both moments after every step.
"""

from __future__ import annotations

import numpy as np
import torch
from read_golden import golden_dir, read_golden


def replay_in_torch(path, **adam_options) -> tuple[dict, dict]:
    """The golden trajectory, and torch's: ``{name: (steps + 1, *shape)}`` parameters and
    ``{name: {"m": ..., "v": ...}}`` moments after each step."""
    golden = read_golden(path)
    names, lrs = golden["names"], golden["lrs"]
    weights = [torch.nn.Parameter(torch.from_numpy(golden["params"][n][0].copy())) for n in names]
    opt = torch.optim.Adam(weights, lr=float(lrs[0]), **adam_options)
    params = {n: [golden["params"][n][0]] for n in names}
    slots = {n: {"m": [], "v": []} for n in names}
    for k, lr in enumerate(lrs):
        opt.param_groups[0]["lr"] = float(lr)
        for w, n in zip(weights, names):
            w.grad = torch.from_numpy(golden["grads"][n][k].copy()) if golden["present"][n][k] else None
        opt.step()
        for w, n in zip(weights, names):
            params[n].append(w.detach().numpy().copy())
            slots[n]["m"].append(opt.state[w]["exp_avg"].numpy().copy())
            slots[n]["v"].append(opt.state[w]["exp_avg_sq"].numpy().copy())
    mine = {
        "params": {n: np.stack(p) for n, p in params.items()},
        "slots": {n: {s: np.stack(a) for s, a in d.items()} for n, d in slots.items()},
    }
    return golden, mine


def test_fused_adam_follows_the_golden_trajectory_bit_for_bit() -> None:
    golden, mine = replay_in_torch(golden_dir() / "adam-torch.npz", fused=True)
    for n in golden["names"]:
        np.testing.assert_array_equal(mine["params"][n], golden["params"][n], err_msg=n)
        for s in ("m", "v"):
            np.testing.assert_array_equal(mine["slots"][n][s], golden["slots"][n][s], err_msg=f"{n} {s}")


def test_default_adam_stays_within_1e_6() -> None:
    """torch's default CPU path takes MKL's square root, which is not correctly rounded:
    a tolerance, not bit equality (docs/conventions.md)."""
    golden, mine = replay_in_torch(golden_dir() / "adam-torch.npz")
    for n in golden["names"]:
        np.testing.assert_allclose(mine["params"][n], golden["params"][n], rtol=0, atol=1e-6, err_msg=n)
