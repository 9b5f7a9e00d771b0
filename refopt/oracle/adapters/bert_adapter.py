"""BERT adapter: Google BERT's ``AdamWeightDecayOptimizer`` (google-research/bert,
``optimization.py``), re-typed from its published source and run in TF1 graph mode.

The update, as published (float32 slots ``<name>/adam_m``, ``<name>/adam_v``)::

    next_m = beta_1 * m + (1.0 - beta_1) * grad
    next_v = beta_2 * v + (1.0 - beta_2) * square(grad)
    update = next_m / (sqrt(next_v) + epsilon)
    if _do_use_weight_decay(name): update += weight_decay_rate * param
    next_param = param - learning_rate * update

``_do_use_weight_decay`` is False when ``weight_decay_rate`` is 0 or a pattern of
``exclude_from_weight_decay`` ``re.search``-es the name (":0" stripped).  BERT's
``create_optimizer`` clips with ``tf.clip_by_global_norm(grads, 1.0)``; a run's
``clip={"global_clipnorm": c}`` does the same here.
"""

from __future__ import annotations

import re

from refopt.oracle.adapters._tf1_common import run_graph
from refopt.oracle.run import Run
from refopt.oracle.trajectory import Trajectory

BERT_EXCLUDE = ["LayerNorm", "layer_norm", "bias"]


class AdamWeightDecayOptimizer:
    """The published optimizer, minus its ``tf.train.Optimizer`` base (only
    ``apply_gradients`` is used)."""

    def __init__(
        self,
        learning_rate,
        weight_decay_rate=0.0,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        exclude_from_weight_decay=None,
    ):
        self.learning_rate = learning_rate
        self.weight_decay_rate = weight_decay_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.exclude_from_weight_decay = exclude_from_weight_decay
        self.slots = {}

    def apply_gradients(self, tf, tf1, grads_and_vars):
        assignments = []
        for grad, param in grads_and_vars:
            if grad is None or param is None:
                continue
            param_name = self._get_variable_name(param.name)
            m = tf1.get_variable(
                name=param_name + "/adam_m",
                shape=param.shape.as_list(),
                dtype=tf.float32,
                trainable=False,
                initializer=tf1.zeros_initializer(),
            )
            v = tf1.get_variable(
                name=param_name + "/adam_v",
                shape=param.shape.as_list(),
                dtype=tf.float32,
                trainable=False,
                initializer=tf1.zeros_initializer(),
            )
            self.slots[param_name] = (m, v)
            next_m = tf.multiply(self.beta_1, m) + tf.multiply(1.0 - self.beta_1, grad)
            next_v = tf.multiply(self.beta_2, v) + tf.multiply(1.0 - self.beta_2, tf.square(grad))
            update = next_m / (tf.sqrt(next_v) + self.epsilon)
            if self._do_use_weight_decay(param_name):
                update += self.weight_decay_rate * param
            update_with_lr = self.learning_rate * update
            next_param = param - update_with_lr
            assignments.extend([param.assign(next_param), m.assign(next_m), v.assign(next_v)])
        return tf.group(*assignments)

    def _do_use_weight_decay(self, param_name):
        if not self.weight_decay_rate:
            return False
        if self.exclude_from_weight_decay:
            for r in self.exclude_from_weight_decay:
                if re.search(r, param_name) is not None:
                    return False
        return True

    @staticmethod
    def _get_variable_name(param_name):
        m = re.match("^(.*):\\d+$", param_name)
        if m is not None:
            param_name = m.group(1)
        return param_name


def run_bert(run: Run) -> Trajectory:
    if run.rule != "adamw" or run.dtype != "float32":
        raise ValueError("BERT's AdamWeightDecayOptimizer is an AdamW over float32 variables")
    import tensorflow as tf

    h = dict(run.hyper)
    exclude = BERT_EXCLUDE if run.exclude_from_weight_decay is None else run.exclude_from_weight_decay
    wd = h.get("weight_decay")

    def build(tf1, optimizers, mult, gv, lr):
        opt = optimizers.get(mult)
        if opt is None:
            opt = optimizers[mult] = AdamWeightDecayOptimizer(
                lr,
                weight_decay_rate=0.01 if wd is None else wd,
                beta_1=h.get("beta1", 0.9),
                beta_2=h.get("beta2", 0.999),
                epsilon=h.get("epsilon", 1e-6),
                exclude_from_weight_decay=exclude,
            )
        with tf1.variable_scope("", reuse=tf1.AUTO_REUSE):
            return opt.apply_gradients(tf, tf1, gv)

    def slots_of(sess, opt, name, var):
        m, v = opt.slots[name]
        return {"m": sess.run(m), "v": sess.run(v)}

    return run_graph(run, build, slots_of, {"framework": "bert", "source": "google-research/bert optimization.py"})
