"""Look-ahead and conditioning updates in JAX (to be jitted): ``f~`` and ``Delta`` after adding a candidate."""

from __future__ import annotations

import jax.numpy as jnp

from .kernels import to_rows


def sample_rows(index, q):
    """Row indices of samples ``index`` (b,) as (b, q)."""
    return jnp.asarray(index)[:, None] * q + jnp.arange(q)


def lookahead(mean, delta, index, targets, ridge, q):
    """Look-ahead outputs ``f~_{L+(x,y)}(U)`` for candidates ``x = U[index]`` and targets ``y``.

    Parameters
    ----------
    mean : array of shape (M, r)
        ``f~_L(U)`` as rows.
    delta : array of shape (M, M)
        Posterior covariance over the rows of U.
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
    cols = delta[:, sample_rows(index, q).ravel()].reshape(n_rows, b, q)
    own = cols.reshape(n_rows // q, q, b, q)[index, :, jnp.arange(b), :]
    s = own + ridge * jnp.eye(q, dtype=delta.dtype)
    gap = targets.reshape(b, targets.shape[1], q, r) - mean.reshape(-1, q, r)[index][:, None]
    weights = jnp.linalg.solve(s[:, None], gap)
    after = mean + jnp.einsum("Mbq,byqr->byMr", cols, weights)
    return after.reshape(b, targets.shape[1], n_rows // q, q * r)


def condition(mean, delta, index, target, ridge, q):
    """Add candidate ``U[index]`` with target ``target`` (C,): rank-``q`` update of ``f~`` and ``Delta``, O(M^2 q).

    Returns
    -------
    mean : array of shape (M, r)
    delta : array of shape (M, M)
    """
    rows = sample_rows(jnp.atleast_1d(index), q).ravel()
    cols = delta[:, rows]
    s = cols[rows] + ridge * jnp.eye(q, dtype=delta.dtype)
    gap = to_rows(jnp.asarray(target, mean.dtype)[None], q) - mean[rows]
    mean = mean + cols @ jnp.linalg.solve(s, gap)
    delta = delta - cols @ jnp.linalg.solve(s, cols.T)
    return mean, 0.5 * (delta + delta.T)
