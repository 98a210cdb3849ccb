"""Checks of the public API's inputs and parameters, one home for each, run once at the boundary."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions, make_constraint
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data

#: Largest input magnitude accepted: the networks compute in float32, where the square of a larger value
#: overflows (a standardisation's variance, a kernel's input Gram, a feature's squared norm).
MAX_MAGNITUDE = float(np.sqrt(np.finfo(np.float32).max))
#: Rows named in an error message, at most.
_SHOWN = 5


def check_parameters(constraints, params, owner):
    """Raise an ``InvalidParameterError`` naming the first parameter of ``params`` that breaks its ``constraints``.

    The constraints are scikit-learn's (``StrOptions``, ``Interval``, types,
    ``None``, ``"boolean"``, ...; see ``sklearn.utils._param_validation``), with
    one difference: a bool does not satisfy an ``Interval``. The message
    starts with the parameter's name, e.g. ``"kernel must be one of {'full',
    'pntk', 'trace'}, got 'ntk' (NTKLookAheadQuery)"``. ``InvalidParameterError``
    is both a ValueError and a TypeError.

    Parameters
    ----------
    constraints : dict
        Parameter name to a list of constraints, or ``"no_validation"``.
    params : dict
        Parameter name to value.
    owner : str
        Who the parameters belong to, named in the message.
    """
    for name, allowed in constraints.items():
        if allowed == "no_validation":
            continue
        value = params[name]
        checks = [make_constraint(constraint) for constraint in allowed]
        if any(_satisfied(check, value) for check in checks):
            continue
        described = " or ".join(_describe(check) for check in checks if not check.hidden)
        raise InvalidParameterError(f"{name} must be {described}, got {value!r} ({owner})")


def _satisfied(check, value):
    return not (isinstance(check, Interval) and isinstance(value, (bool, np.bool_))) and check.is_satisfied_by(value)


def _describe(check):
    if isinstance(check, StrOptions):
        return "one of {" + ", ".join(repr(option) for option in sorted(check.options)) + "}"
    return str(check)


class ParameterValidationMixin:
    """``_validate_params`` of :func:`check_parameters`: scikit-learn's, with messages that name the parameter first."""

    def _validate_params(self):
        check_parameters(self._parameter_constraints, self.get_params(deep=False), type(self).__name__)


def check_samples(X, name, sample_shape=None):
    """``X`` as a float32 array of samples, checked: numeric, at least 2-D, not empty, finite, of float32 range.

    Bool and numeric object arrays are accepted and converted, as
    scikit-learn's ``check_array`` does. Values are checked in their own
    precision before the cast, so ``1e39`` is refused rather than turned
    into infinity, and so is any magnitude above ``MAX_MAGNITUDE`` (about
    ``1.8e19``), whose square overflows float32: a standardisation's
    variance, a kernel's input Gram or a feature norm would be infinite
    (one ``1e30`` among the training data made every feature's scale
    infinite). The caller's array is never modified (a converted copy is
    returned when the dtype differs).

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_samples, ...)
    name : str
        The argument's name, used in messages.
    sample_shape : tuple or None
        Per-sample shape the estimator expects (``X.shape[1:]``); ``None``
        accepts any.

    Returns
    -------
    ndarray of float32

    Raises
    ------
    TypeError
        If ``X`` is sparse or not numeric (strings, objects that are not numbers).
    ValueError
        If ``X`` holds complex numbers, has fewer than 2 dimensions,
        samples of another shape than ``sample_shape``, no samples or no
        features, NaN or infinity, or magnitudes above ``MAX_MAGNITUDE``.
    """
    X = _numeric(X, name)
    if X.ndim < 2:
        raise ValueError(f"{name} has {X.ndim} dimension{'s' * (X.ndim != 1)} {X.shape}; expected a 2D array "
                         + (f"of {_features(sample_shape)}" if sample_shape is not None
                            else "(a batch axis, then the features of each sample)")
                         + f". Reshape your data: {name}.reshape(1, -1) for a single sample, "
                           f"{name}.reshape(-1, 1) for a single feature")
    if sample_shape is not None and X.shape[1:] != tuple(sample_shape):
        raise ValueError(_shape_message(X.shape, tuple(sample_shape), name))
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if X.size == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    bad = ~np.isfinite(X)
    if bad.any():
        raise ValueError(f"{name} contains NaN or infinity at rows {_rows(bad)}")
    large = np.abs(X) > MAX_MAGNITUDE
    if large.any():
        raise ValueError(f"{name} contains values too large for float32 (largest magnitude {np.abs(X).max():.3g}, "
                         f"at rows {_rows(large)}): the networks compute in float32, where the square of a value "
                         f"above {MAX_MAGNITUDE:.3g} overflows")
    return X.astype(np.float32, copy=False)


