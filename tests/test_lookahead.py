"""Tests of `NTKLookAheadQuery` (against brute-force direct solves) and `RetrainLookAheadQuery`."""

import types
from unittest import mock

import jax
import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from test_linearized import reference_kernel, reference_outputs

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.estimators.linearized import LinearizedClassifier, network_outputs
from sklearn_ntkal.estimators.training import make_optimizer
from sklearn_ntkal.strategies.lookahead import NTKLookAheadQuery, rank
from sklearn_ntkal.strategies.retrain import RetrainLookAheadQuery, retrained_outputs

OBJECTIVES = ("mlmoc", "output_change", "emoc", "eer")


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class BruteForce:
    """Look-ahead scores by solving the kernel regression again for every (candidate, label)."""

    def __init__(self, clf, X_L, y_L, X_U, kernel="pntk", space="logits", ridge=1e-5):
        self.clf, self.n, self.m, self.space = clf, len(X_L), len(X_U), space
        self.C = len(clf.classes_)
        X = np.concatenate([X_L, X_U])
        self.K = reference_kernel(clf, X, X, kernel, space)
        self.F = reference_outputs(clf, X, space)
        self.logits = network_outputs(clf, X_U, float64=True)
        rows = self.n * self.C
        self.ridge = ridge * np.trace(self.K[:rows, :rows]) / rows
        self.labels = list(np.searchsorted(clf.classes_, y_L))
        self.samples = list(range(self.n))

    def rows(self, samples):
        return (np.asarray(samples)[:, None] * self.C + np.arange(self.C)).ravel()

    def predict(self, samples, labels):
        """``f~`` on U after kernel regression on ``samples`` with ``labels``."""
        r, u = self.rows(samples), self.rows(np.arange(self.n, self.n + self.m))
        K = self.K[np.ix_(r, r)] + self.ridge * np.eye(r.size)
        residual = (np.eye(self.C)[labels] - self.F[samples]).ravel()
        return self.F[self.n:] + (self.K[np.ix_(u, r)] @ np.linalg.solve(K, residual)).reshape(self.m, self.C)

    def probs(self, values):
        return softmax(values) if self.space == "logits" else values

    def scores(self, objective, baseline="network"):
        base = softmax(self.logits) if baseline == "network" else self.probs(self.predict(self.samples, self.labels))
        primary, secondary = np.empty(self.m), np.empty(self.m)
        for x in range(self.m):
            labels = range(self.C) if objective == "emoc" else [int(self.logits[x].argmax())]
            weights = softmax(self.logits[x]) if objective == "emoc" else np.ones(self.C)
            change = 0.0
            for y in labels:
                after = self.predict(self.samples + [self.n + x], self.labels + [y])
                change += weights[y] * np.linalg.norm(self.probs(after) - base)
            if objective == "mlmoc":
                primary[x] = np.mean(after.argmax(1) != base.argmax(1))
            elif objective == "eer":
                primary[x] = -np.mean(1 - self.probs(after).max(1))
            else:
                primary[x] = change
            secondary[x] = change
        return primary, secondary

    def add(self, x, label):
        self.samples.append(self.n + x)
        self.labels.append(label)


def labelled_problem(X_L, y_L, X_U):
    X = np.concatenate([X_L, X_U])
    y = np.concatenate([y_L.astype(float), np.full(len(X_U), np.nan)])
    return X, y


@pytest.fixture(scope="module")
def data(digits):
    X_train, X_test, y_train, _ = digits
    return X_train[:20], y_train[:20], X_train[20:32]


def test_rank_orders_by_primary_then_secondary_then_tiebreak():
    primary = np.array([1.0, 1.0, 1.0, 0.0, 1.0])
    secondary = np.array([0.1, 0.3, 0.2, 5.0, 0.3])
    np.testing.assert_array_equal(rank(primary, secondary, np.array([0, 1, 2, 3, 4])), [1, 4, 2, 0, 3])
    np.testing.assert_array_equal(rank(primary, secondary, np.array([0, 9, 2, 3, 4])), [4, 1, 2, 0, 3])


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_batch_scores_equal_brute_force(mse_net, data, objective):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    strategy = NTKLookAheadQuery(objective=objective, n_candidates=None, random_state=0)
    chosen, utilities = strategy.query(X, y, mse_net, batch_size=len(X_U), return_utilities=True)
    primary, secondary = BruteForce(mse_net, X_L, y_L, X_U).scores(objective)
    np.testing.assert_allclose(utilities[np.arange(len(X_U)), chosen], primary[chosen - len(X_L)], atol=1e-8)
    np.testing.assert_array_equal(chosen - len(X_L), np.lexsort((-secondary, -primary)))


