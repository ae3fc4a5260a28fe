"""TensorFlow: the engine's scan compiled by XLA against a plain graph (oneDNN).

The simulator compiles its scan on TensorFlow with ``tf.function(...,
jit_compile=True)`` (XLA). Without XLA, a ``tf.function`` runs the
convolutions with oneDNN, which is faster than XLA's on this CPU for a
forward pass. This times ``predict`` both ways, interleaved, against 30
non-XLA forward passes (bench_engine.py's networks and data, 400 images,
batch 100, only the output probed).

Usage::

    KERAS_BACKEND=tensorflow python benchmarks/bench_tf_scan.py out 30 3
    KERAS_BACKEND=tensorflow python benchmarks/bench_tf_scan.py deep 30 3
"""

import json
import sys
import time

import bench_engine as be
import numpy as np
import tensorflow as tf

import snnify
from snnify import prediction


def simulator_compiled_with(model, dense, x, steps, jit_compile: bool):
    def compile_function(fn, variables, compiled=True, **options):
        return tf.function(fn, jit_compile=jit_compile, reduce_retracing=True)

    engine_compiler = prediction.compile_function
    prediction.compile_function = compile_function
    try:
        converter = snnify.Converter(
            model,
            swap_activations={"relu": snnify.SpikingRectifiedLinear()},
            scale_firing_rates=20,
            synapse=0.01,
        )
        sim = snnify.Simulator(
            converter.net, minibatch_size=10, progress_bar=False, seed=0
        )
        sim.predict(x[:100], n_steps=steps)  # compiles
    finally:
        prediction.compile_function = engine_compiler
    return sim, converter.outputs[dense]


def main():
    case, steps, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    model, _, dense = (be._deep_model if case == "deep" else be._tutorial_model)()
    x = be._images(400, case)
    sims = {
        jit: simulator_compiled_with(model, dense, x, steps, jit)
        for jit in (True, False)
    }
    forward = tf.function(model)
    batches = [x[i : i + 100, 0] for i in range(0, len(x), 100)]

    def dense_pass():
        for b in batches:
            forward(b).numpy()

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    dense_pass()
    times = {True: [], False: [], "forward": []}
    outputs = {}
    for _ in range(repeats):
        times["forward"].append(steps * timed(dense_pass))
        for jit, (sim, probe) in sims.items():
            start = time.perf_counter()
            outputs[jit] = sim.predict(x, n_steps=steps)[probe]
            times[jit].append(time.perf_counter() - start)
    ratios = np.array(times[False]) / np.array(times[True])
    print(
        json.dumps(
            {
                "case": case,
                "steps": steps,
                "xla_s": float(np.median(times[True])),
                "graph_s": float(np.median(times[False])),
                "forward_s": float(np.median(times["forward"])),
                "graph_over_xla": float(np.median(ratios)),
                "max_difference": float(np.abs(outputs[True] - outputs[False]).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
