"""Every strategy as a drop-in: modAL, Pipelines, scikit-activeml-style loops, GridSearchCV, pandas, bad input."""

import importlib

import numpy as np
import pandas as pd
import pytest
from modAL.disagreement import vote_entropy, vote_entropy_sampling
from modAL.models import ActiveLearner, Committee
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.loop import ActiveLearningClassifier, aubc_scorer
from sklearn_ntkal.strategies.baselines import RandomQuery, UncertaintyQuery
from sklearn_ntkal.strategies.diversity import BADGEQuery, CoresetQuery

N_LABELED = 40
N_POOL = 120


def _strategy(module, name, **params):
    """A strategy from another module of the package; the test is skipped only if that module is absent."""
    try:
        return getattr(importlib.import_module(module), name)(**params)
    except ModuleNotFoundError:
        pytest.skip(f"{module} is not available")


def ntk_lookahead(**params):
    return _strategy("sklearn_ntkal.strategies.lookahead", "NTKLookAheadQuery", **{"n_candidates": 40, **params})


def dynamical(**params):
    return _strategy("sklearn_ntkal.strategies.dynamical", "DynamicALQuery", **params)


STRATEGIES = {
    "random": lambda: RandomQuery(random_state=0),
    "entropy": lambda: UncertaintyQuery("entropy"),
    "margin": lambda: UncertaintyQuery("margin"),
    "least_confidence": lambda: UncertaintyQuery("least_confidence"),
    "badge": lambda: BADGEQuery(random_state=0),
    "coreset": CoresetQuery,
    "ntk_lookahead": lambda: ntk_lookahead(random_state=0),
    "dynamical_topk": lambda: dynamical(selection="topk"),
    "dynamical_greedy": lambda: dynamical(selection="greedy", parameters="last_layer"),
}
MODAL_STRATEGIES = ["random", "entropy", "badge", "coreset", "ntk_lookahead", "dynamical_topk"]
NETWORK_STRATEGIES = ["badge", "coreset", "ntk_lookahead", "dynamical_topk"]
LABEL_STRATEGIES = ["coreset", "ntk_lookahead", "dynamical_topk"]


def _net(**kwargs):
    return JaxNetClassifier(network_kwargs={"hidden_layer_sizes": (16,)}, epochs=5, learning_rate=1e-2,
                            random_state=0, **kwargs)


@pytest.fixture(scope="module")
def data(digits):
    """Labelled set with every class, a pool, as numpy arrays."""
    X_train, _, y_train, _ = digits
    return (X_train[:N_LABELED], y_train[:N_LABELED],
            X_train[N_LABELED:N_LABELED + N_POOL], y_train[N_LABELED:N_LABELED + N_POOL])


@pytest.fixture(scope="module")
def fitted(data):
    X_lab, y_lab, _, _ = data
    return _net().fit(X_lab, y_lab)


class _Learner:
    """What a strategy reads from a modAL learner, holding any array type."""

    def __init__(self, estimator, X_training, y_training):
        self.estimator, self.X_training, self.y_training = estimator, X_training, y_training


