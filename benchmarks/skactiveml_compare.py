"""Our BADGE, Coreset and uncertainty sampling next to scikit-activeml's Badge, CoreSet and UncertaintySampling.

Both sides run in the same scikit-activeml-style loop: ``y`` holds NaN for
unlabelled rows, the classifier is scikit-activeml's ``SklearnClassifier``
around a ``JaxNetClassifier`` (an MLP, retrained from scratch every round
with the seed's ``random_state``), and each strategy's ``query(X, y, ...)``
returns rows of ``X`` whose labels are then revealed. Per seed, both sides
share the stratified train/test split and the initial labelled set, so their
round-0 models are identical and the first round's selections can be
compared directly.

The embeddings scikit-activeml's strategies need come from the same network:
``Badge`` gets the penultimate features through ``predict_proba(X,
return_embeddings=True)`` and ``CoreSet`` is run on the penultimate features
of ``X``. One difference is by design: our BADGE embedding includes the
gradient of the output layer's bias (``r ⊗ [h, 1]``), scikit-activeml's (like
the BADGE authors' code) does not (``r ⊗ h``).

Printed per strategy and library: AUBC and final test accuracy (mean ± std
over seeds), mean query time per round, and for each pair the overlap of the
first round's selections and the query-time ratio ours / scikit-activeml,
both measured in the same run.

scikit-activeml is an optional extra (``pip install scikit-activeml``).

    python benchmarks/skactiveml_compare.py --quick
    python benchmarks/skactiveml_compare.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

try:
    import skactiveml
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import Badge, CoreSet, UncertaintySampling
except ImportError as exc:  # the optional extra is missing
    sys.exit(f"scikit-activeml is needed for this benchmark ({exc}); install it with "
             "`pip install scikit-activeml` (or `pip install sklearn-ntkal[skactiveml]`)")

from sklearn.model_selection import train_test_split

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.datasets import load_dataset
from sklearn_ntkal.loop import area_under_budget_curve
from sklearn_ntkal.strategies.baselines import UncertaintyQuery
from sklearn_ntkal.strategies.diversity import BADGEQuery, CoresetQuery, penultimate_features


class EmbeddingClassifier(SklearnClassifier):
    """scikit-activeml's wrapper whose ``predict_proba`` can also return penultimate features, as its Badge asks."""

    def predict_proba(self, X, return_embeddings=False):
        proba = super().predict_proba(X)
        return (proba, embed(self, X)) if return_embeddings else proba


def embed(clf, X):
    """Inputs of the last linear layer of the wrapped network for ``X``."""
    return penultimate_features(clf.estimator_, np.asarray(X, dtype=np.float32))[1]


def ours(strategy):
    return lambda X, y, clf, batch_size: strategy.query(X, y, clf.estimator_, batch_size=batch_size)


def theirs(strategy):
    return lambda X, y, clf, batch_size: strategy.query(X, y, clf, fit_clf=False, batch_size=batch_size)


def theirs_on_features(strategy):
    return lambda X, y, clf, batch_size: strategy.query(embed(clf, X), y, batch_size=batch_size)


#: name -> (ours, scikit-activeml's), each a seed -> query(X, y, clf, batch_size) factory
PAIRS = {
    "badge": (lambda seed: ours(BADGEQuery(random_state=seed)),
              lambda seed: theirs(Badge(clf_embedding_flag_name="return_embeddings", random_state=seed))),
    "coreset": (lambda seed: ours(CoresetQuery()),
                lambda seed: theirs_on_features(CoreSet(random_state=seed))),
    "entropy": (lambda seed: ours(UncertaintyQuery("entropy")),
                lambda seed: theirs(UncertaintySampling(method="entropy", random_state=seed))),
    "margin": (lambda seed: ours(UncertaintyQuery("margin")),
               lambda seed: theirs(UncertaintySampling(method="margin_sampling", random_state=seed))),
    "least_confidence": (lambda seed: ours(UncertaintyQuery("least_confidence")),
                         lambda seed: theirs(UncertaintySampling(method="least_confident", random_state=seed))),
}
LIBRARIES = ("sklearn_ntkal", "skactiveml")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 rounds, 15 epochs, badge/coreset/margin")
    parser.add_argument("--strategies", default=",".join(PAIRS), help=f"comma-separated from {list(PAIRS)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--initial-size", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128, help="width of the MLP's hidden layer")
    parser.add_argument("--out", default="results/skactiveml_compare")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.epochs = 2, 2, 15
        args.strategies = "badge,coreset,margin"
    unknown = set(args.strategies.split(",")) - set(PAIRS)
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; choose from {list(PAIRS)}")
    return args


