"""Tests for DynamicALQuery and sklearn_ntkal.engine.gradients against brute-force gradients of the summed loss."""

import copy
import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.engine.gradients import (
    FlatGradients,
    LayerGradients,
    activation_elements,
    chunk_rows,
    gradient_statistics,
    stored_elements,
    summed_gradient,
    tape_covers_parameters,
)
from sklearn_ntkal.jax_compat import enable_x64
from sklearn_ntkal.networks import Conv, Dense, Flatten, Network, Relu, Residual, Serial, Tanh
from sklearn_ntkal.strategies.dynamical import DynamicALQuery

N_LABELED, N_POOL = 60, 30


@pytest.fixture(scope="module")
def data(digits):
    X_train, _, y_train, _ = digits
    return X_train[:N_LABELED], y_train[:N_LABELED], X_train[N_LABELED:N_LABELED + N_POOL]


def external_init(key, input_shape):
    k1, k2 = jax.random.split(key)
    params = (jax.random.normal(k1, (input_shape[-1], 16)) * 0.2, jnp.zeros(16), jax.random.normal(k2, (16, 10)) * 0.2)
    return input_shape[:-1] + (10,), params


def external_apply(params, x):
    w1, b1, w2 = params
    return jnp.tanh(x @ w1 + b1) @ w2


@pytest.fixture(scope="module")
def fitted(data, small_mlp_factory):
    """Small fitted networks: MLPs (cross-entropy, MSE), a CNN, and a network the tape cannot see (flat gradients)."""
    X_S, y_S, _ = data
    nets = {name: small_mlp_factory(X_S, y_S, loss=loss, epochs=8, network_kwargs={"hidden_layer_sizes": (32, 16)})
            for name, loss in (("mlp", "cross_entropy"), ("mlp_mse", "mse"))}
    nets["cnn"] = JaxNetClassifier(network="cnn", network_kwargs={"channels": (4, 6), "dense_width": 16}, epochs=3,
                                   random_state=0).fit(X_S, y_S)
    nets["external"] = JaxNetClassifier(network=(external_init, external_apply), epochs=5,
                                        random_state=0).fit(X_S, y_S)
    return nets


def learner_of(clf, X_S, y_S):
    return SimpleNamespace(estimator=clf, X_training=X_S, y_training=y_S)


def all_scores(strategy, clf, X_S, y_S, X_U):
    """Score of every candidate, in pool order, by asking the strategy to rank the whole pool."""
    positions, scores = strategy(learner_of(clf, X_S, y_S), X_U, n_instances=X_U.shape[0])
    out = np.empty(X_U.shape[0])
    out[positions] = scores
    return out


def explicit_loss(loss, outputs, targets, weights):
    if loss == "cross_entropy":
        per_sample = -jnp.sum(targets * jax.nn.log_softmax(outputs, axis=-1), axis=-1)
    else:
        per_sample = 0.5 * jnp.sum((outputs - targets) ** 2, axis=-1)
    return jnp.sum(weights * per_sample)


class BruteForce:
    """``G(T) = || grad sum_{(x, t) in T} w_x l ||^2`` by jax.grad of the weighted summed loss over T, in float64.

    ``select`` picks the differentiated leaves of the flattened params (all by default).
    Labelled rows have weight 1; pool rows the weights given to :meth:`G`.
    """

    def __init__(self, clf, loss, X_S, y_S, X_U, select=slice(None)):
        with enable_x64(True):
            leaves, self.treedef = jax.tree_util.tree_flatten(clf.params_)
            self.leaves = [jnp.asarray(leaf, jnp.float64) for leaf in leaves]
            self.select = select
            self.apply_fn, self.loss = clf.network_, loss
            n_classes = len(clf.classes_)
            self.X = np.concatenate([X_S, X_U]).astype(np.float64)
            pseudo = np.asarray(self.apply_fn(self.tree(self.leaves[self.select]), self.X[N_LABELED:])).argmax(1)
            self.T = np.eye(n_classes)[np.concatenate([np.searchsorted(clf.classes_, y_S), pseudo])]

    def tree(self, selected):
        leaves = list(self.leaves)
        leaves[self.select] = selected
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def G(self, pool_positions=(), pool_weights=None):
        rows = np.concatenate([np.arange(N_LABELED), N_LABELED + np.asarray(pool_positions, dtype=int)])
        pool_weights = np.ones(len(pool_positions)) if pool_weights is None else pool_weights
        weights = np.concatenate([np.ones(N_LABELED), pool_weights])
        with enable_x64(True):
            grad = self._grad(self.leaves[self.select], self.X[rows], self.T[rows], weights)
            return float(grad @ grad)

    @functools.partial(jax.jit, static_argnums=0)
    def _grad(self, selected, X, T, weights):
        def total(selected_):
            return explicit_loss(self.loss, self.apply_fn(self.tree(selected_), X), T, weights)

        return ravel_pytree(jax.grad(total)(selected))[0]

    def scores(self):
        base = self.G()
        return np.array([self.G([x]) - base for x in range(N_POOL)])

    def greedy(self, k, sign=1.0):
        """Greedy gains ``G(S, sign Q, x) - G(S, sign Q)``: the exact objective (sign 1) or de-influence (-1).

        With picked points weighted by ``sign``, the gain of ``x`` is
        ``||g_x||^2 + 2 <g_S + sign g_Q, g_x>``.
        """
        picked, gains = [], []
        for _ in range(k):
            current = self.G(picked, sign * np.ones(len(picked)))
            options = [x for x in range(N_POOL) if x not in picked]
            values = [self.G(picked + [x], np.append(sign * np.ones(len(picked)), 1.0)) - current for x in options]
            picked.append(options[int(np.argmax(values))])
            gains.append(max(values))
        return np.array(picked), np.array(gains)


