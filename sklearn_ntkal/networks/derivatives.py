"""Per-layer derivatives shared by the kernel engine and the gradient strategies: cotangents and weight gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .layers import Conv

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


def input_patches(layer, inputs):
    """Per-sample, per-position inputs of a linear layer, shape (n, S, P): conv patches or dense rows."""
    if isinstance(layer, Conv):
        inputs = lax.conv_general_dilated_patches(
            inputs, layer.kernel_size, layer.strides, layer.padding, dimension_numbers=("NHWC", "OIHW", "NHWC"))
    return inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])


def weight_gradients(layer, inputs, deltas):
    """Per-sample weight gradients ``sum_s patch_s^T delta_s``, flattened to (n, P * O).

    One batched GEMM over output positions ``s``. The order of the flattened
    entries differs from the weights' layout, which inner products and norms
    of gradients do not see.
    """
    patches = input_patches(layer, inputs)
    d = deltas.reshape(deltas.shape[0], patches.shape[1], -1)
    return jnp.einsum("nsp,nso->npo", patches, d, precision=_HIGHEST).reshape(deltas.shape[0], -1)
