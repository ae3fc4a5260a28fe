"""Training throughput: rate-mode training of a converted network against model.fit.

The tutorial's network (Conv2D 32 3x3 relu -> Conv2D 64 3x3 stride 2 relu ->
Flatten -> Dense 10) is trained on the 10,000 bundled MNIST training images
with RMSprop(1e-3) and sparse categorical cross-entropy, twice per round:

- ``keras``: ``model.fit`` of the original Keras model;
- ``snnify``: ``sim.fit`` of the converted network (spiking rectified-linear
  neurons, trained through their rate functions, as the tutorial trains),
  inputs ``(n, 1, 784)`` and labels ``(n, 1, 1)``.

Both use the same backend, batch size and optimizer; the first epoch of each
(compilation) is not timed. Each round times one epoch of each, alternating;
the script prints the images per second of both, their ratio per round, and
the median ratio (target: >= 0.8).

Usage::

    python benchmarks/bench_train.py                      # jax, batch 200
    python benchmarks/bench_train.py --backend all --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import fresh_process

BACKENDS = ("jax", "tensorflow", "torch")


def _model():
    import keras

    def init(i):
        return keras.initializers.GlorotUniform(seed=i)

    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu", kernel_initializer=init(0))(inp)
    x = keras.layers.Conv2D(
        64, 3, strides=2, activation="relu", kernel_initializer=init(1)
    )(x)
    out = keras.layers.Dense(10, kernel_initializer=init(2))(keras.layers.Flatten()(x))
    return keras.Model(inp, out), out


def child(args) -> dict:
    """Measure both trainings in this (fresh) process."""
    import keras
    import numpy as np

    import snnify
    from snnify.demo.datasets import load_mnist

    (x, y), _ = load_mnist(verbose=False)
    x = (x.astype("float32") / 255.0)[..., None]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    model, out = _model()
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss=loss)

    converter = snnify.Converter(
        _model()[0], swap_activations={"relu": snnify.SpikingRectifiedLinear()}
    )
    output = converter.outputs[converter.model.outputs[0]]
    sim = snnify.Simulator(converter.net, minibatch_size=args.batch, progress_bar=False)
    sim.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss={output: loss})
    x_sim = {converter.inputs[converter.model.inputs[0]]: x.reshape(len(x), 1, -1)}
    y_sim = {output: y.reshape(len(y), 1, 1)}

    def keras_epoch():
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)

    def snnify_epoch():
        sim.fit(x_sim, y_sim, epochs=1, verbose=0)

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    keras_epoch(), snnify_epoch()  # compile
    rounds = []
    for _ in range(args.rounds):
        k, s = timed(keras_epoch), timed(snnify_epoch)
        rounds.append({"keras": len(x) / k, "snnify": len(x) / s})
    ratios = [r["snnify"] / r["keras"] for r in rounds]
    return {
        "backend": keras.backend.backend(),
        "batch": args.batch,
        "keras_images_per_s": float(np.median([r["keras"] for r in rounds])),
        "snnify_images_per_s": float(np.median([r["snnify"] for r in rounds])),
        "ratios": ratios,
        "ratio": float(np.median(ratios)),
    }


def run_child(backend: str, args) -> dict:
    options = ["--batch", args.batch, "--rounds", args.rounds]
    return fresh_process.run_child(__file__, backend, options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="jax", choices=(*BACKENDS, "all"))
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    print(f"{os.cpu_count()} CPUs; 10,000 images, batch {args.batch}, RMSprop(1e-3)")
    print("| backend | model.fit (images/s) | sim.fit (images/s) | ratio (median) |")
    print("|---|---|---|---|")
    results = []
    for backend in BACKENDS if args.backend == "all" else (args.backend,):
        r = run_child(backend, args)
        results.append(r)
        print(
            f"| {backend} | {r['keras_images_per_s']:.0f} "
            f"| {r['snnify_images_per_s']:.0f} | **{r['ratio']:.2f}** |",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
