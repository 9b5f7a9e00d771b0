"""The correctly rounded matrix product against exact rational arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

import refopt as rf
from refopt.kernels import gemm as mm
from tests.kernels.exact import exact_dot_long, exact_matmul, round_fraction

DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True, params=["numba", "numpy"])
def kernels(request):
    """Every test on both implementations of the float32 decision pass: the compiled one
    (the default) and the NumPy fallback."""
    if request.param == "numba":
        pytest.importorskip("numba")
    rf.set_kernels(request.param)
    yield request.param
    rf.set_kernels("numba")


def bits(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64)


def assert_exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    got = mm.matmul(a, b)
    want = exact_matmul(a, b)
    assert got.dtype == a.dtype and got.shape == want.shape
    bad = np.flatnonzero(bits(got) != bits(want))
    assert bad.size == 0, f"{bad.size} entries differ, first {got.flat[bad[0]]!r} vs exact {want.flat[bad[0]]!r}"
    return got


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(6))
def test_random_products_are_correctly_rounded(dtype, seed) -> None:
    rng = np.random.default_rng(seed)
    m, k, n = (int(v) for v in rng.integers(1, 9, 3))
    k = int(rng.choice([k, 37, 130]))
    assert_exact(rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_wide_exponent_ranges_and_subnormals(dtype) -> None:
    rng = np.random.default_rng(1)
    span = 60 if dtype == np.float32 else 400
    a = rng.standard_normal((5, 40)) * 2.0 ** rng.integers(-span, span, (5, 40))
    b = rng.standard_normal((40, 4)) * 2.0 ** rng.integers(-span, span, (40, 4))
    assert_exact(a.astype(dtype), b.astype(dtype))
    tiny = np.finfo(dtype).smallest_subnormal
    a = np.array([[tiny * 3, 1.0, -(2.0**-20)], [np.finfo(dtype).tiny, tiny, 0.0]], dtype)
    b = np.array([[0.5, 3.0], [tiny * 5, 2.0**-10], [0.75, -1.5]], dtype)
    assert_exact(a, b)  # subnormal operands and subnormal results


@pytest.mark.parametrize("dtype", DTYPES)
def test_heavy_cancellation(dtype) -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 50)).astype(dtype)
    b = rng.standard_normal((50, 5)).astype(dtype)
    # the last term cancels the others up to their rounding: tiny, sign-changing results
    a[:, -1] = 1.0
    b[-1, :] = -(a[:, :-1].astype(np.float64) @ b[:-1, :].astype(np.float64))[0].astype(dtype)
    a[1:, -1] = 2.0 ** rng.integers(-3, 3, 5)
    assert_exact(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_round_to_even_and_a_hair_above_a_tie_rounds_up(dtype) -> None:
    half = 2.0 ** -(24 if dtype == np.float32 else 53)  # half an ulp of 1
    a = np.array([[1.0, half, 0.0], [1.0, 3 * half, 0.0], [1.0, half, 2.0**-70], [1.0, half, -(2.0**-70)]], dtype)
    b = np.array([[1.0], [1.0], [1.0]], dtype)
    got = assert_exact(a, b)[:, 0]
    one = dtype(1.0)
    up = np.nextafter(one, dtype(2))
    assert list(got) == [one, np.nextafter(up, dtype(2)), up, one]  # even, even, up, down


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflow_gives_inf_and_underflow_gives_signed_zero(dtype) -> None:
    big = np.finfo(dtype).max
    a = np.array([[big, big], [big, -big], [np.finfo(dtype).smallest_subnormal, 0.0]], dtype)
    b = np.array([[1.0, 0.5], [1.0, 0.25]], dtype)
    got = assert_exact(a, b)
    assert np.isposinf(got[0, 0]) and got[0, 1] == big * dtype(0.75)
    assert got[1, 0] == 0 and not np.signbit(got[1, 0])  # an exact zero sum is +0
    assert got[2, 1] == 0  # half the smallest subnormal, a tie: rounds to even (zero)
    neg = mm.matmul(np.array([[np.finfo(dtype).smallest_subnormal]], dtype), np.array([[-0.25]], dtype))
    assert neg[0, 0] == 0 and np.signbit(neg[0, 0])  # a negative value rounding to zero is -0


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_operands_follow_ieee(dtype) -> None:
    inf, nan = np.inf, np.nan
    a = np.array([[inf, 1.0], [inf, 1.0], [inf, -inf], [nan, 0.0], [1.0, 2.0]], dtype)
    b = np.array([[2.0, 0.0, -1.0], [3.0, 1.0, 1.0]], dtype)
    got = mm.matmul(a, b)
    want = np.array(
        [
            [inf, nan, -inf],  # inf*2 + 3; inf*0 is NaN; -inf + 1
            [inf, nan, -inf],
            [nan, nan, -inf],  # inf*2 - inf*3; inf*0; -inf - inf
            [nan, nan, nan],
            [8.0, 2.0, 1.0],
        ],
        dtype,
    )
    assert np.array_equal(got, want, equal_nan=True), got


def test_shapes_follow_numpy_matmul() -> None:
    rng = np.random.default_rng(3)
    for sa, sb in [((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((3, 2, 4), (4, 5)), ((1, 2, 4), (3, 4, 2))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        got = mm.matmul(a, b)
        want_shape = np.matmul(a, b).shape
        assert got.shape == want_shape
        a2 = a[None] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        a3 = np.broadcast_to(a2, batch + a2.shape[-2:]).reshape(-1, *a2.shape[-2:])
        b3 = np.broadcast_to(b2, batch + b2.shape[-2:]).reshape(-1, *b2.shape[-2:])
        want = np.stack([exact_matmul(x, y) for x, y in zip(a3, b3)]).reshape(want_shape)
        assert np.array_equal(bits(got), bits(want))
    assert mm.matmul(np.zeros((2, 0)), np.zeros((0, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="not aligned"):
        mm.matmul(np.zeros((2, 3)), np.zeros((4, 3)))
    with pytest.raises(TypeError, match="float32 or two float64"):
        mm.matmul(np.zeros((2, 3)), np.zeros((3, 3), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_operands_and_outputs(dtype) -> None:
    """An empty inner dimension gives +0 (the empty sum); an empty output -- no rows, no
    columns, an empty batch -- has numpy.matmul's shape; both through a Dense layer's
    gradient too."""
    for sa, sb in [((0, 3), (3, 4)), ((3, 0), (0, 4)), ((2, 3), (3, 0)), ((2, 3, 4), (1, 4, 0)), ((0, 2, 3), (3, 2))]:
        a, b = np.ones(sa, dtype), np.ones(sb, dtype)
        got, want = mm.matmul(a, b), np.matmul(a, b)
        assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(bits(got), bits(want)), (sa, sb)
    layer = rf.nn.Dense(3, 4, seed=0, dtype=dtype)
    x = rf.constant(np.ones((0, 3), dtype))
    grads = rf.grad(lambda k: rf.sum(rf.matmul(x, k)))(layer.kernel)
    assert grads.shape == (3, 4) and np.all(grads.numpy() == 0) and layer(x).shape == (0, 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_result_does_not_depend_on_the_summation_order(dtype) -> None:
    """Permuting the inner axis changes the order in which any BLAS adds, never the
    exact sum: the correctly rounded product is the same bits; BLAS's is not."""
    rng = np.random.default_rng(4)
    a = (rng.standard_normal((40, 300)) * 2.0 ** rng.integers(-8, 8, (40, 300))).astype(dtype)
    b = rng.standard_normal((300, 30)).astype(dtype)
    ref = mm.matmul(a, b)
    blas_differs = False
    for seed in range(4):
        perm = np.random.default_rng(seed).permutation(300)
        assert np.array_equal(bits(mm.matmul(a[:, perm], b[perm])), bits(ref))
        blas_differs |= not np.array_equal(a[:, perm] @ b[perm], a @ b)
    assert blas_differs  # the test can tell: plain BLAS products do change with the order
    sample = (slice(0, 3), slice(0, 4))
    assert np.array_equal(bits(ref[sample]), bits(exact_matmul(a[sample[0]], b[:, sample[1]])))


