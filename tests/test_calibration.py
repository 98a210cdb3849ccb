"""Temperature calibration: the leave-one-out closed form against explicit refits, and JaxNetClassifier's use of it."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from sklearn_ntkal import JaxNetClassifier, empirical_ntk
from sklearn_ntkal.estimators.calibration import (
    RIDGE,
    fit_temperature,
    leave_one_out_residuals,
    leave_one_out_temperature,
    negative_log_likelihood,
)
from sklearn_ntkal.jax_compat import enable_x64
from sklearn_ntkal.kernel_regression import relative_ridge

SMALL = dict(network_kwargs={"hidden_layer_sizes": (32,)}, epochs=20, batch_size=32, random_state=0)


def held_out_nll(probabilities, y):
    return float(-np.mean(np.log(probabilities[np.arange(len(y)), y])))


def explicit_leave_one_out(kernel, residual, absolute_ridge):
    """``R_i - Theta(i, -i) (Theta(-i, -i) + lambda I)^-1 R_{-i}`` by one solve per row."""
    n = kernel.shape[0]
    out = np.empty_like(residual)
    for i in range(n):
        rest = np.delete(np.arange(n), i)
        alpha = np.linalg.solve(kernel[np.ix_(rest, rest)] + absolute_ridge * np.eye(n - 1), residual[rest])
        out[i] = residual[i] - kernel[i, rest] @ alpha
    return out


def test_leave_one_out_residuals_equal_explicit_refits():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(15, 6))
    kernel = features @ features.T  # rank 6: the ridge matters
    residual = rng.normal(size=(15, 3))
    expected = explicit_leave_one_out(kernel, residual, relative_ridge(kernel, 1e-2))
    np.testing.assert_allclose(leave_one_out_residuals(kernel, residual, 1e-2), expected, rtol=1e-8, atol=1e-10)


def test_fit_temperature_is_the_likelihood_maximum():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[labels]
    t = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(t) - 1, np.log(t) + 1, 2001))
    nll = [negative_log_likelihood(logits, labels, g) for g in grid]
    np.testing.assert_allclose(t, grid[int(np.argmin(nll))], rtol=2e-3)
    direct = -np.mean(log_softmax(logits / t, axis=1)[np.arange(200), labels])
    assert negative_log_likelihood(logits, labels, t) == pytest.approx(direct)
    right = 5.0 * np.eye(4)[labels]
    assert fit_temperature(right, labels) is None  # every prediction right: T -> 0
    assert fit_temperature(right[:, ::-1], labels) is None  # the labels' logits below average: T -> inf
    right[0] = right[0, ::-1]
    assert 0.0 < fit_temperature(right, labels) < 1.0  # one wrong prediction identifies T


def test_network_temperature_is_explicit_leave_one_out_at_initialisation(digits):
    """The classifier's temperature equals refitting the linearisation at theta_0 without each row in turn."""
    X_train, _, y_train, _ = digits
    X, y = X_train[:50], y_train[:50]
    clf = JaxNetClassifier(loss="mse", **SMALL).fit(X, y)
    with enable_x64(True):
        params0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), clf.initial_params_)
        prior = np.asarray(clf.network_(params0, jnp.asarray(X, jnp.float64)))
    kernel = empirical_ntk(clf.network_, clf.initial_params_, X, kind="pntk", float64=True)
    targets = np.eye(10)[y]
    explicit = targets - explicit_leave_one_out(kernel, targets - prior, relative_ridge(kernel, RIDGE))
    assert clf.temperature_ == pytest.approx(fit_temperature(explicit, y), rel=1e-4)
    assert 0.01 < clf.temperature_ < 1.0


