"""Speed of an active-learning loop: per-round wall and compile time of each strategy, against an older commit.

A modAL ``ActiveLearner`` loop on digits (an MSE MLP, ``--initial`` labels,
``--rounds`` rounds of ``--batch``): for every strategy, each round's query
and teach (fit) times, and the number and seconds of XLA compilations in
each, counted from JAX's own monitoring events
(``/jax/core/compile/backend_compile_duration``). The README's main job is
timed as a whole command with the settings of its quick preset.

With ``--baseline REV`` the same measurements run, in the same call and
alternating with this tree's, on the package as it was at commit ``REV``
(checked out into a temporary git worktree and imported from there by a
subprocess that runs this same script), and the table gives each figure's
ratio baseline / this tree. The measuring code uses the public API only, so
it runs on older commits too.

    python benchmarks/loop_speed.py --quick
    python benchmarks/loop_speed.py --baseline fcde00e
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STRATEGIES = ("random", "margin", "ntk_lookahead", "dynamical", "badge", "coreset")
MAIN_JOB = ["run", "--dataset", "digits", "--network", "mlp", "--strategies",
            "random,entropy,margin,ntk_lookahead,dynamical", "--initial-size", "20", "--batch-size", "20",
            "--rounds", "4", "--seeds", "2", "--epochs", "60", "--no-progress"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--initial", type=int, default=50, help="labels at the start (default 50)")
    parser.add_argument("--batch", type=int, default=20, help="labels per round (default 20)")
    parser.add_argument("--rounds", type=int, default=10, help="query rounds (default 10)")
    parser.add_argument("--epochs", type=int, default=100, help="training epochs per fit (default 100)")
    parser.add_argument("--baseline", help="git revision to compare with, e.g. a commit before a change")
    parser.add_argument("--no-main-job", action="store_true", help="skip timing the README's main job")
    parser.add_argument("--quick", action="store_true", help="4 rounds, 30 epochs, margin and look-ahead only")
    parser.add_argument("--out", type=Path, default=Path("results/loop_speed"))
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.strategies = 4, 30, ["margin", "ntk_lookahead"]
    return args


def measure_loop(name, args):
    """Per-round query and teach seconds and compilations of one strategy in a modAL loop (this process)."""
    import jax
    from modAL.models import ActiveLearner
    from sklearn.datasets import load_digits

    from sklearn_ntkal import (BADGEQuery, CoresetQuery, DynamicALQuery, JaxNetClassifier, NTKLookAheadQuery,
                               RandomQuery, UncertaintyQuery)

    compiles = {"count": 0, "seconds": 0.0}

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles["count"] += 1
            compiles["seconds"] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    strategy = {"random": RandomQuery(random_state=0), "margin": UncertaintyQuery(measure="margin"),
                "ntk_lookahead": NTKLookAheadQuery(objective="mlmoc", mode="batch", random_state=0),
                "dynamical": DynamicALQuery(selection="topk", random_state=0),
                "badge": BADGEQuery(random_state=0), "coreset": CoresetQuery()}[name]
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    labelled = np.random.default_rng(0).choice(len(X), args.initial, replace=False)
    pool = np.setdiff1d(np.arange(len(X)), labelled)
    learner = ActiveLearner(estimator=JaxNetClassifier(loss="mse", epochs=args.epochs, random_state=0),
                            query_strategy=strategy, X_training=X[labelled], y_training=y[labelled])
    rounds = []
    for _ in range(args.rounds):
        record = {}
        for phase in ("query", "teach"):
            count, spent, start = compiles["count"], compiles["seconds"], time.perf_counter()
            if phase == "query":
                picked, _ = learner.query(X[pool], n_instances=args.batch)
            else:
                learner.teach(X[pool[picked]], y[pool[picked]])
                pool = np.delete(pool, picked)
            record[phase] = {"seconds": time.perf_counter() - start, "compiles": compiles["count"] - count,
                             "compile_seconds": compiles["seconds"] - spent}
        rounds.append(record)
    return rounds


def measure_main_job(workdir):
    """Wall seconds of the README's main job (quick-preset settings) run as a command in ``workdir``."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sklearn_ntkal", *MAIN_JOB, "--out", out], cwd=workdir, check=True,
                       env=_env(workdir), stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def _env(tree):
    return dict(os.environ, PYTHONPATH=str(tree), JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))


