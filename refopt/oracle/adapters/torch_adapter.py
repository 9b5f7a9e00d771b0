"""PyTorch adapter: ``torch.optim`` SGD / Adam / AdamW on the CPU.

``path``: "fused" (``fused=True``, the path refopt's torch convention reproduces for
Adam/AdamW), "foreach", or "default" (single-tensor; the default on the CPU).  Each
variable is its own parameter group (so multipliers and exclusions become per-group lr
and weight_decay); a ``None`` gradient is ``p.grad = None`` (the parameter is skipped).
Global-norm clipping runs ``torch.nn.utils.clip_grad_norm_`` before ``step()``.
"""

from __future__ import annotations

import re

import numpy as np

from refopt.oracle.run import Run
from refopt.oracle.trajectory import Recorder, Trajectory

_SLOTS = {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "v_max", "momentum_buffer": "momentum"}


def _kwargs(run: Run, path: str) -> dict:
    h = dict(run.hyper)
    kw: dict = {}
    if run.rule == "sgd":
        for k in ("momentum", "dampening", "nesterov", "weight_decay", "maximize"):
            if k in h:
                kw[k] = h[k]
    else:
        kw["betas"] = (h.get("beta1", 0.9), h.get("beta2", 0.999))
        kw["eps"] = h.get("epsilon", 1e-8)
        for k in ("amsgrad", "maximize", "weight_decay"):
            if k in h and h[k] is not None:
                kw[k] = h[k]
        if run.rule == "adamw" and kw.get("weight_decay") is None:
            kw["weight_decay"] = 1e-2
        if path == "fused":
            kw["fused"] = True
    if path == "foreach":
        kw["foreach"] = True
    elif path == "default":
        kw["foreach"] = False
    return kw


def run_torch(run: Run, path: str = "fused") -> Trajectory:
    import torch

    if path not in ("fused", "foreach", "default"):
        raise ValueError(f"torch path must be fused, foreach or default, got {path!r}")
    if run.masks:
        raise ValueError("PyTorch has no element masks; masks are refopt's own (verified against unmasked runs)")
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[run.rule]
    if run.rule == "sgd" and path == "fused":
        path = "default"  # refopt's torch SGD reproduces the default path
    kw = _kwargs(run, path)
    params = {n: torch.tensor(np.array(v), requires_grad=True) for n, v in run.variables.items()}
    groups = []
    for n, p in params.items():
        g = {"params": [p], "lr": run.lrs[0] * run.multiplier(n) if run.lrs else 0.0}
        if any(re.search(pat, n) for pat in (run.exclude_from_weight_decay or [])):
            g["weight_decay"] = 0.0
        groups.append(g)
    opt = cls(groups, lr=run.lrs[0] if run.lrs else 1e-3, **kw)
    rec = Recorder(run)
    for k, grads in enumerate(run.grads):
        for (n, p), group in zip(params.items(), opt.param_groups):
            group["lr"] = run.lrs[k] * run.multiplier(n)
            p.grad = None if grads[n] is None else torch.tensor(np.array(grads[n]))
        if "global_clipnorm" in run.clip:
            live = [p for p in params.values() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(live, run.clip["global_clipnorm"])
        elif run.clip:
            raise ValueError(f"the torch adapter clips by global norm only, not {sorted(run.clip)}")
        opt.step()
        slots = {}
        for n, p in params.items():
            st = opt.state.get(p, {})
            slots[n] = {_SLOTS[k]: v.detach().numpy() for k, v in st.items() if k in _SLOTS and v is not None}
        rec.step({n: p.detach().numpy() for n, p in params.items()}, slots)
    return rec.finish({"framework": "torch", "version": torch.__version__, "path": path})
