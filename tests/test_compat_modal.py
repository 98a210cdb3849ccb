"""Tests for sklearn_ntkal.modal_compat: the modAL <-> scikit-learn >= 1.8 shim."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("modAL")

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPAT_FILE = REPO_ROOT / "sklearn_ntkal" / "modal_compat.py"

try:  # the package may not be installed in the test environment
    from sklearn_ntkal import modal_compat as compat
except ImportError:  # pragma: no cover - depends on how tests are launched
    sys.path.insert(0, str(REPO_ROOT))
    from sklearn_ntkal import modal_compat as compat

import modAL.models.learners as modal_learners
from modAL.disagreement import vote_entropy_sampling
from modAL.models import ActiveLearner, Committee
from modAL.batch import uncertainty_batch_sampling
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import validation as skl_validation

SEED_IDX = np.array([0, 1, 50, 51, 100, 101])


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(autouse=True)
def _patched():
    compat.patch_modal()
    yield


def top_uncertainty(learner, X_pool, n_instances=3):
    """Strategy returning ``(indices, scores)`` as modAL's own strategies do."""
    proba = learner.predict_proba(X_pool)
    scores = 1.0 - proba.max(axis=1)
    idx = np.argsort(-scores, kind="stable")[:n_instances]
    return idx, scores[idx]


def _lr():
    return LogisticRegression(max_iter=500)


def _run_rounds(learner, X, y, n_rounds=4):
    pool = np.setdiff1d(np.arange(len(X)), SEED_IDX)
    for _ in range(n_rounds):
        query_idx, query_X = learner.query(X[pool])
        query_idx = np.asarray(query_idx)
        assert query_X.shape == (len(query_idx), X.shape[1])
        np.testing.assert_array_equal(query_X, X[pool[query_idx]])
        learner.teach(X[pool[query_idx]], y[pool[query_idx]])
        pool = np.delete(pool, query_idx)
    return pool


# --------------------------------------------------------------------------
# detection / failure without the shim
# --------------------------------------------------------------------------
def test_needs_patch_matches_installed_sklearn():
    import inspect

    accepts = "force_all_finite" in inspect.signature(skl_validation.check_X_y).parameters
    assert compat.modal_needs_patch() is (not accepts)


