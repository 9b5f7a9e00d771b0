"""Weight decay with Adam: L2 vs decoupled vs BERT's variant, exclusion lists, warmup +
polynomial decay, global-norm clipping -- side by side on one model.

    python examples/weight_decay.py

The recipe docs/recipes/weight-decay.md shows this script section by section, next to
what each section prints (the ``# --8<-- [start:NAME]`` comments mark the sections).
"""

# --8<-- [start:setup]
import numpy as np

import refopt as rf
from refopt.optim import schedules


class Net(rf.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = rf.nn.Dense(4, 8, seed=1)
        self.layer_norm = rf.nn.LayerNorm(8)
        self.head = rf.nn.Dense(8, 3, seed=2)

    def forward(self, x: rf.Tensor) -> rf.Tensor:
        return self.head(rf.tanh(self.layer_norm(self.encoder(x))))


rng = np.random.default_rng(0)
x = rf.constant(3.0 * rng.standard_normal((16, 4)).astype(np.float32))
labels = rf.constant(rng.integers(0, 3, 16))


def loss_of(model: Net) -> rf.Tensor:
    return rf.nn.losses.sparse_softmax_cross_entropy(labels, model(x), reduction="mean")


# --8<-- [end:setup]

# --8<-- [start:zero-gradient]
decays = {
    "Adam(weight_decay), torch: L2": lambda v, wd: rf.optim.Adam([v], learning_rate=1e-3, weight_decay=wd),
    "AdamW, torch": lambda v, wd: rf.optim.AdamW([v], learning_rate=1e-3, weight_decay=wd),
    "AdamW, keras": lambda v, wd: rf.optim.AdamW([v], learning_rate=1e-3, weight_decay=wd, convention="keras"),
    "AdamW, optax": lambda v, wd: rf.optim.AdamW([v], learning_rate=1e-3, weight_decay=wd, convention="optax"),
    "AdamW, bert": lambda v, wd: rf.optim.AdamW([v], learning_rate=1e-3, weight_decay=wd, convention="bert"),
}
print("[zero-gradient] a weight at 1.0 whose loss gradient is 0: its value after 100 steps, lr 1e-3")
print(f"{'':30s}  wd = 1e-2    wd = 1e-4")
for name, make in decays.items():
    ends = []
    for wd in (1e-2, 1e-4):
        w = rf.Variable(np.ones(1), name="w")
        opt = make(w, wd)
        for _ in range(100):
            opt.apply_gradients([(np.zeros(1), w)])  # the loss does not move w: only the decay does
        ends.append(w.numpy()[0])
    print(f"{name:30s}  {ends[0]:.7f}   {ends[1]:.7f}")
# --8<-- [end:zero-gradient]

# --8<-- [start:first-step]
print("[first-step] each AdamW's first move for a gradient of 1.0 (lr 1e-3, no decay)")
for convention in ("torch", "keras", "optax", "bert"):
    w = rf.Variable(np.zeros(1), name="w")
    rf.optim.AdamW([w], learning_rate=1e-3, weight_decay=0.0, convention=convention).apply_gradients([(np.ones(1), w)])
    print(f"{convention:6s} {-w.numpy()[0]:.7f}")
# --8<-- [end:first-step]

# --8<-- [start:schedule]
N, W, PEAK = 30, 3, 1e-2
bert_schedule = schedules.bert(PEAK, num_train_steps=N, num_warmup_steps=W)
restarted = schedules.linear_warmup(lambda step: PEAK * (N - step) / (N - W), W)  # decay from the peak at W
print(f"[schedule] warmup {W} steps, then linear decay to 0 at step {N}: the learning rate at each step")
print("step   bert(...)    decay restarted at the peak")
for step in (0, 1, 2, 3, 4, 15, 29):
    print(f"{step:4d}   {bert_schedule(step):.6f}     {restarted(step):.6f}")
# --8<-- [end:schedule]

# --8<-- [start:exclusions]
model = Net()
opt = rf.optim.AdamW(model.trainable_variables(), learning_rate=PEAK, convention="bert")
print("[exclusions] BERT's AdamW: its default exclusion list, resolved per variable")
opt.describe()
# --8<-- [end:exclusions]

# --8<-- [start:clipping]
model = Net()
grads = rf.gradients(loss_of(model), model.trainable_variables())
CLIP = 0.5
print(f"[clipping] the gradients' global norm, and after clipping to {CLIP} in each framework's formula")
for convention in ("torch", "tf1", "optax"):
    clipped, norm = rf.optim.clip_by_global_norm(grads, CLIP, convention=convention)
    after = float(rf.optim.global_norm([g.numpy() for g in clipped], convention))
    print(f"{convention:6s} norm {norm:.7f} -> {after:.9f}")
# --8<-- [end:clipping]

# --8<-- [start:side-by-side]
EXCLUDE = ["bias", "layer_norm"]  # no decay for biases and LayerNorm, as BERT does
common = dict(learning_rate=bert_schedule, global_clipnorm=CLIP)
recipes = {
    "torch Adam, L2 in the gradient": lambda vs, wd: rf.optim.Adam(vs, weight_decay=wd, **common),
    "torch AdamW": lambda vs, wd: rf.optim.AdamW(vs, weight_decay=wd, **common),
    "torch AdamW, exclusions": lambda vs, wd: rf.optim.AdamW(
        vs, weight_decay=wd, exclude_from_weight_decay=EXCLUDE, **common
    ),
    "keras AdamW, exclusions": lambda vs, wd: rf.optim.AdamW(
        vs, weight_decay=wd, exclude_from_weight_decay=EXCLUDE, convention="keras", **common
    ),
    "optax adamw, exclusions": lambda vs, wd: rf.optim.AdamW(
        vs, weight_decay=wd, exclude_from_weight_decay=EXCLUDE, convention="optax", **common
    ),
    "bert AdamW (its exclusions)": lambda vs, wd: rf.optim.AdamW(vs, weight_decay=wd, convention="bert", **common),
}


def train(make, wd: float) -> tuple[float, Net]:
    model = Net()
    opt = make(model.trainable_variables(), wd)
    for _ in range(N):
        loss = loss_of(model)
        opt.minimize(loss)
    return loss.item(), model


def norm(model: Net, kernels: bool) -> float:
    return np.sqrt(sum(np.sum(v.numpy() ** 2) for v in model.variables() if v.name.endswith("kernel") == kernels))


print(f"[side-by-side] {N} steps: warmup + linear decay (peak {PEAK}), clipping at {CLIP}, weight decay 0.1")
print(f"{'':31s} {'last loss':>9s}  norm with decay / without: kernels  biases + LayerNorm")
for name, make in recipes.items():
    loss, decayed = train(make, 0.1)
    _, plain = train(make, 0.0)
    ratios = [norm(decayed, k) / norm(plain, k) for k in (True, False)]
    print(f"{name:31s} {loss:9.6f}  {'':27s}{ratios[0]:7.4f}  {ratios[1]:.4f}")
# --8<-- [end:side-by-side]
