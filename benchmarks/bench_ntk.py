"""Speed of the empirical-NTK implementations against neural-tangents and the GEMM roofline.

Times ``sklearn_ntkal.engine.empirical_ntk`` with ``implementation="structured"``,
``"jacobian"`` and ``"ntvp"`` on an MLP 784-512-512-10 and the ``cnn`` preset
(28x28x1 inputs) for ``kind="full"`` and ``kind="pntk"`` at n x n inputs
(two disjoint sets of MNIST-5k images, or one with ``--symmetric``), and
compares with two baselines measured in the same run (the ``preset`` rows):

- neural-tangents 0.6.5 structured derivatives (Novak, Sohl-Dickstein &
  Schoenholz, ICML 2022), ``nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0,
  implementation=STRUCTURED_DERIVATIVES)``, on ``f`` for the full kernel and on
  ``g = sum_c f_c / sqrt(C)`` for the pNTK; same network function, weights,
  inputs and dtype (float32). neural-tangents needs jax <= 0.4.25 and
  numpy < 2, so it runs in its own environment (``--setup-nt-env PATH`` makes
  one) through ``nt_reference.py``, which also checks its kernel against ours.
- the GEMM roofline: the kernel's FLOPs divided by the float32 rate of a warm
  4096 x 4096 ``jnp.dot`` at ``precision=HIGHEST`` (the engine's setting),
  best of 10, measured at the start and in every timed round; the highest rate
  of the run is used, so a busy machine cannot make the roofline easier to
  reach. neural-tangents is also set against a roofline at the rate of a
  GEMM in its own environment: its older jaxlib can multiply matrices at a
  different rate on the same CPU, which bounds the speed-up of a GEMM-bound
  kernel. FLOPs, with K = C output directions for ``"full"`` and K = 1 for
  ``"pntk"``, f_l = 2 |z_l| |W_l| / c_l the forward FLOPs of linear layer l
  per sample (|z_l| outputs, c_l output channels) and N = n1 + n2 inputs (n
  with ``--symmetric``):

      Grams, per dense layer on flat inputs:   2 n1 n2 d_in + 2 (n1 K)(n2 K) d_out
                                               (input Gram)   (output-cotangent Gram)
             per conv layer (or dense on non-flat inputs):  2 (n1 K)(n2 K) (|W| + |b|)
                                               (Gram of per-sample weight gradients)
      features:  N [sum_l f_l  +  K sum_{l>1} f_l  +  K sum_{conv l} f_l]
                    (forward)    (K cotangent passes) (per-sample weight gradients)

The same two networks, with the preset's weights, are also written as a Flax
module, an Equinox module (CHW images) and a ``jax.example_libraries.stax``
pair (``--sources``) and timed through ``implementation="auto"``, which reads
their structured rules from their jaxprs; each kernel is checked against the
preset's, and its time set against the preset's at the same memory budget
(goal: at most 1.5x) and neural-tangents' (goal: at least 1x).

``"jacobian"`` and ``"ntvp"`` cost 2 (n1 K)(n2 K) P (P parameters) and more, so
they are timed at ``--slow-n`` samples, checked against the structured kernel
of the same inputs, and their time scaled by (n / slow_n)^2 (marked ``~``).

Every measurement is a warm-up (compiling) call, then the best of
``--repeats`` rounds; in each round our calls and neural-tangents' alternate,
so both see the same load on a shared machine. A warm-up longer than
``--long-run`` seconds is itself the measurement (compilation included,
marked ``*``).

Writes ``results.json``, ``table.md`` and ``times.png`` to ``--out``.

    python benchmarks/bench_ntk.py --quick
    python benchmarks/bench_ntk.py --setup-nt-env ~/nt-env          # create it, then compare
    python benchmarks/bench_ntk.py --nt-python ~/nt-env/bin/python   # reuse it
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sklearn_ntkal.bench.report import environment
from sklearn_ntkal.datasets import load_dataset
from sklearn_ntkal.networks import Network
from sklearn_ntkal.networks.layers import AvgPool, Conv, Dense, Flatten, Gelu, Relu, Tanh
from sklearn_ntkal.engine import empirical_ntk
from sklearn_ntkal.networks.architectures import cnn, mlp
from timing import matmul_rate, seconds

HERE = Path(__file__).resolve().parent
MIB = 2**20
NT_PINS = ("jax==0.4.25", "jaxlib==0.4.25", "numpy<2")
NT_NO_DEPS = ("neural-tangents==0.6.5", "frozendict")
NT_TENSORFLOW = ("tensorflow-cpu==2.16.1", "dm-tree")
NT_TENSORFLOW_NO_DEPS = ("tf2jax==0.3.6",)
GOALS = {("mlp", "full"): 1.5, ("cnn", "full"): 1.0}
ROOFLINE_GOAL = 0.7
SOURCES = ("preset", "flax", "equinox", "stax")
USER_GOAL = 1.5


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n=200, slow implementations at n=5, 1 repeat")
    parser.add_argument("--n", type=int, default=None, help="inputs per side (default 1000, 200 with --quick)")
    parser.add_argument("--slow-n", type=int, default=None,
                        help="inputs per side for 'jacobian' and 'ntvp' (default 20, 5 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls after the warm-up (default 3, quick 1)")
    parser.add_argument("--long-run", type=float, default=None,
                        help="seconds; when the warm-up call takes longer, it is the measurement (compilation "
                             "included, marked *) (default 60, 20 with --quick)")
    parser.add_argument("--memory-budget", type=float, nargs="+", default=[512, 2048], metavar="MIB",
                        help="engine memory budgets in MiB; structured runs at each, the others at the first "
                             "(default 512 2048)")
    parser.add_argument("--networks", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--kinds", nargs="+", default=["full", "pntk"], choices=["full", "pntk"])
    parser.add_argument("--implementations", nargs="+", default=["structured", "jacobian", "ntvp"],
                        choices=["structured", "jacobian", "ntvp"])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES,
                        help="who writes the network: the built-in preset, and the same network (same weights) as a "
                             "Flax module, an Equinox module or a jax.example_libraries.stax pair, timed with "
                             "implementation='auto' at the first memory budget (default: all)")
    parser.add_argument("--cnn-channels", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--symmetric", action="store_true", help="kernel of one set with itself (x2=None)")
    parser.add_argument("--seed", type=int, default=0, help="weights and the choice of images")
    parser.add_argument("--setup-nt-env", metavar="PATH",
                        help="create a virtual environment for neural-tangents at PATH (reused if it imports)")
    parser.add_argument("--nt-with-tensorflow", action="store_true",
                        help="with --setup-nt-env, also install TensorFlow so neural-tangents imports unmodified "
                             "(about 1.5 GB); without it nt_reference.py leaves out neural_tangents.experimental")
    parser.add_argument("--nt-python", metavar="PYTHON", help="python of an existing neural-tangents environment")
    parser.add_argument("--out", default=None, help="output folder (default results/bench_ntk)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (200 if quick else 1000)
    args.slow_n = min(args.n, args.slow_n or (5 if quick else 20))
    args.repeats = args.repeats or (1 if quick else 3)
    args.long_run = args.long_run if args.long_run is not None else (20.0 if quick else 60.0)
    args.out = Path(args.out or "results/bench_ntk")
    return args


def make_case(name, args):
    """``(network, params, x1, x2)`` for ``"mlp"`` (flat rows) or ``"cnn"`` (NHWC images), float32."""
    data = load_dataset("mnist5k")
    rows = np.random.RandomState(args.seed).permutation(data.X.shape[0])[: 2 * args.n]
    x = data.X[rows] / np.float32(255.0)
    if name == "mlp":
        network, shape = Network(mlp(10, (512, 512))), (784,)
    else:
        network, shape = Network(cnn(10, tuple(args.cnn_channels))), tuple(data.image_shape)
    x = x.reshape((-1,) + shape)
    _, params = network.init_fn(jax.random.PRNGKey(args.seed), (1,) + shape)
    return network, params, x[: args.n], (None if args.symmetric else x[args.n:])


def describe(network):
    """The network as a list of plain layer descriptions that ``nt_reference.py`` rebuilds with jax.numpy."""
    ops = {Relu: "relu", Tanh: "tanh", Gelu: "gelu", Flatten: "flatten"}
    layers = []
    for layer in network.layer.layers:
        if isinstance(layer, Dense):
            layers.append({"op": "dense"})
        elif isinstance(layer, Conv):
            layers.append({"op": "conv", "strides": list(layer.strides), "padding": layer.padding})
        elif isinstance(layer, AvgPool):
            layers.append({"op": "avgpool", "window": list(layer.window)})
        elif type(layer) in ops:
            layers.append({"op": ops[type(layer)]})
        else:
            raise ValueError(f"no plain description of {layer!r}")
    return layers


def linear_params(params):
    """Parameters of the linear layers in call order: one ``(w, b)`` or ``(w,)`` tuple each."""
    return [p for p in params if len(p)]


def kernel_flops(network, params, x, kind, n1, n2, n_inputs):
    """``(gram_flops, feature_flops)`` of the structured kernel of n1 x n2 inputs (module docstring)."""
    layers = []

    def tapped(p, z):
        out, records = network.apply_tapped(p, z)
        layers[:] = [r[0] for r in records]
        return out, [r[1:] for r in records]

    out, records = jax.eval_shape(tapped, params, jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype))
    k = out.shape[-1] if kind == "full" else 1
    gram = forward = backward = grads = 0.0
    for position, (layer, (layer_params, inputs, outputs)) in enumerate(zip(layers, records)):
        w = layer_params[0]
        f = 2.0 * outputs.size * w.size / w.shape[-1]
        forward += f
        backward += k * f if position else 0.0
        if isinstance(layer, Dense) and len(inputs.shape) == 2:
            gram += 2.0 * n1 * n2 * inputs.shape[1] + 2.0 * (n1 * k) * (n2 * k) * outputs.shape[1]
        else:
            gram += 2.0 * (n1 * k) * (n2 * k) * sum(p.size for p in layer_params)
            grads += k * f
    return gram, n_inputs * (forward + backward + grads)


class Timing:
    """A measurement: a warm-up call, then the best of later calls (or the warm-up itself when it was long)."""

    def __init__(self, call, long_run):
        self.call, self.long_run = call, long_run
        self.warmup_seconds = self.times = None

    def warmup(self):
        start = time.perf_counter()
        out = self.call()
        self.warmup_seconds = time.perf_counter() - start
        self.times = []
        return out

    @property
    def done(self):
        """No more timed calls: the warm-up was longer than ``long_run`` and is the measurement."""
        return self.warmup_seconds > self.long_run

    def time(self):
        self.times.append(seconds(self.call))

    def record(self):
        best = min(self.times) if self.times else self.warmup_seconds
        return {"seconds": best, "times": self.times, "warmup_seconds": self.warmup_seconds,
                "includes_compile": not self.times}


def our_timings(args, network, params, x1, x2, kind):
    """``[(row, Timing)]`` for every implementation and budget; warm-up calls made, slow checks done."""
    out = []
    budgets = [int(b * MIB) for b in args.memory_budget]
    for impl in args.implementations if "preset" in args.sources else ():
        slow = impl != "structured"
        n = args.slow_n if slow else args.n
        a, b = x1[:n], None if x2 is None else x2[:n]
        for budget in budgets[:1] if slow else budgets:
            def call(impl=impl, budget=budget, a=a, b=b):
                return empirical_ntk(network, params, a, b, kind=kind, implementation=impl, memory_budget=budget)

            timing = Timing(call, args.long_run)
            kernel = timing.warmup()
            row = {"implementation": impl, "source": "preset", "memory_budget_mib": budget / MIB, "n": n,
                   "extrapolated": n != args.n}
            if slow:
                check = empirical_ntk(network, params, a, b, kind=kind, implementation="structured")
                row["max_rel_diff_vs_structured"] = float(np.abs(kernel - check).max() / np.abs(check).max())
            else:
                row["kernel"] = kernel
            print(f"  warm-up {impl:<10} budget {budget / MIB:6.0f} MiB  n={n:<5} {timing.warmup_seconds:9.3f} s",
                  flush=True)
            out.append((row, timing))
    return out


def _stax_network(convs, dense):
    from jax.example_libraries import stax

    pairs = []
    for w, b in convs:
        pairs += [(stax.Conv(w.shape[-1], w.shape[:2], padding="SAME"), (w, b.reshape(1, 1, 1, -1))),
                  (stax.Relu, ()), (stax.AvgPool((2, 2), (2, 2)), ())]
    pairs += [(stax.Flatten, ())] if convs else []
    for w, b in dense[:-1]:
        pairs += [(stax.Dense(w.shape[1]), (w, b)), (stax.Relu, ())]
    pairs.append((stax.Dense(dense[-1][0].shape[1]), dense[-1]))
    _, apply_fn = stax.serial(*[layer for layer, _ in pairs])
    return apply_fn, [p for _, p in pairs], lambda x: x


def _flax_network(convs, dense):
    import flax.linen as nn

    class Network(nn.Module):
        @nn.compact
        def __call__(self, x):
            for w, _ in convs:
                x = nn.avg_pool(nn.relu(nn.Conv(w.shape[-1], w.shape[:2])(x)), (2, 2), (2, 2))
            x = x.reshape(x.shape[0], -1)
            for w, _ in dense[:-1]:
                x = nn.relu(nn.Dense(w.shape[1])(x))
            return nn.Dense(dense[-1][0].shape[1])(x)

    params = {f"Conv_{i}": {"kernel": w, "bias": b} for i, (w, b) in enumerate(convs)}
    params.update({f"Dense_{i}": {"kernel": w, "bias": b} for i, (w, b) in enumerate(dense)})
    module = Network()
    return (lambda p, x: module.apply({"params": p}, x)), params, lambda x: x


def _equinox_network(convs, dense, image_shape):
    import equinox as eqx

    class Network(eqx.Module):
        convs: tuple
        dense: tuple

        def __call__(self, x):
            for conv in self.convs:
                x = eqx.nn.AvgPool2d(2, 2)(jax.nn.relu(conv(x)))
            x = x.reshape(-1)
            for layer in self.dense[:-1]:
                x = jax.nn.relu(layer(x))
            return self.dense[-1](x)

    key = jax.random.PRNGKey(0)
    if convs:  # the preset flattens (h, w, c) images, Equinox (c, h, w) ones: permute the first dense layer's rows
        h, w, c = image_shape[0] >> len(convs), image_shape[1] >> len(convs), convs[-1][0].shape[-1]
        first = dense[0][0].reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
        dense = [(first, dense[0][1])] + dense[1:]
    conv_layers = tuple(
        eqx.tree_at(lambda m: (m.weight, m.bias),
                    eqx.nn.Conv2d(w.shape[2], w.shape[3], w.shape[:2], padding=w.shape[0] // 2, key=key),
                    (jnp.transpose(w, (3, 2, 0, 1)), b.reshape(-1, 1, 1)))
        for w, b in convs)
    dense_layers = tuple(eqx.tree_at(lambda m: (m.weight, m.bias), eqx.nn.Linear(*w.shape, key=key), (w.T, b))
                         for w, b in dense)
    params, static = eqx.partition(Network(conv_layers, dense_layers), eqx.is_inexact_array)

    def apply_fn(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    return apply_fn, params, (lambda x: np.transpose(x, (0, 3, 1, 2))) if convs else (lambda x: x)


def user_network(source, name, params, image_shape):
    """The preset as a ``source`` network with the preset's weights: ``(apply_fn, params, to_inputs)``.

    ``to_inputs`` maps the preset's inputs to the network's (NHWC images to
    CHW for Equinox). Raises ImportError where the package is missing.
    """
    linear = [tuple(jnp.asarray(a) for a in p) for p in linear_params(params)]
    n_convs = len(linear) - 2 if name == "cnn" else 0
    convs, dense = linear[:n_convs], linear[n_convs:]
    if source == "stax":
        return _stax_network(convs, dense)
    if source == "flax":
        return _flax_network(convs, dense)
    return _equinox_network(convs, dense, image_shape)


def user_timings(args, name, params, image_shape, x1, x2, kind, reference):
    """``[(row, Timing)]`` of the preset written in every other source, at the first budget; skipped sources noted."""
    out, budget = [], int(args.memory_budget[0] * MIB)
    for source in [s for s in args.sources if s != "preset"]:
        try:
            apply_fn, user_params, to_inputs = user_network(source, name, params, image_shape)
        except ImportError as exc:
            print(f"  {source}: skipped ({exc})", flush=True)
            continue
        a, b = to_inputs(x1), None if x2 is None else to_inputs(x2)

        def call(apply_fn=apply_fn, user_params=user_params, a=a, b=b):
            return empirical_ntk(apply_fn, user_params, a, b, kind=kind, memory_budget=budget)

        timing = Timing(call, args.long_run)
        kernel = timing.warmup()
        row = {"implementation": "structured", "source": source, "memory_budget_mib": budget / MIB, "n": args.n,
               "extrapolated": False}
        if reference is not None:
            row["max_rel_diff_vs_structured"] = float(np.abs(kernel - reference).max() / np.abs(reference).max())
        print(f"  warm-up {source:<10} budget {budget / MIB:6.0f} MiB  n={args.n:<5} {timing.warmup_seconds:9.3f} s",
              flush=True)
        out.append((row, timing))
    return out


class NeuralTangents:
    """``nt_reference.py`` running in the neural-tangents environment, answering one JSON request per line."""

    def __init__(self, python, npz):
        command = [python, str(HERE / "nt_reference.py"), str(npz)]
        print("$", shlex.join(command), flush=True)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._answer()

    def _answer(self):
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"nt_reference.py stopped (exit code {self.process.wait()}); its stderr is above")

    def ask(self, **request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self):
        self.process.stdin.close()
        self.process.wait()


class RemoteTiming(Timing):
    """A :class:`Timing` of a neural-tangents kernel, measured inside the neural-tangents process."""

    def __init__(self, nt, case, kind, long_run):
        super().__init__(None, long_run)
        self.nt, self.request = nt, {"case": case, "kind": kind}

    def warmup(self):
        answer = self.nt.ask(op="warmup", **self.request)
        self.warmup_seconds, self.times = answer["seconds"], []
        return answer

    def time(self):
        self.times.append(self.nt.ask(op="time", **self.request)["seconds"])


def write_cases(path, cases):
    """The networks (as layer lists), weights, inputs and our structured kernels, for ``nt_reference.py``."""
    arrays = {}
    for name, case in cases.items():
        p = name + "_"
        arrays[p + "layers"] = json.dumps(case["layers"])
        arrays[p + "x1"] = case["x1"]
        if case["x2"] is not None:
            arrays[p + "x2"] = case["x2"]
        for i, layer_params in enumerate(case["linear"]):
            for label, value in zip(("w", "b"), layer_params):
                arrays[f"{p}{label}{i}"] = np.asarray(value)
        for kind, kernel in case["kernels"].items():
            arrays[f"{p}kernel_{kind}"] = kernel
    np.savez(path, **arrays)


def nt_environment_python(args):
    """Python of the neural-tangents environment, creating it if asked; ``(python, None)`` or ``(None, reason)``."""
    if args.nt_python:
        return args.nt_python, None
    if not args.setup_nt_env:
        return None, "no neural-tangents environment given (use --setup-nt-env PATH or --nt-python PYTHON)"
    path = Path(args.setup_nt_env).expanduser()
    python = path / "bin" / "python"
    probe = [str(python), "-c", f"import runpy, sys; sys.path.insert(0, {str(HERE)!r}); "
                                f"runpy.run_path({str(HERE / 'nt_reference.py')!r})"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python), None
    steps = [
        [sys.executable, "-m", "venv", str(path)],
        [str(python), "-m", "pip", "install", "--quiet", *NT_PINS,
         *(NT_TENSORFLOW if args.nt_with_tensorflow else ())],
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", *NT_NO_DEPS,
         *(NT_TENSORFLOW_NO_DEPS if args.nt_with_tensorflow else ())],
    ]
    for step in steps:
        print("$", shlex.join(step), flush=True)
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"`{shlex.join(step)}` failed: {(done.stderr or done.stdout).strip()[-600:]}"
    done = subprocess.run(probe, capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"neural-tangents does not import in {path}: {done.stderr.strip()[-600:]}"
    return str(python), None


def finish(results, rate, nt_rate=None):
    """Turn every case's timings into rows with seconds at full n, roofline fractions and speed-ups.

    neural-tangents' time is also set against a roofline at the GEMM rate of
    its own environment (``own_roofline_fraction``), since its older jaxlib
    may multiply matrices at a different rate on the same machine.
    """
    for case in results:
        case["roofline_seconds"] = case["flops"] / rate
        nt = case.pop("nt_timing", None)
        if nt is not None:
            record = nt.record()
            case["neural_tangents"] = dict(
                record, max_rel_diff_vs_ours=case.pop("nt_check"),
                roofline_fraction=case["roofline_seconds"] / record["seconds"],
                own_roofline_fraction=case["flops"] / nt_rate / record["seconds"] if nt_rate else None)
        case["rows"] = []
        for row, timing in case.pop("measured"):
            row.update(timing.record())
            row["seconds_at_n"] = row["seconds"] * (case["n"] / row["n"]) ** 2
            row["roofline_fraction"] = case["roofline_seconds"] / row["seconds_at_n"]
            if nt is not None:
                row["speedup_vs_nt"] = case["neural_tangents"]["seconds"] / row["seconds_at_n"]
            case["rows"].append(row)


def label(row):
    """An implementation, and who wrote the network when it is not the preset: ``structured [flax]``."""
    return row["implementation"] + ("" if row["source"] == "preset" else f" [{row['source']}]")


def table(results, nt_reason):
    """Markdown table of every measurement."""
    lines = ["| network | kind | implementation | budget MiB | n | seconds | s at full n | NT s / ours s "
             "| roofline | max rel diff |", "|" + "---|" * 10]

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    for case in results:
        nt = case.get("neural_tangents")
        for row in case["rows"]:
            mark = "~" if row["extrapolated"] else ""
            star = "*" if row["includes_compile"] else ""
            lines.append(
                f"| {case['network']} | {case['kind']} | {label(row)} | {row['memory_budget_mib']:.0f} "
                f"| {row['n']} | {row['seconds']:.3f}{star} | {mark}{row['seconds_at_n']:.3f} "
                f"| {fmt(row.get('speedup_vs_nt'), '.2f')} | {row['roofline_fraction']:.1%} "
                f"| {fmt(row.get('max_rel_diff_vs_structured'), '.1e')} |"
            )
        if nt:
            star = "*" if nt.get("includes_compile") else ""
            lines.append(
                f"| {case['network']} | {case['kind']} | neural-tangents structured | - | {case['n']} "
                f"| {nt['seconds']:.3f}{star} | {nt['seconds']:.3f} | 1.00 | {nt['roofline_fraction']:.1%} "
                f"| {nt['max_rel_diff_vs_ours']:.1e} |"
            )
        lines.append(f"| {case['network']} | {case['kind']} | GEMM roofline | - | {case['n']} | - "
                     f"| {case['roofline_seconds']:.3f} | - | 100% | - |")
    notes = ["", "`~`: timed at the smaller n and scaled by (n / n_timed)^2. `*`: one call, compilation included. "
             "max rel diff: against our structured kernel of the preset (implementations, and the same network "
             "written in Flax, Equinox or stax with the same weights: `[source]`) or, for neural-tangents, "
             "against ours on the same inputs."]
    if nt_reason:
        notes.append(f"neural-tangents comparison skipped: {nt_reason}")
    return "\n".join(lines + notes)


def environment_lines(rate, nt):
    """Where the figures come from: devices, versions and best GEMM rates of both environments."""
    env = environment()
    lines = [f"sklearn_ntkal side: sklearn_ntkal {env['sklearn_ntkal']}, jax {env['jax']} on {env['devices'][0]} "
             f"({env['cpu_count']} CPUs), float32 GEMM {rate / 1e9:.1f} GFLOP/s (the roofline's rate)"]
    if nt:
        v = nt["versions"]
        lines.append(f"neural-tangents side: neural-tangents {v['neural_tangents']}, jax {v['jax']}, numpy {v['numpy']} "
                     f"on {nt['device']}, float32 GEMM {nt['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s; {nt['import']}")
    return lines


def verdicts(results):
    """One line per goal of the engine: speed-up over neural-tangents and fraction of the roofline."""
    lines = []
    for case in results:
        presets = [r for r in case["rows"] if r["implementation"] == "structured" and r["source"] == "preset"]
        for row in [r for r in case["rows"] if r["source"] != "preset"]:
            same = [r for r in presets if r["memory_budget_mib"] == row["memory_budget_mib"]]
            ratio = row["seconds"] / same[0]["seconds"] if same else None
            parts = [f"{case['network']} {case['kind']}: {row['source']} network {row['seconds']:.3f} s"]
            if ratio is not None:
                parts.append(f"{ratio:.2f}x the preset's time (goal <= {USER_GOAL}x: "
                             f"{'met' if ratio <= USER_GOAL else 'NOT met'})")
            if row.get("speedup_vs_nt") is not None:
                parts.append(f"{row['speedup_vs_nt']:.2f}x neural-tangents (goal >= 1x: "
                             f"{'met' if row['speedup_vs_nt'] >= 1 else 'NOT met'})")
            lines.append("; ".join(parts))
        best = min(presets, key=lambda r: r["seconds"], default=None)
        if best is None:
            continue
        goal = GOALS.get((case["network"], case["kind"]))
        speedup = best.get("speedup_vs_nt")
        parts = [f"{case['network']} {case['kind']}: structured {best['seconds']:.3f} s "
                 f"(budget {best['memory_budget_mib']:.0f} MiB)"]
        if speedup is not None:
            parts.append(f"{speedup:.2f}x neural-tangents" + (f" (goal >= {goal}x: {'met' if speedup >= goal else 'NOT met'})"
                                                               if goal else ""))
        parts.append(f"{best['roofline_fraction']:.0%} of roofline (goal >= {ROOFLINE_GOAL:.0%}: "
                     f"{'met' if best['roofline_fraction'] >= ROOFLINE_GOAL else 'NOT met'})")
        own = (case.get("neural_tangents") or {}).get("own_roofline_fraction")
        if own is not None:
            parts.append(f"neural-tangents at {own:.0%} of a roofline at its own GEMM rate")
        lines.append("; ".join(parts))
    return lines


def plot(results, path):
    """Bar chart of the time of every measurement (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = [], [], []
    palette = {"structured": "C0", "jacobian": "C1", "ntvp": "C2", "neural-tangents": "C3", "roofline": "C7"}
    for case in results:
        tag = f"{case['network']}/{case['kind']}"
        for row in case["rows"]:
            labels.append(f"{tag} {label(row)} {row['memory_budget_mib']:.0f}M")
            values.append(row["seconds_at_n"])
            colors.append(palette[row["implementation"]])
        if case.get("neural_tangents"):
            labels.append(f"{tag} neural-tangents")
            values.append(case["neural_tangents"]["seconds"])
            colors.append(palette["neural-tangents"])
        labels.append(f"{tag} roofline")
        values.append(case["roofline_seconds"])
        colors.append(palette["roofline"])
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(labels) + 1))
    ax.barh(range(len(labels)), values, color=colors)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"seconds for {results[0]['n']} x {results[0]['n']} inputs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rate = matmul_rate()
    results, cases = [], {}
    for name in args.networks:
        network, params, x1, x2 = make_case(name, args)
        cases[name] = {"layers": describe(network), "linear": linear_params(params), "x1": x1, "x2": x2,
                       "kernels": {}}
        for kind in args.kinds:
            gram, feats = kernel_flops(network, params, x1, kind, args.n, args.n, args.n * (1 if x2 is None else 2))
            print(f"{name} {kind}: {gram / 1e9:.1f} GFLOP of Grams + {feats / 1e9:.1f} GFLOP of features", flush=True)
            measured = our_timings(args, network, params, x1, x2, kind)
            for row, _ in measured:
                if "kernel" in row:
                    cases[name]["kernels"].setdefault(kind, row.pop("kernel"))
            reference = cases[name]["kernels"].get(kind)
            measured += user_timings(args, name, params, x1.shape[1:], x1, x2, kind, reference)
            results.append({"network": name, "kind": kind, "n": args.n, "gram_flops": gram, "feature_flops": feats,
                            "flops": gram + feats, "measured": measured})
    nt, nt_info, nt_reason = None, None, None
    if any(case["kernels"] for case in cases.values()):
        python, nt_reason = nt_environment_python(args)
    else:
        python, nt_reason = None, "the structured implementation was not run, so there is no kernel to compare with"
    with tempfile.TemporaryDirectory() as tmp:
        if python:
            write_cases(Path(tmp) / "cases.npz", cases)
            try:
                nt = NeuralTangents(python, Path(tmp) / "cases.npz")
            except RuntimeError as exc:
                nt_reason = str(exc)
        if nt:
            nt_info = dict(nt.info, matmul_flops_per_s=0.0)
            try:
                for case in results:
                    if case["kind"] in cases[case["network"]]["kernels"]:
                        case["nt_timing"] = RemoteTiming(nt, case["network"], case["kind"], args.long_run)
                        case["nt_check"] = case["nt_timing"].warmup()["max_rel_diff_vs_ours"]
            except RuntimeError as exc:
                nt, nt_info, nt_reason = None, None, str(exc)
                for case in results:
                    case.pop("nt_timing", None)
                    case.pop("nt_check", None)
        for round_ in range(args.repeats):
            print(f"timed round {round_ + 1} of {args.repeats}", flush=True)
            rate = max(rate, matmul_rate())
            if nt:
                nt_info["matmul_flops_per_s"] = max(nt_info["matmul_flops_per_s"], nt.ask(op="gemm")["flops_per_s"])
            for case in results:
                for timing in [t for _, t in case["measured"]] + [case.get("nt_timing")]:
                    if timing is not None and not timing.done:
                        timing.time()
        if nt:
            nt.close()
    finish(results, rate, nt_info and nt_info["matmul_flops_per_s"])
    text = "\n".join(environment_lines(rate, nt_info)) + "\n\n" + table(results, nt_reason)
    print()
    print(text)
    print()
    for line in verdicts(results):
        print(line)
    if nt_reason:
        print(f"\nNOTE: neural-tangents comparison skipped: {nt_reason}")
    record = {
        "command": shlex.join([sys.executable] + sys.argv),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment(), "matmul_flops_per_s": rate, "results": results,
        "neural_tangents": nt_info, "neural_tangents_skipped": nt_reason, "verdicts": verdicts(results),
    }
    (args.out / "results.json").write_text(json.dumps(record, indent=2))
    (args.out / "table.md").write_text(text + "\n")
    plot(results, args.out / "times.png")
    print(f"wrote {args.out}/results.json, table.md, times.png")


if __name__ == "__main__":
    main()