@pytest.mark.parametrize("net, loss", [("mlp", "network"), ("mlp_mse", "network"), ("mlp_mse", "cross_entropy"),
                                       ("cnn", "network"), ("external", "mse")])
def test_score_is_gain_in_training_dynamics(fitted, data, net, loss):
    X_S, y_S, X_U = data
    clf = fitted[net]
    expected = BruteForce(clf, clf.loss if loss == "network" else loss, X_S, y_S, X_U).scores()
    got64 = all_scores(DynamicALQuery(selection="topk", loss=loss, float64=True), clf, X_S, y_S, X_U)
    np.testing.assert_allclose(got64, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    got32 = all_scores(DynamicALQuery(selection="topk", loss=loss), clf, X_S, y_S, X_U)
    np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_default_loss_is_the_networks_own(fitted, data):
    """The default differentiates the classifier's own loss; cross-entropy when it has none (the paper's)."""
    X_S, y_S, X_U = data
    clf = fitted["mlp_mse"]
    default = all_scores(DynamicALQuery(), clf, X_S, y_S, X_U)
    np.testing.assert_array_equal(default, all_scores(DynamicALQuery(loss="mse"), clf, X_S, y_S, X_U))
    cross_entropy = all_scores(DynamicALQuery(loss="cross_entropy"), clf, X_S, y_S, X_U)
    assert not np.allclose(default, cross_entropy)
    bare = copy.copy(clf)
    del bare.loss
    np.testing.assert_array_equal(all_scores(DynamicALQuery(), bare, X_S, y_S, X_U), cross_entropy)


def test_last_layer_is_brute_force_on_output_layer(fitted, data):
    X_S, y_S, X_U = data
    clf = fitted["mlp"]
    leaves = jax.tree_util.tree_leaves(clf.params_)
    W, b = clf.network_.last_linear(clf.params_, X_U[:1])[1]
    assert leaves[-2] is W and leaves[-1] is b
    brute = BruteForce(clf, "cross_entropy", X_S, y_S, X_U, select=slice(len(leaves) - 2, None))
    expected = brute.scores()
    got = all_scores(DynamicALQuery(selection="topk", parameters="last_layer", float64=True), clf, X_S, y_S, X_U)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    picked, gains = brute.greedy(4)
    positions, scores = DynamicALQuery(parameters="last_layer", selection="greedy", float64=True)(
        learner_of(clf, X_S, y_S), X_U, n_instances=4)
    np.testing.assert_array_equal(positions, picked)
    np.testing.assert_allclose(scores, gains, rtol=1e-9)
    full = all_scores(DynamicALQuery(selection="topk", float64=True), clf, X_S, y_S, X_U)
    assert not np.allclose(got, full, rtol=1e-3)


def test_last_layer_closed_form_norm(fitted, data):
    """``||g_x||^2 = ||r||^2 (||h||^2 + 1)`` with ``h`` from ``Network.last_linear`` and explicit outer products."""
    _, _, X_U = data
    clf = fitted["mlp"]
    x = jnp.asarray(X_U)
    ((h1, r),) = LayerGradients(clf.network_, "cross_entropy", last_only=True).embed(clf.params_, x)
    features, (W, b) = clf.network_.last_linear(clf.params_, x)
    np.testing.assert_allclose(np.asarray(r), np.asarray(jax.nn.softmax(features @ W + b) - jax.nn.one_hot(
        (features @ W + b).argmax(1), 10)), atol=1e-6)
    explicit = np.einsum("nd,nc->ndc", np.asarray(h1), np.asarray(r)).reshape(len(X_U), -1)
    closed = (np.asarray(r) ** 2).sum(1) * ((np.asarray(features) ** 2).sum(1) + 1)
    np.testing.assert_allclose(closed, (explicit**2).sum(1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(LayerGradients.sq_norms([(h1, r)])), closed, rtol=1e-5)


def test_last_layer_behind_a_nonlinearity(data):
    """The output layer's gradient goes through whatever follows it (here a tanh)."""
    X_S, y_S, X_U = data
    clf = JaxNetClassifier(network=Serial(Dense(16), Tanh(), Dense(10), Tanh()), epochs=1, random_state=0).fit(X_S, y_S)
    n_leaves = len(jax.tree_util.tree_leaves(clf.params_))
    expected = BruteForce(clf, "cross_entropy", X_S, y_S, X_U, select=slice(n_leaves - 2, None)).scores()
    got = all_scores(DynamicALQuery(selection="topk", parameters="last_layer", float64=True), clf, X_S, y_S, X_U)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_layer_gradients_equal_flat_gradients(fitted, data, net):
    X_S, y_S, X_U = data
    clf = fitted[net]
    assert tape_covers_parameters(clf.network_, clf.params_, X_U.shape[1:], np.float32)
    targets = np.eye(10, dtype=np.float32)[y_S]
    out = []
    for gmap in (LayerGradients(clf.network_), FlatGradients(clf.network_)):
        g_S = summed_gradient(gmap, clf.params_, X_S, targets, 16)
        sq, dots, _ = gradient_statistics(gmap, clf.params_, X_U, g_S, 16)
        norm = sum(float(jnp.sum(leaf**2)) for leaf in jax.tree_util.tree_leaves(g_S))
        out.append((sq, dots, norm))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-4)
    assert not tape_covers_parameters(fitted["external"].network_, fitted["external"].params_, X_U.shape[1:],
                                      np.float32)


def test_layer_gradients_of_strided_and_residual_convolutions():
    """Valid and same padding, strides, an even kernel, a residual branch and a bias-free projection."""
    branch = Serial(Relu(), Conv(3, (2, 2)), Relu(), Conv(3, (3, 3), (2, 2)))  # SAME pads (0, 1) here
    projection = Conv(3, (1, 1), (2, 2), use_bias=False)
    network = Network(Serial(Conv(2, (3, 3), (2, 2), "VALID"), Residual(branch, projection), Relu(), Flatten(),
                             Dense(10)))
    _, params = network.init_fn(jax.random.PRNGKey(0), (-1, 9, 9, 2))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (7, 9, 9, 2)))
    assert tape_covers_parameters(network, params, x.shape[1:], np.float32)
    with enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        x = x.astype(np.float64)
        out = []
        for gmap in (LayerGradients(network), FlatGradients(network)):
            v = summed_gradient(gmap, params, x[:3], None, 4)
            out.append(gradient_statistics(gmap, params, x, v, 4)[:2])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-10)