def test_calibration_lowers_held_out_nll_of_an_mse_network(digits, mse_net):
    _, X_test, _, y_test = digits
    uncalibrated = held_out_nll(softmax(mse_net.decision_function(X_test), axis=1), y_test)
    calibrated = held_out_nll(mse_net.predict_proba(X_test), y_test)
    best = negative_log_likelihood(mse_net.decision_function(X_test), y_test,
                                   fit_temperature(mse_net.decision_function(X_test), y_test))
    assert mse_net.temperature_ < 0.5
    assert calibrated < 0.5 * uncalibrated
    assert calibrated < 1.25 * best  # close to the best temperature, which is fitted on the test set itself
    np.testing.assert_allclose(mse_net.predict_proba(X_test),
                               softmax(mse_net.decision_function(X_test) / mse_net.temperature_, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(mse_net.predict(X_test), mse_net.predict_proba(X_test).argmax(1))


def test_cross_entropy_networks_keep_their_probabilities(digits, ce_net):
    _, X_test, _, _ = digits
    assert ce_net.temperature_ == 1.0
    np.testing.assert_allclose(ce_net.predict_proba(X_test), softmax(ce_net.decision_function(X_test), axis=1),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="calibration='temperature'.*loss='mse'"):
        JaxNetClassifier(calibration="temperature").fit(X_test[:20], np.arange(20) % 2)
    with pytest.raises(ValueError, match="calibration must be one of"):
        JaxNetClassifier(calibration="platt").fit(X_test[:20], np.arange(20) % 2)


def test_calibration_none_keeps_the_softmax(digits):
    X_train, X_test, y_train, _ = digits
    clf = JaxNetClassifier(loss="mse", calibration=None, **SMALL).fit(X_train[:100], y_train[:100])
    assert clf.temperature_ == 1.0
    np.testing.assert_allclose(clf.predict_proba(X_test), softmax(clf.decision_function(X_test), axis=1), rtol=1e-5)


def test_warm_start_refits_the_temperature_at_the_first_initialisation(digits):
    X_train, _, y_train, _ = digits
    clf = JaxNetClassifier(loss="mse", warm_start=True, **SMALL).fit(X_train[:100], y_train[:100])
    first, initial = clf.temperature_, clf.initial_params_
    clf.fit(X_train[:300], y_train[:300])
    assert clf.initial_params_ is initial
    expected = leave_one_out_temperature(clf.network_, initial, X_train[:300], y_train[:300], 10)
    assert clf.temperature_ == pytest.approx(expected, rel=1e-6)
    assert clf.temperature_ != first and 0.0 < clf.temperature_ < 1.0


def test_partial_fit_calibrates_each_call_and_keeps_the_temperature_on_tiny_batches(digits):
    X_train, _, y_train, _ = digits
    clf = JaxNetClassifier(loss="mse", **SMALL)
    clf.partial_fit(X_train[:200], y_train[:200], classes=np.arange(10))
    assert 0.0 < clf.temperature_ < 1.0
    expected = leave_one_out_temperature(clf.network_, clf.initial_params_, X_train[:200], y_train[:200], 10)
    assert clf.temperature_ == pytest.approx(expected, rel=1e-6)
    before = clf.temperature_
    clf.partial_fit(X_train[200:203], y_train[200:203])  # three rows cannot identify a temperature
    assert clf.temperature_ == before
    fresh = JaxNetClassifier(loss="mse", **SMALL).partial_fit(X_train[:3], y_train[:3], classes=np.arange(10))
    assert fresh.temperature_ == 1.0


def test_user_network_is_calibrated_through_autodiff_kernels(digits, tanh_stax_pair):
    X_train, X_test, y_train, y_test = digits

    clf = JaxNetClassifier(network=tanh_stax_pair, loss="mse", epochs=30, random_state=0).fit(
        X_train[:300], y_train[:300])
    assert 0.0 < clf.temperature_ < 0.5
    uncalibrated = held_out_nll(softmax(clf.decision_function(X_test), axis=1), y_test)
    assert held_out_nll(clf.predict_proba(X_test), y_test) < 0.5 * uncalibrated


@pytest.mark.parametrize("rows", [slice(0, 2), slice(0, 10)])
def test_tiny_training_sets_fall_back_to_no_temperature(digits, rows):
    X_train, X_test, y_train, _ = digits
    one_each = np.array([np.flatnonzero(y_train == c)[0] for c in range(10)])[rows]  # one row per class
    clf = JaxNetClassifier(loss="mse", **SMALL).fit(X_train[one_each], y_train[one_each])
    assert clf.temperature_ == 1.0
    assert np.all(np.isfinite(clf.predict_proba(X_test)))


def test_temperature_and_initial_params_survive_pickling(mse_net, digits):
    _, X_test, _, _ = digits
    restored = pickle.loads(pickle.dumps(mse_net))
    assert restored.temperature_ == mse_net.temperature_
    np.testing.assert_allclose(restored.predict_proba(X_test), mse_net.predict_proba(X_test), rtol=1e-6)
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(restored.initial_params_), leaves(mse_net.initial_params_)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
