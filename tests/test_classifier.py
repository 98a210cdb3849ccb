"""JaxNetClassifier: accuracy, scikit-learn conventions, labels, pickling, networks and bad input."""

import pickle

import jax
import numpy as np
import optax
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ntkal import JaxNetClassifier, empirical_ntk
from sklearn_ntkal.networks import Dense, Relu, Serial

FAST = dict(network_kwargs={"hidden_layer_sizes": (32,)}, epochs=40, batch_size=32, random_state=0)

# Checks expected to fail, with the reason.
EXPECTED_FAILURES = {}
if tuple(int(part) for part in jax.__version__.split(".")[:3]) < (0, 4, 32):
    EXPECTED_FAILURES["check_methods_sample_order_invariance"] = (
        "XLA's CPU runtime before jax 0.4.32 can round a float32 output one ulp differently with the row's "
        "position in a batch; the check demands rtol 1e-7, finer than float32 resolution")


@parametrize_with_checks([JaxNetClassifier(**FAST), JaxNetClassifier(loss="mse", **FAST)],
                         expected_failed_checks=lambda est: EXPECTED_FAILURES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_default_reaches_95_percent_on_digits(digits):
    X_train, X_test, y_train, y_test = digits
    clf = JaxNetClassifier(random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.95


def test_mse_loss_and_cnn_learn_digits(digits):
    X_train, X_test, y_train, y_test = digits
    mse = JaxNetClassifier(loss="mse", random_state=0, epochs=60).fit(X_train, y_train)
    conv = JaxNetClassifier(network="cnn", network_kwargs={"channels": (8, 16), "dense_width": 32},
                            epochs=45, random_state=0).fit(X_train, y_train)
    assert mse.score(X_test, y_test) >= 0.9
    assert conv.score(X_test, y_test) >= 0.9


def test_apply_fn_is_exactly_what_predicts(digits, small_mlp_factory):
    X_train, X_test, y_train, _ = digits
    clf = small_mlp_factory(X_train, y_train, epochs=3)
    outputs = np.asarray(clf.apply_fn(clf.params_, X_test.astype(np.float32)))
    np.testing.assert_allclose(outputs, clf.decision_function(X_test), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(clf.classes_[outputs.argmax(1)], clf.predict(X_test))
    np.testing.assert_allclose(clf.predict_proba(X_test), jax.nn.softmax(outputs), rtol=1e-4, atol=1e-6)


def test_ntk_method_is_the_engine_on_its_own_network(digits, small_mlp_factory):
    X_train, X_test, y_train, _ = digits
    clf = small_mlp_factory(X_train, y_train, epochs=2)
    direct = empirical_ntk(clf.network_, clf.params_, X_test[:6], X_test[6:9], kind="pntk", float64=True)
    np.testing.assert_allclose(clf.ntk(X_test[:6], X_test[6:9], kind="pntk", float64=True), direct, rtol=1e-12)
    assert clf.ntk(X_test[:4]).shape == (4, 4, 10, 10)


def test_arbitrary_labels_strings_and_gaps(digits):
    X_train, X_test, y_train, _ = digits
    mask = y_train < 3
    names = np.array(["zero", "one", "two"])[y_train[mask]]
    clf = JaxNetClassifier(**FAST).fit(X_train[mask], names)
    assert set(clf.predict(X_test)) <= set(names)
    gaps = np.array([10, 20, 70])[y_train[mask]]
    clf = JaxNetClassifier(**FAST).fit(X_train[mask], gaps)
    np.testing.assert_array_equal(clf.classes_, [10, 20, 70])
    assert clf.score(X_train[mask], gaps) > 0.9


def test_pandas_input(digits):
    pd = pytest.importorskip("pandas")
    X_train, X_test, y_train, _ = digits
    frame = pd.DataFrame(X_train, columns=[f"px{i}" for i in range(X_train.shape[1])])
    clf = JaxNetClassifier(**FAST).fit(frame, pd.Series(y_train))
    with pytest.warns(UserWarning, match="feature names"):
        from_array = clf.predict(X_train[:20])
    np.testing.assert_array_equal(clf.predict(frame.iloc[:20]), from_array)


def test_pickle_and_clone(digits, small_mlp_factory):
    X_train, X_test, y_train, _ = digits
    clf = small_mlp_factory(X_train, y_train, epochs=2)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.decision_function(X_test), clf.decision_function(X_test), rtol=1e-6)
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params()
    assert not hasattr(fresh, "params_")


def test_random_state_makes_fits_reproducible(digits):
    X_train, X_test, y_train, _ = digits
    a = JaxNetClassifier(**FAST).fit(X_train, y_train).decision_function(X_test)
    b = JaxNetClassifier(**FAST).fit(X_train, y_train).decision_function(X_test)
    c = JaxNetClassifier(**{**FAST, "random_state": 1}).fit(X_train, y_train).decision_function(X_test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_warm_start_continues_from_current_weights(digits):
    X_train, _, y_train, _ = digits
    clf = JaxNetClassifier(**{**FAST, "epochs": 5, "warm_start": True}).fit(X_train, y_train)
    first = clf.loss_curve_[-1]
    clf.fit(X_train, y_train)
    assert len(clf.loss_curve_) == 10
    assert clf.loss_curve_[5] < first * 1.05


def test_warm_start_fit_restarts_the_optimiser_and_partial_fit_keeps_it(digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:256], y_train[:256]
    clf = JaxNetClassifier(**{**FAST, "epochs": 3, "warm_start": True}).fit(X, y)
    steps_per_fit = 3 * 256 // FAST["batch_size"]
    assert int(optax.tree_utils.tree_get(clf._opt_state, "count")) == steps_per_fit
    clf.fit(X, y)
    assert int(optax.tree_utils.tree_get(clf._opt_state, "count")) == steps_per_fit
    assert len(clf.loss_curve_) == 6
    clf.partial_fit(X, y)
    assert int(optax.tree_utils.tree_get(clf._opt_state, "count")) == steps_per_fit + 256 // FAST["batch_size"]


def test_partial_fit_needs_classes_then_rejects_unknown_labels(digits):
    X_train, _, y_train, _ = digits
    clf = JaxNetClassifier(**FAST)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X_train[:50], y_train[:50])
    clf.partial_fit(X_train[:50], y_train[:50], classes=np.arange(10))
    losses = [clf.partial_fit(X_train, y_train).loss_curve_[-1] for _ in range(5)]
    assert losses[-1] < clf.loss_curve_[0]
    with pytest.raises(ValueError, match="not seen"):
        clf.partial_fit(X_train[:5], np.full(5, 11))


def test_early_stopping_stops_and_keeps_best(digits):
    X_train, _, y_train, _ = digits
    clf = JaxNetClassifier(**{**FAST, "epochs": 500, "early_stopping": True, "n_iter_no_change": 3}).fit(
        X_train, y_train)
    assert clf.n_iter_ < 500


def test_optax_transformation_and_named_optimizers(digits):
    X_train, X_test, y_train, y_test = digits
    for optimizer in (optax.sgd(0.05, momentum=0.9), "adamw", "rmsprop"):
        clf = JaxNetClassifier(**{**FAST, "optimizer": optimizer}).fit(X_train, y_train)
        assert clf.score(X_test, y_test) > 0.85


def test_images_as_flat_rows_or_nhwc(digits):
    X_train, X_test, y_train, _ = digits
    kwargs = dict(network="cnn", network_kwargs={"channels": (4,), "dense_width": 16}, epochs=2, random_state=0)
    flat = JaxNetClassifier(input_shape=(8, 8, 1), **kwargs).fit(X_train, y_train)
    nhwc = JaxNetClassifier(**kwargs).fit(X_train.reshape(-1, 8, 8, 1), y_train)
    inferred = JaxNetClassifier(**kwargs).fit(X_train, y_train)
    np.testing.assert_allclose(flat.decision_function(X_test), nhwc.decision_function(X_test.reshape(-1, 8, 8, 1)),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(flat.decision_function(X_test), inferred.decision_function(X_test),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="input_shape"):
        JaxNetClassifier(**kwargs).fit(X_train[:, :60], y_train)


def test_user_stax_pair_and_layers(digits, tanh_stax_pair):
    X_train, X_test, y_train, y_test = digits

    clf = JaxNetClassifier(network=tanh_stax_pair, epochs=20, random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.9
    assert clf.ntk(X_test[:3]).shape == (3, 3, 10, 10)
    layered = JaxNetClassifier(network=Serial(Dense(32), Relu(), Dense(10)), epochs=20, random_state=0)
    assert layered.fit(X_train, y_train).score(X_test, y_test) > 0.9
    with pytest.raises(ValueError, match="one value per class"):
        JaxNetClassifier(network=Serial(Dense(3)), epochs=1).fit(X_train, y_train)


def test_equinox_module(digits):
    eqx = pytest.importorskip("equinox")
    X_train, X_test, y_train, y_test = digits
    model = eqx.nn.MLP(64, 10, 32, 1, key=jax.random.PRNGKey(0))
    clf = JaxNetClassifier(network=model, epochs=20, random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.85
    assert clf.ntk(X_test[:2], kind="pntk").shape == (2, 2)


def test_flax_module(digits):
    linen = pytest.importorskip("flax.linen")
    X_train, X_test, y_train, y_test = digits

    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(10)(linen.relu(linen.Dense(32)(x)))

    clf = JaxNetClassifier(network=Net(), epochs=20, random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.85


@pytest.mark.parametrize(
    "X, match",
    [
        (np.full((5, 64), np.nan), "NaN"),
        (np.full((5, 64), np.inf), "infinity"),
        (np.ones((5, 63)), "features"),
        (np.ones(64), "2D array"),
    ],
)
def test_bad_input_raises_clear_errors(digits, small_mlp_factory, X, match):
    X_train, _, y_train, _ = digits
    clf = small_mlp_factory(X_train[:100], y_train[:100], epochs=1)
    with pytest.raises(ValueError, match=match):
        clf.predict(X)


def test_predict_before_fit_and_bad_parameters():
    with pytest.raises(NotFittedError):
        JaxNetClassifier().predict(np.ones((2, 3)))
    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    for params, match in [({"loss": "hinge"}, "loss"), ({"epochs": 0}, "epochs"), ({"network": "rnn"}, "unknown network"),
                          ({"optimizer": "lbfgsb"}, "optimizer"), ({"validation_fraction": 1.5}, "validation_fraction")]:
        with pytest.raises(ValueError, match=match):
            JaxNetClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        JaxNetClassifier().fit(np.full((4, 3), np.nan), [0, 1, 0, 1])


def test_user_arrays_are_not_mutated(digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:100].copy(), y_train[:100].copy()
    clf = JaxNetClassifier(**{**FAST, "epochs": 2}).fit(X, y)
    clf.predict(X)
    clf.ntk(X[:3], kind="pntk")
    np.testing.assert_array_equal(X, X_train[:100])
    np.testing.assert_array_equal(y, y_train[:100])
