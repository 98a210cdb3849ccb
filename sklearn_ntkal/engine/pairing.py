"""Kernel flavours as output directions, and the pairing of per-direction features into kernel blocks.

Every flavour is the NTK of ``M f(x)`` for a fixed matrix ``M`` (K x C) of
output directions, paired in one of two ways:

- ``"full"``: ``M = I_C``, all pairs of directions: blocks (n1, n2, C, C);
- ``"trace"``: ``M = I_C``, matching directions averaged: ``sum_c Theta_cc / C``
  (the class-trace kernel, on the scale of one class's kernel);
- ``"pntk"``: ``M = 1 / sqrt(C)`` (one row), the kernel of ``g = sum_c f_c / sqrt(C)``
  (the pseudo-NTK of Mohamadi et al., 2022).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

KINDS = ("full", "trace", "pntk")
_HIGHEST = lax.Precision.HIGHEST


def directions(kind, n_outputs, dtype):
    """The (K, C) matrix of output directions whose NTK the flavour ``kind`` is."""
    if kind == "pntk":
        return jnp.full((1, n_outputs), 1.0 / jnp.sqrt(n_outputs), dtype)
    return jnp.eye(n_outputs, dtype=dtype)


def pair(u1, u2, kind):
    """Kernel block of per-sample, per-direction features ``u`` of shape (n, K, p).

    ``kind="full"`` is one GEMM of (n1 K, p) by (p, n2 K), returned in its
    natural (n1, K, n2, K) layout (see :func:`finish`); the other kinds give
    the direction-averaged diagonal (n1, n2).
    """
    if kind == "full":
        n1, k, p = u1.shape
        flat = jnp.matmul(u1.reshape(n1 * k, p), u2.reshape(-1, p).T, precision=_HIGHEST)
        return flat.reshape(n1, k, u2.shape[0], k)
    return jnp.einsum("ikp,jkp->ij", u1, u2, precision=_HIGHEST) / u1.shape[1]


def scale_block(gram, block):
    """Multiply a kernel block of :func:`pair` elementwise by a per-pair (n1, n2) Gram."""
    return gram[:, None, :, None] * block if block.ndim == 4 else gram * block


def finish(block):
    """A summed block of :func:`pair` in the engine's layout: (n1, n2, K, K) for the full kernel."""
    return block.transpose(0, 2, 1, 3) if block.ndim == 4 else block
