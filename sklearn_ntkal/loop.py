"""Simulated pool-based active learning: the loop, its learning curve, and a meta-estimator with an AUBC scorer."""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import time
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .estimators import JaxNetClassifier
from .strategies.baselines import RandomQuery
from .validation import (
    ParameterValidationMixin,
    check_estimator_input,
    check_indices,
    check_labels,
    check_parameters,
    check_samples,
    check_unlabeled,
)

#: Parameters of :func:`run_active_learning` other than its data, as scikit-learn constraints.
_LOOP_CONSTRAINTS = {
    "estimator": [HasMethods(["fit", "predict"])],
    "strategy": [HasMethods(["query"])],
    "n_rounds": [Interval(Integral, 0, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "progress": ["boolean"],
    "warm_start": ["boolean"],
    "keep_snapshots": ["boolean"],
    "callback": [callable, None],
    "candidates": [callable, None],
    "oracle": ["boolean"],
}


@dataclasses.dataclass
class LoopHistory:
    """What a run of :func:`run_active_learning` recorded, one entry per round (round 0 = initial set).

    Attributes
    ----------
    n_labeled : list of int
        Labelled-set size the estimator of each round was trained on.
    scores : list of float
        Accuracy on the evaluation set after that round's training ended.
    query_times, fit_times : list of float
        Seconds spent in the strategy's query and in training (``query_times[0]`` is 0).
    queried_indices : list of ndarray
        Rows of ``X_pool`` queried in each round, in selection order (empty for round 0).
    labeled_indices : ndarray
        Rows of ``X_pool`` labelled at the end, in the order they were labelled.
    estimators : list of estimators
        The fitted estimator of every round (empty unless ``keep_snapshots``).
    """

    n_labeled: list = dataclasses.field(default_factory=list)
    scores: list = dataclasses.field(default_factory=list)
    query_times: list = dataclasses.field(default_factory=list)
    fit_times: list = dataclasses.field(default_factory=list)
    queried_indices: list = dataclasses.field(default_factory=list)
    labeled_indices: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, dtype=int))
    estimators: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class SharedCandidates:
    """The candidates of a round: the ``size`` unlabelled pool rows of highest priority.

    Every pool row gets a random priority drawn from ``(seed, round_index)``
    only, so every strategy run with the same seed sees the same priorities
    in a round: strategies that labelled the same rows get the same
    candidates, and the candidates of two strategies differ only by rows one
    of them has already labelled. The NTK look-ahead paper scores a random
    4000 of the pool per round for batches of 1000 (``size = 4 * batch``).

    Parameters
    ----------
    size : int
        Candidates per round; all unlabelled rows when fewer remain.
    seed : int
        Non-negative seed of the priorities.
    """

    size: int
    seed: int

    def __post_init__(self):
        if not isinstance(self.size, Integral) or self.size < 1:
            raise ValueError(f"size must be a positive integer, got {self.size!r}")

    def __call__(self, round_index, labeled_mask):
        """Sorted rows of the pool the strategy chooses from in round ``round_index``.

        Parameters
        ----------
        round_index : int
        labeled_mask : ndarray of bool of shape (n_pool,)
            True at the rows labelled so far.

        Returns
        -------
        ndarray of int
        """
        priority = np.random.default_rng([self.seed, round_index]).random(labeled_mask.shape[0])
        unlabeled = np.flatnonzero(~labeled_mask)
        if unlabeled.size <= self.size:
            return unlabeled
        return np.sort(unlabeled[np.argpartition(-priority[unlabeled], self.size - 1)[:self.size]])


def accepts_oracle(strategy):
    """Whether ``strategy.query`` takes an ``oracle`` keyword (a callable mapping rows of ``X`` to labels)."""
    return "oracle" in inspect.signature(strategy.query).parameters


