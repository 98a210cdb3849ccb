"""Bad inputs at every public entry point: the right error, a message naming the problem, inputs unchanged."""

import copy
import types

import jax
import numpy as np
import pytest
import scipy.sparse

from sklearn_ntkal import (
    ActiveLearningClassifier,
    BADGEQuery,
    CoresetQuery,
    DynamicALQuery,
    JaxNetClassifier,
    LinearizedClassifier,
    NTKLookAheadQuery,
    RandomQuery,
    RetrainLookAheadQuery,
    UncertaintyQuery,
    empirical_ntk,
    run_active_learning,
)
from sklearn_ntkal.engine import bind

N_LABELED, N_POOL = 60, 40
FAST = {"network_kwargs": {"hidden_layer_sizes": (16,)}, "epochs": 3, "batch_size": 32, "random_state": 0}
STRATEGIES = {
    "random": lambda: RandomQuery(random_state=0),
    "uncertainty": lambda: UncertaintyQuery(),
    "badge": lambda: BADGEQuery(random_state=0),
    "coreset": lambda: CoresetQuery(),
    "dynamical": lambda: DynamicALQuery(),
    "ntk_lookahead": lambda: NTKLookAheadQuery(n_candidates=10, random_state=0),
    "retrain": lambda: RetrainLookAheadQuery(epochs=1, n_candidates=2, random_state=0),
}
LABEL_STRATEGIES = ["coreset", "dynamical", "ntk_lookahead", "retrain"]


@pytest.fixture(scope="module")
def ctx(digits):
    """A tiny MLP fitted on 60 digits, its labelled set, a pool of 40 and their scikit-activeml form."""
    X_train, _, y_train, _ = digits
    X_L, y_L, X_U = X_train[:N_LABELED], y_train[:N_LABELED], X_train[N_LABELED:N_LABELED + N_POOL]
    net = JaxNetClassifier(**FAST).fit(X_L, y_L)
    X = np.concatenate([X_L, X_U])
    y = np.concatenate([y_L.astype(float), np.full(N_POOL, np.nan)])
    return types.SimpleNamespace(net=net, X_L=X_L, y_L=y_L, X_U=X_U, X=X, y=y)


def learner(ctx, estimator=None, X_training=None, y_training=None):
    """A modAL-like learner: the fitted network and the labelled set, unless given others."""
    return types.SimpleNamespace(estimator=ctx.net if estimator is None else estimator,
                                 X_training=ctx.X_L if X_training is None else X_training,
                                 y_training=ctx.y_L if y_training is None else y_training)


def with_value(X, row, value, dtype=None):
    """A copy of ``X`` (as ``dtype``) with ``value`` at ``[row, 3]``."""
    X = np.array(X, dtype=dtype or X.dtype)
    X[row, 3] = value
    return X


def assert_raises_unchanged(call, inputs, error, match):
    """``call()`` raises ``error`` matching ``match``, and every array of ``inputs`` is as it was before."""
    before = [copy.deepcopy(value) for value in inputs]
    with pytest.raises(error, match=match):
        call()
    for value, saved in zip(inputs, before):
        np.testing.assert_array_equal(value, saved)


# ------------------------------------------------------------------ strategies, modAL convention
@pytest.mark.parametrize("name", LABEL_STRATEGIES)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_labelled_set_with_nan_or_inf_is_refused(ctx, name, value):
    X_training = with_value(ctx.X_L, 7, value)
    assert_raises_unchanged(lambda: STRATEGIES[name]()(learner(ctx, X_training=X_training), ctx.X_U, 2), [X_training],
                            ValueError, r"X_training contains NaN or infinity at rows \[7\]")


@pytest.mark.parametrize("name", LABEL_STRATEGIES)
def test_labelled_set_of_another_length_than_its_labels(ctx, name):
    y_training = ctx.y_L[:-1].copy()
    assert_raises_unchanged(lambda: STRATEGIES[name]()(learner(ctx, y_training=y_training), ctx.X_U, 2),
                            [y_training], ValueError, "X_training has 60 rows but y_training has 59 labels")


