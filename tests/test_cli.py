"""The ``sklearn-ntkal`` command line: a tiny run end to end, presets, listings and clear errors."""

import json
import os
import subprocess
import sys
import urllib.error

import pytest

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
    assert (config.dataset, config.network, len(config.seeds)) == ("digits", "mlp", 2)
    assert config.strategies == ("random", "entropy", "margin", "ntk_lookahead", "dynamical")
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
