"""Empirical NTK engine against explicit Jacobians, across flavours, implementations and chunkings."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_ntkal.jax_compat import enable_x64
from sklearn_ntkal.networks import Network, Reshape, Serial, cnn, mlp, wide_resnet
from sklearn_ntkal.engine import KINDS, KernelSpec, chunk_size, empirical_ntk, structured, traced
from sklearn_ntkal.engine.budget import bucket, chunk_length, even_chunk_length
from sklearn_ntkal.engine.kernels import _in_sub_batches

IMPLEMENTATIONS = ("structured", "jacobian", "ntvp")
NETWORKS = {
    "mlp": (lambda: mlp(4, (24, 16)), (9,)),
    "mlp_nobias": (lambda: mlp(3, (16,), use_bias=False), (7,)),
    "cnn": (lambda: Serial(Reshape((6, 6, 1)), cnn(3, (4, 5), 8)), (36,)),
    "wide_resnet": (lambda: Serial(Reshape((8, 8, 2)), wide_resnet(3, 10, 1, 4)), (128,)),
}


@functools.lru_cache(maxsize=None)
def _network(name, seed=0):
    """A preset, its parameters and its sample shape; built once per worker (initialising the ResNet takes seconds)."""
    layer_fn, sample_shape = NETWORKS[name]
    net = Network(layer_fn())
    _, params = net.init_fn(jax.random.PRNGKey(seed), (1,) + sample_shape)
    return net, params, sample_shape


def _inputs(n, sample_shape, seed):
    return np.random.default_rng(seed).normal(size=(n,) + sample_shape).astype(np.float32)


def explicit_kernel(apply_fn, params, x1, x2, kind):
    """J(x1) J(x2)^T from jax.jacrev, reduced to the flavour by definition."""

    @jax.jit
    def jac(x):
        tree = jax.jacrev(lambda p: apply_fn(p, x))(params)
        return jnp.concatenate([leaf.reshape(x.shape[0], -1 if leaf.ndim > 1 else 1, np.prod(leaf.shape[2:], dtype=int))
                                for leaf in jax.tree_util.tree_leaves(tree)], axis=-1)

    j = jac(jnp.concatenate([jnp.asarray(x1), jnp.asarray(x2)]))
    full = np.asarray(jnp.einsum("icp,jdp->ijcd", j[:len(x1)], j[len(x1):], precision="highest"))
    return kinds_from_full(full)[kind]


def kinds_from_full(full):
    """Every flavour of the kernel from the full (n1, n2, C, C) kernel, by definition."""
    c = full.shape[-1]
    return {"full": full, "trace": np.trace(full, axis1=2, axis2=3) / c, "pntk": full.sum(axis=(2, 3)) / c}


@functools.lru_cache(maxsize=None)
def _preset_reference(name, float64, n1, n2, seed1, seed2):
    """The explicit kernels of a preset network, once per worker for all flavours and implementations."""
    net, params, shape = _network(name)
    x1, x2 = _inputs(n1, shape, seed1), _inputs(n2, shape, seed2)
    with enable_x64(float64):
        if float64:
            params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
            x1, x2 = x1.astype(np.float64), x2.astype(np.float64)
        return kinds_from_full(explicit_kernel(net, params, x1, x2, "full"))


def _rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize(
    "name, implementation",
    [(n, i) for n in ("mlp", "cnn") for i in IMPLEMENTATIONS] + [("mlp_nobias", "structured"), ("wide_resnet", "structured")],
)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_explicit_jacobian_float32(name, kind, implementation):
    net, params, shape = _network(name)
    x1, x2 = _inputs(6, shape, 1), _inputs(4, shape, 2)
    ref = _preset_reference(name, False, 6, 4, 1, 2)[kind]
    got = empirical_ntk(net, params, x1, x2, kind=kind, implementation=implementation)
    assert got.shape == ref.shape
    assert got.dtype == np.float32
    assert _rel_err(got, ref) < 1e-5


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_matches_explicit_jacobian_float64(name, kind, implementation):
    net, params, shape = _network(name)
    x1, x2 = _inputs(5, shape, 3), _inputs(3, shape, 4)
    ref = _preset_reference(name, True, 5, 3, 3, 4)[kind]
    got = empirical_ntk(net, params, x1, x2, kind=kind, implementation=implementation, float64=True)
    assert got.dtype == np.float64
    assert _rel_err(got, ref) < 1e-10
    assert not jax.config.jax_enable_x64, "float64=True must not switch on x64 globally"


def test_user_function_gets_the_structured_kernel():
    """A plain (init, apply) pair gets a correct kernel through 'auto', which reads its rules from the jaxpr."""
    w_shapes = [(5, 7), (7, 3)]
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    params = [jax.random.normal(k, s) for k, s in zip(keys, w_shapes)]

    def apply_fn(p, x):
        return jnp.tanh(x @ p[0]) @ p[1]

    x = _inputs(6, (5,), 0)
    ref = explicit_kernel(apply_fn, params, x, x, "full")
    assert _rel_err(empirical_ntk(apply_fn, params, x), ref) < 1e-5
    assert _rel_err(empirical_ntk(apply_fn, params, x, implementation="structured"), ref) < 1e-5
    assert [rule for _, rule, _ in traced.trace(apply_fn, params, (5,), np.float32).rules] == ["dense", "output"]


@pytest.mark.parametrize("kind", KINDS)
def test_symmetric_and_positive_semidefinite(kind):
    net, params, shape = _network("cnn")
    x = _inputs(10, shape, 5)
    k = empirical_ntk(net, params, x, kind=kind, float64=True)
    flat = k.transpose(0, 2, 1, 3).reshape(k.shape[0] * k.shape[2], -1) if kind == "full" else k
    np.testing.assert_allclose(flat, flat.T, rtol=0, atol=1e-12 * np.abs(flat).max())
    assert np.linalg.eigvalsh(flat).min() > -1e-9 * np.abs(flat).max()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_chunked_equals_unchunked(kind, implementation):
    net, params, shape = _network("mlp")
    x1, x2 = _inputs(23, shape, 6), _inputs(11, shape, 7)
    whole = empirical_ntk(net, params, x1, x2, kind=kind, implementation=implementation, float64=True)
    tiny = empirical_ntk(net, params, x1, x2, kind=kind, implementation=implementation, float64=True,
                         memory_budget=20_000)
    sym_whole = empirical_ntk(net, params, x1, kind=kind, implementation=implementation, float64=True)
    sym_tiny = empirical_ntk(net, params, x1, kind=kind, implementation=implementation, float64=True,
                             memory_budget=20_000)
    scale = np.abs(whole).max()
    np.testing.assert_allclose(tiny, whole, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(sym_tiny, sym_whole, rtol=0, atol=1e-12 * scale)


def test_tiny_budget_really_chunks():
    assert chunk_size(1000, sample_bytes=4_000, pair_bytes=400, budget=20_000) < 10
    assert chunk_size(1000, sample_bytes=10, pair_bytes=4, budget=2**30) == 1000


def test_buckets_are_few_per_octave_and_pad_little():
    sizes = [bucket(n) for n in range(1, 20_000)]
    assert all(size >= n for n, size in zip(range(1, 20_000), sizes))
    assert all(size <= 1.25 * n for n, size in zip(range(257, 20_000), sizes[256:]))
    assert set(sizes[:256]) == {256}
    assert len({bucket(n) for n in range(1025, 2049)}) == 4
    assert [bucket(n) for n in (1, 257, 320, 321, 513, 1000, 1025)] == [256, 320, 320, 384, 640, 1024, 1280]


def test_chunk_lengths_are_buckets_within_the_limit():
    assert chunk_length(50, 4096) == 256 and chunk_length(3000, 4096) == 3072
    assert chunk_length(10_000, 4096) == 4096 and chunk_length(10_000, 565) == 512
    assert chunk_length(1000, 20) == 20 and chunk_length(5, 3) == 3
    for n in range(1, 3000, 7):
        for limit in (1, 9, 300, 1000, 5000):
            length = chunk_length(n, limit)
            assert 1 <= length <= max(limit, 1) and (length == bucket(n) or length >= min(limit, 256) * 0.8)


def test_even_chunks_keep_the_count_and_cut_the_padding():
    assert chunk_length(1000, 774) == 768 and even_chunk_length(1000, 774) == 512
    for n in range(1, 6000, 13):
        for limit in (1, 9, 200, 774, 1000, 5000):
            length, even = chunk_length(n, limit), even_chunk_length(n, limit)
            assert even <= length and -(-n // even) == -(-n // length)
            assert even == chunk_length(even, limit)  # a length the pass would choose itself: shapes are shared


def test_features_in_sub_batches_equal_one_batch():
    net, params, shape = _network("cnn")
    x = jnp.asarray(_inputs(7, shape, 11))
    tape = traced.trace(net, params, shape, x.dtype)

    def feats(p, z):
        return structured.features(tape, net, p, z, "full", 3)

    whole = jax.tree_util.tree_leaves(feats(params, x))
    parts = jax.tree_util.tree_leaves(_in_sub_batches(jax.jit(feats), 3)(params, x))
    assert [a.shape for a in parts] == [a.shape for a in whole]
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_batch_of_one_and_symmetric_default():
    net, params, shape = _network("mlp")
    x = _inputs(1, shape, 8)
    k = empirical_ntk(net, params, x)
    np.testing.assert_allclose(k, explicit_kernel(net, params, x, x, "full"), rtol=1e-5)
    x = _inputs(5, shape, 9)
    np.testing.assert_array_equal(empirical_ntk(net, params, x), empirical_ntk(net, params, x, x))


def test_kernel_spec_is_the_functional_api():
    net, params, shape = _network("mlp")
    x = _inputs(4, shape, 10)
    spec = KernelSpec(kind="pntk", implementation="jacobian")
    np.testing.assert_array_equal(spec(net, params, x), empirical_ntk(net, params, x, kind="pntk",
                                                                      implementation="jacobian"))


@pytest.mark.parametrize(
    "kwargs, x1, x2, match",
    [
        ({"kind": "diag"}, np.ones((2, 9)), None, "kind must be one of"),
        ({"implementation": "magic"}, np.ones((2, 9)), None, "implementation must be one of"),
        ({"memory_budget": 0}, np.ones((2, 9)), None, "memory_budget"),
        ({}, np.ones(9), None, "batch axis"),
        ({}, np.ones((0, 9)), None, "empty"),
        ({}, np.full((2, 9), np.nan), None, "NaN"),
        ({}, np.ones((2, 9)), np.ones((2, 8)), "different sample shapes"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, x1, x2, match):
    net, params, _ = _network("mlp")
    with pytest.raises(ValueError, match=match):
        empirical_ntk(net, params, x1, x2, **kwargs)


def test_inputs_are_not_mutated():
    net, params, shape = _network("mlp")
    x = _inputs(4, shape, 11)
    before = x.copy()
    empirical_ntk(net, params, x, float64=True)
    np.testing.assert_array_equal(x, before)


def _neural_tangents_importable():
    try:
        import neural_tangents  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(_neural_tangents_importable(), reason="neural-tangents imports here; see the cross-check")
def test_neural_tangents_backend_explains_why_it_is_unavailable():
    net, params, shape = _network("mlp")
    with pytest.raises(ImportError, match="neural-tangents"):
        empirical_ntk(net, params, _inputs(2, shape, 0), implementation="neural_tangents")


@pytest.mark.skipif(not _neural_tangents_importable(), reason="neural-tangents does not import on this JAX")
@pytest.mark.parametrize("kind", KINDS)
def test_neural_tangents_backend_agrees(kind):
    net, params, shape = _network("mlp")
    x1, x2 = _inputs(5, shape, 0), _inputs(3, shape, 1)
    ours = empirical_ntk(net, params, x1, x2, kind=kind)
    theirs = empirical_ntk(net, params, x1, x2, kind=kind, implementation="neural_tangents")
    assert _rel_err(ours, theirs) < 1e-5


def test_blocks_spread_over_several_devices():
    """With two (virtual CPU) devices the kernel is identical to the single-device one."""
    script = textwrap.dedent(
        """
        import jax, numpy as np
        from sklearn_ntkal.networks import Network, mlp
        from sklearn_ntkal.engine import empirical_ntk
        assert len(jax.local_devices()) == 2
        net = Network(mlp(3, (16,)))
        _, params = net.init_fn(jax.random.PRNGKey(0), (1, 5))
        x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
        many = empirical_ntk(net, params, x, memory_budget=30_000, float64=True)
        one = empirical_ntk(net, params, x, memory_budget=30_000, float64=True, devices=jax.local_devices()[:1])
        np.testing.assert_allclose(many, one, rtol=1e-12)
        print("ok")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
