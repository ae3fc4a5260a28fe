"""How often a layer's input spikes repeat: what delta updates could save.

A layer fed by spikes computes ``W s_t``; a delta update computes
``W s_{t-1} + W (s_t - s_{t-1})`` and skips the work where ``s_t`` equals
``s_{t-1}``. Dense kernels (XLA, oneDNN, cuDNN) skip nothing unless a whole
operand is unchanged, so this measures, for every spiking layer of the
tutorial's network (trained with the tutorial's recipe: RMSprop 1e-3, batch
200, 2 epochs on the bundled MNIST subset, seed 0), over 400 test images:

- ``spikes``: the share of neurons that spike in a step (the density of
  ``s_t``, what an event-driven kernel would touch);
- ``changed``: the share of neurons whose output differs from the previous
  step (the density of ``s_t - s_{t-1}``, what a delta kernel would touch);
- ``same example``: the share of (example, step) pairs whose whole spike
  vector equals the previous step's (a per-example skip);
- ``same batch``: the share of steps where the spike vectors of all 400
  examples are unchanged (the only skip a dense kernel on the batch can make).

Configurations: the tutorial's hand-tuned one (``SpikingRectifiedLinear``,
``scale_firing_rates=20``, ``synapse=0.01``) at 30 and 120 steps, and
``convert_for_steps`` for 8 steps (one spike per step).

    KERAS_BACKEND=jax python benchmarks/bench_delta.py
"""

from __future__ import annotations

import keras
import numpy as np

import snnify
from snnify.demo.datasets import load_mnist
from snnify.graph import NeuronsNode
from snnify.keras_graph import layer_of


def tutorial_network(x_train, y_train):
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    conv0 = keras.layers.Conv2D(32, 3, activation="relu", name="conv0")(inp)
    conv1 = keras.layers.Conv2D(64, 3, strides=2, activation="relu", name="conv1")(
        conv0
    )
    dense = keras.layers.Dense(10, name="dense")(keras.layers.Flatten()(conv1))
    model = keras.Model(inp, dense)
    model.compile(
        keras.optimizers.RMSprop(0.001),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=200, epochs=2, verbose=0)
    return model


def spike_statistics(converter, x, n_steps):
    """``{layer name: (spikes, changed, same example, same batch)}``."""
    probes = {}
    with converter.net:
        for tensor in converter.layers:
            node = converter.layers[tensor]
            if isinstance(node, NeuronsNode) and node.neuron_type.spiking:
                probes[layer_of(tensor).name] = snnify.Probe(node)
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        data = sim.predict(np.repeat(x[:, None], n_steps, 1), n_steps=n_steps)
    rows = {}
    for name, probe in probes.items():
        spikes = np.asarray(data[probe]) != 0  # (examples, steps, neurons)
        changed = spikes[:, 1:] != spikes[:, :-1]
        rows[name] = (
            spikes.mean(),
            changed.mean(),
            (~changed.any(axis=2)).mean(),
            (~changed.any(axis=(0, 2))).mean(),
        )
    return rows


def main():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    model = tutorial_network(x_train[..., None], y_train)
    x = x_test[:400, ..., None].astype("float32")
    configurations = [
        (
            f"scale 20, synapse 0.01, {steps} steps",
            snnify.Converter(
                model,
                swap_activations={"relu": snnify.SpikingRectifiedLinear()},
                scale_firing_rates=20,
                synapse=0.01,
            ),
            steps,
        )
        for steps in (30, 120)
    ]
    calibrated = snnify.convert_for_steps(
        model, x_train[:500, ..., None], n_steps=8, spikes_per_step=1
    )
    configurations.append(("convert_for_steps, 8 steps", calibrated, 8))
    print("| configuration | layer | spikes | changed | same example | same batch |")
    print("|---|---|---:|---:|---:|---:|")
    for label, converter, steps in configurations:
        for name, row in spike_statistics(converter, x, steps).items():
            cells = " | ".join(f"{100 * v:.1f} %" for v in row)
            print(f"| {label} | {name} | {cells} |")


if __name__ == "__main__":
    main()
