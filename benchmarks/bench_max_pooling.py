"""Max pooling in a spiking network: spike counts against average pooling.

A small CNN with max pooling (Conv2D 16 3x3 relu -> MaxPooling2D 2 -> Conv2D
32 3x3 relu -> MaxPooling2D 2 -> Dense 10) trained with ``model.fit`` for 3
epochs (Adam 1e-3, batch 100) on the bundled 10,000-image MNIST training
subset, tested on the bundled 10,000 test images. Rows:

- ``ANN``: the Keras model (max pooling);
- ``ANN, max -> avg``: the same weights with average pooling, not spiking
  (what ``max_to_avg_pool=True`` costs before any spike);
- ``IF calibrated``: ``IntegrateAndFire`` neurons, scales from
  :func:`snnify.calibrate` on 500 training images (99.9th percentile, one
  spike per step at it), output = mean over steps, at 8 and 30 steps, with
  snnify's max pooling of spike counts (the default), with
  ``max_to_avg_pool=True`` (calibrated on the average-pooling network), and
  with a gate that selects the input of largest count so far and passes all
  its spikes (``--gate``, the form closest to Rueckauer et al. 2017; defined
  here for the comparison);
- ``tutorial-style``: ``SpikingRectifiedLinear``, ``scale_firing_rates=20``,
  ``synapse=0.01``, 30 steps, output read at the last step (the NengoDL
  tutorial's configuration).

    KERAS_BACKEND=jax python benchmarks/bench_max_pooling.py [--test-images 10000]
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from keras import ops

import snnify
from snnify.demo.datasets import load_mnist
from snnify.rules import average_pooling_like
from snnify.spike_pooling import SpikeCountMaxPooling
from snnify.stats import measure

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
STEPS = [8, 30]


def network():
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    out = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    return keras.Model(inp, out, name="maxpool_cnn")


def with_average_pooling(model):
    """The model with every max pooling replaced by average pooling."""
    copy = keras.models.clone_model(
        model,
        clone_function=lambda layer: (
            average_pooling_like(layer)
            if average_pooling_like(layer) is not layer
            else layer.__class__.from_config(layer.get_config())
        ),
    )
    copy.set_weights(model.get_weights())
    return copy


class SelectedInputGate(SpikeCountMaxPooling):
    """The comparison gate: each window passes this step's value of the input
    whose count so far is the largest (ties: the largest value now), for
    non-overlapping 2x2 windows."""

    def compute(self, inputs, state, context):
        if not context.spiking:
            return super().compute(inputs, state, context)
        x = inputs[0]
        accumulated = state["accumulated"] + x
        best = self.call([accumulated], False)
        best = ops.repeat(ops.repeat(best, 2, axis=1), 2, axis=2)
        size = tuple(best.shape[1:3])
        x_, a_ = x[:, : size[0], : size[1]], accumulated[:, : size[0], : size[1]]
        selected = ops.where(a_ >= best, x_, -1e9)
        output = self.call([selected], False)
        return output, {"accumulated": accumulated, "maximum": state["maximum"]}


def accuracy(model, x, y) -> float:
    predicted = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(predicted, -1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test-images", type=int, default=10000)
    args = parser.parse_args()
    start = time.time()

    def log(message):
        print(f"{time.time() - start:6.0f} s  {message}", flush=True)

    (x_train, y_train), (x_test, y_test) = load_mnist()
    x_train = x_train[..., None].astype("float32") / 255
    x_test = x_test[: args.test_images, ..., None].astype("float32") / 255
    y_test = y_test[: args.test_images]
    keras.utils.set_random_seed(0)
    model = network()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LOSS)
    model.fit(x_train, y_train, batch_size=100, epochs=3, verbose=0)
    averaged = with_average_pooling(model)
    ann, ann_avg = accuracy(model, x_test, y_test), accuracy(averaged, x_test, y_test)
    log(f"trained: ANN {100 * ann:.2f} %, with average pooling {100 * ann_avg:.2f} %")
    rows = [("ANN (max pooling)", "-", ann), ("ANN, max -> avg pooling", "-", ann_avg)]
    calibration = x_train[:500]
    flat_test = x_test.reshape(len(x_test), 1, -1)
    if_neurons = {"relu": snnify.IntegrateAndFire()}

    def spiking(label, converter, steps, **options):
        t = time.time()
        stats = measure(converter, flat_test, y=y_test, steps=steps, **options)
        log(f"{label}: {time.time() - t:.0f} s")
        for n, s in stats.items():
            rows.append((label, n, s.accuracy))

    report = snnify.calibrate(model, calibration)
    converter = snnify.Converter(
        model, swap_activations=if_neurons, scale_firing_rates=report
    )
    spiking("IF calibrated, max pooling of spike counts", converter, STEPS)
    report_avg = snnify.calibrate(averaged, calibration)
    scales = {model.get_layer(c.name): c.scale for c in report_avg.layers}
    converter = snnify.Converter(
        model,
        swap_activations=if_neurons,
        scale_firing_rates=scales,
        max_to_avg_pool=True,
    )
    spiking("IF calibrated, max_to_avg_pool=True", converter, STEPS)
    converter = snnify.Converter(
        model, swap_activations=if_neurons, scale_firing_rates=report
    )
    for node in converter.net.nodes:
        if isinstance(node, SpikeCountMaxPooling):
            node.__class__ = SelectedInputGate
    spiking("IF calibrated, gate selecting the largest count", converter, STEPS)
    tutorial = {"swap_activations": {"relu": snnify.SpikingRectifiedLinear()}}
    tutorial.update(scale_firing_rates=20, synapse=0.01)
    converter = snnify.Converter(model, **tutorial)
    spiking("tutorial-style, max pooling of spike counts", converter, [30],
            decoding="last")  # fmt: skip
    converter = snnify.Converter(model, max_to_avg_pool=True, **tutorial)
    spiking("tutorial-style, max_to_avg_pool=True", converter, [30],
            decoding="last")  # fmt: skip
    print(f"\n{len(y_test)} test images\n")
    print("| configuration | steps | accuracy % | vs ANN (points) |")
    print("|---|---:|---:|---:|")
    for label, steps, acc in rows:
        print(f"| {label} | {steps} | {100 * acc:.2f} | {100 * (acc - ann):+.2f} |")


if __name__ == "__main__":
    main()
