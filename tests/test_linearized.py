"""Tests of the kernel-regression algebra and `LinearizedClassifier` against direct solves."""

import copy
import pickle
from unittest import mock

import jax
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from sklearn_ntkal import kernel_regression as kr
from sklearn_ntkal.estimators.linearized import LinearizedClassifier, linearized_memory, network_outputs
from sklearn_ntkal.jax_compat import enable_x64
from sklearn_ntkal.engine import empirical_ntk

KERNELS = ("pntk", "full", "trace")
SPACES = ("logits", "probabilities")


# Independent references: every kernel in C x C block form, solved with numpy.

def reference_outputs(clf, X, space):
    """Network outputs in the output space, float64: logits, or ``softmax(f / T)`` with the network's temperature."""
    logits = network_outputs(clf, X, float64=True)
    if space == "logits":
        return logits
    scaled = logits / getattr(clf, "temperature_", 1.0)
    e = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference_kernel(clf, X1, X2, kernel, space):
    """(n1 C, n2 C) kernel of the linearised outputs, scalar kernels expanded to ``theta (x) I_C``."""
    theta = clf.ntk(X1, X2, kind=kernel, float64=True)
    n_classes = len(clf.classes_)
    if theta.ndim == 2:
        theta = theta[:, :, None, None] * np.eye(n_classes)
    if space == "probabilities":
        p1, p2 = reference_outputs(clf, X1, space), reference_outputs(clf, X2, space)
        t = getattr(clf, "temperature_", 1.0)
        a1 = (np.einsum("ia,ab->iab", p1, np.eye(n_classes)) - p1[:, :, None] * p1[:, None, :]) / t
        a2 = (np.einsum("ia,ab->iab", p2, np.eye(n_classes)) - p2[:, :, None] * p2[:, None, :]) / t
        theta = np.einsum("iab,ijbc,jdc->ijad", a1, theta, a2)
    return theta.transpose(0, 2, 1, 3).reshape(X1.shape[0] * n_classes, X2.shape[0] * n_classes)


def reference_fit(clf, X_L, y_L, X_Z, ridge, kernel, space):
    """``f~_L(Z)`` (n_Z, C) by a direct solve with absolute ``ridge``."""
    n_classes = len(clf.classes_)
    targets = np.eye(n_classes)[np.searchsorted(clf.classes_, y_L)]
    K = reference_kernel(clf, X_L, X_L, kernel, space) + ridge * np.eye(X_L.shape[0] * n_classes)
    residual = (targets - reference_outputs(clf, X_L, space)).ravel()
    change = reference_kernel(clf, X_Z, X_L, kernel, space) @ np.linalg.solve(K, residual)
    return reference_outputs(clf, X_Z, space) + change.reshape(-1, n_classes)


def reference_covariance(clf, X_L, X_U, ridge, kernel, space):
    """``Delta`` over (m C) rows by a direct solve."""
    K = reference_kernel(clf, X_L, X_L, kernel, space) + ridge * np.eye(X_L.shape[0] * len(clf.classes_))
    cross = reference_kernel(clf, X_U, X_L, kernel, space)
    return reference_kernel(clf, X_U, X_U, kernel, space) - cross @ np.linalg.solve(K, cross.T)


def expand_rows(delta, q, n_classes):
    """Covariance over rows (q per sample) as the (m C, m C) block form of the references."""
    return delta if q == n_classes else np.kron(delta, np.eye(n_classes))


