"""Structured kernels of user networks (Flax, Equinox, stax, plain functions) read from their jaxprs."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

from sklearn_ntkal.engine import KINDS, empirical_ntk, traced
from test_compile_once import compilations
from sklearn_ntkal.jax_compat import enable_x64
from test_ntk import explicit_kernel, kinds_from_full

IMAGE = (6, 6, 1)


def _rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def _jitter(tree, seed, scale=0.2):
    """Move every leaf off its initial value (zero biases, unit scales) so that every parameter matters."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    rng = np.random.default_rng(seed)  # NumPy: no JAX program to compile per leaf shape
    return treedef.unflatten([jnp.asarray(leaf + scale * rng.normal(size=leaf.shape), leaf.dtype) for leaf in leaves])


def _running_stats(channels):
    return jnp.linspace(-0.3, 0.4, channels), jnp.linspace(0.5, 2.0, channels)


# ---- Flax ------------------------------------------------------------------------------------------------------


def _flax(arch):
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(8)(x))
            return nn.Dense(3)(nn.tanh(nn.Dense(6)(x)))

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.avg_pool(nn.relu(nn.Conv(4, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.relu(nn.Conv(5, (2, 2), padding="VALID")(x))
            return nn.Dense(3)(x.reshape(x.shape[0], -1))

    class Residual(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Conv(4, (3, 3))(x)
            h = h + nn.Conv(4, (3, 3))(nn.relu(h))
            return nn.Dense(3)(nn.relu(h).mean(axis=(1, 2)))

    class BatchNormNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3))(x))
            return nn.Dense(3)(nn.relu(x).reshape(x.shape[0], -1))

    module = {"mlp": MLP, "cnn": CNN, "residual": Residual, "batchnorm": BatchNormNet}[arch]()
    shape = (5,) if arch == "mlp" else IMAGE
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape))
    params = _jitter(variables["params"], 1)
    if "batch_stats" not in variables:
        return (lambda p, x: module.apply({"params": p}, x)), params, shape
    mean, var = _running_stats(4)
    stats = {"BatchNorm_0": {"mean": mean, "var": var}}
    return (lambda p, x: module.apply({"params": p, "batch_stats": stats}, x)), params, shape


# ---- Equinox ---------------------------------------------------------------------------------------------------


def _equinox(arch):
    eqx = pytest.importorskip("equinox")
    keys = list(jax.random.split(jax.random.PRNGKey(0), 4))
    chw = (IMAGE[2],) + IMAGE[:2]

    class MLP(eqx.Module):
        layers: list

        def __init__(self):
            self.layers = [eqx.nn.Linear(5, 8, key=keys[0]), eqx.nn.Linear(8, 6, key=keys[1]),
                           eqx.nn.Linear(6, 3, key=keys[2])]

        def __call__(self, x, state):
            x = jax.nn.relu(self.layers[0](x))
            return self.layers[2](jnp.tanh(self.layers[1](x))), state

    class CNN(eqx.Module):
        conv1: eqx.nn.Conv2d
        pool: eqx.nn.AvgPool2d
        conv2: eqx.nn.Conv2d
        head: eqx.nn.Linear

        def __init__(self):
            self.conv1 = eqx.nn.Conv2d(1, 4, 3, padding=1, key=keys[0])
            self.pool = eqx.nn.AvgPool2d(2, 2)
            self.conv2 = eqx.nn.Conv2d(4, 5, 2, key=keys[1])
            self.head = eqx.nn.Linear(5 * 2 * 2, 3, key=keys[2])

        def __call__(self, x, state):
            x = jax.nn.relu(self.conv2(self.pool(jax.nn.relu(self.conv1(x)))))
            return self.head(x.reshape(-1)), state

    class Residual(eqx.Module):
        conv1: eqx.nn.Conv2d
        conv2: eqx.nn.Conv2d
        head: eqx.nn.Linear

        def __init__(self):
            self.conv1 = eqx.nn.Conv2d(1, 4, 3, padding=1, key=keys[0])
            self.conv2 = eqx.nn.Conv2d(4, 4, 3, padding=1, key=keys[1])
            self.head = eqx.nn.Linear(4, 3, key=keys[2])

        def __call__(self, x, state):
            h = self.conv1(x)
            h = h + self.conv2(jax.nn.relu(h))
            return self.head(jax.nn.relu(h).mean(axis=(1, 2))), state

    class BatchNormNet(eqx.Module):
        conv: eqx.nn.Conv2d
        norm: eqx.nn.BatchNorm
        head: eqx.nn.Linear

        def __init__(self):
            self.conv = eqx.nn.Conv2d(1, 4, 3, padding=1, key=keys[0])
            self.norm = eqx.nn.BatchNorm(4, axis_name="batch", inference=True, mode="ema")
            self.head = eqx.nn.Linear(4 * 6 * 6, 3, key=keys[2])

        def __call__(self, x, state):
            x, state = self.norm(self.conv(x), state)
            return self.head(jax.nn.relu(x).reshape(-1)), state

    cls = {"mlp": MLP, "cnn": CNN, "residual": Residual, "batchnorm": BatchNormNet}[arch]
    model, state = eqx.nn.make_with_state(cls)()
    if arch == "batchnorm":
        state = state.set(model.norm.ema_state_index, _running_stats(4))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def apply_fn(p, x):
        net = eqx.combine(p, static)
        return jax.vmap(lambda xi: net(xi, state)[0], axis_name="batch")(x)

    return apply_fn, _jitter(params, 1), (5,) if arch == "mlp" else chw