def run_in(tree, args, name):
    """Measure strategy ``name`` in a fresh process importing the package from ``tree``."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "rounds.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--measure", str(path), "--strategies", name,
                   "--initial", str(args.initial), "--batch", str(args.batch), "--rounds", str(args.rounds),
                   "--epochs", str(args.epochs)]
        subprocess.run(command, cwd=tree, check=True, env=_env(tree))
        return json.loads(path.read_text())


def summarize(rounds):
    """Totals over rounds 2 and later (round 0 compiles everything once; round 1 may finish warming up)."""
    later = rounds[2:]
    return {
        "query_s": float(np.median([r["query"]["seconds"] for r in later])),
        "teach_s": float(np.median([r["teach"]["seconds"] for r in later])),
        "compiles": int(sum(r[p]["compiles"] for r in later for p in ("query", "teach"))),
        "compile_s": float(sum(r[p]["compile_seconds"] for r in later for p in ("query", "teach"))),
        "first_round_compiles": int(rounds[0]["query"]["compiles"] + rounds[0]["teach"]["compiles"]),
    }


def main(argv=None):
    args = parse_args(argv)
    if args.measure:
        args.measure.write_text(json.dumps(measure_loop(args.strategies[0], args)))
        return
    here = Path(__file__).resolve().parents[1]
    trees = {"this tree": here}
    worktree = None
    if args.baseline:
        worktree = Path(tempfile.mkdtemp(prefix="loop-speed-baseline-"))
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline], cwd=here, check=True,
                       stdout=subprocess.DEVNULL)
        trees = {"baseline": worktree, "this tree": here}
    try:
        results = {label: {} for label in trees}
        for name in args.strategies:
            for label, tree in trees.items():
                print(f"{name}: {label} ...", flush=True)
                results[label][name] = run_in(tree, args, name)
        main_job = {} if args.no_main_job else {label: measure_main_job(tree) for label, tree in trees.items()}
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=here, check=True)
    table = format_table(results, main_job, args)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")
    # Imported here, not at the top: the measuring runs of this script import a baseline tree, which may predate it.
    from sklearn_ntkal.bench.report import write_results

    path = write_results(args.out, args, command=" ".join(sys.argv), rounds=results, main_job_s=main_job,
                         summary={label: {name: summarize(r) for name, r in runs.items()}
                                  for label, runs in results.items()})
    print(f"wrote {path}")


def format_table(results, main_job, args):
    """Markdown table: per strategy, medians over rounds 2+ and compilations, with baseline / this-tree ratios."""
    labels = list(results)
    lines = [f"modAL loop on digits, MSE MLP, {args.initial} initial labels, {args.rounds} rounds of {args.batch}, "
             f"{args.epochs} epochs per fit; medians and totals over rounds 2-{args.rounds - 1}.", ""]
    header = ["strategy"] + [f"{what} ({label})" for label in labels
                             for what in ("query s", "teach s", "compiles", "compile s")]
    if len(labels) == 2:
        header += ["query ×", "teach ×"]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for name in args.strategies:
        sums = [summarize(results[label][name]) for label in labels]
        cells = [name]
        for s in sums:
            cells += [f"{s['query_s']:.3f}", f"{s['teach_s']:.3f}", str(s["compiles"]), f"{s['compile_s']:.2f}"]
        if len(labels) == 2:
            cells += [f"{sums[0]['query_s'] / sums[1]['query_s']:.1f}", f"{sums[0]['teach_s'] / sums[1]['teach_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if main_job:
        times = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in main_job.items())
        ratio = f" (× {main_job['baseline'] / main_job['this tree']:.2f})" if len(main_job) == 2 else ""
        lines += ["", f"README main job (`sklearn-ntkal {' '.join(MAIN_JOB)}`): {times}{ratio}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
