"""Firing-rate regularised training, then spiking inference without scaling.

The tutorial's recipe on the bundled MNIST subset (10,000 training images):
train the tutorial network through the converter with an MSE loss pulling the
rates of both convolutional layers towards 250 Hz (loss weights 1e-3), then run
it with spiking neurons, no ``scale_firing_rates``, ``synapse=0.01`` and 30
steps. Reported on the full 10,000-image test set, against the non-spiking
accuracy of the same weights, for rectified linear neurons and for LIF neurons
(trained through SoftLIF, run as spiking LIF).

    KERAS_BACKEND=jax python benchmarks/bench_regularized.py [--epochs 10]
"""

import argparse
import time

import keras
import numpy as np

import snnify
from snnify.demo.datasets import load_mnist

NEURONS = {
    "relu": (None, snnify.RectifiedLinear(), snnify.SpikingRectifiedLinear()),
    "lif": (snnify.LIF(), snnify.LIFRate(), snnify.LIF()),
}


def tutorial_network():
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    conv0 = keras.layers.Conv2D(32, 3, activation="relu")(inp)
    conv1 = keras.layers.Conv2D(64, 3, strides=2, activation="relu")(conv0)
    dense = keras.layers.Dense(10)(keras.layers.Flatten()(conv1))
    return keras.Model(inp, dense), inp, conv0, conv1, dense


def train(kind, epochs, x, y, path):
    model, inp, conv0, conv1, dense = tutorial_network()
    train_neuron = NEURONS[kind][0]
    swap = {"relu": train_neuron} if train_neuron else None
    converter = snnify.Converter(model, swap_activations=swap)
    with converter.net:
        probes = [
            snnify.Probe(converter.layers[conv0]),
            snnify.Probe(converter.layers[conv1]),
        ]
    out = converter.outputs[dense]
    with snnify.Simulator(converter.net, minibatch_size=200) as sim:
        sim.compile(
            optimizer=keras.optimizers.RMSprop(0.001),
            loss={out: keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
            | {p: keras.losses.mean_squared_error for p in probes},
            loss_weights={out: 1} | {p: 1e-3 for p in probes},
        )
        targets = {p: np.full((len(x), 1, p.size_in), 250, "float32") for p in probes}
        sim.fit({converter.inputs[inp]: x}, {out: y, **targets}, epochs=epochs)
        sim.save_params(path)
    return model, inp, conv0, dense


def evaluate(model, inp, conv0, dense, neuron, path, x, y, n_steps, synapse):
    converter = snnify.Converter(
        model, swap_activations={"relu": neuron}, synapse=synapse
    )
    with converter.net:
        rates = snnify.Probe(converter.layers[conv0], keep="stats")
        converter.outputs[dense].keep = "last"
    with snnify.Simulator(
        converter.net, minibatch_size=100, progress_bar=False, seed=0
    ) as sim:
        sim.load_params(path)
        data = sim.predict({converter.inputs[inp]: x}, n_steps=n_steps)
    accuracy = (data[converter.outputs[dense]][:, -1].argmax(-1) == y).mean()
    return accuracy, data[rates].mean.mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--neurons", nargs="+", default=["relu", "lif"])
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = load_mnist()
    x_train, x_test = x_train.reshape(-1, 1, 784), x_test.reshape(-1, 1, 784)
    rows = []
    for kind in args.neurons:
        start = time.time()
        model, inp, conv0, dense = train(
            kind, args.epochs, x_train, y_train.reshape(-1, 1, 1), f"regularized_{kind}"
        )
        trained = time.time() - start
        _, rate_neuron, spiking_neuron = NEURONS[kind]
        rate = evaluate(
            model,
            inp,
            conv0,
            dense,
            rate_neuron,
            f"regularized_{kind}",
            x_test,
            y_test,
            1,
            None,
        )
        spiking = evaluate(
            model,
            inp,
            conv0,
            dense,
            spiking_neuron,
            f"regularized_{kind}",
            x_test,
            y_test,
            30,
            0.01,
        )
        rows.append((kind, trained, *rate, *spiking))
    print(
        "\n| neurons | training (s) | non-spiking accuracy | conv0 mean rate (Hz) | spiking accuracy (synapse 0.01, 30 steps) | conv0 mean rate, spiking (Hz) |"
    )
    print("|---|---|---|---|---|---|")
    for kind, seconds, rate_acc, rate_hz, spike_acc, spike_hz in rows:
        print(
            f"| {kind} | {seconds:.0f} | {100 * rate_acc:.2f} % | {rate_hz:.0f} | {100 * spike_acc:.2f} % | {spike_hz:.0f} |"
        )


if __name__ == "__main__":
    main()
