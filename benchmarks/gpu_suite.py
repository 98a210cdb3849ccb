"""Every accelerator figure in one call: kernel, look-ahead, dynamicAL and pool-scaling speed, and a short learning curve.

Runs, one after the other and each in its own process, the benchmark
scripts beside this one with the settings of one GPU run (about six minutes
on a current data-centre GPU; under eight in all):

- ``bench_ntk``: the structured empirical NTK at n = 1000 per side, MLP and
  CNN, full kernel and pNTK, 2 GiB blocks, with the GEMM roofline;
- ``lookahead_speed``: NTK look-ahead against SGD-retraining look-ahead
  (MLMOC, pools of 100, 300 and 1000 digits);
- ``dynamical_scaling``: dynamicAL against pool size (1k to 100k, MLP and
  CNN) with the naive per-sample loop;
- ``pool_scaling``: every strategy and ``predict_proba`` at a 1M-row pool;
- ``al_curves``: the learning-curve benchmark's ``--quick`` part;
- ``resnet_lookahead``: a default look-ahead query over 4000 candidates on a
  Flax ResNet-18 with BatchNorm at the papers' width (64), MNIST-5k.

Each part writes its own files under ``--out/<part>/``; this script then
writes ``gpu_suite.json`` (device, JAX version, each part's command, wall
time, exit status and figures) and ``gpu_suite.md`` (the same as a table)
into ``--out``. A part that fails is recorded with the end of its error
output and the others still run. ``--quick`` runs every part at small sizes
(a few minutes on a laptop CPU), so the suite can be kept working without a
GPU; ``--plan`` prints the commands and runs nothing.

    pip install "jax[cuda13]"                       # on the GPU machine
    python benchmarks/gpu_suite.py --out results/gpu_suite
    python benchmarks/gpu_suite.py --quick          # any machine, small sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: part -> (script, arguments of the GPU run, arguments of ``--quick``)
PARTS = {
    "bench_ntk": ("bench_ntk.py",
                  ["--n", "1000", "--networks", "mlp", "cnn", "--kinds", "full", "pntk",
                   "--implementations", "structured", "--memory-budget", "2048", "--repeats", "3"],
                  ["--n", "50", "--networks", "mlp", "cnn", "--kinds", "full", "pntk", "--cnn-channels", "8", "16",
                   "--implementations", "structured", "--memory-budget", "512", "--repeats", "1"]),
    "lookahead_speed": ("lookahead_speed.py",
                        ["--objectives", "mlmoc"],
                        ["--objectives", "mlmoc", "--pool-sizes", "50", "100", "--max-retrain", "20",
                         "--steps", "30", "--epochs", "50", "--width", "128"]),
    "dynamical_scaling": ("dynamical_scaling.py",
                          [],
                          ["--sizes", "500", "2000", "--networks", "mlp", "--naive-samples", "10",
                           "--n-labeled", "200", "--epochs", "1"]),
    "pool_scaling": ("pool_scaling.py",
                     ["--sizes", "1000000"],
                     ["--sizes", "5000", "--warmup", "1000", "--epochs", "20", "--hidden", "64", "64"]),
    "al_curves": ("al_curves.py", ["--quick", "--no-progress"], ["--quick", "--no-progress"]),
    "resnet_lookahead": ("resnet_lookahead.py",
                         ["--width", "64", "--labels", "100", "--batch", "100", "--epochs", "10"],
                         ["--width", "4", "--labels", "20", "--batch", "2", "--epochs", "1"]),
}


def parse_args(argv=None):
    """Command-line options of the suite."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every part at small sizes (minutes on a CPU)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one part may run")
    parser.add_argument("--plan", action="store_true", help="print the commands and run nothing")
    parser.add_argument("--out", type=Path, default=Path("results/gpu_suite"))
    return parser.parse_args(argv)


def plan(args):
    """``(part, command)`` of every part to run, each writing into ``--out/<part>``."""
    commands = []
    for name in args.parts:
        script, full, quick = PARTS[name]
        commands.append((name, [sys.executable, str(HERE / script), *(quick if args.quick else full),
                                "--out", str(args.out / name)]))
    return commands


