"""Classical baselines in the strategy interface: random sampling and the uncertainty family."""

from __future__ import annotations

import numpy as np
from scipy.special import entr
from sklearn.utils._param_validation import StrOptions

from .base import QueryStrategy


def top_k(scores, k):
    """Positions of the ``k`` largest ``scores``, largest first; equal scores keep their order.

    Returns
    -------
    positions : ndarray of shape (k,)
    scores : ndarray of shape (k,)
    """
    positions = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return positions, np.asarray(scores)[positions]


def uncertainty_scores(proba, measure):
    """Uncertainty of each row of class probabilities ``proba`` (n, C); higher is more uncertain.

    - ``"entropy"``: ``H(p) = -sum_c p_c log p_c``;
    - ``"margin"``: ``-(p_(1) - p_(2))``, minus the gap between the two most
      probable classes (Scheffer et al., 2001), so the smallest margin scores highest;
    - ``"least_confidence"``: ``1 - max_c p_c`` (Lewis & Gale, 1994).

    These are the quantities of modAL's ``classifier_entropy``,
    ``classifier_margin`` (negated) and ``classifier_uncertainty``.
    """
    return _MEASURES[measure](np.asarray(proba, dtype=np.float64))


def _margin(proba):
    if proba.shape[1] < 2:
        return np.zeros(proba.shape[0])
    top2 = -np.partition(-proba, 1, axis=1)[:, :2]
    return -(top2[:, 0] - top2[:, 1])


_MEASURES = {
    "entropy": lambda proba: entr(proba).sum(axis=1),
    "margin": _margin,
    "least_confidence": lambda proba: 1.0 - proba.max(axis=1),
}


class RandomQuery(QueryStrategy):
    """Uniform random sampling, the reference every strategy must beat.

    Each candidate gets an i.i.d. uniform utility ``u ~ U[0, 1)`` and the ``k``
    largest are queried, i.e. a uniformly random subset without replacement.
    Needs no labelled data and no network; the estimator is only checked to be
    fitted.

    Parameters
    ----------
    random_state : int, RandomState or None
        Seeds the draw. With an int every call on a pool of the same size picks
        the same positions.
    """

    requires_network = False
    requires_labeled = False
    _parameter_constraints = {"random_state": ["random_state"]}

    def __init__(self, random_state=None):
        self.random_state = random_state

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        return top_k(random_state.random_sample(X_candidates.shape[0]), n_instances)


class UncertaintyQuery(QueryStrategy):
    """Uncertainty sampling: query the points the classifier is least sure about.

    The utility of a candidate ``x`` is computed from ``p = predict_proba(x)``
    (see :func:`uncertainty_scores`): entropy ``-sum_c p_c log p_c`` (Shannon),
    margin ``-(p_(1) - p_(2))`` (Scheffer et al., IDA 2001) or least confidence
    ``1 - max_c p_c`` (Lewis & Gale, SIGIR 1994); the ``k`` highest are queried
    at once (top-k, no batch diversity). Works with any fitted classifier that
    has ``predict_proba``; no labelled data is needed.

    Ties are broken by position in the pool (the earlier row first), so the
    selection is deterministic; with continuous probabilities exact ties are
    rare.

    Parameters
    ----------
    measure : {"entropy", "margin", "least_confidence"}, default="entropy"
    """

    requires_network = False
    requires_labeled = False
    _parameter_constraints = {"measure": [StrOptions(set(_MEASURES))]}

    def __init__(self, measure="entropy"):
        self.measure = measure

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        return top_k(uncertainty_scores(clf.predict_proba(X_candidates), self.measure), n_instances)