def run_loop(query, X, y_true, X_test, y_test, initial, classes, args, seed):
    """One scikit-activeml-style run: accuracy per round, query and fit times, the queried rows per round."""
    clf = EmbeddingClassifier(
        JaxNetClassifier(network_kwargs={"hidden_layer_sizes": (args.hidden,)}, epochs=args.epochs,
                     learning_rate=3e-3, random_state=seed),
        classes=classes, random_state=seed)
    y = np.full(len(X), np.nan)
    y[initial] = y_true[initial]
    n_labeled, accuracy, query_times, queried = [], [], [], []
    for round_index in range(args.rounds + 1):
        if round_index:
            start = time.perf_counter()
            idx = np.asarray(query(X, y, clf, args.batch_size), dtype=int)
            query_times.append(time.perf_counter() - start)
            assert np.all(np.isnan(y[idx])) and np.unique(idx).size == idx.size
            y[idx] = y_true[idx]
            queried.append(idx.tolist())
        clf.fit(X, y)
        n_labeled.append(int(np.sum(~np.isnan(y))))
        accuracy.append(float(np.mean(clf.predict(X_test) == y_test)))
    return {"n_labeled": n_labeled, "accuracy": accuracy, "query_times": query_times, "queried": queried,
            "aubc": area_under_budget_curve(n_labeled, accuracy)}


def summarise(runs, names):
    rows = []
    for name in names:
        pair = {lib: runs[name][lib] for lib in LIBRARIES}
        overlap = [len(set(a["queried"][0]) & set(b["queried"][0])) / len(a["queried"][0])
                   for a, b in zip(pair["sklearn_ntkal"], pair["skactiveml"])]
        times = {lib: float(np.mean([np.mean(r["query_times"]) for r in pair[lib]])) for lib in LIBRARIES}
        for lib in LIBRARIES:
            aubc = [r["aubc"] for r in pair[lib]]
            final = [r["accuracy"][-1] for r in pair[lib]]
            rows.append({"strategy": name, "library": lib,
                         "aubc": [float(np.mean(aubc)), float(np.std(aubc))],
                         "final_accuracy": [float(np.mean(final)), float(np.std(final))],
                         "query_seconds": times[lib],
                         "first_round_overlap": float(np.mean(overlap)),
                         "time_ratio_ours_over_skactiveml": times["sklearn_ntkal"] / times["skactiveml"]})
    return rows


def table(rows):
    lines = ["| strategy | library | AUBC | final accuracy | query s/round | first-round overlap | time ours/theirs |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['strategy']} | {row['library']} | {row['aubc'][0]:.3f} ± {row['aubc'][1]:.3f} | "
                     f"{row['final_accuracy'][0]:.3f} ± {row['final_accuracy'][1]:.3f} | "
                     f"{row['query_seconds']:.4f} | {row['first_round_overlap']:.2f} | "
                     f"{row['time_ratio_ours_over_skactiveml']:.2f} |")
    return "\n".join(lines)


def plot(runs, names, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        for lib, style in zip(LIBRARIES, ("-", "--")):
            curves = np.array([r["accuracy"] for r in runs[name][lib]])
            n = runs[name][lib][0]["n_labeled"]
            ax.plot(n, curves.mean(0), style, label=lib)
            ax.fill_between(n, curves.mean(0) - curves.std(0), curves.mean(0) + curves.std(0), alpha=0.2)
        ax.set_title(name)
        ax.set_xlabel("labels")
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    names = args.strategies.split(",")
    data = load_dataset("digits")
    classes = np.unique(data.y)
    runs = {name: {lib: [] for lib in LIBRARIES} for name in names}
    start = time.perf_counter()
    for seed in range(args.seeds):
        X, X_test, y, y_test = train_test_split(data.X, data.y, test_size=0.25, stratify=data.y, random_state=seed)
        initial, _ = train_test_split(np.arange(len(y)), train_size=args.initial_size, stratify=y,
                                      random_state=seed)
        for name in names:
            for lib, factory in zip(LIBRARIES, PAIRS[name]):
                run = run_loop(factory(seed), X, y, X_test, y_test, initial, classes, args, seed)
                runs[name][lib].append(run)
                print(f"seed {seed} {name:>16} {lib:>13}: AUBC {run['aubc']:.3f}, "
                      f"final {run['accuracy'][-1]:.3f}", flush=True)
    rows = summarise(runs, names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nscikit-activeml {skactiveml.__version__}; digits, MLP({args.hidden}), {args.seeds} seeds, "
          f"{args.initial_size} initial + {args.rounds} x {args.batch_size}, {args.epochs} epochs "
          f"({time.perf_counter() - start:.0f} s)\n")
    print(table(rows))
    (out / "table.md").write_text(table(rows) + "\n")
    (out / "results.json").write_text(json.dumps(
        {"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "config": vars(args),
         "skactiveml_version": skactiveml.__version__, "summary": rows, "runs": runs}, indent=1))
    plot(runs, names, out / "learning_curves.png")
    print(f"\nwrote {out}/table.md, results.json, learning_curves.png")


if __name__ == "__main__":
    main()