def run_active_learning(estimator, strategy, X_pool, y_pool, X_eval, y_eval, initial_indices, n_rounds,
                        batch_size, *, progress=False, warm_start=False, keep_snapshots=True, callback=None,
                        candidates=None, oracle=False):
    """Simulate pool-based active learning with ``y_pool`` as the oracle.

    Round 0 trains on ``initial_indices``; each of the ``n_rounds`` rounds then
    asks ``strategy.query(X_pool, y_masked, estimator, batch_size=...)`` for
    ``batch_size`` rows (``y_masked`` is ``y_pool`` with NaN at every
    unlabelled row, the scikit-activeml convention, so every strategy of this
    package works), reveals their labels and retrains. Accuracy is measured
    after each training has ended, never at a best epoch; query time is
    recorded apart from training time. The loop stops early when the pool is
    exhausted (the last batch may be smaller).

    Parameters
    ----------
    estimator : classifier
        Template; it is never fitted itself. Each round trains ``clone(estimator)``
        from scratch on the labelled rows (so with an int ``random_state`` every
        round starts from the same initialisation), or with ``warm_start=True``
        continues training a copy of the previous round's estimator
        (``set_params(warm_start=True)``; a :class:`~sklearn_ntkal.JaxNetClassifier`
        then starts a fresh optimiser state each round; the estimator must have that
        parameter, and for :class:`~sklearn_ntkal.JaxNetClassifier` the initial
        set must then contain every class).
    strategy : QueryStrategy or object with ``query(X, y, clf, batch_size=...)``
    X_pool : array-like of shape (n_pool, ...)
    y_pool : array-like of shape (n_pool,)
    X_eval, y_eval : array-like or None
        Held-out evaluation data; ``None`` scores each round on the rows of
        the pool still unlabelled (the round's accuracy on what it has not seen).
    initial_indices : array-like of int
        Rows of ``X_pool`` labelled at the start.
    n_rounds : int
    batch_size : int
    progress : bool, default=False
        Show a tqdm bar over rounds.
    warm_start : bool, default=False
    keep_snapshots : bool, default=True
        Keep every round's fitted estimator in ``history.estimators``.
    callback : callable or None
        ``callback(round_index, estimator, history)`` after every round (round 0 included).
    candidates : callable or None
        ``candidates(round_index, labeled_mask)`` returns the unlabelled rows
        the round's strategy chooses from, passed as ``query(...,
        candidates=rows)`` (e.g. :class:`SharedCandidates`); ``None``: every
        unlabelled row.
    oracle : bool, default=False
        Give the strategy the pool's true labels as
        ``query(..., oracle=lambda rows: y_pool[rows])``, for strategies that
        condition on the label of each pick (sequential look-ahead with true
        labels); the strategy's ``query`` must take an ``oracle`` keyword.

    Returns
    -------
    LoopHistory

    Raises
    ------
    ValueError or TypeError
        Before any training, for a parameter out of range, a pool or
        evaluation set that is not a finite float32 array (the pool is
        passed on as float32), labels of another length or with NaN, or
        ``initial_indices`` that are not distinct integer rows of the pool
        (:mod:`sklearn_ntkal.validation`).
    """
    check_parameters(_LOOP_CONSTRAINTS, {
        "estimator": estimator, "strategy": strategy, "n_rounds": n_rounds, "batch_size": batch_size,
        "progress": progress, "warm_start": warm_start, "keep_snapshots": keep_snapshots, "callback": callback,
        "candidates": candidates, "oracle": oracle}, "run_active_learning")
    X_pool = check_samples(X_pool, "X_pool")
    n_pool = X_pool.shape[0]
    y_pool = check_labels(y_pool, "y_pool", n_pool, "X_pool")
    labeled = check_indices(initial_indices, "initial_indices", n_pool, "X_pool")
    if X_eval is not None:
        X_eval = check_samples(X_eval, "X_eval", X_pool.shape[1:])
        y_eval = check_labels(y_eval, "y_eval", X_eval.shape[0], "X_eval")
    if warm_start and "warm_start" not in estimator.get_params():
        raise ValueError(f"warm_start=True needs an estimator with a warm_start parameter; "
                         f"{type(estimator).__name__} has none")
    if oracle and not accepts_oracle(strategy):
        raise ValueError(f"oracle=True needs a strategy whose query takes an oracle; {strategy!r} does not")
    numeric = np.issubdtype(y_pool.dtype, np.number)

    history = LoopHistory()
    fitted = None
    queried = np.empty(0, dtype=int)
    for round_index in tqdm(range(n_rounds + 1), disable=not progress, desc="active learning rounds"):
        if round_index > 0:
            unlabeled = n_pool - labeled.size
            if unlabeled == 0:
                break
            y_masked = np.full(n_pool, np.nan, dtype=np.float64 if numeric else object)
            y_masked[labeled] = y_pool[labeled]
            keywords = _query_keywords(round_index, labeled, y_pool, candidates, oracle)
            size = min(batch_size, keywords["candidates"].size if "candidates" in keywords else unlabeled)
            start = time.perf_counter()
            queried = np.asarray(strategy.query(X_pool, y_masked, fitted, batch_size=size, **keywords), dtype=int)
            history.query_times.append(time.perf_counter() - start)
            if np.unique(queried).size != queried.size or np.isin(queried, labeled).any():
                raise ValueError(f"{strategy!r} returned repeated or already labelled rows: {queried.tolist()}")
            if "candidates" in keywords and not np.isin(queried, keywords["candidates"]).all():
                raise ValueError(f"{strategy!r} returned rows outside the round's candidates: {queried.tolist()}")
            labeled = np.concatenate([labeled, queried])
        else:
            history.query_times.append(0.0)
        start = time.perf_counter()
        fitted = round_estimator(estimator, fitted, warm_start).fit(X_pool[labeled], y_pool[labeled])
        history.fit_times.append(time.perf_counter() - start)
        history.queried_indices.append(queried)
        history.n_labeled.append(int(labeled.size))
        if X_eval is None:
            rest = np.setdiff1d(np.arange(n_pool), labeled)
            history.scores.append(accuracy_score(y_pool[rest], fitted.predict(X_pool[rest])) if rest.size else np.nan)
        else:
            history.scores.append(accuracy_score(y_eval, fitted.predict(X_eval)))
        history.labeled_indices = labeled
        if keep_snapshots:
            history.estimators.append(fitted)
        if callback is not None:
            callback(round_index, fitted, history)
    return history


