"""`QueryStrategy`: the base of every strategy, callable by modAL and queryable scikit-activeml style."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted


class QueryStrategy(BaseEstimator):
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
    """

    requires_network = True
    requires_labeled = True

    def __call__(self, learner, X_pool, n_instances=1, **kwargs):
        """Select ``n_instances`` rows of ``X_pool`` for the modAL ``learner``.

        Returns
        -------
        indices : ndarray of shape (n_instances,)
            Rows of ``X_pool``, in selection order.
        scores : ndarray of shape (n_instances,)
            Their utilities.
        """
        clf, transform = self._resolve_estimator(getattr(learner, "estimator", None))
        X_labeled, y_labeled = getattr(learner, "X_training", None), getattr(learner, "y_training", None)
        return self._run(clf, transform, X_labeled, y_labeled, X_pool, n_instances)

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
            Indices into ``X`` to choose from; all unlabelled rows by default.
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
        X = _as_array(X, "X")
        labeled = _labeled_mask(y, X.shape[0])
        if candidates is None:
            candidates = np.flatnonzero(~labeled)
        else:
            candidates = np.asarray(candidates, dtype=int).ravel()
            if np.any(labeled[candidates]):
                raise ValueError("candidates include labelled rows")
        clf, transform = self._resolve_estimator(clf)
        y_arr = np.asarray(y, dtype=object)
        idx, scores = self._run(clf, transform, X[labeled], y_arr[labeled], X[candidates], batch_size)
        query_indices = candidates[idx]
        if not return_utilities:
            return query_indices
        utilities = np.full((len(idx), X.shape[0]), np.nan)
        utilities[np.arange(len(idx)), query_indices] = scores
        return query_indices, utilities

    def _run(self, clf, transform, X_labeled, y_labeled, X_pool, n_instances):
        X_pool = transform(_as_array(X_pool, "X_pool"))
        n_pool = X_pool.shape[0]
        if n_pool == 0:
            raise ValueError("the pool is empty: there is nothing to query")
        if not isinstance(n_instances, numbers.Integral) or n_instances < 1:
            raise ValueError(f"n_instances must be a positive integer, got {n_instances!r}")
        if n_instances > n_pool:
            raise ValueError(f"n_instances={n_instances} is larger than the pool ({n_pool} samples)")
        _check_finite(X_pool, "X_pool")
        _check_features(clf, X_pool, "X_pool")
        if self.requires_labeled:
            if X_labeled is None or y_labeled is None or len(y_labeled) == 0:
                raise ValueError("the learner has no labelled data; teach it some before querying")
            X_labeled = transform(_as_array(X_labeled, "X_training"))
            y_labeled = np.asarray(y_labeled).ravel()
            _check_features(clf, X_labeled, "X_training")
            unseen = [label for label in np.unique(y_labeled).tolist() if label not in set(clf.classes_.tolist())]
            if unseen:
                raise ValueError(f"labels {unseen} are unknown to the estimator (classes_={list(clf.classes_)})")
        rng = check_random_state(getattr(self, "random_state", None))
        positions, scores = self._select(clf, X_labeled, y_labeled, X_pool, n_instances, rng)
        return np.asarray(positions, dtype=int), np.asarray(scores, dtype=float)

    def _resolve_estimator(self, estimator):
        """The classifier that scores, and the transformation of inputs in front of it."""
        if estimator is None:
            raise ValueError(f"{type(self).__name__} needs a fitted estimator; got None")
        transform = _identity
        if isinstance(estimator, Pipeline):
            head = estimator[:-1]
            transform = lambda X: np.asarray(head.transform(X), dtype=np.float32)  # noqa: E731
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


def _identity(X):
    return X


def _as_array(X, name):
    X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    if X.ndim < 2:
        raise ValueError(f"{name} must be 2-D (samples x features), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    return X.astype(np.float32, copy=False)


def _check_finite(X, name):
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinity")


def _check_features(clf, X, name):
    expected = getattr(clf, "n_features_in_", None)
    n_features = int(np.prod(X.shape[1:]))
    if expected is not None and n_features != expected:
        raise ValueError(f"{name} has {n_features} features but the estimator was fitted with {expected}")


def _labeled_mask(y, n):
    y = np.asarray(y, dtype=object).ravel()
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} entries but X has {n} rows")
    return np.array([not (v is None or (isinstance(v, float) and np.isnan(v))) for v in y], dtype=bool)
