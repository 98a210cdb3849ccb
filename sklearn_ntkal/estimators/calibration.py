"""Temperature calibration of an MSE network's softmax from leave-one-out predictions of its linearisation."""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from .. import kernel_regression as kr
from ..engine import KernelSpec
from ..engine.forward import outputs

CALIBRATIONS = ("auto", "temperature", None)

#: Relative ridge of the leave-one-out regression (``lambda = RIDGE * trace(Theta) / n``).
RIDGE = 1e-5

#: Bounds of the maximum-likelihood search over ``log T``.
LOG_TEMPERATURE_BOUNDS = (np.log(1e-3), np.log(1e3))

#: At most this many labelled rows enter the kernel (evenly spaced rows beyond it).
MAX_ROWS = 2048


def leave_one_out_residuals(kernel, residual, ridge=RIDGE):
    """Leave-one-out residuals of ridge kernel regression, all at once from one Cholesky factorisation.

    With ``K = Theta + lambda I`` and ``alpha = K^-1 R``, the prediction for
    row ``i`` of the regression fitted on every other row misses ``R_i`` by

        R_i - R^_{-i}(x_i) = alpha_i / (K^-1)_ii

    (the classic identity for ridge regression and Gaussian-process
    posteriors; Rasmussen & Williams, *Gaussian Processes for Machine
    Learning*, 2006, eq. 5.12). Float64 throughout.

    Parameters
    ----------
    kernel : array of shape (n, n)
        Scalar kernel ``Theta(L, L)``, used as ``Theta (x) I_C``.
    residual : array of shape (n, C)
        Regression targets ``R`` (targets minus the prior mean).
    ridge : float, default=RIDGE
        Relative ridge; the absolute one is ``ridge * trace(Theta) / n``,
        multiplied by 10 until the Cholesky factorisation succeeds.

    Returns
    -------
    ndarray of shape (n, C)
        ``alpha_i / (K^-1)_ii`` per row.

    Raises
    ------
    scipy.linalg.LinAlgError
        When ``K`` is not positive definite even with a large ridge.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    chol, _ = kr.ridge_cholesky(kernel, kr.relative_ridge(kernel, ridge))
    inverse_factor = linalg.solve_triangular(chol, np.eye(kernel.shape[0]), lower=True)
    diagonal = np.einsum("ji,ji->i", inverse_factor, inverse_factor)
    alpha = linalg.cho_solve((chol, True), np.asarray(residual, dtype=np.float64))
    return alpha / diagonal[:, None]


def negative_log_likelihood(logits, labels, temperature):
    """Mean ``-log softmax(f / T)_y`` over rows; ``labels`` are column positions."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return float(-np.mean(log_softmax(scaled, axis=1)[np.arange(len(labels)), labels]))


def fit_temperature(logits, labels):
    """Maximum-likelihood temperature ``T`` of ``softmax(logits / T)``, or ``None`` when it is not identified.

    The negative log-likelihood is convex in ``beta = 1 / T``, with slope
    ``mean(z_y - mean_c z_c)`` (negated) at ``beta = 0`` and
    ``mean(max_c z_c - z_y)`` as ``beta -> inf``. So a finite, positive
    maximiser exists exactly when the labels' logits beat the average logit
    on average and at least one prediction is wrong; otherwise (every
    prediction right: ``T -> 0``; labels no better than chance: ``T -> inf``)
    the fit is degenerate. Else a bounded 1-D search over ``log T``
    (Brent's method, deterministic) finds it, and a maximum on a bound of
    ``LOG_TEMPERATURE_BOUNDS`` is reported as degenerate too.

    Parameters
    ----------
    logits : array of shape (n, C)
    labels : int array of shape (n,)

    Returns
    -------
    float or None
    """
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(labels))
    true = logits[rows, labels]
    rivals = np.where(np.eye(logits.shape[1], dtype=bool)[labels], -np.inf, logits).max(axis=1)
    if np.all(true > rivals) or np.mean(true - logits.mean(axis=1)) <= 0:
        return None
    low, high = LOG_TEMPERATURE_BOUNDS
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, np.exp(log_t)),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    margin = 1e-3 * (high - low)
    if not (result.success and np.isfinite(result.x) and low + margin < result.x < high - margin):
        return None
    return float(np.exp(result.x))