@pytest.mark.parametrize("selection, sign", [("greedy", 1.0), ("deinfluence", -1.0)])
@pytest.mark.parametrize("net", ["mlp_mse", "external"])
def test_sequential_selections_are_brute_force_greedy(fitted, data, net, selection, sign):
    X_S, y_S, X_U = data
    clf = fitted[net]
    picked, gains = BruteForce(clf, clf.loss, X_S, y_S, X_U).greedy(4, sign)
    for budget in (1, 2**30):  # one pass over the pool per step / gradient representations kept
        positions, scores = DynamicALQuery(loss="network", selection=selection, float64=True, memory_budget=budget)(
            learner_of(clf, X_S, y_S), X_U, n_instances=4)
        np.testing.assert_array_equal(positions, picked)
        np.testing.assert_allclose(scores, gains, rtol=1e-9)
    topk, _ = DynamicALQuery(selection="topk", float64=True)(learner_of(clf, X_S, y_S), X_U, n_instances=4)
    assert positions[0] == topk[0]


@pytest.mark.parametrize("net, loss", [("mlp", "cross_entropy"), ("mlp_mse", "network")])
@pytest.mark.parametrize("selection", ["topk", "greedy", "deinfluence"])
def test_gradient_form_equals_kernel_form(fitted, data, selection, net, loss):
    X_S, y_S, X_U = data
    clf = fitted[net]
    for float64, rtol in ((False, 1e-5), (True, 1e-10)):
        if selection == "topk":  # every candidate; kernel blocks of 9 to 15 candidates
            g = all_scores(DynamicALQuery(selection="topk", loss=loss, float64=float64), clf, X_S, y_S, X_U)
            k = all_scores(DynamicALQuery(selection="topk", loss=loss, form="kernel", float64=float64,
                                          memory_budget=2**20), clf, X_S, y_S, X_U)
            np.testing.assert_allclose(g, k, rtol=rtol, atol=rtol * np.abs(k).max())
        else:
            gradient = DynamicALQuery(loss=loss, selection=selection, float64=float64)(
                learner_of(clf, X_S, y_S), X_U, 5)
            kernel = DynamicALQuery(loss=loss, selection=selection, form="kernel", float64=float64)(
                learner_of(clf, X_S, y_S), X_U, 5)
            np.testing.assert_array_equal(gradient[0], kernel[0])
            np.testing.assert_allclose(gradient[1], kernel[1], rtol=rtol)


