"""`RetrainLookAheadQuery`: look-ahead by actually retraining the network per candidate, the slow reference."""

from __future__ import annotations

from numbers import Integral, Real

import jax
import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..estimators.linearized import network_outputs
from ..estimators.training import make_optimizer, run_epoch
from .base import QueryStrategy
from .lookahead import N_CANDIDATES, OBJECTIVES, check_n_candidates, draw_candidates, lookahead_scores, rank

RETRAIN_BASELINES = ("network", "retrained")


def retrain(clf, X, targets, *, epochs, optimizer, batch_size, seed):
    """Parameters of the network warm-started at ``clf.params_`` and trained ``epochs`` on ``(X, targets)``.

    Uses the classifier's own loss and training step
    (:mod:`sklearn_ntkal.estimators.training`) with a fresh state of
    ``optimizer`` (an optax transformation); the classifier is not modified.
    """
    network, params, state = clf.network_, clf.params_, optimizer.init(clf.params_)
    rng = np.random.RandomState(seed)
    for _ in range(epochs):
        params, state, network, _ = run_epoch(network, params, state, X, targets, batch_size, rng,
                                              loss=clf.loss, optimizer=optimizer)
    return params


def retrained_outputs(clf, X_labeled, targets_labeled, X_eval, X_add, targets_add, *, epochs, optimizer,
                      batch_size, seed):
    """Outputs on ``X_eval`` after warm-started retraining on ``L + {(x, t)}``, for each added pair in turn.

    Parameters
    ----------
    clf : fitted JaxNetClassifier
    X_labeled, targets_labeled : arrays of shape (n, ...), (n, C)
        The labelled set, one-hot targets.
    X_eval : array of shape (m, ...)
    X_add, targets_add : arrays of shape (k, ...), (k, C)
        Points added one at a time (each retraining starts again from
        ``clf.params_``); ``k = 0`` retrains on L alone.
    epochs, optimizer, batch_size, seed
        Schedule of :func:`retrain`.

    Returns
    -------
    ndarray of shape (k, m, C), or (m, C) when ``k = 0``
    """
    def outputs(X, targets):
        params = retrain(clf, X, targets, epochs=epochs, optimizer=optimizer, batch_size=batch_size, seed=seed)
        return network_outputs(clf, X_eval, params)

    if len(X_add) == 0:
        return outputs(X_labeled, targets_labeled)
    return np.stack([outputs(np.concatenate([X_labeled, x[None]]), np.concatenate([targets_labeled, t[None]]))
                     for x, t in zip(X_add, targets_add)])


class RetrainLookAheadQuery(QueryStrategy):
    """Look-ahead by SGD retraining: the reference that :class:`NTKLookAheadQuery` approximates.

    For every candidate ``x`` of U (a random subset of the pool), a copy of
    the network warm-started at its weights is trained for ``epochs`` on
    ``L + {(x, y^(x))}`` with ``y^(x) = argmax_c f(x)`` (for ``"emoc"``: once
    per label ``y``, weighted by ``p(y | x)``), and its outputs on U are
    scored with the same objectives, tie-breaking and candidate draw as
    :class:`~sklearn_ntkal.strategies.lookahead.NTKLookAheadQuery`. This is
    the slow baseline of Mohamadi, Bae & Sutherland (NeurIPS 2022). Batch
    mode only: top-k of one scoring. Costs ``m`` (``m C`` for EMOC)
    retrainings per query.

    Parameters
    ----------
    objective : {"mlmoc", "output_change", "emoc", "eer"}, default="mlmoc"
        See :func:`~sklearn_ntkal.strategies.lookahead.lookahead_scores`.
    baseline : {"network", "retrained"}, default="network"
        ``b(U)``: the network's predictions, or those of the network retrained
        with the same schedule on L alone (isolates the effect of the added
        point from further training on L).
    epochs : int, default=5
    optimizer : str, optax.GradientTransformation or None
        ``None``: the classifier's optimizer.
    learning_rate : float or None
        ``None``: the classifier's learning rate.
    batch_size : int or None
        ``None``: the classifier's batch size.
    n_candidates : int or None, default=4000
    random_state : int, RandomState or None
        Seeds the candidate subset, the shuffling and the final tie-break.
    """

    requires_network = True
    requires_labeled = True
    _parameter_constraints = {
        "objective": [StrOptions(set(OBJECTIVES))],
        "baseline": [StrOptions(set(RETRAIN_BASELINES))],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [str, HasMethods(["init", "update"]), None],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_candidates": N_CANDIDATES,
        "random_state": ["random_state"],
    }

    def __init__(self, objective="mlmoc", baseline="network", epochs=5, optimizer=None, learning_rate=None,
                 batch_size=None, n_candidates=4000, random_state=None):
        self.objective = objective
        self.baseline = baseline
        self.epochs = epochs
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_candidates = n_candidates
        self.random_state = random_state

    def _schedule(self, clf, random_state):
        """Keyword arguments of :func:`retrain` for ``clf``: epochs, optimizer, batch size and a seed."""
        optimizer = make_optimizer(clf.optimizer if self.optimizer is None else self.optimizer,
                                   clf.learning_rate if self.learning_rate is None else self.learning_rate,
                                   clf.weight_decay)
        batch_size = clf.batch_size if self.batch_size is None else self.batch_size
        return {"epochs": self.epochs, "optimizer": optimizer, "batch_size": batch_size,
                "seed": random_state.randint(2**31 - 1)}

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        check_n_candidates(self.n_candidates, n_instances)
        positions = draw_candidates(X_candidates.shape[0], self.n_candidates, random_state)
        tiebreak = random_state.permutation(positions.size)
        schedule = self._schedule(clf, random_state)
        X_eval = X_candidates[positions]
        n_outputs = len(clf.classes_)
        eye = np.eye(n_outputs, dtype=np.float32)
        targets_labeled = eye[np.searchsorted(clf.classes_, y_labeled)]
        logits = network_outputs(clf, X_eval)
        network_probs = np.asarray(jax.nn.softmax(logits, axis=-1))
        if self.baseline == "network":
            base = network_probs
        else:
            base = np.asarray(jax.nn.softmax(retrained_outputs(
                clf, X_labeled, targets_labeled, X_eval, X_eval[:0], eye[:0], **schedule), axis=-1))
        primary, secondary = np.empty(positions.size), np.empty(positions.size)
        for i, x in enumerate(X_eval):
            labels = np.arange(n_outputs) if self.objective == "emoc" else np.argmax(logits[i])[None]
            weights = network_probs[i, labels] if self.objective == "emoc" else np.ones(1)
            after = retrained_outputs(clf, X_labeled, targets_labeled, X_eval, np.repeat(x[None], labels.size, 0),
                                      eye[labels], **schedule)
            p, s = lookahead_scores(self.objective, after[None], base, weights[None], "logits")
            primary[i], secondary[i] = float(p[0]), float(s[0])
        order = rank(primary, secondary, tiebreak)[:n_instances]
        return positions[order], primary[order]
