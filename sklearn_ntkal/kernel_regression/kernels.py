"""Kernels of the linearised outputs over "rows": scalar kernels as ``k (x) I_C``, C x C blocks flattened."""

from __future__ import annotations

import numpy as np


def softmax_jacobian(logits):
    """``A(x) = diag(p) - p p^T`` with ``p = softmax(f(x))``: the Jacobian of softmax outputs, (n, C, C)."""
    logits = np.asarray(logits)
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p[:, :, None] * np.eye(p.shape[1], dtype=p.dtype) - p[:, :, None] * p[:, None, :]


def output_kernel(theta, a1=None, a2=None):
    """Kernel matrix over rows and the number ``q`` of rows per sample.

    Parameters
    ----------
    theta : array of shape (n1, n2) or (n1, n2, C, C)
        Scalar kernel (used as ``theta (x) I_C``) or C x C blocks.
    a1, a2 : arrays of shape (n1, C, C), (n2, C, C) or None
        Output Jacobians multiplying the network Jacobians (softmax outputs:
        :func:`softmax_jacobian`); the kernel becomes ``A(x) Theta(x, x') A(x')^T``,
        which has C x C blocks even for a scalar ``theta``.

    Returns
    -------
    matrix : ndarray of shape (n1 q, n2 q)
    q : int
    """
    theta = np.asarray(theta)
    if a1 is None:
        return (theta, 1) if theta.ndim == 2 else (_flatten_blocks(theta), theta.shape[-1])
    if theta.ndim == 2:
        blocks = theta[:, :, None, None] * np.einsum("iab,jcb->ijac", a1, a2, optimize=True)
    else:
        blocks = np.einsum("iab,ijbc,jdc->ijad", a1, theta, a2, optimize=True)
    return _flatten_blocks(blocks), blocks.shape[-1]


def _flatten_blocks(blocks):
    n1, n2, c, d = blocks.shape
    return blocks.transpose(0, 2, 1, 3).reshape(n1 * c, n2 * d)


def to_rows(values, q):
    """(n, C) outputs or targets as (n q, C / q) rows (numpy or JAX arrays)."""
    return values.reshape(-1, values.shape[-1] // q)


def from_rows(rows, n_outputs):
    """(n q, C / q) rows back to (n, C) outputs."""
    return rows.reshape(-1, n_outputs)
