"""Probes that keep a sum: affine layers after the last spiking layer run once.

(Every layer is named: Keras's automatic names count the layers made so far in
the process, and other tests' initial voltages depend on their layers' names.)

The sums must equal those of the plain path (every step recorded, then
summed) up to float32 rounding, on networks the optimisation was not written
for: merges with a constant branch, batch normalisation, pooling, a softmax
that stops it, hidden probes, several chunks of steps.
"""

import keras
import numpy as np
import pytest

import snnify
from snnify import engine
from snnify.graph import InputNode, needed_nodes


def init(seed):
    return keras.initializers.GlorotUniform(seed=seed)


def tutorial_like():
    """conv -> conv -> flatten -> dense (the tutorial's network)."""
    inp = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(
        4, 3, activation="relu", kernel_initializer=init(0), name="conv0"
    )(inp)
    x = keras.layers.Conv2D(
        6, 3, strides=2, activation="relu", kernel_initializer=init(1), name="conv1"
    )(x)
    out = keras.layers.Dense(
        5, kernel_initializer=init(2), bias_initializer="ones", name="dense"
    )(keras.layers.Flatten(name="flatten")(x))
    return keras.Model(inp, out, name="tutorial_like"), inp, out


def branches():
    """Spikes -> pooling, batch norm, dense, added to a branch of the constant input."""
    inp = keras.Input((8, 8, 2), name="pixels")
    x = keras.layers.Conv2D(
        4, 3, activation="relu", kernel_initializer=init(3), name="conv0"
    )(inp)
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    spikes = keras.layers.Dense(3, kernel_initializer=init(4), name="dense")(
        keras.layers.Flatten(name="flatten")(x)
    )
    constant = keras.layers.Dense(3, kernel_initializer=init(5), name="dense_input")(
        keras.layers.GlobalAveragePooling2D(name="mean_pixel")(inp)
    )
    out = keras.layers.Add(name="add")([spikes, constant])
    model = keras.Model(inp, out, name="branches")
    norm = next(
        la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)
    )
    rng = np.random.default_rng(7)
    norm.set_weights([rng.uniform(0.5, 2, 4).astype("float32") for _ in range(4)])
    return model, inp, out


def with_softmax():
    """The dense output followed by a softmax: not affine, so nothing runs once."""
    model, inp, out = tutorial_like()
    soft = keras.layers.Softmax(name="softmax")(model.output)
    return keras.Model(inp, soft, name="with_softmax"), inp, soft


def predict(model, inp, out, keep, n_steps, x, hidden=False):
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=100,
        synapse=0.005,
    )
    probe = converter.outputs[out]
    probe.keep = keep
    with converter.net:
        spikes = snnify.Probe(converter.layers[model.layers[1].output], keep=keep)
    with snnify.Simulator(converter.net, progress_bar=False, seed=0) as sim:
        data = sim.predict({converter.inputs[inp]: x}, n_steps=n_steps)
    nodes = [
        n for n in needed_nodes(converter.net.probes) if not isinstance(n, InputNode)
    ]
    tail = engine.affine_tail(nodes, converter.net.probes)
    return data[probe], data[spikes], tail


@pytest.mark.parametrize("network", [tutorial_like, branches, with_softmax])
@pytest.mark.parametrize("chunk_steps", [engine.MAX_CHUNK_STEPS, 7])
def test_sum_probe_matches_the_plain_path(network, chunk_steps, monkeypatch):
    monkeypatch.setattr(engine, "MAX_CHUNK_STEPS", chunk_steps)
    model, inp, out = network()
    channels = model.input_shape[-1]
    x = np.random.default_rng(1).uniform(0, 1, (5, 1, 64 * channels))
    n_steps = 30
    plain, plain_spikes, _ = predict(model, inp, out, "all", n_steps, x)
    summed, summed_spikes, tail = predict(model, inp, out, "sum", n_steps, x)

    assert isinstance(summed, engine.ProbeStats) and summed.max is None
    assert summed.n_steps == n_steps
    # the hidden layer's spikes are counted every step: exactly the same
    assert plain_spikes.max() > 0
    np.testing.assert_array_equal(summed_spikes.sum, plain_spikes.sum(axis=1))
    # the output: the same up to float32 rounding (measured: 1.5e-7 of the
    # largest sum)
    np.testing.assert_allclose(
        summed.sum, plain.sum(axis=1), rtol=2e-5, atol=2e-5 * np.abs(plain).max()
    )
    np.testing.assert_array_equal(
        snnify.decode(summed, "mean").argmax(-1), plain.mean(axis=1).argmax(-1)
    )
    # what runs once: the layers after the last spiking layer, unless a
    # non-affine layer follows them
    dense_layers = [la for la in model.layers if isinstance(la, keras.layers.Dense)]
    names = {name.split(".")[0] for name in tail}
    if network is with_softmax:
        assert not tail
    else:
        assert {la.name for la in dense_layers} <= names, tail
