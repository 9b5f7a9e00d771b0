"""Routing each loss of a joint loss to its own variables, in one step.

    python examples/routing_losses.py

The recipe docs/recipes/routing.md shows this script section by section, next to what
each section prints (the ``# --8<-- [start:NAME]`` comments mark the sections).
"""

# --8<-- [start:setup]
import numpy as np

import refopt as rf


class Net(rf.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = rf.nn.Dense(4, 8, seed=1)
        self.head = rf.nn.Dense(8, 3, seed=2)

    def forward(self, x: rf.Tensor) -> tuple[rf.Tensor, rf.Tensor]:
        hidden = rf.tanh(self.encoder(x))
        return self.head(hidden), hidden


rng = np.random.default_rng(0)
x = rf.constant(rng.standard_normal((16, 4)).astype(np.float32))
labels = rf.constant(rng.integers(0, 3, 16))


def losses(model: Net) -> tuple[rf.Tensor, rf.Tensor]:
    """The task loss (cross-entropy) and an auxiliary loss on the hidden activations."""
    logits, hidden = model(x)
    main = rf.nn.losses.sparse_softmax_cross_entropy(labels, logits, reduction="mean")
    aux = 0.1 * rf.mean(rf.square(hidden))
    return main, aux


def norm(g: rf.Tensor | None) -> str:
    return "None" if g is None else f"{np.linalg.norm(g.numpy()):.4f}"


# --8<-- [end:setup]

# --8<-- [start:sources]
model = Net()
main, aux = losses(model)
variables = model.trainable_variables()
print("[sources] the norm of each loss's gradient, per variable")
print("variable        main    aux")
for v, g_main, g_aux in zip(variables, rf.gradients(main, variables), rf.gradients(aux, variables)):
    print(f"{v.name:14s}  {norm(g_main)}  {norm(g_aux)}")
# --8<-- [end:sources]

# --8<-- [start:routed]
model = Net()
opt = rf.optim.Adam(learning_rate=1e-2)
main, aux = losses(model)
applied = opt.minimize({main: model.head.variables(), aux: model.encoder.variables()})
print("[routed] minimize({main: head, aux: encoder}): the gradient each variable received")
for g, v in applied:
    print(f"{v.name:14s}  {norm(g)}")

# the same update spelled out: one compute_gradients per loss, one apply_gradients
twin = Net()
opt2 = rf.optim.Adam(learning_rate=1e-2)
main2, aux2 = losses(twin)
grads_and_vars = opt2.compute_gradients(main2, twin.head.variables())
grads_and_vars += opt2.compute_gradients(aux2, twin.encoder.variables())
opt2.apply_gradients(grads_and_vars)
same = all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.variables(), twin.variables()))
print(f"the same bits as compute_gradients per loss + one apply_gradients: {same}")
# --8<-- [end:routed]

# --8<-- [start:naive]
naive = Net()
opt3 = rf.optim.Adam(learning_rate=1e-2)
main3, aux3 = losses(naive)
opt3.minimize(main3 + aux3)  # the joint loss: the task loss reaches the encoder too
print("[naive] minimize(main + aux) instead: how far each variable lands from the routed update")
for a, b in zip(naive.variables(), model.variables()):
    print(f"{a.name:14s}  {np.abs(a.numpy() - b.numpy()).max():.2e}")
# --8<-- [end:naive]

# --8<-- [start:shared]
shared = Net()
opt4 = rf.optim.SGD(learning_rate=0.1)
main4, aux4 = losses(shared)
kernel = shared.encoder.kernel
g_main, g_aux = (rf.gradients(loss, [kernel])[0].numpy() for loss in (main4, aux4))
applied = opt4.minimize({main4: shared.variables(), aux4: shared.encoder.variables()})
g_applied = next(g for g, v in applied if v is kernel).numpy()
print("[shared] encoder/kernel under both losses receives the sum of their gradients")
print(f"applied == d main + d aux, bit for bit: {np.array_equal(g_applied, g_main + g_aux)}")
# --8<-- [end:shared]
