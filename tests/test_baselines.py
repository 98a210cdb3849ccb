"""Baselines (random, entropy, margin, least confidence, BADGE, Coreset) against independent computations."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.engine.losses import per_sample_loss
from sklearn_ntkal.networks import Dense
from sklearn_ntkal.strategies.baselines import RandomQuery, UncertaintyQuery
from sklearn_ntkal.strategies import diversity
from sklearn_ntkal.strategies.diversity import BADGEQuery, CoresetQuery

N_LABELED = 60
N_POOL = 200


class TableClassifier(ClassifierMixin, BaseEstimator):
    """Returns the row ``int(x[0])`` of a fixed probability table: uncertainty cases computed by hand."""

    def __init__(self, table=None):
        self.table = table

    def fit(self, X, y):
        self.classes_ = np.arange(np.asarray(self.table).shape[1])
        return self

    def predict_proba(self, X):
        return np.asarray(self.table)[np.asarray(X)[:, 0].astype(int)]


@pytest.fixture(scope="module")
def data(digits):
    X_train, _, y_train, _ = digits
    return X_train[:N_LABELED], y_train[:N_LABELED], X_train[N_LABELED:N_LABELED + N_POOL]


@pytest.fixture(scope="module", params=["cross_entropy", "mse"])
def fitted(request, data, small_mlp_factory):
    X_lab, y_lab, _ = data
    return small_mlp_factory(X_lab, y_lab, loss=request.param, epochs=20,
                             network_kwargs={"hidden_layer_sizes": (32,)}, learning_rate=1e-2)


def _modal_learner(clf, X_lab, y_lab):
    """Just what a strategy reads from a modAL learner."""
    class Learner:
        estimator, X_training, y_training = clf, X_lab, y_lab
    return Learner()


# ----------------------------------------------------------------- random
@pytest.mark.parametrize("batch_size", [1, 7, 40])
def test_random_deterministic_distinct_and_prefix(data, fitted, batch_size):
    X_lab, y_lab, X_pool = data
    learner = _modal_learner(fitted, X_lab, y_lab)
    idx, scores = RandomQuery(random_state=3)(learner, X_pool, n_instances=batch_size)
    again, _ = RandomQuery(random_state=3)(learner, X_pool, n_instances=batch_size)
    other, _ = RandomQuery(random_state=4)(learner, X_pool, n_instances=batch_size)
    longer, _ = RandomQuery(random_state=3)(learner, X_pool, n_instances=batch_size + 5)
    np.testing.assert_array_equal(idx, again)
    assert not np.array_equal(idx, other)
    np.testing.assert_array_equal(longer[:batch_size], idx)
    assert np.unique(idx).size == batch_size and idx.min() >= 0 and idx.max() < N_POOL
    assert np.all(np.diff(scores) <= 0)


def test_random_is_uniform():
    X = np.arange(5, dtype=np.float32)[:, None]
    clf = TableClassifier(np.full((5, 2), 0.5)).fit(X, [0, 1, 0, 1, 0])
    y = np.full(5, np.nan)
    picks = np.array([RandomQuery(random_state=seed).query(X, y, clf)[0] for seed in range(2000)])
    frequencies = np.bincount(picks, minlength=5) / picks.size
    np.testing.assert_allclose(frequencies, 0.2, atol=0.04)


# ------------------------------------------------------------ uncertainty
TABLE = np.array([
    [0.5, 0.5, 0.0],
    [0.9, 0.05, 0.05],
    [0.4, 0.35, 0.25],
    [1 / 3, 1 / 3, 1 / 3],
    [0.6, 0.3, 0.1],
])


@pytest.mark.parametrize("measure, expected_order", [
    # margins 0, .85, .05, 0, .3: the two ties at 0 go in pool order
    ("margin", [0, 3, 2, 4, 1]),
    # 1 - max p: .5, .1, .6, .667, .4
    ("least_confidence", [3, 2, 0, 4, 1]),
    # entropies: log 2 = .693, .394, 1.080, log 3 = 1.099, .898
    ("entropy", [3, 2, 4, 0, 1]),
])
def test_uncertainty_known_case(measure, expected_order):
    X = np.arange(5, dtype=np.float32)[:, None]
    clf = TableClassifier(TABLE).fit(X, [0, 1, 2, 0, 1])
    y = np.full(5, np.nan)
    for k in range(1, 6):
        idx, util = UncertaintyQuery(measure=measure).query(X, y, clf, batch_size=k, return_utilities=True)
        np.testing.assert_array_equal(idx, expected_order[:k])
    by_hand = {"margin": -(TABLE.max(1) - np.sort(TABLE, 1)[:, -2]),
               "least_confidence": 1 - TABLE.max(1),
               "entropy": -np.sum(np.where(TABLE > 0, TABLE * np.log(np.where(TABLE > 0, TABLE, 1)), 0), 1)}[measure]
    np.testing.assert_allclose(util[np.arange(5), idx], by_hand[idx])


@pytest.mark.parametrize("measure, modal_fn, sign", [
    ("entropy", classifier_entropy, 1), ("margin", classifier_margin, -1),
    ("least_confidence", classifier_uncertainty, 1),
])
@pytest.mark.parametrize("batch_size", [1, 10])
def test_uncertainty_matches_modal_on_network(data, fitted, measure, modal_fn, sign, batch_size):
    X_lab, y_lab, X_pool = data
    idx, scores = UncertaintyQuery(measure)(_modal_learner(fitted, X_lab, y_lab), X_pool, n_instances=batch_size)
    reference = sign * modal_fn(fitted, X_pool)
    np.testing.assert_allclose(scores, reference[idx], rtol=1e-6, atol=1e-9)
    assert np.all(reference[idx].min() >= np.delete(reference, idx) - 1e-9)


def test_uncertainty_through_pipeline_and_bad_measure(data):
    X_lab, y_lab, X_pool = data
    pipe = Pipeline([("scale", StandardScaler()),
                     ("net", JaxNetClassifier(network_kwargs={"hidden_layer_sizes": (16,)}, epochs=5,
                                              random_state=0))]).fit(X_lab, y_lab)
    idx, scores = UncertaintyQuery("margin")(_modal_learner(pipe, X_lab, y_lab), X_pool, n_instances=5)
    np.testing.assert_allclose(scores, -classifier_margin(pipe, X_pool)[idx], rtol=1e-6)
    with pytest.raises(ValueError, match="measure"):
        UncertaintyQuery("variance")(_modal_learner(pipe, X_lab, y_lab), X_pool)


# ------------------------------------------------------------------ BADGE
def _explicit_embeddings(clf, X):
    """Gradients of the cross-entropy of softmax(f / T) at the predicted label w.r.t. the last layer's (W, b)."""
    outputs = clf.network_(clf.params_, X)
    labels = jax.nn.one_hot(jnp.argmax(outputs, axis=1), outputs.shape[1])
    temperature = getattr(clf, "temperature_", 1.0)

    def loss(params, x, t):
        return per_sample_loss("cross_entropy", clf.network_(params, x[None]) / temperature, t[None])[0]

    grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(clf.params_, X, labels)
    w, b = jax.tree_util.tree_leaves(grads)[-2:]
    return np.concatenate([np.asarray(w).reshape(len(X), -1), np.asarray(b)], axis=1).astype(np.float64)


