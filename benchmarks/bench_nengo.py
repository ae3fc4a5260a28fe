"""The tutorial's ten configurations, timed as NengoDL's were on this machine.

Each configuration of the tutorial (``snnify.demo.TUTORIAL_CONFIGURATIONS``,
without the regularised ones) converts the tutorial's network, probes the
output and the first convolutional layer at every step (as the tutorial does),
creates a ``Simulator`` and predicts the first 400 MNIST test images. The time
counted is what a user waits for: conversion, simulator creation, compilation
and ``predict``, in a fresh process per batch setting.

Batch settings: ``minibatch_size=10`` as in the tutorial (the simulator then
runs 100 images at once, a multiple of 10), and 20, 50 and 400 images at once
(``snnify.simulator.MAX_BATCH``).

NengoDL 3.6.0's figures on this machine (tutorial settings, minibatch 10) are
printed beside ours where they were measured one by one, and their sum for the
ten configurations (586 s).

Usage::

    python benchmarks/bench_nengo.py                     # jax
    python benchmarks/bench_nengo.py --backend tensorflow --max-batch 100
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import fresh_process

BACKENDS = ("jax", "tensorflow", "torch")
N_IMAGES = 400
# seconds, NengoDL 3.6.0 on this machine, by configuration name
NENGO_DL = {
    "rate neurons": 11.1,
    "spiking, 10 steps": 11.6,
    "spiking, 50 steps": 51.8,
    "spiking, synapse 0.01": 142.6,
    "spiking, scale 20": 33.2,
}
NENGO_DL_TOTAL = 586.0


def child(args) -> dict:
    import keras
    import numpy as np

    import snnify
    from snnify import demo, simulator
    from snnify.demo import run, tutorial
    from snnify.demo.datasets import load_mnist

    simulator.MAX_BATCH = args.max_batch
    keras.utils.set_random_seed(0)
    model, tensors = tutorial.build_model()
    _, (x_test, _) = load_mnist(verbose=False)
    x = (x_test[:N_IMAGES].astype("float32") / 255.0).reshape(N_IMAGES, 1, -1)
    times = {}
    for configuration in demo.TUTORIAL_CONFIGURATIONS[:10]:
        start = time.perf_counter()
        converter = run.converter_for(model, configuration)
        with converter.net:
            conv0 = snnify.Probe(converter.layers[tensors["conv0"]])
        with snnify.Simulator(
            converter.net, minibatch_size=10, progress_bar=False, seed=0
        ) as sim:
            data = sim.predict(x, n_steps=configuration.n_steps)
        times[configuration.name] = time.perf_counter() - start
        assert data[conv0].shape == (N_IMAGES, configuration.n_steps, 26 * 26 * 32)
        del data
    return {
        "backend": keras.backend.backend(),
        "max_batch": args.max_batch,
        "batch": simulator.examples_per_run(N_IMAGES, minibatch_size=10),
        "times": times,
        "total": float(np.sum(list(times.values()))),
    }


def run_child(backend: str, max_batch: int) -> dict:
    return fresh_process.run_child(__file__, backend, ["--max-batch", max_batch])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="jax", choices=(*BACKENDS, "all"))
    parser.add_argument(
        "--max-batch",
        type=int,
        nargs="+",
        default=[100, 20, 50, 400],
        help="images simulated at once (100: what minibatch_size=10 gives)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.max_batch = args.max_batch[0]
        print(json.dumps(child(args)))
        return
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    results = [run_child(b, m) for b in backends for m in args.max_batch]
    names = list(results[0]["times"])
    header = " | ".join(f"{r['backend']}, {r['batch']} at once (s)" for r in results)
    print(f"{os.cpu_count()} CPUs; {N_IMAGES} images, probes on output and conv0")
    print(f"| configuration | NengoDL (s) | {header} |")
    print("|---|---|" + "---|" * len(results))
    for name in names:
        nengo = f"{NENGO_DL[name]:.1f}" if name in NENGO_DL else ""
        ours = " | ".join(f"{r['times'][name]:.1f}" for r in results)
        print(f"| {name} | {nengo} | {ours} |")
    totals = " | ".join(f"**{r['total']:.1f}**" for r in results)
    print(f"| all ten | {NENGO_DL_TOTAL:.0f} | {totals} |")
    speedups = " | ".join(f"{NENGO_DL_TOTAL / r['total']:.1f}x" for r in results)
    print(f"| NengoDL / ours | | {speedups} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
