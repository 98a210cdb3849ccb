"""Streaming benchmark: labels one at a time, the network retrained every R labels, the linearised model in between."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from tqdm.auto import tqdm

from ..estimators import LinearizedClassifier
from ..loop import area_under_budget_curve, round_estimator
from .registry import make_network, make_strategy
from .runner import (BenchmarkConfig, BenchmarkResult, StrategyRun, _is_int, _require, initial_rows, run_all,
                     shared_candidates)

STREAMING_STRATEGIES = {
    "margin_network": "smallest margin of the network of the last retrain: its top R, then no change until the "
                      "next retrain",
    "margin_linearized": "smallest margin of the linearised model, updated by partial_fit with every label: "
                         "one pick at a time",
    "lookahead_oracle": "sequential NTK look-ahead with the true label of each pick (ntk_lookahead_seq_oracle): "
                        "R picks at each retrain",
}
"""The strategies of the streaming benchmark, and what each does between two retrains."""

REFERENCE = "margin_network"


@dataclasses.dataclass(frozen=True)
class StreamingConfig(BenchmarkConfig):
    """Settings of the streaming benchmark, the look-ahead paper's distinctive claim.

    Labels arrive one at a time. The network is retrained every R labels
    (``batch_size``; warm-started by default); in between, a
    :class:`~sklearn_ntkal.estimators.LinearizedClassifier` around the last
    trained network takes each new label by ``partial_fit`` (a Cholesky
    update of the kernel regression, no SGD). Every strategy gets the same
    labels and the same retrains; they differ only in which rows they pick
    (:data:`STREAMING_STRATEGIES`). The fields are those of
    :class:`~sklearn_ntkal.bench.runner.BenchmarkConfig`, read as follows.

    Attributes
    ----------
    strategies : tuple of str, default=all of :data:`STREAMING_STRATEGIES`
    initial_size : int or float, default=0.02
        Labels the network is first trained on (a float: a fraction of the pool).
    batch_size : int or float, default=0.02
        R, the labels between two retrains: by default 2 % of the pool, the
        batch of the ``proportional`` preset, so a retrain comes exactly when
        a batch strategy would query its next batch.
    n_rounds : int, default=10
        Retrains after the initial training.
    warm_start : bool, default=True
        Each retrain continues from the previous weights (fresh optimiser, ``epochs`` epochs).
    candidate_factor : int or None, default=4
        Between two retrains every strategy picks among the same
        ``candidate_factor * R`` unlabelled rows drawn at the retrain
        (:class:`~sklearn_ntkal.loop.SharedCandidates`); ``None``: the whole pool.
    eval_every : int, default=1
        The linearised model's test accuracy is recorded after every
        ``eval_every`` labels of a stream and after the last label before each retrain.
    """

    strategies: tuple = tuple(STREAMING_STRATEGIES)
    initial_size: int | float = 0.02
    batch_size: int | float = 0.02
    warm_start: bool = True
    candidate_factor: int | None = 4
    eval_every: int = 1

    def validate(self):
        """Raise :class:`~sklearn_ntkal.bench.registry.ConfigError` for an unknown name or a value out of range."""
        super().validate()
        _require(_is_int(self.eval_every) and self.eval_every >= 1,
                 f"eval_every must be a positive integer, got {self.eval_every!r}")

    def known_strategies(self):
        """The strategy names of the streaming benchmark."""
        return STREAMING_STRATEGIES


@dataclasses.dataclass
class StreamingRun(StrategyRun):
    """The two learning curves of one streaming strategy for one seed.

    ``n_labeled`` and ``scores`` are the network's, at the initial training
    and at every retrain. ``query_times`` are the seconds spent choosing the
    rows of each stream (``query_times[0]`` is 0), ``fit_times`` the seconds
    of each retrain, network and refit of the linearised model together.

    Attributes
    ----------
    linear_n_labeled : list of int
        Labels the linearised model held when it was evaluated.
    linear_scores : list of float
        Its test accuracy then.
    update_times : list of float
        Seconds of ``partial_fit`` per stream (0 at round 0).
    """

    linear_n_labeled: list
    linear_scores: list
    update_times: list

    @property
    def linear_aubc(self):
        """Normalised area under the linearised model's learning curve."""
        return area_under_budget_curve(self.linear_n_labeled, self.linear_scores)


@dataclasses.dataclass
class StreamingResult(BenchmarkResult):
    """Everything a streaming benchmark measured; ``runs`` are :class:`StreamingRun`."""

    @staticmethod
    def types():
        """The configuration and run classes of a streaming result."""
        return StreamingConfig, StreamingRun

    def linear_curves(self, strategy):
        """``(n_labeled, scores)`` of the linearised model of ``strategy``, one row of scores per seed."""
        runs = [run for run in self.runs if run.strategy == strategy]
        length = min(len(run.linear_scores) for run in runs)
        return (np.asarray(runs[0].linear_n_labeled[:length]),
                np.array([run.linear_scores[:length] for run in runs]))

    def to_dict(self):
        """A JSON-ready dict of the configuration, the initial sets and every run, marked ``"kind": "streaming"``."""
        document = super().to_dict()
        for stored, run in zip(document["runs"], self.runs):
            stored["linear_aubc"] = run.linear_aubc
        return {"kind": "streaming", **document}