def test_labels_with_nan_are_refused(ctx):
    y_training = ctx.y_L.astype(float)
    y_training[4] = np.nan
    assert_raises_unchanged(lambda: DynamicALQuery()(learner(ctx, y_training=y_training), ctx.X_U, 2),
                            [y_training], ValueError, r"y_training contains NaN or None at rows \[4\]")


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("value, dtype, match", [
    (np.nan, np.float32, r"X_pool contains NaN or infinity at rows \[5\]"),
    (-np.inf, np.float64, r"X_pool contains NaN or infinity at rows \[5\]"),
    (1e39, np.float64, r"X_pool contains values too large for float32 \(largest magnitude 1e\+39"),
    (1e30, np.float32, r"X_pool contains values too large for float32 \(largest magnitude 1e\+30, at rows \[5\]\)"),
])
def test_pool_with_nan_inf_or_overflowing_values_is_refused(ctx, name, value, dtype, match):
    X_pool = with_value(ctx.X_U, 5, value, dtype)
    assert_raises_unchanged(lambda: STRATEGIES[name]()(learner(ctx), X_pool, 2), [X_pool], ValueError, match)


@pytest.fixture(scope="module")
def overflowing(ctx):
    """The network with its weights scaled by 1e20: its outputs and features on the pool overflow float32."""
    net = copy.copy(ctx.net)
    net.params_ = jax.tree_util.tree_map(lambda a: a * 1e20, ctx.net.params_)
    net.engine_ = bind(net.network_, net.params_)
    return net


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", ["badge", "coreset", "uncertainty"])
def test_scores_that_overflow_raise_instead_of_deciding_the_query(ctx, overflowing, name):
    X_pool = ctx.X_U.copy()
    assert_raises_unchanged(lambda: STRATEGIES[name]()(learner(ctx, overflowing), X_pool, 3), [X_pool], ValueError,
                            "overflow float32")


@pytest.mark.parametrize("make, error, match", [
    (lambda X: X.reshape(N_POOL, 8, 8), ValueError,
     r"X_pool has 3 dimensions \(40, 8, 8\); expected a 2D array of 64 features"),
    (lambda X: X[0], ValueError, r"X_pool has 1 dimension \(64,\); expected a 2D array of 64 features"),
    (lambda X: X[:, :63], ValueError, "X_pool has 63 features but the estimator was fitted with 64"),
    (lambda X: X[:0], ValueError, r"X_pool is empty \(0 samples\)"),
    (lambda X: X.astype(str), TypeError, "X_pool must be numeric, got dtype <U"),
    (lambda X: scipy.sparse.csr_matrix(X), TypeError, "X_pool is a sparse matrix"),
    (lambda X: np.array([["a"] * 64] * 3, dtype=object), TypeError, r"X_pool must hold numbers; .*\['str'\]"),
])
def test_pool_of_the_wrong_shape_or_type(ctx, make, error, match):
    X_pool = make(ctx.X_U)
    inputs = [] if scipy.sparse.issparse(X_pool) else [X_pool]
    assert_raises_unchanged(lambda: DynamicALQuery()(learner(ctx), X_pool, 1), inputs, error, match)


@pytest.mark.parametrize("n_instances, error, match", [
    (0, ValueError, "n_instances must be a positive integer, got 0"),
    (1.5, TypeError, "n_instances must be a positive integer, got 1.5"),
    (True, TypeError, "n_instances must be a positive integer, got True"),
    (N_POOL + 1, ValueError, "n_instances=41 is larger than the pool of 40 candidates"),
])
def test_bad_n_instances(ctx, n_instances, error, match):
    assert_raises_unchanged(lambda: CoresetQuery()(learner(ctx), ctx.X_U, n_instances), [ctx.X_U], error, match)


