"""Simulator: shapes, neuron order, input formats, state, padding, probes, errors."""

import keras
import numpy as np
import pytest

import snnify
from snnify import engine
from snnify import simulator as simulator_module


def small_conv_model():
    inp = keras.Input((8, 8, 1))
    conv0 = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    conv1 = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(conv0)
    dense = keras.layers.Dense(5)(keras.layers.Flatten()(conv1))
    model = keras.Model(inp, dense)
    model.layers[1].set_weights(
        [
            np.random.default_rng(1).uniform(-0.2, 0.8, (3, 3, 1, 4)).astype("float32"),
            np.full(4, 0.1, "float32"),
        ]
    )
    return model, inp, conv0, conv1, dense


def images(n=6, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, 64)).astype("float32")


def spiking_converter(model, **kwargs):
    kwargs.setdefault("scale_firing_rates", 50)
    kwargs.setdefault("synapse", 0.005)
    return snnify.Converter(
        model, swap_activations={"relu": snnify.SpikingRectifiedLinear()}, **kwargs
    )


def run(converter, x, n_steps, seed=0, **sim_kwargs):
    sim_kwargs.setdefault("progress_bar", False)
    with snnify.Simulator(converter.net, seed=seed, **sim_kwargs) as sim:
        return sim.predict(x, n_steps=n_steps)


def test_probe_shapes_and_keras_neuron_order():
    model, inp, conv0, conv1, dense = small_conv_model()
    converter = snnify.Converter(model)
    with converter.net:
        probe = snnify.Probe(converter.layers[conv0])
    x = images()
    data = run(converter, {converter.inputs[inp]: x}, n_steps=3)
    assert probe.size_in == 6 * 6 * 4
    assert data[probe].shape == (6, 3, 144)
    assert data[converter.outputs[dense]].shape == (6, 3, 5)
    expected = keras.Model(inp, conv0).predict(x.reshape(6, 8, 8, 1), verbose=0)
    np.testing.assert_allclose(data[probe][:, 2], expected.reshape(6, -1), rtol=1e-5)
    np.testing.assert_allclose(
        data[converter.outputs[dense]][:, 0],
        model.predict(x.reshape(6, 8, 8, 1), verbose=0),
        rtol=1e-5,
    )


def test_flat_and_shaped_inputs_and_held_input_agree():
    model, inp, *_, dense = small_conv_model()
    converter = spiking_converter(model)
    x = images()
    out = converter.outputs[dense]
    flat = run(converter, {converter.inputs[inp]: x}, 20)[out]
    shaped = run(converter, x.reshape(6, 1, 8, 8, 1), 20)[out]
    tiled = run(converter, np.tile(x, (1, 20, 1)), None)[out]
    np.testing.assert_allclose(flat, shaped, atol=1e-5)
    np.testing.assert_allclose(flat, tiled, atol=1e-4)
    assert np.abs(flat).max() > 0


def test_stateful_continuation_matches_one_long_run():
    model, inp, *_, dense = small_conv_model()
    converter = spiking_converter(model)
    with converter.net:
        snnify.configure_settings(stateful=True)
    x = np.random.default_rng(3).uniform(0, 1, (6, 50, 64)).astype("float32")
    out = converter.outputs[dense]
    whole = run(converter, x, None)[out]
    with snnify.Simulator(converter.net, seed=0, progress_bar=False) as sim:
        first = sim.predict(x[:, :20])[out]
        second = sim.predict(x[:, 20:])[out]
        with pytest.raises(ValueError, match="continues 6 streams"):
            sim.predict(x[:3, :5])
        sim.reset()
        again = sim.predict(x[:, :20])[out]
    np.testing.assert_allclose(
        np.concatenate([first, second], axis=1), whole, atol=1e-4
    )
    np.testing.assert_allclose(again, first, atol=1e-6)


def test_not_stateful_starts_fresh_each_call():
    model, inp, *_, dense = small_conv_model()
    converter = spiking_converter(model)
    with snnify.Simulator(converter.net, seed=0, progress_bar=False) as sim:
        a = sim.predict(images(), n_steps=15)[converter.outputs[dense]]
        b = sim.predict(images(), n_steps=15)[converter.outputs[dense]]
    np.testing.assert_array_equal(a, b)


def test_uneven_batch_is_padded_not_dropped(monkeypatch):
    model, inp, *_, dense = small_conv_model()
    converter = spiking_converter(model)
    out = converter.outputs[dense]
    x = images(n=11)
    one_by_one = np.concatenate(
        [run(converter, x[i : i + 1], 25)[out] for i in range(11)]
    )
    monkeypatch.setattr(simulator_module, "MAX_BATCH", 4)
    padded = run(converter, x, 25, minibatch_size=4)[out]
    assert padded.shape == (11, 25, 5)
    np.testing.assert_allclose(padded, one_by_one, atol=1e-4)