# ------------------------------------------------------------------ modAL
@pytest.mark.parametrize("name", MODAL_STRATEGIES)
def test_modal_active_learner_rounds(data, name):
    """query/teach rounds with a JAX network; the strategy is called once per query."""
    X_lab, y_lab, X_pool, y_pool = data
    strategy = STRATEGIES[name]()
    calls = []

    def counted(learner, X, n_instances=1):
        calls.append(len(X))
        return strategy(learner, X, n_instances=n_instances)

    learner = ActiveLearner(estimator=_net(), query_strategy=counted, X_training=X_lab, y_training=y_lab)
    pool = np.arange(N_POOL)
    for round_ in range(1, 3):
        idx, X_query = learner.query(X_pool[pool], n_instances=3)
        assert len(calls) == round_
        assert np.unique(idx).size == 3
        np.testing.assert_array_equal(X_query, X_pool[pool[idx]])
        learner.teach(X_pool[pool[idx]], y_pool[pool[idx]])
        pool = np.delete(pool, idx)
    assert learner.X_training.shape[0] == N_LABELED + 6
    assert len(learner.query(X_pool[pool], n_instances=2, return_metrics=True)[2]) == 2
    assert len(calls) == 3


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_skactiveml_style_loop(data, fitted, name):
    """NaN marks unlabelled rows, indices come back into X, revealed labels leave the candidate set."""
    X_lab, y_lab, X_pool, y_pool = data
    strategy = STRATEGIES[name]()
    X = np.concatenate([X_lab, X_pool])
    y_true = np.concatenate([y_lab, y_pool])
    y = np.concatenate([y_lab.astype(float), np.full(N_POOL, np.nan)])
    for _ in range(2):
        labelled = ~np.isnan(y)
        query_idx, utilities = strategy.query(X, y, fitted, batch_size=4, return_utilities=True)
        assert query_idx.shape == (4,) and np.unique(query_idx).size == 4 and not labelled[query_idx].any()
        assert utilities.shape == (4, len(X)) and np.all(np.isnan(utilities[:, labelled]))
        assert np.all(np.isfinite(utilities[np.arange(4), query_idx]))
        y[query_idx] = y_true[query_idx]
    candidates = np.flatnonzero(np.isnan(y))[::3]
    assert set(strategy.query(X, y, fitted, batch_size=3, candidates=candidates)) <= set(candidates)


@pytest.mark.parametrize("name", ["ntk_lookahead", "dynamical_topk"])
def test_modal_on_transformed_pipeline(data, name):
    """Features go through the scaler before the network: the query equals one on pre-transformed inputs."""
    X_lab, y_lab, X_pool, y_pool = data
    strategy = STRATEGIES[name]()
    pipe = make_pipeline(StandardScaler(), _net(standardize=False))
    learner = ActiveLearner(estimator=pipe, query_strategy=strategy, X_training=X_lab, y_training=y_lab,
                            on_transformed=True)
    idx, _ = learner.query(X_pool, n_instances=4)
    scaler, net = learner.estimator[0], learner.estimator[-1]
    assert not np.allclose(scaler.transform(X_pool), X_pool)
    direct, _ = strategy(_Learner(net, scaler.transform(X_lab), y_lab), scaler.transform(X_pool), n_instances=4)
    np.testing.assert_array_equal(idx, direct)
    learner.teach(X_pool[idx], y_pool[idx])
    pool = np.delete(np.arange(N_POOL), idx)
    assert np.unique(learner.query(X_pool[pool], n_instances=4)[0]).size == 4


def test_modal_committee_of_jax_networks(data):
    X_lab, y_lab, X_pool, y_pool = data
    committee = Committee(
        learner_list=[ActiveLearner(_net(), X_training=X_lab, y_training=y_lab),
                      ActiveLearner(_net().set_params(random_state=1, network_kwargs={"hidden_layer_sizes": (24,)}),
                                    X_training=X_lab, y_training=y_lab)],
        query_strategy=vote_entropy_sampling)
    idx, _ = committee.query(X_pool, n_instances=3)
    disagreement = vote_entropy(committee, X_pool)
    assert np.all(disagreement[idx].min() >= np.delete(disagreement, idx) - 1e-12)
    committee.teach(X_pool[idx], y_pool[idx])
    for learner in committee:
        assert learner.X_training.shape[0] == N_LABELED + 3
    pool = np.delete(np.arange(N_POOL), idx)
    assert np.unique(committee.query(X_pool[pool], n_instances=3)[0]).size == 3
    assert committee.predict(X_pool).shape == (N_POOL,)


# ------------------------------------------------------------ scikit-learn
def test_grid_search_over_strategies_in_processes(data):
    """Strategies and their parameters as a grid, scored by AUBC per fold, in two joblib worker processes."""
    X_lab, y_lab, X_pool, y_pool = data
    X, y = np.concatenate([X_lab, X_pool]), np.concatenate([y_lab, y_pool])
    grid = GridSearchCV(
        ActiveLearningClassifier(_net(), initial_size=20, n_rounds=2, batch_size=5, random_state=0),
        [{"query_strategy": [ntk_lookahead(random_state=0, n_candidates=30)]},
         {"query_strategy": [dynamical()], "query_strategy__selection": ["topk"]},
         {"query_strategy": [RandomQuery(random_state=0)]}],
        scoring=aubc_scorer, cv=2, n_jobs=2, refit=False)
    grid.fit(X, y)
    scores = grid.cv_results_["mean_test_score"]
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and np.all((0 <= scores) & (scores <= 1))
    assert [type(p["query_strategy"]).__name__ for p in grid.cv_results_["params"]] == [
        "NTKLookAheadQuery", "DynamicALQuery", "RandomQuery"]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_clone_strategies(name):
    strategy = STRATEGIES[name]()
    copy = clone(strategy)
    assert type(copy) is type(strategy) and copy is not strategy
    assert copy.get_params() == strategy.get_params()


