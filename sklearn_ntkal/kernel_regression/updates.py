"""Look-ahead updates in JAX (to be jitted): ``f~`` after adding a candidate, and the variance it removes."""

from __future__ import annotations

import jax.numpy as jnp

from .kernels import to_rows


def own_blocks(cols, index, q):
    """``Delta[x, x]`` (b, q, q) of candidates ``x = U[index]`` from their columns ``Delta[:, x]`` (M, b q)."""
    b = index.shape[0]
    return cols.reshape(-1, q, b, q)[index, :, jnp.arange(b), :]


def lookahead(mean, cols, index, targets, ridge, q):
    """Look-ahead outputs ``f~_{L+(x,y)}(U)`` for candidates ``x = U[index]`` and targets ``y``.

    ``f~_{L+(x,y)}(u) = f~_L(u) + Delta[u, x] s_x^-1 (y - f~_L(x))`` with
    ``s_x = Delta[x, x] + lambda I``.

    Parameters
    ----------
    mean : array of shape (M, r)
        ``f~_L(U)`` as rows.
    cols : array of shape (M, b q)
        Columns ``Delta[:, x]`` of the candidates (see
        :mod:`~sklearn_ntkal.kernel_regression.covariance`).
    index : int array of shape (b,)
        Candidates, as positions in U.
    targets : array of shape (b, Y, C)
        ``Y`` hypothetical targets per candidate (one-hot labels).
    ridge : float
    q : int

    Returns
    -------
    array of shape (b, Y, m, C)
        Outputs on all of U after adding each (candidate, target) pair.
    """
    n_rows, r = mean.shape
    b = index.shape[0]
    s = own_blocks(cols, index, q) + ridge * jnp.eye(q, dtype=cols.dtype)
    gap = targets.reshape(b, targets.shape[1], q, r) - mean.reshape(-1, q, r)[index][:, None]
    weights = jnp.linalg.solve(s[:, None], gap)
    after = mean + jnp.einsum("Mbq,byqr->byMr", cols.reshape(n_rows, b, q), weights)
    return after.reshape(b, targets.shape[1], n_rows // q, q * r)


def variance_reduction(cols, index, weights, ridge, q):
    """Weighted posterior variance over U removed by adding each candidate (whatever its label).

    ``sum_u w(u) tr(Delta[u, x] s_x^-1 Delta[x, u])``: conditioning on ``x``
    replaces ``Delta`` by ``Delta - Delta[:, x] s_x^-1 Delta[x, :]``, which does
    not depend on the label, so this is the drop of ``sum_u w(u) tr Delta[u, u]``.

    Parameters
    ----------
    cols : array of shape (M, b q)
    index : int array of shape (b,)
    weights : array of shape (m,)
        ``w(u)`` per sample of U.
    ridge : float
    q : int

    Returns
    -------
    array of shape (b,)
    """
    b = index.shape[0]
    s = own_blocks(cols, index, q) + ridge * jnp.eye(q, dtype=cols.dtype)
    blocks = cols.reshape(-1, q, b, q)
    gram = jnp.einsum("uaxc,u,uaxd->xcd", blocks, weights, blocks)
    return jnp.trace(jnp.linalg.solve(s, gram), axis1=1, axis2=2)


def update_mean(mean, cols, index, target, ridge, q):
    """``f~ <- f~ + Delta[:, x] s_x^-1 (y - f~(x))`` after adding candidate ``x = U[index]`` with target ``y`` (C,).

    ``cols`` are the columns ``Delta[:, x]`` (M, q) before the update; O(M q^2).
    """
    index = jnp.atleast_1d(index)
    s = own_blocks(cols, index, q)[0] + ridge * jnp.eye(q, dtype=cols.dtype)
    gap = to_rows(jnp.asarray(target, mean.dtype)[None], q) - mean.reshape(-1, q, mean.shape[1])[index[0]]
    return mean + cols @ jnp.linalg.solve(s, gap)
