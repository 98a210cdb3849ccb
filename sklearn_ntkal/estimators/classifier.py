"""`JaxNetClassifier`: a scikit-learn classifier around a JAX network trained with optax."""

from __future__ import annotations

import math
from numbers import Integral, Real

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted

from ..engine import LOSSES, bind
from ..engine.forward import outputs
from ..networks import Network, Reshape, Serial, Standardize, resolve_layer
from ..validation import ParameterValidationMixin, check_estimator_input, check_labels, check_network_outputs
from .calibration import CALIBRATIONS, leave_one_out_temperature
from .training import OPTIMIZERS, make_optimizer, run_epoch

_IMAGE_PRESETS = ("cnn", "wide_resnet", "resnet18")


class JaxNetClassifier(ParameterValidationMixin, ClassifierMixin, BaseEstimator):
    """Neural-network classifier on JAX, exposing what NTK active-learning strategies need.

    The network maps inputs to one output per class, ``f(x; theta)`` of shape
    (n, C). It is trained on the loss ``(1/n) sum_i l(f(x_i), y_i)`` with
    minibatches and an optax optimiser; ``predict_proba`` is
    ``softmax(f / T)`` with a temperature ``T`` fitted for MSE networks (see
    ``calibration``) and ``T = 1`` otherwise.
    Any input preprocessing (standardisation, rows reshaped to images) is part
    of the network function, so ``apply_fn(params_, X)`` is exactly what
    ``decision_function`` computes and kernels are always of the model that
    predicts.

    Parameters
    ----------
    network : str, Layer, (init_fn, apply_fn) pair, Flax or Equinox module, default="mlp"
        ``"mlp"``, ``"cnn"``, ``"wide_resnet"`` or ``"resnet18"`` (built-in, with structured NTK
        rules), or a user network in the stax convention; see
        :func:`sklearn_ntkal.networks.resolve_layer`. A user network must
        output one value per class.
    network_kwargs : dict or None
        Arguments of the preset, e.g. ``{"hidden_layer_sizes": (256, 256)}``.
    input_shape : tuple or None
        Per-sample shape the network expects (e.g. ``(8, 8, 1)``) when ``X``
        holds flat rows. For image presets and square flat inputs it is inferred
        as ``(s, s, 1)``.
    loss : {"cross_entropy", "mse"}, default="cross_entropy"
        ``"mse"`` regresses one-hot targets, the setting of the NTK look-ahead paper.
    optimizer : str or optax.GradientTransformation, default="adam"
        ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"`` or any optax transformation.
    learning_rate : float, default=1e-3
    weight_decay : float, default=0.0
    epochs : int, default=100
        Passes over the data per ``fit`` (``partial_fit`` makes one).
    batch_size : int, default=64
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, stop after
        ``n_iter_no_change`` epochs without improving its accuracy and keep the
        best parameters.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    standardize : {"auto", "feature", "global"} or bool, default="auto"
        Input scaling with statistics of the first fit, a fixed layer of the
        network (not a parameter). ``"feature"`` (or ``True``): centre and scale
        each feature, scales floored at their mean so near-constant features
        are not blown up into noise; ``"global"``: one mean and one scale for
        all features, right for pixels; ``"auto"``: ``"global"`` for images
        (an ``input_shape``, NHWC arrays or an image preset), else
        ``"feature"``; ``False``: none.
    calibration : {"auto", "temperature", None}, default="auto"
        How ``predict_proba`` turns outputs into probabilities. A network
        trained with MSE fits outputs near the one-hot targets, whose softmax
        is nearly uniform (a perfectly fitted point gets ``e / (e + C - 1)``,
        0.23 with 10 classes). ``"temperature"``: ``softmax(f / T)`` with
        ``T`` fitted by maximum likelihood on leave-one-out predictions of
        the network linearised at its initialisation (kernel regression with
        the pseudo-NTK at the initial weights ``theta_0``)::

            f_{-i}(x_i) = y_i - alpha_i / (K^-1)_ii,
            K = Theta_0(L, L) + lambda I,   alpha = K^-1 (Y - f_0(X))

        (:func:`~sklearn_ntkal.estimators.calibration.leave_one_out_temperature`;
        the trained network's own kernel is aligned with the labels it was
        trained on and would give a temperature far too small). It needs
        ``loss="mse"``: the leave-one-out predictions are those of an MSE
        regression. ``"auto"``: ``"temperature"`` for MSE networks and none
        for cross-entropy ones, which are trained on the likelihood
        already. ``None``: ``T = 1``. Cost per ``fit`` or ``partial_fit``:
        one pseudo-NTK of the call's data (at most 2048 evenly spaced rows),
        one forward pass and one Cholesky factorisation, in float64.
        When those data cannot identify ``T`` (fewer than two classes, a
        class with a single row, or a likelihood with its maximum on a bound
        of ``[1e-3, 1e3]``), ``fit`` sets ``T = 1`` and ``partial_fit``
        keeps the current ``T``, without an error.
    warm_start : bool, default=False
        Continue from the current parameters on the next ``fit``, with a fresh
        optimiser state and ``epochs`` more epochs (each active-learning round
        of both papers); ``partial_fit`` always keeps the optimiser state.
    random_state : int, RandomState or None
        Seeds initialisation, shuffling and validation splits.
    verbose : bool, default=False
        Print the loss after every epoch.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
    network_ : Network
        The network, preprocessing included; an ``apply_fn(params, x)``.
    params_ : pytree of jax arrays
    engine_ : sklearn_ntkal.engine.Engine
        ``network_`` bound to ``params_`` (:func:`sklearn_ntkal.engine.bind`):
        the forward pass, kernels and gradients that the linearised model and
        the strategies use, with what they learn about the network by tracing
        it kept, so it is learnt once per fitted state.
    initial_params_ : pytree of jax arrays
        The parameters drawn at initialisation (the first fit, or the last fit
        from scratch); the temperature calibration linearises the network there.
    loss_curve_ : list of float
    n_iter_ : int
        Epochs run by the last fit.
    temperature_ : float
        The temperature ``T`` of ``predict_proba``; 1.0 when not calibrated.
    n_features_in_ : int
    sample_shape_in_ : tuple
        Per-sample shape of the inputs (``X.shape[1:]`` at the first fit);
        inputs of another shape are refused.

    Notes
    -----
    Inputs are checked once, at each public method
    (:mod:`sklearn_ntkal.validation`): finite, of magnitudes whose squares
    fit in the float32 the network computes in (at most about ``1.8e19``),
    of the fitted per-sample shape. Bool and numeric object arrays are
    converted, as scikit-learn's estimators do (the strategies accept them
    likewise). As for scikit-learn's classifiers, ``fit`` needs at least two
    classes. The standardisation statistics are computed in float64, whose
    sums of squares do not overflow. Outputs that overflow float32 raise a
    ValueError rather than give NaN probabilities.
    """

    _parameter_constraints = {
        "network": "no_validation",
        "network_kwargs": [dict, None],
        "input_shape": [tuple, list, None],
        "loss": [StrOptions(set(LOSSES))],
        "optimizer": [StrOptions(set(OPTIMIZERS)), HasMethods(["init", "update"])],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), callable],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "standardize": [StrOptions({"auto", "feature", "global"}), "boolean"],
        "calibration": [StrOptions({c for c in CALIBRATIONS if c is not None}), None],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, network="mlp", network_kwargs=None, input_shape=None, loss="cross_entropy",
                 optimizer="adam", learning_rate=1e-3, weight_decay=0.0, epochs=100, batch_size=64,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, standardize="auto",
                 calibration="auto", warm_start=False, random_state=None, verbose=False):
        self.network = network
        self.network_kwargs = network_kwargs
        self.input_shape = input_shape
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.standardize = standardize
        self.calibration = calibration
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    @property
    def apply_fn(self):
        """``apply_fn(params, X) -> (n, C)`` outputs of the fitted network (preprocessing included)."""
        check_is_fitted(self, "params_")
        return self.network_

    def fit(self, X, y):
        """Train the network on ``(X, y)``; from scratch unless ``warm_start`` and already fitted.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._validate_params()
        fitted = self.warm_start and hasattr(self, "params_")
        X, y = self._validate_xy(X, y, reset=not fitted)
        if fitted:
            targets = self._encode(y)
            self._opt_state = self._optimizer().init(self.params_)
        else:
            self.classes_ = _two_classes_or_more(unique_labels(y), "y")
            targets = self._encode(y)
            self._initialize(X)
        self._train(X, targets, self.epochs)
        self._calibrate(X, y, keep=False)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch on ``(X, y)``; the first call needs ``classes`` (all labels that will ever occur).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (C,) or None

        Returns
        -------
        self
        """
        self._validate_params()
        first = not hasattr(self, "params_")
        if first and classes is None:
            raise ValueError("classes must be passed to the first call of partial_fit")
        if not first and classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"classes={classes!r} differs from the classes of the first call {self.classes_!r}")
        X, y = self._validate_xy(X, y, reset=first)
        if first:
            self.classes_ = _two_classes_or_more(unique_labels(classes), "classes")
            targets = self._encode(y)
            self._initialize(X)
        else:
            targets = self._encode(y)
        self._train(X, targets, 1, early_stopping=False)
        self._calibrate(X, y, keep=not first)
        return self

    def decision_function(self, X):
        """Network outputs ``f(X)`` of shape (n, C); for two classes ``f_1 - f_0`` of shape (n,)."""
        out = self._outputs(X)
        return out[:, 1] - out[:, 0] if len(self.classes_) == 2 else out

    def predict_proba(self, X):
        """``softmax(f(X) / temperature_)`` of shape (n, C), columns in the order of ``classes_``."""
        return softmax(self._outputs(X).astype(np.float64) / self.temperature_, axis=-1)

    def predict(self, X):
        """Class labels ``classes_[argmax_c f_c(X)]``."""
        outputs = self._outputs(X)
        return self.classes_[np.argmax(outputs, axis=1)]

    def ntk(self, X1, X2=None, kind="full", **kernel_kwargs):
        """Empirical NTK of the fitted network; see :func:`sklearn_ntkal.engine.empirical_ntk`.

        Parameters
        ----------
        X1, X2 : array-like
            Inputs as passed to ``predict``; ``X2=None`` gives the symmetric kernel.
        kind : {"full", "trace", "pntk"}, default="full"
        **kernel_kwargs
            ``implementation``, ``memory_budget``, ``float64``, ``devices``.

        Returns
        -------
        ndarray of shape (n1, n2, C, C) or (n1, n2)
        """
        check_is_fitted(self, "params_")
        X1 = check_estimator_input(self, X1, reset=False)
        X2 = None if X2 is None else check_estimator_input(self, X2, reset=False)
        return self.engine_.kernel(X1, X2, kind=kind, **kernel_kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("engine_", None)
        for name in ("params_", "_opt_state", "initial_params_"):
            if name in state:
                state[name] = jax.tree_util.tree_map(np.asarray, state[name])
        return state

    def __setstate__(self, state):
        for name in ("params_", "_opt_state", "initial_params_"):
            if name in state:
                state[name] = jax.tree_util.tree_map(jnp.asarray, state[name])
        self.__dict__.update(state)
        if "params_" in state:
            self.engine_ = bind(self.network_, self.params_)

    def _optimizer(self):
        return make_optimizer(self.optimizer, self.learning_rate, self.weight_decay)

    def _validate_params(self):
        super()._validate_params()
        if self.calibration == "temperature" and self.loss != "mse":
            raise ValueError(f"calibration='temperature' fits the temperature of an MSE network; it needs "
                             f"loss='mse', got loss={self.loss!r} (use calibration='auto' or None)")

    def _validate_xy(self, X, y, reset):
        X = check_estimator_input(self, X, reset)
        return X, check_labels(y, "y", X.shape[0], "X")

    def _encode(self, y):
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not seen in classes_ {list(self.classes_)}: {list(unknown)}")
        return np.eye(len(self.classes_), dtype=np.float32)[np.searchsorted(self.classes_, y)]

    def _sample_shape(self, X):
        if self.input_shape is not None:
            return tuple(int(s) for s in self.input_shape)
        if X.ndim > 2:
            return X.shape[1:]
        side = math.isqrt(X.shape[1])
        if isinstance(self.network, str) and self.network in _IMAGE_PRESETS:
            if side * side != X.shape[1]:
                raise ValueError(
                    f"network {self.network!r} needs images: pass input_shape=(H, W, C) for rows of "
                    f"{X.shape[1]} features, or NHWC arrays"
                )
            return (side, side, 1)
        return X.shape[1:]

    def _standardize_mode(self, X, sample_shape):
        if self.standardize == "auto":
            images = len(sample_shape) == 3
            return "global" if images else "feature"
        return "feature" if self.standardize is True else self.standardize

    def _initialize(self, X):
        self._rng = check_random_state(self.random_state)
        preprocess = []
        sample_shape = self._sample_shape(X)
        mode = self._standardize_mode(X, sample_shape)
        if mode == "feature":
            scale = X.std(axis=0, dtype=np.float64)
            preprocess.append(Standardize(X.mean(axis=0, dtype=np.float64),
                                          np.maximum(scale, max(scale.mean(), 1e-6))))
        elif mode == "global":
            preprocess.append(Standardize(X.mean(dtype=np.float64), max(X.std(dtype=np.float64), 1e-6)))
        if tuple(sample_shape) != X.shape[1:]:
            preprocess.append(Reshape(sample_shape))
        n_classes = len(self.classes_)
        model = resolve_layer(self.network, n_classes, self.network_kwargs)
        key = jax.random.PRNGKey(self._rng.randint(2**31 - 1))
        network = Network(Serial(Serial(*preprocess), model))
        out_shape, self.params_, self.network_ = network.initialize(key, (-1,) + X.shape[1:])
        if tuple(out_shape[1:]) != (n_classes,):
            raise ValueError(f"the network outputs shape {tuple(out_shape[1:])} per sample but there are "
                             f"{n_classes} classes; it must output one value per class")
        self.initial_params_ = self.params_
        self._opt_state = self._optimizer().init(self.params_)
        self.loss_curve_ = []

    def _train(self, X, targets, epochs, early_stopping=None):
        early_stopping = self.early_stopping if early_stopping is None else early_stopping
        X_val = None
        if early_stopping:
            stratify = targets.argmax(1) if np.bincount(targets.argmax(1)).min() >= 2 else None
            X, X_val, targets, t_val = train_test_split(
                X, targets, test_size=self.validation_fraction, stratify=stratify,
                random_state=self._rng.randint(2**31 - 1))
            best, best_state, stall = -np.inf, (self.params_, self.network_), 0
        network, params, opt_state = self.network_, self.params_, self._opt_state
        schedule = {"loss": self.loss, "optimizer": self._optimizer()}
        self.n_iter_ = 0
        for _ in range(epochs):
            params, opt_state, network, value = run_epoch(network, params, opt_state, X, targets, self.batch_size,
                                                          self._rng, **schedule)
            self.loss_curve_.append(value)
            self.n_iter_ += 1
            if self.verbose:
                print(f"epoch {len(self.loss_curve_)}: loss {value:.5f}")
            if early_stopping:
                accuracy = float(np.mean(outputs(network, params, X_val).argmax(1) == t_val.argmax(1)))
                if accuracy > best:
                    best, best_state, stall = accuracy, (params, network), 0
                else:
                    stall += 1
                if stall >= self.n_iter_no_change:
                    params, network = best_state
                    break
        self.network_, self.params_, self._opt_state = network, params, opt_state
        self.engine_ = bind(network, params)

    def _calibrate(self, X, y, keep):
        """Fit ``temperature_`` on ``(X, y)`` (see ``calibration``); ``keep`` the current one if they cannot."""
        temperature = None
        if self.calibration == "temperature" or (self.calibration == "auto" and self.loss == "mse"):
            temperature = leave_one_out_temperature(self.network_, self.initial_params_, X,
                                                    np.searchsorted(self.classes_, y), len(self.classes_))
        if temperature is None:
            temperature = getattr(self, "temperature_", 1.0) if keep and self.calibration is not None else 1.0
        self.temperature_ = temperature

    def _outputs(self, X):
        check_is_fitted(self, "params_")
        X = check_estimator_input(self, X, reset=False)
        return check_network_outputs(self.engine_.outputs(X), "X")


def _two_classes_or_more(classes, name):
    """``classes``, after checking there are at least two, as scikit-learn's classifiers require."""
    if len(classes) < 2:
        raise ValueError(f"{name} has one class only ({classes.tolist()}); a classifier needs samples of at "
                         "least 2 classes")
    return classes
