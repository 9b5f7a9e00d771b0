"""A JAX test that consumes refopt's golden trajectory (NumPy, JAX and optax only).

    python examples/golden_trajectory.py         # writes golden/adam-optax.npz
    pytest examples/golden/test_jax_adam.py      # GOLDEN_DIR=... if the files are elsewhere

It replays the golden file's gradients through ``optax.adam``, eagerly, from the golden
initial values (float32, JAX's default configuration) and checks the parameters and both
moments after every step.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
from read_golden import golden_dir, read_golden


def replay_in_optax(path) -> tuple[dict, dict]:
    """The golden trajectory, and optax's (the same layout as replay_in_torch's)."""
    golden = read_golden(path)
    names, lrs = golden["names"], golden["lrs"]
    assert np.all(lrs == lrs[0]), "this replay takes one learning rate"
    tx = optax.adam(float(lrs[0]))
    params = {n: jnp.asarray(golden["params"][n][0]) for n in names}
    state = tx.init(params)
    trail = {n: [golden["params"][n][0]] for n in names}
    slots = {n: {"m": [], "v": []} for n in names}
    for k in range(len(lrs)):
        grads = {n: jnp.asarray(golden["grads"][n][k]) for n in names}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        adam_state = state[0]  # ScaleByAdamState(count, mu, nu)
        for n in names:
            trail[n].append(np.asarray(params[n]))
            slots[n]["m"].append(np.asarray(adam_state.mu[n]))
            slots[n]["v"].append(np.asarray(adam_state.nu[n]))
    mine = {
        "params": {n: np.stack(p) for n, p in trail.items()},
        "slots": {n: {s: np.stack(a) for s, a in d.items()} for n, d in slots.items()},
    }
    return golden, mine


def test_optax_adam_follows_the_golden_trajectory_bit_for_bit() -> None:
    golden, mine = replay_in_optax(golden_dir() / "adam-optax.npz")
    for n in golden["names"]:
        np.testing.assert_array_equal(mine["params"][n], golden["params"][n], err_msg=n)
        for s in ("m", "v"):
            np.testing.assert_array_equal(mine["slots"][n][s], golden["slots"][n][s], err_msg=f"{n} {s}")
