"""Structured empirical NTK: each linear layer's share from input and output-cotangent Grams.

For a dense layer ``z = a W + b`` the share of that layer in
``Theta(x, x') = J(x) J(x')^T`` is ``(a a'^T + 1) * (delta delta'^T)``, where
``delta = d f / d z`` are the output cotangents (Novak, Sohl-Dickstein &
Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML 2022), so no
parameter-sized Jacobian is formed for dense layers. Convolutions (and dense
layers applied to non-flat inputs) use per-sample weight gradients, one
transposed convolution per sample and direction, then a Gram.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..networks.layers import Conv, Dense
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


def _linear_map(layer, w, a):
    return layer.convolve(w, a) if isinstance(layer, Conv) else a @ w


def _weight_grads(layer, w, inputs, deltas):
    """(K, n, |w|) gradients of each direction's output with respect to ``w``, per sample."""

    def one(a, d):
        _, vjp = jax.vjp(lambda v: _linear_map(layer, v, a[None]), w)
        return vjp(d[None])[0].reshape(-1)

    return jax.vmap(jax.vmap(one), in_axes=(None, 0))(inputs, deltas)


def features(network, rules, params, x, kind, n_outputs):
    """Per-layer array features of ``x``: ``(inputs, deltas)`` or ``(weight_grads, bias_grads)``.

    Deltas and gradients carry a leading axis over the K output directions of
    ``kind``; bias gradients are ``None`` for layers without a bias.
    """
    _, records = network.apply_tapped(params, x)
    zeros = [jnp.zeros_like(r[3]) for r in records]

    def tapped(eps):
        out, recs = network.apply_tapped(params, x, eps)
        return out, [(r[1][0], r[2]) for r in recs]

    _, vjp, taps = jax.vjp(tapped, zeros, has_aux=True)
    m = directions(kind, n_outputs, x.dtype)
    (deltas,) = jax.vmap(vjp)(jnp.broadcast_to(m[:, None, :], (m.shape[0], x.shape[0], n_outputs)))
    feats = []
    for (layer, rule), (w, a), d in zip(rules, taps, deltas):
        if rule == "dense":
            feats.append((a, d))
        else:
            bias = d.sum(axis=tuple(range(2, d.ndim - 1))) if layer.use_bias else None
            feats.append((_weight_grads(layer, w, a, d), bias))
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
    for (a, out, w), (_, rule) in zip(sizes, rules):
        total += a + 3 * n_directions * out + (n_directions * w if rule == "grad" else 0)
    return total