def test_unknown_labels_and_no_labelled_data(ctx):
    y_training = np.where(np.arange(N_LABELED) == 0, 99, ctx.y_L)
    assert_raises_unchanged(lambda: CoresetQuery()(learner(ctx, y_training=y_training), ctx.X_U, 1), [y_training],
                            ValueError, r"labels \[99\] are unknown to the estimator")
    empty = learner(ctx, X_training=ctx.X_L[:0], y_training=ctx.y_L[:0])
    assert_raises_unchanged(lambda: CoresetQuery()(empty, ctx.X_U, 1), [], ValueError, "no labelled data")


def test_bool_and_numeric_object_pools_are_accepted_as_by_the_classifier(ctx):
    binary = ctx.X_U > 8
    as_object = ctx.X_U.astype(object)
    strategy = UncertaintyQuery("margin")
    expected = strategy(learner(ctx), binary.astype(np.float32), 3)
    for pool in (binary, binary.tolist()):
        np.testing.assert_array_equal(strategy(learner(ctx), pool, 3)[0], expected[0])
    np.testing.assert_array_equal(strategy(learner(ctx), as_object, 3)[0], strategy(learner(ctx), ctx.X_U, 3)[0])
    np.testing.assert_array_equal(ctx.net.predict_proba(binary), ctx.net.predict_proba(binary.astype(np.float32)))
    np.testing.assert_array_equal(ctx.net.predict(as_object), ctx.net.predict(ctx.X_U))
    assert binary.dtype == bool and as_object.dtype == object


# ------------------------------------------------------------------ strategies, scikit-activeml convention
@pytest.mark.parametrize("name", LABEL_STRATEGIES)
def test_query_with_nan_in_a_labelled_row(ctx, name):
    X = with_value(ctx.X, 2, np.nan)
    assert_raises_unchanged(lambda: STRATEGIES[name]().query(X, ctx.y, ctx.net, batch_size=2), [X, ctx.y],
                            ValueError, r"X contains NaN or infinity at rows \[2\]")


@pytest.mark.parametrize("candidates, error, match", [
    ([-1, 61], ValueError, r"candidates contains indices out of range \[-1\]; X has 100 rows"),
    ([61, 100], ValueError, r"candidates contains indices out of range \[100\]"),
    ([61, 63, 63], ValueError, r"candidates contains repeated indices \[63\]"),
    ([61.0, 62.7], TypeError, "candidates must be integer row indices into X, got dtype float64"),
    ([True, False], TypeError, "candidates must be integer row indices into X, got dtype bool"),
    ([], ValueError, "candidates is empty"),
    ([3, 61], ValueError, r"candidates contains labelled rows \[3\]"),
    (np.ones((4, 64)), TypeError, r"candidates must be a 1-D array of row indices into X, got shape \(4, 64\)"),
])
def test_bad_candidates(ctx, candidates, error, match):
    candidates = np.asarray(candidates)
    assert_raises_unchanged(lambda: RandomQuery().query(ctx.X, ctx.y, ctx.net, candidates=candidates),
                            [candidates, ctx.X, ctx.y], error, match)


def test_candidates_are_returned_as_given_rows(ctx):
    candidates = np.array([70, 61, 90])
    chosen = UncertaintyQuery().query(ctx.X, ctx.y, ctx.net, batch_size=3, candidates=candidates)
    assert sorted(chosen.tolist()) == [61, 70, 90]
    np.testing.assert_array_equal(candidates, [70, 61, 90])


@pytest.mark.parametrize("make, error, match", [
    (lambda c: (c.X, c.y[:-1], 1, None), ValueError, "X has 100 rows but y has 99 labels"),
    (lambda c: (c.X, c.y[:, None], 1, None), ValueError, r"y must be a 1-D array of labels"),
    (lambda c: (c.X, np.full(100, np.nan), 1, None), ValueError, "y has no labelled data"),
    (lambda c: (c.X, np.where(np.arange(100) < 100, 1.0, 0), 1, None), ValueError,
     "every row of X is labelled"),
    (lambda c: (c.X, c.y, 4, np.array([61, 62, 63])), ValueError,
     "batch_size=4 is larger than the pool of 3 candidates"),
    (lambda c: (c.X.reshape(100, 8, 8), c.y, 1, None), ValueError, r"X has 3 dimensions \(100, 8, 8\)"),
])
def test_bad_query_arguments(ctx, make, error, match):
    X, y, batch_size, candidates = make(ctx)
    assert_raises_unchanged(lambda: DynamicALQuery().query(X, y, ctx.net, batch_size=batch_size,
                                                           candidates=candidates), [X, y], error, match)


