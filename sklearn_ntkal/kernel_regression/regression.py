"""Ridge kernel regression in numpy/SciPy: Cholesky with jitter, block updates, predictions, posterior covariance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

_JITTER_TRIES = 8


@dataclass(frozen=True)
class Regression:
    """Fitted kernel regression: Cholesky factor of ``K + lambda I``, residual rows, their solve.

    Attributes
    ----------
    chol : ndarray of shape (N, N)
        Lower Cholesky factor of ``Theta(L, L) + ridge I``.
    residual : ndarray of shape (N, r)
        ``Y_L - f(X_L)`` as rows.
    alpha : ndarray of shape (N, r)
        ``(Theta(L, L) + ridge I)^-1 residual``.
    ridge : float
        The absolute ridge ``lambda`` actually used (after any jitter).
    q : int
        Rows per sample.
    """

    chol: np.ndarray
    residual: np.ndarray
    alpha: np.ndarray
    ridge: float
    q: int


def relative_ridge(matrix, ridge):
    """Absolute ridge ``ridge * trace(K) / dim`` (``ridge`` itself for an all-zero kernel)."""
    scale = np.trace(matrix) / matrix.shape[0]
    return float(ridge * scale) if scale > 0 else float(ridge)


def ridge_cholesky(matrix, ridge):
    """Lower Cholesky factor of ``K + ridge I``, multiplying the ridge by 10 until it succeeds.

    Returns
    -------
    chol : ndarray of shape (N, N)
    ridge : float
        The ridge used.
    """
    matrix = np.asarray(matrix)
    ridge = ridge if ridge > 0 else float(np.finfo(matrix.dtype).eps)
    for _ in range(_JITTER_TRIES):
        try:
            return linalg.cholesky(matrix + ridge * np.eye(matrix.shape[0], dtype=matrix.dtype), lower=True), ridge
        except linalg.LinAlgError:
            ridge *= 10.0
    raise linalg.LinAlgError(f"the kernel is not positive definite even with a ridge of {ridge:.3g}")


def fit(matrix, residual, ridge, q):
    """Kernel regression of residual rows on the kernel ``matrix`` with relative ``ridge``.

    Parameters
    ----------
    matrix : array of shape (N, N)
        ``Theta(L, L)`` over rows (see :func:`output_kernel`).
    residual : array of shape (N, r)
        ``Y_L - f(X_L)`` as rows.
    ridge : float
        Relative ridge; the absolute one is ``ridge * trace(K) / N``.
    q : int

    Returns
    -------
    Regression
    """
    matrix = np.asarray(matrix)
    chol, used = ridge_cholesky(matrix, relative_ridge(matrix, ridge))
    residual = np.asarray(residual, matrix.dtype)
    return Regression(chol, residual, linalg.cho_solve((chol, True), residual), used, q)


def extend(regression, cross, new, residual):
    """Add samples to a regression by a Cholesky block update, with the same ridge.

    ``[[K, k], [k^T, kappa]] + lambda I`` has the factor ``[[R, 0], [l^T, r]]``
    with ``l = R^-1 k`` and ``r = chol(kappa + lambda I - l^T l)``: O(N^2 N')
    instead of refactorising in O((N + N')^3).

    Parameters
    ----------
    regression : Regression
    cross : array of shape (N, N')
        ``Theta(L, new)`` over rows.
    new : array of shape (N', N')
        ``Theta(new, new)`` over rows.
    residual : array of shape (N', r)
        Residual rows of the new samples.

    Returns
    -------
    Regression or None
        ``None`` when the Schur complement is not numerically positive
        definite (refit from scratch then).
    """
    chol = regression.chol
    lower = linalg.solve_triangular(chol, np.asarray(cross, chol.dtype), lower=True)
    schur = np.asarray(new, chol.dtype) - lower.T @ lower
    try:
        corner = linalg.cholesky(schur + regression.ridge * np.eye(schur.shape[0], dtype=chol.dtype), lower=True)
    except linalg.LinAlgError:
        return None
    chol = np.block([[chol, np.zeros((chol.shape[0], corner.shape[0]), chol.dtype)], [lower.T, corner]])
    residual = np.concatenate([regression.residual, np.asarray(residual, chol.dtype)])
    return Regression(chol, residual, linalg.cho_solve((chol, True), residual), regression.ridge, regression.q)


def predict(regression, cross, outputs):
    """``f~_L(Z) = f(Z) + Theta(Z, L) alpha`` as rows; ``cross`` is (N_Z, N), ``outputs`` (N_Z, r)."""
    dtype = regression.alpha.dtype
    return np.asarray(outputs, dtype) + np.asarray(cross, dtype) @ regression.alpha


def posterior_covariance(regression, cross, gram):
    """``Delta = Theta(U, U) - Theta(U, L) K^-1 Theta(L, U)`` over rows, symmetrised.

    Parameters
    ----------
    regression : Regression
    cross : array of shape (M, N)
        ``Theta(U, L)`` over rows.
    gram : array of shape (M, M)
        ``Theta(U, U)`` over rows.
    """
    dtype = regression.chol.dtype
    half = linalg.solve_triangular(regression.chol, np.asarray(cross, dtype).T, lower=True)
    delta = np.asarray(gram, dtype) - half.T @ half
    return 0.5 * (delta + delta.T)
