"""A convolution step by step, or once over all steps (layer by layer)?

The engine runs the whole network one step at a time (a scan over steps). A
feed-forward network could instead run layer by layer: a layer's currents for
all steps in one call, with the steps folded into the batch, then its neurons
over the steps, then the next layer. This times what that would change for
the convolutions that run every step (``bench_conv_routes.py``'s shapes,
batch 100, spike-like inputs, ``--steps`` steps), on JAX with the engine's
XLA:CPU options:

- ``scan``: one convolution per step inside ``lax.scan``, as the engine runs;
- ``over steps``: one convolution of ``steps * batch`` images.

Both write every step's output. Prints the medians, interleaved, and the
ratio measured in the same run.

Usage::

    python benchmarks/bench_over_steps.py [--steps 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from bench_conv_routes import DIMENSIONS, SHAPES  # noqa: E402
from jax import lax  # noqa: E402

from snnify.backend import XLA_CPU_OPTIONS  # noqa: E402


def conv(x, w, stride, padding):
    return lax.conv_general_dilated(
        x, w, (stride,) * 2, padding, dimension_numbers=DIMENSIONS
    )


def scan(xs, w, stride, padding):
    return lax.scan(lambda c, x: (c, conv(x, w, stride, padding)), 0, xs)[1]


def over_steps(xs, w, stride, padding):
    y = conv(xs.reshape(-1, *xs.shape[2:]), w, stride, padding)
    return y.reshape(*xs.shape[:2], *y.shape[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, batch {args.batch}, "
          f"{args.steps} steps")  # fmt: skip
    print("\n| convolution | scan (s) | over steps (s) | over steps / scan |")
    print("|---|---:|---:|---:|")
    for name, height, width, c_in, c_out, stride, padding in SHAPES:
        shape = (args.steps, args.batch, height, width, c_in)
        xs = (rng.random(shape) < 0.1).astype("float32")
        w = rng.normal(size=(3, 3, c_in, c_out)).astype("float32")
        functions = {
            route: jax.jit(f, static_argnums=(2, 3), compiler_options=XLA_CPU_OPTIONS)
            for route, f in (("scan", scan), ("over steps", over_steps))
        }
        outputs = [np.asarray(f(xs, w, stride, padding)) for f in functions.values()]
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
        times = {route: [] for route in functions}
        for _ in range(args.repeats):
            for route, f in functions.items():
                start = time.perf_counter()
                f(xs, w, stride, padding).block_until_ready()
                times[route].append(time.perf_counter() - start)
        scan_s, over_s = (np.median(times[r]) for r in functions)
        print(f"| {name} | {scan_s:.3f} | {over_s:.3f} | {over_s / scan_s:.2f} |")


if __name__ == "__main__":
    main()