def run_streaming(config, *, progress=True, checkpoint=None, n_jobs=None):
    """Compare strategies when labels arrive one at a time and the network is retrained every R labels.

    For every seed and strategy: the network is trained on the initial set
    (shared by every strategy of the seed) and a
    :class:`~sklearn_ntkal.estimators.LinearizedClassifier` is fitted around
    it; then ``config.n_rounds`` times, R labels arrive one at a time, each
    one added to the linearised model by ``partial_fit``, and the network is
    retrained on every label (warm start by default) and the linearised
    model refitted around it. The strategies differ only in their picks
    (:data:`STREAMING_STRATEGIES`):

    - ``margin_network``: the R smallest margins of the network of the last
      retrain, which does not change in between (the stale network);
    - ``margin_linearized``: the smallest margin of the linearised model's
      ``predict_proba``, which has taken every label so far; one at a time;
    - ``lookahead_oracle``: sequential NTK look-ahead conditioned on the
      true label of each pick, R picks at the retrain; its rank-one updates
      between picks are what ``partial_fit`` does with the same labels.

    So all three see equal labels and equal retrains. Recorded: the
    network's test accuracy at each retrain and the linearised model's
    after every ``config.eval_every`` labels.

    Parameters
    ----------
    config : StreamingConfig
    progress : bool, default=True
    checkpoint : str or None
        JSON-lines file of finished runs; see :func:`~sklearn_ntkal.bench.runner.run_benchmark`.
    n_jobs : int or None
        Joblib workers over the (seed, strategy) runs; the result does not depend on it.

    Returns
    -------
    StreamingResult
    """
    data, budget, splits, runs = run_all(config, _streaming_run, StreamingRun, progress=progress,
                                         checkpoint=checkpoint, n_jobs=n_jobs)
    return StreamingResult(config=config, dataset_description=data.description, initial_rows=initial_rows(splits),
                           runs=runs, budget=budget)


def _margin_network(network, linear, X_pool, y_masked, y_pool, candidates, size, seed):
    """The ``size`` smallest margins of the network, chosen at once."""
    yield from make_strategy("margin").query(X_pool, y_masked, network, batch_size=size, candidates=candidates)


def _margin_linearized(network, linear, X_pool, y_masked, y_pool, candidates, size, seed):
    """One pick at a time: the smallest margin of the linearised model, which takes each label before the next."""
    margin = make_strategy("margin")
    remaining = candidates
    for _ in range(size):
        pick = margin.query(X_pool, y_masked, linear, batch_size=1, candidates=remaining)[0]
        yield pick
        remaining = remaining[remaining != pick]


def _lookahead_oracle(network, linear, X_pool, y_masked, y_pool, candidates, size, seed):
    """Sequential NTK look-ahead given the true label of each pick, ``size`` picks at once."""
    strategy = make_strategy("ntk_lookahead_seq_oracle", random_state=seed)
    yield from strategy.query(X_pool, y_masked, network, batch_size=size, candidates=candidates,
                              oracle=lambda rows: y_pool[rows])


_PICKERS = {"margin_network": _margin_network, "margin_linearized": _margin_linearized,
            "lookahead_oracle": _lookahead_oracle}


def _streaming_run(config, name, seed, data, split, budget, progress):
    """One (seed, strategy) streaming run as a :class:`StreamingRun`; runs in a joblib worker or in-process."""
    pool_rows, test, initial = split
    X_pool, y_pool, X_test, y_test = data.X[pool_rows], data.y[pool_rows], data.X[test], data.y[test]
    template = make_network(config.network, data.image_shape, loss=config.loss, epochs=config.epochs,
                            learning_rate=config.learning_rate, random_state=seed)
    draw = shared_candidates(config, budget["batch_size"], seed)
    labeled = np.asarray(initial, dtype=int)
    run = StreamingRun(strategy=name, seed=seed, n_labeled=[], scores=[], query_times=[0.0], fit_times=[],
                       queried_rows=[[]], linear_n_labeled=[int(labeled.size)], linear_scores=[], update_times=[0.0])
    network, linear = _retrain(template, None, X_pool, y_pool, labeled, X_test, y_test, config, run)
    run.linear_scores.append(float(linear.score(X_test, y_test)))
    streamed = 0
    for round_index in tqdm(range(1, config.n_rounds + 1), disable=not progress, desc="retrains", leave=False):
        mask = np.zeros(y_pool.shape[0], dtype=bool)
        mask[labeled] = True
        candidates = np.flatnonzero(~mask) if draw is None else draw(round_index, mask)
        if candidates.size == 0:
            break
        y_masked = np.where(mask, y_pool, np.nan)
        size = min(budget["batch_size"], candidates.size)
        picks = _PICKERS[name](network, linear, X_pool, y_masked, y_pool, candidates, size, seed)
        query_time = update_time = 0.0
        for step in range(size):
            start = time.perf_counter()
            pick = next(picks)
            query_time += time.perf_counter() - start
            y_masked[pick] = y_pool[pick]
            labeled = np.append(labeled, pick)
            start = time.perf_counter()
            linear.partial_fit(X_pool[[pick]], y_pool[[pick]])
            update_time += time.perf_counter() - start
            streamed += 1
            if streamed % config.eval_every == 0 or step == size - 1:
                run.linear_n_labeled.append(labeled.size)
                run.linear_scores.append(float(linear.score(X_test, y_test)))
        run.query_times.append(query_time)
        run.update_times.append(update_time)
        run.queried_rows.append(pool_rows[labeled[-size:]].tolist())
        network, linear = _retrain(template, network, X_pool, y_pool, labeled, X_test, y_test, config, run)
    return run


def _retrain(template, network, X_pool, y_pool, labeled, X_test, y_test, config, run):
    """Train the network on every label (warm start as configured), score it, refit the linearised model on it."""
    start = time.perf_counter()
    network = round_estimator(template, network, config.warm_start).fit(X_pool[labeled], y_pool[labeled])
    linear = LinearizedClassifier(network).fit(X_pool[labeled], y_pool[labeled])
    run.fit_times.append(time.perf_counter() - start)
    run.n_labeled.append(int(labeled.size))
    run.scores.append(float(network.score(X_test, y_test)))
    return network, linear
