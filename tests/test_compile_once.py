"""Compile once: later rounds of a loop, refits and predictions on a shrinking pool reuse compiled programs."""

import jax
import numpy as np
import optax
import pytest
from modAL.models import ActiveLearner

from sklearn_ntkal import (BADGEQuery, CoresetQuery, DynamicALQuery, JaxNetClassifier, NTKLookAheadQuery, RandomQuery,
                           UncertaintyQuery)
from sklearn_ntkal.engine.forward import outputs
from sklearn_ntkal.estimators.training import train_step

_COMPILES = {"count": 0}


def _listen(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES["count"] += 1


jax.monitoring.register_event_duration_secs_listener(_listen)


def compilations(fn, *args, **kwargs):
    """Number of XLA compilations during ``fn(*args, **kwargs)``, and its result."""
    before = _COMPILES["count"]
    result = fn(*args, **kwargs)
    return _COMPILES["count"] - before, result


def _classifier(**kwargs):
    return JaxNetClassifier(loss="mse", epochs=4, network_kwargs={"hidden_layer_sizes": (32,)}, random_state=0,
                            **kwargs)


STRATEGIES = {
    "random": lambda: RandomQuery(random_state=0),
    "margin": lambda: UncertaintyQuery(measure="margin"),
    "badge": lambda: BADGEQuery(random_state=0),
    "coreset": lambda: CoresetQuery(),
    "dynamical": lambda: DynamicALQuery(random_state=0),
    "dynamical_deinfluence": lambda: DynamicALQuery(selection="deinfluence", random_state=0),
    "lookahead": lambda: NTKLookAheadQuery(objective="mlmoc", mode="batch", random_state=0),
    "lookahead_sequential": lambda: NTKLookAheadQuery(mode="sequential", objective="influence", random_state=0),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_later_rounds_of_a_modal_loop_compile_nothing(digits, name):
    """Labelled set 30 -> 80 and pool 1000 -> 950 stay within one bucket each, so rounds 2+ compile nothing."""
    X_train, _, y_train, _ = digits
    X, y = X_train[:1030], y_train[:1030]
    learner = ActiveLearner(estimator=_classifier(), query_strategy=STRATEGIES[name](),
                            X_training=X[:30], y_training=y[:30])
    pool = np.arange(30, len(X))
    per_round = []
    for _ in range(5):
        queried, (picked, _) = compilations(learner.query, X[pool], n_instances=10)
        taught, _ = compilations(learner.teach, X[pool[picked]], y[pool[picked]])
        pool = np.delete(pool, picked)
        per_round.append(queried + taught)
    assert per_round[2:] == [0, 0, 0], per_round


def test_refits_with_new_constants_compile_nothing(digits):
    """A fresh fit on other data (other standardisation constants) and warm-started refits reuse the programs."""
    X_train, _, y_train, _ = digits
    _classifier().fit(X_train[:60], y_train[:60])
    count, _ = compilations(_classifier().fit, X_train[200:290] * 2.0 + 1.0, y_train[200:290])
    assert count == 0
    warm = _classifier(warm_start=True).fit(X_train[:60], y_train[:60])
    counts = [compilations(warm.fit, X_train[:n], y_train[:n])[0] for n in (80, 100, 120)]
    assert counts == [0, 0, 0]


def test_predictions_on_a_shrinking_pool_compile_only_when_it_crosses_a_bucket(digits):
    """Pools of 1000 down to 897 rows share the 1024-row bucket; 896 rows move to the next one down."""
    X_train, _, y_train, _ = digits
    clf = _classifier().fit(X_train[:100], y_train[:100])
    clf.predict_proba(X_train[:1000])
    counts = [compilations(clf.predict_proba, X_train[:n])[0] for n in (990, 950, 900, 897, 896, 850)]
    assert counts == [0, 0, 0, 0, 1, 0]


def test_chunked_padded_outputs_equal_one_pass(mse_net, digits):
    X_test = digits[1]
    whole = np.asarray(mse_net.network_(mse_net.params_, X_test))
    chunked = outputs(mse_net.network_, mse_net.params_, X_test, limit=70)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_masked_padded_step_equals_the_step_on_real_rows(mse_net, digits):
    """The masked mean loss over a padded minibatch has the gradient of the unpadded one."""
    X, y = digits[0][:23], digits[2][:23]
    targets = np.eye(10, dtype=np.float32)[y]
    optimizer = optax.sgd(0.1)
    state = optimizer.init(mse_net.params_)
    exact = train_step(mse_net.network_, mse_net.params_, state, X, targets, np.ones(23, np.float32),
                       loss="mse", optimizer=optimizer)
    pad = np.arange(32) % 23
    mask = (np.arange(32) < 23).astype(np.float32)
    padded = train_step(mse_net.network_, mse_net.params_, state, X[pad], targets[pad], mask,
                        loss="mse", optimizer=optimizer)
    for a, b in zip(jax.tree_util.tree_leaves(exact[0]), jax.tree_util.tree_leaves(padded[0])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
    assert float(padded[3]) == pytest.approx(float(exact[3]), rel=1e-6)
