"""keras.applications networks: conversion time, exactness and 10 spiking steps.

MobileNetV2, ResNet50 and DenseNet121 with ``weights=None`` (random weights,
1000 classes) on 32x32x3 inputs, the smallest they allow. Each runs in a fresh
process (``fresh_process.py``) and reports

- ``layers``: the Keras layers of the model;
- ``convert, first``: the time of ``snnify.Converter(model)`` (the exact
  network), the first conversion of the process (it includes the one-time
  start-up of Keras's and the backend's operations);
- ``verify``: the largest difference of the network's rates from
  ``model.predict`` relative to the largest output (8 random images), and the
  time of that call (it compiles the rate computation);
- ``convert, second``: the time of converting again, with every ReLU (and
  ReLU6, for MobileNetV2) as ``IntegrateAndFire`` neurons,
  ``scale_firing_rates=100``;
- ``10 steps``: ``Simulator.predict`` of 16 random images for 10 steps: the
  first call (which compiles) and the median of 3 more;
- ``ANN x 10``: 10 times one compiled forward pass of the Keras model on the
  same 16 images (``snnify.backend.compile_function``), and the ratio of the
  compiled 10-step predict to it;
- ``peak``: the process's peak resident memory.

    KERAS_BACKEND=jax python benchmarks/bench_applications.py [--models MobileNetV2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import fresh_process

MODELS = ("MobileNetV2", "ResNet50", "DenseNet121")
STEPS, BATCH = 10, 16


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def child(name: str) -> dict:
    import keras
    import numpy as np

    import snnify
    from snnify.backend import compile_function

    model = getattr(keras.applications, name)(input_shape=(32, 32, 3), weights=None)
    converter, convert = timed(lambda: snnify.Converter(model))
    error, verify = timed(lambda: converter.verify(rtol=1e-4))
    swaps = {"relu": snnify.IntegrateAndFire()}
    if name == "MobileNetV2":
        swaps = {"relu6": snnify.IntegrateAndFire()}
    spiking, convert_spiking = timed(
        lambda: snnify.Converter(model, swap_activations=swaps, scale_firing_rates=100)
    )
    images = np.random.default_rng(0).uniform(0, 1, (BATCH, 32, 32, 3))
    images = images.astype("float32")
    output = spiking.outputs[model.output]
    with snnify.Simulator(spiking.net, progress_bar=False, seed=0) as sim:
        data, first = timed(lambda: sim.predict(images[:, None], n_steps=STEPS))
        runs = [timed(lambda: sim.predict(images[:, None], n_steps=STEPS))[1]
                for _ in range(3)]  # fmt: skip
    forward = compile_function(lambda x: model(x, training=False), model.variables)
    forward(images)
    passes = [timed(lambda: keras.ops.convert_to_numpy(forward(images)))[1]
              for _ in range(5)]  # fmt: skip
    result = data[output]
    return {
        "model": name,
        "layers": len(model.layers),
        "convert": convert,
        "verify_error": error,
        "verify": verify,
        "convert_spiking": convert_spiking,
        "first": first,
        "steps": statistics.median(runs),
        "ann": STEPS * statistics.median(passes),
        "finite": bool(np.isfinite(result).all()),
        "active": float(np.mean(result != 0)),
        "peak": fresh_process.peak_rss_bytes(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.name)), flush=True)
        return
    results = [
        fresh_process.run_child(__file__, args.backend, [name]) for name in args.models
    ]
    print(f"\nbackend {args.backend}, batch {BATCH}, {STEPS} steps\n")
    print(
        "| model | layers | convert, first (s) | verify: rel. error (time s) | "
        "convert, second (s) | 10 steps, first call (s) | 10 steps (s) | "
        "ANN x 10 (s) | ratio | peak (GB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        assert r["finite"], r
        print(
            f"| {r['model']} | {r['layers']} | {r['convert']:.1f} "
            f"| {r['verify_error']:.1e} ({r['verify']:.0f}) "
            f"| {r['convert_spiking']:.1f} | {r['first']:.1f} | {r['steps']:.2f} "
            f"| {r['ann']:.2f} | {r['steps'] / r['ann']:.2f} "
            f"| {r['peak'] / 1e9:.1f} |"
        )


if __name__ == "__main__":
    main()