@pytest.mark.parametrize("temperature", [None, 0.2])
def test_badge_first_pick_and_distances_match_explicit_gradients(data, fitted, temperature):
    """Cross-entropy gradients of softmax(f / T) for either training loss; T from ``temperature_`` (1 without it)."""
    X_lab, y_lab, X_pool = data
    if temperature is not None:
        fitted = copy.copy(fitted)
        fitted.temperature_ = temperature
    emb = _explicit_embeddings(fitted, X_pool)
    idx, scores = BADGEQuery(random_state=0)(_modal_learner(fitted, X_lab, y_lab), X_pool, n_instances=8)
    norms = np.sum(emb**2, axis=1)
    assert idx[0] == np.argmax(norms)
    np.testing.assert_allclose(scores[0], norms.max(), rtol=1e-4)
    for step in range(1, 8):
        d2 = cdist(emb[idx[step:step + 1]], emb[idx[:step]], "sqeuclidean").min()
        np.testing.assert_allclose(scores[step], d2, rtol=1e-3, atol=1e-4 * norms.max())
    assert np.unique(idx).size == 8


def test_badge_samples_proportional_to_d2(data, fitted):
    if fitted.loss == "mse":
        pytest.skip("the sampling law does not depend on the loss; checked once")
    X_lab, y_lab, X_pool = data
    X_small = X_pool[:20]
    emb = _explicit_embeddings(fitted, X_small)
    first = np.argmax(np.sum(emb**2, axis=1))
    p = np.sum((emb - emb[first]) ** 2, axis=1)
    p /= p.sum()
    learner = _modal_learner(fitted, X_lab, y_lab)
    seconds = np.array([BADGEQuery(random_state=seed)(learner, X_small, n_instances=2)[0][1] for seed in range(600)])
    frequencies = np.bincount(seconds, minlength=20) / seconds.size
    assert 0.5 * np.abs(frequencies - p).sum() < 0.1


