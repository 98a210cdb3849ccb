"""Benchmarks of query strategies: named strategies and networks, the runners over seeds, tables and plots."""

from .presets import PRESETS
from .registry import DEFAULT_STRATEGIES, NETWORKS, STRATEGIES, ConfigError, make_network, make_strategy
from .report import (confidence_interval, format_streaming_table, format_table, plot_learning_curves,
                     plot_streaming_curves, summarize, summarize_streaming, write_report)
from .runner import BenchmarkConfig, BenchmarkResult, StrategyRun, run_benchmark
from .streaming import STREAMING_STRATEGIES, StreamingConfig, StreamingResult, StreamingRun, run_streaming

__all__ = [
    "DEFAULT_STRATEGIES",
    "NETWORKS",
    "PRESETS",
    "STRATEGIES",
    "STREAMING_STRATEGIES",
    "BenchmarkConfig",
    "BenchmarkResult",
    "ConfigError",
    "StrategyRun",
    "StreamingConfig",
    "StreamingResult",
    "StreamingRun",
    "confidence_interval",
    "format_streaming_table",
    "format_table",
    "make_network",
    "make_strategy",
    "plot_learning_curves",
    "plot_streaming_curves",
    "run_benchmark",
    "run_streaming",
    "summarize",
    "summarize_streaming",
    "write_report",
]
