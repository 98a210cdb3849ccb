"""Benchmark runner: learning curves of several query strategies over seeds, on one dataset and network."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from ..datasets import OFFLINE_DATASETS, ONLINE_DATASETS, load_dataset
from ..engine import LOSSES
from ..loop import area_under_budget_curve, initial_positions, run_active_learning
from .registry import (DEFAULT_STRATEGIES, NETWORKS, STRATEGIES, ConfigError, check_name, make_network,
                       make_strategy)


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark: a dataset, a network, the strategies to compare and the budget.

    Attributes
    ----------
    dataset : str, default="digits"
        A name accepted by :func:`sklearn_ntkal.datasets.load_dataset`.
    network : {"mlp", "cnn"}, default="mlp"
    loss : {"mse", "cross_entropy"}, default="mse"
        Training loss of the network; MSE on one-hot targets is the NTK
        look-ahead paper's setting.
    strategies : tuple of str
        Names from :data:`sklearn_ntkal.bench.registry.STRATEGIES`.
    initial_size : int, default=20
        Labels at round 0 (every class once, the rest at random).
    batch_size : int, default=20
        Labels queried per round.
    n_rounds : int, default=10
    seeds : tuple of int, default=(0, 1, 2, 3, 4)
        Each seed fixes the train/test split, the initial set, the network's
        initialisation and the strategies' random choices.
    epochs : int, default=100
        Training epochs of every round (no early stopping).
    learning_rate : float, default=1e-3
        Adam's learning rate.
    test_size : float, default=0.25
        Stratified held-out fraction on which accuracy is measured.
    max_samples : int or None, default=None
        Use a stratified subset of the dataset of this size (drawn once,
        with seed 0, the same for every seed).
    """

    dataset: str = "digits"
    network: str = "mlp"
    loss: str = "mse"
    strategies: tuple = DEFAULT_STRATEGIES
    initial_size: int = 20
    batch_size: int = 20
    n_rounds: int = 10
    seeds: tuple = (0, 1, 2, 3, 4)
    epochs: int = 100
    learning_rate: float = 1e-3
    test_size: float = 0.25
    max_samples: int | None = None

    def validate(self):
        """Raise :class:`~sklearn_ntkal.bench.registry.ConfigError` for an unknown name or a value out of range."""
        check_name("dataset", self.dataset, OFFLINE_DATASETS + ONLINE_DATASETS)
        check_name("network", self.network, NETWORKS)
        check_name("loss", self.loss, LOSSES)
        for name in self.strategies:
            check_name("strategy", name, STRATEGIES)
        _require(len(self.strategies) > 0 and len(set(self.strategies)) == len(self.strategies),
                 "strategies must be a non-empty list without repeats")
        _require(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds),
                 "seeds must be a non-empty list without repeats")
        for name in ("initial_size", "batch_size", "epochs"):
            _require(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        _require(self.n_rounds >= 0, f"the number of rounds must be at least 0, got {self.n_rounds}")
        _require(self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}")
        _require(0 < self.test_size < 1, f"test_size must be in (0, 1), got {self.test_size}")


def _require(condition, message):
    """Raise :class:`~sklearn_ntkal.bench.registry.ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass
class StrategyRun:
    """The learning curve of one strategy for one seed.

    Attributes
    ----------
    strategy : str
    seed : int
    n_labeled : list of int
        Labels used at each round, round 0 being the initial set.
    scores : list of float
        Test accuracy after each round's training ended.
    query_times, fit_times : list of float
        Seconds spent choosing the round's queries and training the network
        (``query_times[0]`` is 0: nothing is queried at round 0).
    queried_rows : list of list of int
        Rows of the dataset queried in each round, in selection order (empty at round 0).
    """

    strategy: str
    seed: int
    n_labeled: list
    scores: list
    query_times: list
    fit_times: list
    queried_rows: list

    @property
    def aubc(self):
        """Normalised area under the learning curve, :func:`~sklearn_ntkal.loop.area_under_budget_curve`."""
        return area_under_budget_curve(self.n_labeled, self.scores)


@dataclasses.dataclass
class BenchmarkResult:
    """Everything a benchmark measured.

    Attributes
    ----------
    config : BenchmarkConfig
    dataset_description : str
    initial_rows : dict of int to list of int
        Per seed, the dataset rows of the initial labelled set, shared by every strategy.
    runs : list of StrategyRun
        One per (seed, strategy), seeds outermost.
    """

    config: BenchmarkConfig
    dataset_description: str
    initial_rows: dict
    runs: list

    def curves(self, strategy):
        """``(n_labeled, scores)`` of ``strategy`` with one row of scores per seed.

        Returns
        -------
        n_labeled : ndarray of shape (K,)
        scores : ndarray of shape (n_seeds, K)
            Curves are cut to the shortest one (a pool can run out early).
        """
        runs = [run for run in self.runs if run.strategy == strategy]
        length = min(len(run.scores) for run in runs)
        return np.asarray(runs[0].n_labeled[:length]), np.array([run.scores[:length] for run in runs])

    def to_dict(self):
        """A JSON-ready dict of the configuration, the initial sets and every run."""
        return {
            "config": dataclasses.asdict(self.config),
            "dataset_description": self.dataset_description,
            "initial_rows": {str(seed): rows for seed, rows in self.initial_rows.items()},
            "runs": [dict(dataclasses.asdict(run), aubc=run.aubc) for run in self.runs],
        }


def _load_checkpoint(path, config):
    """Finished runs in the checkpoint at ``path`` by ``(strategy, seed)``; empty if there is none yet.

    Raises a :class:`ConfigError` if the checkpoint was written for other settings.
    """
    if path is None or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    expected = json.loads(json.dumps(dataclasses.asdict(config)))
    if not lines or lines[0] != expected:
        raise ConfigError(f"checkpoint {path} was written for other settings; remove it or pass another path")
    runs = [StrategyRun(**{k: v for k, v in line.items() if k != "aubc"}) for line in lines[1:]]
    return {(run.strategy, run.seed): run for run in runs}


def _append_checkpoint(path, config, run):
    """Add a finished run to the checkpoint at ``path``, writing the settings first if it is new."""
    if path is None:
        return
    new = not os.path.exists(path)
    with open(path, "a", encoding="utf-8") as handle:
        if new:
            handle.write(json.dumps(dataclasses.asdict(config)) + "\n")
        handle.write(json.dumps(dataclasses.asdict(run)) + "\n")


def run_benchmark(config, *, progress=True, checkpoint=None):
    """Compare query strategies by simulated active learning on a labelled dataset.

    For every seed the dataset is split (stratified) into a pool and a test
    set, and one initial labelled set is drawn from the pool; every strategy
    then starts from that same set and runs
    :func:`~sklearn_ntkal.loop.run_active_learning` for ``config.n_rounds``
    rounds of ``config.batch_size`` labels, the network retrained from scratch
    (same initialisation) every round. Accuracy on the test set is taken
    after training ends (no early stopping, no best epoch), and the time of
    each query is recorded apart from the time of training.

    Parameters
    ----------
    config : BenchmarkConfig
    progress : bool, default=True
        Show tqdm bars over (seed, strategy) runs and over rounds.
    checkpoint : str or None
        A JSON-lines file to which each finished (seed, strategy) run is
        appended. Runs already in it are reused, so an interrupted benchmark
        resumes where it stopped; it must have been written for the same
        settings.

    Returns
    -------
    BenchmarkResult

    Raises
    ------
    sklearn_ntkal.bench.registry.ConfigError
        For an unknown dataset, network, loss or strategy name (the message
        lists the valid ones) or a setting out of range.
    sklearn_ntkal.datasets.DatasetUnavailableError
        If an online dataset cannot be fetched.
    """
    config.validate()
    finished = _load_checkpoint(checkpoint, config)
    data = load_dataset(config.dataset, max_samples=config.max_samples, random_state=0)
    X = data.X
    n_pool = data.y.shape[0] - int(np.ceil(config.test_size * data.y.shape[0]))
    _require(data.n_classes <= config.initial_size < n_pool,
             f"initial_size must be between the number of classes ({data.n_classes}) and the pool size "
             f"({n_pool}) minus one, got {config.initial_size}")
    initial_rows, runs = {}, []
    with tqdm(total=len(config.seeds) * len(config.strategies), disable=not progress, desc="runs") as bar:
        for seed in config.seeds:
            pool, test = train_test_split(np.arange(data.y.shape[0]), test_size=config.test_size,
                                          stratify=data.y, random_state=seed)
            initial = initial_positions(data.y[pool], config.initial_size, check_random_state(seed))
            initial_rows[seed] = pool[initial].tolist()
            estimator = make_network(config.network, data.image_shape, loss=config.loss, epochs=config.epochs,
                                     learning_rate=config.learning_rate, random_state=seed)
            for name in config.strategies:
                bar.set_description(f"seed {seed} · {name}")
                if (name, seed) not in finished:
                    history = _run_one(estimator, make_strategy(name, random_state=seed), X[pool], data.y[pool],
                                       X[test], data.y[test], initial, config, progress)
                    finished[name, seed] = StrategyRun(
                        strategy=name, seed=seed, n_labeled=history.n_labeled,
                        scores=[float(s) for s in history.scores],
                        query_times=history.query_times, fit_times=history.fit_times,
                        queried_rows=[pool[q].tolist() for q in history.queried_indices])
                    _append_checkpoint(checkpoint, config, finished[name, seed])
                runs.append(finished[name, seed])
                bar.update(1)
    return BenchmarkResult(config=config, dataset_description=data.description, initial_rows=initial_rows,
                           runs=runs)


def _run_one(estimator, strategy, X_pool, y_pool, X_test, y_test, initial, config, progress):
    """One active-learning run on the pool, with a bar over its rounds that reports the accuracy."""
    with tqdm(total=config.n_rounds + 1, disable=not progress, desc="rounds", leave=False) as bar:
        def advance(round_index, fitted, history):
            bar.set_postfix(labels=history.n_labeled[-1], accuracy=f"{history.scores[-1]:.3f}")
            bar.update(1)

        return run_active_learning(estimator, strategy, X_pool, y_pool, X_test, y_test, initial, config.n_rounds,
                                   config.batch_size, keep_snapshots=False, callback=advance)
