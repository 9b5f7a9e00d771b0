"""Gradient clipping against each framework's own implementation.

The formulas are the frameworks'; the global norm is a reduction whose order is each
framework's kernel's (refopt's is its own fixed order), so clipped gradients agree to a
few ULP (bounds below; measured <= 4 ULP float32, <= 8 float64), and exactly when
nothing is clipped."""

from __future__ import annotations

import numpy as np
import pytest

import refopt as rf
from refopt.optim import clip_by_global_norm, global_norm
from refopt.optim.clipping import clip_arrays
from refopt.testing import max_ulp

pytestmark = pytest.mark.frameworks
SHAPES = [(7, 5), (5,), (33, 17), (120, 90)]
BOUND = {"float32": 8, "float64": 32}


def _grads(seed, dtype, scale=3.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in SHAPES]


def _torch_clip(gs, c):
    torch = pytest.importorskip("torch")
    params = [torch.zeros(g.shape, dtype=getattr(torch, str(g.dtype)), requires_grad=True) for g in gs]
    for p, g in zip(params, gs):
        p.grad = torch.tensor(g.copy())
    norm = torch.nn.utils.clip_grad_norm_(params, c)
    return [p.grad.numpy() for p in params], float(norm)


def _tf_clip(gs, c):
    tf = pytest.importorskip("tensorflow")
    out, norm = tf.clip_by_global_norm([tf.constant(g) for g in gs], c)
    return [o.numpy() for o in out], float(norm)


def _keras_clip(gs, c):
    pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    from keras.src.optimizers.base_optimizer import clip_by_global_norm as keras_clip
    from keras.src.optimizers.base_optimizer import global_norm as keras_norm

    return [np.asarray(x) for x in keras_clip([tf.constant(g) for g in gs], c)], float(keras_norm(gs))


def _optax_clip(gs, c):
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    out, _ = optax.clip_by_global_norm(c).update([jnp.asarray(g) for g in gs], optax.EmptyState())
    return [np.asarray(o) for o in out], float(optax.global_norm([jnp.asarray(g) for g in gs]))


REFS = {"torch": _torch_clip, "tf1": _tf_clip, "keras": _keras_clip, "optax": _optax_clip}


