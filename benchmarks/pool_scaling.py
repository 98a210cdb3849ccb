"""Query time and peak memory of every strategy, and of predict_proba, against pool size (10k to 1M rows).

A network (an MLP trained with MSE on ``--n-labeled`` labelled rows, the
benchmark runner's 256-256 MLP unless ``--hidden``) queries batches of
``--k`` rows from generated pools of ``--sizes`` rows of ``--features``
float32 features: a seeded Gaussian mixture of ``--classes`` classes, made
in blocks so no float64 copy of the pool ever exists. Each (strategy, pool
size) runs in a fresh subprocess so that its peak resident set size is its
own:

- time: one query after a warm-up query on the first ``--warmup`` rows, so
  compilation is excluded (chunk shapes do not depend on the pool size past
  a few thousand rows);
- memory: the process's peak resident set size during the warm-up and the
  query (``VmHWM`` after resetting the kernel's mark through
  ``/proc/self/clear_refs``; ``getrusage`` where that is not possible), which
  counts the pool, the network, JAX's runtime and every working array; and
  its growth over the resident size just before the warm-up.

The strategies are the benchmark runner's (``sklearn_ntkal.bench.registry``):
random, entropy, margin, BADGE, Coreset, NTK look-ahead (batch, 4000 random
candidates) and dynamicAL (top-k), plus ``predict_proba`` on the whole pool.
The goals: time linear in the pool and a peak under 3 GiB for every
strategy at 1M rows.

Writes ``pool_scaling.json`` and ``table.md`` into ``--out``.

    python benchmarks/pool_scaling.py --quick     # 10k and 100k rows
    python benchmarks/pool_scaling.py             # 10k, 100k and 1M rows
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dynamical_scaling import peak_rss, start_peak_rss

PREDICT = "predict_proba"
STRATEGIES = ("random", "entropy", "margin", "badge", "coreset", "ntk_lookahead", "dynamical", PREDICT)
GOAL_MIB = 3 * 1024


def parse_args(argv=None):
    """Command-line options; ``--quick`` keeps the 10k and 100k pools."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--n-labeled", type=int, default=300)
    parser.add_argument("--k", type=int, default=100, help="rows selected per query")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden widths of the MLP")
    parser.add_argument("--epochs", type=int, default=100, help="training epochs of the network")
    parser.add_argument("--warmup", type=int, default=8192, help="rows of the warm-up query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="pools of 10k and 100k rows only")
    parser.add_argument("--out", type=Path, default=Path("results/pool_scaling"))
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "SIZE", "STRATEGY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [size for size in args.sizes if size <= 100_000] or [10_000, 100_000]
    return args


def generate(n, args, seed, block=65_536):
    """``n`` rows of a Gaussian mixture (float32, made block by block) and their labels."""
    centres = np.random.RandomState(args.seed).normal(0.0, 1.0, (args.classes, args.features)).astype(np.float32)
    rng = np.random.default_rng(seed)
    X = np.empty((n, args.features), dtype=np.float32)
    y = rng.integers(args.classes, size=n)
    for start in range(0, n, block):
        stop = min(start + block, n)
        X[start:stop] = centres[y[start:stop]] + rng.standard_normal((stop - start, args.features), dtype=np.float32)
    return X, y


def train(args):
    """The MSE MLP fitted on the labelled rows."""
    from sklearn_ntkal import JaxNetClassifier

    X, y = generate(args.n_labeled, args, args.seed + 1)
    return JaxNetClassifier(loss="mse", network_kwargs={"hidden_layer_sizes": tuple(args.hidden)},
                            epochs=args.epochs, batch_size=64, random_state=args.seed).fit(X, y)


def query_fn(name, clf, args):
    """``fn(pool)`` running one query of ``name`` (or ``predict_proba``) with the labelled rows as the learner's."""
    if name == PREDICT:
        return clf.predict_proba
    from sklearn_ntkal.bench.registry import STRATEGIES as REGISTRY

    X, y = generate(args.n_labeled, args, args.seed + 1)
    learner = type("Learner", (), {"estimator": clf, "X_training": X, "y_training": y})()
    strategy = REGISTRY[name].build(args.seed)
    return lambda pool: strategy(learner, pool, n_instances=min(args.k, len(pool)))


def worker(args):
    """One (pool size, strategy) measurement in this process; prints a JSON line."""
    import jax

    model_path, size, name = args.worker[0], int(args.worker[1]), args.worker[2]
    with open(model_path, "rb") as handle:
        clf = pickle.load(handle)
    pool = generate(size, args, args.seed + 2)[0]
    fn = query_fn(name, clf, args)
    rss_before, reset = start_peak_rss()
    fn(pool[: min(size, args.warmup)])
    start = time.perf_counter()
    fn(pool)
    seconds = time.perf_counter() - start
    rss_peak = peak_rss(reset)
    print(json.dumps({"strategy": name, "pool": size, "seconds": seconds, "peak_rss_mib": rss_peak,
                      "rss_growth_mib": rss_peak - rss_before, "peak_reset": reset, "pool_mib": pool.nbytes / 2**20,
                      "device": str(jax.devices()[0]), "jax": jax.__version__}))


def measure(args, model_path, size, name):
    """Run :func:`worker` in a subprocess and return its row."""
    passthrough = ["--features", str(args.features), "--classes", str(args.classes), "--n-labeled",
                   str(args.n_labeled), "--k", str(args.k), "--warmup", str(args.warmup), "--seed", str(args.seed)]
    done = subprocess.run([sys.executable, __file__, "--worker", model_path, str(size), name, *passthrough],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} at {size} rows failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling(rows):
    """Per strategy: the time ratio between consecutive pool sizes, against the size ratio."""
    lines = []
    for name in dict.fromkeys(r["strategy"] for r in rows):
        sel = sorted((r for r in rows if r["strategy"] == name), key=lambda r: r["pool"])
        steps = [f"x{b['pool'] / a['pool']:.0f} rows -> x{b['seconds'] / a['seconds']:.1f} time"
                 for a, b in zip(sel, sel[1:])]
        if steps:
            lines.append(f"- {name}: " + ", ".join(steps))
    return lines


def verdict(rows):
    """Whether every strategy's peak RSS at the largest pool is under the goal."""
    largest = max(r["pool"] for r in rows)
    over = [f"{r['strategy']} ({r['peak_rss_mib']:.0f} MiB)" for r in rows
            if r["pool"] == largest and r["peak_rss_mib"] >= GOAL_MIB]
    head = f"peak RSS under {GOAL_MIB} MiB for every strategy at {largest} rows"
    return f"{head}: met" if not over else f"{head}: NOT met by {', '.join(over)}"


def table(rows):
    """Markdown table of every measurement."""
    lines = ["| strategy | pool | seconds | µs / row | peak RSS MiB | growth MiB |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['strategy']} | {r['pool']} | {r['seconds']:.2f} | {1e6 * r['seconds'] / r['pool']:.2f} "
                     f"| {r['peak_rss_mib']:.0f} | {r['rss_growth_mib']:.0f} |")
    return "\n".join(lines)


def report(args, rows, train_seconds):
    """The header, table, scaling lines and verdict as Markdown."""
    first = rows[0]
    head = (f"MSE MLP {args.features}-{'-'.join(map(str, args.hidden))}-{args.classes} fitted on {args.n_labeled} "
            f"labels ({train_seconds:.0f} s), batches of {args.k}, pools of {args.features} float32 features; "
            f"{first['device']}, jax {first['jax']}, Python {platform.python_version()}.")
    return "\n".join([head, "", table(rows), "", "Time against pool size:", *scaling(rows), "", verdict(rows)])


def run(args):
    """Train once, measure every (pool size, strategy) in its own process, and return the rows."""
    from tqdm import tqdm

    start = time.perf_counter()
    clf = train(args)
    train_seconds = time.perf_counter() - start
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_path = str(Path(tmp) / "model.pkl")
        with open(model_path, "wb") as handle:
            pickle.dump(clf, handle)
        for size in args.sizes:
            for name in tqdm(args.strategies, desc=f"{size} rows"):
                rows.append(measure(args, model_path, size, name))
    return rows, train_seconds


def main(argv=None):
    """Measure, print the report, and write ``pool_scaling.json`` and ``table.md``."""
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    rows, train_seconds = run(args)
    text = report(args, rows, train_seconds)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"command": shlex.join(["python", "benchmarks/pool_scaling.py", *(sys.argv[1:] if argv is None else argv)]),
              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "train_seconds": train_seconds, "goal_peak_rss_mib": GOAL_MIB, "rows": rows, "verdict": verdict(rows)}
    (args.out / "pool_scaling.json").write_text(json.dumps(record, indent=2))
    (args.out / "table.md").write_text(text + "\n")
    print(f"wrote {args.out / 'pool_scaling.json'} and {args.out / 'table.md'}")


if __name__ == "__main__":
    main()
