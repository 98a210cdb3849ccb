"""Ridge kernel regression in numpy/SciPy: Cholesky with jitter, block updates, predictions, the evidence amplitude."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from .kernels import kernel_product

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

    Holds one copy of ``K`` besides ``matrix`` itself (the ridge is added on the
    diagonal of the copy that is factorised in place).

    Returns
    -------
    chol : ndarray of shape (N, N)
    ridge : float
        The ridge used.
    """
    matrix = np.asarray(matrix)
    ridge = ridge if ridge > 0 else float(np.finfo(matrix.dtype).eps)
    for _ in range(_JITTER_TRIES):
        work = np.array(matrix, order="F")
        work.flat[::work.shape[0] + 1] += ridge
        try:
            return linalg.cholesky(work, lower=True, overwrite_a=True), ridge
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


def extend_cholesky(chol, cross, new, ridge):
    """Cholesky factor of ``[[K, k], [k^T, kappa]] + ridge I`` from the factor ``chol`` of ``K + ridge I``.

    The factor is ``[[R, 0], [l^T, r]]`` with ``l = R^-1 k`` and
    ``r = chol(kappa + ridge I - l^T l)``: O(N^2 N') instead of refactorising
    in O((N + N')^3). Conditioning a Gaussian process on new points is this
    update; ``kappa + ridge I - l^T l`` is their posterior covariance plus the ridge.

    Parameters
    ----------
    chol : array of shape (N, N)
    cross : array of shape (N, N')
        ``Theta(L, new)`` over rows.
    new : array of shape (N', N')
        ``Theta(new, new)`` over rows.
    ridge : float

    Returns
    -------
    ndarray of shape (N + N', N + N') or None
        ``None`` when the Schur complement is not numerically positive definite.
    """
    lower = linalg.solve_triangular(chol, np.asarray(cross, chol.dtype), lower=True)
    schur = np.asarray(new, chol.dtype) - lower.T @ lower
    schur.flat[::schur.shape[0] + 1] += ridge
    try:
        corner = linalg.cholesky(schur, lower=True)
    except linalg.LinAlgError:
        return None
    return np.block([[chol, np.zeros((chol.shape[0], corner.shape[0]), chol.dtype)], [lower.T, corner]])


def extend(regression, cross, new, residual):
    """Add samples to a regression by a Cholesky block update (:func:`extend_cholesky`), with the same ridge.

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
    chol = extend_cholesky(regression.chol, cross, new, regression.ridge)
    if chol is None:
        return None
    residual = np.concatenate([regression.residual, np.asarray(residual, chol.dtype)])
    return Regression(chol, residual, linalg.cho_solve((chol, True), residual), regression.ridge, regression.q)


def predict(regression, theta, outputs, a_z=None, a_l=None):
    """``f~_L(Z) = f(Z) + G(Z, L) alpha`` as rows, without forming the row kernel ``G(Z, L)``.

    Parameters
    ----------
    regression : Regression
    theta : array of shape (n_Z, n) or (n_Z, n, C, C)
        ``Theta(Z, L)``, the network's kernel (see :func:`kernel_product`).
    outputs : array of shape (n_Z q, r)
        ``f(Z)`` as rows.
    a_z, a_l : arrays of shape (n_Z, C, C), (n, C, C) or None
        Output Jacobians of ``Z`` and ``L`` (softmax outputs).
    """
    dtype = regression.alpha.dtype
    return np.asarray(outputs, dtype) + kernel_product(np.asarray(theta, dtype), regression.alpha, a_z, a_l)


def amplitude(regression):
    """Kernel amplitude that maximises the marginal likelihood of the residuals: ``r^T (K + lambda I)^-1 r / |r|``.

    For a Gaussian process prior ``sigma^2 (Theta + lambda I)`` on the
    residuals ``r = Y_L - f(X_L)`` (every output column independent), the
    log marginal likelihood is largest at this ``sigma^2`` (Rasmussen &
    Williams, *Gaussian Processes for Machine Learning*, 2006, sec. 5.4);
    ``sigma^2 Delta`` is then the predictive covariance of the linearised network.
    """
    return float(np.sum(regression.residual * regression.alpha) / regression.residual.size)