@pytest.mark.parametrize(
    "minibatch_size, batch_size, runs", [(None, 3, 4), (4, 3, 3), (None, 100, 1)]
)
def test_batch_size_limits_the_examples_per_run(
    monkeypatch, capsys, minibatch_size, batch_size, runs
):
    model, inp, *_, dense = small_conv_model()
    converter = spiking_converter(model)
    out = converter.outputs[dense]
    x = images(n=11)
    whole = run(converter, x, 25)[out]
    sizes = []
    simulate = snnify.prediction.Prediction.simulate_batch

    def counted(self, inputs, rows):
        sizes.append(self.batch)
        return simulate(self, inputs, rows)

    monkeypatch.setattr(snnify.prediction.Prediction, "simulate_batch", counted)
    capsys.readouterr()
    with snnify.Simulator(converter.net, minibatch_size=minibatch_size, seed=0) as sim:
        got = sim.predict(x, n_steps=25, batch_size=batch_size, verbose=0)[out]
    np.testing.assert_allclose(got, whole, atol=1e-4)
    assert len(sizes) == runs and max(sizes) <= max(batch_size, minibatch_size or 1)
    assert capsys.readouterr().out == ""  # verbose=0: no progress bar
    with snnify.Simulator(converter.net) as sim, pytest.raises(ValueError):
        sim.predict(x, batch_size=0)


def test_chunked_steps_equal_one_scan(monkeypatch):
    model, inp, conv0, conv1, dense = small_conv_model()
    converter = spiking_converter(model)
    with converter.net:
        probe = snnify.Probe(converter.layers[conv1])
    whole = run(converter, images(), 40)
    monkeypatch.setattr(engine, "MAX_CHUNK_STEPS", 7)
    chunked = run(converter, images(), 40)
    for p in (probe, converter.outputs[dense]):
        np.testing.assert_allclose(chunked[p], whole[p], atol=1e-4)


