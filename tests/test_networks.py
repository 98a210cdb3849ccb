"""Layers of the built-in networks against plain JAX formulations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_ntkal.networks.layers import AvgPool, Conv


@pytest.mark.parametrize("shape, window", [((2, 8, 6, 3), (2, 2)), ((2, 7, 9, 1), (2, 3))])
def test_avg_pool_is_valid_reduce_window(shape, window):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    dims = (1,) + window + (1,)
    expected = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, dims, "VALID") / np.prod(window)
    layer = AvgPool(window)
    out = layer.apply((), x)
    assert out.shape == layer.init(None, shape)[0] == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel_size, strides, padding", [
    ((3, 3), (1, 1), "SAME"), ((2, 3), (2, 1), "SAME"), ((3, 3), (2, 2), "VALID"), ((3, 2), (1, 2), ((2, 0), (1, 3))),
])
def test_conv_patches_times_kernel_is_the_convolution(kernel_size, strides, padding):
    x = np.random.default_rng(1).normal(size=(2, 7, 6, 3)).astype(np.float32)
    layer = Conv(4, kernel_size, strides, padding)
    _, (w, _) = layer.init(jax.random.PRNGKey(0), x.shape)
    expected = layer.convolve(w, x)
    patches = layer.patches(x)
    out = jnp.matmul(patches, w.reshape(-1, 4), precision=jax.lax.Precision.HIGHEST)
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)
