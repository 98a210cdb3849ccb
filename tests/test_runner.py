"""Benchmark runner, registry and report: shared initial sets, honest splits, AUBC, table, plot and JSON."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.bench import runner
from sklearn_ntkal.bench.registry import STRATEGIES, ConfigError, make_network, make_strategy
from sklearn_ntkal.bench.report import format_table, summarize, write_report
from sklearn_ntkal.bench.runner import BenchmarkConfig, run_benchmark
from sklearn_ntkal.datasets import load_dataset
from sklearn_ntkal.strategies.base import QueryStrategy

TINY = BenchmarkConfig(dataset="digits", network="mlp", strategies=("random", "entropy"), initial_size=12,
                       batch_size=8, n_rounds=2, seeds=(0, 1), epochs=3, max_samples=300)


@pytest.fixture(scope="module")
def recorded(request):
    """A tiny benchmark, with the arguments of every call to the loop recorded."""
    calls = []
    real = runner.run_active_learning

    def spy(estimator, strategy, X_pool, y_pool, X_eval, y_eval, initial_indices, *args, **kwargs):
        calls.append({"strategy": strategy, "estimator": estimator, "initial": np.array(initial_indices),
                      "X_pool": X_pool, "X_eval": X_eval, "y_eval": np.array(y_eval)})
        return real(estimator, strategy, X_pool, y_pool, X_eval, y_eval, initial_indices, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(runner, "run_active_learning", spy)
    request.addfinalizer(patch.undo)
    return run_benchmark(TINY, progress=False), calls


def _trapezoid_aubc(n_labeled, scores):
    n, s = np.asarray(n_labeled, float), np.asarray(scores, float)
    return np.trapezoid(s, n) / (n[-1] - n[0])


def test_every_strategy_starts_from_the_same_initial_set_per_seed(recorded):
    result, calls = recorded
    assert len(calls) == len(TINY.seeds) * len(TINY.strategies)
    per_seed = [calls[i:i + len(TINY.strategies)] for i in range(0, len(calls), len(TINY.strategies))]
    for seed, group in zip(TINY.seeds, per_seed):
        for call in group[1:]:
            np.testing.assert_array_equal(call["initial"], group[0]["initial"])
            np.testing.assert_array_equal(call["X_pool"], group[0]["X_pool"])
            assert call["estimator"].get_params() == group[0]["estimator"].get_params()
        data = load_dataset("digits", max_samples=300, random_state=0)
        pool_rows = [tuple(row) for row in data.X[result.initial_rows[seed]]]
        assert pool_rows == [tuple(row) for row in group[0]["X_pool"][group[0]["initial"]]]
    assert sorted(result.initial_rows[0]) != sorted(result.initial_rows[1])
    runs = {(run.strategy, run.seed): run for run in result.runs}
    for seed in TINY.seeds:
        assert runs["random", seed].scores[0] == runs["entropy", seed].scores[0]


def test_split_is_stratified_per_seed_and_queries_stay_in_the_pool(recorded):
    result, calls = recorded
    data = load_dataset("digits", max_samples=300, random_state=0)
    for run in result.runs:
        pool, test = train_test_split(np.arange(300), test_size=TINY.test_size, stratify=data.y,
                                      random_state=run.seed)
        initial = set(result.initial_rows[run.seed])
        assert initial <= set(pool)
        assert set(np.unique(data.y[list(initial)])) == set(range(10))
        queried = [row for rows in run.queried_rows for row in rows]
        assert run.queried_rows[0] == []
        assert len(queried) == len(set(queried)) == TINY.n_rounds * TINY.batch_size
        assert set(queried) <= set(pool) - initial
        assert not set(queried) & set(test)
        assert run.n_labeled == [TINY.initial_size + k * TINY.batch_size for k in range(TINY.n_rounds + 1)]
    test_seed0 = train_test_split(np.arange(300), test_size=TINY.test_size, stratify=data.y, random_state=0)[1]
    np.testing.assert_array_equal(calls[0]["X_eval"], data.X[test_seed0])
    np.testing.assert_array_equal(calls[0]["y_eval"], data.y[test_seed0])


def test_times_are_recorded_per_round_and_query_apart_from_training(recorded):
    result, _ = recorded
    for run in result.runs:
        assert len(run.query_times) == len(run.fit_times) == TINY.n_rounds + 1
        assert run.query_times[0] == 0.0
        assert all(t > 0 for t in run.query_times[1:]) and all(t > 0 for t in run.fit_times)


def test_aubc_matches_an_independent_trapezoid_and_the_summary(recorded):
    result, _ = recorded
    for run in result.runs:
        assert 0.0 <= run.aubc <= 1.0
        assert run.aubc == pytest.approx(_trapezoid_aubc(run.n_labeled, run.scores), abs=1e-12)
    summary = {row["strategy"]: row for row in summarize(result)}
    for name in TINY.strategies:
        runs = [run for run in result.runs if run.strategy == name]
        aubcs = [_trapezoid_aubc(run.n_labeled, run.scores) for run in runs]
        finals = [run.scores[-1] for run in runs]
        assert summary[name]["aubc"] == pytest.approx((np.mean(aubcs), np.std(aubcs, ddof=1)))
        assert summary[name]["final_accuracy"] == pytest.approx((np.mean(finals), np.std(finals, ddof=1)))
        gains = [a - _trapezoid_aubc(r.n_labeled, r.scores)
                 for a, r in zip(aubcs, [run for run in result.runs if run.strategy == "random"])]
        assert summary[name]["aubc_vs_random"] == pytest.approx((np.mean(gains), np.std(gains, ddof=1)))
        assert summary[name]["wins_vs_random"] == sum(g > 0 for g in gains)


def test_final_accuracy_is_the_retrained_network_on_the_test_split(recorded):
    result, _ = recorded
    run = result.runs[0]
    labeled = result.initial_rows[run.seed] + [row for rows in run.queried_rows for row in rows]
    data = load_dataset("digits", max_samples=300, random_state=0)
    test = train_test_split(np.arange(300), test_size=TINY.test_size, stratify=data.y, random_state=run.seed)[1]
    clf = make_network("mlp", data.image_shape, loss=TINY.loss, epochs=TINY.epochs,
                       random_state=run.seed).fit(data.X[labeled], data.y[labeled])
    assert run.scores[-1] == pytest.approx(np.mean(clf.predict(data.X[test]) == data.y[test]))


def test_report_writes_table_plot_and_every_number(recorded, tmp_path):
    result, _ = recorded
    paths = write_report(result, tmp_path / "out", command="sklearn-ntkal run --tiny")
    with open(paths["plot_path"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(paths["json_path"], encoding="utf-8") as handle:
        saved = json.load(handle)
    assert saved["command"] == "sklearn-ntkal run --tiny"
    assert saved["config"]["strategies"] == list(TINY.strategies)
    for stored, run in zip(saved["runs"], result.runs):
        assert stored["scores"] == run.scores and stored["n_labeled"] == run.n_labeled
        assert stored["query_times"] == run.query_times and stored["fit_times"] == run.fit_times
        assert stored["aubc"] == pytest.approx(_trapezoid_aubc(run.n_labeled, run.scores))
    assert saved["initial_rows"]["0"] == result.initial_rows[0]
    table = open(paths["table_path"], encoding="utf-8").read()
    assert paths["table"] in table and "sklearn-ntkal run --tiny" in table
    row = summarize(result)[1]
    line = next(line for line in paths["table"].splitlines() if line.startswith("| entropy "))
    assert "{:.4f} ± {:.4f}".format(*row["aubc"]) in line
    assert "{:.4f} ± {:.4f}".format(*row["final_accuracy"]) in line


def test_table_has_no_reference_columns_without_random(recorded):
    result, _ = recorded
    summary = [row for row in summarize(result) if row["strategy"] != "random"]
    for row in summary:
        row.pop("aubc_vs_random"), row.pop("wins_vs_random")
    table = format_table(summary)
    assert "random" not in table and table.count("\n") == 2


@pytest.mark.parametrize("field, value, message", [
    ("strategies", ("random", "nope"), "unknown strategy 'nope'; valid names are: random, entropy"),
    ("dataset", "imagenet", "unknown dataset 'imagenet'; valid names are: digits, mnist5k"),
    ("network", "resnet", "unknown network 'resnet'; valid names are: mlp, cnn"),
    ("loss", "hinge", "unknown loss 'hinge'"),
    ("seeds", (), "seeds must be"),
    ("test_size", 1.5, "test_size must be in (0, 1)"),
])
def test_invalid_settings_raise_a_clear_config_error(field, value, message):
    config = BenchmarkConfig(**{field: value})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_benchmark(config, progress=False)


def test_initial_size_below_the_number_of_classes_is_refused_before_training():
    with pytest.raises(ConfigError, match="between the number of classes \\(10\\)"):
        run_benchmark(BenchmarkConfig(initial_size=5, max_samples=200), progress=False)


def test_registry_builds_every_strategy_seeded():
    for name in STRATEGIES:
        strategy = make_strategy(name, random_state=7)
        assert isinstance(strategy, QueryStrategy)
        assert strategy.get_params().get("random_state", 7) == 7
    assert make_strategy("margin").measure == "margin"
    assert make_strategy("ntk_lookahead_seq").mode == "sequential"
    assert make_strategy("dynamical_greedy").selection == "greedy"
    with pytest.raises(ConfigError, match="unknown strategy 'x'; valid names are: random,"):
        make_strategy("x")


def test_registry_networks_read_images_with_the_dataset_shape():
    cnn = make_network("cnn", (8, 8, 1), loss="cross_entropy", epochs=4, random_state=3)
    assert isinstance(cnn, JaxNetClassifier)
    assert (cnn.network, cnn.input_shape, cnn.loss, cnn.epochs, cnn.random_state) == ("cnn", (8, 8, 1),
                                                                                      "cross_entropy", 4, 3)
    assert not cnn.early_stopping and cnn.standardize == "global"
    tabular = make_network("mlp", None)
    assert tabular.input_shape is None and tabular.standardize == "feature"
    with pytest.raises(ConfigError, match="needs an image dataset"):
        make_network("cnn", None)


def test_results_page_joins_parts_from_separate_runs(recorded, tmp_path):
    spec = importlib.util.spec_from_file_location("al_curves", Path(__file__).parents[1] / "benchmarks" / "al_curves.py")
    al_curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(al_curves)
    result, _ = recorded
    write_report(result, tmp_path / "digits_mlp", command="python benchmarks/al_curves.py --datasets digits")
    other = dataclasses.replace(result, config=dataclasses.replace(TINY, network="cnn"))
    write_report(other, tmp_path / "digits_cnn", command="python benchmarks/al_curves.py --networks cnn")
    al_curves.main(["--page-only", "--out", str(tmp_path)])
    text = (tmp_path / "al_curves.md").read_text(encoding="utf-8")
    assert text.index("## digits · mlp") < text.index("## digits · cnn")
    assert "python benchmarks/al_curves.py --datasets digits\n" in text and "--networks cnn\n" in text
    assert format_table(summarize(result)) in text and "(digits_cnn/learning_curves.png)" in text
    assert "Not run yet: mnist5k · mlp" in text and "Smoke test" in text


def test_checkpoint_resumes_and_rejects_other_settings(tmp_path, monkeypatch):
    config = dataclasses.replace(TINY, n_rounds=1, epochs=2)
    path = tmp_path / "runs.jsonl"
    first = run_benchmark(config, progress=False, checkpoint=str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + len(first.runs)
    path.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    calls = []
    real = runner._run_one
    monkeypatch.setattr(runner, "_run_one", lambda *args: calls.append(args[1]) or real(*args))
    resumed = run_benchmark(config, progress=False, checkpoint=str(path))
    assert len(calls) == len(first.runs) - 2
    assert resumed.runs[:2] == first.runs[:2]
    assert [(r.strategy, r.seed) for r in resumed.runs] == [(r.strategy, r.seed) for r in first.runs]
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1 + len(first.runs)
    with pytest.raises(ConfigError, match="other settings"):
        run_benchmark(dataclasses.replace(config, epochs=3), progress=False, checkpoint=str(path))
