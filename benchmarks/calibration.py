"""Held-out negative log-likelihood of a network's softmax under temperatures fitted in different ways.

On digits (a stratified 75/25 train/test split per seed, a stratified
labelled set of ``--sizes`` rows drawn from the training part) a network is
trained with each loss of ``--losses``; its test-set logits ``f`` are then
scored by the mean negative log-likelihood (NLL) and the expected calibration
error (ECE, 15 equal-width bins of the top probability) of
``softmax(f / T)`` for temperatures ``T`` fitted on the labelled set only:

- ``none``: ``T = 1``;
- ``loo_init`` (the library's ``calibration="temperature"``):
  leave-one-out predictions of the network linearised at its initial
  weights (pseudo-NTK at ``theta_0``, prior mean ``f_0``);
- ``loo_trained_zero``: leave-one-out predictions of kernel regression with
  the trained network's pseudo-NTK and a zero prior mean;
- ``loo_trained``: the same with the trained network as prior mean
  (residuals ``Y - f(X)``);
- ``holdout``: a second network, trained the same way on 80 % of the
  labelled set, its temperature fitted on the other 20 % (at least one row
  per class; costs a second training);
- ``oracle``: fitted on the test set itself, the best any temperature does
  (a reference, not a method).

Cross-entropy networks are trained on the likelihood already; ``loo_init``
is reported for them to show why the library leaves them uncalibrated.
Tables give mean ± standard deviation over seeds; ``(k d)`` counts the
seeds where a method's fit was degenerate (:func:`fit_temperature` returned
``None``: every leave-one-out prediction right, say), left out of the mean.

    python benchmarks/calibration.py --quick
    python benchmarks/calibration.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from sklearn_ntkal import JaxNetClassifier
from sklearn_ntkal.bench.report import write_results
from sklearn_ntkal.datasets import load_dataset
from sklearn_ntkal.engine import KernelSpec
from sklearn_ntkal.estimators.calibration import (
    fit_temperature,
    leave_one_out_residuals,
    leave_one_out_temperature,
    negative_log_likelihood,
)

METHODS = ("none", "loo_init", "loo_trained_zero", "loo_trained", "holdout", "oracle")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 300, 1000])
    parser.add_argument("--losses", nargs="+", default=["mse", "cross_entropy"], choices=["mse", "cross_entropy"])
    parser.add_argument("--network", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="sizes 50 and 300, one seed, MSE only")
    parser.add_argument("--out", type=Path, default=Path("results/calibration"))
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seeds, args.losses = [50, 300], [0], ["mse"]
    return args


def expected_calibration_error(logits, labels, temperature, bins=15):
    """Top-label ECE of ``softmax(logits / T)``: sum over bins of |accuracy - confidence| weighted by bin size."""
    z = logits / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    confidence, correct = p.max(1), p.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum(abs(correct[which == b].mean() - confidence[which == b].mean()) * np.mean(which == b)
                     for b in range(bins) if np.any(which == b)))


def trained_kernel_temperature(clf, X, labels, prior):
    """Temperature from leave-one-out predictions with the trained network's pseudo-NTK and a given prior mean."""
    kernel = KernelSpec(kind="pntk", float64=True)(clf.network_, clf.params_, X)
    targets = np.eye(len(clf.classes_))[labels]
    return fit_temperature(targets - leave_one_out_residuals(kernel, targets - prior), labels)


def measure(data, n, loss, seed, args):
    """Temperatures, test NLL and ECE of every method for one (size, loss, seed)."""
    X_train, X_test, y_train, y_test = train_test_split(data.X, data.y, test_size=0.25, random_state=seed,
                                                        stratify=data.y)
    X_L, _, y_L, _ = train_test_split(X_train, y_train, train_size=n, random_state=seed, stratify=y_train)
    settings = dict(network=args.network, loss=loss, epochs=args.epochs, random_state=seed, calibration=None)
    clf = JaxNetClassifier(**settings).fit(X_L, y_L)
    labels = np.searchsorted(clf.classes_, y_L)
    logits = clf.decision_function(X_test)
    held_out = max(round(0.2 * n), len(clf.classes_))
    X_a, X_b, y_a, y_b = train_test_split(X_L, y_L, test_size=held_out, random_state=seed, stratify=y_L)
    held = JaxNetClassifier(**settings).fit(X_a, y_a)
    temperatures = {
        "none": 1.0,
        "loo_init": leave_one_out_temperature(clf.network_, clf.initial_params_, X_L, labels, len(clf.classes_)),
        "loo_trained_zero": trained_kernel_temperature(clf, X_L, labels, 0.0),
        "loo_trained": trained_kernel_temperature(clf, X_L, labels, clf.decision_function(X_L)),
        "holdout": fit_temperature(held.decision_function(X_b), np.searchsorted(held.classes_, y_b)),
        "oracle": fit_temperature(logits, y_test),
    }
    row = {"n": n, "loss": loss, "seed": seed, "accuracy": float(np.mean(logits.argmax(1) == y_test))}
    for method, t in temperatures.items():
        t = np.nan if t is None else t
        row[method] = {"T": t, "nll": negative_log_likelihood(logits, y_test, t) if np.isfinite(t) else np.nan,
                       "ece": expected_calibration_error(logits, y_test, t) if np.isfinite(t) else np.nan}
    return row


def summary(rows, key):
    """Lines of a table: per (loss, n), the mean over seeds of ``key`` for every method."""
    lines = [f"{'loss':>13} {'n':>5} {'acc':>5} " + " ".join(f"{m:>18}" for m in METHODS)]
    for loss in dict.fromkeys(r["loss"] for r in rows):
        for n in dict.fromkeys(r["n"] for r in rows):
            group = [r for r in rows if r["loss"] == loss and r["n"] == n]
            cells = []
            for m in METHODS:
                values = np.array([r[m][key] for r in group])
                finite = values[np.isfinite(values)]
                cell = f"{finite.mean():.3g} ± {finite.std():.2g}" if finite.size else "-"
                cells.append(cell + (f" ({values.size - finite.size} d)" if finite.size < values.size else ""))
            accuracy = np.mean([r["accuracy"] for r in group])
            lines.append(f"{loss:>13} {n:>5} {accuracy:>5.3f} " + " ".join(f"{c:>18}" for c in cells))
    return lines


def main():
    args = parse_args()
    data = load_dataset("digits")
    rows = [measure(data, n, loss, seed, args)
            for loss in args.losses for n in tqdm(args.sizes, desc=loss) for seed in args.seeds]
    print(f"digits, {args.network}, {args.epochs} epochs, seeds {args.seeds}: mean ± sd over seeds")
    for key, title in (("nll", "test NLL"), ("ece", "test ECE"), ("T", "temperature")):
        print(f"\n{title}")
        print("\n".join(summary(rows, key)))
    path = write_results(args.out, args, rows=rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
