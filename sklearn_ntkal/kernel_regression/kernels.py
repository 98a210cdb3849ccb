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
        which has C x C blocks even for a scalar ``theta``. ``None`` on one
        side only stands for the identity there (``Theta A_2^T``, ``A_1 Theta``).

    Returns
    -------
    matrix : ndarray of shape (n1 q, n2 q)
        With factors and a scalar ``theta``, written in its final layout (no flattening copy).
    q : int
    """
    theta = np.asarray(theta)
    if a1 is None and a2 is None:
        return (theta, 1) if theta.ndim == 2 else (_flatten_blocks(theta), theta.shape[-1])
    n1, n2 = theta.shape[:2]
    c = (a1 if a1 is not None else a2).shape[-1]
    if theta.ndim == 4:
        left = "iab,ijbc" if a1 is not None else "ijac"
        operands = [a for a in (a1, theta, a2) if a is not None]
        blocks = np.einsum(f"{left},jdc->iajd" if a2 is not None else f"{left}->iajc", *operands, optimize=True)
    elif a1 is not None and a2 is not None:
        blocks = (a1.reshape(n1 * c, c) @ a2.reshape(n2 * c, c).T).reshape(n1, c, n2, c)
        blocks *= theta[:, None, :, None]
    elif a1 is not None:
        blocks = a1[:, :, None, :] * theta[:, None, :, None]
    else:
        blocks = theta[:, None, :, None] * a2.transpose(2, 0, 1)[None]
    return blocks.reshape(n1 * c, n2 * c), c


def kernel_product(theta, z, a1=None, a2=None):
    """``G z`` for the row kernel ``G = output_kernel(theta, a1, a2)``, without forming ``G``.

    ``G z = A_1 (Theta (A_2^T z))`` sample by sample, with ``Theta`` acting as
    ``theta (x) I_C`` for a scalar kernel: O(n1 n2 q s) operations and
    O(n1 q s) memory instead of the (n1 q, n2 q) matrix.

    Parameters
    ----------
    theta : array of shape (n1, n2) or (n1, n2, C, C)
    z : array of shape (n2 q, s)
        Rows (see :func:`to_rows`), ``q`` rows per sample of ``X2``.
    a1, a2 : arrays of shape (n1, C, C), (n2, C, C) or None
        ``None`` for the identity on that side.

    Returns
    -------
    ndarray of shape (n1 q, s)
    """
    theta = np.asarray(theta)
    n1, n2 = theta.shape[:2]
    z = np.asarray(z).reshape(n2, -1, z.shape[-1])
    if a2 is not None:
        z = np.matmul(a2.transpose(0, 2, 1), z)
    if theta.ndim == 2:
        out = (theta @ z.reshape(n2, -1)).reshape(n1, z.shape[1], z.shape[2])
    else:
        out = np.einsum("uvab,vbs->uas", theta, z, optimize=True)
    if a1 is not None:
        out = np.matmul(a1, out)
    return out.reshape(n1 * out.shape[1], out.shape[2])


def transpose_kernel(theta):
    """``Theta(X2, X1)`` from ``Theta(X1, X2)``: samples swapped, C x C blocks transposed."""
    theta = np.asarray(theta)
    return theta.T if theta.ndim == 2 else theta.transpose(1, 0, 3, 2)


def _flatten_blocks(blocks):
    n1, n2, c, d = blocks.shape
    return blocks.transpose(0, 2, 1, 3).reshape(n1 * c, n2 * d)


def sample_rows(index, q):
    """Row indices (b q,) of samples ``index`` (b,), ``q`` rows each, sample by sample."""
    return (np.asarray(index)[:, None] * q + np.arange(q)).ravel()


def to_rows(values, q):
    """(n, C) outputs or targets as (n q, C / q) rows (numpy or JAX arrays)."""
    return values.reshape(-1, values.shape[-1] // q)


def from_rows(rows, n_outputs):
    """(n q, C / q) rows back to (n, C) outputs."""
    return rows.reshape(-1, n_outputs)