@pytest.mark.parametrize("batch_size", [1, 5, 25])
def test_badge_deterministic_and_prefix(data, fitted, batch_size):
    X_lab, y_lab, X_pool = data
    learner = _modal_learner(fitted, X_lab, y_lab)
    idx, _ = BADGEQuery(random_state=1)(learner, X_pool, n_instances=batch_size)
    np.testing.assert_array_equal(idx, BADGEQuery(random_state=1)(learner, X_pool, n_instances=batch_size)[0])
    longer, _ = BADGEQuery(random_state=1)(learner, X_pool, n_instances=batch_size + 3)
    np.testing.assert_array_equal(longer[:batch_size], idx)
    assert np.unique(idx).size == batch_size
    if batch_size > 2:
        assert not np.array_equal(idx, BADGEQuery(random_state=2)(learner, X_pool, n_instances=batch_size)[0])


def test_badge_skips_duplicates():
    """Two distinct points, three copies each: D^2 is zero on copies of the first pick, so the second is the other."""
    X = np.array([[0.0, 1.0]] * 3 + [[2.0, -1.0]] * 3, dtype=np.float32)
    y = np.array([0, 0, 0, 1, 1, 1])
    clf = JaxNetClassifier(network=Dense(2), standardize=False, epochs=3, random_state=0).fit(X, y)
    for seed in range(10):
        idx = BADGEQuery(random_state=seed).query(X, np.full(6, np.nan), clf, batch_size=2)
        assert sorted(idx // 3) == [0, 1]


def test_badge_copies_of_one_row():
    """Four copies of one row: after the first pick every D^2 is (up to rounding) zero; the picks stay distinct."""
    X = np.array([[0.5, -1.0]] * 4, dtype=np.float32)
    clf = JaxNetClassifier(network=Dense(2), standardize=False, epochs=2, random_state=0).fit(X, [0, 1, 0, 1])
    for seed in range(5):
        idx, util = BADGEQuery(random_state=seed).query(X, np.full(4, np.nan), clf, batch_size=4,
                                                         return_utilities=True)
        assert sorted(idx) == [0, 1, 2, 3]
        np.testing.assert_allclose(util[np.arange(1, 4), idx[1:]], 0.0, atol=1e-6 * util[0, idx[0]])


def test_d2_draw_uniform_among_unchosen_when_every_weight_is_zero():
    rng = np.random.RandomState(0)
    draws = [diversity._d2_draw(np.zeros(5), [1, 3], rng) for _ in range(300)]
    assert {weight for _, weight in draws} == {0.0}
    counts = np.bincount([j for j, _ in draws], minlength=5)
    assert counts[1] == counts[3] == 0 and counts.min(initial=300, where=counts > 0) > 70


@pytest.mark.parametrize("strategy", [BADGEQuery(random_state=0), CoresetQuery()], ids=["badge", "coreset"])
def test_picks_read_rows_of_features(data, fitted, monkeypatch, strategy):
    """Each pick reads, per candidate, ``r``, ``h`` and ``||g||^2`` (BADGE: C + d + 1 float32) or ``h`` and
    ``||h||^2`` (Coreset: d + 1): never an m x Cd embedding nor an m x n_L distance matrix."""
    X_lab, y_lab, X_pool = data
    width, n_classes = 32, len(fitted.classes_)
    name = "_badge_distances" if isinstance(strategy, BADGEQuery) else "_coreset_distances"
    distances, read = getattr(diversity, name), []

    def counting(*args):
        read.append(sum(a.nbytes for a in args if isinstance(a, np.ndarray) and a.ndim > 0))
        return distances(*args)

    monkeypatch.setattr(diversity, name, counting)
    strategy(_modal_learner(fitted, X_lab, y_lab), X_pool, n_instances=5)
    per_row = (n_classes + width + 1) if isinstance(strategy, BADGEQuery) else (width + 1)
    assert read == [4 * len(X_pool) * per_row] * 5


# ---------------------------------------------------------------- Coreset
def test_coreset_one_dimensional_by_hand():
    """Features are the inputs (a single linear layer): k-center greedy on the line, labelled point at 0."""
    X = np.array([0, 1, 2, 4, 8, 9, 10], dtype=np.float32)[:, None]
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    clf = JaxNetClassifier(network=Dense(2), standardize=False, epochs=2, random_state=0).fit(X, y)
    y_masked = np.full(7, np.nan)
    y_masked[0] = 0
    # distances to {0}: 1 2 4 8 9 10 -> take 10; to {0, 10}: 1 2 4 2 1 -> take 4; then 1 2 . 2 1: tie 2 vs 8 -> 2
    idx, util = CoresetQuery().query(X, y_masked, clf, batch_size=3, return_utilities=True)
    np.testing.assert_array_equal(idx, [6, 3, 2])
    np.testing.assert_allclose(util[np.arange(3), idx], [10, 4, 2], rtol=1e-6)


def _brute_force_k_center(features_pool, features_labeled, k):
    d = cdist(features_pool, features_labeled).min(axis=1)
    picks = []
    for _ in range(k):
        j = int(np.argmax(np.where(np.isin(np.arange(len(d)), picks), -np.inf, d)))
        picks.append(j)
        d = np.minimum(d, cdist(features_pool, features_pool[j:j + 1])[:, 0])
    return np.array(picks)


@pytest.mark.parametrize("batch_size", [1, 6, 30])
def test_coreset_matches_brute_force_on_network_features(data, fitted, batch_size):
    X_lab, y_lab, X_pool = data
    idx, scores = CoresetQuery()(_modal_learner(fitted, X_lab, y_lab), X_pool, n_instances=batch_size)
    h_pool = np.asarray(fitted.network_.last_linear(fitted.params_, X_pool)[0], dtype=np.float64)
    h_lab = np.asarray(fitted.network_.last_linear(fitted.params_, X_lab)[0], dtype=np.float64)
    np.testing.assert_array_equal(idx, _brute_force_k_center(h_pool, h_lab, batch_size))
    assert np.all(np.diff(scores) <= 1e-6)
    again, _ = CoresetQuery()(_modal_learner(fitted, X_lab, y_lab), X_pool, n_instances=batch_size)
    np.testing.assert_array_equal(idx, again)


# ---------------------------------------------------------- shared checks
ALL = [RandomQuery(random_state=0), UncertaintyQuery("entropy"), UncertaintyQuery("margin"),
       UncertaintyQuery("least_confidence"), BADGEQuery(random_state=0), CoresetQuery()]


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: repr(s))
def test_clone_round_trip(strategy):
    copy = clone(strategy)
    assert copy is not strategy and copy.get_params() == strategy.get_params()


def test_network_strategies_reject_non_jax_estimator():
    X = np.arange(5, dtype=np.float32)[:, None]
    clf = TableClassifier(np.full((5, 2), 0.5)).fit(X, [0, 1, 0, 1, 0])
    y = np.full(5, np.nan)
    y[0] = 0
    for strategy in (BADGEQuery(), CoresetQuery()):
        with pytest.raises(TypeError, match="JAX network"):
            strategy.query(X, y, clf)
    assert UncertaintyQuery().query(X, y, clf).shape == (1,)


def test_coreset_needs_labels_badge_does_not(data, fitted):
    _, _, X_pool = data
    y = np.full(len(X_pool), np.nan)
    assert BADGEQuery(random_state=0).query(X_pool, y, fitted, batch_size=3).shape == (3,)
    with pytest.raises(ValueError, match="no labelled data"):
        CoresetQuery().query(X_pool, y, fitted, batch_size=3)