def test_float32_undecided_entries_are_computed_exactly(monkeypatch) -> None:
    """A large float32 product where a few entries sit a hair above a rounding tie: the
    float64 GEMM cannot decide them, the exact path must."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((64, 200)).astype(np.float32)
    b = rng.standard_normal((200, 48)).astype(np.float32)
    for r, c in [(0, 0), (7, 3), (63, 47)]:  # 1 + 2^-24 + 2^-70: above the tie by a hair
        a[r] = 0
        a[r, :3] = [1.0, 2.0**-12, 2.0**-35]
        b[:3, c] = [1.0, 2.0**-12, 2.0**-35]
    calls = []
    exact = mm._exact
    monkeypatch.setattr(mm, "_exact", lambda *args, **kw: calls.append(kw) or exact(*args, **kw))
    got = mm.matmul(a, b)
    assert calls == [{"dots": True}]  # the decided entries never reached the exact path
    one_up = np.nextafter(np.float32(1), np.float32(2))
    assert got[0, 0] == got[7, 3] == got[63, 47] == one_up  # a plain float32/64 sum gives 1.0
    idx = rng.integers(0, 48, 40)
    rows = rng.integers(0, 64, 40)
    for r, c in zip(rows, idx):
        assert bits(got[r, c]) == bits(exact_matmul(a[r : r + 1], b[:, c : c + 1])[0, 0])


def test_float32_mutant_without_the_error_bound_is_caught(monkeypatch) -> None:
    """With the bound removed, the float32 shortcut trusts fl(a @ b): a sum a hair above
    a tie then rounds to even -- the exactness tests above must see it."""
    a = np.array([[1.0, 2.0**-12, 2.0**-35]], np.float32)
    b = np.array([[1.0], [2.0**-12], [2.0**-35]], np.float32)
    assert mm.matmul(a, b)[0, 0] == np.nextafter(np.float32(1), np.float32(2))
    real = mm._matmul_f32

    def no_bound(xp, a64, b64):
        c = xp.matmul(a64, b64)
        return c.astype(np.float32)

    monkeypatch.setattr(mm, "_matmul_f32", no_bound)
    assert mm.matmul(a, b)[0, 0] == np.float32(1.0)  # wrong: the mutant is detectable
    monkeypatch.setattr(mm, "_matmul_f32", real)


@pytest.mark.parametrize("dtype", DTYPES)
def test_largest_supported_inner_dimension(dtype, kernels) -> None:
    if kernels == "numpy":
        pytest.skip("at this size both dtypes take the exact path, the same on both kernels")
    k = mm.MAX_INNER
    rng = np.random.default_rng(6)
    a = (rng.standard_normal((1, k)) * 2.0 ** rng.integers(-4, 4, (1, k))).astype(dtype)
    b = rng.standard_normal((k, 1)).astype(dtype)
    got = mm.matmul(a, b)[0, 0]
    want = round_fraction(exact_dot_long(a[0], b[:, 0]), dtype)
    assert bits(got) == bits(want)
    with pytest.raises(ValueError, match="inner dimension"):
        mm.matmul(np.zeros((1, k + 1), dtype), np.zeros((k + 1, 1), dtype))


def test_slice_plan_keeps_every_gemm_exact() -> None:
    for k in (1, 2, 3, 1000, 2**20, 2**24):
        for wa, wb in ((24, 24), (53, 53), (80, 30), (1, 200)):
            ba, na, bb, nb = mm.slice_plan(wa, wb, k)
            assert ba + bb + int(np.ceil(np.log2(k))) <= 53  # k products of 2^(ba+bb) stay <= 2^53
            assert na * ba >= wa and nb * bb >= wb  # every bit is covered