# ---- stax ------------------------------------------------------------------------------------------------------


def _frozen_batchnorm(mean, var, eps=1e-5):
    """A stax layer: BatchNorm in inference mode, fixed statistics and a learned scale and offset."""

    def init_fn(key, input_shape):
        c = input_shape[-1]
        return input_shape, (jnp.ones(c), jnp.zeros(c))

    def apply_fn(params, x, **kwargs):
        scale, offset = params
        return (x - mean) / jnp.sqrt(var + eps) * scale + offset

    return init_fn, apply_fn


def _stax(arch):
    conv = (lambda c, k=(3, 3), padding="SAME": stax.Conv(c, k, padding=padding))
    layers = {
        "mlp": [stax.Dense(8), stax.Relu, stax.Dense(6), stax.Tanh, stax.Dense(3)],
        "cnn": [conv(4), stax.Relu, stax.AvgPool((2, 2), (2, 2)), conv(5, (2, 2), "VALID"), stax.Relu,
                stax.Flatten, stax.Dense(3)],
        "residual": [conv(4), stax.FanOut(2), stax.parallel(stax.serial(stax.Relu, conv(4)), stax.Identity),
                     stax.FanInSum, stax.Relu, stax.Flatten, stax.Dense(3)],
        "batchnorm": [conv(4), _frozen_batchnorm(*_running_stats(4)), stax.Relu, stax.Flatten, stax.Dense(3)],
    }[arch]
    init_fn, apply_fn = stax.serial(*layers)
    shape = (5,) if arch == "mlp" else IMAGE
    _, params = init_fn(jax.random.PRNGKey(0), (1,) + shape)
    return apply_fn, _jitter(params, 1), shape


FRAMEWORKS = {"flax": _flax, "equinox": _equinox, "stax": _stax}
ARCHS = ("mlp", "cnn", "residual", "batchnorm")
#: Linear layers each architecture has, all of which must get a structured rule.
N_LINEAR = {"mlp": 3, "cnn": 3, "residual": 3, "batchnorm": 2}


