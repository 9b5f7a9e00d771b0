"""TensorFlow 1 adapter: ``tf.compat.v1.train`` optimizers in graph mode.

SGD is ``GradientDescentOptimizer`` (momentum 0) or ``MomentumOptimizer``; Adam is
``AdamOptimizer``.  The learning rate is a float32 placeholder fed every step; a
``None`` gradient leaves the variable out of that step's ``apply_gradients`` (the beta
powers still advance).  Learning-rate multipliers get one optimizer each.
"""

from __future__ import annotations

from refopt.oracle.adapters._tf1_common import run_graph
from refopt.oracle.run import Run
from refopt.oracle.trajectory import Trajectory


def run_tf1(run: Run) -> Trajectory:
    if run.rule not in ("sgd", "adam"):
        raise ValueError(f"tf.compat.v1.train has no {run.rule!r} optimizer")
    h = dict(run.hyper)

    def build(tf1, optimizers, mult, gv, lr):
        opt = optimizers.get(mult)
        if opt is None:
            if run.rule == "adam":
                opt = tf1.train.AdamOptimizer(
                    lr, beta1=h.get("beta1", 0.9), beta2=h.get("beta2", 0.999), epsilon=h.get("epsilon", 1e-8)
                )
            elif h.get("momentum"):
                opt = tf1.train.MomentumOptimizer(lr, h["momentum"], use_nesterov=h.get("nesterov", False))
            else:
                opt = tf1.train.GradientDescentOptimizer(lr)
            optimizers[mult] = opt
        return opt.apply_gradients(gv)

    def slots_of(sess, opt, name, var):
        names = {"m": "m", "v": "v"} if run.rule == "adam" else ({"momentum": "momentum"} if h.get("momentum") else {})
        return {mine: sess.run(opt.get_slot(var, theirs)) for mine, theirs in names.items()}

    return run_graph(run, build, slots_of, {"framework": "tf1"})
