"""Calibration: scales from data (checked by hand), the "auto" converter, decoding."""

import keras
import numpy as np
import pytest

import snnify
from snnify.decoding import decode

DT = 0.001


def two_layer_model():
    """x (4,) -> relu([x0, x1]) -> relu(h0 + h1 - 1) -> linear output."""
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(2, activation="relu", name="hidden")(inp)
    second = keras.layers.Dense(1, activation="relu", name="second")(hidden)
    out = keras.layers.Dense(2, name="out")(second)
    model = keras.Model(inp, out)
    kernel = np.zeros((4, 2), "float32")
    kernel[0, 0] = kernel[1, 1] = 1.0
    model.get_layer("hidden").set_weights([kernel, np.zeros(2, "float32")])
    model.get_layer("second").set_weights(
        [np.ones((2, 1), "float32"), np.array([-1.0], "float32")]
    )
    model.get_layer("out").set_weights(
        [np.array([[1.0, -1.0]], "float32"), np.zeros(2, "float32")]
    )
    return model, inp, hidden, second


# columns 0 and 1 drive the hidden neurons; 2 and 3 are ignored
DATA = np.array(
    [
        [0.5, 2.0, 9.0, 9.0],
        [-1.0, 1.0, 9.0, 9.0],
        [4.0, 0.0, 9.0, 9.0],
        [1.0, 3.0, 9.0, 9.0],
        [2.0, -2.0, 9.0, 9.0],
    ],
    "float32",
)


def test_scales_match_a_hand_computation():
    model, _, hidden, second = two_layer_model()
    report = snnify.calibrate(model, DATA[:, None], percentile=100)
    # hidden activations: positives 0.5, 2, 1, 4, 1, 3, 2 -> max 4
    assert report[hidden] == pytest.approx(1 / (4.0 * DT))
    # second = relu(h0 + h1 - 1): 1.5, 0, 3, 3, 1 -> max 3
    assert report[second] == pytest.approx(1 / (3.0 * DT))
    assert report.layer(second).reference == pytest.approx(3.0)
    assert report.layer("hidden").source == "percentile"

    # the median of the hidden positives {0.5, 1, 1, 2, 2, 3, 4} is 2
    median = snnify.calibrate(model, DATA[:, None], percentile=50, spikes_per_step=2)
    assert median[hidden] == pytest.approx(2 / (2.0 * DT))
    # second positives {1, 1.5, 3, 3}: numpy's linear interpolation gives 2.25
    assert median[second] == pytest.approx(2 / (2.25 * DT))


def test_expected_spikes_per_inference():
    model, _, hidden, second = two_layer_model()
    report = snnify.calibrate(model, DATA, percentile=100, n_steps=10)
    # mean activation * scale * dt per neuron and step, times neurons and steps
    hidden_mean = np.mean(np.maximum(DATA[:, :2], 0))
    second_mean = np.mean([1.5, 0, 3, 3, 1])
    expected = 10 * (hidden_mean / 4.0 * 2 + second_mean / 3.0 * 1)
    assert report.spikes_per_inference() == pytest.approx(expected)


def test_per_channel_scales_make_one_spike_per_step_at_the_percentile():
    model, inp, hidden, second = two_layer_model()
    report = snnify.calibrate(model, DATA, percentile=100, per_channel=True)
    # column maxima of relu(x0), relu(x1): 4 and 3
    np.testing.assert_allclose(report[hidden], [1 / (4 * DT), 1 / (3 * DT)], rtol=1e-6)
    assert np.ndim(report[second]) == 1

    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=report,
    )
    converter.verify()  # the rates do not depend on the scales
    with converter.net:
        probe = snnify.Probe(converter.layers[hidden])
    x = np.array([[[4.0, 3.0, 0.0, 0.0]]], "float32")
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        out = sim.predict(x, n_steps=5)[probe]
    # each neuron gets one threshold per step: one spike per step, worth its max
    np.testing.assert_allclose(out[0], np.tile([4.0, 3.0], (5, 1)), rtol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="TensorFlow's CPU convolutions take channels_last only (Keras fails too)",
)
def test_per_channel_of_channels_first_convolution():
    inp = keras.Input((2, 3, 3))
    conv = keras.layers.Conv2D(
        2, 1, activation="relu", data_format="channels_first", use_bias=False
    )(inp)
    model = keras.Model(inp, keras.layers.Flatten()(conv))
    model.layers[1].set_weights([np.array([[[[1.0, 0.0], [0.0, 2.0]]]], "float32")])
    x = np.ones((3, 2, 3, 3), "float32")
    report = snnify.calibrate(model, x, percentile=100, per_channel=True)
    assert report[conv].shape == (2, 1, 1)
    np.testing.assert_allclose(report[conv].ravel(), [1 / DT, 1 / (2 * DT)])


