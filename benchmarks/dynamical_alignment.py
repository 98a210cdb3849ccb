"""From which labelled-set size dynamicAL's alignment term changes what it queries.

dynamicAL (Wang et al., NeurIPS 2022) scores a candidate ``x`` by
``score(x) = ||g_x||^2 + 2 <g_S, g_x>``, with ``g_x`` the loss gradient at
``x`` and its pseudo-label and ``g_S`` the summed gradient of the labelled
set ``S``. A network fitted to few labels has ``g_S`` near zero, so the
score is the gradient norm alone; ``g_S`` is a sum and grows with ``|S|``.

On digits, an MLP (the ``mlp`` preset) is trained with each loss of
``--losses`` on stratified labelled sets of ``--sizes`` rows and scores a
fixed-size pool drawn from the rest, with the dynamicAL loss of
``--dynamical-losses`` (``cross_entropy``, the paper's and the library's
default, and ``network``, the network's own loss). Reported, as mean over
``--seeds``:

- ``|g_S|^2`` and the median ``|g_x|^2`` over the pool;
- ``ratio``: the median over the pool of ``|2 <g_S, g_x>| / |g_x|^2``;
- ``rho``: the Spearman correlation between the score and ``|g_x|^2``;
- ``top-k changed``: the fraction of the ``--k`` best candidates by score
  that are not among the ``--k`` best by ``|g_x|^2`` alone, i.e. how much of
  the query the alignment term decides.

    python benchmarks/dynamical_alignment.py --quick
    python benchmarks/dynamical_alignment.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.bench.report import write_results
from sklearn_ntkal.datasets import load_dataset
from sklearn_ntkal.engine.gradients import LayerGradients, chunk_rows, gradient_statistics, summed_gradient


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200, 400, 800])
    parser.add_argument("--losses", nargs="+", default=["mse", "cross_entropy"], choices=["mse", "cross_entropy"],
                        help="training losses of the network")
    parser.add_argument("--dynamical-losses", nargs="+", default=["cross_entropy", "network"],
                        choices=["cross_entropy", "mse", "network"], help="losses of dynamicAL's gradients")
    parser.add_argument("--pool", type=int, default=900, help="candidates scored, drawn from the unlabelled rows")
    parser.add_argument("--k", type=int, default=50, help="query size for the top-k comparison")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="sizes 20, 200 and 800, one seed")
    parser.add_argument("--out", type=Path, default=Path("results/dynamical_alignment"))
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seeds = [20, 200, 800], [0]
    return args


def terms(clf, loss, X_S, y_S, X_U):
    """``|g_S|^2``, and per candidate ``|g_x|^2`` and ``<g_S, g_x>``, with the engine's layer-wise gradients."""
    gmap = LayerGradients(clf.network_, loss)
    chunk = chunk_rows(gmap, clf.params_, X_U.shape[1:], np.float32, 2**28)
    targets = np.eye(len(clf.classes_), dtype=np.float32)[np.searchsorted(clf.classes_, y_S)]
    g_S = summed_gradient(gmap, clf.params_, X_S, targets, chunk)
    sq_norms, alignment, _ = gradient_statistics(gmap, clf.params_, X_U, g_S, chunk)
    g_S_norm = float(sum(np.sum(np.asarray(part, np.float64) ** 2) for part in g_S))
    return g_S_norm, sq_norms, alignment


def measure(data, n, net_loss, seed, args):
    """One network trained on ``n`` labels; the rows of every dynamicAL loss."""
    rest, X_S, _, y_S = train_test_split(data.X, data.y, test_size=n, random_state=seed, stratify=data.y)
    X_U = rest[np.random.RandomState(seed).choice(len(rest), min(args.pool, len(rest)), replace=False)]
    clf = JaxNetClassifier(loss=net_loss, epochs=args.epochs, random_state=seed).fit(X_S, y_S)
    rows = []
    for dynamical_loss in args.dynamical_losses:
        loss = net_loss if dynamical_loss == "network" else dynamical_loss
        g_S, sq_norms, alignment = terms(clf, loss, X_S.astype(np.float32), y_S, X_U.astype(np.float32))
        score = sq_norms + 2 * alignment
        top_score = set(np.argsort(-score, kind="stable")[:args.k])
        top_norm = set(np.argsort(-sq_norms, kind="stable")[:args.k])
        rows.append({
            "n": n, "net_loss": net_loss, "dynamical_loss": dynamical_loss, "seed": seed,
            "g_S_sq": g_S, "median_g_x_sq": float(np.median(sq_norms)),
            "ratio": float(np.median(np.abs(2 * alignment) / sq_norms)),
            "spearman": float(spearmanr(score, sq_norms)[0]),
            "topk_changed": len(top_score - top_norm) / args.k,
        })
    return rows


def table(rows):
    """Lines of the summary table, one per (network loss, dynamicAL loss, n), means over seeds."""
    keys = ("g_S_sq", "median_g_x_sq", "ratio", "spearman", "topk_changed")
    lines = [f"{'network':>13} {'dynamicAL':>13} {'n':>4} {'|g_S|^2':>9} {'med |g_x|^2':>11} "
             f"{'ratio':>7} {'rho':>6} {'top-k changed':>13}"]
    for net_loss in dict.fromkeys(r["net_loss"] for r in rows):
        for dynamical_loss in dict.fromkeys(r["dynamical_loss"] for r in rows):
            for n in dict.fromkeys(r["n"] for r in rows):
                cell = (net_loss, dynamical_loss, n)
                group = [r for r in rows if (r["net_loss"], r["dynamical_loss"], r["n"]) == cell]
                m = {key: np.mean([r[key] for r in group]) for key in keys}
                lines.append(f"{net_loss:>13} {dynamical_loss:>13} {n:>4} {m['g_S_sq']:>9.3g} "
                             f"{m['median_g_x_sq']:>11.3g} {m['ratio']:>7.3f} {m['spearman']:>6.3f} "
                             f"{m['topk_changed']:>13.2f}")
    return lines


def main():
    args = parse_args()
    data = load_dataset("digits")
    rows = []
    for net_loss in args.losses:
        for n in tqdm(args.sizes, desc=net_loss):
            for seed in args.seeds:
                rows += measure(data, n, net_loss, seed, args)
    print(f"digits, mlp preset, {args.epochs} epochs, pool {args.pool}, k={args.k}, seeds {args.seeds}")
    print("\n".join(table(rows)))
    path = write_results(args.out, args, rows=rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
