"""Tests of `NTKLookAheadQuery` (against brute-force direct solves) and `RetrainLookAheadQuery`."""

import copy
import types
from unittest import mock

import jax
import numpy as np
import pytest
from scipy import linalg
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from test_linearized import reference_kernel, reference_outputs

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal import kernel_regression as kr
from sklearn_ntkal.estimators.linearized import LinearizedClassifier, network_outputs
from sklearn_ntkal.estimators.training import make_optimizer
from sklearn_ntkal.engine import DEFAULT_MEMORY_BUDGET
from sklearn_ntkal.jax_compat import enable_x64
from sklearn_ntkal.strategies.lookahead import (
    PREDICTIVE_POINTS,
    NTKLookAheadQuery,
    label_probabilities,
    lookahead_memory,
    rank,
)
from sklearn_ntkal.strategies.retrain import RetrainLookAheadQuery, retrained_outputs

PAPER = {"objective": "mlmoc", "mode": "batch"}  # the paper's method; the defaults are influence, sequential
OBJECTIVES = ("mlmoc", "output_change", "emoc", "eer", "eer_calibrated", "influence")


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def monte_carlo_points(random_state, n_candidates, n_classes):
    """The strategy's points for ``p(y|x)``: drawn after the candidate tie-break permutation, in antithetic pairs."""
    rng = np.random.RandomState(random_state)
    rng.permutation(n_candidates)
    half = rng.standard_normal((PREDICTIVE_POINTS // 2, n_classes))
    return np.concatenate([half, -half])


class BruteForce:
    """Look-ahead scores by solving the kernel regression again for every (candidate, label)."""

    def __init__(self, clf, X_L, y_L, X_U, kernel="pntk", space="logits", ridge=1e-5):
        self.clf, self.n, self.m, self.space = clf, len(X_L), len(X_U), space
        self.C = len(clf.classes_)
        self.T = getattr(clf, "temperature_", 1.0)
        X = np.concatenate([X_L, X_U])
        self.K = reference_kernel(clf, X, X, kernel, space)
        self.F = reference_outputs(clf, X, space)
        self.logits = network_outputs(clf, X_U, float64=True)
        self.network_probs = softmax(self.logits / self.T)
        top2 = np.sort(self.network_probs, axis=1)[:, -2:]
        self.margin = top2[:, 1] - top2[:, 0]
        rows = self.n * self.C
        self.ridge = ridge * np.trace(self.K[:rows, :rows]) / rows
        self.labels = list(np.searchsorted(clf.classes_, y_L))
        self.samples = list(range(self.n))
        residual = (np.eye(self.C)[self.labels] - self.F[:self.n]).ravel()
        self.amplitude = residual @ np.linalg.solve(self.K[:rows, :rows] + self.ridge * np.eye(rows), residual) / rows

    def rows(self, samples):
        return (np.asarray(samples)[:, None] * self.C + np.arange(self.C)).ravel()

    def predict(self, samples, *label_sets):
        """``f~`` on U after kernel regression on ``samples`` with each of ``label_sets`` (one solve of K)."""
        r, u = self.rows(samples), self.rows(np.arange(self.n, self.n + self.m))
        factor = linalg.cho_factor(self.K[np.ix_(r, r)] + self.ridge * np.eye(r.size))
        residual = np.stack([(np.eye(self.C)[labels] - self.F[samples]).ravel() for labels in label_sets], axis=1)
        change = (self.K[np.ix_(u, r)] @ linalg.cho_solve(factor, residual)).T.reshape(-1, self.m, self.C)
        return self.F[self.n:] + change if len(label_sets) > 1 else self.F[self.n:] + change[0]

    def covariance(self, samples):
        """C x C blocks ``Delta[u, v]`` (m, m, C, C) over U after conditioning on ``samples``."""
        r, u = self.rows(samples), self.rows(np.arange(self.n, self.n + self.m))
        K = self.K[np.ix_(r, r)] + self.ridge * np.eye(r.size)
        delta = self.K[np.ix_(u, u)] - self.K[np.ix_(u, r)] @ np.linalg.solve(K, self.K[np.ix_(r, u)])
        return delta.reshape(self.m, self.C, self.m, self.C).transpose(0, 2, 1, 3)

    def probs(self, values):
        return softmax(values / self.T) if self.space == "logits" else values

    def label_probabilities(self, x, mean, delta, points):
        """``p(y|x)``: the predictive ``N(mean, sigma^2 (Delta[x, x] + lambda I))`` averaged over ``points``."""
        if self.space != "logits":
            clipped = np.clip(mean[x], 0, None)
            return clipped / clipped.sum()
        factor = np.linalg.cholesky(self.amplitude * (delta[x, x] + self.ridge * np.eye(self.C)))
        return softmax((mean[x] + points @ factor.T) / self.T).mean(axis=0)

    def scores(self, objective, baseline="network", points=None, candidates=None):
        mean = self.predict(self.samples, self.labels)
        base = self.network_probs if baseline == "network" else self.probs(mean)
        delta = self.covariance(self.samples)
        primary, secondary = np.full(self.m, -np.inf), np.full(self.m, -np.inf)
        for x in range(self.m) if candidates is None else candidates:
            if objective == "influence":
                after = self.covariance(self.samples + [self.n + x])
                removed = np.einsum("uucc->u", delta) - np.einsum("uucc->u", after)
                primary[x] = secondary[x] = (1 - self.margin[x]) * np.sum((1 - self.margin) * removed)
                continue
            every_label = objective in ("emoc", "eer_calibrated")
            labels = range(self.C) if every_label else [int(self.logits[x].argmax())]
            weights = np.ones(self.C)
            if objective == "emoc":
                weights = self.network_probs[x]
            elif objective == "eer_calibrated":
                weights = self.label_probabilities(x, mean, delta, points)
            change = risk = 0.0
            afters = self.predict(self.samples + [self.n + x], *[self.labels + [y] for y in labels]).reshape(
                len(labels), self.m, self.C)
            for y, after in zip(labels, afters):
                change += weights[y] * np.linalg.norm(self.probs(after) - base)
                risk += weights[y] * np.mean(1 - self.probs(after).max(1))
            if objective == "mlmoc":
                primary[x] = np.mean(after.argmax(1) != base.argmax(1))
            elif objective in ("eer", "eer_calibrated"):
                primary[x] = -risk
            else:
                primary[x] = change
            secondary[x] = change
        return primary, secondary

    def add(self, x, label):
        self.samples.append(self.n + x)
        self.labels.append(label)

    def greedy(self, objective, k, baseline="linearized", points=None, candidates=None, labels=None):
        """Sequential selection by refactorising after every pick; returns the picks and their scores."""
        available = np.zeros(self.m, dtype=bool)
        available[np.arange(self.m) if candidates is None else candidates] = True
        picks, picked_scores = [], []
        for _ in range(k):
            primary, secondary = self.scores(objective, baseline, points, np.flatnonzero(available))
            best = next(i for i in np.lexsort((-secondary, -primary)) if available[i])
            picks.append(best)
            picked_scores.append(primary[best])
            available[best] = False
            self.add(best, int(self.logits[best].argmax()) if labels is None else labels[best])
        return np.array(picks), np.array(picked_scores)


def labelled_problem(X_L, y_L, X_U):
    X = np.concatenate([X_L, X_U])
    y = np.concatenate([y_L.astype(float), np.full(len(X_U), np.nan)])
    return X, y


@pytest.fixture(scope="module")
def data(digits):
    X_train, X_test, y_train, _ = digits
    return X_train[:20], y_train[:20], X_train[20:32]


@pytest.fixture(scope="module")
def cnn_net(digits):
    """A small CNN fitted with MSE on 300 digits: convolutions refuse mixed precisions, which float64 paths must avoid."""
    X_train, _, y_train, _ = digits
    return JaxNetClassifier(network="cnn", network_kwargs={"channels": (4, 6), "dense_width": 16}, loss="mse",
                            epochs=5, random_state=0).fit(X_train[:300], y_train[:300])


def test_rank_orders_by_primary_then_secondary_then_tiebreak():
    primary = np.array([1.0, 1.0, 1.0, 0.0, 1.0])
    secondary = np.array([0.1, 0.3, 0.2, 5.0, 0.3])
    np.testing.assert_array_equal(rank(primary, secondary, np.array([0, 1, 2, 3, 4])), [1, 4, 2, 0, 3])
    np.testing.assert_array_equal(rank(primary, secondary, np.array([0, 9, 2, 3, 4])), [4, 1, 2, 0, 3])


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_batch_scores_equal_brute_force(mse_net, data, objective):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    strategy = NTKLookAheadQuery(mode="batch", objective=objective, n_candidates=None, random_state=0)
    chosen, utilities = strategy.query(X, y, mse_net, batch_size=len(X_U), return_utilities=True)
    points = monte_carlo_points(0, len(X_U), len(mse_net.classes_))
    primary, secondary = BruteForce(mse_net, X_L, y_L, X_U).scores(objective, points=points)
    np.testing.assert_allclose(utilities[np.arange(len(X_U)), chosen], primary[chosen - len(X_L)], atol=1e-8)
    np.testing.assert_array_equal(chosen - len(X_L), np.lexsort((-secondary, -primary)))


@pytest.mark.parametrize("net,objective", [("mse_net", objective) for objective in OBJECTIVES]
                         + [("ce_net", objective) for objective in ("mlmoc", "eer_calibrated", "influence")]
                         + [("cnn_net", "influence")])
def test_sequential_scores_equal_brute_force(request, data, objective, net):
    clf = request.getfixturevalue(net)
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    strategy = NTKLookAheadQuery(objective=objective, mode="sequential", n_candidates=None, random_state=0)
    chosen, utilities = strategy.query(X, y, clf, batch_size=3, return_utilities=True)
    space = "probabilities" if net == "ce_net" else "logits"
    brute = BruteForce(clf, X_L, y_L, X_U, space=space)
    expected, scores = brute.greedy(objective, 3, points=monte_carlo_points(0, len(X_U), len(clf.classes_)))
    np.testing.assert_array_equal(chosen - len(X_L), expected)
    np.testing.assert_allclose(utilities[np.arange(3), chosen], scores, atol=1e-8)


@pytest.mark.parametrize("mode", ["batch", "sequential"])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_streamed_covariance_equals_dense(ce_net, mse_net, data, objective, mode):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    for clf in (ce_net, mse_net):
        results = []
        for budget in (2**30, 3_000):  # the whole covariance fits / only one candidate's columns at a time
            strategy = NTKLookAheadQuery(objective=objective, mode=mode, n_candidates=None, memory_budget=budget,
                                         random_state=0)
            with mock.patch.object(kr.StructuredCovariance, "dense", autospec=True,
                                   side_effect=kr.StructuredCovariance.dense) as made_dense:
                results.append(strategy.query(X, y, clf, batch_size=4, return_utilities=True))
            assert made_dense.call_count == (budget == 2**30)
        (dense, dense_utilities), (streamed, streamed_utilities) = results
        np.testing.assert_array_equal(dense, streamed)
        np.testing.assert_allclose(dense_utilities, streamed_utilities, atol=1e-10)


@pytest.mark.parametrize("kernel,space", [("full", "logits"), ("pntk", "probabilities")])
def test_batch_scores_other_kernels_and_spaces(ce_net, data, kernel, space):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    strategy = NTKLookAheadQuery(mode="batch", kernel=kernel, output_space=space, objective="output_change",
                                 n_candidates=None, baseline="linearized")
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
    expected, expected_scores = BruteForce(mse_net, X_L, y_L, X_U).greedy(objective, 4, baseline)
    np.testing.assert_array_equal(chosen - len(X_L), expected)
    np.testing.assert_allclose(utilities[np.arange(4), chosen], expected_scores, atol=1e-8)


def test_auto_baseline_is_the_network_in_batch_mode_and_the_updated_model_otherwise(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    for mode, resolved in [("batch", "network"), ("sequential", "linearized"), ("hybrid", "linearized")]:
        picks = {baseline: NTKLookAheadQuery(objective="output_change", mode=mode, hybrid_round_size=2,
                                             baseline=baseline, n_candidates=None).query(X, y, mse_net, 4, None, True)
                 for baseline in ("auto", "network", "linearized")}
        np.testing.assert_array_equal(picks["auto"][0], picks[resolved][0])
        np.testing.assert_array_equal(picks["auto"][1], picks[resolved][1])
        assert not np.array_equal(picks["network"][1], picks["linearized"][1])


def test_hybrid_rounds_and_batch_limits(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    params = {"n_candidates": None, "objective": "output_change", "baseline": "linearized"}
    batch = NTKLookAheadQuery(mode="batch", **params).query(X, y, mse_net, batch_size=4)
    hybrid_one = NTKLookAheadQuery(mode="hybrid", hybrid_round_size=4, **params).query(X, y, mse_net, batch_size=4)
    sequential = NTKLookAheadQuery(mode="sequential", **params)
    hybrid = NTKLookAheadQuery(mode="hybrid", hybrid_round_size=1, **params)
    np.testing.assert_array_equal(batch, hybrid_one)
    np.testing.assert_array_equal(sequential.query(X, y, mse_net, batch_size=4), hybrid.query(X, y, mse_net, 4))
    two_rounds = NTKLookAheadQuery(mode="hybrid", hybrid_round_size=2, **params).query(X, y, mse_net, batch_size=4)
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
        primary, secondary = brute.scores("output_change", "linearized")
        best = next(i for i in np.lexsort((-secondary, -primary)) if available[i])
        assert best == chosen[step] - len(X_L)
        available[best] = False
        brute.add(best, int(np.searchsorted(mse_net.classes_, truth[best + len(X_L)])))
    assert not hasattr(strategy, "_active_oracle")


def test_ties_are_broken_by_output_change_not_array_order(mse_net, data, digits):
    X_L, y_L, _ = data
    X_U = digits[0][20:60]
    strategy = NTKLookAheadQuery(objective="mlmoc", mode="batch", n_candidates=None, random_state=0)
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
        whole = NTKLookAheadQuery(mode="batch", objective=objective, n_candidates=None)
        chunked = NTKLookAheadQuery(mode="batch", objective=objective, n_candidates=None, memory_budget=40_000)
        a, ua = whole.query(X, y, mse_net, batch_size=5, return_utilities=True)
        b, ub = chunked.query(X, y, mse_net, batch_size=5, return_utilities=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(ua, ub, atol=1e-10)


def test_probabilities_use_the_network_temperature(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    cooled = copy.deepcopy(mse_net)
    cooled.temperature_ = 0.2
    brute = BruteForce(cooled, X_L, y_L, X_U)
    points = monte_carlo_points(0, len(X_U), len(mse_net.classes_))
    for objective in ("emoc", "eer_calibrated", "influence"):
        utilities = {}
        for clf in (cooled, mse_net):
            strategy = NTKLookAheadQuery(mode="batch", objective=objective, n_candidates=None, random_state=0)
            chosen, values = strategy.query(X, y, clf, batch_size=len(X_U), return_utilities=True)
            utilities[clf is cooled] = np.nansum(values, axis=0)[len(X_L):]
        primary, _ = brute.scores(objective, points=points)
        np.testing.assert_allclose(utilities[True], primary, atol=1e-8)
        assert not np.allclose(utilities[True], utilities[False], atol=1e-3)


def test_margin_prefilter_then_sequential_lookahead_equals_brute_force(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    filtered_out = []
    for objective, prefilter, k in [("mlmoc", 1, 3), ("influence", 1.5, 4)]:
        strategy = NTKLookAheadQuery(objective=objective, mode="sequential", prefilter=prefilter, n_candidates=None,
                                     random_state=0)
        chosen, utilities = strategy.query(X, y, mse_net, batch_size=k, return_utilities=True)
        brute = BruteForce(mse_net, X_L, y_L, X_U)
        kept = np.argsort(brute.margin)[:int(np.ceil(prefilter * k))]
        expected, scores = brute.greedy(objective, k, candidates=kept)
        np.testing.assert_array_equal(chosen - len(X_L), expected)
        np.testing.assert_allclose(utilities[np.arange(k), chosen], scores, atol=1e-8)
        unfiltered = NTKLookAheadQuery(objective=objective, mode="sequential", n_candidates=None, random_state=0)
        filtered_out.append(not set(unfiltered.query(X, y, mse_net, batch_size=k)) <= set(kept + len(X_L)))
    assert any(filtered_out), "the pre-filter changed no selection: the test would pass without it"


def test_influence_needs_no_labels(mse_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    oracle = mock.Mock(side_effect=AssertionError("influence must not ask for labels"))
    strategy = NTKLookAheadQuery(objective="influence", mode="sequential", n_candidates=None, random_state=0)
    chosen = strategy.query(X, y, mse_net, batch_size=4, oracle=oracle)
    assert oracle.call_count == 0
    expected, _ = BruteForce(mse_net, X_L, y_L, X_U).greedy("influence", 4)
    np.testing.assert_array_equal(chosen - len(X_L), expected)


@pytest.mark.parametrize("q", [1, 4])
def test_label_probabilities_match_the_gaussian_predictive(q):
    rng = np.random.RandomState(0)
    n_classes, m = 4, 3
    index = np.array([2, 0])
    block = rng.randn(m * q, m * q)
    cols = (block @ block.T)[:, kr.sample_rows(index, q)]
    mean = rng.randn(m * q, n_classes // q)
    points = monte_carlo_points(1, 5, n_classes)
    draws = rng.standard_normal((200_000, n_classes))
    with enable_x64(True):
        ours = np.asarray(label_probabilities(mean, cols, index, points, 1e-3, 0.5, 0.7, q, "logits"))
        plug_in = np.asarray(label_probabilities(mean, cols, index, points, 1e-3, 0.0, 0.7, q, "logits"))
    centres = mean.reshape(m, n_classes)[index]
    for i, x in enumerate(index):
        rows = kr.sample_rows([x], q)
        own = np.kron(cols[rows][:, i * q:(i + 1) * q], np.eye(n_classes // q))
        covariance = 0.5 * (own + 1e-3 * np.eye(n_classes))
        reference = softmax((centres[i] + draws @ np.linalg.cholesky(covariance).T) / 0.7).mean(0)
        np.testing.assert_allclose(ours[i], reference, atol=0.03)
        assert np.abs(plug_in[i] - reference).max() > 0.03  # the variance matters here
        np.testing.assert_allclose(plug_in[i], softmax(centres[i] / 0.7), atol=1e-12)
    np.testing.assert_allclose(ours.sum(1), 1.0)


def test_default_query_plans_under_two_gib_and_chunks_stay_in_budget(ce_net, data, digits):
    plan = lookahead_memory(4000, 500, 10)
    assert plan["dense"] == 0  # (40000 rows)^2 never held
    assert sum(plan.values()) <= 2 * 2**30
    dense = lookahead_memory(4000, 500, 10, output_space="logits")
    assert 0 < dense["dense"] <= DEFAULT_MEMORY_BUDGET and sum(dense.values()) <= 2 * 2**30
    X_L, y_L, _ = data
    X_U = digits[0][20:36]  # 16 candidates: a bucket length, so the chunks see no padding rows
    X, y = labelled_problem(X_L, y_L, X_U)
    budget = 400_000  # under three dense copies of Delta (160 rows), room for two candidates per chunk
    seen = []
    original = kr.StructuredCovariance.columns

    def columns(self, index):
        out = original(self, index)
        seen.append((len(index), out.nbytes + len(index) * self.column_bytes))
        return out

    with mock.patch.object(kr.StructuredCovariance, "columns", columns):
        NTKLookAheadQuery(mode="batch", objective="emoc", n_candidates=None,
                          memory_budget=budget).query(X, y, ce_net, 3)
    assert seen and 1 < max(size for size, _ in seen) < len(X_U) and all(used <= budget for _, used in seen)


def test_float32_conditioning_on_probabilities_runs(ce_net, data):
    X_L, y_L, X_U = data
    X, y = labelled_problem(X_L, y_L, X_U)
    for budget in (None, 3_000):  # dense and streamed covariance
        chosen = NTKLookAheadQuery(objective="mlmoc", mode="sequential", float64=False, n_candidates=None,
                                   memory_budget=budget, random_state=0).query(X, y, ce_net, batch_size=5)
        assert len(set(chosen)) == 5 and np.all(chosen >= len(X_L))


def test_candidate_subset_and_determinism(mse_net, data, digits):
    X_L, y_L, _ = data
    X_pool = digits[0][20:120]
    learner = types.SimpleNamespace(estimator=mse_net, X_training=X_L, y_training=y_L)
    first = NTKLookAheadQuery(**PAPER, n_candidates=30, random_state=3)(learner, X_pool, n_instances=5)
    again = NTKLookAheadQuery(**PAPER, n_candidates=30, random_state=3)(learner, X_pool, n_instances=5)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    picks = {tuple(NTKLookAheadQuery(**PAPER, n_candidates=30, random_state=s)(learner, X_pool, 5)[0])
             for s in range(4)}
    assert len(picks) > 1
    assert np.all((first[0] >= 0) & (first[0] < len(X_pool))) and len(set(first[0])) == 5


def test_modal_loop_calls_strategy_once_per_query(digits):
    from modAL.models import ActiveLearner

    X_train, X_test, y_train, y_test = digits
    X_pool, y_pool = X_train[30:230], y_train[30:230]
    net = JaxNetClassifier(loss="mse", epochs=5, network_kwargs={"hidden_layer_sizes": (32,)}, random_state=0)
    strategy = NTKLookAheadQuery(**PAPER, n_candidates=60, random_state=0)
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
    strategy = NTKLookAheadQuery(**PAPER, n_candidates=None)
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
        NTKLookAheadQuery(**PAPER, n_candidates=3)(learner, X_U, n_instances=4)
    for name, value in [("kernel", "ntk"), ("objective", "entropy"), ("mode", "greedy"), ("baseline", "none"),
                        ("output_space", "logit"), ("hybrid_round_size", 0), ("prefilter", 0.5), ("prefilter", True),
                        ("prefilter", "margin")]:
        with pytest.raises(ValueError, match=name):
            NTKLookAheadQuery(**{name: value})(learner, X_U)
    with pytest.raises(TypeError, match="oracle"):
        strategy(learner, X_U, oracle="labels")
    assert NTKLookAheadQuery(**PAPER, n_candidates=None, ridge=1.0)(learner, X_U, 2)[0].shape == (2,)


def test_clone_and_params():
    strategy = NTKLookAheadQuery(kernel="full", objective="emoc", mode="hybrid", hybrid_round_size=5,
                                 n_candidates=100, random_state=7)
    copy = clone(strategy)
    assert copy.get_params() == strategy.get_params()
    assert copy.set_params(kernel="trace").kernel == "trace"
    assert set(strategy.get_params()) == {"kernel", "objective", "mode", "hybrid_round_size", "baseline",
                                          "prefilter", "n_candidates", "ridge", "float64", "memory_budget",
                                          "output_space", "random_state"}
    retrain = RetrainLookAheadQuery(epochs=3, random_state=1)
    assert clone(retrain).get_params() == retrain.get_params()


def test_lookahead_predicts_retraining_of_a_wide_mse_network(digits):
    X_train, _, y_train, _ = digits
    X_L, y_L, X_U = X_train[:50], y_train[:50], X_train[50:150]
    clf = JaxNetClassifier(loss="mse", network_kwargs={"hidden_layer_sizes": (512,)}, epochs=150, batch_size=50,
                           random_state=0).fit(X_L, y_L)
    post = LinearizedClassifier(clf).fit(X_L, y_L).posterior(X_U, dense=True)
    delta = post.covariance.matrix
    candidates = np.arange(6)
    eye = np.eye(len(clf.classes_))
    pseudo = post.outputs[candidates].argmax(1)
    predicted = np.stack([np.outer(delta[:, x], eye[pseudo[i]] - post.mean[x]) / (delta[x, x] + post.ridge)
                          for i, x in enumerate(candidates)])
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
