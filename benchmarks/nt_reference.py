"""neural-tangents side of ``bench_ntk.py``: structured-derivative kernels of the exact same networks and inputs.

Runs inside its own environment (jax 0.4.25, numpy < 2, neural-tangents 0.6.5;
``bench_ntk.py --setup-nt-env PATH`` creates it), so it does not import
``sklearn_ntkal``: the networks are rebuilt here with plain ``jax.numpy`` from
the layer list and weights that ``bench_ntk.py`` writes to an ``.npz`` file.

The kernel is ``nt.empirical_ntk_fn(..., trace_axes=(), vmap_axes=0,
implementation=STRUCTURED_DERIVATIVES)`` (Novak, Sohl-Dickstein & Schoenholz,
ICML 2022) of ``f`` for the full kernel and of ``g = sum_c f_c / sqrt(C)`` for
the pseudo-NTK, jitted, with float32 matrix products at full precision like
``sklearn_ntkal`` (``jax_default_matmul_precision="highest"``: no TF32 on
GPUs, no change on CPUs).

It serves requests so that ``bench_ntk.py`` can interleave its timings with
ours (both then see the same load on a shared machine): after a line
``{"ready": ...}`` on stdout it reads one JSON request per line on stdin and
answers one JSON line each:

- ``{"op": "gemm"}``: float32 GEMM rate of a warm 4096 x 4096 ``jnp.dot``;
- ``{"op": "warmup", "case": c, "kind": k}``: first (compiling) call, and the
  max relative difference from the kernel ``sklearn_ntkal`` computed;
- ``{"op": "time", "case": c, "kind": k}``: seconds of one warm call.

Usage: ``python nt_reference.py CASES.npz``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import sys
import time
import types


def import_neural_tangents():
    """``(module, note)``: neural-tangents imported as installed, or without its TensorFlow-only subpackage.

    neural-tangents 0.6.5 imports ``neural_tangents.experimental`` (TensorFlow
    interop through jax2tf and tf2jax) from its ``__init__``. Where TensorFlow
    is not installed, that one subpackage, which the empirical kernels never
    use, is replaced by an empty module; the note says so.
    """
    try:
        return importlib.import_module("neural_tangents"), "imported as installed"
    except ImportError as exc:
        missing = getattr(exc, "name", "") or ""
        if missing.split(".")[0] not in ("tensorflow", "absl", "tf2jax", "tree"):
            raise
        for name in [m for m in sys.modules if m.startswith("neural_tangents")]:
            del sys.modules[name]
        sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")
        module = importlib.import_module("neural_tangents")
        return module, f"imported without its TensorFlow interop subpackage ({missing} is not installed)"


nt, NT_IMPORT_NOTE = import_neural_tangents()

import jax  # noqa: E402  (after neural-tangents, which decides how it is imported)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from timing import matmul_rate, seconds  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
_CONV_DIMS = ("NHWC", "HWIO", "NHWC")
_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "gelu": jax.nn.gelu}


def build_apply(layers):
    """``apply_fn(params, x)`` of a layer list; ``params`` holds ``(w, b)`` or ``(w,)`` per linear layer, in order."""

    def apply_fn(params, x):
        linear = iter(params)
        for layer in layers:
            op = layer["op"]
            if op in ("dense", "conv"):
                p = next(linear)
                if op == "dense":
                    x = x @ p[0]
                else:
                    x = jax.lax.conv_general_dilated(
                        x, p[0], tuple(layer["strides"]), layer["padding"], dimension_numbers=_CONV_DIMS
                    )
                if len(p) == 2:
                    x = x + p[1]
            elif op in _ACTIVATIONS:
                x = _ACTIVATIONS[op](x)
            elif op == "avgpool":
                (a, b), (n, h, w, c) = layer["window"], x.shape
                x = x[:, : h // a * a, : w // b * b].reshape(n, h // a, a, w // b, b, c).mean(axis=(2, 4))
            elif op == "flatten":
                x = x.reshape(x.shape[0], -1)
            else:
                raise ValueError(f"unknown layer {op!r}")
        return x

    return apply_fn


def kernel_fn(apply_fn, kind, n_outputs):
    """Jitted neural-tangents structured-derivatives kernel for ``kind`` ("full" or "pntk")."""
    if kind == "full":
        fn = apply_fn
    elif kind == "pntk":
        def fn(params, x):
            return apply_fn(params, x).sum(axis=-1) / math.sqrt(n_outputs)
    else:
        raise ValueError(f"kind must be 'full' or 'pntk', got {kind!r}")
    ntk = nt.empirical_ntk_fn(
        fn, trace_axes=(), vmap_axes=0, implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES
    )
    return jax.jit(lambda x1, x2, params: ntk(x1, x2, params))


class Cases:
    """The networks, weights, inputs and reference kernels of an npz file written by ``bench_ntk.py``."""

    def __init__(self, path):
        self.data = np.load(path)
        self.calls = {}

    def call(self, case, kind):
        """A function computing the kernel ``kind`` of ``case`` as a numpy array (built once)."""
        if (case, kind) not in self.calls:
            p = case + "_"
            layers = json.loads(str(self.data[p + "layers"]))
            n_linear = sum(layer["op"] in ("dense", "conv") for layer in layers)
            params = [
                tuple(jnp.asarray(self.data[f"{p}{name}{i}"]) for name in ("w", "b") if f"{p}{name}{i}" in self.data)
                for i in range(n_linear)
            ]
            x1 = jnp.asarray(self.data[p + "x1"])
            x2 = jnp.asarray(self.data[p + "x2"]) if p + "x2" in self.data else None
            apply_fn = build_apply(layers)
            fn = kernel_fn(apply_fn, kind, apply_fn(params, x1[:1]).shape[-1])
            self.calls[case, kind] = lambda: np.asarray(fn(x1, x2, params))
        return self.calls[case, kind]

    def warmup(self, case, kind):
        """First call (compilation included) and its max relative difference from ``sklearn_ntkal``'s kernel."""
        start = time.perf_counter()
        kernel = self.call(case, kind)()
        elapsed = time.perf_counter() - start
        ours = self.data[f"{case}_kernel_{kind}"]
        diff = float(np.abs(kernel - ours).max() / np.abs(ours).max())
        print(f"neural-tangents {case} {kind}: max rel diff vs sklearn_ntkal {diff:.2e}", file=sys.stderr, flush=True)
        return {"seconds": elapsed, "max_rel_diff_vs_ours": diff, "shape": list(kernel.shape)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", help=".npz file written by bench_ntk.py")
    args = parser.parse_args(argv)
    cases = Cases(args.cases)
    versions = {"neural_tangents": getattr(nt, "__version__", "?"), "jax": jax.__version__,
                "jaxlib": importlib.import_module("jaxlib").__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    print(json.dumps({"ready": True, "versions": versions, "import": NT_IMPORT_NOTE, "device": str(jax.devices()[0])}),
          flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "gemm":
            answer = {"flops_per_s": matmul_rate()}
        elif request["op"] == "warmup":
            answer = cases.warmup(request["case"], request["kind"])
        elif request["op"] == "time":
            answer = {"seconds": seconds(cases.call(request["case"], request["kind"]))}
        else:
            raise ValueError(f"unknown request {request!r}")
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
