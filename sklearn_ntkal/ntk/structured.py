"""Structured empirical NTK: each linear layer's share from input and output-cotangent Grams.

For a dense layer ``z = a W + b`` the share of that layer in
``Theta(x, x') = J(x) J(x')^T`` is ``(a a'^T + 1) * (delta delta'^T)``, where
``delta = d f / d z`` are the output cotangents (Novak, Sohl-Dickstein &
Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML 2022), so no
parameter-sized Jacobian is formed for dense layers. Convolutions (and dense
layers applied to non-flat inputs) use per-sample weight gradients, one
batched GEMM of input patches and cotangents, then a Gram.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..networks.derivatives import linear_pullback, weight_gradients
from ..networks.layers import Dense
from .pairing import _HIGHEST, directions, pair, scale_block


def plan(network, params, sample_shape, dtype):
    """Static description of the linear layers: ``(layer, rule)`` with rule ``"dense"`` or ``"grad"``.

    Also returns per-sample feature sizes (in elements) used to size chunks.
    """
    captured = []

    def run(p, z):
        _, records = network.apply_tapped(p, z)
        captured[:] = [r[0] for r in records]
        return [(r[2], r[3], r[1][0]) for r in records]

    one = jax.ShapeDtypeStruct((1,) + tuple(sample_shape), dtype)
    shapes = jax.eval_shape(run, params, one)
    rules = []
    for layer, (a, _, _) in zip(captured, shapes):
        rules.append((layer, "dense" if isinstance(layer, Dense) and a.ndim == 2 else "grad"))
    return rules, [(a.size, out.size, w.size) for a, out, w in shapes]


def features(network, rules, params, x, kind, n_outputs):
    """Per-layer array features of ``x``: ``(inputs, deltas)`` or ``(weight_grads, bias_grads)``.

    Deltas and gradients carry a leading axis over the K output directions of
    ``kind``; bias gradients are ``None`` for layers without a bias.
    """
    _, _, taps, pullback = linear_pullback(network, params, x)
    m = directions(kind, n_outputs, x.dtype)
    deltas = jax.vmap(pullback)(jnp.broadcast_to(m[:, None, :], (m.shape[0], x.shape[0], n_outputs)))
    feats = []
    for (layer, rule), a, d in zip(rules, taps, deltas):
        if rule == "dense":
            feats.append((a, d))
        else:
            bias = d.sum(axis=tuple(range(2, d.ndim - 1))) if layer.use_bias else None
            feats.append((jax.vmap(lambda di, a=a, layer=layer: weight_gradients(layer, a, di))(d), bias))
    return feats


def gram(rules, f1, f2, kind):
    """Kernel block from the :func:`features` of two chunks of inputs."""
    total = 0.0
    for (layer, rule), (u1, v1), (u2, v2) in zip(rules, f1, f2):
        if rule == "dense":
            inputs = jnp.matmul(u1, u2.T, precision=_HIGHEST) + (1.0 if layer.use_bias else 0.0)
            total = total + scale_block(inputs, pair(v1, v2, kind))
        else:
            total = total + pair(u1, u2, kind)
            if v1 is not None:
                total = total + pair(v1, v2, kind)
    return total


def sample_elements(sizes, n_directions, rules):
    """Elements of features and temporaries per sample, for chunk sizing."""
    total = 0
    for (a, out, w), (layer, rule) in zip(sizes, rules):
        patches = a * math.prod(getattr(layer, "kernel_size", (1,)))
        total += a + 3 * n_directions * out + (patches + 2 * n_directions * w if rule == "grad" else 0)
    return total
