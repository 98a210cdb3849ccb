"""DynamicALQuery against pool size: query time and peak memory, with a naive per-sample loop as baseline.

A network (``--networks``: the ``mlp`` preset, 784-512-512-10, and the
``cnn`` preset, two 3x3 conv layers of 32 and 64 channels, on 28x28 images)
is trained briefly on MNIST (the 5000-image subset shipped offline, 1000
images, so its labelled set is real) and then queries ``--k`` points from
synthetic pools of MNIST shape (real images resampled with Gaussian noise) of
``--sizes`` points. Every (network, size) runs in a fresh subprocess so that
its peak resident set size is its own:

- time: one query after a warm-up query of one chunk, so compilation is
  excluded (the chunk shape does not depend on the pool size);
- memory: the process's peak resident set size during the warm-up and the
  query minus its resident set size before them, the model and the pool
  already loaded. On Linux the kernel's peak mark is reset first
  (``/proc/self/clear_refs``) and read back as ``VmHWM``, so earlier peaks
  (loading data) do not hide the query's; elsewhere ``getrusage``'s
  ``ru_maxrss`` is used, which they can hide. On CPU, JAX's device buffers
  live in host memory, so this counts every working array, XLA's compiled
  code and allocator caches, but not the pool itself, loaded before. A flat
  column means memory does not grow with the pool.

The baseline is the naive implementation: a Python loop over candidates
calling a jitted ``jax.grad`` of one sample's loss (pseudo-label inside),
flattening the gradient and taking ``||g||^2 + 2 <g_S, g>``. It is timed on
``--naive-samples`` candidates after a warm-up call and extrapolated linearly
to each pool size (``g_S`` time added), marked ``~``.

    python benchmarks/dynamical_scaling.py --quick
    python benchmarks/dynamical_scaling.py
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--networks", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--k", type=int, default=100, help="points selected per query")
    parser.add_argument("--selection", default="topk", choices=["topk", "greedy"])
    parser.add_argument("--parameters", default="all", choices=["all", "last_layer"])
    parser.add_argument("--memory-budget", type=int, default=512 * 2**20, help="bytes")
    parser.add_argument("--n-labeled", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the network")
    parser.add_argument("--naive-samples", type=int, default=200, help="candidates the naive loop is timed on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="sizes 1000 and 10000, MLP only")
    parser.add_argument("--out", type=Path, default=Path("results/dynamical_scaling"))
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.networks = [1000, 10000], ["mlp"]
    return args


def labelled_set(args):
    """``--n-labeled`` random MNIST images and labels (the same in every process)."""
    from sklearn_ntkal.datasets import load_dataset

    data = load_dataset("mnist5k")
    idx = np.random.RandomState(args.seed).permutation(len(data.y))[: args.n_labeled]
    return data.X[idx], data.y[idx]


def synthetic_pool(X, size, seed, block=10000):
    """``size`` images: rows of ``X`` drawn at random plus N(0, 20^2) noise, clipped to [0, 255]."""
    rng = np.random.RandomState(seed)
    pool = np.empty((size, X.shape[1]), dtype=np.float32)
    for start in range(0, size, block):
        stop = min(start + block, size)
        noisy = X[rng.randint(len(X), size=stop - start)] + rng.normal(0, 20, (stop - start, X.shape[1]))
        pool[start:stop] = np.clip(noisy, 0, 255)
    return pool


def _status_mib(field):
    """A memory field of /proc/self/status (e.g. ``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def start_peak_rss():
    """Reset the peak-RSS mark where the kernel allows it; return ``(current RSS in MiB, whether reset)``."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mib("VmRSS"), True
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, False


def peak_rss(reset):
    """Peak RSS in MiB since :func:`start_peak_rss` (since process start where it could not reset)."""
    return _status_mib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_seconds_per_sample(clf, X_S, y_S, pool, n):
    """Seconds of the per-sample Python loop per candidate, and of its ``g_S``, timed on ``n`` candidates."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from sklearn_ntkal.engine.losses import per_sample_loss

    net, params, loss, n_classes = clf.network_, clf.params_, clf.loss, len(clf.classes_)

    @jax.jit
    def one_gradient(p, x):
        target = jax.nn.one_hot(jnp.argmax(net(p, x[None])[0]), n_classes)
        return jax.grad(lambda q: per_sample_loss(loss, net(q, x[None]), target[None])[0])(p)

    @jax.jit
    def summed(p, x, t):
        return jax.grad(lambda q: jnp.sum(per_sample_loss(loss, net(q, x), t)))(p)

    targets = np.eye(n_classes, dtype=np.float32)[np.searchsorted(clf.classes_, y_S)]
    jax.block_until_ready(summed(params, X_S, targets))
    start = time.perf_counter()
    g_S = ravel_pytree(summed(params, X_S, targets))[0]
    g_S.block_until_ready()
    g_S_seconds = time.perf_counter() - start
    jax.block_until_ready(one_gradient(params, pool[0]))
    start = time.perf_counter()
    scores = []
    for x in pool[:n]:
        g = ravel_pytree(one_gradient(params, x))[0]
        scores.append(float(g @ g + 2 * g @ g_S))
    return (time.perf_counter() - start) / min(n, len(pool)), g_S_seconds


def worker(args):
    """One (network, pool size) measurement in this process; prints a JSON line."""
    import jax

    from sklearn_ntkal.engine.gradients import LayerGradients, chunk_rows
    from sklearn_ntkal.strategies.dynamical import DynamicALQuery

    model_path, size = args.worker[0], int(args.worker[1])
    with open(model_path, "rb") as f:
        clf = pickle.load(f)
    X_S, y_S = labelled_set(args)
    pool = synthetic_pool(X_S, size, args.seed + 1)
    learner = type("Learner", (), {"estimator": clf, "X_training": X_S, "y_training": y_S})()
    strategy = DynamicALQuery(selection=args.selection, parameters=args.parameters,
                              memory_budget=args.memory_budget, random_state=args.seed)
    gmap = LayerGradients(clf.network_, clf.loss, last_only=args.parameters == "last_layer")
    chunk = chunk_rows(gmap, clf.params_, pool.shape[1:], np.float32, args.memory_budget // 2)
    rss_before, reset = start_peak_rss()
    strategy(learner, pool[: min(size, chunk)], n_instances=min(args.k, size, chunk))
    start = time.perf_counter()
    positions, _ = strategy(learner, pool, n_instances=args.k)
    seconds = time.perf_counter() - start
    rss_peak = peak_rss(reset)
    per_sample, g_S_seconds = naive_seconds_per_sample(clf, X_S, y_S, pool, args.naive_samples)
    print(json.dumps({
        "pool": size, "seconds": seconds, "chunk": chunk, "rss_growth_mb": rss_peak - rss_before, "peak_reset": reset,
        "pool_mb": pool.nbytes / 2**20, "naive_per_sample_s": per_sample, "naive_g_S_s": g_S_seconds,
        "n_params": int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(clf.params_))),
        "selected": len(positions), "device": str(jax.devices()[0]),
    }))


