"""Routes to a faster convolution on JAX's CPU backend, on the engine's shapes.

The convolutions between spiking layers are most of a spiking step (the first
one runs once, before the scan), so the engine is as fast as the convolution
kernel XLA:CPU runs. This times one convolution plus ReLU, ``jax.jit``
compiled, for each convolution of the benchmark networks that runs every step
(``bench_engine.py``'s tutorial network and deeper network, batch 100, 10 %
of the inputs 1 as with spikes), through every route this JAX offers:

- ``engine``: the engine's XLA:CPU options (``snnify.backend.XLA_CPU_OPTIONS``:
  XLA's own convolution, matrix products through YNNPACK);
- ``ynnpack conv``: YNNPACK's convolution (``LIBRARY_FUSION_TYPE_INDIVIDUAL_
  CONVOLUTION``);
- ``onednn``: XLA's oneDNN options (``xla_cpu_use_onednn``, its oneDNN custom
  calls and oneDNN fusions of convolutions);
- ``im2col + dot``: the convolution written as image patches times a matrix
  (``jax.lax.conv_general_dilated_patches``), the product through YNNPACK;
- ``bfloat16``: inputs and weights in bfloat16 (this CPU has AVX512-BF16),
  sums in float32, with the engine's options. Spikes are exact in bfloat16,
  weights are not (its "max difference" says how far that moves outputs).

Prints the median time of each route, its ratio to ``engine`` measured in the
same run (interleaved), and its largest difference from ``engine``.

Usage::

    python benchmarks/bench_conv_routes.py [--batch 100] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from snnify.backend import XLA_CPU_OPTIONS  # noqa: E402

# (name, height, width, channels in, channels out, stride, padding)
SHAPES = [
    ("tutorial conv1", 26, 26, 32, 64, 2, "VALID"),
    ("deeper conv1", 32, 32, 32, 32, 1, "SAME"),
    ("deeper conv2", 16, 16, 32, 64, 1, "SAME"),
    ("deeper conv3", 16, 16, 64, 64, 1, "SAME"),
]
YNN = "xla_cpu_experimental_ynn_fusion_type"
ROUTES = {
    "engine": ("conv", XLA_CPU_OPTIONS),
    "ynnpack conv": ("conv", {YNN: "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}),
    "onednn": (
        "conv",
        {
            "xla_cpu_use_onednn": True,
            "xla_cpu_experimental_onednn_custom_call": True,
            "xla_cpu_experimental_onednn_fusion_type": (
                "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
            ),
        },
    ),
    "im2col + dot": ("im2col", XLA_CPU_OPTIONS),
    "bfloat16": ("bfloat16", XLA_CPU_OPTIONS),
}
DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv(x, w, stride, padding):
    y = lax.conv_general_dilated(
        x, w, (stride,) * 2, padding, dimension_numbers=DIMENSIONS
    )
    return jax.nn.relu(y)


def bfloat16(x, w, stride, padding):
    y = lax.conv_general_dilated(
        x.astype("bfloat16"), w.astype("bfloat16"), (stride,) * 2, padding,
        dimension_numbers=DIMENSIONS, preferred_element_type="float32",
    )  # fmt: skip
    return jax.nn.relu(y)


def im2col(x, w, stride, padding):
    patches = lax.conv_general_dilated_patches(
        x, w.shape[:2], (stride,) * 2, padding, dimension_numbers=DIMENSIONS
    )  # channels ordered (in, kernel row, kernel column)
    kh, kw, c_in, c_out = w.shape
    matrix = w.transpose(2, 0, 1, 3).reshape(c_in * kh * kw, c_out)
    return jax.nn.relu(patches @ matrix)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, batch {args.batch}")
    print("\n| convolution | route | median (ms) | / engine | max difference |")
    print("|---|---|---:|---:|---:|")
    for name, height, width, c_in, c_out, stride, padding in SHAPES:
        x = (rng.random((args.batch, height, width, c_in)) < 0.1).astype("float32")
        w = rng.normal(size=(3, 3, c_in, c_out)).astype("float32")
        functions = {
            route: jax.jit(
                {"conv": conv, "im2col": im2col, "bfloat16": bfloat16}[kind],
                static_argnums=(2, 3),
                compiler_options=options,
            )
            for route, (kind, options) in ROUTES.items()
        }
        outputs = {
            r: np.asarray(f(x, w, stride, padding)) for r, f in functions.items()
        }
        times = {route: [] for route in functions}
        for _ in range(args.repeats):
            for route, f in functions.items():
                start = time.perf_counter()
                for _ in range(5):
                    y = f(x, w, stride, padding)
                y.block_until_ready()
                times[route].append((time.perf_counter() - start) / 5)
        engine = np.median(times["engine"])
        for route, t in times.items():
            difference = np.abs(outputs[route] - outputs["engine"]).max()
            print(
                f"| {name} | {route} | {1e3 * np.median(t):.2f} "
                f"| {np.median(t) / engine:.2f} | {difference:.0e} |"
            )


if __name__ == "__main__":
    main()
