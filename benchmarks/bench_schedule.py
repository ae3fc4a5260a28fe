"""Step by step or layer by layer: two schedules of a feed-forward spiking network.

The engine runs a feed-forward network one time step at a time: every layer
of step ``t``, then every layer of step ``t + 1``. Without recurrence the same
spikes come out of a layer-by-layer schedule (as in SpikingJelly's multi-step
mode): the first spiking layer runs all the steps of a chunk, then the next
convolution runs once on the chunk's spikes of every step as one batch of
``chunk * batch`` images, then the next spiking layer runs all the steps, and
so on. This script measures whether the bigger convolutions pay for the
spike trains they store, in plain JAX with the shapes of the tutorial's
network (conv 3x3x32 on the constant image, integrate-and-fire neurons, conv
3x3x64 with stride 2, integrate-and-fire neurons, the read-out on the summed
spikes), random weights, batch 100, under the engine's XLA:CPU options.
Both schedules give identical outputs (checked).

A third variant keeps the step-by-step schedule but computes the first
spiking layer, whose current is constant, in closed form: an
integrate-and-fire neuron with constant current ``J`` (in thresholds per
step) and initial voltage ``v0 < 1`` has fired ``max(floor(v0 + t J), 0)``
spikes after ``t`` steps, so its spikes at step ``t`` need ``J`` and ``t``
only, not a voltage read and written at every step. In exact arithmetic the
spikes are the same; in float32 they can differ where ``v0 + t J`` falls
within rounding of an integer (the engine's sequential sums round at every
step), so the outputs are compared, not required equal.

    KERAS_BACKEND=jax python benchmarks/bench_schedule.py --steps 30 120 \\
        --chunks 2 5 10 30 --repeats 7

Prints, per step count and chunk, the medians of the three and of ``T``
non-spiking forward passes, and the medians of the per-repeat ratios.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from snnify.backend import XLA_CPU_OPTIONS

BATCH = 100
DIMENSIONS = ("NHWC", "HWIO", "NHWC")
GAIN = 0.3  # current per step, in thresholds, per unit of pre-activation


def conv(x, w, stride):
    return lax.conv_general_dilated(
        x, w, (stride, stride), "VALID", dimension_numbers=DIMENSIONS
    )


def if_step(v, current):
    """Integrate-and-fire, threshold 1, reset by subtraction: ``(v, J) -> (v, n)``."""
    v = v + current
    n = jnp.maximum(jnp.floor(v), 0.0)
    return v - n, n


def functions(weights, n_steps, chunk):
    w0, w1, w_out = weights

    def forward(x):
        h = jax.nn.relu(conv(jax.nn.relu(conv(x, w0, 1)), w1, 2))
        return h.reshape(BATCH, -1) @ w_out

    def forward_passes(x):  # n_steps passes that XLA cannot fold into one
        def body(total, i):
            return total + forward(x + i * 1e-7), None

        steps = jnp.arange(n_steps, dtype=jnp.float32)
        return lax.scan(body, jnp.zeros((BATCH, 10)), steps)[0]

    def initial(current0):
        v1 = jnp.full((BATCH, 12, 12, 64), 0.5)
        return jnp.full(current0.shape, 0.5), v1, jnp.zeros_like(v1)

    def step_by_step(x):
        current0 = GAIN * conv(x, w0, 1)  # constant: once, as the engine does

        def step(carry, _):
            v0, v1, total = carry
            v0, s0 = if_step(v0, current0)
            v1, s1 = if_step(v1, GAIN * conv(s0, w1, 2))
            return (v0, v1, total + s1), None

        (_, _, total), _ = lax.scan(step, initial(current0), None, length=n_steps)
        return total.reshape(BATCH, -1) @ w_out

    def closed_form_first_layer(x):
        current0 = GAIN * conv(x, w0, 1)

        def fired(t):  # spikes of the first layer after t steps, from v0 = 0.5
            return jnp.maximum(jnp.floor(0.5 + t * current0), 0.0)

        def step(carry, t):
            v1, total = carry
            v1, s1 = if_step(v1, GAIN * conv(fired(t) - fired(t - 1), w1, 2))
            return (v1, total + s1), None

        steps = jnp.arange(1, n_steps + 1, dtype=jnp.float32)
        (_, total), _ = lax.scan(step, initial(current0)[1:], steps)
        return total.reshape(BATCH, -1) @ w_out

    def layer_by_layer(x):
        current0 = GAIN * conv(x, w0, 1)

        def chunk_of_steps(carry, _):
            v0, v1, total = carry
            v0, s0 = lax.scan(lambda v, _: if_step(v, current0), v0, None, chunk)
            current1 = conv(s0.reshape(chunk * BATCH, 26, 26, 32), w1, 2)
            v1, s1 = lax.scan(
                if_step, v1, GAIN * current1.reshape(chunk, BATCH, 12, 12, 64)
            )
            return (v0, v1, total + s1.sum(0)), None

        carry = initial(current0)
        (_, _, total), _ = lax.scan(chunk_of_steps, carry, None, n_steps // chunk)
        return total.reshape(BATCH, -1) @ w_out

    options = {"compiler_options": XLA_CPU_OPTIONS}
    return {
        "forward passes": jax.jit(forward_passes, **options),
        "step by step": jax.jit(step_by_step, **options),
        "layer by layer": jax.jit(layer_by_layer, **options),
        "closed form": jax.jit(closed_form_first_layer, **options),
    }


def measure(n_steps, chunk, repeats, x, weights):
    fns = functions(weights, n_steps, chunk)
    outputs = {name: np.asarray(f(x)) for name, f in fns.items()}  # compiles
    difference = np.abs(outputs["step by step"] - outputs["layer by layer"]).max()
    assert difference == 0.0, f"the schedules differ by {difference}"
    closed = np.abs(outputs["step by step"] - outputs["closed form"]).max()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            start = time.perf_counter()
            f(x).block_until_ready()
            times[name].append(time.perf_counter() - start)
    times = {name: np.array(t) for name, t in times.items()}
    medians = " | ".join(f"{1000 * np.median(t):.0f}" for t in times.values())
    ratios = " | ".join(
        f"{np.median(times[a] / times[b]):.2f}"
        for a, b in [
            ("layer by layer", "step by step"),
            ("step by step", "forward passes"),
            ("closed form", "step by step"),
            ("closed form", "forward passes"),
        ]
    )
    print(f"| {n_steps} | {chunk} | {medians} | {ratios} | {closed:.1e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 120])
    parser.add_argument("--chunks", type=int, nargs="+", default=[2, 5, 10, 30])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (BATCH, 28, 28, 1)).astype("float32")
    weights = (
        rng.normal(0, 0.3, (3, 3, 1, 32)).astype("float32"),
        rng.normal(0, 0.06, (3, 3, 32, 64)).astype("float32"),
        rng.normal(0, 0.01, (12 * 12 * 64, 10)).astype("float32"),
    )
    print(
        "| steps | chunk | forward passes (ms) | step by step (ms) | layer by layer "
        "(ms) | closed form (ms) | layer by layer / step by step | step by step / "
        "forward passes | closed form / step by step | closed form / forward "
        "passes | largest output difference, closed form |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_steps in args.steps:
        for chunk in args.chunks:
            if n_steps % chunk == 0:
                measure(n_steps, chunk, args.repeats, x, weights)


if __name__ == "__main__":
    main()
