"""Shape and indexing ops against HIPS autograd and finite differences, over
hypothesis-drawn shapes, axes and indices (basic, integer-array with repeats, boolean)."""

from __future__ import annotations

import weakref

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refopt as rf
from tests.ops.cases import check_no_op_on_a_variable, run_case, stepped_sgd

seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)
EXAMPLES = 25  # per op; the family runs well over 200 cases per backend


def _x(shape: tuple, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@settings(max_examples=EXAMPLES)
@given(shape=shapes, seed=seeds, data=st.data())
def test_reshape(backend_name: str, shape, seed, data) -> None:
    n = int(np.prod(shape))
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    d = data.draw(st.sampled_from(divisors))
    new = data.draw(st.sampled_from([(d, n // d), (n // d, -1), (-1,), (1, d, n // d)]))
    run_case(lambda t: rf.reshape(t, new), lambda a: anp.reshape(a, new), [_x(shape, seed)], None, seed, backend_name)


@settings(max_examples=EXAMPLES)
@given(shape=shapes, seed=seeds, data=st.data())
def test_transpose(backend_name: str, shape, seed, data) -> None:
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    run_case(
        lambda t: rf.transpose(t, perm), lambda a: anp.transpose(a, perm), [_x(shape, seed)], None, seed, backend_name
    )
    run_case(lambda t: t.T, lambda a: a.T, [_x(shape, seed)], None, seed, backend_name, fd=False)


@settings(max_examples=EXAMPLES)
@given(shape=shapes, seed=seeds, data=st.data())
def test_expand_dims_and_squeeze(backend_name: str, shape, seed, data) -> None:
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    run_case(
        lambda t: rf.expand_dims(t, axis),
        lambda a: anp.expand_dims(a, axis),
        [_x(shape, seed)],
        None,
        seed,
        backend_name,
    )
    ones = [i for i, s in enumerate(shape) if s == 1]
    sq = data.draw(st.sampled_from([None] + ones))
    run_case(lambda t: rf.squeeze(t, sq), lambda a: anp.squeeze(a, sq), [_x(shape, seed)], None, seed, backend_name)


@settings(max_examples=EXAMPLES)
@given(shape=shapes, seed=seeds, data=st.data())
def test_concat_stack_split(backend_name: str, shape, seed, data) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    other = list(shape)
    other[axis] = data.draw(st.integers(1, 3))
    rng = np.random.default_rng(seed)
    a, b, c = rng.standard_normal(shape), rng.standard_normal(other), rng.standard_normal(shape)
    run_case(
        lambda x, y, z: rf.concat([x, y, z], axis=axis),
        lambda x, y, z: anp.concatenate([x, y, z], axis=axis),
        [a, b, c],
        None,
        seed,
        backend_name,
    )
    sax = data.draw(st.integers(-len(shape) - 1, len(shape)))
    run_case(
        lambda x, z: rf.stack([x, z, x], axis=sax),
        lambda x, z: anp.stack([x, z, x], axis=sax),
        [a, c],
        None,
        seed,
        backend_name,
    )
    n = shape[axis]
    k = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))

    def rf_split(x):
        return rf.concat([p * float(i + 1) for i, p in enumerate(rf.split(x, k, axis=axis))][::-1], axis=axis)

    def ag_split(x):
        return anp.concatenate([p * float(i + 1) for i, p in enumerate(anp.split(x, k, axis=axis))][::-1], axis=axis)

    run_case(rf_split, ag_split, [a], None, seed, backend_name)


@settings(max_examples=EXAMPLES)
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=3, max_side=4),
    seed=seeds,
    lead=hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3),
)
def test_broadcast_to(backend_name: str, shapes, seed, lead) -> None:
    shape, target = shapes.input_shapes[0], tuple(lead) + tuple(shapes.result_shape)
    run_case(
        lambda t: rf.broadcast_to(t, target), lambda a: a * np.ones(target), [_x(shape, seed)], None, seed, backend_name
    )


@settings(max_examples=60)
@given(shape=shapes, seed=seeds, data=st.data())
def test_getitem(backend_name: str, shape, seed, data) -> None:
    kind = data.draw(st.sampled_from(["basic", "integer", "boolean"]))
    if kind == "basic":
        idx = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    elif kind == "integer":
        # one integer array (repeats, negatives) along a drawn axis, slices elsewhere
        axis = data.draw(st.integers(0, len(shape) - 1))
        n = shape[axis]
        ind = np.asarray(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6)))
        idx = (slice(None),) * axis + (ind,)
    else:
        idx = np.random.default_rng(seed + 7).random(shape) < 0.5
    run_case(lambda t: t[idx], lambda a: a[idx], [_x(shape, seed)], None, seed, backend_name)


def test_getitem_repeated_integer_indices_sum_in_the_gradient() -> None:
    x = rf.constant(np.array([1.0, 2.0, 3.0]))
    (g,) = rf.gradients(rf.sum(x[np.array([0, 0, 2, 0])]), [x])
    np.testing.assert_array_equal(g.numpy(), [3.0, 0.0, 1.0])


@settings(max_examples=EXAMPLES)
@given(shape=shapes, seed=seeds, data=st.data())
def test_take(backend_name: str, shape, seed, data) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    n = shape[axis]
    ishape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4))
    ind = np.random.default_rng(seed + 3).integers(0, n, ishape)
    pre = (slice(None),) * axis
    run_case(
        lambda t: rf.take(t, ind, axis=axis), lambda a: a[pre + (ind,)], [_x(shape, seed)], None, seed, backend_name
    )


