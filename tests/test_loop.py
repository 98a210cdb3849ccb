"""The simulated active-learning loop, the area under the budget curve and its scorer, ActiveLearningClassifier."""

import jax
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.loop import (
    ActiveLearningClassifier,
    LoopHistory,
    SharedCandidates,
    accepts_oracle,
    area_under_budget_curve,
    aubc_scorer,
    run_active_learning,
)
from sklearn_ntkal.strategies.baselines import RandomQuery, UncertaintyQuery


def _lr():
    return LogisticRegression(max_iter=300)


def _small_net(**kwargs):
    kwargs.setdefault("epochs", 5)
    return JaxNetClassifier(network_kwargs={"hidden_layer_sizes": (16,)}, learning_rate=1e-2, random_state=0,
                            **kwargs)


def _same_model(a, b):
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def split(digits):
    X_train, X_test, y_train, y_test = digits
    return X_train[:400], y_train[:400], X_test[:150], y_test[:150]


# ------------------------------------------------------------------- AUBC
def test_aubc_by_hand_and_against_numpy():
    # (10 * (0.5 + 0.7) / 2 + 20 * (0.7 + 0.9) / 2) / 30 = 22 / 30
    assert area_under_budget_curve([10, 20, 40], [0.5, 0.7, 0.9]) == pytest.approx(22 / 30)
    rng = np.random.RandomState(0)
    n = np.cumsum(rng.randint(1, 20, size=12))
    s = rng.uniform(size=12)
    assert area_under_budget_curve(n, s) == pytest.approx(np.trapezoid(s, n) / (n[-1] - n[0]))
    assert area_under_budget_curve([5, 9, 30], [0.8, 0.8, 0.8]) == pytest.approx(0.8)
    assert area_under_budget_curve([0, 100], [0.0, 1.0]) == pytest.approx(0.5)
    assert area_under_budget_curve([7], [0.6]) == pytest.approx(0.6)


@pytest.mark.parametrize("n, s, match", [
    ([1, 2], [0.5], "equal length"), ([], [], "non-empty"), ([3, 3], [0.1, 0.2], "increasing"),
])
def test_aubc_rejects_bad_curves(n, s, match):
    with pytest.raises(ValueError, match=match):
        area_under_budget_curve(n, s)


# ------------------------------------------------------------- the loop
@pytest.mark.parametrize("strategy", [RandomQuery(random_state=0), UncertaintyQuery("margin")], ids=repr)
def test_loop_records_what_it_did(split, strategy):
    X, y, X_eval, y_eval = split
    initial = np.arange(0, 40, 2)
    calls = []
    history = run_active_learning(_lr(), strategy, X, y, X_eval, y_eval, initial, n_rounds=3, batch_size=15,
                                  callback=lambda r, est, hist: calls.append((r, len(hist.scores))))
    assert isinstance(history, LoopHistory)
    assert history.n_labeled == [20, 35, 50, 65]
    assert calls == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert len(history.query_times) == len(history.fit_times) == len(history.estimators) == 4
    assert history.query_times[0] == 0.0 and all(t > 0 for t in history.query_times[1:])
    queried = np.concatenate(history.queried_indices[1:])
    assert history.queried_indices[0].size == 0 and queried.size == 45
    assert np.unique(np.concatenate([initial, queried])).size == 65
    np.testing.assert_array_equal(history.labeled_indices, np.concatenate([initial, queried]))
    for k, snapshot in enumerate(history.estimators):
        rows = history.labeled_indices[:history.n_labeled[k]]
        _same_model(snapshot, _lr().fit(X[rows], y[rows]))
        assert history.scores[k] == accuracy_score(y_eval, snapshot.predict(X_eval))


def test_loop_queries_what_the_strategy_picks(split):
    """Each round's batch is the margin ranking of the previous round's model over the unlabelled rows."""
    X, y, X_eval, y_eval = split
    initial = np.arange(30)
    history = run_active_learning(_lr(), UncertaintyQuery("margin"), X, y, X_eval, y_eval, initial, 2, 5)
    for k in (1, 2):
        previous = history.estimators[k - 1]
        rest = np.setdiff1d(np.arange(len(X)), history.labeled_indices[:history.n_labeled[k - 1]])
        proba = np.sort(previous.predict_proba(X[rest]), axis=1)
        expected = rest[np.argsort(proba[:, -1] - proba[:, -2], kind="stable")[:5]]
        np.testing.assert_array_equal(history.queried_indices[k], expected)


