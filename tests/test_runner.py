"""Benchmark runner, registry and report: shared initial sets, honest splits, AUBC, table, plot and JSON."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.model_selection import train_test_split

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.bench import runner
from sklearn_ntkal.bench.presets import PRESETS
from sklearn_ntkal.bench.registry import STRATEGIES, ConfigError, make_network, make_strategy
from sklearn_ntkal.bench.report import confidence_interval, format_table, summarize, verdict, write_report
from sklearn_ntkal.bench.runner import BenchmarkConfig, BenchmarkResult, StrategyRun, resolve_budget, run_benchmark
from sklearn_ntkal.bench.streaming import StreamingConfig, StreamingResult, StreamingRun, run_streaming
from sklearn_ntkal.datasets import balanced_subset, imbalanced_subset, load_dataset
from sklearn_ntkal.estimators import LinearizedClassifier
from sklearn_ntkal.loop import SharedCandidates, accepts_oracle
from sklearn_ntkal.strategies.base import QueryStrategy

TINY = BenchmarkConfig(dataset="digits", network="mlp", strategies=("random", "entropy"), initial_size=12,
                       batch_size=8, n_rounds=2, seeds=(0, 1), epochs=3, max_samples=300)


PROTOCOL = dataclasses.replace(TINY, strategies=("margin", "ntk_lookahead_seq_oracle"), initial_size=0.08,
                               batch_size=0.03, n_rounds=1, epochs=2, warm_start=True, candidate_factor=2,
                               imbalance=4.0)


def _recorded_run(request, config):
    """Run ``config`` with the arguments of every call to the loop recorded."""
    calls = []
    real = runner.run_active_learning

    def spy(estimator, strategy, X_pool, y_pool, X_eval, y_eval, initial_indices, *args, **kwargs):
        calls.append({"strategy": strategy, "estimator": estimator, "initial": np.array(initial_indices),
                      "X_pool": X_pool, "y_pool": np.array(y_pool), "X_eval": X_eval, "y_eval": np.array(y_eval),
                      "kwargs": kwargs})
        return real(estimator, strategy, X_pool, y_pool, X_eval, y_eval, initial_indices, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(runner, "run_active_learning", spy)
    request.addfinalizer(patch.undo)
    return run_benchmark(config, progress=False), calls


@pytest.fixture(scope="module")
def recorded(request):
    """A tiny benchmark, with the arguments of every call to the loop recorded."""
    return _recorded_run(request, TINY)


@pytest.fixture(scope="module")
def protocol(request):
    """A tiny benchmark in the papers' protocol (fractions, warm start, shared candidates, oracle, imbalance)."""
    return _recorded_run(request, PROTOCOL)


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
    assert BenchmarkResult.from_dict(saved) == result
    old = dict(saved, config={key: value for key, value in saved["config"].items()
                              if key not in ("warm_start", "candidate_factor", "imbalance")})
    assert BenchmarkResult.from_dict(old).config == TINY
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


def _al_curves():
    """The module of ``benchmarks/al_curves.py``."""
    spec = importlib.util.spec_from_file_location("al_curves", Path(__file__).parents[1] / "benchmarks" / "al_curves.py")
    al_curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(al_curves)
    return al_curves


def test_results_page_joins_parts_from_separate_runs(recorded, tmp_path):
    al_curves = _al_curves()
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