@pytest.mark.parametrize("kernel,space", [("full", "logits"), ("pntk", "probabilities")])
def test_batch_scores_other_kernels_and_spaces(ce_net, data, kernel, space):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    strategy = NTKLookAheadQuery(kernel=kernel, output_space=space, objective="output_change", n_candidates=None,
                                 baseline="linearized")
    chosen, utilities = strategy.query(X, y, ce_net, batch_size=len(X_U), return_utilities=True)
    primary, _ = BruteForce(ce_net, X_L, y_L, X_U, kernel, space).scores("output_change", baseline="linearized")
    np.testing.assert_allclose(utilities[np.arange(len(X_U)), chosen], primary[chosen - len(X_L)], atol=1e-8)
    np.testing.assert_array_equal(chosen - len(X_L), np.argsort(-primary))


@pytest.mark.parametrize("objective,baseline", [("mlmoc", "network"), ("output_change", "linearized")])
def test_sequential_equals_greedy_refactorising(mse_net, data, objective, baseline):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    strategy = NTKLookAheadQuery(objective=objective, mode="sequential", baseline=baseline, n_candidates=None)
    chosen, utilities = strategy.query(X, y, mse_net, batch_size=4, return_utilities=True)
    brute = BruteForce(mse_net, X_L, y_L, X_U)
    expected, expected_scores, available = [], [], np.ones(len(X_U), dtype=bool)
    for _ in range(4):
        primary, secondary = brute.scores(objective, baseline)
        best = next(i for i in np.lexsort((-secondary, -primary)) if available[i])
        expected.append(best)
        expected_scores.append(primary[best])
        available[best] = False
        brute.add(best, int(brute.logits[best].argmax()))
    np.testing.assert_array_equal(chosen - len(X_L), expected)
    np.testing.assert_allclose(utilities[np.arange(4), chosen], expected_scores, atol=1e-8)


