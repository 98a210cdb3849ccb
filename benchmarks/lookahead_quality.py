"""How well the NTK look-ahead predicts real retraining, across network widths.

For an MLP trained with MSE on L (digits, the look-ahead paper's setting) and
each of ``--n-candidates`` candidates x, compares

- the predicted change of the outputs on U when (x, y^(x)) is added,
  ``f~_{L+(x,y^)}(U) - f~_L(U) = Delta[U, x] s_x^-1 (y^ - f~_L(x))``
  (``LinearizedClassifier.posterior``), with
- the change observed by actually retraining: the network warm-started at
  its weights and trained ``--steps`` full-batch gradient steps on
  ``L + {(x, y^)}``, minus the same retraining on L alone (so only the effect
  of x is measured). The step size is ``n / lambda_max(Theta(L, L))``, half
  the largest stable one, so retraining is stable at every width.

Reports per width the Pearson correlation of all entries of the two change
tensors (candidates x U x classes), the Pearson and Spearman correlations of
the per-candidate change norms, and the median ratio of norms (predicted /
retrained). Mohamadi, Bae & Sutherland (NeurIPS 2022) report the
approximation improves with width.

    python benchmarks/lookahead_quality.py --quick
    python benchmarks/lookahead_quality.py --widths 256 512 1024 2048 4096
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr
from tqdm import tqdm

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.bench.report import write_results
from sklearn_ntkal.datasets import load_dataset
from sklearn_ntkal.estimators.linearized import LinearizedClassifier
from sklearn_ntkal.estimators.training import make_optimizer
from sklearn_ntkal.strategies.retrain import retrained_outputs


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--depth", type=int, default=1, help="hidden layers of the MLP")
    parser.add_argument("--n-labeled", type=int, default=100)
    parser.add_argument("--n-eval", type=int, default=300, help="size of U, where output changes are measured")
    parser.add_argument("--n-candidates", type=int, default=30, help="candidates x (the first of U)")
    parser.add_argument("--steps", type=int, default=300, help="full-batch gradient steps of each retraining")
    parser.add_argument("--epochs", type=int, default=300, help="Adam epochs of the initial training")
    parser.add_argument("--kernel", default="pntk", choices=["pntk", "full", "trace"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--quick", action="store_true", help="widths 256 and 2048, 12 candidates, 150 steps")
    parser.add_argument("--out", type=Path, default=Path("results/lookahead_quality"))
    args = parser.parse_args()
    if args.quick:
        args.widths, args.n_candidates, args.steps, args.n_eval = [256, 2048], 12, 150, 200
    return args


def measure(data, width, seed, args):
    """Predicted and retrained output changes for one network; returns the metrics row."""
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(data.y))
    L, U = order[:args.n_labeled], order[args.n_labeled:args.n_labeled + args.n_eval]
    X_L, y_L, X_U = data.X[L], data.y[L], data.X[U]
    start = time.perf_counter()
    clf = JaxNetClassifier(loss="mse", network_kwargs={"hidden_layer_sizes": (width,) * args.depth},
                           epochs=args.epochs, batch_size=args.n_labeled, random_state=seed).fit(X_L, y_L)
    train_time = time.perf_counter() - start
    post = LinearizedClassifier(clf, kernel=args.kernel).fit(X_L, y_L).posterior(X_U, dense=True)
    eye = np.eye(len(clf.classes_))
    cands = np.arange(args.n_candidates)
    pseudo = post.outputs[cands].argmax(1)
    delta = post.covariance.matrix
    predicted = np.stack([np.outer(delta[:, x], eye[pseudo[i]] - post.mean[x]) / (delta[x, x] + post.ridge)
                          for i, x in enumerate(cands)])
    top = np.linalg.eigvalsh(clf.ntk(X_L, kind="full").transpose(0, 2, 1, 3).reshape(
        args.n_labeled * len(clf.classes_), -1))[-1]
    learning_rate = args.n_labeled / top
    schedule = {"epochs": args.steps, "optimizer": make_optimizer("sgd", float(learning_rate), 0.0),
                "batch_size": args.n_labeled + 1, "seed": seed}
    targets = eye[np.searchsorted(clf.classes_, y_L)].astype(np.float32)
    start = time.perf_counter()
    base = retrained_outputs(clf, X_L, targets, X_U, X_U[:0], targets[:0], **schedule)
    after = retrained_outputs(clf, X_L, targets, X_U, X_U[cands], eye[pseudo].astype(np.float32), **schedule)
    retrain_time = time.perf_counter() - start
    actual = after - base
    pred_norm, act_norm = np.linalg.norm(predicted, axis=(1, 2)), np.linalg.norm(actual, axis=(1, 2))
    return {
        "width": width, "seed": seed, "train_loss": clf.loss_curve_[-1],
        "test_accuracy": float(np.mean(clf.predict(X_U) == data.y[U])),
        "learning_rate": float(learning_rate),
        "pearson_entries": float(pearsonr(predicted.ravel(), actual.ravel())[0]),
        "pearson_norms": float(pearsonr(pred_norm, act_norm)[0]),
        "spearman_norms": float(spearmanr(pred_norm, act_norm)[0]),
        "norm_ratio": float(np.median(pred_norm / act_norm)),
        "train_s": train_time, "retrain_s": retrain_time,
    }


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted({r["width"] for r in rows})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key in ("pearson_entries", "pearson_norms", "spearman_norms"):
        ax.plot(widths, [np.mean([r[key] for r in rows if r["width"] == w]) for w in widths], "o-", label=key)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden width")
    ax.set_ylabel("correlation, predicted vs retrained")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    args = parse_args()
    data = load_dataset("digits")
    rows = []
    for width in tqdm(args.widths, desc="widths"):
        for seed in args.seeds:
            rows.append(measure(data, width, seed, args))
    header = f"{'width':>6} {'seed':>4} {'loss':>9} {'acc':>5} {'r(entries)':>10} {'r(norms)':>8} " \
             f"{'rho(norms)':>10} {'pred/real':>9} {'retrain s':>9}"
    print(f"digits, MSE MLP depth {args.depth}, |L|={args.n_labeled}, |U|={args.n_eval}, "
          f"{args.n_candidates} candidates, {args.steps} GD steps, kernel={args.kernel}")
    print(header)
    for r in rows:
        print(f"{r['width']:>6} {r['seed']:>4} {r['train_loss']:>9.2e} {r['test_accuracy']:>5.2f} "
              f"{r['pearson_entries']:>10.3f} {r['pearson_norms']:>8.3f} {r['spearman_norms']:>10.3f} "
              f"{r['norm_ratio']:>9.2f} {r['retrain_s']:>9.1f}")
    path = write_results(args.out, args, rows=rows)
    plot(rows, args.out / "correlation.png")
    print(f"wrote {path} and {args.out / 'correlation.png'}")


if __name__ == "__main__":
    main()
