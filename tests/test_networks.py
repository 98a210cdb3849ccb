"""Layers of the built-in networks against plain JAX formulations."""

import jax
import numpy as np
import pytest

from sklearn_ntkal.networks.layers import AvgPool


@pytest.mark.parametrize("shape, window", [((2, 8, 6, 3), (2, 2)), ((2, 7, 9, 1), (2, 3))])
def test_avg_pool_is_valid_reduce_window(shape, window):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    dims = (1,) + window + (1,)
    expected = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, dims, "VALID") / np.prod(window)
    layer = AvgPool(window)
    out = layer.apply((), x)
    assert out.shape == layer.init(None, shape)[0] == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
