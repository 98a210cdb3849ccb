"""Development comparison of the look-ahead's acquisition functions, on digits only, to choose defaults.

Digits is the development set: settings are chosen here and never on the data
that results are reported on. The protocol is the papers' regime in small:
the pool is the 1347-row training split of digits (75/25, stratified, seed 0;
the 450 others are the test set), the initial set and every batch are 2 % of
the pool (36 rows; the initial set holds every class), each round continues
training the previous round's network (warm start, ``epochs`` more epochs,
fresh optimiser state), and in every round every strategy chooses from the
same random candidate subset of ``--candidate-factor`` x batch unlabelled rows
(seeded by the seed and the round, as the papers' 4000 candidates for batches
of 1000). Each loss (MSE, the papers'; cross-entropy, the classifier's
default) is a separate part, all strategies at that loss. For each seed the
same initial set is used by every strategy; the area under the learning curve
(accuracy on the test set against labels used, trapezoid, normalised) is
compared with margin sampling by paired differences over seeds with a 95 %
Student-t interval.

Strategies (``--strategies``):

- ``random``, ``margin`` (``UncertaintyQuery(measure="margin")``);
- ``mlmoc_batch``: ``NTKLookAheadQuery()`` (the paper's default);
- ``mlmoc_seq``: sequential MLMOC (the linearised baseline updated after each pick);
- ``eer_calibrated``: calibrated expected error reduction, sequential;
- ``prefilter``: the ``--prefilter`` x batch smallest-margin candidates, then sequential MLMOC;
- ``influence``: label-free influence, sequential.

``--temperature T`` sets ``temperature_ = T`` on every fitted network, a fixed
stand-in for a fitted calibration: the look-ahead reads probabilities of an
MSE network's logits as ``softmax(f / T)``, and with ``T = 1`` (no
calibration) they are nearly uniform. Margin sampling reads ``predict_proba``.

    python benchmarks/lookahead_dev.py --quick
    python benchmarks/lookahead_dev.py
    python benchmarks/lookahead_dev.py --losses mse --strategies margin eer_calibrated --temperature 0.25
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.loop import area_under_budget_curve, initial_positions, run_active_learning
from sklearn_ntkal.strategies.baselines import RandomQuery, UncertaintyQuery
from sklearn_ntkal.strategies.lookahead import NTKLookAheadQuery


def strategies(prefilter):
    """Name -> factory of a strategy from a seed."""
    return {
        "random": lambda seed: RandomQuery(random_state=seed),
        "margin": lambda seed: UncertaintyQuery(measure="margin"),
        "mlmoc_batch": lambda seed: NTKLookAheadQuery(random_state=seed),
        "mlmoc_seq": lambda seed: NTKLookAheadQuery(mode="sequential", random_state=seed),
        "eer_calibrated": lambda seed: NTKLookAheadQuery(objective="eer_calibrated", mode="sequential",
                                                         random_state=seed),
        "prefilter": lambda seed: NTKLookAheadQuery(mode="sequential", prefilter=prefilter, random_state=seed),
        "influence": lambda seed: NTKLookAheadQuery(objective="influence", mode="sequential", random_state=seed),
    }


class SharedCandidates:
    """A strategy that chooses, each round, among the same random candidates as every other strategy of the seed.

    Every pool row gets a uniform priority drawn from ``(seed, round)``; the
    candidates are the ``factor x batch_size`` unlabelled rows of smallest
    priority, so strategies that have labelled different rows still share
    all the candidates they have not labelled.
    """

    def __init__(self, strategy, factor, seed):
        self.strategy, self.factor, self.seed, self.round = strategy, factor, seed, 0

    def query(self, X, y, clf, batch_size=1):
        self.round += 1
        priority = np.random.RandomState([self.seed, self.round]).random_sample(len(y))
        unlabeled = np.flatnonzero(np.isnan(np.asarray(y, dtype=float)))
        candidates = np.sort(unlabeled[np.argsort(priority[unlabeled], kind="stable")][:self.factor * batch_size])
        return self.strategy.query(X, y, clf, batch_size=batch_size, candidates=candidates)


def set_temperature(temperature, round_index, fitted, history):
    """``run_active_learning`` callback: the stand-in calibration of ``--temperature``."""
    fitted.temperature_ = temperature


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--fraction", type=float, default=0.02, help="initial set and batch, fraction of the pool")
    parser.add_argument("--candidate-factor", type=int, default=4)
    parser.add_argument("--prefilter", type=float, default=2.0)
    parser.add_argument("--losses", nargs="+", default=["mse", "cross_entropy"])
    parser.add_argument("--strategies", nargs="+", default=list(strategies(2.0)))
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the first training and of every round")
    parser.add_argument("--temperature", type=float, default=None, help="temperature_ set on every fitted network")
    parser.add_argument("--quick", action="store_true", help="one seed, two rounds")
    parser.add_argument("--out", type=Path, default=Path("results/lookahead_dev"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.rounds = 1, 2
    return args


def run(args, loss, name, seed, data):
    X_pool, X_test, y_pool, y_test = data
    size = int(round(args.fraction * len(y_pool)))
    initial = initial_positions(y_pool, size, np.random.RandomState(seed))
    net = JaxNetClassifier(loss=loss, network_kwargs={"hidden_layer_sizes": (args.hidden,)}, epochs=args.epochs,
                           batch_size=32, random_state=seed)
    strategy = SharedCandidates(strategies(args.prefilter)[name](seed), args.candidate_factor, seed)
    calibrate = None if args.temperature is None else functools.partial(set_temperature, args.temperature)
    history = run_active_learning(net, strategy, X_pool, y_pool, X_test, y_test, initial, args.rounds, size,
                                  warm_start=True, keep_snapshots=False, callback=calibrate)
    return {"loss": loss, "strategy": name, "seed": seed, "temperature": args.temperature,
            "n_labeled": history.n_labeled,
            "accuracy": [float(a) for a in history.scores],
            "aubc": float(area_under_budget_curve(history.n_labeled, history.scores)),
            "query_s": float(np.sum(history.query_times)), "fit_s": float(np.sum(history.fit_times))}


def table(rows, loss, names):
    """Markdown table of one loss: AUBC, paired difference to margin with a 95 % t-interval, final accuracy."""
    by = {(r["strategy"], r["seed"]): r for r in rows if r["loss"] == loss}
    seeds = sorted({seed for _, seed in by})
    lines = [f"### {loss}", "", "| strategy | AUBC | Δ vs margin [95 % CI] | final accuracy | query s/run |",
             "|---|---|---|---|---|"]
    for name in names:
        if not all((name, seed) in by for seed in seeds):
            continue
        aubc = np.array([by[name, seed]["aubc"] for seed in seeds])
        final = np.mean([by[name, seed]["accuracy"][-1] for seed in seeds])
        query = np.mean([by[name, seed]["query_s"] for seed in seeds])
        diff = "—"
        if name != "margin" and all(("margin", seed) in by for seed in seeds):
            d = aubc - np.array([by["margin", seed]["aubc"] for seed in seeds])
            half = (stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.nan
            diff = f"{d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]"
        lines.append(f"| {name} | {aubc.mean():.4f} | {diff} | {final:.4f} | {query:.1f} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    X, y = load_digits(return_X_y=True)
    data = train_test_split(X.astype(np.float32), y, test_size=0.25, random_state=0, stratify=y)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    for loss in args.losses:
        for seed in range(args.seeds):
            for name in args.strategies:
                rows.append(run(args, loss, name, seed, data))
                print(f"{loss:>13} seed {seed} {name:>15}: AUBC {rows[-1]['aubc']:.4f}, "
                      f"final {rows[-1]['accuracy'][-1]:.4f}, query {rows[-1]['query_s']:.1f} s", flush=True)
                (args.out / "runs.json").write_text(json.dumps(rows, indent=1))
    report = "\n\n".join(table(rows, loss, args.strategies) for loss in args.losses)
    print(f"\n{report}\n\n{time.perf_counter() - start:.0f} s in all")
    (args.out / "table.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