def _numeric(X, name):
    """``X`` as a dense numeric ndarray (bool, int or float; numeric objects as float64), not copied if it is one."""
    if scipy.sparse.issparse(X):
        raise TypeError(f"{name} is a sparse matrix; the networks need dense data (use {name}.toarray())")
    X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    if X.dtype.kind == "O":
        try:
            return X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must hold numbers; its object array holds "
                            f"{sorted({type(v).__name__ for v in X.ravel()})} ({exc})") from None
    if X.dtype.kind == "c":
        raise ValueError(f"{name} holds complex numbers (dtype {X.dtype}): Complex data not supported")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
    return X


def _features(sample_shape):
    return f"{sample_shape[0]} features" if len(sample_shape) == 1 else f"samples of shape {sample_shape}"


def _shape_message(shape, expected, name):
    if len(shape) != len(expected) + 1:
        return (f"{name} has {len(shape)} dimensions {shape}; expected a {len(expected) + 1}D array of "
                f"{_features(expected)}")
    if len(expected) == 1:
        return f"{name} has {shape[1]} features but the estimator was fitted with {expected[0]}"
    return f"{name} has samples of shape {shape[1:]} but the estimator was fitted with samples of shape {expected}"


def _rows(mask):
    """The first rows of a mask over samples where it is True, for messages."""
    rows = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    return rows[:_SHOWN].tolist() + (["..."] if rows.size > _SHOWN else [])


def sample_shape_of(estimator):
    """Per-sample input shape a fitted estimator expects, or None when it does not say."""
    shape = getattr(estimator, "sample_shape_in_", None)
    if shape is not None:
        return tuple(shape)
    n_features = getattr(estimator, "n_features_in_", None)
    return None if n_features is None else (int(n_features),)


def check_estimator_input(estimator, X, reset, sample_shape=None):
    """``X`` for an estimator's ``fit`` or ``predict``: :func:`check_samples`, and scikit-learn's bookkeeping.

    Checks ``X`` against the per-sample shape the fitted estimator expects
    (``sample_shape`` when ``reset``, e.g. a given network's; else the
    estimator's own ``sample_shape_in_``). scikit-learn's ``validate_data``
    keeps the feature names and ``n_features_in_`` (and words the error for
    a wrong number of features, as its estimator checks expect); a wrong
    number of dimensions is refused before it, naming them. When ``reset``,
    ``sample_shape_in_`` is recorded.
    """
    array = _numeric(X, "X")
    expected = sample_shape if reset else sample_shape_of(estimator)
    if expected is None or array.ndim == len(expected) + 1:
        validate_data(estimator, X, skip_check_array=True, reset=reset)
    checked = check_samples(array, "X", expected)
    if reset:
        estimator.sample_shape_in_ = checked.shape[1:]
    return checked


