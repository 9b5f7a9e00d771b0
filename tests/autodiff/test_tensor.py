"""Tensor, Variable and constant: creation, dtype rules, device rules, conversions."""

from __future__ import annotations

import array

import numpy as np
import pytest

import refopt as rf
from refopt.autodiff.tensor import staged_for


def test_constant_follows_numpy_inference_and_copies() -> None:
    assert rf.constant(1.5).dtype == np.float64
    assert rf.constant([1, 2]).dtype == np.int64
    assert rf.constant(np.ones(2, np.float32)).dtype == np.float32
    assert rf.constant([1.0, 2.0], dtype="float32").dtype == np.float32
    a = np.array([1.0, 2.0])
    t = rf.constant(a)
    a[0] = 99.0
    assert t.numpy()[0] == 1.0  # the tensor owns its value


def test_raw_arrays_in_ops_are_copied() -> None:
    a = np.array([1.0, 2.0])
    x = rf.constant(np.array([1.0, 1.0]))
    y = x * a
    a[:] = 0.0
    (g,) = rf.gradients(rf.sum(y), [x])
    np.testing.assert_array_equal(g.numpy(), [1.0, 2.0])


def test_mixed_float_dtypes_are_refused_naming_both() -> None:
    a = rf.constant(np.ones(2, np.float32))
    b = rf.constant(np.ones(2, np.float64))
    with pytest.raises(TypeError, match="refopt.add: mixed dtypes float32 and float64"):
        a + b
    with pytest.raises(TypeError, match="refopt.multiply: mixed dtypes float32 and float64"):
        a * np.float64(2.0)  # a NumPy scalar is an array, not a weak Python scalar
    assert (rf.cast(a, "float64") + b).dtype == np.float64


def test_integer_inputs_where_floats_are_needed() -> None:
    i = rf.constant(np.array([1, 2]))
    with pytest.raises(TypeError, match="refopt.exp: expected float32 or float64 input, got int64"):
        rf.exp(i)
    # structural ops accept integer tensors (labels, indices) and record no graph
    assert rf.reshape(i, (2, 1)).shape == (2, 1)
    assert i[1].item() == 2


def test_complex_scalars_are_refused_like_other_non_float_dtypes() -> None:
    x = rf.constant(np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"refopt.multiply: complex input 1j; refopt computes in float32 and float64"):
        x * 1j
    with pytest.raises(TypeError, match="refopt.add: complex input"):
        (2 + 0j) + x
    with pytest.raises(TypeError, match="refopt.multiply: mixed dtypes float32 and complex64"):
        x * np.complex64(1j)


def test_a_failing_forward_keeps_the_original_error_and_names_op_dtypes_shapes() -> None:
    """NumPy's exception classes may not take a message alone (x + "x" used to raise a
    TypeError about __init__ arguments): the original is chained, the op named."""
    x = rf.constant(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"refopt.add: .*did not contain a loop.*\(inputs: float32\(2, 3\), str\)") as e:
        x + "x"
    original = e.value.__cause__  # chained: NumPy's own exception, whose constructor takes (ufunc, dtypes)
    assert isinstance(original, TypeError) and type(original).__module__.startswith("numpy")


def test_mixed_devices_are_refused_naming_both() -> None:
    a = rf.constant(np.ones(2))
    b = rf.to_device(rf.constant(np.ones(2)), "array_api_strict")
    with pytest.raises(
        ValueError, match=r"refopt.add: inputs live on different devices: cpu \(numpy\) and cpu \(array_api_strict\)"
    ):
        a + b


def test_variable_basics() -> None:
    v = rf.Variable(np.zeros(3, np.float32), name="layer/bias", trainable=False)
    assert v.name == "layer/bias" and not v.trainable and v.version == 0
    v.assign(np.ones(3, np.float32))
    v.assign_add(np.ones(3, np.float32))
    v.assign_sub(rf.constant(np.full(3, 0.5, np.float32)))
    np.testing.assert_array_equal(v.numpy(), [1.5, 1.5, 1.5])
    assert v.version == 3
    assert rf.Variable([1.0, 2.0], dtype="float32").dtype == np.float32
    with pytest.raises(TypeError, match="Variable name must be a string"):
        rf.Variable(np.ones(2), name=3)
    snapshot = v.numpy()
    v.assign(np.zeros(3, np.float32))
    assert snapshot[0] == 1.5  # numpy() is a copy


def test_assign_rebinds_so_old_arrays_are_untouched() -> None:
    v = rf.Variable(np.array([1.0, 2.0]))
    old = v.data
    v.assign(np.array([5.0, 6.0]))
    np.testing.assert_array_equal(old, [1.0, 2.0])


def test_tensors_hash_by_identity_and_compare_elementwise() -> None:
    a, b = rf.Variable(np.ones(2), name="a"), rf.Variable(np.ones(2), name="b")
    d = {a: 1, b: 2}
    assert d[a] == 1 and d[b] == 2
    np.testing.assert_array_equal((a == b).numpy(), [True, True])


def test_to_numpy_accepts_everything() -> None:
    np.testing.assert_array_equal(rf.to_numpy(rf.constant([1.0])), [1.0])
    np.testing.assert_array_equal(rf.to_numpy(np.array([2.0])), [2.0])
    np.testing.assert_array_equal(rf.to_numpy([3.0]), [3.0])
    import array_api_strict as xs

    np.testing.assert_array_equal(rf.to_numpy(xs.asarray([4.0])), [4.0])