def test_loop_stops_when_pool_is_exhausted_and_scores_on_rest(split):
    X, y, _, _ = split
    X, y = X[:30], y[:30]
    history = run_active_learning(_lr(), RandomQuery(random_state=1), X, y, None, None, np.arange(20), n_rounds=5,
                                  batch_size=4, keep_snapshots=False)
    assert history.n_labeled == [20, 24, 28, 30]
    assert [q.size for q in history.queried_indices] == [0, 4, 4, 2]
    assert history.estimators == []
    assert np.isnan(history.scores[-1])
    model = _lr().fit(X[history.labeled_indices[:24]], y[history.labeled_indices[:24]])
    rest = np.setdiff1d(np.arange(30), history.labeled_indices[:24])
    assert history.scores[1] == accuracy_score(y[rest], model.predict(X[rest]))


def test_loop_warm_start_continues_training(split):
    X, y, X_eval, y_eval = split
    initial = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(10)])
    history = run_active_learning(_small_net(epochs=3), RandomQuery(random_state=0), X, y, X_eval, y_eval, initial,
                                  n_rounds=2, batch_size=10, warm_start=True)
    assert [len(est.loss_curve_) for est in history.estimators] == [3, 6, 9]
    cold = run_active_learning(_small_net(epochs=3), RandomQuery(random_state=0), X, y, X_eval, y_eval, initial,
                               n_rounds=1, batch_size=10)
    assert [len(est.loss_curve_) for est in cold.estimators] == [3, 3]
    weights = [np.asarray(jax.tree_util.tree_leaves(est.params_)[-2]) for est in history.estimators + cold.estimators]
    # round 0 is the same fit in both runs, and later warm-started rounds left that snapshot untouched
    np.testing.assert_array_equal(weights[0], weights[3])
    assert not np.allclose(weights[1], weights[4])
    with pytest.raises(ValueError, match="warm_start"):
        run_active_learning(KNeighborsClassifier(3), RandomQuery(), X, y, X_eval, y_eval, initial, 1, 5,
                            warm_start=True)


class _Recorder:
    """A strategy recording the keywords of each query and picking the first ``batch_size`` candidates."""

    def __init__(self):
        self.calls = []

    def query(self, X, y, clf, batch_size=1, candidates=None, oracle=None):
        self.calls.append({"candidates": candidates, "labels": None if oracle is None else oracle(candidates)})
        return np.flatnonzero(np.isnan(y))[:batch_size] if candidates is None else candidates[:batch_size]


def test_shared_candidates_are_the_unlabelled_rows_of_highest_seeded_priority():
    mask = np.zeros(50, dtype=bool)
    mask[[3, 7, 20]] = True
    draw = SharedCandidates(size=10, seed=4)
    rows = draw(2, mask)
    priority = np.random.default_rng([4, 2]).random(50)
    unlabeled = np.flatnonzero(~mask)
    np.testing.assert_array_equal(rows, np.sort(unlabeled[np.argsort(-priority[unlabeled])[:10]]))
    np.testing.assert_array_equal(rows, SharedCandidates(size=10, seed=4)(2, mask))
    assert not np.array_equal(rows, draw(3, mask)) and not np.array_equal(rows, SharedCandidates(10, 5)(2, mask))
    # labelling two of the candidates replaces exactly those two by the next rows in priority order
    other = mask.copy()
    other[rows[:2]] = True
    shifted = draw(2, other)
    assert set(rows) - set(shifted) == set(rows[:2]) and len(set(shifted) - set(rows)) == 2
    np.testing.assert_array_equal(draw(0, np.arange(50) > 4), np.arange(5))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        SharedCandidates(size=0, seed=0)