def _inputs(n, shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(dtype)


@pytest.mark.parametrize("float64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_user_network_kernels_equal_explicit_jacobians(framework, arch, float64):
    dtype = np.float64 if float64 else np.float32
    with enable_x64(float64):  # the network's constants (running statistics) in the precision of the test
        apply_fn, params, shape = FRAMEWORKS[framework](arch)
        x1, x2 = _inputs(4, shape, 1).astype(dtype), _inputs(3, shape, 2).astype(dtype)
        cast = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
        ref = kinds_from_full(explicit_kernel(apply_fn, cast, x1, x2, "full"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind in KINDS:
            got = empirical_ntk(apply_fn, params, x1, x2, kind=kind, float64=float64)
            assert got.dtype == dtype and got.shape == ref[kind].shape
            assert _rel_err(got, ref[kind]) < (1e-10 if float64 else 1e-5), kind


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_linear_layer_of_a_user_network_gets_a_rule(framework, arch):
    """Dense and convolution weights and their biases are structured; a BatchNorm's scale and offset are
    elementwise, with per-sample gradients of their own and no warning."""
    apply_fn, params, shape = FRAMEWORKS[framework](arch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tape = traced.trace(apply_fn, params, shape, np.float32)
        rules = [rule for _, rule, _ in tape.rules]
    assert len(rules) == N_LINEAR[arch]
    assert all(layer.use_bias for layer, _, _ in tape.rules)
    assert rules[-1] == "output"
    assert tape.fallback == {} and not caught
    own = [jax.tree_util.tree_leaves(params)[k].shape for k in tape.analysis.leaves]
    assert own == ([(4,), (4,)] if arch == "batchnorm" else [])


def test_weight_layouts_and_positions():
    """``x @ W.T``, einsum over a sequence, OIHW and strided, dilated and transposed convolutions, scaled weights."""
    keys = jax.random.split(jax.random.PRNGKey(3), 8)
    params = {
        "w_t": jax.random.normal(keys[0], (6, 12)),
        "seq": jax.random.normal(keys[1], (3, 4)),
        "oihw": jax.random.normal(keys[2], (3, 2, 3, 3)),
        "bias": jax.random.normal(keys[3], (3,)),
        "dilated": jax.random.normal(keys[4], (2, 2, 3, 4)),
        "up": jax.random.normal(keys[5], (2, 2, 4, 2)),
        "head": jax.random.normal(keys[6], (6 * 4 * 2 + 6, 4)),
    }

    def apply_fn(p, x):
        n = x.shape[0]
        h = jnp.tanh(x.reshape(n, 12) @ p["w_t"].T)                                    # (n, 6)
        s = jnp.tanh(jnp.einsum("nsi,io->nso", x.reshape(n, 4, 3), p["seq"]))        # (n, 4, 4): 4 positions
        img = s.reshape(n, 2, 4, 2)                                                   # NCHW, 2 channels
        c = lax_conv(img, p["oihw"], (1, 1), ((1, 1), (1, 1)), dims=("NCHW", "OIHW", "NCHW"))
        c = jax.nn.relu(c + p["bias"][None, :, None, None])                           # (n, 3, 4, 2)
        c = jnp.transpose(c, (0, 2, 3, 1))                                            # NHWC
        c = jax.nn.gelu(lax_conv(c, 0.5 * p["dilated"], (2, 2), ((2, 2), (2, 2)), rhs_dilation=(2, 2)))
        c = lax_conv(c, p["up"], (1, 1), ((1, 1), (1, 1)), lhs_dilation=(2, 2))       # transposed convolution
        return jnp.concatenate([c.reshape(n, -1), h], axis=1) @ p["head"]

    x1, x2 = _inputs(4, (12,), 5), _inputs(3, (12,), 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tape = traced.trace(apply_fn, params, (12,), np.float32)
        assert [rule for _, rule, _ in tape.rules] == ["dense", "grad", "grad", "grad", "grad", "output"]
        assert [layer.use_bias for layer, _, _ in tape.rules] == [False, False, True, False, False, False]
        with enable_x64(True):
            p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
            ref = kinds_from_full(explicit_kernel(apply_fn, p64, x1.astype(np.float64), x2.astype(np.float64), "full"))
        for kind in KINDS:
            got = empirical_ntk(apply_fn, params, x1, x2, kind=kind, float64=True)
            assert _rel_err(got, ref[kind]) < 1e-10, kind


def lax_conv(x, w, strides, padding, dims=("NHWC", "HWIO", "NHWC"), lhs_dilation=None, rhs_dilation=None):
    return jax.lax.conv_general_dilated(x, w, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers=dims)


def _embedding_network():
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    params = {"table": jax.random.normal(keys[0], (7, 4)), "dense": jax.random.normal(keys[1], (4 * 3, 5)),
              "out": jax.random.normal(keys[2], (5, 2))}

    def apply_fn(p, x):
        tokens = jnp.clip(jnp.abs(x) * 3, 0, 6).astype(jnp.int32)
        h = jnp.take(p["table"], tokens, axis=0).reshape(x.shape[0], -1)
        return jnp.tanh(h @ p["dense"]) @ p["out"]

    return apply_fn, params, (3,)


def _tied_network():
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    params = {"w": jax.random.normal(keys[0], (4, 4)), "b": jax.random.normal(keys[1], (4,)),
              "scale": jnp.float32(1.3)}

    def apply_fn(p, x):
        h = jnp.tanh(x @ p["w"] + p["b"])
        return (h @ p["w"].T) * jnp.exp(p["scale"])

    return apply_fn, params, (4,)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("network, primitives, covered", [
    (_embedding_network, {"['table']": ["gather"]}, 2),
    (_tied_network, {"['w']": ["dot_general (used 2 times)"], "['scale']": ["exp"]}, 0),
])
def test_parameters_without_a_rule_fall_back_per_leaf(network, primitives, covered, kind):
    apply_fn, params, shape = network()
    x1, x2 = _inputs(5, shape, 7), _inputs(3, shape, 8)
    with pytest.warns(UserWarning, match="per-sample gradients") as caught:
        got = empirical_ntk(apply_fn, params, x1, x2, kind=kind, float64=True)
        tape = traced.trace(apply_fn, params, shape, np.float32)
        assert tape.fallback == primitives
    message = str(caught[0].message)
    assert all(name in message and all(p in message for p in prims) for name, prims in primitives.items())
    assert caught[0].filename == __file__
    assert len(tape.rules) == covered
    with enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        ref = explicit_kernel(apply_fn, p64, x1.astype(np.float64), x2.astype(np.float64), kind)
    assert _rel_err(got, ref) < 1e-10


def test_unscaled_and_scaled_biases():
    """A bias added after a scaled product (neural-tangents' parametrisation) gets its own gradients, no warning."""
    keys = jax.random.split(jax.random.PRNGKey(6), 4)
    params = [(jax.random.normal(keys[0], (5, 6)), jax.random.normal(keys[1], (6,))),
              (jax.random.normal(keys[2], (6, 3)), jax.random.normal(keys[3], (3,)))]

    def apply_fn(p, x):
        h = jax.nn.relu(x @ p[0][0] / np.sqrt(5.0) + 0.1 * p[0][1])
        return h @ p[1][0] + p[1][1]

    x1, x2 = _inputs(4, (5,), 9), _inputs(3, (5,), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tape = traced.trace(apply_fn, params, (5,), np.float32)
        got = empirical_ntk(apply_fn, params, x1, x2, float64=True)
    assert [layer.use_bias for layer, _, _ in tape.rules] == [False, True]
    with enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        ref = explicit_kernel(apply_fn, p64, x1.astype(np.float64), x2.astype(np.float64), "full")
    assert _rel_err(got, ref) < 1e-10


def test_traced_programs_are_reused():
    """The same function and signatures give an equal tape, so the compiled kernel programs are reused."""
    apply_fn, params, shape = _stax("mlp")
    assert traced.trace(apply_fn, params, shape, np.float32) == traced.trace(apply_fn, params, shape, np.float32)
    assert traced.trace(apply_fn, params, shape, np.float32) != traced.trace(apply_fn, params, shape, np.float64)
    x = _inputs(6, shape, 11)
    empirical_ntk(apply_fn, params, x, kind="pntk")
    count, _ = compilations(empirical_ntk, apply_fn, params, x[:5], kind="pntk")
    assert count == 0