@pytest.mark.parametrize("convention", list(REFS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_global_norm_clipping_matches_each_framework(convention, dtype) -> None:
    if convention == "optax" and dtype == "float64":
        pytest.skip("optax runs float32 with JAX's default config here")
    for seed in range(5):
        gs = _grads(seed, dtype)
        ref, ref_norm = REFS[convention](gs, 10.0)
        mine = clip_arrays(gs, convention, global_clipnorm=10.0)
        assert max(max_ulp(a, b) for a, b in zip(mine, ref)) <= BOUND[dtype]
        n = float(global_norm(gs, convention))
        assert abs(n - ref_norm) <= 4 * np.spacing(np.asarray(ref_norm, dtype))
        # nothing to clip: the gradients pass through bit for bit
        small = _grads(seed, dtype, scale=1e-3)
        assert all(
            np.array_equal(a, b)
            for a, b in zip(clip_arrays(small, convention, global_clipnorm=10.0), REFS[convention](small, 10.0)[0])
        )


def test_clip_by_global_norm_public_function() -> None:
    gs = [rf.constant(np.array([3.0, 4.0])), None, np.array([12.0])]
    clipped, norm = clip_by_global_norm(gs, 6.5)
    assert norm == 13.0 and clipped[1] is None and isinstance(clipped[0], rf.Tensor)
    np.testing.assert_allclose(clipped[0].numpy(), [1.5, 2.0], rtol=1e-15)
    np.testing.assert_allclose(clipped[2], [6.0], rtol=1e-15)
    bad, _ = clip_by_global_norm([np.array([np.inf, 1.0])], 1.0)
    assert np.isnan(bad[0]).all()  # TensorFlow's (n - n) term: a non-finite norm poisons the step
    for bad_norm in (0, -1.0, float("nan"), float("inf"), True, "1"):  # NaN used to pass (nan <= 0 is False)
        with pytest.raises(ValueError, match="max_norm must be a finite positive number"):
            clip_by_global_norm(gs, bad_norm)


def test_clipnorm_and_clipvalue_match_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    for g in _grads(7, "float32"):
        mine = clip_arrays([g], "keras", clipnorm=2.0)[0]
        assert max_ulp(mine, tf.clip_by_norm(tf.constant(g), 2.0).numpy()) <= BOUND["float32"]
        np.testing.assert_array_equal(
            clip_arrays([g], "keras", clipvalue=0.5)[0], tf.clip_by_value(tf.constant(g), -0.5, 0.5).numpy()
        )


@pytest.mark.parametrize(
    "convention,framework", [("keras", "keras"), ("tf1", "tf1"), ("torch", "torch"), ("bert", "tf1")]
)
def test_optimizers_with_global_clipnorm_track_the_framework(convention, framework) -> None:
    """Clip-then-update (Keras: clip, then weight decay, then the step) over 20 steps
    stays within a few ULP of the framework: only the norm's last bits differ."""
    from refopt.oracle.adapters import available, run_framework
    from refopt.oracle.run import run_refopt
    from tests.optim.streams import make_run

    if not available(framework):
        pytest.skip(f"{framework} is not installed")
    rule = "adamw" if convention in ("keras", "bert") else "adam"
    run = make_run(rule, convention, "float32", {}, steps=20, seed=2, none_every=0, clip={"global_clipnorm": 1.0})
    mine, theirs = run_refopt(run), run_framework(run, framework)
    from refopt.testing import ulp_distance

    d = np.concatenate([ulp_distance(mine.params[n][1:], theirs.params[n][1:]).ravel() for n in mine.params])
    absdiff = max(float(np.max(np.abs(mine.params[n] - theirs.params[n]))) for n in mine.params)
    # measured: 6-24% of elements differ, p99 <= 10 ULP, |diff| <= 2.4e-7 (the clip scale's last bit)
    assert np.percentile(d, 99) <= 16 and absdiff <= 1e-6, (np.percentile(d, 99), absdiff)


def _mixed(seed, scale=3.0):
    gs = _grads(seed, "float32", scale)
    gs[1] = gs[1].astype(np.float64)  # float32, float64, float32, float32
    gs[3] = gs[3].astype(np.float64) * 1.5
    return gs


@pytest.mark.parametrize("convention", ["torch", "optax"])
def test_mixed_float32_float64_global_clipping_as_torch_and_optax_do(convention) -> None:
    """torch's clip_grad_norm_ (and optax, with x64 on) clip float32 and float64 gradients
    together, each keeping its dtype."""
    if convention == "optax":
        jax = pytest.importorskip("jax")
        before = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
    try:
        for seed in range(5):
            gs = _mixed(seed)
            ref, ref_norm = REFS[convention](gs, 10.0)
            mine = clip_arrays(gs, convention, global_clipnorm=10.0)
            assert [a.dtype for a in mine] == [g.dtype for g in gs] == [r.dtype for r in ref]
            # the coefficient is as exact as the float32 norms in it: float64 gradients agree
            # to float32 precision (measured: <= 1e-9 relative), float32 ones to a few ULP
            for a, b in zip(mine, ref):
                if a.dtype == np.float32:
                    assert max_ulp(a, b) <= BOUND["float32"]
                else:
                    assert float(np.max(np.abs(a - b) / np.abs(b))) <= 8 * np.finfo(np.float32).eps
            assert abs(float(global_norm(gs, convention)) - ref_norm) <= 8 * np.finfo(np.float32).eps * ref_norm
    finally:
        if convention == "optax":
            jax.config.update("jax_enable_x64", before)


@pytest.mark.parametrize("convention", ["keras", "tf1", "bert"])
def test_mixed_dtypes_are_refused_where_tensorflow_refuses_them(convention) -> None:
    tf = pytest.importorskip("tensorflow")
    gs = _mixed(0)
    with pytest.raises(Exception, match="expected to be a float tensor but is a double tensor"):
        tf.clip_by_global_norm([tf.constant(g) for g in gs], 10.0)
    with pytest.raises(TypeError, match="float32 and float64 gradients together: .* refuses it"):
        clip_arrays(gs, convention, global_clipnorm=10.0)
    rule = "adamw" if convention == "bert" else "adam"
    v32, v64 = rf.Variable(np.ones(3, np.float32), name="a"), rf.Variable(np.ones(2), name="b")
    opt = (rf.optim.AdamW if rule == "adamw" else rf.optim.Adam)([v32, v64], convention=convention, global_clipnorm=1.0)
    with pytest.raises(TypeError, match="refuses it"):
        opt.apply_gradients([(np.ones(3, np.float32), v32), (np.ones(2), v64)])
    assert opt.iterations == 0 and np.all(v32.numpy() == 1.0)


def test_an_optimizer_clips_mixed_dtypes_as_torch_does() -> None:
    """A float32 and a float64 parameter, clip_grad_norm_ then SGD with momentum, 10 steps
    (before: an AssertionError, the clip having promoted the float32 gradient)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    init = [rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal(7)]
    params = [torch.tensor(x.copy(), requires_grad=True) for x in init]
    topt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    variables = [rf.Variable(x.copy(), name=f"p{i}") for i, x in enumerate(init)]
    opt = rf.optim.SGD(variables, learning_rate=0.1, momentum=0.9, global_clipnorm=1.0)
    for _ in range(10):
        grads = [(rng.standard_normal(x.shape) * 3).astype(x.dtype) for x in init]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        topt.step()
        opt.apply_gradients(list(zip(grads, variables)))
    for v, p in zip(variables, params):
        assert v.dtype == p.detach().numpy().dtype
        np.testing.assert_allclose(v.numpy(), p.detach().numpy(), rtol=0, atol=1e-6)  # unclipped: off by ~1
