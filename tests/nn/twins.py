"""Compare a refopt function with its torch twin: values and gradients (float64)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import refopt as rf
from tests.checks import rel_err

RTOL = 1e-12


def check_twin(
    rf_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    diff: Sequence[int],
    seed: int = 0,
    rtol: float = RTOL,
    cotangent_atol: float = 0.0,
) -> None:
    """rf_fn(*Tensors) and torch_fn(*torch tensors) agree in value and in the gradients
    of sum(out * w) for a random cotangent w, normwise relative <= rtol -- or, with
    ``cotangent_atol``, absolutely within that multiple of ||w|| (the backward-stable
    bound, for gradients formed by cancellation)."""
    import torch

    ts = [rf.constant(x) for x in inputs]
    out = rf_fn(*ts)
    w = np.random.default_rng(seed).standard_normal(out.shape)
    grads = rf.gradients(rf.sum(out * rf.constant(w)), [ts[i] for i in diff])

    tt = [torch.tensor(x, requires_grad=(i in diff) and x.dtype.kind == "f") for i, x in enumerate(inputs)]
    tout = torch_fn(*tt)
    tgrads = torch.autograd.grad((tout * torch.tensor(w)).sum(), [tt[i] for i in diff])

    assert out.shape == tuple(tout.shape), (out.shape, tuple(tout.shape))
    err = rel_err(out.numpy(), tout.detach().numpy())
    assert err <= rtol, f"value differs from torch: {err:.3g}"
    for i, g, tg in zip(diff, grads, tgrads):
        err = rel_err(g.numpy(), tg.numpy())
        absolute = float(np.linalg.norm(g.numpy() - tg.numpy()))
        ok = err <= rtol or absolute <= cotangent_atol * float(np.linalg.norm(w))
        assert ok, f"gradient of input {i} differs from torch: {err:.3g}"