def calibration_rows(labels, max_rows=MAX_ROWS):
    """Rows used for the temperature: all of them, or ``max_rows`` evenly spaced ones; ``None`` when too few.

    The fit needs at least two classes, each with at least two rows (a row
    alone in its class has no neighbour to be predicted from).
    """
    rows = np.arange(len(labels))
    if len(rows) > max_rows:
        rows = np.linspace(0, len(labels) - 1, max_rows).round().astype(int)
    counts = np.bincount(labels[rows])
    counts = counts[counts > 0]
    if counts.size < 2 or counts.min() < 2:
        return None
    return rows


def leave_one_out_temperature(network, initial_params, X, labels, n_classes, ridge=RIDGE):
    """Temperature of an MSE network from leave-one-out predictions of its linearisation at initialisation.

    The network linearised at its initial weights ``theta_0`` and trained to
    convergence with MSE on the labelled set without row ``i`` predicts, at
    ``x_i`` (kernel regression on the residuals; Lee et al., "Wide Neural
    Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
    NeurIPS 2019)::

        f_{-i}(x_i) = f_0(x_i) + Theta_0(x_i, L_{-i}) K_{-i}^-1 (Y - f_0(X))_{-i}
                    = y_i - alpha_i / (K^-1)_ii,
        K = Theta_0(L, L) + lambda I,    alpha = K^-1 (Y - f_0(X))

    with ``Theta_0`` the pseudo-NTK at ``theta_0``, ``f_0`` the initial
    network and ``lambda = RIDGE * trace(Theta_0) / n``. Neither the kernel
    nor the prior mean has seen row ``i``. The temperature maximises the
    likelihood of the labels under ``softmax(f_{-i}(x_i) / T)``
    (:func:`fit_temperature`).

    Why not the trained weights: the empirical NTK of the trained network is
    aligned with the labels it was trained on, so even with row ``i`` left
    out of the regression it predicts ``y_i`` (measured on digits, MLP
    preset: every leave-one-out prediction right from 100 labels on, with a
    zero prior mean or the trained network as prior mean, against 90-99 %
    test accuracy), and the likelihood has no finite maximum. At
    ``theta_0`` the temperature came within 1-13 % of the test likelihood
    of the best temperature from 20 to 1000 labels
    (``benchmarks/calibration.py``). It depends on ``theta_0`` and the data,
    not on the trained weights: it assumes the trained network generalises
    from ``L`` about as well as its linearisation at ``theta_0``.

    Cost: one pseudo-NTK of ``X`` (``n x n``, float64), one forward pass and
    one ``O(n^3)`` Cholesky factorisation, with ``n`` at most ``MAX_ROWS``
    (:func:`calibration_rows`).

    Parameters
    ----------
    network : callable
        ``apply_fn(params, x) -> (n, C)``; any network (the kernel engine falls
        back to autodiff for layers without structured rules).
    initial_params : pytree
        The parameters the network was initialised with.
    X : ndarray of shape (n, ...)
        Labelled inputs.
    labels : int array of shape (n,)
        Column positions of their classes.
    n_classes : int
    ridge : float, default=RIDGE

    Returns
    -------
    float or None
        ``None`` when the data cannot identify the temperature: fewer than two
        classes, a class with a single row, a kernel that cannot be
        factorised, or a likelihood without an interior maximum (:func:`fit_temperature`).
    """
    labels = np.asarray(labels)
    rows = calibration_rows(labels)
    if rows is None:
        return None
    X, labels = X[rows], labels[rows]
    kernel = KernelSpec(kind="pntk", float64=True)(network, initial_params, X)
    targets = np.eye(n_classes)[labels]
    prior = np.asarray(outputs(network, initial_params, X), dtype=np.float64)
    try:
        logits = targets - leave_one_out_residuals(kernel, targets - prior, ridge)
    except linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(logits)):
        return None
    return fit_temperature(logits, labels)
