"""Freezing a changing subset of parameters each step under Adam.

    python examples/freezing_adam.py

The recipe docs/recipes/freezing.md shows this script section by section, next to what
each section prints (the ``# --8<-- [start:NAME]`` comments mark the sections).
"""

# --8<-- [start:setup]
import numpy as np

import refopt as rf


def embedding_table() -> rf.Variable:
    """A 6 x 3 embedding table: the same initial values every time."""
    return rf.Variable(np.linspace(-1.0, 1.0, 18, dtype=np.float32).reshape(6, 3), name="embeddings")


def loss_of(table: rf.Variable, ids: np.ndarray) -> rf.Tensor:
    """A loss that reads the rows ``ids`` only: every other row's gradient is exactly zero."""
    return rf.sum(rf.square(rf.take(table, rf.constant(ids)) - 0.25))


ALL_ROWS, LAST_ROWS = np.arange(6), np.array([3, 4, 5])
# --8<-- [end:setup]

# --8<-- [start:surprise]
optimizers = {
    "SGD": lambda v: rf.optim.SGD([v], learning_rate=0.1),
    "SGD, momentum 0.9": lambda v: rf.optim.SGD([v], learning_rate=0.1, momentum=0.9),
    "Adam": lambda v: rf.optim.Adam([v], learning_rate=0.1),
    "AdamW": lambda v: rf.optim.AdamW([v], learning_rate=0.1),
}
print("[surprise] rows 0-2 have a gradient at step 1 only, exactly zero at steps 2-5")
print(f"{'optimizer':18s}  largest move of rows 0-2 during steps 2-5")
surprise = {}
for name, make in optimizers.items():
    table = embedding_table()
    opt = make(table)
    opt.minimize(loss_of(table, ALL_ROWS))  # step 1: every row is in the batch
    after_step_1 = table.numpy()
    for _ in range(2, 6):  # steps 2-5
        opt.minimize(loss_of(table, LAST_ROWS))  # rows 0-2: gradient exactly 0
    surprise[name] = table.numpy()
    moved = np.abs(surprise[name][:3] - after_step_1[:3]).max()
    print(f"{name:18s}  {moved:.6f}")
# --8<-- [end:surprise]

# --8<-- [start:why]
table = embedding_table()
opt = rf.optim.Adam([table], learning_rate=0.1)
print("[why] Adam, element [0, 0]: m keeps the step-1 gradient alive, m / sqrt(v) stays large")
print("step  gradient       m          v        move")
for step in range(1, 6):
    before = table.numpy()[0, 0]
    (g, _), *rest = opt.minimize(loss_of(table, ALL_ROWS if step == 1 else LAST_ROWS))
    m, v = opt.get_slot(table, "m").numpy()[0, 0], opt.get_slot(table, "v").numpy()[0, 0]
    print(f"{step:4d}  {g.numpy()[0, 0]:8.4f}  {m:9.5f}  {v:9.6f}  {table.numpy()[0, 0] - before:+.5f}")
# --8<-- [end:why]

# --8<-- [start:masks]
table = embedding_table()
opt = rf.optim.Adam([table], learning_rate=0.1)
rng = np.random.default_rng(0)
print("[masks] a different subset trains each step; masks freeze the rest exactly")
print("step  rows trained  frozen: max move of value, m, v   trained: max move")
for step in range(1, 7):
    ids = np.sort(rng.choice(6, size=2, replace=False))  # this step's batch
    keep = np.zeros((6, 3), bool)
    keep[ids] = True  # True: trained this step; False: frozen this step
    p0, m0, v0 = (table.numpy(), opt.get_slot(table, "m").numpy(), opt.get_slot(table, "v").numpy())
    grads_and_vars = opt.compute_gradients(loss_of(table, ids))
    opt.apply_gradients(grads_and_vars, masks={table: keep})
    p1, m1, v1 = (table.numpy(), opt.get_slot(table, "m").numpy(), opt.get_slot(table, "v").numpy())
    frozen = [np.abs(a - b)[~keep].max() for a, b in ((p1, p0), (m1, m0), (v1, v0))]
    print(
        f"{step:4d}  {str(ids):12s}  {frozen[0]:.1f}, {frozen[1]:.1f}, {frozen[2]:.1f}"
        f"{'':23s}{np.abs(p1 - p0)[keep].max():.4f}"
    )
masked = table.numpy()
# --8<-- [end:masks]