def test_numpy_ufuncs_defer_to_tensor_operators() -> None:
    x = rf.constant(np.array([1.0, 2.0]))
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, rf.Tensor)
    np.testing.assert_array_equal(y.numpy(), [3.0, 8.0])


def test_item_len_iter_repr() -> None:
    x = rf.constant(np.array([[1.0, 2.0]]))
    assert len(x) == 1 and [t.shape for t in x] == [(2,)]
    assert rf.sum(x).item() == 3.0 and float(rf.sum(x)) == 3.0
    with pytest.raises(ValueError, match="item\\(\\) needs a tensor of one element"):
        x.item()
    assert "shape=(1, 2) dtype=float64 device=cpu" in repr(x)


def _torch_source(values: np.ndarray):
    torch = pytest.importorskip("torch")
    return torch.tensor(values)


def _assign_first(src, value: float) -> None:
    src[0] = value


# Each way a caller may hand a value to a load, and how the caller later writes into it.
_SOURCES = {
    "ndarray": (lambda a: a.copy(), _assign_first),
    "strided ndarray view": (lambda a: np.repeat(a, 2)[::2], _assign_first),
    "big-endian ndarray": (lambda a: a.astype(">f8"), _assign_first),
    "memoryview": (lambda a: memoryview(a.copy()), _assign_first),
    "array.array": (lambda a: array.array("d", a.tolist()), _assign_first),
    "torch tensor": (_torch_source, _assign_first),
    "Tensor": (lambda a: rf.constant(a), lambda t, value: _assign_first(t.data, value)),
    "list": (lambda a: a.tolist(), _assign_first),
}


def _as_host(src) -> np.ndarray:
    """A copy of what the caller's object holds now."""
    if isinstance(src, rf.Tensor):
        return src.numpy()
    if hasattr(src, "detach"):  # a torch tensor
        return src.detach().numpy().copy()
    return np.array(src, dtype=np.float64)


@pytest.mark.parametrize("kind", list(_SOURCES))
def test_staged_for_always_makes_a_fresh_array_of_its_own(kind: str) -> None:
    make, _ = _SOURCES[kind]
    var = rf.Variable(np.zeros(4), name="w")
    src = make(np.array([1.0, 2.0, 3.0, 4.0]))
    arr = staged_for(var, src, "w")
    assert type(arr) is np.ndarray and arr.dtype == np.float64 and arr.dtype.isnative
    assert arr.flags.c_contiguous and arr.flags.writeable and arr.flags.owndata
    buffer = src.data if isinstance(src, rf.Tensor) else src
    assert not np.shares_memory(arr, np.asarray(buffer))
    np.testing.assert_array_equal(arr, [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("kind", list(_SOURCES))
def test_a_loaded_optimizer_slot_shares_nothing_with_the_callers_object(kind: str) -> None:
    """Optimizer.load_state_dict stages every slot with staged_for: the caller's later
    writes do not reach the slot, and the optimizer's in-place update does not reach the
    caller's object."""
    make, mutate = _SOURCES[kind]
    w = rf.Variable(np.array([0.5, -1.0, 2.0, 0.25]), name="w")
    opt = rf.optim.Adam([w], learning_rate=0.1)
    g = np.array([0.1, -0.2, 0.3, -0.4])
    opt.apply_gradients([(g, w)])
    state = opt.state_dict()
    m = np.array([1.0, 2.0, 3.0, 4.0])
    src = make(m)
    state["variables"]["w"]["slots"]["m"] = src
    opt.load_state_dict(state)
    mutate(src, 99.0)
    np.testing.assert_array_equal(opt.get_slot(w, "m").numpy(), m)  # the slot kept the loaded value
    seen = _as_host(src)
    opt.apply_gradients([(g, w)])  # writes the slots in place (nothing else holds them)
    np.testing.assert_array_equal(opt.get_slot(w, "m").numpy(), 0.9 * m + 0.1 * g)
    np.testing.assert_array_equal(_as_host(src), seen)  # the caller's object is untouched


@pytest.mark.parametrize("kind", list(_SOURCES))
def test_a_module_loaded_from_the_callers_object_shares_nothing_with_it(kind: str) -> None:
    """Module.load_state_dict stages every value with staged_for, then assigns it."""
    make, mutate = _SOURCES[kind]
    model = rf.nn.Module()
    model.w = rf.Variable(np.zeros(4), name="w")
    values = np.array([1.0, 2.0, 3.0, 4.0])
    src = make(values)
    model.load_state_dict({"w": src})
    mutate(src, 99.0)
    np.testing.assert_array_equal(model.w.numpy(), values)  # the variable kept the loaded value
    seen = _as_host(src)
    opt = rf.optim.SGD([model.w], learning_rate=0.5)
    for _ in range(3):  # the later steps write the variable in place
        opt.apply_gradients([(np.ones(4), model.w)])
    np.testing.assert_array_equal(model.w.numpy(), values - 1.5)
    np.testing.assert_array_equal(_as_host(src), seen)  # the caller's object is untouched
