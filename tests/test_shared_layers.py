"""Layers called more than once (weight sharing): calibration, search, saving.

A Siamese network applies one encoder to two inputs. Each call of a shared
layer has its own neurons; the calibration gives the layer one scale, taken
from the activations of all its calls, and a saved network keeps each call's
neurons.
"""

import os

import keras
import numpy as np
import pytest

import snnify

DT = 0.001


def siamese(nested: bool):
    """Two inputs through one encoder (a nested Sequential or the same two
    Dense layers called twice), subtracted, then a linear output; weights
    from NumPy, the same on every backend."""
    first = keras.layers.Dense(16, activation="relu", name="first")
    second = keras.layers.Dense(8, activation="relu", name="second")
    a, b = keras.Input((32,), name="a"), keras.Input((32,), name="b")
    if nested:
        encoder = keras.Sequential([first, second], name="encoder")
        ya, yb = encoder(a), encoder(b)
    else:
        ya, yb = second(first(a)), second(first(b))
    out = keras.layers.Dense(2, name="out")(keras.layers.Subtract()([ya, yb]))
    model = keras.Model([a, b], out)
    rng = np.random.default_rng(1)
    for layer in (first, second, model.get_layer("out")):
        fan_in, units = layer.kernel.shape
        kernel = rng.normal(0, np.sqrt(2 / fan_in), (fan_in, units))
        bias = rng.normal(0, 0.1, units)
        layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    return model, first, second, (ya, yb)


def examples(n=64):
    rng = np.random.default_rng(0)
    return {
        "a": rng.uniform(0, 1, (n, 32)).astype("float32"),
        "b": rng.uniform(0, 1, (n, 32)).astype("float32"),
    }


def spiking_output(converter, x, n_steps):
    model = converter.model
    inputs = {
        converter.inputs[model.inputs[0]]: np.repeat(x["a"][:, None], n_steps, 1),
        converter.inputs[model.inputs[1]]: np.repeat(x["b"][:, None], n_steps, 1),
    }
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        return sim.predict(inputs)[next(iter(converter.outputs.values()))]


@pytest.mark.parametrize("nested", [False, True], ids=["layers", "nested_model"])
def test_a_shared_layer_takes_one_scale_from_all_its_calls(nested):
    model, first, second, _ = siamese(nested)
    x = examples()
    report = snnify.calibrate(model, x)
    # by hand: the 99.9th percentile of the positive activations of both calls
    calls = np.concatenate([keras.ops.convert_to_numpy(first(x[k])) for k in "ab"])
    reference = np.percentile(calls[calls > 0], 99.9)
    assert report[first] == pytest.approx(1 / (reference * DT), rel=1e-5)
    assert report.layer(first).size == 2 * 16  # the neurons of both calls
    assert [c.name for c in report.layers] == ["first", "second"]

    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=report,
    )
    for layer in (first, second):
        nodes = converter.layers.all(layer)
        assert len(nodes) == 2
        assert all(node.scale == report[layer] for node in nodes)
    with pytest.raises(KeyError, match="is not among the layers"):
        converter.layers.all(keras.layers.Dense(2))


def copies(model, first, second):
    """The network of ``siamese`` with a copy of the encoder for each input."""

    def copy(layer):
        twin = keras.layers.Dense(layer.units, activation="relu")
        twin.build((None, layer.kernel.shape[0]))
        twin.set_weights(layer.get_weights())
        return twin

    a, b = keras.Input((32,), name="a"), keras.Input((32,), name="b")
    ya, yb = copy(second)(copy(first)(a)), copy(second)(copy(first)(b))
    out = keras.layers.Dense(2)
    y = out(keras.layers.Subtract()([ya, yb]))
    out.set_weights(model.get_layer("out").get_weights())
    return keras.Model([a, b], y)


def rms_error(converter, x, expected, n_steps=8):
    decoded = spiking_output(converter, x, n_steps).mean(axis=1)
    return float(np.sqrt(np.mean((decoded - expected) ** 2) / np.mean(expected**2)))