def test_oracle_of_a_query_labels_rows_of_x(ctx):
    seen = []

    def oracle(rows):
        seen.append(np.asarray(rows).tolist())
        return np.zeros(len(rows), dtype=int)

    candidates = np.array([90, 61, 75, 80])
    strategy = NTKLookAheadQuery(objective="mlmoc", mode="sequential", n_candidates=None, random_state=0)
    chosen = strategy.query(ctx.X, ctx.y, ctx.net, batch_size=2, candidates=candidates, oracle=oracle)
    assert seen == [[int(chosen[0])]] and set(chosen) <= set(candidates)


# ------------------------------------------------------------------ strategy parameters
@pytest.mark.parametrize("strategy, match", [
    (NTKLookAheadQuery(ridge=np.inf), r"ridge must be a float in the range \[0.0, inf\), got inf"),
    (NTKLookAheadQuery(ridge=-1.0), "ridge must be a float in the range"),
    (NTKLookAheadQuery(kernel="ntk"), r"kernel must be one of \{'full', 'pntk', 'trace'\}, got 'ntk'"),
    (NTKLookAheadQuery(n_candidates=0), "n_candidates must be an int in the range"),
    (NTKLookAheadQuery(prefilter=True), "prefilter must be"),
    (DynamicALQuery(memory_budget=True), "memory_budget must be"),
    (DynamicALQuery(selection="random"), "selection must be one of"),
    (UncertaintyQuery("variance"), "measure must be one of"),
    (RetrainLookAheadQuery(epochs=0), "epochs must be an int in the range"),
    (BADGEQuery(random_state="seed"), "random_state must be"),
])
def test_bad_strategy_parameters(ctx, strategy, match):
    assert_raises_unchanged(lambda: strategy(learner(ctx), ctx.X_U, 1), [ctx.X_U], ValueError, match)


# ------------------------------------------------------------------ the classifier
@pytest.mark.parametrize("make, error, match", [
    (lambda X, y: (with_value(X, 1, np.nan), y), ValueError, r"X contains NaN or infinity at rows \[1\]"),
    (lambda X, y: (with_value(X, 1, 1e39, np.float64), y), ValueError, "X contains values too large for float32"),
    (lambda X, y: (X, np.where(np.arange(len(y)) == 2, np.nan, y)), ValueError,
     r"y contains NaN or None at rows \[2\]"),
    (lambda X, y: (X, y[:-1]), ValueError, "X has 60 rows but y has 59 labels"),
    (lambda X, y: (X, np.zeros_like(y)), ValueError, r"y has one class only \(\[0\]\)"),
    (lambda X, y: (X, y + 0.5), ValueError, "Unknown label type"),
    (lambda X, y: (X[:0], y[:0]), ValueError, r"X is empty \(0 samples\)"),
    (lambda X, y: (X.astype(str), y), TypeError, "X must be numeric"),
    (lambda X, y: (scipy.sparse.csr_matrix(X), y), TypeError, "X is a sparse matrix"),
])
def test_classifier_fit_refuses_bad_data(ctx, make, error, match):
    X, y = make(ctx.X_L, ctx.y_L)
    inputs = [y] if scipy.sparse.issparse(X) else [X, y]
    assert_raises_unchanged(lambda: JaxNetClassifier(**FAST).fit(X, y), inputs, error, match)