def test_auto_converter_uses_the_calibration():
    model, inp, hidden, second = two_layer_model()
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates="auto",
        calibration_data=DATA[:, None],
    )
    report = converter.calibration
    assert isinstance(report, snnify.CalibrationReport)
    for layer in (hidden, second):  # searched for AUTO_STEPS steps
        assert report.layer(layer).source == "search"
        np.testing.assert_allclose(converter.layers[layer].scale, report[layer])
    assert "hidden" in converter.calibration.summary()


def test_auto_errors():
    model, *_ = two_layer_model()
    with pytest.raises(ValueError, match="needs data for layer"):
        snnify.Converter(model, scale_firing_rates="auto")
    with pytest.raises(ValueError, match="only used with scale_firing_rates='auto'"):
        snnify.Converter(model, scale_firing_rates=3, calibration_data=DATA)
    with pytest.raises(ValueError, match="Received: 'automatic'"):
        snnify.Converter(model, scale_firing_rates="automatic", calibration_data=DATA)
    with pytest.raises(ValueError, match="percentile must be in"):
        snnify.calibrate(model, DATA, percentile=0)
    with pytest.raises(TypeError, match="needs a Keras model or a snnify.Converter"):
        snnify.calibrate("model", DATA)


def test_auto_calibrates_the_activations_swapped_for_neurons():
    keras.utils.set_random_seed(0)  # the error depends on the weights drawn
    inp = keras.Input((20,))
    h = keras.layers.Dense(40, activation="relu6", name="bounded")(inp)
    h = keras.layers.LeakyReLU(0.1, name="leaky")(keras.layers.Dense(40)(h))
    out = keras.layers.Dense(5)(h)
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).uniform(0, 1, (96, 20)).astype("float32")
    converter = snnify.Converter(
        model,
        swap_activations={
            "relu6": snnify.IntegrateAndFire(),
            "leaky_relu": snnify.IntegrateAndFire(),
        },
        scale_firing_rates="auto",
        calibration_data=x[:64],
    )
    report = converter.calibration
    for name in ("bounded", "leaky"):  # both were left at scale 1 before
        layer = model.get_layer(name)
        assert report.layer(layer).source == "search"
        np.testing.assert_allclose(converter.layers[layer].scale, report[layer])
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        got = decode(sim.predict(x[64:, None], n_steps=8)[converter.outputs[out]])
    ann = model.predict(x[64:], verbose=0)
    # measured 0.217 (relative mean absolute error at 8 steps, most of it the
    # leaky part, which integrate-and-fire neurons drop); 1.0 at scale 1
    assert np.abs(got - ann).mean() / np.abs(ann).mean() < 0.25


def test_calibrating_a_network_without_neurons_says_how_to_make_them():
    inp = keras.Input((4,))
    model = keras.Model(
        inp, keras.layers.Dense(2, activation="elu", name="smooth")(inp)
    )
    fix = r"swap_activations=\{'elu': snnify.IntegrateAndFire\(\)\}"
    with pytest.raises(ValueError, match=f"'smooth' \\('elu'\\).*{fix}"):
        snnify.calibrate(model, DATA)
    with pytest.raises(ValueError, match="this network has none"):
        snnify.Converter(model, scale_firing_rates="auto", calibration_data=DATA)


def test_calibrating_a_converter_only_takes_its_neuron_layers():
    model, inp, hidden, second = two_layer_model()
    converter = snnify.Converter(model, swap_activations={"relu": snnify.IF()})
    report = snnify.calibrate(converter, DATA, percentile=100)
    assert list(report) == [model.get_layer("hidden"), model.get_layer("second")]
    report.apply(converter)
    assert converter.layers[hidden].scale == pytest.approx(1 / (4 * DT))
    with pytest.raises(KeyError, match="not a calibrated layer"):
        report.layer("out")


