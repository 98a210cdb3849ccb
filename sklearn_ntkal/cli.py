"""The ``sklearn-ntkal`` command: run active-learning benchmarks, list datasets and strategies."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from .bench.presets import DESCRIPTIONS, PRESETS
from .bench.registry import NETWORKS, STRATEGIES, ConfigError
from .bench.report import write_report
from .bench.runner import BenchmarkConfig, run_benchmark
from .datasets import OFFLINE_DATASETS, ONLINE_DATASETS, DatasetUnavailableError
from .engine import LOSSES

_DEFAULTS = BenchmarkConfig()


def _comma_list(text):
    """Parse ``"a,b,c"`` into ``("a", "b", "c")``."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _seed_count(text):
    """Parse a number of seeds ``n`` into the seeds ``(0, ..., n - 1)``."""
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"the number of seeds must be at least 1, got {count}")
    return tuple(range(count))


def _size(text):
    """Parse a number of labels (an integer of at least 1) or a fraction of the pool in (0, 1)."""
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of labels (1, 2, ...) or a fraction of the pool in "
                                         f"(0, 1), got {text!r}")
    return value


def _positive_int(text):
    """Parse an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _candidate_factor(text):
    """Parse ``none`` (the whole pool) or a positive integer."""
    return None if text.lower() == "none" else _positive_int(text)


def _imbalance(text):
    """Parse ``none`` (the pool as split) or a class ratio above 1."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 1:
        raise argparse.ArgumentTypeError(f"expected a class ratio above 1 or 'none', got {text!r}")
    return value