# --8<-- [start:restore]
table = embedding_table()
opt = rf.optim.Adam([table], learning_rate=0.1)
rng = np.random.default_rng(0)  # the same batches as above
for _ in range(6):
    ids = np.sort(rng.choice(6, size=2, replace=False))
    frozen = np.ones((6, 3), bool)
    frozen[ids] = False
    saved = {"value": table.numpy(), "m": opt.get_slot(table, "m").numpy(), "v": opt.get_slot(table, "v").numpy()}
    opt.minimize(loss_of(table, ids))  # an ordinary step: every row moves
    value = table.numpy()
    value[frozen] = saved["value"][frozen]
    table.assign(value)
    for slot in ("m", "v"):
        restored = opt.get_slot(table, slot).numpy()
        restored[frozen] = saved[slot][frozen]
        opt.set_slot(table, slot, restored)
print("[restore] saving and restoring the value and the moments of the frozen rows")
print(f"same bits as the masks: {np.array_equal(table.numpy(), masked)}")
# --8<-- [end:restore]


# --8<-- [start:torch]
print("[torch] the same in PyTorch 2.13, fused Adam (what convention='torch' reproduces)")
try:
    import torch
except ImportError:
    print("skipped: torch is not installed")
else:
    # the surprise: rows 0-2 have a zero gradient at steps 2-5, and move
    w = torch.nn.Parameter(torch.from_numpy(embedding_table().numpy()))
    topt = torch.optim.Adam([w], lr=0.1, fused=True)
    for ids in [ALL_ROWS] + [LAST_ROWS] * 4:
        topt.zero_grad()
        ((w[torch.from_numpy(ids)] - 0.25) ** 2).sum().backward()
        topt.step()
    print(f"rows 0-2 moved, as in refopt: {np.array_equal(w.detach().numpy(), surprise['Adam'])}")

    # the fix without masks: save the frozen rows' value and moments, step, restore them
    MOMENTS = ("exp_avg", "exp_avg_sq")
    w = torch.nn.Parameter(torch.from_numpy(embedding_table().numpy()))
    topt = torch.optim.Adam([w], lr=0.1, fused=True)
    rng = np.random.default_rng(0)  # the batches of the masks section
    for _ in range(6):
        ids = np.sort(rng.choice(6, size=2, replace=False))
        frozen = torch.ones(6, 3, dtype=torch.bool)
        frozen[ids] = False
        topt.zero_grad()
        ((w[torch.from_numpy(ids)] - 0.25) ** 2).sum().backward()
        state = topt.state[w]  # empty before the first step: the moments start at zero
        saved = [w.detach().clone()] + [state[k].clone() if state else torch.zeros_like(w) for k in MOMENTS]
        topt.step()
        with torch.no_grad():
            for t, s in zip([w] + [state[k] for k in MOMENTS], saved):
                t[frozen] = s[frozen]
    print(f"saving and restoring rows, same bits as refopt's masks: {np.array_equal(w.detach().numpy(), masked)}")
# --8<-- [end:torch]

# --8<-- [start:thaw]
# Element j is frozen until step T[j], then trains with gradient 1: its first move is
# lr * r(t) (epsilon aside), where a fresh Adam's first move is lr.
T = [1, 10, 100, 1000]
b1, b2, lr = 0.9, 0.999, 0.1
x = rf.Variable(np.zeros(len(T)), name="x")  # float64
opt = rf.optim.Adam([x], learning_rate=lr, beta1=b1, beta2=b2)
first_move = {}
for step in range(1, max(T) + 1):
    before = x.numpy()
    opt.apply_gradients([(np.ones(len(T)), x)], masks={x: np.array([step >= t for t in T])})
    for j, t in enumerate(T):
        if step == t:
            first_move[t] = before[j] - x.numpy()[j]
print("[thaw] an element frozen from the start, thawed at step t: its first move / lr")
print("   t   measured   r(t) = ((1-b1)/(1-b1^t)) / sqrt((1-b2)/(1-b2^t))")
for t in T:
    r = ((1 - b1) / (1 - b1**t)) / np.sqrt((1 - b2) / (1 - b2**t))
    print(f"{t:4d}   {first_move[t] / lr:.6f}   {r:.6f}")
print(f"  limit t -> inf: (1-b1)/sqrt(1-b2) = {(1 - b1) / np.sqrt(1 - b2):.6f}")
# --8<-- [end:thaw]