def test_hybrid_rounds_and_batch_limits(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    batch = NTKLookAheadQuery(n_candidates=None, objective="output_change").query(X, y, mse_net, batch_size=4)
    hybrid_one = NTKLookAheadQuery(n_candidates=None, objective="output_change", mode="hybrid",
                                   hybrid_round_size=4).query(X, y, mse_net, batch_size=4)
    sequential = NTKLookAheadQuery(n_candidates=None, objective="output_change", mode="sequential")
    hybrid = NTKLookAheadQuery(n_candidates=None, objective="output_change", mode="hybrid", hybrid_round_size=1)
    np.testing.assert_array_equal(batch, hybrid_one)
    np.testing.assert_array_equal(sequential.query(X, y, mse_net, batch_size=4), hybrid.query(X, y, mse_net, 4))
    two_rounds = NTKLookAheadQuery(n_candidates=None, objective="output_change", mode="hybrid",
                                   hybrid_round_size=2).query(X, y, mse_net, batch_size=4)
    np.testing.assert_array_equal(two_rounds[:2], batch[:2])
    assert len(set(two_rounds)) == 4


def test_oracle_labels_drive_sequential_updates(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    calls = []
    truth = np.concatenate([y_L, np.roll(y_L, 3)[:len(X_U)]])

    def oracle(indices):
        calls.append(np.asarray(indices).copy())
        return truth[indices]

    strategy = NTKLookAheadQuery(objective="output_change", mode="sequential", n_candidates=None)
    chosen = strategy.query(X, y, mse_net, batch_size=3, oracle=oracle)
    np.testing.assert_array_equal(np.concatenate(calls), chosen[:2])
    brute = BruteForce(mse_net, X_L, y_L, X_U)
    available = np.ones(len(X_U), dtype=bool)
    for step in range(3):
        primary, secondary = brute.scores("output_change")
        best = next(i for i in np.lexsort((-secondary, -primary)) if available[i])
        assert best == chosen[step] - len(X_L)
        available[best] = False
        brute.add(best, int(np.searchsorted(mse_net.classes_, truth[best + len(X_L)])))
    assert not hasattr(strategy, "_active_oracle")


def test_ties_are_broken_by_output_change_not_array_order(mse_net, data, digits):
    X_L, y_L, _ = data
    X_U = digits[0][20:60]
    strategy = NTKLookAheadQuery(n_candidates=None, random_state=0)
    k = len(X_U)
    X, y = labelled_problem(X_L, y_L, X_U)
    chosen, utilities = strategy.query(X, y, mse_net, batch_size=k, return_utilities=True)
    scores = utilities[np.arange(k), chosen]
    assert len(np.unique(scores)) < k // 2  # many exact ties in the discrete MLMOC score
    _, secondary = BruteForce(mse_net, X_L, y_L, X_U).scores("mlmoc")
    for value in np.unique(scores):
        tied = chosen[scores == value] - len(X_L)
        assert np.all(np.diff(secondary[tied]) <= 0)  # within a tie: largest output change first
    X_rev, y_rev = labelled_problem(X_L, y_L, X_U[::-1])
    reversed_chosen = strategy.query(X_rev, y_rev, mse_net, batch_size=5)
    np.testing.assert_array_equal(k - 1 - (reversed_chosen - len(X_L)), chosen[:5] - len(X_L))


def test_streaming_chunks_do_not_change_results(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    for objective in ("mlmoc", "emoc"):
        whole = NTKLookAheadQuery(objective=objective, n_candidates=None)
        chunked = NTKLookAheadQuery(objective=objective, n_candidates=None, memory_budget=40_000)
        a, ua = whole.query(X, y, mse_net, batch_size=5, return_utilities=True)
        b, ub = chunked.query(X, y, mse_net, batch_size=5, return_utilities=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(ua, ub, atol=1e-10)


def test_candidate_subset_and_determinism(mse_net, data, digits):
    X_L, y_L, _ = data
    X_pool = digits[0][20:120]
    learner = types.SimpleNamespace(estimator=mse_net, X_training=X_L, y_training=y_L)
    first = NTKLookAheadQuery(n_candidates=30, random_state=3)(learner, X_pool, n_instances=5)
    again = NTKLookAheadQuery(n_candidates=30, random_state=3)(learner, X_pool, n_instances=5)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    picks = {tuple(NTKLookAheadQuery(n_candidates=30, random_state=s)(learner, X_pool, 5)[0]) for s in range(4)}
    assert len(picks) > 1
    assert np.all((first[0] >= 0) & (first[0] < len(X_pool))) and len(set(first[0])) == 5


def test_modal_loop_calls_strategy_once_per_query(digits):
    from modAL.models import ActiveLearner

    X_train, X_test, y_train, y_test = digits
    X_pool, y_pool = X_train[30:230], y_train[30:230]
    net = JaxNetClassifier(loss="mse", epochs=5, network_kwargs={"hidden_layer_sizes": (32,)}, random_state=0)
    strategy = NTKLookAheadQuery(n_candidates=60, random_state=0)
    learner = ActiveLearner(net, strategy, X_training=X_train[:30], y_training=y_train[:30])
    with mock.patch.object(NTKLookAheadQuery, "_select", autospec=True,
                           side_effect=NTKLookAheadQuery._select) as select:
        for round_ in range(3):
            idx, X_query = learner.query(X_pool, n_instances=4)
            assert select.call_count == round_ + 1
            assert len(set(idx)) == 4
            np.testing.assert_array_equal(X_query, X_pool[idx])
            learner.teach(X_pool[idx], y_pool[idx])
            X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
    assert learner.X_training.shape[0] == 42
    assert 0.0 <= learner.score(X_test, y_test) <= 1.0


def test_bad_inputs_raise_clear_errors(mse_net, data):
    X_L, y_L, X_U = data
    strategy = NTKLookAheadQuery(n_candidates=None)
    learner = types.SimpleNamespace(estimator=mse_net, X_training=X_L, y_training=y_L)
    with pytest.raises(ValueError, match="pool is empty"):
        strategy(learner, X_U[:0])
    with pytest.raises(ValueError, match="larger than the pool"):
        strategy(learner, X_U, n_instances=len(X_U) + 1)
    with pytest.raises(ValueError, match="features"):
        strategy(learner, X_U[:, :10])
    nan_pool = X_U.copy()
    nan_pool[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        strategy(learner, nan_pool)
    with pytest.raises(ValueError, match="no labelled data"):
        strategy(types.SimpleNamespace(estimator=mse_net, X_training=None, y_training=None), X_U)
    with pytest.raises(TypeError, match="JAX network"):
        strategy(types.SimpleNamespace(estimator=LogisticRegression().fit(X_L, y_L), X_training=X_L,
                                       y_training=y_L), X_U)
    with pytest.raises(ValueError, match="n_candidates"):
        NTKLookAheadQuery(n_candidates=3)(learner, X_U, n_instances=4)
    for name, value in [("kernel", "ntk"), ("objective", "entropy"), ("mode", "greedy"), ("baseline", "none"),
                        ("output_space", "logit"), ("hybrid_round_size", 0)]:
        with pytest.raises(ValueError, match=name):
            NTKLookAheadQuery(**{name: value})(learner, X_U)
    with pytest.raises(TypeError, match="oracle"):
        strategy(learner, X_U, oracle="labels")
    assert NTKLookAheadQuery(n_candidates=None, ridge=1.0)(learner, X_U, 2)[0].shape == (2,)


def test_clone_and_params():
    strategy = NTKLookAheadQuery(kernel="full", objective="emoc", mode="hybrid", hybrid_round_size=5,
                                 n_candidates=100, random_state=7)
    copy = clone(strategy)
    assert copy.get_params() == strategy.get_params()
    assert copy.set_params(kernel="trace").kernel == "trace"
    assert set(strategy.get_params()) == {"kernel", "objective", "mode", "hybrid_round_size", "baseline",
                                          "n_candidates", "ridge", "float64", "memory_budget", "output_space",
                                          "random_state"}
    retrain = RetrainLookAheadQuery(epochs=3, random_state=1)
    assert clone(retrain).get_params() == retrain.get_params()


def test_lookahead_predicts_retraining_of_a_wide_mse_network(digits):
    X_train, _, y_train, _ = digits
    X_L, y_L, X_U = X_train[:50], y_train[:50], X_train[50:150]
    clf = JaxNetClassifier(loss="mse", network_kwargs={"hidden_layer_sizes": (512,)}, epochs=150, batch_size=50,
                           random_state=0).fit(X_L, y_L)
    post = LinearizedClassifier(clf).fit(X_L, y_L).posterior(X_U)
    candidates = np.arange(6)
    eye = np.eye(len(clf.classes_))
    pseudo = post.outputs[candidates].argmax(1)
    predicted = np.stack([np.outer(post.covariance[:, x], eye[pseudo[i]] - post.mean[x])
                          / (post.covariance[x, x] + post.ridge) for i, x in enumerate(candidates)])
    top = np.linalg.eigvalsh(clf.ntk(X_L, kind="full").transpose(0, 2, 1, 3).reshape(500, 500))[-1]
    schedule = {"epochs": 100, "optimizer": make_optimizer("sgd", float(len(X_L) / top), 0.0), "batch_size": 51,
                "seed": 0}
    targets = eye[y_L].astype(np.float32)
    base = retrained_outputs(clf, X_L, targets, X_U, X_U[:0], targets[:0], **schedule)
    after = retrained_outputs(clf, X_L, targets, X_U, X_U[candidates], eye[pseudo].astype(np.float32), **schedule)
    actual = after - base
    assert pearsonr(predicted.ravel(), actual.ravel())[0] > 0.5
    assert pearsonr(np.linalg.norm(predicted, axis=(1, 2)), np.linalg.norm(actual, axis=(1, 2)))[0] > 0.5


def test_retrain_lookahead_runs_and_leaves_network_unchanged(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    before = [np.array(a) for a in jax.tree_util.tree_leaves(mse_net.params_)]
    for objective, baseline in [("mlmoc", "network"), ("emoc", "retrained")]:
        strategy = RetrainLookAheadQuery(objective=objective, baseline=baseline, epochs=2, n_candidates=5,
                                         random_state=0)
        chosen, utilities = strategy.query(X, y, mse_net, batch_size=3, return_utilities=True)
        again = clone(strategy).query(X, y, mse_net, batch_size=3)
        np.testing.assert_array_equal(chosen, again)
        assert len(set(chosen)) == 3 and np.all(chosen >= len(X_L))
        assert np.all(np.isfinite(utilities[np.arange(3), chosen]))
    for a, b in zip(before, jax.tree_util.tree_leaves(mse_net.params_)):
        np.testing.assert_array_equal(a, np.asarray(b))
    with pytest.raises(ValueError, match="baseline"):
        RetrainLookAheadQuery(baseline="linearized").query(X, y, mse_net)


def test_retrain_and_ntk_draw_the_same_candidates(mse_net, data, digits):
    X_L, y_L, _ = data
    X_pool = digits[0][20:80]
    learner = types.SimpleNamespace(estimator=mse_net, X_training=X_L, y_training=y_L)
    seen = {}
    for cls in (NTKLookAheadQuery, RetrainLookAheadQuery):
        original = cls._select

        def spy(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state, _original=original):
            positions, scores = _original(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state)
            seen[type(self)] = positions
            return positions, scores

        kwargs = {"epochs": 1} if cls is RetrainLookAheadQuery else {}
        with mock.patch.object(cls, "_select", spy):
            cls(n_candidates=6, random_state=5, **kwargs)(learner, X_pool, n_instances=6)
    assert set(seen[NTKLookAheadQuery]) == set(seen[RetrainLookAheadQuery])
