"""XLA's float32 rates for the primitives that bound the kernel benchmark, on plain JAX (any version).

Prints GFLOP/s, best of ``--repeats`` warm calls, for

- ``gemm 4096``: a 4096 x 4096 by 4096 x 4096 ``jnp.dot`` (the roofline's rate
  in ``bench_ntk.py``);
- ``gemm k=512``: (10 000 x 512) by (512 x 10 000), the shape of the MLP's
  cotangent Grams at n = 1000 and 10 outputs;
- ``conv 3x3``: a 3 x 3 SAME convolution of ``--batch`` 14 x 14 x 64 inputs to
  32 channels, the shape of the CNN's backward passes through its second
  convolution (one per sample and output direction).

Run it with the Python of each environment to compare XLA versions on one
machine, e.g. ours against neural-tangents':

    python benchmarks/xla_rates.py
    ~/nt-env/bin/python benchmarks/xla_rates.py
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from jax import lax

from timing import matmul_rate, seconds

HIGHEST = lax.Precision.HIGHEST


def rate(fn, args, flops, repeats):
    """GFLOP/s of the jitted ``fn(*args)``, best of ``repeats`` calls after a warm-up."""
    jitted = jax.jit(fn)
    jitted(*args).block_until_ready()
    return flops / min(seconds(lambda: jitted(*args).block_until_ready()) for _ in range(repeats)) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5000, help="inputs of the convolution (default 5000)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    tall = [jax.random.normal(k, (10_000, 512), jnp.float32) for k in keys[:2]]
    images = jax.random.normal(keys[2], (args.batch, 14, 14, 64), jnp.float32)
    kernel = jax.random.normal(keys[3], (3, 3, 64, 32), jnp.float32)

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=HIGHEST)

    rates = {
        "gemm 4096": matmul_rate(repeats=args.repeats) / 1e9,
        "gemm k=512": rate(lambda a, b: jnp.dot(a, b.T, precision=HIGHEST), tall, 2 * 10_000**2 * 512, args.repeats),
        "conv 3x3": rate(conv, (images, kernel), 2 * args.batch * 14 * 14 * 9 * 64 * 32, args.repeats),
    }
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.platform} ({device.device_kind}): "
          + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in rates.items()))


if __name__ == "__main__":
    main()