def _query_keywords(round_index, labeled, y_pool, candidates, oracle):
    """The round's ``candidates`` and ``oracle`` keywords of ``strategy.query``, those asked for only."""
    keywords = {}
    if candidates is not None:
        labeled_mask = np.zeros(y_pool.shape[0], dtype=bool)
        labeled_mask[labeled] = True
        rows = check_indices(candidates(round_index, labeled_mask), "candidates", y_pool.shape[0], "X_pool")
        keywords["candidates"] = check_unlabeled(rows, labeled_mask, "candidates")
    if oracle:
        keywords["oracle"] = functools.partial(_reveal, y_pool)
    return keywords


def _reveal(y_pool, rows):
    """The oracle: labels of ``rows`` of the pool."""
    return y_pool[np.asarray(rows, dtype=int)]


def round_estimator(template, previous, warm_start):
    """The estimator to fit this round: a fresh clone of ``template``, or a warm-started copy of ``previous``.

    Parameters
    ----------
    template : estimator
    previous : fitted estimator or None
        Last round's estimator; ``None`` at round 0.
    warm_start : bool

    Returns
    -------
    estimator
    """
    if warm_start and previous is not None:
        return copy.deepcopy(previous).set_params(warm_start=True)
    return clone(template)


def area_under_budget_curve(n_labeled, scores):
    """Area under the budget (learning) curve, normalised to [0, 1].

    ``AUBC = (1 / (n_K - n_0)) * sum_k (n_{k+1} - n_k) (s_k + s_{k+1}) / 2``,
    the trapezoid rule over accuracy ``s`` against labels used ``n``, divided by
    the budget range so that scores in [0, 1] give an AUBC in [0, 1] (the
    mean accuracy over the budget; Zhan et al., "A comparative survey of deep
    active learning", 2022). A curve of one point returns that point's score.

    Parameters
    ----------
    n_labeled : array-like of shape (K,)
        Strictly increasing labelled-set sizes.
    scores : array-like of shape (K,)

    Returns
    -------
    float
    """
    n = np.asarray(n_labeled, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if n.shape != s.shape or n.size == 0:
        raise ValueError(f"n_labeled and scores must be non-empty and of equal length, got {n.size} and {s.size}")
    if n.size == 1:
        return float(s[0])
    if np.any(np.diff(n) <= 0):
        raise ValueError("n_labeled must be strictly increasing")
    return float(np.sum(np.diff(n) * (s[1:] + s[:-1]) / 2.0) / (n[-1] - n[0]))


def aubc_scorer(estimator, X, y):
    """AUBC of a fitted :class:`ActiveLearningClassifier` on ``(X, y)``: ``GridSearchCV(..., scoring=aubc_scorer)``.

    Every per-round snapshot is scored by accuracy on ``(X, y)`` (in a grid
    search: the fold's test split) and :func:`area_under_budget_curve` of
    those accuracies against the labels each snapshot was trained on is
    returned, so strategies are compared on the whole learning curve rather
    than on the final model only.
    """
    check_is_fitted(estimator, "snapshots_")
    scores = [accuracy_score(y, snapshot.predict(X)) for snapshot in estimator.snapshots_]
    return area_under_budget_curve(estimator.learning_curve_[0], scores)


class ActiveLearningClassifier(ParameterValidationMixin, ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """A classifier trained by simulated pool-based active learning, for grid-searching strategies.

    ``fit(X, y)`` treats ``y`` as the oracle: it sets aside a stratified
    ``eval_fraction`` of ``(X, y)`` as a held-out evaluation set for the
    learning curve, draws an initial labelled set of ``initial_size`` rows from
    the rest (the pool), then runs ``n_rounds`` rounds of ``query_strategy``
    querying ``batch_size`` rows each, retraining ``estimator`` from scratch
    every round (:func:`run_active_learning`). Predictions come from the last
    round's estimator. Scored with :func:`aubc_scorer`, a grid search ranks
    strategies and their parameters by the area under their learning curves.

    Parameters
    ----------
    estimator : classifier or None
        Trained each round (cloned); ``None`` means ``JaxNetClassifier()``.
    query_strategy : QueryStrategy or None
        ``None`` means ``RandomQuery`` seeded from ``random_state``.
    initial_size : int, default=20
        Size of the initial labelled set; every class is in it once, the rest
        is drawn at random. Must be at least the number of classes.
    n_rounds : int, default=5
    batch_size : int, default=10
    eval_fraction : float or None, default=0.2
        Fraction of the training data held out (stratified) to measure the
        learning curve, never queried nor trained on. ``None`` uses all of it as
        the pool and measures each round's accuracy on the rows still
        unlabelled.
    random_state : int, RandomState or None
        Seeds the evaluation split and the initial set.

    Attributes
    ----------
    classes_ : ndarray
    estimator_ : classifier
        The estimator of the last round.
    learning_curve_ : tuple of ndarray
        ``(n_labeled, accuracy)`` per round, round 0 being the initial set.
    queried_indices_ : list of ndarray
        Rows of ``X`` (as passed to ``fit``) queried in each round; the first entry holds the initial set.
    snapshots_ : list of classifiers
        The fitted estimator of every round.
    history_ : LoopHistory
        Everything the loop recorded (times included), indices into ``X``.
    n_features_in_ : int
    sample_shape_in_ : tuple
        Per-sample shape of ``X`` at ``fit``.
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "query_strategy": [HasMethods(["query"]), None],
        "initial_size": [Interval(Integral, 1, None, closed="left")],
        "n_rounds": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "eval_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator=None, query_strategy=None, initial_size=20, n_rounds=5, batch_size=10,
                 eval_fraction=0.2, random_state=None):
        self.estimator = estimator
        self.query_strategy = query_strategy
        self.initial_size = initial_size
        self.n_rounds = n_rounds
        self.batch_size = batch_size
        self.eval_fraction = eval_fraction
        self.random_state = random_state

    def fit(self, X, y):
        """Run the simulated active-learning loop on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            The oracle's labels.

        Returns
        -------
        self
        """
        self._validate_params()
        X = check_estimator_input(self, X, reset=True)
        y = check_labels(y, "y", X.shape[0], "X")
        self.classes_ = unique_labels(y)
        rng = check_random_state(self.random_state)
        rows = np.arange(X.shape[0])
        if self.eval_fraction is None:
            pool, held_out = rows, None
        else:
            pool, held_out = train_test_split(rows, test_size=self.eval_fraction, stratify=y,
                                              random_state=rng.randint(2**31 - 1))
        initial = initial_positions(y[pool], self.initial_size, rng)
        estimator = JaxNetClassifier() if self.estimator is None else self.estimator
        strategy = (RandomQuery(random_state=rng.randint(2**31 - 1)) if self.query_strategy is None
                    else clone(self.query_strategy))
        history = run_active_learning(
            estimator, strategy, X[pool], y[pool],
            None if held_out is None else X[held_out], None if held_out is None else y[held_out],
            initial, self.n_rounds, self.batch_size)
        history.queried_indices = [pool[initial]] + [pool[q] for q in history.queried_indices[1:]]
        history.labeled_indices = pool[history.labeled_indices]
        self.history_ = history
        self.learning_curve_ = (np.array(history.n_labeled), np.array(history.scores))
        self.queried_indices_ = history.queried_indices
        self.snapshots_ = history.estimators
        self.estimator_ = history.estimators[-1]
        return self

    def predict(self, X):
        """Labels predicted by the last round's estimator."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(check_estimator_input(self, X, reset=False))

    def predict_proba(self, X):
        """Class probabilities from the last round's estimator."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(check_estimator_input(self, X, reset=False))


def initial_positions(y, size, rng):
    """``size`` distinct positions of ``y`` holding every class once, the rest drawn uniformly at random."""
    classes = np.unique(y)
    if not isinstance(size, Integral) or not classes.size <= size <= y.shape[0]:
        raise ValueError(f"initial_size must be an integer between the number of classes ({classes.size}) and "
                         f"the pool size ({y.shape[0]}), got {size!r}")
    one_each = np.array([rng.choice(np.flatnonzero(y == c)) for c in classes])
    rest = np.setdiff1d(np.arange(y.shape[0]), one_each)
    return np.concatenate([one_each, rng.choice(rest, size - classes.size, replace=False)])
