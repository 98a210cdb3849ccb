"""Layers of the built-in networks against plain JAX formulations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_ntkal.engine import empirical_ntk
from sklearn_ntkal.jax_compat import enable_x64
from sklearn_ntkal.networks import BatchNorm, Network, Reshape, Serial, resnet18
from sklearn_ntkal.networks.layers import AvgPool, Conv, _flat_normal, scaled_normal
from test_ntk import explicit_kernel


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


def test_initial_weights_are_jax_random_normal_of_their_shape():
    """With the partitionable threefry, the default since JAX 0.5 and used for weights on every version."""
    key = jax.random.PRNGKey(5)
    for shape, scale in [((3, 3, 5, 7), 0.3), ((64, 10), 1.7), ((1,), 2.0)]:
        with jax.threefry_partitionable(True):
            expected = jax.random.normal(key, shape) * scale
        np.testing.assert_array_equal(scaled_normal(key, shape, scale), expected)


def test_initial_weights_compile_one_draw_per_size_octave():
    scaled_normal(jax.random.PRNGKey(0), (3, 3, 5, 7), 1.0)  # 315 entries: a draw of 512
    draws = _flat_normal._cache_size()
    w = scaled_normal(jax.random.PRNGKey(1), (20, 16), 1.0)  # 320 entries: the same draw
    assert w.shape == (20, 16) and _flat_normal._cache_size() == draws


def _trained_resnet():
    """A quarter-width ResNet-18 on 8x8 inputs whose running statistics have moved away from their start."""
    net = Network(Serial(Reshape((8, 8, 1)), resnet18(3, base_channels=4)))
    _, params, net = net.initialize(jax.random.PRNGKey(0), (-1, 64))
    x = np.random.default_rng(0).normal(size=(6, 64)).astype(np.float32)
    step = jax.jit(lambda net, p, x: net.apply_train(p, x, jnp.ones(len(x)))[1])  # the network is a pytree
    for _ in range(3):
        net = step(net, params, x * 2 + 1)
    return net, params, x


def test_batchnorm_resnet_structured_kernel_is_the_explicit_jacobian_product():
    """BatchNorm in inference mode; only its scale and offset are differentiated, never its statistics."""
    net, params, x = _trained_resnet()
    with enable_x64():
        p64, n64 = (jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), t) for t in (params, net))
        x64 = x.astype(np.float64)
        explicit = explicit_kernel(n64, p64, x64, x64, "full")
        ours = empirical_ntk(n64, p64, x64, kind="full", implementation="structured", float64=True)
    np.testing.assert_allclose(ours, explicit, rtol=0, atol=1e-10 * np.abs(explicit).max())


def test_batchnorm_statistics_leave_out_masked_rows_and_are_not_parameters():
    layer = BatchNorm(momentum=0.5)
    _, params, layer = layer.initialize(None, (-1, 3))
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    padded = np.concatenate([x, np.full((3, 3), 100.0, np.float32)])
    y_real, real = layer.apply_train(params, x, jnp.ones(5))
    y_padded, masked = layer.apply_train(params, padded, jnp.asarray([1.0] * 5 + [0.0] * 3))
    np.testing.assert_allclose(y_padded[:5], y_real, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(masked.mean, 0.5 * x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(masked.var, 0.5 + 0.5 * x.var(0), rtol=1e-5, atol=1e-6)
    assert len(jax.tree_util.tree_leaves(params)) == 2
    one_by_one = np.concatenate([masked.apply(params, row[None]) for row in x])
    np.testing.assert_allclose(one_by_one, masked.apply(params, x), rtol=1e-6)


def test_flax_batchnorm_statistics_are_state_updated_in_training_only(digits):
    nn = pytest.importorskip("flax.linen")
    from sklearn_ntkal import JaxNetClassifier

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(16)(x)))
            return nn.Dense(10)(x)

    X_train, X_test, y_train, _ = digits
    clf = JaxNetClassifier(network=Net(), epochs=3, random_state=0).fit(X_train[:200], y_train[:200])
    layer = clf.network_.layer.layers[1]
    assert "batch_stats" not in clf.params_[1] and set(layer.state) == {"batch_stats"}
    stats = layer.state["batch_stats"]["BatchNorm_0"]
    assert not np.allclose(stats["mean"], 0.0) and not np.allclose(stats["var"], 1.0)
    before = jax.tree_util.tree_leaves(stats)
    clf.predict(X_test)
    assert all(a is b for a, b in zip(before, jax.tree_util.tree_leaves(layer.state["batch_stats"]["BatchNorm_0"])))
    np.testing.assert_allclose(clf.decision_function(X_test[:1]), clf.decision_function(X_test[:7])[:1], rtol=1e-5)