def _n_jobs(text):
    """Parse joblib's number of workers: a non-zero integer (-1: every core)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a non-zero integer (-1 for every core), got {text!r}")
    return value


def build_parser():
    """The argument parser of ``sklearn-ntkal`` (sub-commands ``run``, ``datasets``, ``strategies``)."""
    parser = argparse.ArgumentParser(
        prog="sklearn-ntkal",
        description="Neural-tangent-kernel active learning: compare query strategies by learning curves.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", argument_default=argparse.SUPPRESS,
        help="simulate active learning with several strategies and report their learning curves",
        description="Simulate pool-based active learning on a labelled dataset with several query strategies, "
                    "over several seeds (each seed: its own train/test split and one initial labelled set "
                    "shared by every strategy). Prints a table of AUBC and final accuracy and writes a "
                    "learning-curve PNG and a JSON of every number. Options given explicitly override the "
                    "preset.")
    run.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="named settings: " + "; ".join(f"'{name}': {text}" for name, text in DESCRIPTIONS.items())
                     .replace("%", "%%"))
    run.add_argument("--dataset", help=f"dataset name (default {_DEFAULTS.dataset!r}); "
                                       "see 'sklearn-ntkal datasets'")
    run.add_argument("--network", help=f"one of {', '.join(NETWORKS)} (default {_DEFAULTS.network!r})")
    run.add_argument("--loss", help=f"training loss, one of {', '.join(LOSSES)} (default {_DEFAULTS.loss!r})")
    run.add_argument("--strategies", type=_comma_list,
                     help="comma-separated strategy names (default: "
                          f"{','.join(_DEFAULTS.strategies)}); see 'sklearn-ntkal strategies'")
    run.add_argument("--initial-size", type=_size, dest="initial_size",
                     help="labels at the start, or a fraction of the pool in (0, 1), at least one per class "
                          f"(default {_DEFAULTS.initial_size})")
    run.add_argument("--batch-size", type=_size, dest="batch_size",
                     help="labels queried per round, or a fraction of the pool in (0, 1) "
                          f"(default {_DEFAULTS.batch_size})")
    run.add_argument("--rounds", type=int, dest="n_rounds",
                     help=f"query rounds (default {_DEFAULTS.n_rounds})")
    run.add_argument("--seeds", type=_seed_count,
                     help=f"number of seeds, run as 0, 1, ... (default {len(_DEFAULTS.seeds)})")
    run.add_argument("--epochs", type=int, help=f"training epochs per round (default {_DEFAULTS.epochs})")
    run.add_argument("--learning-rate", type=float, dest="learning_rate",
                     help=f"Adam learning rate (default {_DEFAULTS.learning_rate})")
    run.add_argument("--test-size", type=float, dest="test_size",
                     help=f"held-out test fraction (default {_DEFAULTS.test_size})")
    run.add_argument("--max-samples", type=int, dest="max_samples",
                     help="use a stratified subset of the dataset of this size")
    run.add_argument("--warm-start", action=argparse.BooleanOptionalAction, dest="warm_start",
                     help="continue each round from the previous round's weights with a fresh optimiser, as both "
                          "papers do; --no-warm-start retrains from the same initialisation every round "
                          f"(default {_DEFAULTS.warm_start})")
    run.add_argument("--candidate-factor", type=_candidate_factor, dest="candidate_factor",
                     help="every strategy chooses among the same FACTOR x batch-size random unlabelled rows per "
                          "round (the look-ahead paper: 4); 'none' for the whole pool (default: none)")
    run.add_argument("--imbalance", type=_imbalance,
                     help="subsample the pool to a long-tailed class profile with this ratio of the largest to "
                          "the smallest class (e.g. 10) and the test set to equal class counts; 'none' keeps the "
                          "stratified split (default: none)")
    run.add_argument("--n-jobs", type=_n_jobs, dest="n_jobs", default=None,
                     help="joblib worker processes over the (seed, strategy) runs, -1 for every core; the "
                          "results do not depend on it (default: 1)")
    run.add_argument("--out", default=None, help="output folder (default results/<dataset>_<network>)")
    run.add_argument("--no-progress", action="store_true", default=False, help="hide the progress bars")

    commands.add_parser("datasets", help="list the dataset names")
    commands.add_parser("strategies", help="list the strategy names")
    return parser


def _config(args):
    """The :class:`BenchmarkConfig` of the ``run`` arguments: defaults, then the preset, then explicit options."""
    fields = {name: value for name, value in vars(args).items() if name in BenchmarkConfig.__dataclass_fields__}
    return BenchmarkConfig(**{**PRESETS.get(args.preset, {}), **fields})


def _run(config, args, argv):
    """Run the benchmark of ``config``, print the table and where the files are; return the exit code."""
    out = args.out or os.path.join("results", f"{config.dataset}_{config.network}")
    result = run_benchmark(config, progress=not args.no_progress, n_jobs=args.n_jobs)
    paths = write_report(result, out, command="sklearn-ntkal " + shlex.join(argv))
    print(f"\n{result.dataset_description}; network {config.network}, loss {config.loss}, "
          f"{len(config.seeds)} seeds (mean ± std)\n")
    print(paths["table"])
    print(f"\nlearning curves: {paths['plot_path']}\nall numbers:     {paths['json_path']}")
    return 0


def main(argv=None):
    """Entry point of ``sklearn-ntkal`` and ``python -m sklearn_ntkal``; returns the exit code.

    Parameters
    ----------
    argv : list of str or None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        0 on success, 2 for a usage error or a dataset that cannot be loaded.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "datasets":
        print("offline (no network needed): " + ", ".join(OFFLINE_DATASETS))
        print("online (downloaded from OpenML, then cached): " + ", ".join(ONLINE_DATASETS))
        return 0
    if args.command == "strategies":
        width = max(map(len, STRATEGIES))
        for name, entry in STRATEGIES.items():
            print(f"{name:<{width}}  {entry.description}")
        return 0
    config = _config(args)
    try:
        config.validate()
        return _run(config, args, argv)
    except ConfigError as exc:
        parser.error(str(exc))
    except (DatasetUnavailableError, ImportError) as exc:
        print(f"sklearn-ntkal: error: {exc}", file=sys.stderr)
        return 2
