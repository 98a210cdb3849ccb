"""The ``sklearn-ntkal`` command line: a tiny run end to end, presets, listings and clear errors."""

import json
import os
import subprocess
import sys
import urllib.error

import pytest

import sklearn_ntkal.cli as cli
import sklearn_ntkal.datasets as datasets
from sklearn_ntkal.bench.presets import PRESETS
from sklearn_ntkal.bench.registry import STRATEGIES
from sklearn_ntkal.cli import _config, build_parser, main

TINY = ["--dataset", "digits", "--strategies", "random,margin", "--initial-size", "10", "--batch-size", "5",
        "--rounds", "1", "--seeds", "1", "--epochs", "2", "--max-samples", "200", "--no-progress"]


def test_python_m_help_works():
    done = subprocess.run([sys.executable, "-m", "sklearn_ntkal", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout and "datasets" in done.stdout
    done = subprocess.run([sys.executable, "-m", "sklearn_ntkal", "run", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "--preset" in done.stdout and "--strategies" in done.stdout


def test_run_prints_the_table_and_writes_plot_and_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out / "results.json", encoding="utf-8") as handle:
        saved = json.load(handle)
    assert saved["command"] == "sklearn-ntkal run " + " ".join(TINY + ["--out", str(out)])
    assert [run["strategy"] for run in saved["runs"]] == ["random", "margin"]
    package_dir = os.path.dirname(cli.__file__)
    assert saved["environment"]["sklearn_ntkal"].endswith(f" from {package_dir}")
    for row in saved["summary"]:
        line = next(line for line in printed.splitlines() if line.startswith(f"| {row['strategy']} "))
        assert "{:.4f} ± {:.4f}".format(*row["aubc"]) in line
    assert str(out / "learning_curves.png") in printed and str(out / "results.json") in printed
    assert os.path.getsize(out / "learning_curves.png") > 1000


def test_explicit_options_override_the_preset():
    config = _config(build_parser().parse_args(["run", "--preset", "quick", "--seeds", "3", "--rounds", "2"]))
    assert config.seeds == (0, 1, 2) and config.n_rounds == 2
    assert config.strategies == PRESETS["quick"]["strategies"]
    assert config.dataset == "digits" and config.network == "mlp"
    config = _config(build_parser().parse_args(["run", "--preset", "paper", "--dataset", "mnist5k",
                                                "--strategies", "random, badge"]))
    assert config.dataset == "mnist5k" and config.strategies == ("random", "badge")
    assert config.seeds == PRESETS["paper"]["seeds"]


def test_quick_preset_is_the_documented_first_run():
    config = _config(build_parser().parse_args(["run", "--preset", "quick"]))
    assert (config.dataset, config.network, len(config.seeds)) == ("digits", "mlp", 3)
    assert config.strategies == ("random", "margin", "ntk_influence", "dynamical_deinfluence")
    assert config.warm_start and config.candidate_factor == 4 and config.initial_size == 0.02
    config.validate()


@pytest.mark.parametrize("option, value, expected", [
    ("--strategies", "random,best", "unknown strategy 'best'; valid names are: " + ", ".join(STRATEGIES)),
    ("--dataset", "imagenet", "unknown dataset 'imagenet'; valid names are: digits, mnist5k"),
    ("--network", "vgg", "unknown network 'vgg'; valid names are: mlp, cnn"),
])
def test_unknown_names_exit_2_listing_the_valid_ones(option, value, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_offline_failure_of_an_online_dataset_exits_2_without_traceback(monkeypatch, capsys):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets, "fetch_openml", unreachable)
    assert main(["run", "--dataset", "mnist", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sklearn-ntkal: error: Could not fetch dataset 'mnist_784'")
    assert "'digits'" in err and "'mnist5k'" in err and "Traceback" not in err


def test_datasets_and_strategies_are_listed(capsys):
    assert main(["datasets"]) == 0
    listed = capsys.readouterr().out
    for name in datasets.OFFLINE_DATASETS + datasets.ONLINE_DATASETS:
        assert name in listed
    assert main(["strategies"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(STRATEGIES)


def test_protocol_flags_set_the_new_fields_over_the_preset():
    config = _config(build_parser().parse_args(["run", "--preset", "proportional"]))
    assert (config.warm_start, config.candidate_factor, config.initial_size, config.batch_size) == (True, 4, 0.02, 0.02)
    assert config.imbalance is None
    config.validate()
    config = _config(build_parser().parse_args([
        "run", "--preset", "proportional", "--no-warm-start", "--candidate-factor", "none", "--imbalance", "10",
        "--initial-size", "0.05", "--batch-size", "7"]))
    assert (config.warm_start, config.candidate_factor, config.imbalance) == (False, None, 10.0)
    assert (config.initial_size, config.batch_size) == (0.05, 7)
    config = _config(build_parser().parse_args(["run", "--warm-start", "--candidate-factor", "3"]))
    assert (config.warm_start, config.candidate_factor, config.initial_size) == (True, 3, 20)


@pytest.mark.parametrize("option, value, expected", [
    ("--candidate-factor", "0", "argument --candidate-factor: expected a positive integer, got '0'"),
    ("--candidate-factor", "many", "argument --candidate-factor: expected a positive integer, got 'many'"),
    ("--imbalance", "0.5", "argument --imbalance: expected a class ratio above 1 or 'none', got '0.5'"),
    ("--n-jobs", "0", "argument --n-jobs: expected a non-zero integer (-1 for every core), got '0'"),
    ("--batch-size", "1.5", "argument --batch-size: expected a number of labels (1, 2, ...) or a fraction"),
    ("--initial-size", "-3", "argument --initial-size: expected a number of labels"),
    ("--epochs", "0", "epochs must be at least 1, got 0"),
    ("--max-samples", "-5", "max_samples must be a positive integer or None, got -5"),
    ("--learning-rate", "inf", "learning_rate must be positive and finite, got inf"),
    ("--rounds", "-1", "the number of rounds must be at least 0, got -1"),
])
def test_invalid_protocol_values_exit_2_with_a_usage_error(option, value, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", option, value, "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "usage:" in err and "Traceback" not in err


def test_n_jobs_reaches_the_runner(monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def fake_run_benchmark(config, **kwargs):
        seen.update(kwargs, config=config)
        raise Stop

    monkeypatch.setattr(cli, "run_benchmark", fake_run_benchmark)
    with pytest.raises(Stop):
        main(["run", *TINY, "--n-jobs", "-1", "--warm-start"])
    assert seen["n_jobs"] == -1 and seen["config"].warm_start is True and seen["progress"] is False
