"""optax adapter (eager ``update`` + ``apply_updates``).

The parameter tree is a dict of the run's variables.  ``jax_enable_x64`` is switched to
match the run's dtype (off for float32, as most users run; on for float64).  A run with
learning-rate multipliers becomes ``optax.multi_transform`` with one label per
multiplier.  Weight decay: ``adamw``'s own (masked by the exclusions); for SGD and Adam,
``add_decayed_weights`` in front (L2).  optax has no missing gradients: for a ``None``
gradient the adapter updates with zeros and then restores that variable and its state
leaves -- the parameter is skipped while the shared count advances, which is refopt's
definition for this convention.
"""

from __future__ import annotations

import re

import numpy as np

from refopt.oracle.run import Run
from refopt.oracle.trajectory import Recorder, Trajectory


def _transform(optax, run: Run, names: list[str], mult: float, jit: bool = False):
    h = dict(run.hyper)
    lrs = run.lrs
    if jit:  # inside jit the count is traced: index a device array of the rates
        import jax.numpy as jnp

        table = jnp.asarray(np.asarray(lrs) * mult, dtype=run.dtype)

        def lr(count):
            return table[count]
    else:

        def lr(count):
            return lrs[int(count)] * mult

    # the mask covers the whole tree: inside multi_transform every label sees all keys
    mask = {n: not any(re.search(p, n) for p in (run.exclude_from_weight_decay or [])) for n in run.variables}
    b1, b2 = h.get("beta1", 0.9), h.get("beta2", 0.999)
    eps, eps_root = h.get("epsilon", 1e-8), h.get("eps_root", 0.0)
    wd = h.get("weight_decay")
    if run.rule == "adamw":
        return optax.adamw(
            lr, b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=1e-4 if wd is None else wd, mask=mask
        )
    if run.rule == "adam":
        inner = (
            optax.amsgrad(lr, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
            if h.get("amsgrad")
            else optax.adam(lr, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
        )
    else:
        inner = optax.sgd(lr, momentum=h.get("momentum") or None, nesterov=h.get("nesterov", False))
    if wd:
        return optax.chain(optax.add_decayed_weights(wd, mask=mask), inner)
    return inner


def _slots(state, names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    wanted = {"mu": "m", "nu": "v", "nu_max": "v_max", "trace": "momentum"}

    def walk(node):
        if hasattr(node, "_fields"):
            for field in node._fields:
                value = getattr(node, field)
                if field in wanted and isinstance(value, dict):
                    for n, a in value.items():
                        if n in out and hasattr(a, "shape"):
                            out[n][wanted[field]] = np.asarray(a)
                else:
                    walk(value)
        elif isinstance(node, (tuple, list)):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(state)
    return out


def run_optax(run: Run, jit: bool = False) -> Trajectory:
    """``jit=True`` compiles update + apply_updates with ``jax.jit``; XLA then fuses and
    contracts differently (not what the optax convention reproduces -- reported as measured)."""
    import jax

    jax.config.update("jax_enable_x64", run.dtype == "float64")
    import jax.numpy as jnp
    import optax

    if run.masks:
        raise ValueError("optax has no element masks (its masks select whole leaves)")
    if run.clip:
        raise ValueError("the optax adapter does not clip")
    names = list(run.variables)
    by_mult: dict[float, list[str]] = {}
    for n in names:
        by_mult.setdefault(run.multiplier(n), []).append(n)
    if len(by_mult) == 1:
        tx = _transform(optax, run, names, next(iter(by_mult)), jit)
    else:
        labels = {n: f"m{i}" for i, ns in enumerate(by_mult.values()) for n in ns}
        tx = optax.multi_transform(
            {f"m{i}": _transform(optax, run, ns, mult) for i, (mult, ns) in enumerate(by_mult.items())}, labels
        )
    params = {n: jnp.asarray(v) for n, v in run.variables.items()}
    state = tx.init(params)

    def step(g, state, params):
        updates, new_state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), new_state

    if jit:
        step = jax.jit(step)
    rec = Recorder(run)
    for grads in run.grads:
        missing = {n for n in names if grads[n] is None}
        g = {n: jnp.zeros_like(params[n]) if grads[n] is None else jnp.asarray(grads[n]) for n in names}
        new_params, new_state = step(g, state, params)
        if missing:
            new_params = {n: params[n] if n in missing else new_params[n] for n in names}

            def keep(path, new, old):
                return old if any(getattr(k, "key", None) in missing for k in path) else new

            new_state = jax.tree_util.tree_map_with_path(keep, new_state, state)
        params, state = new_params, new_state
        rec.step({n: np.asarray(v) for n, v in params.items()}, _slots(state, names))
    return rec.finish(
        {"framework": "optax", "version": optax.__version__, "jax": jax.__version__, "x64": run.dtype == "float64"}
    )
