"""Timing helpers of the kernel benchmarks, on plain JAX only, so the neural-tangents environment runs them too."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def seconds(fn):
    """Wall time of one call of ``fn`` (which blocks until its result is on the host)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_rate(size=4096, repeats=10):
    """float32 GEMM rate (FLOP/s) of a warm ``jnp.dot`` of two ``size x size`` matrices, best of ``repeats``."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
    dot = jax.jit(lambda u, v: jnp.dot(u, v, precision=jax.lax.Precision.HIGHEST))
    dot(a, b).block_until_ready()
    return 2.0 * size**3 / min(seconds(lambda: dot(a, b).block_until_ready()) for _ in range(repeats))
