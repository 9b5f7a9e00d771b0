"""Layers against torch (and TensorFlow where TensorFlow defines the semantics) in
float64 on the same weights: values and gradients, normwise relative <= 1e-12."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import refopt as rf
from refopt.testing import max_ulp
from tests.checks import rel_err
from tests.nn.twins import check_twin

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.frameworks
seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=30)
@given(seed=seeds, batch=st.sampled_from([(3,), (2, 4), ()]), use_bias=st.booleans())
def test_dense_matches_torch_linear(seed, batch, use_bias) -> None:
    rng = np.random.default_rng(seed)
    weight, bias, x = rng.standard_normal((3, 5)), rng.standard_normal(3), rng.standard_normal(batch + (5,))
    w = rng.standard_normal(batch + (3,))

    layer = rf.nn.Dense(5, 3, use_bias=use_bias, dtype="float64")
    layer.kernel.assign(weight.T)  # Linear.weight is (out, in); kernel is (in, out)
    if use_bias:
        layer.bias.assign(bias)
    xt = rf.constant(x)
    out = layer(xt)
    grads = rf.gradients(rf.sum(out * rf.constant(w)), [xt, *layer.variables()])

    lin = torch.nn.Linear(5, 3, bias=use_bias, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight))
        if use_bias:
            lin.bias.copy_(torch.tensor(bias))
    tx = torch.tensor(x, requires_grad=True)
    tout = lin(tx)
    tgrads = torch.autograd.grad((tout * torch.tensor(w)).sum(), [tx, *lin.parameters()])

    assert rel_err(out.numpy(), tout.detach().numpy()) <= 1e-12
    assert rel_err(grads[0].numpy(), tgrads[0].numpy()) <= 1e-12
    assert rel_err(grads[1].numpy(), tgrads[1].numpy().T) <= 1e-12
    if use_bias:
        assert rel_err(grads[2].numpy(), tgrads[2].numpy()) <= 1e-12


@settings(max_examples=30)
@given(seed=seeds, ids_shape=st.sampled_from([(4,), (2, 3), ()]))
def test_embedding_matches_torch(seed, ids_shape) -> None:
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((6, 4))
    ids = rng.integers(0, 6, ids_shape)
    ids.flat[0] = ids.flat[-1]  # a repeated id
    check_twin(lambda t, i: rf.take(t, i, axis=0), lambda t, i: F.embedding(i, t), [table, ids], [0], seed)
    layer = rf.nn.Embedding(6, 4, dtype="float64")
    layer.embeddings.assign(table)
    np.testing.assert_array_equal(layer(ids).numpy(), table[ids])


@st.composite
def conv_case(draw):
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(3, 7)), draw(st.integers(3, 7))
    k = draw(st.sampled_from([(1, 1), (3, 3), (2, 3)]))
    s = draw(st.sampled_from([1, 2, (2, 1)]))
    p = draw(st.sampled_from([0, 1, (1, 0)]))
    return n, c, o, h, w, k, s, p


@settings(max_examples=40)
@given(case=conv_case(), seed=seeds, fmt=st.sampled_from(["NCHW", "NHWC"]))
def test_conv2d_matches_torch(case, seed, fmt) -> None:
    n, c, o, h, w, k, s, p = case
    ph, pw = (p, p) if isinstance(p, int) else p
    assume(h + 2 * ph >= k[0] and w + 2 * pw >= k[1])
    rng = np.random.default_rng(seed)
    x_nchw = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((o, c) + k)  # torch OIHW
    bias = rng.standard_normal(o)
    kernel = weight.transpose(2, 3, 1, 0)  # HWIO
    x = x_nchw if fmt == "NCHW" else x_nchw.transpose(0, 2, 3, 1)

    def rf_fn(x, kern, b):
        y = rf.conv2d(x, kern, strides=s, padding=p, data_format=fmt)
        return y + (rf.reshape(b, (-1, 1, 1)) if fmt == "NCHW" else b)

    def torch_fn(x, kern, b):
        xt = x if fmt == "NCHW" else x.permute(0, 3, 1, 2)
        y = F.conv2d(xt, kern.permute(3, 2, 0, 1), b, stride=s, padding=p)
        return y if fmt == "NCHW" else y.permute(0, 2, 3, 1)

    check_twin(rf_fn, torch_fn, [x, kernel, bias], [0, 1, 2], seed)


@settings(max_examples=20)
@given(
    seed=seeds,
    hw=st.sampled_from([(5, 5), (6, 4), (7, 3)]),
    k=st.sampled_from([(3, 3), (2, 2), (1, 3)]),
    s=st.sampled_from([1, 2]),
)
def test_conv2d_same_padding_matches_tensorflow(seed, hw, k, s) -> None:
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2,) + hw + (3,))
    kern = rng.standard_normal(k + (3, 2))
    w = rng.standard_normal(rf.conv2d(x, kern, strides=s, padding="same").shape)
    xt, kt = rf.constant(x), rf.constant(kern)
    y = rf.conv2d(xt, kt, strides=s, padding="same")
    gx, gk = rf.gradients(rf.sum(y * rf.constant(w)), [xt, kt])
    tx, tk = tf.constant(x), tf.constant(kern)
    with tf.GradientTape() as tape:
        tape.watch([tx, tk])
        ty = tf.nn.conv2d(tx, tk, strides=s, padding="SAME")
        loss = tf.reduce_sum(ty * w)
    tgx, tgk = tape.gradient(loss, [tx, tk])
    assert rel_err(y.numpy(), ty.numpy()) <= 1e-12
    assert rel_err(gx.numpy(), tgx.numpy()) <= 1e-12 and rel_err(gk.numpy(), tgk.numpy()) <= 1e-12
    for pool, tf_pool in ((rf.max_pool2d, tf.nn.max_pool2d), (rf.avg_pool2d, tf.nn.avg_pool2d)):
        ref = tf_pool(tx, 2, s, "SAME")
        assert ref.dtype == tf.float64
        np.testing.assert_allclose(pool(x, 2, s, "same").numpy(), ref.numpy(), rtol=1e-13)


@settings(max_examples=30)
@given(seed=seeds, shape=st.sampled_from([(4, 6), (2, 3, 5), (6,)]), eps=st.sampled_from([1e-5, 1e-12]))
def test_layer_norm_matches_torch(seed, shape, eps) -> None:
    rng = np.random.default_rng(seed)
    x, gamma, beta = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    layer = rf.nn.LayerNorm(shape[-1], epsilon=eps, dtype="float64")

    def rf_fn(x, g, b):
        centred = x - rf.mean(x, -1, keepdims=True)
        return centred / rf.sqrt(rf.mean(centred * centred, -1, keepdims=True) + eps) * g + b

    check_twin(rf_fn, lambda x, g, b: F.layer_norm(x, (shape[-1],), g, b, eps), [x, gamma, beta], [0, 1, 2], seed)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    ref = F.layer_norm(torch.tensor(x), (shape[-1],), torch.tensor(gamma), torch.tensor(beta), eps).numpy()
    assert rel_err(layer(x).numpy(), ref) <= 1e-12


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate) -> None:
    x = np.linspace(-9, 9, 401)
    check_twin(lambda t: rf.gelu(t, approximate=approximate), lambda t: F.gelu(t, approximate=approximate), [x], [0])
    layer = rf.nn.GELU(approximate)
    ref = F.gelu(torch.tensor(x), approximate=approximate).numpy()
    assert rel_err(layer(x).numpy(), ref) <= 1e-12


def test_activation_and_flatten_layers() -> None:
    x = np.linspace(-2, 2, 24).reshape(2, 3, 4)
    np.testing.assert_array_equal(rf.nn.ReLU()(x).numpy(), np.maximum(x, 0))
    exact_tanh = np.array([float(mpmath.tanh(v)) for v in x.flat]).reshape(x.shape)  # correctly rounded
    assert max_ulp(rf.nn.Tanh()(x).numpy(), exact_tanh) <= 1  # refopt's tanh: <= 1 ULP on every machine
    assert rel_err(rf.nn.Sigmoid()(x).numpy(), torch.sigmoid(torch.tensor(x)).numpy()) <= 1e-15
    assert rf.nn.Flatten()(x).shape == (2, 12)


def test_dropout_layer_train_and_eval() -> None:
    layer = rf.nn.Dropout(0.5, seed=0)
    x = np.ones((50, 40))
    a, b = layer(x).numpy(), layer(x).numpy()
    assert not np.array_equal(a, b) and set(np.unique(a)) <= {0.0, 2.0}
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x)
    np.testing.assert_array_equal(rf.nn.Dropout(0.5, seed=0)(x).numpy(), a)  # same seed, same masks


def test_layer_input_errors_name_the_layer() -> None:
    d = rf.nn.Dense(4, 2, name="fc")
    with pytest.raises(ValueError, match=r"Dense 'fc': input has shape \(3, 5\), expected 4 features"):
        d(np.ones((3, 5), np.float32))
    ln = rf.nn.LayerNorm(4, name="ln")
    with pytest.raises(ValueError, match=r"LayerNorm 'ln': input shape \(2, 5\) does not end in \(4,\)"):
        ln(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="Dropout: rate must be in"):
        rf.nn.Dropout(1.5)


@pytest.mark.parametrize(
    "layer",
    [rf.nn.Dropout(0.5, seed=0).eval(), rf.nn.Dropout(0.0, seed=0), rf.nn.Sequential([])],
    ids=["dropout-eval", "dropout-rate-0", "empty-sequential"],
)
def test_an_identity_layer_on_a_variable_gives_a_tensor_the_optimizer_leaves_alone(layer) -> None:
    from tests.ops.cases import check_no_op_on_a_variable

    check_no_op_on_a_variable(layer, (2, 3))
