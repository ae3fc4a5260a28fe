"""Where the time of one simulated step goes (JAX).

Times, at the simulator's batch (100 images), the compiled pieces of one step
of a network against the whole step measured by ``Simulator.predict``:

- each layer's matrix product or convolution alone (``jax.jit`` of the Keras
  layer on an input of its shape; inputs held constant are computed once and
  excluded),
- the rest of the step (neuron and synapse updates, pooling, the scan's
  bookkeeping): the whole step minus those products,
- recording a probe on the first convolutional layer at every step: the step
  with that probe minus the step without.

Usage::

    python benchmarks/profile_step.py              # the tutorial's network
    python benchmarks/profile_step.py --deep       # the deeper network of bench_engine
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_engine import _deep_model, _images, _tutorial_model  # noqa: E402

import snnify  # noqa: E402
from snnify.backend import compile_function  # noqa: E402

BATCH = 100


def median_time(fn, repeats=7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def step_time(model, x, n_steps, probe_first_layer=False) -> float:
    """Seconds per simulated step of BATCH images."""
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=20,
        synapse=0.01,
    )
    if probe_first_layer:
        first = next(layer for layer in model.layers if "conv" in layer.name)
        with converter.net:
            snnify.Probe(converter.layers[first.output])
    sim = snnify.Simulator(converter.net, progress_bar=False, seed=0)
    return median_time(lambda: sim.predict(x, n_steps=n_steps), 3) / n_steps


def layer_times(model, x) -> dict:
    """Seconds per call of each Dense/Conv layer after the first, at BATCH."""
    times = {}
    value = x[:, 0]
    for layer in model.layers[1:]:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and times:
            fn = compile_function(layer, layer.variables)
            times[layer.name] = median_time(
                lambda fn=fn, v=value: jax.block_until_ready(fn(v))
            )
        elif not times and isinstance(layer, keras.layers.Conv2D):
            times[layer.name] = 0.0  # constant input: computed once, not per step
        value = layer(value)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deep", action="store_true")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    model = (_deep_model if args.deep else _tutorial_model)()[0]
    x = _images(BATCH, "deep" if args.deep else "out")
    step = step_time(model, x, args.steps)
    products = layer_times(model, x)
    forward = compile_function(model, model.variables)
    dense = median_time(lambda: jax.block_until_ready(forward(x[:, 0])))
    print(f"{os.cpu_count()} CPUs, batch {BATCH}, JAX {jax.__version__}")
    print(f"non-spiking forward pass: {1e3 * dense:.2f} ms")
    print(
        f"spiking step:             {1e3 * step:.2f} ms ({step / dense:.2f} x forward)"
    )
    for name, t in products.items():
        note = " (computed once)" if t == 0 else ""
        print(f"  {name:22s} {1e3 * t:6.2f} ms  {100 * t / step:5.1f} %{note}")
    rest = step - sum(products.values())
    print(
        f"  {'rest of the step':22s} {1e3 * rest:6.2f} ms  {100 * rest / step:5.1f} %"
    )
    if not args.deep:
        probed = step_time(model, x, args.steps, probe_first_layer=True)
        print(
            f"recording conv0 every step: +{1e3 * (probed - step):.2f} ms per step "
            f"({probed / dense:.2f} x forward)"
        )


if __name__ == "__main__":
    main()