@pytest.fixture(scope="module")
def data(digits):
    X_train, X_test, y_train, _ = digits
    return X_train[:25], y_train[:25], X_train[25:40], X_test[:200]


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_rank_one_lookahead_equals_direct_solve(mse_net, data, kernel, space):
    X_L, y_L, X_U, _ = data
    lin = LinearizedClassifier(mse_net, kernel=kernel, output_space=space).fit(X_L, y_L)
    post = lin.posterior(X_U)
    n_classes = len(mse_net.classes_)
    index = np.array([0, 4, 9])
    labels = np.array([[1, 7], [3, 3], [0, 9]])
    targets = np.eye(n_classes)[labels]
    with enable_x64(True):
        after = np.asarray(kr.lookahead(kr.to_rows(post.mean, post.q), post.covariance.columns(index), index, targets,
                                        post.ridge, post.q))
    assert after.shape == (3, 2, X_U.shape[0], n_classes)
    np.testing.assert_allclose(post.mean, reference_fit(mse_net, X_L, y_L, X_U, post.ridge, kernel, space),
                               rtol=0, atol=1e-8)
    for i, x in enumerate(index):
        for j, label in enumerate(labels[i]):
            direct = reference_fit(mse_net, np.concatenate([X_L, X_U[x:x + 1]]),
                                   np.concatenate([y_L, mse_net.classes_[[label]]]), X_U, post.ridge, kernel, space)
            np.testing.assert_allclose(after[i, j], direct, rtol=0, atol=1e-8)
    assert np.abs(after[0, 0] - post.mean).max() > 1e-3  # the update is not trivially zero


def covariance_matrix(covariance, m):
    """The whole ``Delta`` of a dense or structured covariance over ``m`` candidates."""
    return np.asarray(covariance.columns(np.arange(m)))


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("kernel,space", [("pntk", "logits"), ("full", "logits"), ("pntk", "probabilities"),
                                          ("full", "probabilities")])
def test_sequential_updates_equal_refactorising(mse_net, data, kernel, space, dense):
    X_L, y_L, X_U, _ = data
    post = LinearizedClassifier(mse_net, kernel=kernel, output_space=space).fit(X_L, y_L).posterior(X_U, dense=dense)
    assert isinstance(post.covariance, kr.DenseCovariance if dense else kr.StructuredCovariance)
    n_classes = len(mse_net.classes_)
    steps = [(3, 2), (11, 5), (0, 2)]
    X_now, y_now = X_L, y_L
    with enable_x64(True):
        mean, covariance = kr.to_rows(post.mean, post.q), post.covariance
        for x, label in steps:
            mean = kr.update_mean(mean, covariance.columns([x]), x, np.eye(n_classes)[label], post.ridge, post.q)
            covariance = covariance.condition([x])
            X_now = np.concatenate([X_now, X_U[x:x + 1]])
            y_now = np.concatenate([y_now, mse_net.classes_[[label]]])
            np.testing.assert_allclose(np.asarray(kr.from_rows(mean, n_classes)),
                                       reference_fit(mse_net, X_now, y_now, X_U, post.ridge, kernel, space),
                                       rtol=0, atol=1e-8)
            np.testing.assert_allclose(expand_rows(covariance_matrix(covariance, len(X_U)), post.q, n_classes),
                                       reference_covariance(mse_net, X_now, X_U, post.ridge, kernel, space),
                                       rtol=0, atol=1e-8)


@pytest.mark.parametrize("kernel,space", [("full", "logits"), ("pntk", "probabilities"), ("trace", "logits")])
def test_posterior_covariance_matches_direct(mse_net, data, kernel, space):
    X_L, y_L, X_U, _ = data
    lin = LinearizedClassifier(mse_net, kernel=kernel, output_space=space).fit(X_L, y_L)
    dense, structured = lin.posterior(X_U, dense=True), lin.posterior(X_U, dense=False)
    direct = reference_covariance(mse_net, X_L, X_U, dense.ridge, kernel, space)
    n_classes = len(mse_net.classes_)
    np.testing.assert_allclose(expand_rows(dense.covariance.matrix, dense.q, n_classes), direct, rtol=0, atol=1e-8)
    assert np.all(np.linalg.eigvalsh(dense.covariance.matrix) > -1e-8)
    index = np.array([7, 2, 2, 13])
    np.testing.assert_allclose(structured.covariance.columns(index), dense.covariance.columns(index), rtol=0,
                               atol=1e-10)
    np.testing.assert_array_equal(structured.mean, dense.mean)


def test_softmax_kernel_is_the_ntk_of_softmax_outputs(ce_net, data):
    X_L = data[0][:6]
    logits = network_outputs(ce_net, X_L, float64=True)
    a = kr.softmax_jacobian(logits)
    ours, q = kr.output_kernel(ce_net.ntk(X_L, kind="full", float64=True), a, a)
    probs = lambda params, x: jax.nn.softmax(ce_net.network_(params, x), axis=-1)  # noqa: E731
    direct = empirical_ntk(probs, ce_net.params_, X_L, kind="full", implementation="jacobian", float64=True)
    assert q == len(ce_net.classes_)
    np.testing.assert_allclose(np.asarray(ours), direct.transpose(0, 2, 1, 3).reshape(ours.shape),
                               rtol=1e-6, atol=1e-10)