def test_loop_passes_each_rounds_candidates_and_margin_picks_among_them(split):
    X, y, X_eval, y_eval = split
    initial = np.arange(30)
    draw = SharedCandidates(size=12, seed=1)
    recorder = _Recorder()
    history = run_active_learning(_lr(), recorder, X, y, X_eval, y_eval, initial, 2, 5, candidates=draw)
    for k, call in enumerate(recorder.calls, start=1):
        mask = np.zeros(len(X), dtype=bool)
        mask[history.labeled_indices[:history.n_labeled[k - 1]]] = True
        np.testing.assert_array_equal(call["candidates"], draw(k, mask))
        assert call["labels"] is None
    margin = run_active_learning(_lr(), UncertaintyQuery("margin"), X, y, X_eval, y_eval, initial, 1, 5,
                                 candidates=draw)
    mask = np.zeros(len(X), dtype=bool)
    mask[initial] = True
    rows = draw(1, mask)
    proba = np.sort(margin.estimators[0].predict_proba(X[rows]), axis=1)
    np.testing.assert_array_equal(margin.queried_indices[1],
                                  rows[np.argsort(proba[:, -1] - proba[:, -2], kind="stable")[:5]])
    small = run_active_learning(_lr(), RandomQuery(random_state=0), X, y, X_eval, y_eval, initial, 1, 5,
                                candidates=SharedCandidates(size=3, seed=0))
    assert small.n_labeled == [30, 33]
    with pytest.raises(ValueError, match="distinct unlabelled rows"):
        run_active_learning(_lr(), RandomQuery(), X, y, X_eval, y_eval, initial, 1, 5,
                            candidates=lambda round_index, mask: initial[:3])


def test_loop_gives_the_oracle_only_when_asked_and_only_to_strategies_that_take_one(split):
    X, y, X_eval, y_eval = split
    initial = np.arange(30)
    recorder = _Recorder()
    run_active_learning(_lr(), recorder, X, y, X_eval, y_eval, initial, 2, 5, oracle=True,
                        candidates=SharedCandidates(size=20, seed=0))
    for call in recorder.calls:
        np.testing.assert_array_equal(call["labels"], y[call["candidates"]])
    assert accepts_oracle(recorder) and not accepts_oracle(RandomQuery())
    with pytest.raises(ValueError, match="oracle=True needs a strategy whose query takes an oracle"):
        run_active_learning(_lr(), RandomQuery(), X, y, X_eval, y_eval, initial, 1, 5, oracle=True)


def test_loop_string_labels_and_dataframes(split):
    X, y, X_eval, y_eval = split
    names = np.array(list("abcdefghij"))
    frame = pd.DataFrame(X)
    history = run_active_learning(_lr(), UncertaintyQuery(), frame, pd.Series(names[y]), pd.DataFrame(X_eval),
                                  names[y_eval], np.arange(40), n_rounds=2, batch_size=5, progress=True)
    assert history.n_labeled == [40, 45, 50]
    assert set(history.estimators[-1].classes_) <= set(names)