def test_unpatched_modal_teach_fails_then_patch_fixes_it():
    """In a fresh interpreter (sklearn_ntkal not imported): teach fails, patch fixes it."""
    if not compat.modal_needs_patch():
        pytest.skip("installed scikit-learn still accepts force_all_finite")
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        import numpy as np
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from modAL.models import ActiveLearner
        assert "sklearn_ntkal" not in sys.modules
        X, y = load_iris(return_X_y=True)
        idx = [0, 50, 100]
        try:
            ActiveLearner(LogisticRegression()).teach(X[idx], y[idx])
        except TypeError as exc:
            assert "force_all_finite" in str(exc), exc
        else:
            raise SystemExit("unpatched teach unexpectedly succeeded")
        spec = importlib.util.spec_from_file_location("_compat_under_test", {str(COMPAT_FILE)!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        assert mod.patch_modal() == ("modAL.models.learners",)
        learner = ActiveLearner(LogisticRegression())
        learner.teach(X[idx], y[idx])
        assert learner.X_training.shape == (3, 4)
        print("OK")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("OK")


def test_raw_sklearn_rejects_force_all_finite_but_shim_accepts():
    if not compat.modal_needs_patch():
        pytest.skip("installed scikit-learn still accepts force_all_finite")
    X, y = np.ones((3, 2)), np.array([0, 1, 0])
    with pytest.raises(TypeError, match="force_all_finite"):
        skl_validation.check_X_y(X, y, force_all_finite=True)
    shim = modal_learners.check_X_y
    assert shim is not skl_validation.check_X_y
    assert shim.__wrapped__ is skl_validation.check_X_y
    Xc, yc = shim(X, y, force_all_finite=True)
    np.testing.assert_array_equal(Xc, X)


# --------------------------------------------------------------------------
# the shim itself
# --------------------------------------------------------------------------
def test_patched_modules_reported():
    if compat.modal_needs_patch():
        assert "modAL.models.learners" in compat.patched_modules()
        assert set(compat.MODAL_AFFECTED_MODULES) <= set(compat.patched_modules())
        # sklearn itself is untouched
        from sklearn import utils as skl_utils

        assert skl_utils.check_X_y is skl_validation.check_X_y
        assert not compat._is_shim(skl_validation.check_X_y)
    else:
        assert compat.patched_modules() == ()


def test_patch_twice_is_harmless(iris):
    before = compat.patched_modules()
    shim = modal_learners.check_X_y
    assert compat.patch_modal() == ()
    assert compat.patch_modal() == ()
    assert compat.patched_modules() == before
    assert modal_learners.check_X_y is shim  # not double-wrapped
    X, y = iris
    learner = ActiveLearner(_lr(), query_strategy=top_uncertainty)
    learner.teach(X[SEED_IDX], y[SEED_IDX])
    assert learner.score(X, y) > 0.5


@pytest.mark.parametrize(
    "value, X_bad, raises",
    [
        (True, np.nan, True),
        (True, np.inf, True),
        ("allow-nan", np.nan, False),
        ("allow-nan", np.inf, True),
        (False, np.nan, False),
        (False, np.inf, False),
    ],
)
def test_shim_keeps_finite_semantics(value, X_bad, raises):
    if not compat.modal_needs_patch():
        pytest.skip("no shim on this scikit-learn")
    X = np.array([[1.0, 2.0], [X_bad, 0.0], [3.0, 4.0]])
    y = np.array([0, 1, 0])
    shim = modal_learners.check_X_y
    if raises:
        with pytest.raises(ValueError):
            shim(X, y, force_all_finite=value)
    else:
        shim(X, y, force_all_finite=value)
    # and the translation matches sklearn's ensure_all_finite exactly
    if raises:
        with pytest.raises(ValueError):
            skl_validation.check_X_y(X, y, ensure_all_finite=value)
    else:
        skl_validation.check_X_y(X, y, ensure_all_finite=value)


def test_shim_rejects_both_keywords():
    if not compat.modal_needs_patch():
        pytest.skip("no shim on this scikit-learn")
    with pytest.raises(TypeError, match="both"):
        modal_learners.check_X_y(
            np.ones((2, 2)), [0, 1], force_all_finite=True, ensure_all_finite=True
        )


def test_noop_when_sklearn_accepts_force_all_finite(monkeypatch):
    monkeypatch.setattr(modal_learners, "check_X_y", skl_validation.check_X_y)
    monkeypatch.setattr(compat, "_sklearn_accepts_force_all_finite", lambda: True)
    assert compat.modal_needs_patch() is False
    assert compat.patch_modal() == ()
    assert modal_learners.check_X_y is skl_validation.check_X_y


def test_noop_when_modal_missing(monkeypatch):
    monkeypatch.setattr(modal_learners, "check_X_y", skl_validation.check_X_y)
    monkeypatch.setattr(compat, "_modal_installed", lambda: False)
    assert compat.modal_needs_patch() is False
    assert compat.patch_modal() == ()
    assert modal_learners.check_X_y is skl_validation.check_X_y


def test_repatches_after_rebinding(monkeypatch):
    if not compat.modal_needs_patch():
        pytest.skip("no shim on this scikit-learn")
    shim = modal_learners.check_X_y
    monkeypatch.setattr(modal_learners, "check_X_y", skl_validation.check_X_y)
    assert "modAL.models.learners" not in compat.patched_modules()
    assert compat.patch_modal() == ("modAL.models.learners",)
    assert modal_learners.check_X_y is shim  # the same cached wrapper


# --------------------------------------------------------------------------
# modAL end to end after patching
# --------------------------------------------------------------------------
def test_active_learner_query_teach_rounds(iris):
    X, y = iris
    learner = ActiveLearner(_lr(), query_strategy=top_uncertainty)
    learner.teach(X[SEED_IDX], y[SEED_IDX])
    pool = _run_rounds(learner, X, y, n_rounds=4)
    assert learner.X_training.shape == (len(SEED_IDX) + 4 * 3, X.shape[1])
    assert len(pool) == len(X) - len(SEED_IDX) - 12
    assert learner.score(X, y) > 0.7


def test_active_learner_fit_and_teach_only_new(iris):
    X, y = iris
    learner = ActiveLearner(_lr(), query_strategy=top_uncertainty)
    learner.fit(X[SEED_IDX], y[SEED_IDX])
    learner.teach(X[[2, 52, 102]], y[[2, 52, 102]], only_new=True)
    assert learner.X_training.shape == (len(SEED_IDX), X.shape[1])
    assert set(learner.estimator.classes_) == {0, 1, 2}


def test_on_transformed_pipeline(iris):
    X, y = iris
    pipe = Pipeline([("scale", StandardScaler()), ("clf", _lr())])
    learner = ActiveLearner(
        pipe,
        query_strategy=lambda lrn, X_pool: uncertainty_batch_sampling(lrn, X_pool, n_instances=3),
        on_transformed=True,
    )
    learner.teach(X[SEED_IDX], y[SEED_IDX])
    Xt = learner.transform_without_estimating(X)
    np.testing.assert_allclose(Xt, pipe.named_steps["scale"].transform(X))
    assert not np.allclose(Xt, X)
    _run_rounds(learner, X, y, n_rounds=3)
    assert learner.X_training.shape[0] == len(SEED_IDX) + 9


def test_committee_vote_entropy(iris):
    X, y = iris
    learners = [
        ActiveLearner(_lr(), X_training=X[SEED_IDX], y_training=y[SEED_IDX]),
        ActiveLearner(
            LogisticRegression(C=0.1, max_iter=500),
            X_training=X[SEED_IDX[::-1]],
            y_training=y[SEED_IDX[::-1]],
        ),
    ]
    committee = Committee(learner_list=learners, query_strategy=vote_entropy_sampling)
    pool = np.setdiff1d(np.arange(len(X)), SEED_IDX)
    for _ in range(3):
        query_idx, query_X = committee.query(X[pool], n_instances=2)
        assert len(query_idx) == 2
        committee.teach(X[pool[query_idx]], y[pool[query_idx]])
        pool = np.delete(pool, query_idx)
    for lrn in committee:
        assert lrn.X_training.shape[0] == len(SEED_IDX) + 6
    np.testing.assert_array_equal(committee.classes_, [0, 1, 2])
    assert committee.predict(X).shape == (len(X),)


def test_teach_with_nan_still_raises(iris):
    X, y = iris
    learner = ActiveLearner(_lr(), query_strategy=top_uncertainty)
    learner.teach(X[SEED_IDX], y[SEED_IDX])
    X_bad = X[[2, 52]].copy()
    X_bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="(?i)nan"):
        learner.teach(X_bad, y[[2, 52]])
    # rejected before being added to the training data
    assert learner.X_training.shape[0] == len(SEED_IDX)


# --------------------------------------------------------------------------
# modAL's query calls (indices, scores) strategies exactly once
# --------------------------------------------------------------------------
def test_scores_strategy_called_once_per_query(iris):
    X, y = iris
    calls = []

    def counting(learner, X_pool, n_instances=2):
        calls.append(len(X_pool))
        return top_uncertainty(learner, X_pool, n_instances)

    learner = ActiveLearner(_lr(), query_strategy=counting)
    learner.teach(X[SEED_IDX], y[SEED_IDX])
    pool = np.setdiff1d(np.arange(len(X)), SEED_IDX)
    for round_ in range(1, 4):
        query_idx, _ = learner.query(X[pool])
        assert len(calls) == round_
        learner.teach(X[pool[query_idx]], y[pool[query_idx]])
        pool = np.delete(pool, query_idx)
    idx, _, metrics = learner.query(X[pool], return_metrics=True)
    assert len(calls) == 4
    assert len(metrics) == len(idx) == 2