def test_softmax_jacobian_matches_autodiff():
    logits = np.random.RandomState(0).randn(4, 5)
    ours = kr.softmax_jacobian(logits)
    with enable_x64(True):
        direct = jax.vmap(jax.jacobian(jax.nn.softmax))(logits)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(direct), atol=1e-12)


@pytest.mark.parametrize("space", SPACES)
def test_partial_fit_equals_fit_on_union(mse_net, data, space):
    X_L, y_L, X_U, X_test = data
    lin = LinearizedClassifier(mse_net, output_space=space).fit(X_L[:15], y_L[:15])
    factor = lin.regression_.chol.copy()
    lin.partial_fit(X_L[15:20], y_L[15:20]).partial_fit(X_L[20:], y_L[20:])
    n_rows = lin.regression_.chol.shape[0]
    np.testing.assert_array_equal(lin.regression_.chol[:factor.shape[0], :factor.shape[0]], factor)
    K = reference_kernel(mse_net, X_L, X_L, "pntk", space)
    if space == "logits":
        K = K[::len(mse_net.classes_), ::len(mse_net.classes_)]
    np.testing.assert_allclose(lin.regression_.chol, np.linalg.cholesky(K + lin.ridge_ * np.eye(n_rows)),
                               rtol=0, atol=1e-8)
    direct = reference_fit(mse_net, X_L, y_L, X_test, lin.ridge_, "pntk", space)
    ours = lin.decision_function(X_test)
    np.testing.assert_allclose(ours, direct, rtol=0, atol=1e-8)
    same_ridge = lin.ridge_ * n_rows / np.trace(K)  # partial_fit keeps the first fit's absolute ridge
    union = LinearizedClassifier(mse_net, output_space=space, ridge=same_ridge).fit(X_L, y_L)
    assert union.ridge_ == pytest.approx(lin.ridge_, rel=1e-9)
    np.testing.assert_allclose(union.decision_function(X_test), ours, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(union.predict(X_test), lin.predict(X_test))
    np.testing.assert_array_equal(lin.X_fit_, X_L)


def test_auto_output_space_avoids_the_cross_entropy_trap(ce_net, mse_net, digits):
    X_train, X_test, y_train, _ = digits
    X_L, y_L = X_train[:300], y_train[:300]
    network = ce_net.predict(X_test)
    ours = LinearizedClassifier(ce_net).fit(X_L, y_L)
    naive = LinearizedClassifier(ce_net, output_space="logits").fit(X_L, y_L)
    assert ours.output_space_ == "probabilities"
    assert LinearizedClassifier(mse_net).fit(X_L, y_L).output_space_ == "logits"
    ours_mismatch = np.mean(ours.predict(X_test) != network)
    naive_mismatch = np.mean(naive.predict(X_test) != network)
    assert naive_mismatch > 0.03  # the trap is real for this network
    assert ours_mismatch < 0.5 * naive_mismatch


def test_predict_proba_and_decision_shapes(ce_net, data):
    X_L, y_L, _, X_test = data
    for space in SPACES:
        lin = LinearizedClassifier(ce_net, output_space=space).fit(X_L, y_L)
        proba = lin.predict_proba(X_test)
        assert proba.shape == (X_test.shape[0], len(ce_net.classes_))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert np.all(proba >= 0)
        np.testing.assert_array_equal(lin.classes_[proba.argmax(1)], lin.predict(X_test))
    assert 0.0 <= lin.score(X_test, lin.predict(X_test)) == 1.0


def test_binary_decision_function(small_mlp_factory, digits):
    X_train, X_test, y_train, _ = digits
    mask = y_train < 2
    net = small_mlp_factory(X_train[mask], y_train[mask], loss="mse", epochs=10)
    lin = LinearizedClassifier(net).fit(X_train[mask][:20], y_train[mask][:20])
    scores = lin.decision_function(X_test[:7])
    assert scores.shape == (7,)
    np.testing.assert_array_equal(lin.predict(X_test[:7]), lin.classes_[(scores > 0).astype(int)])


def test_clone_params_and_unfitted_estimator_is_trained(mse_net, data):
    X_L, y_L, _, X_test = data
    lin = LinearizedClassifier(mse_net, kernel="trace", ridge=1e-4)
    params = lin.get_params()
    assert params["kernel"] == "trace" and params["ridge"] == 1e-4 and params["estimator"] is mse_net
    copy = clone(lin)
    assert copy.get_params()["kernel"] == "trace"
    assert not hasattr(copy.estimator, "params_")
    copy.set_params(estimator__epochs=2).fit(X_L, y_L)
    assert hasattr(copy.estimator_, "params_") and copy.estimator_ is not mse_net
    assert copy.predict(X_test).shape == (X_test.shape[0],)


def test_fitted_network_is_used_as_is(mse_net, data):
    X_L, y_L, _, _ = data
    before = jax.tree_util.tree_map(np.array, mse_net.params_)
    lin = LinearizedClassifier(mse_net).fit(X_L, y_L).partial_fit(X_L[:3], y_L[:3])
    assert lin.estimator_ is mse_net
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(mse_net.params_)):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_modal_loop_with_partial_fit_never_retrains(mse_net, digits):
    from modAL.models import ActiveLearner
    from modAL.uncertainty import uncertainty_sampling

    X_train, _, y_train, _ = digits
    X_pool, y_pool = X_train[40:140], y_train[40:140]
    learner = ActiveLearner(LinearizedClassifier(mse_net), uncertainty_sampling,
                            X_training=X_train[:20], y_training=y_train[:20])
    for _ in range(3):
        idx, _ = learner.query(X_pool, n_instances=4)
        learner.estimator.partial_fit(X_pool[idx], y_pool[idx])
        learner.teach(X_pool[idx], y_pool[idx])  # refits the regression on all labels, still no SGD
        X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
    assert learner.estimator.estimator_ is mse_net
    assert learner.estimator.X_fit_.shape[0] == 32