def test_decimated_last_and_stats_probes_reduce_the_full_history():
    model, inp, conv0, conv1, dense = small_conv_model()
    converter = spiking_converter(model)
    with converter.net:
        full = snnify.Probe(converter.layers[conv1])
        every = snnify.Probe(converter.layers[conv1], sample_every=0.004)
        last = snnify.Probe(converter.layers[conv1], keep="last")
        stats = snnify.Probe(converter.layers[conv1], keep="stats")
    data = run(converter, images(), 30)
    history = data[full]
    np.testing.assert_array_equal(data[every], history[:, 3::4][:, :7])
    np.testing.assert_array_equal(data[last], history[:, -1:])
    np.testing.assert_allclose(data[stats].sum, history.sum(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(data[stats].max, history.max(axis=1))
    np.testing.assert_allclose(data[stats].mean, history.mean(axis=1), rtol=1e-5)
    assert history.max() > 0


def test_steps_after_the_last_sample_still_count():
    # the only recording probe samples every 4th step: steps 28 and 29 run in
    # a chunk that records nothing, and the summaries must include them
    model, inp, conv0, conv1, dense = small_conv_model()
    converter = spiking_converter(model)
    with converter.net:
        full = snnify.Probe(converter.layers[conv1])
    history = run(converter, images(), 30)[full]
    converter = spiking_converter(model)
    converter.outputs[dense].keep = "sum"  # records nothing either
    with converter.net:
        every = snnify.Probe(converter.layers[conv1], sample_every=0.004)
        stats = snnify.Probe(converter.layers[conv1], keep="stats")
    data = run(converter, images(), 30)
    np.testing.assert_array_equal(data[every], history[:, 3::4][:, :7])
    np.testing.assert_allclose(data[stats].sum, history.sum(axis=1), rtol=1e-5)
    assert history[:, 28:].max() > 0


def test_probe_synapse_filters_the_recorded_value():
    model, inp, conv0, conv1, dense = small_conv_model()
    converter = spiking_converter(model, synapse=None)
    with converter.net:
        raw = snnify.Probe(converter.layers[conv1])
        filtered = snnify.Probe(converter.layers[conv1], synapse=0.01)
    data = run(converter, images(), 20)
    a = np.exp(-0.001 / 0.01)
    expected = np.zeros_like(data[raw])
    y = 0
    for t in range(20):
        y = a * y + (1 - a) * data[raw][:, t]
        expected[:, t] = y
    np.testing.assert_allclose(data[filtered], expected, rtol=1e-4, atol=1e-3)


def test_input_errors():
    model, inp, *_ = small_conv_model()
    converter = snnify.Converter(model)
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        with pytest.raises(
            ValueError,
            match=r"expects arrays of shape \(batch, steps, 64\).*Received: shape=\(2, 1, 63\)",
        ):
            sim.predict(np.zeros((2, 1, 63)))
        with pytest.raises(ValueError, match=r"shape.*one step with x\[:, None\]"):
            sim.predict(np.zeros((2, 64)))
        with pytest.raises(KeyError, match="is not an input of this network"):
            sim.predict({"nonsense": np.zeros((2, 1, 64))})
        with pytest.raises(
            ValueError, match="n_steps must be an integer >= 1. Received: n_steps=0"
        ):
            sim.predict(np.zeros((2, 1, 64)), n_steps=0)
        with pytest.raises(ValueError, match="1 step .* or n_steps=5"):
            sim.predict(np.zeros((2, 3, 64)), n_steps=5)
    with pytest.raises(RuntimeError, match="closed"):
        sim.predict(np.zeros((2, 1, 64)))


def test_a_list_of_one_array_is_that_array_as_in_keras():
    # before: taken as an array of one more axis, "Received: shape=(1, 6, 1, 64)"
    model, inp, conv0, conv1, dense = small_conv_model()
    converter = spiking_converter(model)
    out = converter.outputs[dense]
    x = images()
    labels = np.arange(6).reshape(6, 1, 1) % 5
    with snnify.Simulator(converter.net, progress_bar=False, seed=0) as sim:
        np.testing.assert_array_equal(
            sim.predict([x], n_steps=5)[out], sim.predict(x, n_steps=5)[out]
        )
        sim.compile(
            optimizer=keras.optimizers.SGD(0.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        losses = [
            sim.fit(*data, verbose=0).history["loss"]
            for data in ((x, labels), ([x], [labels]))
        ]
        assert losses[0] == losses[1]
        # targets of several probes: a list in the order of compile's probes
        with converter.net:
            rates = snnify.Probe(converter.layers[conv1])
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        sim.compile(
            optimizer=keras.optimizers.SGD(0.0), loss={out: cross_entropy, rates: "mse"}
        )
        zeros = np.zeros((6, 1, rates.size_in), "float32")
        by_probe = sim.fit(x, {out: labels, rates: zeros}, verbose=0).history["loss"]
        listed = sim.fit(x, [labels, zeros], verbose=0).history["loss"]
    assert by_probe == listed and by_probe[0] > losses[0][0]


def test_the_network_itself_points_to_the_simulator():
    # before: "JAX does not support string indexing" (predict) and "Unable
    # to automatically build the model" (fit, evaluate), from inside Keras
    converter = snnify.Converter(small_conv_model()[0])
    for method in ("predict", "fit", "evaluate"):
        with pytest.raises(TypeError, match=rf"snnify.Simulator.*sim.{method}\("):
            getattr(converter.net, method)(images())


def test_images_without_their_channel_axis_of_one_are_taken_as_keras_takes_them():
    # MNIST arrives as (n, 28, 28); Keras's models take it for (28, 28, 1)
    model, *_ = small_conv_model()
    converter = snnify.Converter(model)
    x = images().reshape(-1, 1, 8, 8, 1)
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        want = sim.predict(x, n_steps=2)
        got = sim.predict(x[..., 0], n_steps=2)
    for probe in want:
        np.testing.assert_array_equal(got[probe], want[probe])
    report = snnify.calibrate(model, x[:, 0, ..., 0])  # Keras's own format
    assert report == snnify.calibrate(model, x[:, 0])


def test_simulator_argument_errors():
    model, *_ = small_conv_model()
    net = snnify.Converter(model).net
    with pytest.raises(ValueError, match="minibatch_size must be a positive integer"):
        snnify.Simulator(net, minibatch_size=0)
    with pytest.raises(ValueError, match="dt must be positive"):
        snnify.Simulator(net, dt=0)
    with pytest.raises(TypeError, match="Simulator needs an snnify Network"):
        snnify.Simulator(model)
    with pytest.raises(ValueError, match="Unknown setting"):
        with net:
            snnify.configure_settings(statefull=True)
    with pytest.raises(ValueError, match="keep must be one of"):
        snnify.Probe(net.nodes[1], keep="everything")


def test_refused_probe_leaves_nothing_behind():
    model, inp, conv0, *_ = small_conv_model()
    converter = spiking_converter(model)
    net = converter.net
    nodes, probes = list(net.nodes), list(net.probes)
    with net:
        with pytest.raises(ValueError, match="keep must be one of"):
            snnify.Probe(converter.layers[conv0], synapse=0.01, keep="everything")
        with pytest.raises(ValueError, match="sample_every must be None or positive"):
            snnify.Probe(converter.layers[conv0], synapse=0.01, sample_every=-1)
        probe = snnify.Probe(converter.layers[conv0], synapse=0.01)
    assert net.nodes == [*nodes, probe.target]  # only the accepted probe's synapse
    assert net.probes == [*probes, probe]
    assert probe.label == f"probe_{converter.layers[conv0].name}"  # no name was taken
