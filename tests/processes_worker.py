"""One process of the multi-process test (tests/test_processes.py): kernels, predictions, three queries on a pool.

Run alone it is the one-process reference; started once per process with a
coordinator it joins a JAX multi-process run on CPU devices::

    python tests/processes_worker.py OUT                     # one process
    python tests/processes_worker.py OUT --coordinator 127.0.0.1:12345 --num-processes 2 --process-id 0 &
    python tests/processes_worker.py OUT --coordinator 127.0.0.1:12345 --num-processes 2 --process-id 1

Each process writes ``OUT/process<i>.npz`` (results) and ``OUT/process<i>.json``
(the items it computed, :data:`sklearn_ntkal.engine.processes.WORK`, per step).
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

N_LABELED, N_POOL, BATCH = 60, 300, 5


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    return parser.parse_args()


def _steps():
    """Named steps on a small MLP fitted on digits, each returning arrays; the pool is ``N_POOL`` rows."""
    from sklearn.datasets import load_digits

    from sklearn_ntkal import DynamicALQuery, JaxNetClassifier, NTKLookAheadQuery, UncertaintyQuery, empirical_ntk

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X, y = X[: N_LABELED + N_POOL], y[: N_LABELED + N_POOL].astype(float)
    clf = JaxNetClassifier(epochs=20, network_kwargs={"hidden_layer_sizes": (32,)}, random_state=0)
    clf.fit(X[:N_LABELED], y[:N_LABELED])
    pool = X[N_LABELED:]
    unlabeled = np.concatenate([y[:N_LABELED], np.full(N_POOL, np.nan)])

    def query(strategy):
        indices, utilities = strategy.query(X, unlabeled, clf, batch_size=BATCH, return_utilities=True)
        return {"indices": indices, "scores": utilities[np.arange(BATCH), indices]}

    inputs = (clf.network_, clf.params_)
    return {
        "kernel_pool": lambda: {"kernel": empirical_ntk(*inputs, pool, kind="trace")},
        "kernel_cross": lambda: {"kernel": empirical_ntk(*inputs, pool, X[:20], kind="full")},
        "predict_proba": lambda: {"proba": clf.predict_proba(pool)},
        "margin": lambda: query(UncertaintyQuery(measure="margin")),
        "dynamical": lambda: query(DynamicALQuery(selection="greedy", random_state=0)),
        "lookahead": lambda: query(NTKLookAheadQuery(mode="sequential", output_space="logits", random_state=0)),
    }


def compute():
    """Every step's results (one dict of arrays) and the items this process computed per step."""
    from sklearn_ntkal.engine.processes import WORK

    results, work = {}, {}
    for name, step in _steps().items():
        WORK.clear()
        results.update({f"{name}.{key}": value for key, value in step().items()})
        work[name] = dict(WORK)
    return results, work


def main():
    args = _arguments()
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    results, work = compute()
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"process{args.process_id}.npz", **results)
    (args.out / f"process{args.process_id}.json").write_text(json.dumps(work))


if __name__ == "__main__":
    main()