def device_info():
    """Device, device kind, JAX version and device count, asked of a child process.

    This process never initialises a backend itself: on a GPU, JAX would
    reserve most of the memory the parts need.
    """
    probe = ("import json, jax; d = jax.devices()[0]; print(json.dumps({'device': str(d), "
             "'device_kind': d.device_kind, 'platform': d.platform, 'devices': jax.device_count(), "
             "'jax': jax.__version__}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=child_env())
    if done.returncode != 0:
        return {"device": "unknown", "error": done.stderr.strip()[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_env():
    """The environment of the parts: JAX allocates device memory as needed, so parts that spawn workers share it."""
    return dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")


def run_part(name, command, timeout):
    """Run one part; its record with wall time, exit status and, on failure, the end of its output."""
    print(f"\n=== {name}: {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=HERE.parent, env=child_env(), capture_output=True, text=True,
                              timeout=timeout)
        status, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        status, output = "timeout", f"{exc.stdout or ''}{exc.stderr or ''}"
        output = output.decode() if isinstance(output, bytes) else output
    seconds = time.perf_counter() - start
    print(output[-4000:], flush=True)
    record = {"name": name, "command": shlex.join(command), "seconds": seconds, "returncode": status}
    if status != 0:
        record["error"] = output[-3000:]
    return record


def _load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def figures_bench_ntk(out):
    """Kernel time at full n and its fraction of the GEMM roofline, per network, kind and budget."""
    document = _load(out / "results.json")
    rows = [("float32 GEMM rate", f"{document['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s")]
    for case in document["results"]:
        for row in case["rows"]:
            rows.append((f"{case['network']} {case['kind']} NTK, n = {case['n']}, {row['implementation']}, "
                         f"{row['memory_budget_mib']:.0f} MiB",
                         f"{row['seconds_at_n']:.3f} s ({row['roofline_fraction']:.0%} of roofline)"))
    return rows


def figures_lookahead_speed(out):
    """NTK and retraining time per pool, their ratio and the overlap of the selections."""
    return [(f"look-ahead {r['objective']}, pool {r['pool']}",
             f"NTK {r['ntk_s']:.3f} s, retraining {'~' if r['extrapolated'] else ''}{r['retrain_s']:.1f} s, "
             f"{r['speedup']:.0f}x, overlap {r['overlap']:.0%}")
            for r in _load(out / "results.json")["rows"]]


def figures_dynamical_scaling(out):
    """dynamicAL query time and memory growth per network and pool, with the naive loop's time."""
    return [(f"dynamicAL {r['network']}, pool {r['pool']}",
             f"{r['seconds']:.2f} s, RSS +{r['rss_growth_mb']:.0f} MiB, naive loop ~{r['naive_s']:.1f} s")
            for r in _load(out / "dynamical_scaling.json")["rows"]]


def figures_pool_scaling(out):
    """Query time and peak RSS of every strategy per pool."""
    document = _load(out / "pool_scaling.json")
    rows = [(f"{r['strategy']}, pool {r['pool']}", f"{r['seconds']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB")
            for r in document["rows"]]
    return rows + [("pool-scaling goal", document["verdict"])]


def figures_al_curves(out):
    """Area under the budget curve and query time per part and strategy."""
    rows = []
    for path in sorted(out.glob("*/results.json")):
        for r in _load(path).get("summary", []):
            if "aubc" in r:
                query = f", query {r['query_time'][0]:.3f} s/round" if "query_time" in r else ""
                rows.append((f"{path.parent.name}: {r['strategy']}", f"AUBC {r['aubc'][0]:.4f}{query}"))
    return rows


def figures_resnet_lookahead(out):
    """Fit and look-ahead query seconds and peak memory of the Flax ResNet-18 with BatchNorm."""
    r = _load(out / "results.json")
    return [(f"look-ahead, Flax ResNet-18 width {r['width']}, {r['candidates']} candidates, {r['batch']} picks",
             f"query {r['query_s']:.1f} s, fit {r['fit_s']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB")]


FIGURES = {"bench_ntk": figures_bench_ntk, "lookahead_speed": figures_lookahead_speed,
           "dynamical_scaling": figures_dynamical_scaling, "pool_scaling": figures_pool_scaling,
           "al_curves": figures_al_curves, "resnet_lookahead": figures_resnet_lookahead}


def collect(record, out):
    """Add the part's figures to its record, or say why they could not be read."""
    try:
        record["figures"] = FIGURES[record["name"]](out / record["name"])
    except (OSError, KeyError, ValueError) as exc:
        record["figures"] = []
        record.setdefault("error", f"no figures: {exc!r}")
    return record


def markdown(document):
    """The suite's record as a Markdown page: where it ran, then one table row per figure."""
    device = document["device"]
    lines = [f"# Accelerator suite{' (--quick)' if document['quick'] else ''}", "",
             f"{device.get('device_kind', device['device'])} ({device.get('devices', '?')} device(s), "
             f"{device.get('platform', '?')}), jax {device.get('jax', '?')}, Python {document['python']}; "
             f"{document['total_seconds'] / 60:.1f} minutes in all.", "",
             "| part | seconds | figure | value |", "|---|---|---|---|"]
    for part in document["parts"]:
        status = "" if part["returncode"] == 0 else f" (exit {part['returncode']})"
        lines.append(f"| {part['name']}{status} | {part['seconds']:.0f} | | |")
        lines += [f"| | | {figure} | {value} |" for figure, value in part["figures"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Run the planned parts, then write ``gpu_suite.json`` and ``gpu_suite.md``."""
    args = parse_args(argv)
    commands = plan(args)
    if args.plan:
        print("\n".join(shlex.join(command) for _, command in commands))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    device = device_info()
    parts = [collect(run_part(name, command, args.timeout), args.out) for name, command in commands]
    document = {"command": shlex.join(["python", "benchmarks/gpu_suite.py", *(sys.argv[1:] if argv is None else argv)]),
                "device": device, "python": platform.python_version(), "quick": args.quick,
                "total_seconds": time.perf_counter() - start, "parts": parts}
    (args.out / "gpu_suite.json").write_text(json.dumps(document, indent=2))
    (args.out / "gpu_suite.md").write_text(markdown(document))
    print("\n" + markdown(document))
    print(f"wrote {args.out / 'gpu_suite.json'} and {args.out / 'gpu_suite.md'}")
    if any(part["returncode"] != 0 for part in parts):
        sys.exit(1)


if __name__ == "__main__":
    main()