def test_partial_fit_refuses_a_single_class(ctx):
    assert_raises_unchanged(lambda: JaxNetClassifier(**FAST).partial_fit(ctx.X_L, ctx.y_L, classes=[3]),
                            [ctx.X_L], ValueError, r"classes has one class only \(\[3\]\)")


@pytest.mark.parametrize("params, match", [
    ({"epochs": 0}, "epochs must be an int in the range"),
    ({"learning_rate": -1.0}, "learning_rate must be"),
    ({"loss": "hinge"}, r"loss must be one of \{'cross_entropy', 'mse'\}"),
    ({"standardize": "zscore"}, "standardize must be"),
    ({"batch_size": True}, "batch_size must be an int in the range"),
])
def test_classifier_parameters(ctx, params, match):
    assert_raises_unchanged(lambda: JaxNetClassifier(**{**FAST, **params}).fit(ctx.X_L, ctx.y_L), [ctx.X_L],
                            ValueError, match)


@pytest.mark.parametrize("make, match", [
    (lambda X: X.reshape(N_POOL, 8, 8), r"X has 3 dimensions \(40, 8, 8\); expected a 2D array of 64 features"),
    (lambda X: X[0], r"X has 1 dimension \(64,\); expected a 2D array of 64 features"),
    (lambda X: with_value(X, 0, 1e30), r"X contains values too large for float32 \(largest magnitude 1e\+30"),
    (lambda X: with_value(X, 3, np.inf), r"X contains NaN or infinity at rows \[3\]"),
])
def test_classifier_predictions_refuse_bad_inputs(ctx, make, match):
    X = make(ctx.X_U)
    assert_raises_unchanged(lambda: ctx.net.predict_proba(X), [X], ValueError, match)


def test_ntk_of_the_classifier_refuses_nan(ctx):
    X = with_value(ctx.X_U[:4], 0, np.nan)
    assert_raises_unchanged(lambda: ctx.net.ntk(X, kind="pntk"), [X], ValueError, "X contains NaN")


def test_network_outputs_that_overflow_raise(ctx, overflowing):
    assert_raises_unchanged(lambda: overflowing.predict_proba(ctx.X_U), [ctx.X_U], ValueError,
                            r"the network's outputs on X overflow float32 at rows \[0, 1, 2, 3, 4, '...'\]")


def test_training_values_that_overflow_float32_when_squared_are_refused(ctx):
    X = with_value(ctx.X_L, 0, 1e30)
    assert_raises_unchanged(lambda: JaxNetClassifier(**FAST).fit(X, ctx.y_L), [X], ValueError,
                            r"X contains values too large for float32 \(largest magnitude 1e\+30, at rows \[0\]\): "
                            r".* the square of a value above 1.84e\+19 overflows")


def test_standardisation_statistics_do_not_overflow(ctx):
    X = with_value(ctx.X_L, 0, 1.5e19)
    saved = X.copy()
    with np.errstate(over="raise", invalid="raise"):
        net = JaxNetClassifier(**FAST).fit(X, ctx.y_L)
    scale = np.asarray(net.network_.layer.layers[0].layers[0].scale)
    np.testing.assert_allclose(scale[3], X[:, 3].astype(np.float64).std(), rtol=1e-6)
    assert np.all(np.isfinite(scale)) and np.all(np.isfinite(net.predict_proba(X)))
    np.testing.assert_array_equal(X, saved)


# ------------------------------------------------------------------ the linearised model
@pytest.mark.parametrize("call, match", [
    (lambda c, X: LinearizedClassifier(c.net, ridge=np.inf).fit(X, c.y_L), "ridge must be a float in the range"),
    (lambda c, X: LinearizedClassifier(c.net).fit(with_value(X, 0, np.nan), c.y_L), "X contains NaN"),
    (lambda c, X: LinearizedClassifier(c.net).fit(X.reshape(N_LABELED, 8, 8), c.y_L), "X has 3 dimensions"),
    (lambda c, X: LinearizedClassifier(c.net).fit(X, c.y_L[:10]), "X has 60 rows but y has 10 labels"),
    (lambda c, X: LinearizedClassifier(c.net).fit(X[:20], c.y_L[:20]).posterior(with_value(X, 0, np.inf)),
     "X contains NaN or infinity"),
])
def test_linearized_classifier_refuses_bad_inputs(ctx, call, match):
    X = ctx.X_L.copy()
    assert_raises_unchanged(lambda: call(ctx, X), [X], ValueError, match)


