"""benchmarks/gpu_suite.py: its plan, that every planned command parses with its script, and its report."""

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def suite(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("gpu_suite")


def _flag(command, name):
    """The values after ``name`` in ``command``, up to the next flag."""
    i = command.index(name) + 1
    values = []
    while i < len(command) and not command[i].startswith("--"):
        values.append(command[i])
        i += 1
    return values


def test_plan_of_the_gpu_run(suite, tmp_path):
    commands = dict(suite.plan(suite.parse_args(["--out", str(tmp_path)])))
    assert list(commands) == ["bench_ntk", "lookahead_speed", "dynamical_scaling", "pool_scaling", "al_curves",
                              "resnet_lookahead"]
    assert _flag(commands["resnet_lookahead"], "--width") == ["64"]
    ntk = commands["bench_ntk"]
    assert _flag(ntk, "--n") == ["1000"]
    assert _flag(ntk, "--networks") == ["mlp", "cnn"] and _flag(ntk, "--kinds") == ["full", "pntk"]
    assert _flag(commands["pool_scaling"], "--sizes") == ["1000000"]
    assert "--quick" in commands["al_curves"]
    for name, command in commands.items():
        assert Path(command[1]).name == f"{name}.py" and _flag(command, "--out") == [str(tmp_path / name)]


def test_quick_plan_is_small_and_selectable(suite, tmp_path):
    commands = dict(suite.plan(suite.parse_args(["--quick", "--parts", "bench_ntk", "pool_scaling",
                                                 "--out", str(tmp_path)])))
    assert list(commands) == ["bench_ntk", "pool_scaling"]
    assert int(_flag(commands["bench_ntk"], "--n")[0]) <= 200
    assert max(map(int, _flag(commands["pool_scaling"], "--sizes"))) <= 10_000


@pytest.mark.parametrize("quick", [False, True])
def test_every_planned_command_parses_with_its_script(suite, monkeypatch, tmp_path, quick):
    """The suite's flags are those each script accepts (its own argparse, run on the planned arguments)."""
    for name, command in suite.plan(suite.parse_args(["--out", str(tmp_path)] + ["--quick"] * quick)):
        module = importlib.import_module(name)
        monkeypatch.setattr(sys, "argv", command[1:])
        parsed = module.parse_args() if name == "lookahead_speed" else module.parse_args(command[2:])
        assert str(parsed.out) == str(tmp_path / name)


def _write(path, document):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def test_report_reads_every_part(suite, tmp_path):
    _write(tmp_path / "bench_ntk" / "results.json", {"matmul_flops_per_s": 5e13, "results": [
        {"network": "mlp", "kind": "full", "n": 1000, "rows": [
            {"implementation": "structured", "memory_budget_mib": 2048.0, "seconds_at_n": 0.125,
             "roofline_fraction": 0.8}]}]})
    _write(tmp_path / "lookahead_speed" / "results.json", {"rows": [
        {"objective": "mlmoc", "pool": 1000, "ntk_s": 0.05, "retrain_s": 90.0, "speedup": 1800.0, "overlap": 0.7,
         "extrapolated": True}]})
    _write(tmp_path / "dynamical_scaling" / "dynamical_scaling.json", {"rows": [
        {"network": "cnn", "pool": 100000, "seconds": 1.5, "rss_growth_mb": 12.0, "naive_s": 300.0}]})
    _write(tmp_path / "pool_scaling" / "pool_scaling.json", {"verdict": "peak RSS under 3072 MiB: met", "rows": [
        {"strategy": "badge", "pool": 1000000, "seconds": 4.25, "peak_rss_mib": 2100.0}]})
    _write(tmp_path / "al_curves" / "digits_mlp" / "results.json", {"summary": [
        {"strategy": "margin", "aubc": [0.9123, 0.01], "query_time": [0.02, 0.0]}]})
    _write(tmp_path / "resnet_lookahead" / "results.json", {"width": 64, "candidates": 4000, "batch": 100,
                                                             "query_s": 42.25, "fit_s": 30.0, "peak_rss_gib": 3.5})
    parts = [suite.collect({"name": name, "returncode": 0, "seconds": 1.0}, tmp_path) for name in suite.PARTS]
    document = {"device": {"device": "cuda:0", "device_kind": "NVIDIA H200", "platform": "gpu", "devices": 1,
                           "jax": "0.12.0"}, "python": "3.12.1", "quick": False, "total_seconds": 300.0,
                "parts": parts}
    page = suite.markdown(document)
    for text in ("NVIDIA H200", "jax 0.12.0", "50000 GFLOP/s", "0.125 s (80% of roofline)", "1800x, overlap 70%",
                 "RSS +12 MiB", "badge, pool 1000000 | 4.25 s, peak RSS 2100 MiB", "met",
                 "digits_mlp: margin | AUBC 0.9123", "ResNet-18 width 64, 4000 candidates, 100 picks | query 42.2 s"):
        assert text in page
    assert all(part["figures"] and "error" not in part for part in parts)


def test_missing_output_is_reported_not_raised(suite, tmp_path):
    record = suite.collect({"name": "pool_scaling", "returncode": 1, "seconds": 2.0}, tmp_path)
    assert record["figures"] == [] and "no figures" in record["error"]
    assert "| pool_scaling (exit 1) | 2 | | |" in suite.markdown(
        {"device": {"device": "cpu"}, "python": "3.12", "quick": True, "total_seconds": 2.0, "parts": [record]})