def test_calibrated_spiking_network_matches_the_ann_in_few_steps():
    keras.utils.set_random_seed(0)  # the error depends on the weights drawn
    rng = np.random.default_rng(0)
    inp = keras.Input((20,))
    h = keras.layers.Dense(40, activation="relu")(inp)
    h = keras.layers.Dense(40, activation="relu")(h)
    out = keras.layers.Dense(5)(h)
    model = keras.Model(inp, out)
    x = rng.uniform(0, 1, (64, 20)).astype("float32")
    ann = model.predict(x, verbose=0)

    def error(scale):
        converter = snnify.Converter(
            model,
            swap_activations={"relu": snnify.IntegrateAndFire()},
            scale_firing_rates=scale,
        )
        with snnify.Simulator(converter.net, progress_bar=False) as sim:
            got = decode(sim.predict(x[:, None], n_steps=16)[converter.outputs[out]])
        return np.abs(got - ann).mean() / np.abs(ann).mean()

    # measured: 0.074 (relative mean absolute error at 16 steps)
    assert error(snnify.calibrate(model, x, percentile=99)) < 0.09
    # unscaled, no spike reaches the output in 16 steps: its error is all of it
    assert error(1.0) == pytest.approx(1.0)


def test_decode():
    out = np.array([[[0.0, 1000.0], [1000.0, 0.0], [0.0, 1000.0]]], "float32")
    np.testing.assert_allclose(decode(out, "mean"), [[1000 / 3, 2000 / 3]])
    np.testing.assert_allclose(decode(out, "count"), [[1.0, 2.0]])
    np.testing.assert_allclose(decode(out, "last"), [[0.0, 1000.0]])
    # "last" with a synapse: the last step of the Lowpass-filtered output
    synapse = snnify.Lowpass(0.01)
    state = synapse.initial_state((2,))
    for t in range(3):
        filtered, state = synapse.step(out[0, t], state, DT)
    np.testing.assert_allclose(decode(out, "last", synapse=0.01), [filtered], rtol=1e-6)
    stats = snnify.engine.ProbeStats(out.sum(1), out.max(1), n_steps=3)
    np.testing.assert_allclose(decode(stats, "count"), [[1.0, 2.0]])
    with pytest.raises(ValueError, match="has no last step"):
        decode(stats, "last")
    with pytest.raises(ValueError, match="method must be one of"):
        decode(out, "median")


def hidden_values(model, x):
    return keras.Model(model.input, model.get_layer("hidden").output)(x)


def test_expected_output_error_is_that_of_the_worst_output():
    # before: only the first output was compared with the Keras model's
    rng = np.random.default_rng(0)
    inp = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    first = keras.layers.Dense(3, name="first")(hidden)
    # the second reads the same spikes, its mean taken away by its bias
    second = keras.layers.Dense(2, name="second")(hidden)
    model = keras.Model(inp, [first, second])
    for name, shape in (("hidden", (6, 8)), ("first", (8, 3))):
        weights = [rng.normal(0, 0.5, shape), rng.normal(0, 0.1, shape[1])]
        model.get_layer(name).set_weights([w.astype("float32") for w in weights])
    x = rng.uniform(0, 1, (32, 6)).astype("float32")
    kernel = rng.normal(0, 0.1, (8, 2)).astype("float32")
    bias = -keras.ops.convert_to_numpy(hidden_values(model, x)).mean(0) @ kernel
    model.get_layer("second").set_weights([kernel, bias.astype("float32")])
    converter = snnify.convert_for_steps(model, x, n_steps=2, spikes_per_step=1)
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        out = sim.predict(np.repeat(x[:, None], 2, axis=1))
    errors = []
    for tensor, want in zip(model.outputs, model.predict(x, verbose=0)):
        got = out[converter.outputs[tensor]].mean(axis=1)
        errors.append(np.sqrt(np.mean((got - want) ** 2) / np.mean(want**2)))
    assert errors[1] > errors[0]  # measured 0.256 and 0.189
    expected = converter.calibration.expected["output_error"]
    assert expected == pytest.approx(errors[1], rel=1e-4)
