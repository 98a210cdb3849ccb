"""Per-layer derivatives shared by the kernel engine and the gradient strategies: cotangents and weight gradients."""

from __future__ import annotations

import itertools

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
    """Per-sample, per-position inputs of a linear layer, shape (n, S, P): conv patches or dense rows.

    Convolution patches are strided slices of the padded input, one per
    kernel offset, joined along channels: entries ordered (kernel row,
    kernel column, input channel) like the rows of the HWIO kernel. Slices
    are memory moves, where a patch-extracting convolution would spend
    ``P`` multiply-adds per patch entry.
    """
    if isinstance(layer, Conv):
        inputs = _conv_patches(layer, inputs)
    return inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])


def _conv_patches(layer, x):
    spatial = x.shape[1:-1]
    pads = layer.padding
    if isinstance(pads, str):
        pads = lax.padtype_to_pads(spatial, layer.kernel_size, layer.strides, pads)
    x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])
    out = [(size - k) // s + 1 for size, k, s in zip(x.shape[1:-1], layer.kernel_size, layer.strides)]
    span = [(m - 1) * s + 1 for m, s in zip(out, layer.strides)]
    strides = (1, *layer.strides, 1)
    slices = [lax.slice(x, (0, *offset, 0), (x.shape[0], *map(sum, zip(offset, span)), x.shape[-1]), strides)
              for offset in itertools.product(*map(range, layer.kernel_size))]
    return jnp.concatenate(slices, axis=-1)


def weight_gradients(layer, inputs, deltas):
    """Per-sample weight gradients ``sum_s patch_s^T delta_s`` for K output directions, shape (n, K, O * P).

    ``deltas`` are the layer's output cotangents with a direction axis
    second, (n, K, ..., O). One batched GEMM per sample over output
    positions ``s``, the K directions side by side. The flattened entries
    are ordered (output channel, patch entry), not as the weights are laid
    out, which inner products and norms of gradients do not see.
    """
    patches = input_patches(layer, inputs)
    d = deltas.reshape(deltas.shape[:2] + (patches.shape[1], -1))
    return jnp.einsum("nkso,nsp->nkop", d, patches, precision=_HIGHEST).reshape(deltas.shape[:2] + (-1,))


def parameter_gradients(layer, inputs, deltas):
    """Per-sample gradients of a linear layer's weights, and bias if it has one, joined: (n, K, O * P [+ O]).

    ``deltas`` as for :func:`weight_gradients`; the bias gradient is the sum
    of the cotangents over output positions.
    """
    grads = weight_gradients(layer, inputs, deltas)
    if not layer.use_bias:
        return grads
    return jnp.concatenate([grads, deltas.sum(axis=tuple(range(2, deltas.ndim - 1)))], axis=-1)
