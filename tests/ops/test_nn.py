"""nn functions against HIPS autograd and finite differences: the softmax family, conv2d
(NHWC/NCHW, strides, valid/same/explicit padding), pooling, dropout.

The autograd references are written independently: convolution as a sum over window
offsets of einsums, pooling as explicit window stacks."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp as ag_logsumexp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refopt as rf
from tests.ops.cases import check_no_op_on_a_variable, distinct, run_case

seeds = st.integers(0, 2**32 - 1)


@st.composite
def axis_args(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    return shape, draw(st.integers(-len(shape), len(shape) - 1))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@settings(max_examples=40)
@given(args=axis_args(), seed=seeds, scale=st.sampled_from([1.0, 30.0]))
def test_softmax_family(name: str, backend_name: str, args, seed: int, scale: float) -> None:
    shape, axis = args
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    refs = {
        "softmax": lambda a: anp.exp(a - ag_logsumexp(a, axis=axis, keepdims=True)),
        "log_softmax": lambda a: a - ag_logsumexp(a, axis=axis, keepdims=True),
        "logsumexp": lambda a: ag_logsumexp(a, axis=axis),
    }
    # Logits 30x apart give gradients formed by cancellation in any implementation: there
    # the bound is backward stability, ||error|| <= 1e-13 ||cotangent||.
    run_case(
        lambda t: getattr(rf, name)(t, axis=axis),
        refs[name],
        [x],
        None,
        seed,
        backend_name,
        cotangent_atol=1e-13 if scale > 1 else 0.0,
    )


def test_softmax_family_is_stable_for_huge_logits() -> None:
    x = rf.constant(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]]))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = rf.softmax(x).numpy()
        lp = rf.log_softmax(x).numpy()
        lse = rf.logsumexp(x, axis=1).numpy()
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(lp[0], [0, -2e4, -1e4])
    np.testing.assert_allclose(lse, [1e4, -1e4 + np.log(3)])
    with np.errstate(divide="ignore"):  # log(0) = -inf is the answer here
        assert np.isneginf(rf.logsumexp(rf.constant(np.full(3, -np.inf))).item())


def _tf_same(n: int, k: int, s: int) -> tuple[int, int]:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _ag_windows(x, kh, kw, sh, sw):
    ho = (x.shape[1] - kh) // sh + 1
    wo = (x.shape[2] - kw) // sw + 1
    return [
        (a, b, x[:, a : a + sh * (ho - 1) + 1 : sh, b : b + sw * (wo - 1) + 1 : sw, :])
        for a in range(kh)
        for b in range(kw)
    ]


@st.composite
def conv_args(draw):
    n, h, w, c, o = (draw(st.integers(1, lim)) for lim in (2, 6, 6, 3, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["valid", "same", 1, ((0, 1), (2, 0))]))
    fmt = draw(st.sampled_from(["NHWC", "NCHW"]))
    return n, h, w, c, o, kh, kw, sh, sw, padding, fmt


def _pads(padding, h, w, kh, kw, sh, sw):
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return _tf_same(h, kh, sh), _tf_same(w, kw, sw)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    return padding


@settings(max_examples=120)
@given(args=conv_args(), seed=seeds)
def test_conv2d(backend_name: str, args, seed: int) -> None:
    n, h, w, c, o, kh, kw, sh, sw, padding, fmt = args
    pt, pl = _pads(padding, h, w, kh, kw, sh, sw)
    assume(h + sum(pt) >= kh and w + sum(pl) >= kw)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c) if fmt == "NHWC" else (n, c, h, w))
    k = rng.standard_normal((kh, kw, c, o))

    def ref(x, k):
        if fmt == "NCHW":
            x = anp.transpose(x, (0, 2, 3, 1))
        x = anp.pad(x, ((0, 0), pt, pl, (0, 0)), mode="constant")
        out = sum(anp.einsum("nhwc,co->nhwo", v, k[a, b]) for a, b, v in _ag_windows(x, kh, kw, sh, sw))
        return anp.transpose(out, (0, 3, 1, 2)) if fmt == "NCHW" else out

    run_case(
        lambda x, k: rf.conv2d(x, k, strides=(sh, sw), padding=padding, data_format=fmt),
        ref,
        [x, k],
        None,
        seed,
        backend_name,
    )


@st.composite
def pool_args(draw):
    n, h, w, c = (draw(st.integers(1, lim)) for lim in (2, 6, 6, 2))
    ph, pw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = draw(st.sampled_from([None, 1, 2, (1, 2)]))
    padding = draw(st.sampled_from(["valid", "same"]))
    return n, h, w, c, ph, pw, strides, padding, draw(st.sampled_from(["NHWC", "NCHW"]))


@pytest.mark.parametrize("kind", ["max", "avg"])
@settings(max_examples=60)
@given(args=pool_args(), seed=seeds)
def test_pool2d(kind: str, backend_name: str, args, seed: int) -> None:
    n, h, w, c, ph, pw, strides, padding, fmt = args
    sh, sw = (ph, pw) if strides is None else (strides, strides) if isinstance(strides, int) else strides
    pt, pl = _pads(padding, h, w, ph, pw, sh, sw)
    assume(h + sum(pt) >= ph and w + sum(pl) >= pw)
    shape = (n, h, w, c) if fmt == "NHWC" else (n, c, h, w)
    x = distinct(np.random.default_rng(seed), shape)

    def ref(x):
        if fmt == "NCHW":
            x = anp.transpose(x, (0, 2, 3, 1))
        if kind == "max":
            xp_ = anp.pad(x, ((0, 0), pt, pl, (0, 0)), mode="constant", constant_values=-np.inf)
            out = anp.max(anp.stack([v for _, _, v in _ag_windows(xp_, ph, pw, sh, sw)], -1), -1)
        else:
            xp_ = anp.pad(x, ((0, 0), pt, pl, (0, 0)), mode="constant")
            ones = np.pad(np.ones((1, h, w, 1)), ((0, 0), pt, pl, (0, 0)))
            total = anp.sum(anp.stack([v for _, _, v in _ag_windows(xp_, ph, pw, sh, sw)], -1), -1)
            count = np.sum(np.stack([v for _, _, v in _ag_windows(ones, ph, pw, sh, sw)], -1), -1)
            out = total / count
        return anp.transpose(out, (0, 3, 1, 2)) if fmt == "NCHW" else out

    fn = rf.max_pool2d if kind == "max" else rf.avg_pool2d
    run_case(lambda t: fn(t, (ph, pw), strides, padding, fmt), ref, [x], None, seed, backend_name)


def test_dropout_mask_scale_and_gradient(backend_name: str) -> None:
    from refopt import backend

    x = rf.constant(backend.move(np.ones((200, 50)), backend_name))
    y = rf.dropout(x, 0.25, seed=7)
    vals = y.numpy()
    kept = vals != 0
    np.testing.assert_allclose(vals[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.01
    (g,) = rf.gradients(rf.sum(y), [x])
    np.testing.assert_array_equal(g.numpy(), vals)  # d/dx of x*mask/(1-p) with x = 1
    # same seed, same mask, on every backend: the mask is drawn on the host
    np.testing.assert_array_equal(rf.dropout(rf.constant(np.ones((200, 50))), 0.25, seed=7).numpy(), vals)
    gen = np.random.default_rng(3)
    a, b = rf.dropout(x, 0.5, gen).numpy(), rf.dropout(x, 0.5, gen).numpy()
    assert not np.array_equal(a, b)  # a Generator advances
    assert rf.dropout(x, 0.0, seed=1) is x
    with pytest.raises(ValueError, match=r"refopt.dropout: rate must be in \[0, 1\)"):
        rf.dropout(x, 1.0, seed=1)


def test_conv2d_errors_name_shapes() -> None:
    x = rf.constant(np.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"input has 3 channels .* kernel expects 2"):
        rf.conv2d(x, rf.constant(np.zeros((3, 3, 2, 1))))
    with pytest.raises(ValueError, match="data_format must be 'NHWC' or 'NCHW'"):
        rf.conv2d(x, rf.constant(np.zeros((3, 3, 3, 1))), data_format="NWHC")
    with pytest.raises(ValueError, match=r"window \(5, 5\) is larger than the \(padded\) input 4x4"):
        rf.conv2d(x, rf.constant(np.zeros((5, 5, 3, 1))))


def test_dropout_at_rate_zero_on_a_variable_gives_a_tensor_the_optimizer_leaves_alone() -> None:
    check_no_op_on_a_variable(lambda v: rf.dropout(v, 0.0, seed=0), (2, 3))
    t = rf.constant(np.ones(3))
    assert rf.dropout(t, 0.0, seed=0) is t  # a plain Tensor is immutable: returned as it is
