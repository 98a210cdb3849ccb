"""Named benchmark settings: ``quick``, ``paper`` (cold start) and ``proportional`` (the papers' protocol)."""

from __future__ import annotations

PAPER_STRATEGIES = ("random", "entropy", "margin", "badge", "coreset", "ntk_lookahead", "ntk_lookahead_seq",
                    "dynamical")

PROTOCOL_STRATEGIES = ("random", "entropy", "margin", "badge", "coreset", "ntk_lookahead", "ntk_lookahead_seq",
                       "ntk_lookahead_seq_oracle", "ntk_lookahead_hybrid_oracle", "ntk_prefilter", "ntk_influence",
                       "ntk_eer", "dynamical", "dynamical_deinfluence")
"""Strategies of the papers' protocol: the baselines, NTK look-ahead with pseudo and true labels, the project's
look-ahead objectives beyond the paper (margin pre-filter, influence, calibrated EER), dynamicAL top-k and its
de-influence sequence.

dynamicAL's greedy variant is left out: it picks near-duplicates (a documented negative result)."""

PRESETS = {
    "quick": {
        "dataset": "digits",
        "network": "mlp",
        "strategies": ("random", "margin", "ntk_influence", "dynamical_deinfluence"),
        "initial_size": 0.02,
        "batch_size": 0.02,
        "n_rounds": 5,
        "seeds": (0, 1, 2),
        "epochs": 60,
        "warm_start": True,
        "candidate_factor": 4,
    },
    "paper": {
        "strategies": PAPER_STRATEGIES,
        "initial_size": 20,
        "batch_size": 20,
        "n_rounds": 10,
        "seeds": (0, 1, 2, 3, 4),
        "epochs": 100,
    },
    "proportional": {
        "strategies": PROTOCOL_STRATEGIES,
        "initial_size": 0.02,
        "batch_size": 0.02,
        "n_rounds": 10,
        "seeds": (0, 1, 2, 3, 4),
        "epochs": 100,
        "warm_start": True,
        "candidate_factor": 4,
    },
}
"""Overrides of :class:`~sklearn_ntkal.bench.runner.BenchmarkConfig` fields per preset name."""

DESCRIPTIONS = {
    "quick": "digits, MLP, random and margin beside the default NTK look-ahead and dynamicAL, 3 seeds, the "
             "papers' proportions (2 % of the pool initially and per round) for 5 warm-started rounds: a first look "
             "in a few minutes on a laptop CPU",
    "paper": "cold start: 20 initial labels, 10 rounds of 20, the network retrained from scratch every round, "
             "the whole pool as candidates, 5 seeds (the project's first published curves)",
    "proportional": "the papers' protocol: initial set and batch each 2 % of the pool, 10 rounds, warm-started "
                    "retraining, every strategy choosing from the same 4 x batch random candidates per round, "
                    "5 seeds",
}
"""One line per preset, shown by the command line's help."""
