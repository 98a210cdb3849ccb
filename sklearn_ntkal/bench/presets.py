"""Named benchmark settings: ``quick`` (a first look in minutes) and ``paper`` (the published learning curves)."""

from __future__ import annotations

PAPER_STRATEGIES = ("random", "entropy", "margin", "badge", "coreset", "ntk_lookahead", "ntk_lookahead_seq",
                    "dynamical", "dynamical_greedy")

PRESETS = {
    "quick": {
        "dataset": "digits",
        "network": "mlp",
        "strategies": ("random", "entropy", "margin", "ntk_lookahead", "dynamical"),
        "initial_size": 20,
        "batch_size": 20,
        "n_rounds": 4,
        "seeds": (0, 1),
        "epochs": 60,
    },
    "paper": {
        "strategies": PAPER_STRATEGIES,
        "initial_size": 20,
        "batch_size": 20,
        "n_rounds": 10,
        "seeds": (0, 1, 2, 3, 4),
        "epochs": 100,
    },
}
"""Overrides of :class:`~sklearn_ntkal.bench.runner.BenchmarkConfig` fields per preset name."""
