"""`LinearizedClassifier`: the network linearised at its weights, a kernel-regression classifier updated without SGD."""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import kernel_regression as kr
from ..engine import DEFAULT_MEMORY_BUDGET, KINDS, engine_of
from ..engine.budget import rows_within
from ..validation import ParameterValidationMixin, check_estimator_input, check_labels, sample_shape_of
from .classifier import JaxNetClassifier

OUTPUT_SPACES = ("auto", "logits", "probabilities")


@dataclass(frozen=True)
class Posterior:
    """The linearised model over a set of inputs U, what the look-ahead needs.

    Attributes
    ----------
    mean : ndarray of shape (m, C)
        ``f~_L(U)`` in the output space.
    covariance : StructuredCovariance or DenseCovariance
        ``Delta = G(U, U) - G(U, L) (G(L, L) + lambda I)^-1 G(L, U)`` over rows
        (see :mod:`sklearn_ntkal.kernel_regression.covariance`): its columns
        on demand, conditioned on picked candidates by ``condition``.
    outputs : ndarray of shape (m, C)
        The network's own outputs ``f(U)`` in the output space.
    ridge : float
        Absolute ridge ``lambda``.
    q : int
        Rows per sample (1 for a scalar kernel on logits, C otherwise).
    output_space : {"logits", "probabilities"}
    temperature : float
        The network's temperature ``T``: class probabilities of logits are
        ``softmax(f / T)`` (see :func:`to_probabilities`).
    amplitude : float
        ``sigma^2``, the evidence-maximising amplitude of the kernel
        (:func:`~sklearn_ntkal.kernel_regression.amplitude`): the predictive
        covariance of ``f~_L(x)`` is ``sigma^2 Delta[x, x]``.
    """

    mean: np.ndarray
    covariance: kr.StructuredCovariance | kr.DenseCovariance
    outputs: np.ndarray
    ridge: float
    q: int
    output_space: str
    temperature: float
    amplitude: float


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
    if output_space == "auto":
        return "logits" if getattr(clf, "loss", None) == "mse" else "probabilities"
    return output_space


def _namespace(values):
    """numpy for numpy inputs, ``jax.numpy`` for JAX arrays (traced ones included)."""
    return jnp if isinstance(values, jax.Array) else np


def to_probabilities(values, output_space, temperature=1.0):
    """Class probabilities of outputs: ``softmax(f / T)`` of logits; linearised probabilities as they are.

    The one place where outputs become probabilities: the look-ahead's
    baseline, output change, EMOC weights and error-reduction scores all come
    through here. ``temperature`` is the network's calibration
    (``JaxNetClassifier.temperature_``, 1 when uncalibrated); a network
    trained with MSE on one-hot targets has logits near one-hot, whose plain
    softmax is nearly uniform. Works on numpy and JAX arrays (inside ``jit`` too).
    """
    if output_space != "logits":
        return values
    xp = _namespace(values)
    z = values / temperature
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def predictive_probabilities(mean, output_space, temperature=1.0, noise=None):
    """``p(y | x)`` of the linearised model: the Gaussian predictive of ``f~_L(x)`` pushed through the softmax.

    On logits, ``E[softmax(f / T)]`` for ``f = mean + noise`` averaged over
    the points of ``noise`` (e.g. ``L_x eps_s`` with ``L_x L_x^T`` the
    predictive covariance and ``eps_s`` fixed standard-normal points: a Monte
    Carlo rule, exact in expectation for any covariance); without ``noise``
    the plug-in ``softmax(mean / T)``. On probabilities the predictive mean is
    the expected probability vector whatever the covariance (it is linear in
    ``f``): it is clipped at 0 and renormalised.

    Parameters
    ----------
    mean : array of shape (..., C)
    output_space : {"logits", "probabilities"}
    temperature : float
    noise : array of shape (..., S, C) or None

    Returns
    -------
    array of shape (..., C)
    """
    xp = _namespace(mean)
    if output_space == "logits":
        if noise is None:
            return to_probabilities(mean, output_space, temperature)
        return xp.mean(to_probabilities(mean[..., None, :] + noise, output_space, temperature), axis=-2)
    clipped = xp.clip(mean, 0.0, None)
    total = xp.sum(clipped, axis=-1, keepdims=True)
    return xp.where(total > 0, clipped / xp.where(total > 0, total, 1.0), 1.0 / mean.shape[-1])