def train(network, args):
    from sklearn_ntkal import JaxNetClassifier

    X_S, y_S = labelled_set(args)
    return JaxNetClassifier(network=network, epochs=args.epochs, random_state=args.seed).fit(X_S, y_S)


def plot(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, network in enumerate(sorted({r["network"] for r in rows})):
        sel = [r for r in rows if r["network"] == network]
        pools, color = [r["pool"] for r in sel], f"C{i}"
        axes[0].loglog(pools, [r["seconds"] for r in sel], "o-", color=color, label=f"{network} DynamicALQuery")
        axes[0].loglog(pools, [r["naive_s"] for r in sel], "x--", color=color,
                       label=f"{network} naive loop (extrapolated)")
        axes[1].semilogx(pools, [r["rss_growth_mb"] for r in sel], "o-", color=color, label=network)
    axes[0].set(xlabel="pool size", ylabel="query time (s)", title="time")
    axes[1].set(xlabel="pool size", ylabel="peak RSS growth (MiB)", title="memory", ylim=(0, None))
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "dynamical_scaling.png", dpi=120)


def main():
    args = parse_args()
    if args.worker:
        worker(args)
        return
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    passthrough = ["--k", str(args.k), "--selection", args.selection, "--parameters", args.parameters,
                   "--memory-budget", str(args.memory_budget), "--n-labeled", str(args.n_labeled),
                   "--naive-samples", str(args.naive_samples), "--seed", str(args.seed)]
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(network, size) for network in args.networks for size in args.sizes]
        models = {}
        for network, size in tqdm(jobs, desc="pools"):
            if network not in models:
                models[network] = str(Path(tmp) / f"{network}.pkl")
                with open(models[network], "wb") as f:
                    pickle.dump(train(network, args), f)
            done = subprocess.run([sys.executable, __file__, "--worker", models[network], str(size), *passthrough],
                                  check=True, capture_output=True, text=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["network"] = network
            row["naive_s"] = row["naive_g_S_s"] + row["naive_per_sample_s"] * size
            rows.append(row)
    header = (f"{'network':8} {'params':>8} {'pool':>7} {'chunk':>6} {'time s':>8} {'us/cand':>8} "
              f"{'RSS+ MiB':>9} {'pool MiB':>9} {'naive s':>9} {'speed-up':>9}")
    print(f"DynamicALQuery(selection={args.selection!r}, parameters={args.parameters!r}), k={args.k}, "
          f"|S|={args.n_labeled}, budget={args.memory_budget / 2**20:.0f} MiB, device {rows[0]['device']}")
    print(header)
    for r in rows:
        print(f"{r['network']:8} {r['n_params']:>8} {r['pool']:>7} {r['chunk']:>6} {r['seconds']:>8.2f} "
              f"{1e6 * r['seconds'] / r['pool']:>8.1f} {r['rss_growth_mb']:>9.1f} {r['pool_mb']:>9.1f} "
              f"{'~' + format(r['naive_s'], '.1f'):>9} {r['naive_s'] / r['seconds']:>8.1f}x")
    for network in args.networks:
        sel = sorted((r for r in rows if r["network"] == network), key=lambda r: r["pool"])
        for a, b in zip(sel, sel[1:]):
            print(f"{network}: pool x{b['pool'] / a['pool']:.0f} -> time x{b['seconds'] / a['seconds']:.1f}, "
                  f"RSS growth {a['rss_growth_mb']:.0f} -> {b['rss_growth_mb']:.0f} MiB")
    print(f"naive: Python loop of a jitted per-sample jax.grad, timed on {args.naive_samples} candidates, "
          "extrapolated linearly (~)")
    (args.out / "dynamical_scaling.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                                 "rows": rows}, indent=2))
    plot(rows, args.out)
    print(f"wrote {args.out / 'dynamical_scaling.json'} and {args.out / 'dynamical_scaling.png'}")


if __name__ == "__main__":
    main()