@pytest.mark.parametrize("kwargs, match", [
    ({"initial_indices": []}, "initial_indices"),
    ({"initial_indices": [0, 0, 1]}, "initial_indices"),
    ({"initial_indices": [0, 1000]}, "initial_indices"),
    ({"n_rounds": -1}, "n_rounds"),
    ({"batch_size": 0}, "batch_size"),
])
def test_loop_rejects_bad_arguments(split, kwargs, match):
    X, y, X_eval, y_eval = split
    args = {"initial_indices": np.arange(10), "n_rounds": 1, "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        run_active_learning(_lr(), RandomQuery(), X, y, X_eval, y_eval, **args)


# --------------------------------------------------- the meta-estimator
def test_active_learning_classifier_attributes(split):
    X, y, X_test, y_test = split
    alc = ActiveLearningClassifier(_lr(), UncertaintyQuery(), initial_size=15, n_rounds=3, batch_size=10,
                                   eval_fraction=0.25, random_state=0).fit(X, y)
    n_labeled, accuracy = alc.learning_curve_
    np.testing.assert_array_equal(n_labeled, [15, 25, 35, 45])
    assert len(alc.snapshots_) == 4 and alc.estimator_ is alc.snapshots_[-1]
    np.testing.assert_array_equal(alc.classes_, np.arange(10))
    initial = alc.queried_indices_[0]
    assert set(y[initial]) == set(range(10))
    labelled = np.concatenate(alc.queried_indices_)
    np.testing.assert_array_equal(labelled, alc.history_.labeled_indices)
    assert np.unique(labelled).size == 45
    for k, snapshot in enumerate(alc.snapshots_):
        rows = labelled[:n_labeled[k]]
        _same_model(snapshot, _lr().fit(X[rows], y[rows]))
    # the learning curve is measured on a held-out quarter, never queried
    held_out = np.setdiff1d(np.arange(len(X)), labelled)
    scored = [np.mean(s.predict(X) == y) for s in alc.snapshots_]
    assert len(held_out) >= 100 and not np.allclose(scored, accuracy)
    np.testing.assert_array_equal(alc.predict(X_test), alc.estimator_.predict(X_test))
    np.testing.assert_allclose(alc.predict_proba(X_test), alc.estimator_.predict_proba(X_test))
    assert alc.score(X_test, y_test) == accuracy_score(y_test, alc.predict(X_test))


def test_active_learning_classifier_is_reproducible_and_clonable(split):
    X, y, _, _ = split
    params = dict(estimator=_lr(), query_strategy=RandomQuery(random_state=3), initial_size=12, n_rounds=2,
                  batch_size=6, random_state=5)
    a = ActiveLearningClassifier(**params).fit(X, y)
    b = clone(ActiveLearningClassifier(**params)).fit(pd.DataFrame(X), pd.Series(y))
    for qa, qb in zip(a.queried_indices_, b.queried_indices_):
        np.testing.assert_array_equal(qa, qb)
    np.testing.assert_array_equal(a.learning_curve_[1], b.learning_curve_[1])
    c = ActiveLearningClassifier(**{**params, "random_state": 6}).fit(X, y)
    assert not np.array_equal(a.queried_indices_[0], c.queried_indices_[0])
    assert not hasattr(params["estimator"], "coef_")


def test_active_learning_classifier_scores_on_the_rest_without_eval_fraction(split):
    X, y, _, _ = split
    alc = ActiveLearningClassifier(_lr(), RandomQuery(random_state=0), initial_size=20, n_rounds=1, batch_size=20,
                                   eval_fraction=None, random_state=0).fit(X, y)
    rest = np.setdiff1d(np.arange(len(X)), np.concatenate(alc.queried_indices_))
    assert alc.learning_curve_[1][-1] == accuracy_score(y[rest], alc.estimator_.predict(X[rest]))


def test_active_learning_classifier_defaults_and_errors(split):
    X, y, _, _ = split
    alc = ActiveLearningClassifier(initial_size=10, n_rounds=1, batch_size=5, random_state=0)
    alc.set_params(estimator=_small_net())
    assert alc.fit(X[:200], y[:200]).learning_curve_[0].tolist() == [10, 15]
    with pytest.raises(ValueError, match="initial_size"):
        ActiveLearningClassifier(_lr(), initial_size=5).fit(X, y)


def test_aubc_scorer_matches_snapshots(split):
    X, y, X_test, y_test = split
    alc = ActiveLearningClassifier(_lr(), UncertaintyQuery("least_confidence"), initial_size=20, n_rounds=3,
                                   batch_size=20, random_state=0).fit(X, y)
    accuracy = [np.mean(s.predict(X_test) == y_test) for s in alc.snapshots_]
    n = alc.learning_curve_[0]
    assert aubc_scorer(alc, X_test, y_test) == pytest.approx(np.trapezoid(accuracy, n) / (n[-1] - n[0]))


def test_grid_search_over_strategy_parameters(split):
    X, y, _, _ = split
    grid = GridSearchCV(
        ActiveLearningClassifier(_lr(), RandomQuery(), initial_size=15, n_rounds=2, batch_size=10, random_state=0),
        [{"query_strategy": [UncertaintyQuery()], "query_strategy__measure": ["entropy", "margin"]},
         {"query_strategy": [RandomQuery()], "query_strategy__random_state": [0, 1]}],
        scoring=aubc_scorer, cv=2).fit(X, y)
    scores = grid.cv_results_["mean_test_score"]
    assert scores.shape == (4,) and np.all((0 <= scores) & (scores <= 1))
    best = grid.best_estimator_.query_strategy.get_params()
    assert all(best[key.split("__")[1]] == value for key, value in grid.best_params_.items() if "__" in key)
    assert len(set(np.round(scores, 12))) > 1
    assert isinstance(grid.best_estimator_.estimator_, LogisticRegression)


def test_loop_rejects_a_strategy_that_repeats_or_requeries(split):
    X, y, X_eval, y_eval = split

    class Stubborn:
        def __init__(self, rows):
            self.rows = rows

        def query(self, X, y, clf, batch_size=1):
            return np.array(self.rows)

    for rows in ([0, 50], [50, 50]):
        with pytest.raises(ValueError, match="repeated or already labelled"):
            run_active_learning(_lr(), Stubborn(rows), X, y, X_eval, y_eval, np.arange(20), 1, 2)
