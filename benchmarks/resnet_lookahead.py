"""An NTK look-ahead query on a user network with BatchNorm: a Flax ResNet-18 on MNIST-5k, timed end to end.

The papers' network is a ResNet-18 with BatchNorm. Here it is written as a
plain Flax module (basic blocks [2, 2, 2, 2], widths ``w, 2w, 4w, 8w``,
BatchNorm after every convolution, its statistics a mutable
``batch_stats`` collection), passed to ``JaxNetClassifier(network=...)``
as users pass theirs, fitted on ``--labels`` MNIST-5k digits, and asked for
``--batch`` points by the default ``NTKLookAheadQuery()`` over up to 4000
candidates of the rest of the pool. The kernel is the pseudo-NTK of the
network in inference mode (running statistics, ``params`` differentiated
only), taken from the module's jaxpr. Printed and written to ``--out``:
fit and query seconds, the number of candidates, the parameters and the
process's peak resident memory.

    python benchmarks/resnet_lookahead.py                # width 16
    python benchmarks/resnet_lookahead.py --width 64     # the papers' width (a GPU job)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import types
from pathlib import Path

import numpy as np


def resnet18(width, n_classes):
    """A Flax ResNet-18 for 28 x 28 x 1 images: a 3 x 3 stem, four stages of two basic blocks, BatchNorm."""
    import flax.linen as nn

    class Block(nn.Module):
        features: int
        stride: int

        @nn.compact
        def __call__(self, x, train=False):
            norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
            y = nn.relu(norm()(nn.Conv(self.features, (3, 3), self.stride, use_bias=False)(x)))
            y = norm()(nn.Conv(self.features, (3, 3), use_bias=False)(y))
            if self.stride != 1 or x.shape[-1] != self.features:
                x = norm()(nn.Conv(self.features, (1, 1), self.stride, use_bias=False)(x))
            return nn.relu(x + y)

    class ResNet18(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = x.reshape((x.shape[0], 28, 28, 1))
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(
                nn.Conv(width, (3, 3), use_bias=False)(x)))
            for stage, features in enumerate((width, 2 * width, 4 * width, 8 * width)):
                for block in range(2):
                    x = Block(features, 2 if stage and not block else 1)(x, train)
            return nn.Dense(n_classes)(x.mean(axis=(1, 2)))

    return ResNet18()


def parse_args(argv=None):
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=16,
                        help="channels of the first stage (default 16; 64 in the papers)")
    parser.add_argument("--labels", type=int, default=100, help="labelled digits the network is fitted on, equal per class (default 100)")
    parser.add_argument("--batch", type=int, default=100, help="points queried (default 100)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--out", type=Path, default=Path("results/resnet_lookahead"))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    import jax

    from sklearn_ntkal import JaxNetClassifier, NTKLookAheadQuery
    from sklearn_ntkal.datasets import load_dataset

    data = load_dataset("mnist5k")
    rng = np.random.default_rng(0)
    labelled = np.concatenate([rng.choice(np.flatnonzero(data.y == c), args.labels // 10, replace=False)
                               for c in range(10)])
    pool = np.setdiff1d(np.arange(len(data.y)), labelled)
    clf = JaxNetClassifier(network=resnet18(args.width, 10), loss="mse", epochs=args.epochs, random_state=0)
    start = time.perf_counter()
    clf.fit(data.X[labelled], data.y[labelled])
    fit_s = time.perf_counter() - start
    learner = types.SimpleNamespace(estimator=clf, X_training=data.X[labelled], y_training=data.y[labelled])
    strategy = NTKLookAheadQuery(random_state=0)
    start = time.perf_counter()
    picked, _ = strategy(learner, data.X[pool], n_instances=args.batch)
    query_s = time.perf_counter() - start
    figures = {
        "device": str(jax.devices()[0]), "jax": jax.__version__, "width": args.width, "labels": args.labels,
        "candidates": int(min(strategy.n_candidates, len(pool))), "batch": args.batch,
        "parameters": int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(clf.params_))),
        "fit_s": round(fit_s, 1), "query_s": round(query_s, 1), "distinct_picks": int(len(set(picked))),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    print(json.dumps(figures, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"command": sys.argv, **figures}, indent=2))


if __name__ == "__main__":
    main()
