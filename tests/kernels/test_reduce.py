"""Fixed-order sums and signed-zero extremes."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from refopt.kernels import reduce as red


def fold_reference(values: list, dtype: type) -> np.floating:
    """The documented order, as a scalar recursion: pair x[i] with x[i + ceil(n/2)]."""
    x = [dtype(v) for v in values]
    if not x:
        return dtype(0)
    while len(x) > 1:
        h = (len(x) + 1) // 2
        x = [x[i] + x[i + h] if i + h < len(x) else x[i] for i in range(h)]
    return x[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13, 100, 1001])
def test_sum_follows_the_documented_order(dtype, n) -> None:
    x = (np.random.default_rng(n).standard_normal(n) * 10.0 ** np.arange(n) % 7).astype(dtype)
    got = red.tree_sum(np, x, (0,))
    want = fold_reference(list(x), dtype)
    assert got.dtype == dtype and np.asarray(got).tobytes() == np.asarray(want).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_error_is_within_the_pairwise_bound(dtype) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(4097) * 2.0 ** rng.integers(-10, 10, 4097)).astype(dtype)
    exact = sum((Fraction(float(v)) for v in x), Fraction(0))
    u = np.finfo(dtype).eps / 2
    bound = math.ceil(math.log2(x.size)) * u * float(np.sum(np.abs(x.astype(np.float64))))
    assert abs(Fraction(float(red.tree_sum(np, x, (0,)))) - exact) <= Fraction(float(bound))


def test_axes_keepdims_and_the_fold_order_across_axes() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    for axes in [(0,), (1,), (2,), (0, 2), (0, 1, 2)]:
        got = red.tree_sum(np, x, axes, keepdims=True)
        assert got.shape == tuple(1 if i in axes else s for i, s in enumerate(x.shape))
        assert np.allclose(got, x.sum(axis=axes, keepdims=True), rtol=1e-6, atol=1e-6)
    # several axes: the last listed axis first, each by the same fold
    full = red.tree_sum(np, x, (0, 1, 2))
    inner = [[fold_reference(list(x[i, j]), np.float32) for j in range(4)] for i in range(3)]
    middle = [fold_reference(row, np.float32) for row in inner]
    assert full == fold_reference(middle, np.float32) and full.shape == ()
    assert red.tree_sum(np, np.zeros((2, 0), np.float32), (1,)).tolist() == [0.0, 0.0]
    assert red.tree_mean(np, np.array([1.0, 2.0, 4.0]), (0,)) == 7.0 / 3


def test_sum_of_negative_zeros_is_negative_zero() -> None:
    assert np.signbit(red.tree_sum(np, np.array([-0.0, -0.0, -0.0]), (0,)))
    assert not np.signbit(red.tree_sum(np, np.array([-0.0, 0.0, -0.0]), (0,)))


def test_extremes_order_signed_zeros() -> None:
    z = np.array([[-0.0, 0.0], [-0.0, -0.0], [0.0, 0.0]])
    mx, mn = red.max(np, z, (1,)), red.min(np, z, (1,))
    assert list(np.signbit(mx)) == [False, True, False]
    assert list(np.signbit(mn)) == [True, True, False]
    assert np.isnan(red.max(np, np.array([1.0, np.nan]), (0,)))
    a, b = np.array([-0.0, 0.0, -0.0, 3.0, np.nan]), np.array([0.0, -0.0, -0.0, -1.0, 1.0])
    assert list(np.signbit(red.maximum(np, a, b))[:3]) == [False, False, True]
    assert list(np.signbit(red.minimum(np, a, b))[:3]) == [True, True, True]
    assert red.maximum(np, a, b)[3] == 3.0 and np.isnan(red.maximum(np, a, b)[4])
    assert not np.signbit(red.maximum(np, np.array([-0.0], np.float32), 0.0))[0]
    assert red.maximum(np, np.array([-0.0], np.float32), 0.0).dtype == np.float32  # Python numbers stay weak