@pytest.mark.parametrize("nested", [False, True], ids=["layers", "nested_model"])
def test_auto_scales_and_convert_for_steps_reach_every_call(nested):
    # before: the calls inside a nested model called twice were not
    # calibrated (scale 1: no spikes, the output 0), and shared layers raised
    model, first, second, _ = siamese(nested)
    twins = copies(model, first, second)
    x = examples()
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(twins.predict(x, verbose=0), expected, atol=1e-5)

    def auto(model):
        return snnify.Converter(
            model,
            swap_activations={"relu": snnify.IntegrateAndFire()},
            scale_firing_rates="auto",
            calibration_data=x,
        )

    def for_steps(model):
        return snnify.convert_for_steps(model, x, n_steps=8)

    for convert in (auto, for_steps):
        converter = convert(model)
        for layer in (first, second):
            scales = [np.asarray(n.scale) for n in converter.layers.all(layer)]
            assert len(scales) == 2 and np.array_equal(scales[0], scales[1])
        # measured (relative RMS error at 8 steps, auto / convert_for_steps):
        # shared 0.190 / 0.100, copies 0.150 / 0.091 (each copy's scales
        # fitted to its own calls, the shared layer's to both); no spikes: 1.0
        error = rms_error(converter, x, expected)
        assert error < min(1.5 * rms_error(convert(twins), x, expected), 0.3)
    assert [c.name for c in converter.calibration.layers] == ["first", "second"]


def test_saving_keeps_the_neurons_of_every_call(tmp_path):
    model, first, _, (ya, yb) = siamese(nested=False)
    x = examples(8)
    converter = snnify.convert_for_steps(model, x, n_steps=4)
    yb_first = yb._keras_history.operation.input  # first's second call
    converter.layers[yb_first].scale = converter.layers[yb_first].scale * 2
    path = os.fspath(tmp_path / "siamese.keras")
    snnify.save_network(converter, path, n_steps=4)
    loaded = snnify.load_network(path).converter
    nodes = [node.name for node in loaded.layers.all(loaded.model.get_layer("first"))]
    assert nodes == ["first.neurons", "first.neurons_2"]
    np.testing.assert_array_equal(
        spiking_output(loaded, x, 4), spiking_output(converter, x, 4)
    )


def test_files_of_earlier_versions_load():
    # earlier versions keyed each layer's neurons by the layer's name
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(hidden))
    entry = {
        "node": "hidden.neurons",
        "neuron": keras.saving.serialize_keras_object(snnify.IntegrateAndFire()),
        "scale": 250.0,
        "synapse": None,
    }
    saved = snnify.export.saving.SavedNetwork(
        model,
        swap_activations={"relu": entry["neuron"]},
        neuron_layers={"hidden": entry},
    )
    node = saved.converter.layers[hidden]
    assert node.scale == 250.0 and node.neuron_type == snnify.IntegrateAndFire()


@pytest.mark.parametrize("nested", [False, True], ids=["layers", "nested"])
def test_split_shared_weights_gives_each_call_weights_of_its_own(nested, tmp_path):
    model, first, *_ = siamese(nested)
    x = examples(16)
    target = np.random.default_rng(2).normal(0, 1, (16, 2)).astype("float32")
    kernels = {}
    for split in (False, True):
        converter = snnify.Converter(model, split_shared_weights=split)
        assert converter.verify(x)  # equal copies: the model's outputs
        with snnify.Simulator(converter.net, progress_bar=False) as sim:
            sim.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
            steps = {name: v[:, None] for name, v in x.items()}
            sim.fit(steps, target[:, None], epochs=2, batch_size=8, verbose=0)
            weights = snnify.params.named_weights(converter.net)
        kernels[split] = [
            keras.ops.convert_to_numpy(v)
            for key, v in weights.items()
            if key.startswith(first.name if not nested else "encoder/first")
            and "kernel" in key
        ]
        if split:
            with pytest.raises(ValueError, match="'.*first' were trained apart"):
                converter.update_model()
            (tmp_path / "net.keras").write_bytes(b"previous")
            with pytest.raises(ValueError, match="trained apart"):
                snnify.save_network(converter, tmp_path / "net.keras")
            assert (tmp_path / "net.keras").read_bytes() == b"previous"
    assert len(kernels[False]) == 1 and len(kernels[True]) == 2
    # trained on different inputs, the two copies moved apart
    assert np.abs(kernels[True][0] - kernels[True][1]).max() > 1e-3
    # and a failed update_model changed nothing
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(first.kernel), siamese(nested)[1].get_weights()[0]
    )
