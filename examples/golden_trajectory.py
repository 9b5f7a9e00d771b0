"""Producing a golden trajectory with refopt, and consuming it in a PyTorch test and in a
JAX test.

    python examples/golden_trajectory.py                  # writes golden/ here, runs both tests
    GOLDEN_DIR=golden pytest examples/golden               # the same tests, under pytest

The recipe docs/recipes/golden-trajectories.md shows this script section by section,
next to what each section prints (the ``# --8<-- [start:NAME]`` comments mark the
sections); the tests are examples/golden/test_torch_adam.py and test_jax_adam.py.
"""

# --8<-- [start:produce]
import sys
from pathlib import Path

import numpy as np

from refopt.oracle.scenarios import Scenario, run_scenario
from refopt.testing import max_ulp

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))  # the two tests and their reader


def my_adam(convention: str) -> Scenario:
    """Adam with lr 0.01 on a dense layer's kernel and bias: 20 steps of seeded gradients."""
    return Scenario.from_dict(
        {
            "name": f"my-adam-{convention}",
            "dtype": "float32",
            "steps": 20,
            "variables": {"dense/kernel": [5, 3], "dense/bias": [3]},
            "init_seed": 0,
            "gradients": {"kind": "synthetic", "seed": 1},  # normal, with exactly-zero rows and columns
            "optimizer": {"rule": "adam", "convention": convention, "learning_rate": 0.01},
        }
    )


Path("golden").mkdir(exist_ok=True)
print("[produce] refopt's golden trajectories")
for convention in ("torch", "optax"):
    trajectory = run_scenario(my_adam(convention))
    path = trajectory.save(f"golden/adam-{convention}.npz", machine=False)
    slots = sorted(next(iter(trajectory.slots.values())))
    print(f"{path}: {trajectory.steps} steps of {', '.join(trajectory.names)}; slots {', '.join(slots)}")
# --8<-- [end:produce]

# --8<-- [start:torch]
import test_torch_adam  # noqa: E402

golden, fused = test_torch_adam.replay_in_torch("golden/adam-torch.npz", fused=True)
_, default = test_torch_adam.replay_in_torch("golden/adam-torch.npz")
print("[torch] torch.optim.Adam replaying golden/adam-torch.npz: largest distance over 20 steps")
print("variable        fused (ULP)  default (MKL's sqrt; how far depends on the CPU)")
for n in golden["names"]:
    ulps = max_ulp(fused["params"][n], golden["params"][n])
    near = np.max(np.abs(default["params"][n] - golden["params"][n])) <= 1e-6
    print(f"{n:14s}  {ulps:11g}  {'within 1e-6' if near else 'FARTHER than 1e-6'}")
for test in (
    test_torch_adam.test_fused_adam_follows_the_golden_trajectory_bit_for_bit,
    test_torch_adam.test_default_adam_stays_within_1e_6,
):
    test()
    print(f"{test.__name__}: passed")
# --8<-- [end:torch]

# --8<-- [start:jax]
import test_jax_adam  # noqa: E402

golden, mine = test_jax_adam.replay_in_optax("golden/adam-optax.npz")
_, across = test_jax_adam.replay_in_optax("golden/adam-torch.npz")  # the other framework's arithmetic
print("[jax] optax.adam (eager, float32) replaying each golden file: largest distance over 20 steps, in ULP")
print("variable        adam-optax.npz  adam-torch.npz")
torch_golden = test_jax_adam.read_golden("golden/adam-torch.npz")
for n in golden["names"]:
    ulps = [max_ulp(mine["params"][n], golden["params"][n]), max_ulp(across["params"][n], torch_golden["params"][n])]
    print(f"{n:14s}  {ulps[0]:14g}  {ulps[1]:g}")
test_jax_adam.test_optax_adam_follows_the_golden_trajectory_bit_for_bit()
print("test_optax_adam_follows_the_golden_trajectory_bit_for_bit: passed")
# --8<-- [end:jax]
