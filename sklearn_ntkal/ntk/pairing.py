"""Kernel flavours as output directions, and the pairing of per-direction features into kernel blocks.

Every flavour is the NTK of ``M f(x)`` for a fixed matrix ``M`` (K x C) of
output directions, paired in one of two ways:

- ``"full"``: ``M = I_C``, all pairs of directions: blocks (n1, n2, C, C);
- ``"trace"``: ``M = I_C``, matching directions averaged: ``sum_c Theta_cc / C``
  (METHODS.md's class-trace kernel, on the scale of one class's kernel);
- ``"pntk"``: ``M = 1 / sqrt(C)`` (one row), the kernel of ``g = sum_c f_c / sqrt(C)``
  (the pseudo-NTK of Mohamadi et al., 2022).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

KINDS = ("full", "trace", "pntk")
_HIGHEST = lax.Precision.HIGHEST


def check_kind(kind):
    """Raise a ValueError naming the valid flavours if ``kind`` is not one of them."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def directions(kind, n_outputs, dtype):
    """The (K, C) matrix of output directions whose NTK the flavour ``kind`` is."""
    if kind == "pntk":
        return jnp.full((1, n_outputs), 1.0 / jnp.sqrt(n_outputs), dtype)
    return jnp.eye(n_outputs, dtype=dtype)


def pair(u1, u2, kind):
    """Kernel block of per-sample, per-direction features ``u`` of shape (K, n, p).

    Returns (n1, n2, K, K) for ``kind="full"`` and the direction-averaged
    diagonal (n1, n2) otherwise.
    """
    if kind == "full":
        return jnp.einsum("kip,ljp->ijkl", u1, u2, precision=_HIGHEST)
    return jnp.einsum("kip,kjp->ij", u1, u2, precision=_HIGHEST) / u1.shape[0]


def scale_block(gram, block):
    """Multiply a kernel block elementwise by a per-pair (n1, n2) Gram."""
    return gram[:, :, None, None] * block if block.ndim == 4 else gram * block
