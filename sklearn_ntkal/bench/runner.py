"""Benchmark runner: learning curves of several query strategies over seeds, on one dataset and network."""

from __future__ import annotations

import dataclasses
import json
import numbers
import os

import joblib
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from ..datasets import OFFLINE_DATASETS, ONLINE_DATASETS, balanced_subset, imbalanced_subset, load_dataset
from ..engine import LOSSES
from ..loop import SharedCandidates, area_under_budget_curve, initial_positions, run_active_learning
from .registry import (DEFAULT_STRATEGIES, NETWORKS, STRATEGIES, ConfigError, check_name, make_network,
                       make_strategy)


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark: a dataset, a network, the strategies to compare and the budget.

    Every strategy of a benchmark trains the same network with the same
    ``loss``, so a benchmark compares strategies at one loss; MSE and
    cross-entropy are separate benchmarks.

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
    initial_size : int or float, default=20
        Labels at round 0 (every class once, the rest at random). A float in
        (0, 1) is a fraction of the pool, resolved once per benchmark on the
        pool of the first seed, and at least the number of classes.
    batch_size : int or float, default=20
        Labels queried per round; a float in (0, 1) is a fraction of the pool
        (at least 1), like ``initial_size``.
    n_rounds : int, default=10
    seeds : tuple of int, default=(0, 1, 2, 3, 4)
        Each seed fixes the train/test split, the initial set, the network's
        initialisation, the candidates and the strategies' random choices.
    epochs : int, default=100
        Training epochs of every round (no early stopping).
    learning_rate : float, default=1e-3
        Adam's learning rate.
    test_size : float, default=0.25
        Stratified held-out fraction on which accuracy is measured.
    max_samples : int or None, default=None
        Use a stratified subset of the dataset of this size (drawn once,
        with seed 0, the same for every seed).
    warm_start : bool, default=False
        ``True``: each round continues training the previous round's network
        with a fresh optimiser state for ``epochs`` epochs, as both papers
        do. ``False``: every round retrains from the same initialisation
        (the control).
    candidate_factor : int or None, default=None
        Each round every strategy, baselines included, chooses among the same
        ``candidate_factor * batch_size`` unlabelled rows
        (:class:`~sklearn_ntkal.loop.SharedCandidates`, drawn from the seed
        and the round only); 4 is the look-ahead paper's 4000 candidates for
        batches of 1000. ``None``: the whole unlabelled pool.
    imbalance : float or None, default=None
        A ratio ``rho > 1``: the pool of every seed is subsampled to a
        long-tailed class profile ``n_c ~ rho ** (-c / (C - 1))`` (class order
        drawn from the seed, :func:`~sklearn_ntkal.datasets.imbalanced_subset`)
        and its test set to equal class counts. ``None``: the stratified split as it is.
    """

    dataset: str = "digits"
    network: str = "mlp"
    loss: str = "mse"
    strategies: tuple = DEFAULT_STRATEGIES
    initial_size: int | float = 20
    batch_size: int | float = 20
    n_rounds: int = 10
    seeds: tuple = (0, 1, 2, 3, 4)
    epochs: int = 100
    learning_rate: float = 1e-3
    test_size: float = 0.25
    max_samples: int | None = None
    warm_start: bool = False
    candidate_factor: int | None = None
    imbalance: float | None = None

    def validate(self):
        """Raise :class:`~sklearn_ntkal.bench.registry.ConfigError` for an unknown name or a value out of range."""
        check_name("dataset", self.dataset, OFFLINE_DATASETS + ONLINE_DATASETS)
        check_name("network", self.network, NETWORKS)
        check_name("loss", self.loss, LOSSES)
        for name in self.strategies:
            check_name("strategy", name, self.known_strategies())
        _require(len(self.strategies) > 0 and len(set(self.strategies)) == len(self.strategies),
                 "strategies must be a non-empty list without repeats")
        _require(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds)
                 and all(_is_int(seed) and seed >= 0 for seed in self.seeds),
                 "seeds must be a non-empty list of distinct non-negative integers")
        for name in ("initial_size", "batch_size"):
            value = getattr(self, name)
            _require((_is_int(value) and value >= 1) or (isinstance(value, float) and 0 < value < 1),
                     f"{name} must be a positive integer or a fraction of the pool in (0, 1), got {value!r}")
        _require(_is_int(self.epochs) and self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _require(_is_int(self.n_rounds) and self.n_rounds >= 0,
                 f"the number of rounds must be at least 0, got {self.n_rounds}")
        _require(self.max_samples is None or (_is_int(self.max_samples) and self.max_samples >= 1),
                 f"max_samples must be a positive integer or None, got {self.max_samples!r}")
        _require(0 < self.learning_rate < float("inf"), f"learning_rate must be positive and finite, "
                                                         f"got {self.learning_rate}")
        _require(0 < self.test_size < 1, f"test_size must be in (0, 1), got {self.test_size}")
        _require(isinstance(self.warm_start, bool), f"warm_start must be True or False, got {self.warm_start!r}")
        _require(self.candidate_factor is None or (_is_int(self.candidate_factor) and self.candidate_factor >= 1),
                 f"candidate_factor must be a positive integer or None, got {self.candidate_factor!r}")
        _require(self.imbalance is None or (isinstance(self.imbalance, numbers.Real) and self.imbalance > 1),
                 f"imbalance must be a class ratio above 1 or None, got {self.imbalance!r}")

    def known_strategies(self):
        """The strategy names this kind of benchmark runs."""
        return STRATEGIES


def _require(condition, message):
    """Raise :class:`~sklearn_ntkal.bench.registry.ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def _is_int(value):
    """Whether ``value`` is an integer and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


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
    budget : dict
        ``pool_size`` (of the first seed), and ``initial_size`` and
        ``batch_size`` in labels, as resolved from the configuration.
    """

    config: BenchmarkConfig
    dataset_description: str
    initial_rows: dict
    runs: list
    budget: dict = dataclasses.field(default_factory=dict)

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

    @classmethod
    def from_dict(cls, document):
        """The result held by a :meth:`to_dict` document, e.g. a report's ``results.json``.

        Fields the document lacks (written before they existed) take their defaults.

        Parameters
        ----------
        document : dict

        Returns
        -------
        BenchmarkResult
        """
        config_type, run_type = cls.types()
        names = {field.name for field in dataclasses.fields(config_type)}
        config = config_type(**{key: tuple(value) if isinstance(value, list) else value
                                for key, value in document["config"].items() if key in names})
        names = {field.name for field in dataclasses.fields(run_type)}
        runs = [run_type(**{key: value for key, value in run.items() if key in names}) for run in document["runs"]]
        return cls(config=config, dataset_description=document["dataset_description"],
                   initial_rows={int(seed): rows for seed, rows in document["initial_rows"].items()}, runs=runs,
                   budget=document.get("budget", {}))

    @staticmethod
    def types():
        """The configuration and run classes of this kind of result."""
        return BenchmarkConfig, StrategyRun

    def to_dict(self):
        """A JSON-ready dict of the configuration, the initial sets and every run."""
        return {
            "config": dataclasses.asdict(self.config),
            "dataset_description": self.dataset_description,
            "initial_rows": {str(seed): rows for seed, rows in self.initial_rows.items()},
            "budget": self.budget,
            "runs": [dict(dataclasses.asdict(run), aubc=run.aubc) for run in self.runs],
        }


def load_checkpoint(path, config, run_type):
    """Finished runs in the checkpoint at ``path`` by ``(strategy, seed)``; empty if there is none yet.

    Runs depend on every setting but the lists of strategies and seeds, so a
    benchmark resumed with more strategies or seeds reuses what finished.

    Parameters
    ----------
    path : str or None
    config : BenchmarkConfig
    run_type : type
        The dataclass of a run (:class:`StrategyRun` or a subclass).

    Raises
    ------
    ConfigError
        If the checkpoint was written for other settings.
    """
    if path is None or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    if not lines or _settings(lines[0]) != _settings(json.loads(json.dumps(dataclasses.asdict(config)))):
        raise ConfigError(f"checkpoint {path} was written for other settings; remove it or pass another path")
    fields = {field.name for field in dataclasses.fields(run_type)}
    runs = [run_type(**{key: value for key, value in line.items() if key in fields}) for line in lines[1:]]
    return {(run.strategy, run.seed): run for run in runs}


def _settings(fields):
    """The fields of a configuration that a finished run depends on: all but the strategy and seed lists."""
    return {key: value for key, value in fields.items() if key not in ("strategies", "seeds")}


def append_checkpoint(path, config, run):
    """Add a finished run to the checkpoint at ``path``, writing the settings first if it is new."""
    if path is None:
        return
    new = not os.path.exists(path)
    with open(path, "a", encoding="utf-8") as handle:
        if new:
            handle.write(json.dumps(dataclasses.asdict(config)) + "\n")
        handle.write(json.dumps(dataclasses.asdict(run)) + "\n")


def split_pool(config, y, seed):
    """Rows of the pool and of the test set for ``seed``.

    A stratified split with ``config.test_size`` held out; with
    ``config.imbalance`` the pool is then subsampled to the long-tailed
    profile and the test set to equal class counts, both drawn from ``seed``.

    Parameters
    ----------
    config : BenchmarkConfig
    y : ndarray of shape (n_samples,)
        Labels of the whole dataset, ``0 .. n_classes - 1``.
    seed : int

    Returns
    -------
    pool, test : ndarray of int
        Rows of the dataset.
    """
    pool, test = train_test_split(np.arange(y.shape[0]), test_size=config.test_size, stratify=y, random_state=seed)
    if config.imbalance is not None:
        pool = pool[imbalanced_subset(y[pool], config.imbalance, random_state=seed)]
        test = test[balanced_subset(y[test], random_state=seed)]
    return pool, test


def resolve_budget(config, n_pool, n_classes):
    """Labels of the initial set and of a round: integers as given, fractions of ``n_pool`` rounded.

    A fractional initial set is at least ``n_classes`` (every class once), a
    fractional batch at least 1.

    Returns
    -------
    dict
        ``pool_size``, ``initial_size`` and ``batch_size``.

    Raises
    ------
    ConfigError
        If the initial set is not between the number of classes and the pool size minus one.
    """
    initial = config.initial_size if _is_int(config.initial_size) else max(n_classes,
                                                                              round(config.initial_size * n_pool))
    batch = config.batch_size if _is_int(config.batch_size) else max(1, round(config.batch_size * n_pool))
    _require(n_classes <= initial < n_pool,
             f"initial_size must be between the number of classes ({n_classes}) and the pool size "
             f"({n_pool}) minus one, got {initial}")
    return {"pool_size": int(n_pool), "initial_size": int(initial), "batch_size": int(batch)}


def fan_out(function, tasks, *, n_jobs, progress, desc="runs"):
    """Call ``function(**task)`` for every task with joblib; yield the results as they finish.

    ``n_jobs`` is joblib's (``None``: 1 unless a ``joblib.parallel_config``
    says otherwise; ``-1``: every core). Processes are preferred, so the
    default backend is loky: each worker is a fresh Python process with its
    own JAX. ``with joblib.parallel_config(backend="dask"):`` (with a
    ``dask.distributed`` client) or Ray's ``register_ray()`` and
    ``backend="ray"`` take the same calls to a cluster.

    Parameters
    ----------
    function : callable
        A module-level function (picklable by reference).
    tasks : list of dict
    n_jobs : int or None
    progress : bool
        Show a tqdm bar over the tasks.
    desc : str

    Yields
    ------
    object
        ``function(**task)``, in the order the tasks finish.
    """
    parallel = joblib.Parallel(n_jobs=n_jobs, prefer="processes", return_as="generator_unordered")
    with tqdm(total=len(tasks), disable=not progress, desc=desc) as bar:
        for result in parallel(joblib.delayed(function)(**task) for task in tasks):
            bar.set_postfix_str(f"seed {result.seed} · {result.strategy} done")
            bar.update(1)
            yield result


def prepare(config):
    """Load the dataset and draw every seed's pool, test set and initial set.

    Returns
    -------
    data : Dataset
    budget : dict
        :func:`resolve_budget` on the pool of the first seed.
    splits : dict of int to tuple
        Per seed, ``(pool, test, initial)``: dataset rows of the pool and of
        the test set, and the positions in the pool of the initial set.
    """
    data = load_dataset(config.dataset, max_samples=config.max_samples, random_state=0)
    pools = {seed: split_pool(config, data.y, seed) for seed in config.seeds}
    budget = resolve_budget(config, pools[config.seeds[0]][0].size, data.n_classes)
    splits = {seed: (pool, test, initial_positions(data.y[pool], budget["initial_size"], check_random_state(seed)))
              for seed, (pool, test) in pools.items()}
    return data, budget, splits


def run_benchmark(config, *, progress=True, checkpoint=None, n_jobs=None):
    """Compare query strategies by simulated active learning on a labelled dataset.

    For every seed the dataset is split (stratified) into a pool and a test
    set (with ``config.imbalance``, the pool long-tailed and the test set
    balanced), and one initial labelled set is drawn from the pool; every
    strategy then starts from that same set and runs
    :func:`~sklearn_ntkal.loop.run_active_learning` for ``config.n_rounds``
    rounds of ``config.batch_size`` labels, the network retrained every
    round, from scratch (same initialisation) or warm-started
    (``config.warm_start``), every strategy choosing among the same shared
    candidates when ``config.candidate_factor`` is set. Strategies
    registered with an oracle get the true label of each pick. Accuracy on
    the test set is taken after training ends (no early stopping, no best
    epoch), and the time of each query is recorded apart from the time of
    training.

    Parameters
    ----------
    config : BenchmarkConfig
    progress : bool, default=True
        Show tqdm bars over (seed, strategy) runs, and over rounds when the runs are not spread over processes.
    checkpoint : str or None
        A JSON-lines file to which each finished (seed, strategy) run is
        appended by this process as it arrives. Runs already in it are
        reused, so an interrupted benchmark resumes where it stopped; it must
        have been written for the same settings.
    n_jobs : int or None
        Joblib workers over the (seed, strategy) runs (see :func:`fan_out`).
        Every random choice comes from the seed, so the result is the same
        for any ``n_jobs``.

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
    data, budget, splits, runs = run_all(config, _strategy_run, StrategyRun, progress=progress, checkpoint=checkpoint,
                                         n_jobs=n_jobs)
    return BenchmarkResult(config=config, dataset_description=data.description, initial_rows=initial_rows(splits),
                           runs=runs, budget=budget)


def run_all(config, worker, run_type, *, progress, checkpoint, n_jobs):
    """Validate ``config``, then run ``worker`` for every (seed, strategy) not in the checkpoint.

    Parameters
    ----------
    config : BenchmarkConfig
    worker : callable
        A module-level function ``worker(config, name, seed, data, split,
        budget, progress)`` returning a ``run_type``: ``data`` is the
        :class:`~sklearn_ntkal.datasets.Dataset`, ``split`` the seed's entry of
        :func:`prepare`'s splits, ``name`` the strategy.
    run_type : type
    progress : bool
    checkpoint : str or None
        Written by this process as each run arrives.
    n_jobs : int or None

    Returns
    -------
    data : Dataset
    budget : dict
    splits : dict
        See :func:`prepare`.
    runs : list
        One per (seed, strategy), seeds outermost.
    """
    config.validate()
    finished = load_checkpoint(checkpoint, config, run_type)
    data, budget, splits = prepare(config)
    inner_progress = progress and joblib.effective_n_jobs(n_jobs) == 1
    tasks = [{"config": config, "name": name, "seed": seed, "data": data, "split": splits[seed], "budget": budget,
              "progress": inner_progress}
             for seed in config.seeds for name in config.strategies if (name, seed) not in finished]
    for run in fan_out(worker, tasks, n_jobs=n_jobs, progress=progress):
        finished[run.strategy, run.seed] = run
        append_checkpoint(checkpoint, config, run)
    return data, budget, splits, [finished[name, seed] for seed in config.seeds for name in config.strategies]


def initial_rows(splits):
    """Per seed, the dataset rows of the initial set, from :func:`prepare`'s splits."""
    return {seed: pool[initial].tolist() for seed, (pool, _, initial) in splits.items()}


def _strategy_run(config, name, seed, data, split, budget, progress):
    """One (seed, strategy) run as a :class:`StrategyRun`; runs in a joblib worker as well as in-process."""
    pool, test, initial = split
    estimator = make_network(config.network, data.image_shape, loss=config.loss, epochs=config.epochs,
                             learning_rate=config.learning_rate, random_state=seed)
    options = {"warm_start": config.warm_start, "candidates": shared_candidates(config, budget["batch_size"], seed),
               "oracle": STRATEGIES[name].oracle}
    history = _run_one(estimator, make_strategy(name, random_state=seed), data.X[pool], data.y[pool], data.X[test],
                       data.y[test], initial, config.n_rounds, budget["batch_size"], options, progress)
    return StrategyRun(strategy=name, seed=seed, n_labeled=history.n_labeled,
                       scores=[float(s) for s in history.scores], query_times=history.query_times,
                       fit_times=history.fit_times, queried_rows=[pool[q].tolist() for q in history.queried_indices])


def shared_candidates(config, batch_size, seed):
    """The :class:`~sklearn_ntkal.loop.SharedCandidates` of ``config`` for a seed, or None for the whole pool."""
    if config.candidate_factor is None:
        return None
    return SharedCandidates(size=config.candidate_factor * batch_size, seed=seed)


def _run_one(estimator, strategy, X_pool, y_pool, X_test, y_test, initial, n_rounds, batch_size, options, progress):
    """One active-learning run on the pool, with a bar over its rounds that reports the accuracy.

    ``options`` are the ``warm_start``, ``candidates`` and ``oracle`` keywords of
    :func:`~sklearn_ntkal.loop.run_active_learning`.
    """
    with tqdm(total=n_rounds + 1, disable=not progress, desc="rounds", leave=False) as bar:
        def advance(round_index, fitted, history):
            bar.set_postfix(labels=history.n_labeled[-1], accuracy=f"{history.scores[-1]:.3f}")
            bar.update(1)

        return run_active_learning(estimator, strategy, X_pool, y_pool, X_test, y_test, initial, n_rounds,
                                   batch_size, keep_snapshots=False, callback=advance, **options)
