"""`QueryStrategy`: the base of every strategy, callable by modAL and queryable scikit-activeml style."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..validation import (
    ParameterValidationMixin,
    check_finite_scores,
    check_indices,
    check_labels,
    check_n_instances,
    check_samples,
    check_unlabeled,
    partial_labels,
    sample_shape_of,
)


class QueryStrategy(ParameterValidationMixin, BaseEstimator):
    """Base class of the query strategies.

    A strategy is a scikit-learn estimator (clonable, ``get_params`` /
    ``set_params``, nests in grid searches) with two entry points:

    - ``strategy(learner, X_pool, n_instances=1)``: modAL's convention; reads the
      labelled set from ``learner.X_training`` / ``learner.y_training`` and the
      classifier from ``learner.estimator`` and returns ``(indices, scores)``;
    - ``strategy.query(X, y, clf, batch_size=1, candidates=None,
      return_utilities=False)``: scikit-activeml's convention, NaN in ``y``
      marking unlabelled rows.

    When the estimator is a :class:`~sklearn.pipeline.Pipeline`, every input is
    transformed by all but its last step, which must be the network; kernels
    and gradients are then of what the network sees. This is modAL's
    ``on_transformed=True`` behaviour, and it holds whatever the learner's
    ``on_transformed`` says: a network's kernel is only defined on the inputs
    the network receives.

    Subclasses implement ``_select(clf, X_labeled, y_labeled, X_candidates,
    n_instances, random_state) -> (positions, scores)`` where ``positions``
    index ``X_candidates`` in selection order and ``scores`` are their
    utilities (higher is better), and set ``requires_network`` to say whether
    they need a fitted :class:`~sklearn_ntkal.JaxNetClassifier` (``apply_fn``,
    ``params_``) or only ``predict_proba``.

    Inputs are checked once, here (:mod:`sklearn_ntkal.validation`): the
    parameters against ``_parameter_constraints``; the pool and the labelled
    set (what the network sees, after a pipeline's transformers) as finite
    float32 arrays of the fitted per-sample shape, bool and numeric object
    arrays converted as scikit-learn does; labels known to the classifier;
    ``n_instances`` and ``candidates``. ``_select`` receives checked arrays
    and checks nothing again. Scores that overflow float32 (inputs far
    outside what the network was trained on) raise a ValueError instead of
    deciding the query.
    """

    requires_network = True
    requires_labeled = True
    _parameter_constraints: dict = {}

    def __call__(self, learner, X_pool, n_instances=1, **kwargs):
        """Select ``n_instances`` rows of ``X_pool`` for the modAL ``learner``.

        Returns
        -------
        indices : ndarray of shape (n_instances,)
            Rows of ``X_pool``, in selection order.
        scores : ndarray of shape (n_instances,)
            Their utilities.
        """
        self._validate_params()
        clf, transform = self._resolve_estimator(getattr(learner, "estimator", None))
        X_pool = _network_inputs(clf, transform, X_pool, "X_pool")
        n_instances = check_n_instances(n_instances, "n_instances", X_pool.shape[0])
        X_labeled, y_labeled = None, None
        if self.requires_labeled:
            X_labeled, y_labeled = getattr(learner, "X_training", None), getattr(learner, "y_training", None)
            if X_labeled is None or y_labeled is None or len(y_labeled) == 0:
                raise ValueError("the learner has no labelled data; teach it some before querying")
            X_labeled = _network_inputs(clf, transform, X_labeled, "X_training")
            y_labeled = _known_labels(clf, check_labels(y_labeled, "y_training", X_labeled.shape[0], "X_training"))
        return self._run(clf, X_labeled, y_labeled, X_pool, n_instances)

    def query(self, X, y, clf, batch_size=1, candidates=None, return_utilities=False):
        """Select ``batch_size`` unlabelled rows of ``X`` (scikit-activeml convention).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels, NaN (or None) for unlabelled rows.
        clf : fitted estimator
        batch_size : int, default=1
        candidates : array-like of int or None
            Distinct indices of unlabelled rows of ``X`` to choose from; all
            unlabelled rows by default. scikit-activeml's other form, an
            array of candidate samples, is refused with a TypeError: pass
            those samples as unlabelled rows of ``X``.
        return_utilities : bool, default=False

        Returns
        -------
        query_indices : ndarray of shape (batch_size,)
            Indices into ``X``.
        utilities : ndarray of shape (batch_size, n_samples)
            Only if ``return_utilities``: row ``b`` holds the scores at step
            ``b`` (the same for every row of a one-shot batch), NaN where not a
            candidate.
        """
        return self._answer(self._check_query(X, y, clf, batch_size, candidates), return_utilities)

    def _check_query(self, X, y, clf, batch_size, candidates):
        """The inputs of :meth:`query`, checked: a :class:`_Query`."""
        self._validate_params()
        clf, transform = self._resolve_estimator(clf)
        X = _network_inputs(clf, transform, X, "X")
        y, labeled = partial_labels(y, X.shape[0])
        if candidates is None:
            rows = np.flatnonzero(~labeled)
            if rows.size == 0:
                raise ValueError("every row of X is labelled: there is nothing to query")
        else:
            rows = check_unlabeled(check_indices(candidates, "candidates", X.shape[0], "X"), labeled, "candidates")
        n_instances = check_n_instances(batch_size, "batch_size", rows.size)
        X_labeled = y_labeled = None
        if self.requires_labeled:
            if not labeled.any():
                raise ValueError("y has no labelled data (every entry is NaN or None); label some rows before querying")
            X_labeled = X[labeled]
            y_labeled = _known_labels(clf, y[labeled])
        return _Query(clf, X_labeled, y_labeled, X[rows], rows, n_instances, X.shape[0])

    def _answer(self, checked, return_utilities):
        """Indices into ``X`` (and utilities) of the query of checked inputs."""
        idx, scores = self._run(checked.clf, checked.X_labeled, checked.y_labeled, checked.X_candidates,
                                checked.n_instances)
        query_indices = checked.rows[idx]
        if not return_utilities:
            return query_indices
        utilities = np.full((len(idx), checked.n_rows), np.nan)
        utilities[np.arange(len(idx)), query_indices] = scores
        return query_indices, utilities

    def _run(self, clf, X_labeled, y_labeled, X_pool, n_instances):
        """The selection on checked inputs: positions in ``X_pool`` and their finite scores."""
        rng = check_random_state(getattr(self, "random_state", None))
        positions, scores = self._select(clf, X_labeled, y_labeled, X_pool, n_instances, rng)
        scores = np.asarray(scores, dtype=float)
        check_finite_scores(scores, type(self).__name__)
        return np.asarray(positions, dtype=int), scores

    def _resolve_estimator(self, estimator):
        """The classifier that scores, and the transformation of inputs in front of it."""
        if estimator is None:
            raise ValueError(f"{type(self).__name__} needs a fitted estimator; got None")
        transform = _identity
        if isinstance(estimator, Pipeline):
            if len(estimator) > 1:
                transform = estimator[:-1].transform
            estimator = estimator[-1]
        if self.requires_network:
            if not (hasattr(estimator, "network_") or hasattr(type(estimator), "apply_fn")):
                raise TypeError(
                    f"{type(self).__name__} needs a JAX network classifier exposing apply_fn and params_ "
                    f"(e.g. sklearn_ntkal.JaxNetClassifier); got {type(estimator).__name__}"
                )
            check_is_fitted(estimator, "params_")
        elif not hasattr(estimator, "predict_proba"):
            raise TypeError(f"{type(self).__name__} needs an estimator with predict_proba")
        else:
            check_is_fitted(estimator)
        return estimator, transform

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        raise NotImplementedError


class _Query(NamedTuple):
    """Checked inputs of :meth:`QueryStrategy.query`; ``rows`` are the candidates' rows of ``X``."""

    clf: object
    X_labeled: np.ndarray | None
    y_labeled: np.ndarray | None
    X_candidates: np.ndarray
    rows: np.ndarray
    n_instances: int
    n_rows: int


def _identity(X):
    return X


def _network_inputs(clf, transform, X, name):
    """``X`` as the network sees it (after a pipeline's transformers), checked against the fitted input shape."""
    return check_samples(transform(X), name, sample_shape_of(clf))


def _known_labels(clf, y):
    """``y`` as an array, after checking every label is one of the classifier's classes."""
    y = np.asarray(y).ravel()
    known = set(clf.classes_.tolist())
    unseen = [label for label in dict.fromkeys(y.tolist()) if label not in known]
    if unseen:
        raise ValueError(f"labels {unseen} are unknown to the estimator (classes_={list(clf.classes_)})")
    return y