def linearized_memory(m, n, n_outputs, kernel, output_space, itemsize=8, memory_budget=None, dense=None):
    """Bytes the linearised model allocates to fit ``n`` labelled samples and give the posterior over ``m`` inputs.

    Parameters
    ----------
    m, n, n_outputs : int
    kernel : {"pntk", "full", "trace"}
    output_space : {"logits", "probabilities"}
        Resolved (not ``"auto"``).
    itemsize : int, default=8
    memory_budget : int or None
        Bytes for one chunk of work (kernel blocks, covariance columns);
        ``None`` for the engine's default.
    dense : bool or None
        Hold ``Delta`` whole; ``None``: when :func:`~sklearn_ntkal.kernel_regression.dense_bytes`
        fits in ``memory_budget``.

    Returns
    -------
    plan : dict
        ``"fit"``: the kernel over L, its row form and Cholesky factor (the
        factor stays with the regression); ``"gram"``, ``"cross"``,
        ``"factors"``, ``"inverse"``: what the structured covariance holds;
        ``"outputs"``: outputs and mean over U; ``"dense"``: the dense
        covariance while conditioned (0 if not dense); ``"working"``: one
        chunk of the kernel engine, of covariance columns or of look-ahead scores.
    dense : bool
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    q = 1 if kernel != "full" and output_space == "logits" else n_outputs
    kernel_size = n_outputs**2 if kernel == "full" else 1
    factor_size = n_outputs**2 if output_space == "probabilities" else 0
    if dense is None:
        dense = kr.dense_bytes(m * q, itemsize) <= budget
    held = kr.structured_bytes(m, n, q, kernel_size, factor_size, itemsize)
    plan = {"fit": (n * n * kernel_size + 2 * (n * q) ** 2) * itemsize, **held,
            "outputs": 2 * m * n_outputs * itemsize,
            "dense": kr.dense_bytes(m * q, itemsize) if dense else 0, "working": budget}
    return plan, bool(dense)


class LinearizedClassifier(ParameterValidationMixin, ClassifierMixin, BaseEstimator):
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

    Calibration. A network's ``temperature_`` (1 when it has none) is read at
    ``fit``: probabilities are ``softmax(f / T)``, so ``predict_proba`` on
    logits is ``softmax(f~_L / T)`` and the linearised probabilities are
    those of ``f / T`` (Jacobian ``A(f / T) J_f / T``).

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
    temperature_ : float
        The network's temperature (``estimator.temperature_``, 1.0 without one).
    n_features_in_ : int
    sample_shape_in_ : tuple
        Per-sample shape of the inputs (``X.shape[1:]`` at ``fit``).
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "kernel": [StrOptions(set(KINDS))],
        "output_space": [StrOptions(set(OUTPUT_SPACES))],
        "ridge": [Interval(Real, 0, None, closed="left")],
        "float64": ["boolean"],
        "memory_budget": [Interval(Real, 1, None, closed="left"), None],
    }

    def __init__(self, estimator=None, kernel="pntk", output_space="auto", ridge=1e-5, float64=True,
                 memory_budget=None):
        self.estimator = estimator
        self.kernel = kernel
        self.output_space = output_space
        self.ridge = ridge
        self.float64 = float64
        self.memory_budget = memory_budget

    def fit(self, X, y, check_input=True):
        """Kernel regression of the linearised network on ``(X, y)``; trains the network first only if unfitted.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
        y : array-like of shape (n_samples,)
        check_input : bool, default=True
            Check the parameters and inputs. ``False`` is for callers that
            have checked both (``X`` a finite float32 array of the network's
            sample shape, ``y`` labels it knows), as
            :class:`~sklearn_ntkal.NTKLookAheadQuery` does.

        Returns
        -------
        self
        """
        estimator = JaxNetClassifier(loss="mse") if self.estimator is None else self.estimator
        fitted = hasattr(estimator, "params_")
        if check_input:
            self._validate_params()
            X = check_estimator_input(self, X, reset=True, sample_shape=sample_shape_of(estimator) if fitted else None)
            y = check_labels(y, "y", X.shape[0], "X")
        else:
            validate_data(self, X, skip_check_array=True)
            self.sample_shape_in_ = X.shape[1:]
        if not fitted:
            estimator = clone(estimator).fit(X, y)
        if not hasattr(estimator, "network_"):
            raise TypeError(f"estimator must be a JaxNetClassifier (a JAX network with network_ and params_); "
                            f"got {type(estimator).__name__}")
        self.estimator_ = estimator
        self.classes_ = estimator.classes_
        self.output_space_ = resolve_output_space(estimator, self.output_space)
        self.temperature_ = float(getattr(estimator, "temperature_", 1.0))
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
        X = check_estimator_input(self, X, reset=False)
        y = check_labels(y, "y", X.shape[0], "X")
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
        """Class probabilities: ``softmax(f~_L / T)`` on logits; clipped, renormalised ``p~_L`` on probabilities."""
        return predictive_probabilities(self._mean(X), self.output_space_, self.temperature_)

    def predict(self, X):
        """Class labels ``classes_[argmax_c f~_L(X)_c]``."""
        return self.classes_[np.argmax(self._mean(X), axis=1)]

    def posterior(self, X, dense=None, check_input=True):
        """Mean ``f~_L``, posterior covariance ``Delta`` and network outputs over ``X`` (the look-ahead's U).

        ``Delta`` is held whole only where it fits: with ``dense=None`` when
        three copies of its (m q)^2 numbers (held, updated, a product) fit in
        ``memory_budget``; otherwise it is kept as the kernels ``Theta(X, X)``,
        ``Theta(X, L)``, the output Jacobians and the folded inverse
        ``A_L^T (G(L, L) + lambda I)^-1 A_L``, and its columns are computed on demand
        (:class:`~sklearn_ntkal.kernel_regression.StructuredCovariance`):
        O(m^2 + m n) numbers for a scalar kernel instead of (m C)^2 on
        probabilities. ``q = 1`` for a scalar kernel on logits and ``q = C``
        for the full kernel or probabilities.

        Parameters
        ----------
        X : array-like of shape (m, ...)
        dense : bool or None, default=None
            Force (``True``) or forbid (``False``) holding ``Delta`` whole.
        check_input : bool, default=True
            ``False`` for a finite float32 ``X`` of the network's sample shape,
            checked by the caller.

        Returns
        -------
        Posterior

        Raises
        ------
        MemoryError
            Before computing anything, when what it allocates
            (:func:`linearized_memory`) exceeds half of the physical memory.
        """
        check_is_fitted(self, "regression_")
        if check_input:
            X = check_estimator_input(self, X, reset=False)
        m, q = X.shape[0], self.regression_.q
        dense = self._check_posterior_memory(m, dense)
        outputs, factors = self._linearize(X)
        cross = self._theta(X, self.X_fit_)
        mean = kr.from_rows(kr.predict(self.regression_, cross, kr.to_rows(outputs, q), factors, self._factors_fit),
                            outputs.shape[1])
        covariance = kr.StructuredCovariance(self._theta(X), cross, factors,
                                             kr.folded_inverse(self.regression_.chol, self._factors_fit), self.ridge_,
                                             q)
        if dense:
            covariance = covariance.dense(min(m, rows_within(self._budget(), covariance.column_bytes)))
        return Posterior(mean, covariance, outputs, self.ridge_, q, self.output_space_, self.temperature_,
                         kr.amplitude(self.regression_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def _check_posterior_memory(self, m, dense):
        """Whether ``Delta`` is held dense; a MemoryError before anything is computed if it cannot fit."""
        plan, dense = linearized_memory(m, self.X_fit_.shape[0], len(self.classes_), self.kernel, self.output_space_,
                                        np.dtype(self._dtype()).itemsize, self._budget(), dense)
        needed = sum(plan.values())
        available = _physical_memory()
        if available and needed > available // 2:
            raise MemoryError(
                f"the posterior over {m} inputs needs about {needed / 2**30:.1f} GiB ({available / 2**30:.1f} GiB of "
                f"memory in all; {', '.join(f'{k} {v / 2**30:.2f}' for k, v in plan.items() if v)} GiB); use fewer "
                f"candidates (n_candidates), a smaller memory_budget, or a scalar kernel ('pntk', 'trace'): "
                f"kernel='full' holds C x C blocks")
        return dense

    def _budget(self):
        return DEFAULT_MEMORY_BUDGET if self.memory_budget is None else int(self.memory_budget)

    def _linearize(self, X):
        """Network outputs in the output space and the output Jacobians (``None`` on logits).

        On probabilities: ``p = softmax(f / T)`` and its Jacobian with respect
        to ``f``, ``A(f / T) / T``.
        """
        logits = network_outputs(self.estimator_, X, float64=self.float64).astype(self._dtype(), copy=False)
        if self.output_space_ == "logits":
            return logits, None
        scaled = logits / self.temperature_
        return (to_probabilities(scaled, "logits"),
                (kr.softmax_jacobian(scaled) / self.temperature_).astype(self._dtype(), copy=False))

    def _dtype(self):
        return np.float64 if self.float64 else np.float32

    def _theta(self, X1, X2=None):
        """The network's kernel ``Theta(X1, X2)`` (symmetric in ``X1`` when ``X2`` is None), from its engine."""
        return engine_of(self.estimator_).kernel(X1, X2, kind=self.kernel, float64=bool(self.float64),
                                                 memory_budget=self._budget())

    def _kernel(self, X1, factors1, X2=None, factors2=None):
        """Kernel over rows of the linearised outputs; symmetric in ``X1`` when ``X2`` is None."""
        theta = self._theta(X1, X2)
        if factors1 is None:
            return kr.output_kernel(theta)
        return kr.output_kernel(theta, factors1, factors1 if X2 is None else factors2)

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
        X = check_estimator_input(self, X, reset=False)
        n_rows, q = self.regression_.chol.shape[0], self.regression_.q
        size = rows_within(self._budget(), np.dtype(self._dtype()).itemsize * q * n_rows * 4)
        means = []
        for start in range(0, X.shape[0], size):
            chunk = X[start:start + size]
            outputs, factors = self._linearize(chunk)
            rows = kr.predict(self.regression_, self._theta(chunk, self.X_fit_), kr.to_rows(outputs, q), factors,
                              self._factors_fit)
            means.append(kr.from_rows(rows, outputs.shape[1]))
        return np.concatenate(means).astype(np.float64, copy=False)