def test_clone_estimators():
    for estimator in (_net(), make_pipeline(StandardScaler(), _net()),
                      ActiveLearningClassifier(make_pipeline(StandardScaler(), _net()), BADGEQuery(random_state=3),
                                               initial_size=12)):
        copy = clone(estimator)
        assert repr(copy) == repr(estimator)
        for key, value in estimator.get_params(deep=True).items():
            if hasattr(value, "get_params"):
                assert copy.get_params(deep=True)[key] is not value


# ----------------------------------------------------------------- pandas
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_dataframes_in_indices_out(data, fitted, name):
    X_lab, y_lab, X_pool, _ = data
    strategy = STRATEGIES[name]()
    columns = [f"pixel_{i}" for i in range(X_pool.shape[1])]
    frame_lab, frame_pool = pd.DataFrame(X_lab, columns=columns), pd.DataFrame(X_pool, columns=columns)
    idx, scores = strategy(_Learner(fitted, frame_lab, pd.Series(y_lab)), frame_pool, n_instances=3)
    expected, expected_scores = strategy(_Learner(fitted, X_lab, y_lab), X_pool, n_instances=3)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(scores, expected_scores)
    assert np.issubdtype(idx.dtype, np.integer)
    frame = pd.concat([frame_lab, frame_pool], ignore_index=True)
    y = pd.Series(np.concatenate([y_lab, np.full(N_POOL, np.nan)]))
    assert set(strategy.query(frame, y, fitted, batch_size=3)) <= set(range(N_LABELED, N_LABELED + N_POOL))


def test_modal_query_with_dataframe_pool(data, fitted):
    _, _, X_pool, _ = data
    learner = ActiveLearner(estimator=fitted, query_strategy=BADGEQuery(random_state=0))
    frame = pd.DataFrame(X_pool)
    idx, rows = learner.query(frame, n_instances=3)
    assert isinstance(rows, pd.DataFrame)
    np.testing.assert_array_equal(rows.to_numpy(), X_pool[idx])


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_bad_pool(data, fitted, name):
    X_lab, y_lab, X_pool, _ = data
    strategy, learner = STRATEGIES[name](), _Learner(fitted, X_lab, y_lab)
    with pytest.raises(ValueError, match="empty"):
        strategy(learner, X_pool[:0])
    with pytest.raises(ValueError, match="larger than the pool"):
        strategy(learner, X_pool[:5], n_instances=6)
    with pytest.raises(ValueError, match="features"):
        strategy(learner, X_pool[:, :-1])


@pytest.mark.parametrize("name", LABEL_STRATEGIES)
def test_bad_labelled_set(data, fitted, name):
    X_lab, y_lab, X_pool, _ = data
    strategy = STRATEGIES[name]()
    with pytest.raises(ValueError, match="63 features but the estimator was fitted with 64"):
        strategy(_Learner(fitted, X_lab[:, :-1], y_lab), X_pool)
    with pytest.raises(ValueError, match=r"labels \[.*99.*\] are unknown"):
        strategy(_Learner(fitted, X_lab, np.where(np.arange(N_LABELED) == 0, 99, y_lab)), X_pool)


@pytest.mark.parametrize("name", NETWORK_STRATEGIES)
def test_not_a_jax_network(data, name):
    X_lab, y_lab, X_pool, _ = data
    strategy = STRATEGIES[name]()
    for estimator in (LogisticRegression(max_iter=200), Pipeline([("lr", LogisticRegression(max_iter=200))])):
        learner = ActiveLearner(estimator=estimator, X_training=X_lab, y_training=y_lab)
        with pytest.raises(TypeError, match=f"{type(strategy).__name__} needs a JAX network"):
            strategy(learner, X_pool)
