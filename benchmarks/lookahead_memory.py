"""Peak memory of one default NTK look-ahead query: 4000 candidates, 10 classes, a cross-entropy network.

Both classes at their defaults where it matters: ``JaxNetClassifier`` trained
with cross-entropy (so the look-ahead linearises softmax outputs, C x C blocks)
and ``NTKLookAheadQuery()`` (pseudo-NTK, 4000 candidates, float64, 512 MiB
chunks). The pool is digits tiled to ``--pool`` rows with small Gaussian
noise (so no two rows are equal); the network is a small MLP trained for a
few epochs on ``--n-labeled`` rows. Each measurement runs in a fresh child
process; the peak resident set size (``ru_maxrss``) of the child that only
imports and trains is subtracted from the one that also queries, and the
planned bytes (:func:`sklearn_ntkal.strategies.lookahead.lookahead_memory`)
are printed beside them.

    python benchmarks/lookahead_memory.py
    python benchmarks/lookahead_memory.py --quick     # 1000 candidates
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=4100, help="pool rows (digits tiled and perturbed)")
    parser.add_argument("--n-candidates", type=int, default=4000)
    parser.add_argument("--n-labeled", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1000 candidates from a pool of 1100")
    parser.add_argument("--out", type=Path, default=Path("results/lookahead_memory"))
    parser.add_argument("--child", choices=["train", "query"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.pool, args.n_candidates = 1100, 1000
    return args


def child(args):
    """Train (and with ``--child query`` query once); print a JSON line with times and this process's peak RSS."""
    import numpy as np
    from sklearn.datasets import load_digits

    from sklearn_ntkal import JaxNetClassifier
    from sklearn_ntkal.strategies.lookahead import NTKLookAheadQuery

    X, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    repeats = -(-args.pool // len(X))
    X = np.tile(X, (repeats, 1))[:args.pool].astype(np.float32)
    X += rng.normal(scale=0.5, size=X.shape).astype(np.float32)
    y = np.tile(y, repeats)[:args.pool]
    labeled = rng.choice(args.pool, args.n_labeled, replace=False)
    start = time.perf_counter()
    clf = JaxNetClassifier(network_kwargs={"hidden_layer_sizes": (args.hidden,)}, epochs=args.epochs,
                           random_state=0).fit(X[labeled], y[labeled])
    record = {"train_s": time.perf_counter() - start, "loss": clf.loss}
    if args.child == "query":
        y_masked = np.full(args.pool, np.nan)
        y_masked[labeled] = y[labeled]
        start = time.perf_counter()
        chosen = NTKLookAheadQuery(n_candidates=args.n_candidates, random_state=0).query(
            X, y_masked, clf, batch_size=args.batch_size)
        record.update(query_s=time.perf_counter() - start, n_chosen=int(len(set(chosen.tolist()))))
    record["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(record))


def run_child(kind, argv):
    done = subprocess.run([sys.executable, __file__, *argv, "--child", kind], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    argv = sys.argv[1:]
    args = parse_args(argv)
    if args.child:
        return child(args)
    from sklearn_ntkal.strategies.lookahead import lookahead_memory

    train, query = run_child("train", argv), run_child("query", argv)
    plan = lookahead_memory(args.n_candidates, args.n_labeled, 10)
    row = {"n_candidates": args.n_candidates, "n_labeled": args.n_labeled, "n_classes": 10,
           "peak_rss_train_only_gib": train["max_rss_bytes"] / 2**30,
           "peak_rss_with_query_gib": query["max_rss_bytes"] / 2**30,
           "query_increment_gib": (query["max_rss_bytes"] - train["max_rss_bytes"]) / 2**30,
           "planned_gib": sum(plan.values()) / 2**30, "plan_gib": {k: v / 2**30 for k, v in plan.items()},
           "query_s": query["query_s"], "train_s": query["train_s"]}
    for key, value in row.items():
        print(f"{key:>26}: {value:.3f}" if isinstance(value, float) else f"{key:>26}: {value}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
