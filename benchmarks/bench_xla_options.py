"""The engine's XLA:CPU options against others, for the scan and the forward pass.

For a network of ``bench_engine.py`` (``out``: the tutorial's, ``deep``: the
deeper one), 400 images in runs of 100, this compiles both the spiking
simulation (``Simulator.predict``, ``n_steps`` steps, as ``bench_engine.py``
configures it) and the non-spiking forward pass (``n_steps`` passes) under
each set of XLA:CPU options:

- ``engine``: ``snnify.backend.XLA_CPU_OPTIONS`` (matrix products through
  YNNPACK, copy insertion with region analysis);
- ``XLA defaults``: none (this jaxlib then hands whole chains of
  convolutions and products to YNNPACK as one subgraph);
- ``region analysis only`` and ``YNNPACK products only``: one option each.

Every variant is timed interleaved with the others, medians over
``--repeats``; ratios are to the fastest forward pass of the run.

Usage::

    python benchmarks/bench_xla_options.py deep 30 [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from bench_engine import _deep_model, _images, _tutorial_model  # noqa: E402

import snnify  # noqa: E402
from snnify import backend  # noqa: E402

ENGINE = dict(backend.XLA_CPU_OPTIONS)
REGION = "xla_cpu_copy_insertion_use_region_analysis"
YNN = "xla_cpu_experimental_ynn_fusion_type"
VARIANTS = {
    "engine": ENGINE,
    "XLA defaults": {},
    "region analysis only": {REGION: ENGINE[REGION]},
    "YNNPACK products only": {YNN: ENGINE[YNN]},
}


def compiled_under(options, model, x, n_steps):
    """``(predict, forward)`` callables compiled with the XLA ``options``."""
    backend.XLA_CPU_OPTIONS.clear()
    backend.XLA_CPU_OPTIONS.update(options)  # read when the simulator compiles
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=20,
        synapse=0.01,
    )
    with converter.net:
        snnify.configure_settings(stateful=False)
    sim = snnify.Simulator(converter.net, minibatch_size=10, progress_bar=False)
    forward = backend.compile_function(model, model.variables)
    batches = [x[i : i + 100, 0] for i in range(0, len(x), 100)]

    def predict():
        sim.predict(x, n_steps=n_steps)

    def forwards():
        for _ in range(n_steps):
            [np.asarray(forward(b)) for b in batches]

    predict()  # compile
    forwards()
    return predict, forwards


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=("out", "deep"))
    parser.add_argument("n_steps", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    model = (_deep_model if args.case == "deep" else _tutorial_model)()[0]
    x = _images(400, args.case)
    runs = {
        name: compiled_under(options, model, x, args.n_steps)
        for name, options in VARIANTS.items()
    }
    times = {name: ([], []) for name in runs}
    for _ in range(args.repeats):
        for name, functions in runs.items():
            for fn, kept in zip(functions, times[name]):
                start = time.perf_counter()
                fn()
                kept.append(time.perf_counter() - start)
    medians = {name: [np.median(t) for t in kept] for name, kept in times.items()}
    fastest = min(forward for _, forward in medians.values())
    print(f"{args.case}, {args.n_steps} steps, 400 images, fastest forward "
          f"{fastest:.2f} s\n")  # fmt: skip
    print("| XLA:CPU options | predict (s) | forward passes (s) | predict / fastest "
          "forward |\n|---|---:|---:|---:|")  # fmt: skip
    for name, (predict, forward) in medians.items():
        print(f"| {name} | {predict:.2f} | {forward:.2f} | {predict / fastest:.2f} |")


if __name__ == "__main__":
    main()