def test_protocol_budget_is_a_fraction_of_the_imbalanced_pool_with_a_balanced_test_set(protocol):
    result, calls = protocol
    data = load_dataset("digits", max_samples=300, random_state=0)
    pool, test = train_test_split(np.arange(300), test_size=TINY.test_size, stratify=data.y, random_state=0)
    pool = pool[imbalanced_subset(data.y[pool], 4.0, random_state=0)]
    assert result.budget == {"pool_size": pool.size, "initial_size": max(10, round(0.08 * pool.size)),
                             "batch_size": round(0.03 * pool.size)}
    for call in calls:
        counts = np.sort(np.bincount(call["y_pool"], minlength=10))[::-1]
        expected = np.floor(counts[0] * 4.0 ** (-np.arange(10) / 9) + 1e-9)
        np.testing.assert_array_equal(counts, expected)
        assert np.unique(np.bincount(call["y_eval"], minlength=10)).size == 1
    test_rows = test[balanced_subset(data.y[test], random_state=0)]
    np.testing.assert_array_equal(calls[0]["X_eval"], data.X[test_rows])
    for run in result.runs:
        initial, batch = result.budget["initial_size"], result.budget["batch_size"]
        assert run.n_labeled == [initial, initial + batch]


def test_protocol_warm_starts_shares_candidates_and_gives_the_oracle_to_oracle_strategies(protocol):
    result, calls = protocol
    batch = result.budget["batch_size"]
    for call, run in zip(calls, result.runs):
        kwargs = call["kwargs"]
        assert kwargs["warm_start"] is True
        assert kwargs["candidates"] == SharedCandidates(size=2 * batch, seed=run.seed)
        assert kwargs["oracle"] is STRATEGIES[run.strategy].oracle is (run.strategy == "ntk_lookahead_seq_oracle")
        mask = np.zeros(len(call["y_pool"]), dtype=bool)
        mask[call["initial"]] = True
        candidates = kwargs["candidates"](1, mask)
        pool_rows = {tuple(row): index for index, row in enumerate(call["X_pool"])}
        data = load_dataset("digits", max_samples=300, random_state=0)
        queried = [pool_rows[tuple(data.X[row])] for row in run.queried_rows[1]]
        assert len(queried) == batch and set(queried) <= set(candidates.tolist())


def test_registry_oracle_strategies_take_the_oracle_and_others_do_not_get_it():
    flagged = {name for name, entry in STRATEGIES.items() if entry.oracle}
    assert flagged == {"ntk_lookahead_seq_oracle", "ntk_lookahead_hybrid_oracle"}
    for name in flagged:
        assert accepts_oracle(make_strategy(name, random_state=0))
    assert make_strategy("ntk_lookahead_seq_oracle").mode == "sequential"
    assert make_strategy("ntk_lookahead_hybrid_oracle").mode == "hybrid"


def test_fractions_resolve_against_the_pool_and_respect_the_minimums():
    proportional = BenchmarkConfig(**PRESETS["proportional"])
    assert resolve_budget(proportional, 1347, 10) == {"pool_size": 1347, "initial_size": 27, "batch_size": 27}
    assert resolve_budget(proportional, 200, 10) == {"pool_size": 200, "initial_size": 10, "batch_size": 4}
    assert resolve_budget(dataclasses.replace(proportional, batch_size=0.001), 200, 10)["batch_size"] == 1
    assert resolve_budget(TINY, 200, 10) == {"pool_size": 200, "initial_size": 12, "batch_size": 8}
    with pytest.raises(ConfigError, match="between the number of classes"):
        resolve_budget(dataclasses.replace(TINY, initial_size=200), 200, 10)