# ------------------------------------------------------------------ empirical_ntk
@pytest.mark.parametrize("make, kwargs, match", [
    (lambda X: (X[:3, :9], None), {}, r"apply_fn does not take samples of shape \(9,\)"),
    (lambda X: (X[:3], with_value(X[:2], 0, np.nan)), {}, r"x2 contains NaN or infinity at rows \[0\]"),
    (lambda X: (with_value(X[:3], 1, 1e39, np.float64), None), {}, "x1 contains values too large for float32"),
    (lambda X: (X[:3], X[:2, :63]), {}, "x1 and x2 have different sample shapes"),
    (lambda X: (X[:3], None), {"kind": "diag"}, "kind must be one of"),
    (lambda X: (X[:0], None), {}, "x1 is empty"),
])
def test_empirical_ntk_refuses_bad_inputs(ctx, make, kwargs, match):
    x1, x2 = make(ctx.X_U)
    inputs = [x1] if x2 is None else [x1, x2]
    assert_raises_unchanged(lambda: empirical_ntk(ctx.net.network_, ctx.net.params_, x1, x2, **kwargs), inputs,
                            ValueError, match)


# ------------------------------------------------------------------ the loop
@pytest.mark.parametrize("change, error, match", [
    ({"X_pool": lambda X: with_value(X, 9, np.nan)}, ValueError, r"X_pool contains NaN or infinity at rows \[9\]"),
    ({"y_pool": lambda y: y[:-1]}, ValueError, "X_pool has 100 rows but y_pool has 99 labels"),
    ({"initial_indices": lambda i: i.astype(float)}, TypeError, "initial_indices must be integer row indices"),
    ({"initial_indices": lambda i: i - 1}, ValueError, r"initial_indices contains indices out of range \[-1\]"),
    ({"n_rounds": lambda n: -1}, ValueError, "n_rounds must be an int in the range"),
    ({"batch_size": lambda n: 1.5}, ValueError, "batch_size must be an int in the range"),
    ({"X_eval": lambda X: X[:, :10]}, ValueError, "X_eval has 10 features"),
])
def test_loop_refuses_bad_inputs(ctx, change, error, match):
    args = {"X_pool": ctx.X.copy(), "y_pool": np.concatenate([ctx.y_L, ctx.y_L[:N_POOL]]),
            "initial_indices": np.arange(20), "n_rounds": 1, "batch_size": 2, "X_eval": ctx.X_U.copy()}
    args.update({name: make(args[name]) for name, make in change.items()})
    inputs = [args[name] for name in ("X_pool", "y_pool", "initial_indices", "X_eval")]
    assert_raises_unchanged(lambda: run_active_learning(
        ctx.net, RandomQuery(), args["X_pool"], args["y_pool"], args["X_eval"], ctx.y_L[:N_POOL],
        args["initial_indices"], args["n_rounds"], args["batch_size"]), inputs, error, match)


@pytest.mark.parametrize("params, X, match", [
    ({"eval_fraction": 1.5}, None, "eval_fraction must be"),
    ({"initial_size": 0}, None, "initial_size must be an int in the range"),
    ({}, lambda X: with_value(X, 0, np.nan), "X contains NaN"),
])
def test_active_learning_classifier_refuses_bad_inputs(ctx, params, X, match):
    X = ctx.X_L.copy() if X is None else X(ctx.X_L)
    assert_raises_unchanged(lambda: ActiveLearningClassifier(ctx.net, **params).fit(X, ctx.y_L), [X], ValueError,
                            match)


# Bad command-line values are held by tests/test_cli.py::test_invalid_protocol_values_exit_2_with_a_usage_error.