def test_errors(mse_net, data):
    X_L, y_L, _, _ = data
    with pytest.raises(TypeError, match="JaxNetClassifier"):
        LinearizedClassifier(LogisticRegression().fit(X_L, y_L)).fit(X_L, y_L)
    with pytest.raises(ValueError, match="kernel must be one of"):
        LinearizedClassifier(mse_net, kernel="ntk").fit(X_L, y_L)
    with pytest.raises(ValueError, match="output_space must be one of"):
        LinearizedClassifier(mse_net, output_space="logit").fit(X_L, y_L)
    with pytest.raises(ValueError, match="features"):
        LinearizedClassifier(mse_net).fit(X_L[:, :10], y_L)
    with pytest.raises(ValueError, match="labels the network does not know"):
        LinearizedClassifier(mse_net).fit(X_L, y_L + 100)
    lin = LinearizedClassifier(mse_net).fit(X_L, y_L)
    with pytest.raises(ValueError, match="features"):
        lin.predict(X_L[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        lin.predict(np.full_like(X_L, np.nan))


def test_inverse_root_clips_what_rounding_pushed_below_the_ridge():
    rng = np.random.RandomState(0)
    vectors, _ = np.linalg.qr(rng.randn(4, 4))
    healthy = vectors @ np.diag([2.0, 0.5, 0.1, 0.3]) @ vectors.T
    root = kr.inverse_root(healthy, 1e-3)
    np.testing.assert_allclose(root.T @ root, np.linalg.inv(healthy + 1e-3 * np.eye(4)), rtol=1e-10)
    rounded = vectors @ np.diag([2.0, 0.5, 0.0, -3e-6]) @ vectors.T  # PSD up to rounding, one direction below -ridge
    root = kr.inverse_root(rounded, 1e-6)
    clipped = vectors @ np.diag(1 / np.array([2.0 + 1e-6, 0.5 + 1e-6, 1e-6, 1e-6])) @ vectors.T
    np.testing.assert_allclose(root.T @ root, clipped, rtol=1e-8)


def test_jitter_recovers_a_singular_kernel():
    K = np.ones((4, 4))
    chol, ridge = kr.ridge_cholesky(K, 0.0)
    assert ridge > 0
    np.testing.assert_allclose(np.asarray(chol) @ np.asarray(chol).T, K + ridge * np.eye(4), atol=1e-10)


def test_posterior_refuses_what_cannot_fit_in_memory_and_plans_what_it_holds(mse_net, data):
    X_L, y_L, X_U, _ = data
    lin = LinearizedClassifier(mse_net, output_space="probabilities").fit(X_L, y_L)
    m, n, n_classes = len(X_U), len(X_L), len(mse_net.classes_)
    plan, dense = linearized_memory(m, n, n_classes, "pntk", "probabilities")
    assert dense  # 150 rows: three dense copies fit in the default budget
    structured_plan, _ = linearized_memory(m, n, n_classes, "pntk", "probabilities", dense=False)
    structured = lin.posterior(X_U, dense=False).covariance
    held = structured_plan["gram"] + structured_plan["cross"] + structured_plan["factors"] + structured_plan["inverse"]
    assert structured.nbytes == held
    assert lin.posterior(X_U).covariance.nbytes * 3 == plan["dense"]
    needed = sum(plan.values())
    with mock.patch("sklearn_ntkal.estimators.linearized._physical_memory", return_value=2 * needed - 2):
        with pytest.raises(MemoryError, match="n_candidates"):
            lin.posterior(X_U)
    with mock.patch("sklearn_ntkal.estimators.linearized._physical_memory", return_value=2 * needed):
        assert lin.posterior(X_U).covariance.matrix.shape == (m * n_classes,) * 2
    small = linearized_memory(m, n, n_classes, "pntk", "probabilities", memory_budget=plan["dense"] - 1)
    assert not small[1]


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_probabilities_use_the_network_temperature(mse_net, data):
    X_L, y_L, _, X_test = data
    lin = LinearizedClassifier(mse_net).fit(X_L, y_L)
    assert lin.temperature_ == getattr(mse_net, "temperature_", 1.0)
    cooled = copy.deepcopy(mse_net)
    cooled.temperature_ = 0.1
    cold = LinearizedClassifier(cooled).fit(X_L, y_L)
    assert cold.temperature_ == 0.1
    np.testing.assert_allclose(cold.predict_proba(X_test), softmax(lin.decision_function(X_test) / 0.1), atol=1e-12)
    linearised_probabilities = LinearizedClassifier(cooled, output_space="probabilities").fit(X_L, y_L)
    logits = network_outputs(mse_net, X_test[:5], float64=True)
    np.testing.assert_allclose(linearised_probabilities.posterior(X_test[:5]).outputs, softmax(logits / 0.1),
                               atol=1e-12)
    with enable_x64(True):
        direct = jax.vmap(jax.jacobian(lambda f: jax.nn.softmax(f / 0.1)))(logits)
    np.testing.assert_allclose(linearised_probabilities._linearize(X_test[:5])[1], np.asarray(direct), atol=1e-10)


def test_evidence_amplitude_maximises_the_marginal_likelihood(mse_net, data):
    X_L, y_L, _, _ = data
    regression = LinearizedClassifier(mse_net).fit(X_L, y_L).regression_
    K = regression.chol @ regression.chol.T
    _, logdet = np.linalg.slogdet(K)
    residual = regression.residual

    def log_likelihood(amplitude):
        quad = np.sum(residual * np.linalg.solve(K, residual)) / amplitude
        return -0.5 * (quad + residual.shape[1] * (logdet + K.shape[0] * np.log(amplitude)))

    best = kr.amplitude(regression)
    assert best > 0
    assert all(log_likelihood(best) > log_likelihood(best * factor) for factor in (0.5, 0.9, 1.1, 2.0))


def test_pickle_round_trip(mse_net, data):
    X_L, y_L, _, X_test = data
    lin = LinearizedClassifier(mse_net).fit(X_L[:15], y_L[:15]).partial_fit(X_L[15:], y_L[15:])
    restored = pickle.loads(pickle.dumps(lin))
    np.testing.assert_array_equal(restored.decision_function(X_test), lin.decision_function(X_test))