@settings(max_examples=EXAMPLES)
@given(shape=shapes, seed=seeds, data=st.data())
def test_pad(backend_name: str, shape, seed, data) -> None:
    widths = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape)
    cv = data.draw(st.sampled_from([0.0, -1.5]))
    run_case(
        lambda t: rf.pad(t, widths, cv),
        lambda a: anp.pad(a, widths, mode="constant", constant_values=cv),
        [_x(shape, seed)],
        None,
        seed,
        backend_name,
    )


def test_cast_round_trip_gradient() -> None:
    x = rf.constant(np.array([1.0, 2.0]))
    y = rf.cast(x, "float32")
    assert y.dtype == np.float32
    (g,) = rf.gradients(rf.sum(rf.cast(y * 3.0, "float64")), [x])
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g.numpy(), [3.0, 3.0])
    labels = rf.cast(x, "int64")
    assert labels.dtype == np.int64 and labels._node is None


def test_to_device_moves_explicitly_and_differentiates() -> None:
    x = rf.constant(np.array([1.0, 2.0]))
    y = rf.to_device(x, "array_api_strict")
    assert y.backend == "array_api_strict"
    z = rf.to_device(y * 2.0, "numpy")
    (g,) = rf.gradients(rf.sum(z), [x])
    assert g.backend == "numpy"
    np.testing.assert_array_equal(g.numpy(), [2.0, 2.0])


def test_one_hot() -> None:
    oh = rf.one_hot(rf.constant(np.array([2, 0])), 3, dtype="float32")
    assert oh.dtype == np.float32
    np.testing.assert_array_equal(oh.numpy(), [[0, 0, 1], [1, 0, 0]])


def test_shape_errors_name_the_op_and_shapes() -> None:
    x = rf.constant(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"refopt.reshape: cannot reshape shape \(2, 3\) \(size 6\) into \(4,\)"):
        rf.reshape(x, (4,))
    with pytest.raises(ValueError, match=r"refopt.concat: tensor 1 has shape \(2, 2\)"):
        rf.concat([x, rf.constant(np.zeros((2, 2)))], axis=0)
    with pytest.raises(IndexError, match="refopt.take: index 3 is out of range for axis 0 of size 2"):
        rf.take(x, rf.constant(np.array([0, 3])))
    with pytest.raises(TypeError, match="refopt.take: indices must be integers"):
        rf.take(x, rf.constant(np.array([0.0])))
    with pytest.raises(ValueError, match=r"refopt.squeeze: axis 1 has size 3"):
        rf.squeeze(x, 1)
    with pytest.raises(ValueError, match=r"refopt.broadcast_to: cannot broadcast shape \(2, 3\) to \(3, 3\)"):
        rf.broadcast_to(x, (3, 3))


def test_swapaxes_on_too_few_dimensions_names_the_op() -> None:
    with pytest.raises(ValueError, match="refopt.swapaxes: axis -2 is out of range for a tensor of 0 dimensions"):
        rf.swapaxes(rf.constant(np.float32(1.0)))
    with pytest.raises(ValueError, match="refopt.swapaxes: axis 2 is out of range for a tensor of 2 dimensions"):
        rf.swapaxes(rf.constant(np.zeros((2, 3))), 0, 2)
    assert rf.swapaxes(rf.constant(np.zeros((2, 3, 4))), 0, -1).shape == (4, 3, 2)


def test_the_optimizer_writes_a_variable_in_place_when_nothing_else_holds_it() -> None:
    """The precondition of the no-op tests below: without a result holding the value, the
    step overwrites the variable's own array (so a result that *was* the variable would
    change under its holder)."""
    v, opt, g = stepped_sgd((2, 3))
    held = weakref.ref(v.data)
    opt.apply_gradients([(g, v)])
    assert v.data is held()


_NO_OPS = {
    "reshape to its own shape": (lambda v: rf.reshape(v, v.shape), (2, 3)),
    "reshape with -1 to its own shape": (lambda v: rf.reshape(v, (2, -1)), (2, 3)),
    "squeeze with nothing to squeeze": (lambda v: rf.squeeze(v), (2, 3)),
    "expand_dims of no axes": (lambda v: rf.expand_dims(v, ()), (2, 3)),
    "transpose of a 1-D variable": (lambda v: rf.transpose(v), (5,)),
    "transpose by the identity": (lambda v: rf.transpose(v, (0, 1)), (2, 3)),
    ".T of a 1-D variable": (lambda v: v.T, (5,)),
    "swapaxes of an axis with itself": (lambda v: rf.swapaxes(v, 1, 1), (2, 3)),
    "concat of one": (lambda v: rf.concat([v], axis=0), (2, 3)),
    "cast to its own dtype": (lambda v: rf.cast(v, v.dtype), (2, 3)),
    "cast to its own dtype by name": (lambda v: rf.cast(v, "float64"), (2, 3)),
    "to_device its own device": (lambda v: rf.to_device(v, "numpy"), (2, 3)),
}


@pytest.mark.parametrize("name", list(_NO_OPS))
def test_a_no_op_on_a_variable_gives_a_tensor_the_optimizer_leaves_alone(name: str) -> None:
    op, shape = _NO_OPS[name]
    check_no_op_on_a_variable(op, shape)


def test_a_no_op_on_a_plain_tensor_may_return_it() -> None:
    """Tensors are immutable: the cheap shortcut stays for them."""
    t = rf.constant(np.ones((2, 3)))
    assert rf.reshape(t, (2, 3)) is t and rf.cast(t, "float64") is t and rf.to_device(t, "numpy") is t
    assert rf.transpose(t, (0, 1)) is t and rf.concat([t]) is t and rf.squeeze(t) is t
