"""NTK look-ahead against SGD-retraining look-ahead: query time and agreement of the selections.

On digits with an MLP trained with MSE (the look-ahead paper's setting), for
pools of ``--pool-sizes`` candidates, times one query of ``--k`` points by

- ``NTKLookAheadQuery`` (kernel regression with the empirical NTK, batch
  mode, every pool point a candidate), and
- ``RetrainLookAheadQuery``, the reference it approximates: for every
  candidate, the network warm-started at its weights and retrained on
  ``L + {(x, y^(x))}`` (``--retrain gd``: ``--steps`` full-batch gradient
  steps with step size ``n / lambda_max(Theta(L, L))``; ``--retrain adam``:
  ``--steps`` epochs of the classifier's own optimiser and batch size),

with the same objective, candidates and tie-breaking, and reports the speed
ratio and the overlap of the two top-k selections. Where a pool is larger
than ``--max-retrain``, the retraining side runs on a random subset of that
many candidates (the first of the pool, itself a random draw; shared by the
larger pools): its time is extrapolated linearly to the whole pool (marked
``~``) and the overlap is measured on the subset, where both strategies run.
NTK times are the best of three warm calls (the first call of each shape
compiles; its time is reported as ``cold``). The paper's goal: >= 1000x faster, overlap >= 70 %.

    python benchmarks/lookahead_speed.py --quick
    python benchmarks/lookahead_speed.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.bench.report import write_results
from sklearn_ntkal.datasets import load_dataset
from sklearn_ntkal.strategies.lookahead import NTKLookAheadQuery
from sklearn_ntkal.strategies.retrain import RetrainLookAheadQuery


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--max-retrain", type=int, default=300, help="candidates retrained per pool at most")
    parser.add_argument("--k", type=int, default=10, help="points selected per query")
    parser.add_argument("--objectives", nargs="+", default=["mlmoc", "output_change"])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--n-labeled", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=300, help="Adam epochs of the initial training")
    parser.add_argument("--retrain", choices=["gd", "adam"], default="gd")
    parser.add_argument("--steps", type=int, default=300, help="steps (gd) or epochs (adam) of each retraining")
    parser.add_argument("--kernel", default="pntk", choices=["pntk", "full", "trace"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="--max-retrain 60, mlmoc only")
    parser.add_argument("--out", type=Path, default=Path("results/lookahead_speed"))
    args = parser.parse_args()
    if args.quick:
        args.max_retrain, args.objectives = 60, ["mlmoc"]
    return args


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def retrain_strategy(clf, X_L, objective, args):
    if args.retrain == "adam":
        return RetrainLookAheadQuery(objective=objective, epochs=args.steps, n_candidates=None,
                                     random_state=args.seed)
    n_classes = len(clf.classes_)
    top = np.linalg.eigvalsh(clf.ntk(X_L, kind="full").transpose(0, 2, 1, 3).reshape(len(X_L) * n_classes, -1))[-1]
    return RetrainLookAheadQuery(objective=objective, epochs=args.steps, optimizer="sgd",
                                 learning_rate=float(len(X_L) / top), batch_size=len(X_L) + 1, n_candidates=None,
                                 random_state=args.seed)


def query(strategy, clf, X_L, y_L, X_pool, k):
    X = np.concatenate([X_L, X_pool])
    y = np.concatenate([y_L.astype(float), np.full(len(X_pool), np.nan)])
    return strategy.query(X, y, clf, batch_size=k) - len(X_L)


def run(args):
    data = load_dataset("digits")
    order = np.random.RandomState(args.seed).permutation(len(data.y))
    L, rest = order[:args.n_labeled], order[args.n_labeled:]
    X_L, y_L = data.X[L], data.y[L]
    clf = JaxNetClassifier(loss="mse", network_kwargs={"hidden_layer_sizes": (args.width,)}, epochs=args.epochs,
                           batch_size=args.n_labeled, random_state=args.seed).fit(X_L, y_L)
    rows = []
    for objective in args.objectives:
        reference = retrain_strategy(clf, X_L, objective, args)
        query(reference, clf, X_L, y_L, data.X[rest[:2]], 1)
        retrained = {}
        for m in tqdm(args.pool_sizes, desc=objective):
            X_pool = data.X[rest[:m]]
            ntk = NTKLookAheadQuery(kernel=args.kernel, objective=objective, n_candidates=None,
                                    random_state=args.seed)
            _, cold = timed(query, ntk, clf, X_L, y_L, X_pool, args.k)
            ntk_pick, ntk_time = timed(query, ntk, clf, X_L, y_L, X_pool, args.k)
            ntk_time = min([ntk_time] + [timed(query, ntk, clf, X_L, y_L, X_pool, args.k)[1] for _ in range(2)])
            m_sub = min(m, args.max_retrain)
            if m_sub not in retrained:
                retrained[m_sub] = timed(query, reference, clf, X_L, y_L, X_pool[:m_sub], args.k)
            ref_pick, ref_time = retrained[m_sub]
            if m_sub < m:
                ntk_pick = query(ntk, clf, X_L, y_L, X_pool[:m_sub], args.k)
            rows.append({
                "objective": objective, "pool": m, "retrained": m_sub, "extrapolated": m_sub < m,
                "ntk_s": ntk_time, "ntk_cold_s": cold, "retrain_s": ref_time * m / m_sub,
                "speedup": ref_time * m / m_sub / ntk_time,
                "overlap": len(set(ntk_pick) & set(ref_pick)) / args.k,
            })
    return clf, rows


def main():
    args = parse_args()
    clf, rows = run(args)
    print(f"digits, MSE MLP 64-{args.width}-10 (train loss {clf.loss_curve_[-1]:.1e}), |L|={args.n_labeled}, "
          f"k={args.k}, kernel={args.kernel}, retraining: {args.retrain} x {args.steps}")
    print(f"{'objective':>13} {'pool':>5} {'NTK s':>7} {'cold s':>7} {'retrain s':>10} {'speedup':>9} "
          f"{'overlap':>11}")
    for r in rows:
        mark = "~" if r["extrapolated"] else " "
        where = f" (on {r['retrained']})" if r["extrapolated"] else ""
        print(f"{r['objective']:>13} {r['pool']:>5} {r['ntk_s']:>7.3f} {r['ntk_cold_s']:>7.2f} "
              f"{mark}{r['retrain_s']:>9.1f} {mark}{r['speedup']:>8.0f}x {r['overlap']:>6.0%}{where}")
    if any(r["extrapolated"] for r in rows):
        print("~ retraining timed on a random subset of the pool and extrapolated linearly; "
              "overlap measured on that subset")
    path = write_results(args.out, args, rows=rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