@pytest.mark.parametrize("net, parameters, selection", [
    ("mlp", "all", "topk"), ("mlp", "all", "greedy"), ("mlp", "last_layer", "greedy"),
    ("cnn", "all", "topk"), ("external", "all", "greedy"), ("external", "all", "deinfluence"),
])
def test_chunked_equals_unchunked(fitted, data, net, parameters, selection):
    X_S, y_S, X_U = data
    clf = fitted[net]
    gmap = (FlatGradients(clf.network_) if net == "external"
            else LayerGradients(clf.network_, last_only=parameters == "last_layer"))
    shape, f64 = X_U.shape[1:], np.float64
    with enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, f64), clf.params_)
        per_sample = 8 * (2 * activation_elements(clf.network_, params, shape, f64)
                          + 3 * stored_elements(gmap, params, shape, f64))
        seven = 2 * 7 * per_sample  # the strategy gives a chunk half the budget
        assert chunk_rows(gmap, params, shape, f64, seven // 2) == 7  # 30 = 4 x 7 + 2 (padded)
    results = [DynamicALQuery(parameters=parameters, selection=selection, memory_budget=budget, float64=True)(
        learner_of(clf, X_S, y_S), X_U, n_instances=6) for budget in (1, seven, 2**30)]
    for positions, scores in results[1:]:
        np.testing.assert_array_equal(positions, results[0][0])
        np.testing.assert_allclose(scores, results[0][1], rtol=1e-11)


@pytest.mark.parametrize("selection", ["topk", "greedy"])
def test_equal_random_state_gives_identical_results(fitted, data, selection):
    X_S, y_S, X_U = data
    clf = fitted["mlp"]
    pool = np.concatenate([X_U, X_U[::2]])
    runs = [DynamicALQuery(selection=selection, random_state=3)(learner_of(clf, X_S, y_S), pool, 8) for _ in range(2)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_exact_ties_are_broken_by_random_state(fitted, data):
    X_S, y_S, X_U = data
    clf = fitted["mlp"]
    pool = np.repeat(X_U[:1], 6, axis=0)
    orders = set()
    for seed in range(6):
        positions, scores = DynamicALQuery(selection="topk", parameters="last_layer", random_state=seed)(
            learner_of(clf, X_S, y_S), pool, 6)
        assert np.all(scores == scores[0])
        orders.add(tuple(positions))
    assert len(orders) > 1


def test_modal_learner_loop_and_clone(digits):
    from modAL.models import ActiveLearner

    X_train, X_test, y_train, y_test = digits
    X0, y0, pool = X_train[:50], y_train[:50], X_train[50:250]
    calls = []

    class Counted(DynamicALQuery):
        def _select(self, *args):
            calls.append(1)
            return super()._select(*args)

    strategy = Counted(selection="greedy", random_state=0)
    estimator = JaxNetClassifier(epochs=3, random_state=0, network_kwargs={"hidden_layer_sizes": (16,)})
    learner = ActiveLearner(estimator=estimator, query_strategy=strategy, X_training=X0, y_training=y0)
    remaining = np.arange(len(pool))
    for round_ in range(3):
        idx, X_query = learner.query(pool[remaining], n_instances=4)
        assert len(calls) == round_ + 1
        assert len(set(np.asarray(idx).tolist())) == 4
        np.testing.assert_array_equal(X_query, pool[remaining[idx]])
        learner.teach(pool[remaining[idx]], y_train[50:250][remaining[idx]])
        remaining = np.delete(remaining, idx)
    assert learner.X_training.shape[0] == 50 + 12
    assert 0.0 <= learner.score(X_test, y_test) <= 1.0

    tuned = clone(strategy).set_params(selection="topk", parameters="last_layer")
    assert tuned.get_params()["random_state"] == 0 and strategy.selection == "greedy"
    grid_copy = clone(tuned)
    first = tuned(learner, pool[remaining], n_instances=5)
    second = grid_copy(learner, pool[remaining], n_instances=5)
    np.testing.assert_array_equal(first[0], second[0])
    y = np.full(len(X0) + len(remaining), np.nan)
    y[: len(X0)] = y0
    queried = grid_copy.query(np.concatenate([X0, pool[remaining]]), y, learner.estimator, batch_size=5)
    assert np.all(queried >= len(X0))


@pytest.fixture(scope="module")
def labeled(fitted, data):
    X_S, y_S, X_U = data
    return fitted["mlp"], X_S, y_S, X_U


@pytest.mark.parametrize("make, error, match", [
    (lambda c, X, y, U: ((c, X, y), U[:0], 1), ValueError, "pool is empty"),
    (lambda c, X, y, U: ((c, X, y), U, N_POOL + 1), ValueError, "larger than the pool"),
    (lambda c, X, y, U: ((c, X, y), np.where(np.arange(U.size).reshape(U.shape) == 5, np.nan, U), 2),
     ValueError, "NaN"),
    (lambda c, X, y, U: ((c, X, y), U[:, :10], 2), ValueError, "features"),
    (lambda c, X, y, U: ((c, X[:0], y[:0]), U, 2), ValueError, "no labelled data"),
    (lambda c, X, y, U: ((c, X, np.where(np.arange(len(y)) == 0, 99, y)), U, 2), ValueError, "unknown"),
    (lambda c, X, y, U: ((JaxNetClassifier(), X, y), U, 2), NotFittedError, "not fitted"),
    (lambda c, X, y, U: ((LogisticRegression(max_iter=1000).fit(X, y), X, y), U, 2), TypeError, "JAX network"),
    (lambda c, X, y, U: ((None, X, y), U, 2), ValueError, "fitted estimator"),
    (lambda c, X, y, U: ((c, X, y), U, 0), ValueError, "positive integer"),
])
def test_bad_input_errors(labeled, make, error, match):
    (clf, X, y), pool, n = make(*labeled)
    with pytest.raises(error, match=match):
        DynamicALQuery()(learner_of(clf, X, y), pool, n)


@pytest.mark.parametrize("params, match", [
    ({"loss": "hinge"}, "loss must be"),
    ({"loss": None}, "loss must be"),
    ({"parameters": "first_layer"}, "parameters must be"),
    ({"selection": "random"}, "selection must be"),
    ({"form": "hessian"}, "form must be"),
    ({"memory_budget": 0}, "memory_budget"),
    ({"memory_budget": "1GB"}, "memory_budget"),
    ({"form": "kernel", "parameters": "last_layer"}, "form='kernel'"),
])
def test_bad_parameters_errors(labeled, params, match):
    clf, X, y, U = labeled
    with pytest.raises(ValueError, match=match):
        DynamicALQuery(**params)(learner_of(clf, X, y), U, 2)


def test_last_layer_needs_a_network_with_linear_layers(fitted, data):
    X_S, y_S, X_U = data
    clf = fitted["external"]
    with pytest.raises(ValueError, match="no linear layer"):
        DynamicALQuery(parameters="last_layer")(learner_of(clf, X_S, y_S), X_U, 2)
    bare = copy.copy(clf)
    bare.network_, bare.params_ = external_apply, clf.params_[-1]
    with pytest.raises(ValueError, match="needs a sklearn_ntkal Network"):
        DynamicALQuery(parameters="last_layer")(learner_of(bare, X_S, y_S), X_U, 2)
    positions, _ = DynamicALQuery()(learner_of(bare, X_S, y_S), X_U, 2)
    assert len(positions) == 2