def check_labels(y, name, n_samples, samples_name):
    """``y`` as a 1-D array of class labels, one per sample, none missing.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, 1)
    name : str
        The argument's name.
    n_samples : int
        Rows of the samples the labels belong to.
    samples_name : str
        Their argument's name.

    Returns
    -------
    ndarray of shape (n_samples,)

    Raises
    ------
    ValueError
        If ``y`` is None or not 1-D, has another length than the samples, contains
        NaN or None, or holds continuous values (scikit-learn's
        ``check_classification_targets``).
    """
    if y is None:
        raise ValueError(f"a classifier requires y to be passed, but the target {name} is None")
    y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"{samples_name} has {n_samples} rows but {name} has {y.shape[0]} labels")
    missing = _missing(y)
    if missing.any():
        raise ValueError(f"{name} contains NaN or None at rows {_rows(missing)}")
    check_classification_targets(y)
    return y


def _missing(y):
    """Where ``y`` holds NaN or None."""
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, numbers.Real) and v != v) for v in y], dtype=bool)
    return np.zeros(y.shape, dtype=bool)


def partial_labels(y, n_samples):
    """``y`` as an object array, and the mask of its labelled rows (scikit-activeml: NaN or None is unlabelled).

    Raises
    ------
    ValueError
        If ``y`` is not 1-D or has another length than ``X``'s ``n_samples`` rows.
    """
    y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y, dtype=object)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels (NaN for unlabelled rows), got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} rows but y has {y.shape[0]} labels")
    return y, ~_missing(y)


def check_indices(indices, name, n_rows, rows_name):
    """``indices`` as distinct integer rows of an array of ``n_rows`` rows, at least one.

    Raises
    ------
    TypeError
        If they are not integers (floats are not truncated) or not a 1-D
        list of indices (e.g. an array of samples).
    ValueError
        If there are none, or some are negative, at least ``n_rows`` or repeated.
    """
    rows = np.asarray(indices)
    if rows.ndim != 1:
        raise TypeError(f"{name} must be a 1-D array of row indices into {rows_name}, got shape {rows.shape}")
    if rows.size == 0:
        raise ValueError(f"{name} is empty: give at least one row of {rows_name}")
    if rows.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer row indices into {rows_name}, got dtype {rows.dtype}")
    outside = rows[(rows < 0) | (rows >= n_rows)]
    if outside.size:
        raise ValueError(f"{name} contains indices out of range {outside[:_SHOWN].tolist()}; "
                         f"{rows_name} has {n_rows} rows")
    values, counts = np.unique(rows, return_counts=True)
    if values.size != rows.size:
        raise ValueError(f"{name} contains repeated indices {values[counts > 1][:_SHOWN].tolist()}")
    return rows.astype(np.intp, copy=False)


def check_unlabeled(rows, labeled, name):
    """``rows`` (checked indices), after checking none is marked in the boolean mask ``labeled``."""
    taken = rows[labeled[rows]]
    if taken.size:
        raise ValueError(f"{name} contains labelled rows {taken[:_SHOWN].tolist()}; candidates must be distinct "
                         "unlabelled rows")
    return rows


def check_n_instances(n_instances, name, n_candidates):
    """A positive integer number of instances to query, at most ``n_candidates``."""
    if isinstance(n_instances, (bool, np.bool_)) or not isinstance(n_instances, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {n_instances!r}")
    if n_instances < 1:
        raise ValueError(f"{name} must be a positive integer, got {n_instances!r}")
    if n_instances > n_candidates:
        raise ValueError(f"{name}={n_instances} is larger than the pool of {n_candidates} candidates")
    return int(n_instances)


def check_finite_scores(scores, owner):
    """Raise a ValueError if a strategy's scores overflowed: the network's features of the pool are not finite."""
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{owner} got non-finite scores {scores[bad][:_SHOWN].tolist()}: the network's outputs or "
                         "features of the pool overflow float32; its values are too large for the network "
                         "(rescale them, or standardise them as the training data were)")


def check_network_outputs(outputs, name):
    """``outputs`` of a network on ``name``, after checking they did not overflow float32."""
    bad = ~np.isfinite(outputs)
    if bad.any():
        raise ValueError(f"the network's outputs on {name} overflow float32 at rows {_rows(bad)}: its values are "
                         "too large for the network (rescale them as the training data were)")
    return outputs
