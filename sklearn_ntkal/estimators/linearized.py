"""`LinearizedClassifier`: the network linearised at its weights, a kernel-regression classifier updated without SGD."""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import kernel_regression as kr
from ..engine import DEFAULT_MEMORY_BUDGET, KINDS, engine_of
from ..engine.budget import rows_within
from .classifier import JaxNetClassifier

OUTPUT_SPACES = ("auto", "logits", "probabilities")


@dataclass(frozen=True)
class Posterior:
    """The linearised model over a set of inputs U, what the look-ahead needs.

    Attributes
    ----------
    mean : ndarray of shape (m, C)
        ``f~_L(U)`` in the output space.
    covariance : ndarray of shape (m q, m q)
        ``Delta = Theta(U, U) - Theta(U, L) K^-1 Theta(L, U)`` over rows.
    outputs : ndarray of shape (m, C)
        The network's own outputs ``f(U)`` in the output space.
    ridge : float
        Absolute ridge ``lambda``.
    q : int
        Rows per sample (1 for a scalar kernel on logits, C otherwise).
    output_space : {"logits", "probabilities"}
    """

    mean: np.ndarray
    covariance: np.ndarray
    outputs: np.ndarray
    ridge: float
    q: int
    output_space: str


def network_outputs(clf, X, params=None, float64=False):
    """Outputs ``f(X)`` (n, C) of a fitted :class:`JaxNetClassifier`'s network as float64 numpy, in chunks.

    ``params`` replaces the classifier's ``params_`` (e.g. retrained copies).
    With ``float64`` the network itself runs in float64, so outputs do not
    depend on which batch a sample was evaluated in (float32 matrix products
    do, at the 1e-7 level).
    """
    return engine_of(clf).outputs(X, params=params, float64=float64).astype(np.float64)


def _physical_memory():
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def resolve_output_space(clf, output_space):
    """``"auto"``: ``"logits"`` for a network trained with MSE, ``"probabilities"`` otherwise."""
    if output_space not in OUTPUT_SPACES:
        raise ValueError(f"output_space must be one of {OUTPUT_SPACES}, got {output_space!r}")
    if output_space == "auto":
        return "logits" if getattr(clf, "loss", None) == "mse" else "probabilities"
    return output_space


def to_probabilities(values, output_space):
    """Class probabilities of outputs: ``softmax`` of logits; linearised probabilities are used as they are."""
    return jax.nn.softmax(values, axis=-1) if output_space == "logits" else values


