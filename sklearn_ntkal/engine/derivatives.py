"""Derivatives of a network's linear layers, read from its tape: output cotangents and per-sample weight gradients.

A tapped layer offers its structured derivative rule in one of two ways (the
tape protocol):

- a product with its weights, ``y = patches(x) W (+ b)``: ``layer.patches(inputs)``
  gives the per-sample, per-position inputs (n, S, P) and ``layer.use_bias``
  says whether the second parameter is a bias (dense and convolution layers);
- anything else linear in its parameters: ``layer.per_sample_gradients(inputs,
  deltas)`` gives the per-sample gradients (n, K, P) for K output directions
  (e.g. the scale and offset of a normalisation layer).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_HIGHEST = lax.Precision.HIGHEST


def linear_pullback(network, params, x):
    """Outputs, the linear layers' records and inputs, and a pullback to their output cotangents.

    Every linear layer's output gets a zero perturbation; the VJP with respect
    to those perturbations maps an output cotangent (n, C) to the cotangents
    ``delta = d <cotangent, f> / d z`` of every layer output ``z``.

    Returns
    -------
    outputs : array (n, C)
    records : list of ``(layer, params, inputs, outputs)``
    inputs : list of arrays, the inputs of each linear layer
    pullback : callable
        ``cotangent (n, C) -> list of deltas``, one per linear layer.
    """
    _, records = network.apply_tapped(params, x)
    zeros = [jnp.zeros_like(record[3]) for record in records]

    def tapped(perturbations):
        out, taps = network.apply_tapped(params, x, perturbations)
        return out, [tap[2] for tap in taps]

    outputs, vjp, inputs = jax.vjp(tapped, zeros, has_aux=True)
    return outputs, records, inputs, lambda cotangent: vjp(cotangent)[0]


def is_product(layer):
    """Whether a tapped layer is a product ``patches(x) W (+ b)`` with its weights (it offers ``patches``)."""
    return hasattr(layer, "patches")


def weight_gradients(layer, inputs, deltas):
    """Per-sample weight gradients ``sum_s patch_s^T delta_s`` for K output directions, shape (n, K, O * P).

    ``deltas`` are the layer's output cotangents with a direction axis
    second, (n, K, ..., O). One batched GEMM per sample over output
    positions ``s``, the K directions side by side. The flattened entries
    are ordered (output channel, patch entry), not as the weights are laid
    out, which inner products and norms of gradients do not see.
    """
    patches = layer.patches(inputs)
    d = deltas.reshape(deltas.shape[:2] + (patches.shape[1], -1))
    return jnp.einsum("nkso,nsp->nkop", d, patches, precision=_HIGHEST).reshape(deltas.shape[:2] + (-1,))


def parameter_gradients(layer, inputs, deltas):
    """Per-sample gradients of a tapped layer's parameters, joined: (n, K, P).

    For a product layer, its weights' (:func:`weight_gradients`) and its
    bias' if it has one, the sum of the cotangents over output positions;
    ``deltas`` as for :func:`weight_gradients`. Other layers give their own.
    """
    if not is_product(layer):
        return layer.per_sample_gradients(inputs, deltas)
    grads = weight_gradients(layer, inputs, deltas)
    if not layer.use_bias:
        return grads
    return jnp.concatenate([grads, deltas.sum(axis=tuple(range(2, deltas.ndim - 1)))], axis=-1)