@pytest.mark.parametrize("field, value, message", [
    ("initial_size", 1.5, "initial_size must be a positive integer or a fraction of the pool"),
    ("batch_size", 0.0, "batch_size must be a positive integer or a fraction of the pool"),
    ("batch_size", True, "batch_size must be a positive integer or a fraction of the pool"),
    ("candidate_factor", 0, "candidate_factor must be a positive integer or None"),
    ("imbalance", 1.0, "imbalance must be a class ratio above 1 or None"),
    ("warm_start", "yes", "warm_start must be True or False"),
    ("seeds", (-1,), "seeds must be"),
])
def test_invalid_protocol_settings_raise_a_clear_config_error(field, value, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(TINY, **{field: value}).validate()


def test_parallel_runs_equal_the_serial_ones_and_the_parent_checkpoints_them(recorded, tmp_path):
    serial, _ = recorded
    path = tmp_path / "runs.jsonl"
    parallel = run_benchmark(TINY, progress=False, n_jobs=2, checkpoint=str(path))
    assert [(r.strategy, r.seed, r.n_labeled, r.scores, r.queried_rows) for r in parallel.runs] == [
        (r.strategy, r.seed, r.n_labeled, r.scores, r.queried_rows) for r in serial.runs]
    assert parallel.initial_rows == serial.initial_rows and parallel.budget == serial.budget
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == json.loads(json.dumps(dataclasses.asdict(TINY)))
    assert sorted((line["strategy"], line["seed"]) for line in lines[1:]) == sorted(
        (run.strategy, run.seed) for run in serial.runs)
    assert runner.load_checkpoint(str(path), TINY, StrategyRun) == {(r.strategy, r.seed): r for r in parallel.runs}


def _synthetic_result(aubc_gains):
    """A benchmark result without training: random at 0.5, margin and ``other`` above it by the given gains."""
    config = BenchmarkConfig(strategies=("random", "margin", "other"), seeds=tuple(range(len(aubc_gains))))
    runs = []
    for seed, gain in enumerate(aubc_gains):
        for name, level in (("random", 0.5), ("margin", 0.55), ("other", 0.5 + gain)):
            runs.append(StrategyRun(name, seed, [10, 20], [level, level], [0.0, 0.1], [1.0, 1.0], [[], [seed]]))
    return BenchmarkResult(config, "synthetic", {seed: [seed] for seed in config.seeds}, runs)


def test_confidence_interval_is_the_student_t_interval_of_the_mean():
    values = np.array([0.01, 0.03, -0.02, 0.05, 0.02])
    expected = stats.t.interval(0.95, df=4, loc=values.mean(), scale=stats.sem(values))
    assert confidence_interval(values) == pytest.approx(expected)
    assert confidence_interval([0.3]) is None
    assert (verdict((0.01, 0.2)), verdict((-0.3, -0.01)), verdict((-0.1, 0.1)), verdict(None)) == (
        "above", "below", "overlaps", "overlaps")


def test_summary_pairs_by_seed_against_random_and_margin_with_intervals():
    gains = [0.10, 0.12, 0.08, 0.11]
    summary = {row["strategy"]: row for row in summarize(_synthetic_result(gains))}
    other = summary["other"]
    assert other["aubc_vs_random"] == pytest.approx((np.mean(gains), np.std(gains, ddof=1)))
    assert other["aubc_vs_random_ci"] == pytest.approx(confidence_interval(gains))
    assert other["aubc_vs_margin"] == pytest.approx((np.mean(gains) - 0.05, np.std(gains, ddof=1)))
    assert other["aubc_vs_margin_ci"] == pytest.approx(confidence_interval(np.array(gains) - 0.05))
    assert other["final_vs_margin_ci"] == pytest.approx(other["aubc_vs_margin_ci"])
    assert (other["wins_vs_random"], other["wins_vs_margin"]) == (4, 4)
    assert verdict(other["aubc_vs_margin_ci"]) == "above"
    assert verdict(summary["random"]["aubc_vs_margin_ci"]) == "below"
    table = format_table(list(summary.values()))
    line = next(line for line in table.splitlines() if line.startswith("| other "))
    low, high = other["aubc_vs_margin_ci"]
    assert f"+{np.mean(gains) - 0.05:.4f} [{low:+.4f}, {high:+.4f}] (4/4)" in line
    assert table.splitlines()[2].split(" | ")[3] == "—"
    assert "AUBC − margin [95 % CI]" in table.splitlines()[0]


@pytest.fixture(scope="module")
def streamed():
    """A tiny streaming benchmark of every streaming strategy, and its configuration."""
    config = StreamingConfig(dataset="digits", max_samples=300, seeds=(0,), n_rounds=2, epochs=2, initial_size=10,
                             batch_size=3, eval_every=2)
    return run_streaming(config, progress=False), config


def test_streaming_records_the_network_at_retrains_and_the_linearised_model_along_the_stream(streamed):
    result, config = streamed
    for run in result.runs:
        assert isinstance(run, StreamingRun)
        assert run.n_labeled == [10, 13, 16]
        assert run.linear_n_labeled == [10, 12, 13, 14, 16]
        assert len(run.linear_scores) == 5 and len(run.scores) == 3
        assert [len(rows) for rows in run.queried_rows] == [0, 3, 3]
        assert len(run.query_times) == len(run.update_times) == 3 and run.update_times[1] > 0
        assert 0 <= run.linear_aubc <= 1


def test_streaming_stale_margin_and_lookahead_equal_their_batch_runs(streamed):
    result, config = streamed
    fields = {field.name: getattr(config, field.name) for field in dataclasses.fields(BenchmarkConfig)}
    batch = run_benchmark(BenchmarkConfig(**{**fields, "strategies": ("margin", "ntk_lookahead_seq_oracle")}),
                          progress=False)
    by_name = {run.strategy: run for run in result.runs}
    for stream_name, batch_run in zip(("margin_network", "lookahead_oracle"), batch.runs):
        assert by_name[stream_name].scores == batch_run.scores
        assert by_name[stream_name].queried_rows == batch_run.queried_rows


def test_streaming_margin_on_the_linearised_model_picks_after_each_partial_fit(streamed):
    result, config = streamed
    data, budget, splits = runner.prepare(config)
    pool, test, initial = splits[0]
    X, y = data.X[pool], data.y[pool]
    network = make_network("mlp", data.image_shape, loss="mse", epochs=2, random_state=0).fit(X[initial], y[initial])
    linear = LinearizedClassifier(network).fit(X[initial], y[initial])
    run = next(run for run in result.runs if run.strategy == "margin_linearized")
    assert run.linear_scores[0] == linear.score(data.X[test], data.y[test])
    assert run.scores[0] == network.score(data.X[test], data.y[test])
    mask = np.zeros(len(y), dtype=bool)
    mask[initial] = True
    remaining = SharedCandidates(size=12, seed=0)(1, mask)
    for row in run.queried_rows[1][:2]:
        proba = np.sort(linear.predict_proba(X[remaining]), axis=1)
        pick = remaining[np.argmin(proba[:, -1] - proba[:, -2])]
        assert pool[pick] == row
        linear.partial_fit(X[[pick]], y[[pick]])
        remaining = remaining[remaining != pick]


def test_streaming_report_and_checkpoint(streamed, tmp_path):
    result, config = streamed
    paths = write_report(result, tmp_path / "streaming", command="run --streaming")
    saved = json.loads((tmp_path / "streaming" / "results.json").read_text(encoding="utf-8"))
    assert saved["kind"] == "streaming" and saved["config"]["eval_every"] == 2
    assert StreamingResult.from_dict(saved) == result
    row = next(row for row in saved["summary"] if row["strategy"] == "lookahead_oracle")
    run = next(run for run in result.runs if run.strategy == "lookahead_oracle")
    assert row["linear_aubc"][0] == pytest.approx(run.linear_aubc)
    assert row["aubc_vs_margin_network_ci"] is None and "aubc_vs_margin_network" in row
    assert "| margin_linearized |" in paths["table"] and "linearised AUBC" in paths["table"]
    assert (tmp_path / "streaming" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    path = tmp_path / "runs.jsonl"
    for run in result.runs:
        runner.append_checkpoint(str(path), config, run)
    assert runner.load_checkpoint(str(path), config, StreamingRun) == {(r.strategy, r.seed): r for r in result.runs}
    with pytest.raises(ConfigError, match="unknown strategy 'margin'"):
        dataclasses.replace(config, strategies=("margin",)).validate()


def test_al_curves_runs_one_part_per_dataset_network_and_loss():
    al_curves = _al_curves()
    jobs = al_curves.configs(al_curves.parse_args(["--losses", "mse,cross_entropy", "--networks", "mlp"]))
    by_name = {name: config for _, name, config in jobs}
    assert list(by_name)[:4] == ["proportional_digits_mlp_mse", "proportional_digits_mlp_cross_entropy",
                                 "proportional_mnist5k_mlp_mse", "proportional_mnist5k_mlp_cross_entropy"]
    assert {part for part, _, _ in jobs} == {"proportional", "whole_pool", "imbalanced", "hard", "streaming"}
    for name, config in by_name.items():
        assert name.endswith(config.loss) and f"_{config.dataset}_{config.network}_" in name
        assert config.seeds == tuple(range(10 if config.dataset == "digits" else 5))
        assert config.warm_start and config.initial_size == config.batch_size == 0.02
        config.validate()
    assert by_name["proportional_digits_mlp_mse"].candidate_factor == 4
    assert by_name["whole_pool_digits_mlp_mse"].candidate_factor is None
    assert by_name["imbalanced_mnist5k_mlp_mse"].imbalance == 10.0
    assert [name for name in by_name if name.startswith("hard")] == ["hard_hard10_mlp_mse",
                                                                     "hard_hard10_mlp_cross_entropy"]
    assert isinstance(by_name["streaming_digits_mlp_mse"], StreamingConfig)
    quick = al_curves.configs(al_curves.parse_args(["--quick"]))
    assert [name for _, name, _ in quick] == ["proportional_digits_mlp_mse", "hard_hard10_mlp_mse",
                                               "streaming_digits_mlp_mse"]
    for _, _, config in quick:
        config.validate()
        assert config.seeds == (0, 1) and config.n_rounds == 2
    cold = al_curves.configs(al_curves.parse_args(["--parts", "cold_start", "--datasets", "digits"]))
    assert [(name, config.warm_start, config.initial_size) for _, name, config in cold] == [
        ("cold_start_digits_mlp_mse", False, 20), ("cold_start_digits_cnn_mse", False, 20)]
    with pytest.raises(SystemExit):
        al_curves.parse_args(["--parts", "proportional,nope"])


def test_results_page_has_a_section_per_part_with_verdicts_against_margin_and_random(streamed, tmp_path):
    al_curves = _al_curves()
    synthetic = _synthetic_result([0.10, 0.12, 0.08, 0.11])
    proportional = dataclasses.replace(synthetic, config=dataclasses.replace(
        synthetic.config, **{key: value for key, value in PRESETS["proportional"].items() if key != "strategies"}))
    write_report(proportional, tmp_path / "proportional_digits_mlp_mse",
                 command="python benchmarks/al_curves.py --parts proportional")
    write_report(streamed[0], tmp_path / "streaming_digits_mlp_mse",
                 command="python benchmarks/al_curves.py --parts streaming")
    al_curves.main(["--page-only", "--out", str(tmp_path)])
    text = (tmp_path / "al_curves.md").read_text(encoding="utf-8")
    assert (text.index("## Papers' proportions, shared candidates") < text.index("### digits · mlp · mse")
            < text.index("## Papers' proportions, whole pool") < text.index("## Streaming"))
    assert ("- AUBC against `random`: above (95 % interval above 0): `margin`, `other`; significantly below: "
            "none.") in text
    assert "- AUBC against `margin`: above (95 % interval above 0): `other`; significantly below: `random`." in text
    assert "- Network AUBC against `margin_network`: above (95 % interval above 0): none;" in text
    assert "Not run yet: hard10 · mlp (`python benchmarks/al_curves.py --parts hard`)." in text
    assert ("digits · cnn (`python benchmarks/al_curves.py --parts streaming --datasets digits --networks cnn`)"
            in text)
    assert "python benchmarks/al_curves.py --parts streaming\n" in text and "Cold start" not in text
    assert "(streaming_digits_mlp_mse/learning_curves.png)" in text and "retrains every 3" in text