class LinearizedClassifier(ClassifierMixin, BaseEstimator):
    """The network linearised at its trained weights, fitted by kernel regression (no SGD).

    Predicts with the linearised network trained to convergence with MSE on
    the labelled set L (Mohamadi, Bae & Sutherland, "Making Look-Ahead Active
    Learning Strategies Feasible with Neural Tangent Kernels", NeurIPS 2022)::

        f~_L(Z) = f(Z) + Theta(Z, L) (Theta(L, L) + lambda I)^-1 (Y_L - f(X_L))

    with ``Theta`` the empirical NTK at the network's weights and ``Y_L`` one-hot.
    New labels are added by :meth:`partial_fit` with a Cholesky block update
    of ``Theta(L, L) + lambda I`` (O(n^2) per label, no refactorisation and no
    SGD), which is the streaming mode of the paper: an active-learning loop can
    run many rounds on one trained network.

    When to retrain the network: the linearisation is exact only near the
    weights it was taken at, and the kernel is the one of the network trained
    on the data it saw. Refit the network (``estimator.fit`` on all labels,
    then ``fit`` here) when the labelled set has grown well beyond what the
    network was trained on (say by a quarter), when predictions of this model
    and of the network start to disagree on held-out data, or when the O(n^2)
    memory and O(n^3) cost of a refit grow large; in between, ``partial_fit``.

    Output space. With a network trained by cross-entropy, ``f(X_L)`` are
    logits far from one-hot, so regressing logits onto one-hot targets would
    change predictions before any label is added (about one in ten on a
    digits pool). With
    ``output_space="probabilities"`` the softmax outputs ``p(x)`` are
    linearised instead: their Jacobian is ``A(x) J_f(x)`` with
    ``A = diag(p) - p p^T``, so the kernel is ``A(x) Theta(x, x') A(x')^T``
    (C x C blocks even for a scalar kernel) and ``p`` is regressed onto the
    one-hot targets it was trained towards. ``"auto"`` chooses logits for MSE
    networks (the paper's setting, where ``f(X_L)`` is close to ``Y_L``) and
    probabilities otherwise.

    Parameters
    ----------
    estimator : JaxNetClassifier or None
        The network. A fitted one is used as it is (not copied or retrained);
        an unfitted one (or ``None``: ``JaxNetClassifier(loss="mse")``) is
        cloned and trained on the data of the first ``fit``.
    kernel : {"pntk", "full", "trace"}, default="pntk"
        Empirical NTK flavour; the scalar ones are used as ``Theta (x) I_C``.
    output_space : {"auto", "logits", "probabilities"}, default="auto"
    ridge : float, default=1e-5
        Relative ridge: ``lambda = ridge * trace(K) / dim(K)``, multiplied by
        10 until the Cholesky factorisation succeeds.
    float64 : bool, default=True
        Kernels, network outputs and the regression algebra in float64.
    memory_budget : int or None
        Bytes per kernel block (see :class:`~sklearn_ntkal.engine.KernelSpec`);
        ``None`` for the engine's default.

    Attributes
    ----------
    estimator_ : JaxNetClassifier
    classes_ : ndarray of shape (C,)
    output_space_ : {"logits", "probabilities"}
    X_fit_ : ndarray
        Labelled inputs the regression holds.
    regression_ : sklearn_ntkal.kernel_regression.Regression
        Cholesky factor, residuals and their solve (numpy arrays).
    ridge_ : float
        The absolute ridge used.
    n_features_in_ : int
    """

    def __init__(self, estimator=None, kernel="pntk", output_space="auto", ridge=1e-5, float64=True,
                 memory_budget=None):
        self.estimator = estimator
        self.kernel = kernel
        self.output_space = output_space
        self.ridge = ridge
        self.float64 = float64
        self.memory_budget = memory_budget

    def fit(self, X, y):
        """Kernel regression of the linearised network on ``(X, y)``; trains the network first only if unfitted.

        Returns
        -------
        self
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float32, allow_nd=True)
        estimator = JaxNetClassifier(loss="mse") if self.estimator is None else self.estimator
        if not hasattr(estimator, "params_"):
            estimator = clone(estimator).fit(X, y)
        if not hasattr(estimator, "network_"):
            raise TypeError(f"estimator must be a JaxNetClassifier (a JAX network with network_ and params_); "
                            f"got {type(estimator).__name__}")
        if getattr(estimator, "n_features_in_", self.n_features_in_) != self.n_features_in_:
            raise ValueError(f"X has {self.n_features_in_} features but the network was fitted with "
                             f"{estimator.n_features_in_}")
        self.estimator_ = estimator
        self.classes_ = estimator.classes_
        self.output_space_ = resolve_output_space(estimator, self.output_space)
        return self._fit_regression(X, y)

    def partial_fit(self, X, y):
        """Add labelled samples by a Cholesky block update of the kernel regression (no SGD, no refactorisation).

        Falls back to a refit on all samples when the update is numerically
        singular (e.g. a sample repeated many times with a tiny ridge).

        Returns
        -------
        self
        """
        if not hasattr(self, "regression_"):
            return self.fit(X, y)
        X, y = validate_data(self, X, y, reset=False, dtype=np.float32, allow_nd=True)
        outputs, factors = self._linearize(X)
        cross, _ = self._kernel(self.X_fit_, self._factors_fit, X, factors)
        new, q = self._kernel(X, factors)
        regression = kr.extend(self.regression_, cross, new, kr.to_rows(self._targets(y) - outputs, q))
        if regression is None:
            return self._fit_regression(np.concatenate([self.X_fit_, X]), np.concatenate([self._y_fit, y]))
        factors = None if factors is None else np.concatenate([self._factors_fit, factors])
        self._store(np.concatenate([self.X_fit_, X]), np.concatenate([self._y_fit, y]), factors, regression)
        return self

    def decision_function(self, X):
        """``f~_L(X)`` (n, C) in the output space; for two classes ``f~_1 - f~_0`` of shape (n,)."""
        out = self._mean(X)
        return out[:, 1] - out[:, 0] if len(self.classes_) == 2 else out

    def predict_proba(self, X):
        """Class probabilities: ``softmax(f~_L)`` on logits; clipped, renormalised ``p~_L`` on probabilities."""
        mean = self._mean(X)
        if self.output_space_ == "logits":
            return softmax(mean, axis=1)
        clipped = np.clip(mean, 0.0, None)
        total = clipped.sum(axis=1, keepdims=True)
        return np.where(total > 0, clipped / np.where(total > 0, total, 1.0), 1.0 / mean.shape[1])

    def predict(self, X):
        """Class labels ``classes_[argmax_c f~_L(X)_c]``."""
        return self.classes_[np.argmax(self._mean(X), axis=1)]

    def posterior(self, X):
        """Mean ``f~_L``, posterior covariance ``Delta`` and network outputs over ``X`` (the look-ahead's U).

        ``Delta`` is held whole: (m q)^2 floats, ``q = 1`` for a scalar kernel
        on logits and ``q = C`` for the full kernel or probabilities.

        Returns
        -------
        Posterior

        Raises
        ------
        MemoryError
            Before computing anything, when ``Delta`` and the kernel it is
            made from would take more than half of the physical memory.
        """
        check_is_fitted(self, "regression_")
        X = validate_data(self, X, reset=False, dtype=np.float32, allow_nd=True)
        self._check_covariance_memory(X.shape[0])
        outputs, factors = self._linearize(X)
        cross, q = self._kernel(X, factors, self.X_fit_, self._factors_fit)
        gram, _ = self._kernel(X, factors)
        mean = kr.from_rows(kr.predict(self.regression_, cross, kr.to_rows(outputs, q)), outputs.shape[1])
        delta = kr.posterior_covariance(self.regression_, cross, gram)
        return Posterior(mean, delta, outputs, self.ridge_, q, self.output_space_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def _check_params(self):
        if self.kernel not in KINDS:
            raise ValueError(f"kernel must be one of {KINDS}, got {self.kernel!r}")
        if self.output_space not in OUTPUT_SPACES:
            raise ValueError(f"output_space must be one of {OUTPUT_SPACES}, got {self.output_space!r}")
        if not self.ridge >= 0:
            raise ValueError(f"ridge must be non-negative, got {self.ridge!r}")

    def _check_covariance_memory(self, m):
        n_rows = m * self.regression_.q
        needed = 3 * np.dtype(self._dtype()).itemsize * n_rows**2
        available = _physical_memory()
        if available and needed > available // 2:
            raise MemoryError(
                f"the posterior covariance over {m} inputs with {self.regression_.q} rows each needs about "
                f"{needed / 2**30:.1f} GiB ({available / 2**30:.1f} GiB of memory in all); use fewer candidates "
                f"(n_candidates), or a scalar kernel ('pntk', 'trace') on logits (an MSE-trained network): "
                f"kernel='full' and output_space='probabilities' have C x C blocks")

    def _budget(self):
        return DEFAULT_MEMORY_BUDGET if self.memory_budget is None else int(self.memory_budget)

    def _linearize(self, X):
        """Network outputs in the output space and the output Jacobians (``None`` on logits)."""
        logits = network_outputs(self.estimator_, X, float64=self.float64).astype(self._dtype(), copy=False)
        if self.output_space_ == "logits":
            return logits, None
        return softmax(logits, axis=1), kr.softmax_jacobian(logits)

    def _dtype(self):
        return np.float64 if self.float64 else np.float32

    def _kernel(self, X1, factors1, X2=None, factors2=None):
        """Kernel over rows of the linearised outputs; symmetric in ``X1`` when ``X2`` is None."""
        symmetric = X2 is None
        theta = engine_of(self.estimator_).kernel(X1, None if symmetric else X2, kind=self.kernel,
                                                  float64=bool(self.float64), memory_budget=self._budget())
        if factors1 is None:
            return kr.output_kernel(theta)
        return kr.output_kernel(theta, factors1, factors1 if symmetric else factors2)

    def _targets(self, y):
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels the network does not know ({list(unknown)}); "
                             f"its classes are {list(self.classes_)}")
        return np.eye(len(self.classes_), dtype=self._dtype())[np.searchsorted(self.classes_, y)]

    def _fit_regression(self, X, y):
        outputs, factors = self._linearize(X)
        matrix, q = self._kernel(X, factors)
        regression = kr.fit(matrix, kr.to_rows(self._targets(y) - outputs, q), self.ridge, q)
        self._store(X, y, factors, regression)
        return self

    def _store(self, X, y, factors, regression):
        self.X_fit_ = X
        self._y_fit = y
        self._factors_fit = factors
        self.regression_ = regression
        self.ridge_ = float(regression.ridge)

    def _mean(self, X):
        """``f~_L(X)`` (n, C), in chunks of X so the cross kernel stays within the memory budget."""
        check_is_fitted(self, "regression_")
        X = validate_data(self, X, reset=False, dtype=np.float32, allow_nd=True)
        n_rows, q = self.regression_.chol.shape[0], self.regression_.q
        size = rows_within(self._budget(), np.dtype(self._dtype()).itemsize * q * n_rows * 4)
        means = []
        for start in range(0, X.shape[0], size):
            chunk = X[start:start + size]
            outputs, factors = self._linearize(chunk)
            cross, _ = self._kernel(chunk, factors, self.X_fit_, self._factors_fit)
            means.append(kr.from_rows(kr.predict(self.regression_, cross, kr.to_rows(outputs, q)), outputs.shape[1]))
        return np.concatenate(means).astype(np.float64, copy=False)
