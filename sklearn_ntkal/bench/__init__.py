"""Benchmarks of query strategies: named strategies and networks, the runner over seeds, tables and plots."""

from .presets import PRESETS
from .registry import DEFAULT_STRATEGIES, NETWORKS, STRATEGIES, ConfigError, make_network, make_strategy
from .report import format_table, plot_learning_curves, summarize, write_report
from .runner import BenchmarkConfig, BenchmarkResult, StrategyRun, run_benchmark

__all__ = [
    "DEFAULT_STRATEGIES",
    "NETWORKS",
    "PRESETS",
    "STRATEGIES",
    "BenchmarkConfig",
    "BenchmarkResult",
    "ConfigError",
    "StrategyRun",
    "format_table",
    "make_network",
    "make_strategy",
    "plot_learning_curves",
    "run_benchmark",
    "summarize",
    "write_report",
]
