"""Statistics: connection counts by hand and by brute force, spikes, SynOps, energy."""

import keras
import numpy as np
import pytest

import snnify
from snnify.rules.conv import taps_per_input
from snnify.stats import EnergyModel, connections, measure

DT = 0.001


@pytest.mark.parametrize(
    "size, kernel, stride, dilation, padding, expected",
    [
        (5, 3, 1, 1, "valid", [1, 2, 3, 2, 1]),
        (5, 3, 2, 1, "valid", [1, 1, 2, 1, 1]),
        (6, 3, 2, 1, "valid", [1, 1, 2, 1, 1, 0]),  # the last input is never read
        (4, 3, 1, 1, "same", [2, 3, 3, 2]),
        # 3 outputs, 2 padding elements, one on each side
        (5, 3, 2, 1, "same", [1, 2, 1, 2, 1]),
        # 2 outputs, 1 padding element, at the end
        (4, 3, 2, 1, "same", [1, 1, 2, 1]),
        (5, 2, 1, 2, "valid", [1, 1, 2, 1, 1]),
        (4, 3, 1, 1, "causal", [3, 3, 2, 1]),
    ],
)
def test_taps_per_input_by_hand(size, kernel, stride, dilation, padding, expected):
    assert taps_per_input(size, kernel, stride, dilation, padding).tolist() == expected


def test_dense_connections_by_hand():
    dense = keras.layers.Dense(10)
    assert connections(dense, (784,)).sum() == 7840
    # Dense on the last axis of a 3-D input
    assert connections(dense, (4, 5, 6)).tolist() == np.full((4, 5, 6), 10).tolist()


def test_conv2d_connections_by_hand():
    # 5x5x2 input, 3 filters of 3x3, stride 2, valid: 2x2 outputs
    conv = keras.layers.Conv2D(3, 3, strides=2)
    counts = connections(conv, (5, 5, 2))
    assert counts.shape == (5, 5, 2)
    assert counts.sum() == 2 * 2 * 3 * 9 * 2  # outputs * filters * taps * channels
    assert counts[0, 0, 0] == 3  # read by one output position, 3 filters
    assert counts[2, 2, 1] == 12  # the centre is read by all 4 output positions
    assert counts[0, 2, 0] == 6
    # "same" with stride 2: 3x3 outputs; taps on the 1-wide padding are not counted
    same = keras.layers.Conv2D(3, 3, strides=2, padding="same")
    counts = connections(same, (5, 5, 2))
    assert counts.sum() == 7 * 7 * 3 * 2  # 7 real taps per axis
    assert counts.sum() < 3 * 3 * 3 * 9 * 2
    assert counts[1, 1, 0] == 2 * 2 * 3


def brute_force_fan_out(layer, input_shape):
    """Fan-out from the layer itself: all-ones weights applied to one-hot inputs."""
    n = int(np.prod(input_shape))
    eye = np.eye(n, dtype="float32").reshape((n, *input_shape))
    layer(eye[:1])  # build
    layer.set_weights(
        [np.ones_like(w) for w in layer.get_weights()[:1]]
        + [np.zeros_like(w) for w in layer.get_weights()[1:]]
    )
    out = keras.ops.convert_to_numpy(layer(eye))
    return out.reshape(n, -1).sum(axis=1).reshape(input_shape)


@pytest.mark.parametrize(
    "make, input_shape",
    [
        (lambda: keras.layers.Conv2D(3, 3, strides=2, padding="same"), (6, 5, 2)),
        (lambda: keras.layers.Conv2D(2, (3, 2), strides=(1, 3)), (5, 7, 2)),
        (lambda: keras.layers.Conv2D(2, 3, dilation_rate=2, padding="same"), (6, 6, 1)),
        (lambda: keras.layers.Conv2D(4, 3, groups=2, padding="same"), (4, 4, 4)),
        (lambda: keras.layers.Conv1D(2, 4, strides=3, padding="same"), (10, 2)),
        (lambda: keras.layers.Conv1D(2, 3, dilation_rate=2, padding="causal"), (7, 1)),
        (lambda: keras.layers.DepthwiseConv2D(3, 2, depth_multiplier=2), (5, 6, 2)),
        (lambda: keras.layers.Dense(3), (2, 4)),
        (lambda: keras.layers.DepthwiseConv1D(3, strides=2, padding="same"), (7, 2)),
        (lambda: keras.layers.EinsumDense("ab,bc->ac", output_shape=5), (4,)),
        (lambda: keras.layers.EinsumDense("abc,cd->abd", (3, 2)), (3, 4)),
        (lambda: keras.layers.Conv2DTranspose(2, 3, strides=2), (3, 4, 2)),
        (lambda: keras.layers.Conv1DTranspose(3, 2, strides=1), (5, 1)),
    ],
)
def test_connections_match_the_keras_layer(make, input_shape):
    layer = make()
    expected = brute_force_fan_out(layer, input_shape)
    np.testing.assert_array_equal(connections(layer, input_shape), expected)


def test_average_pooling_connections_match_keras():
    layer = keras.layers.AveragePooling2D(2, strides=1)
    eye = np.eye(12, dtype="float32").reshape(12, 3, 4, 1)
    # each output averages 4 inputs: 4 * the output is the number of windows
    windows = 4 * keras.ops.convert_to_numpy(layer(eye)).reshape(12, -1).sum(1)
    np.testing.assert_allclose(connections(layer, (3, 4, 1)).ravel(), windows)


def spiking_conv_network():
    inp = keras.Input((6, 6, 1))
    conv = keras.layers.Conv2D(2, 3, strides=2, padding="same", activation="relu")(inp)
    dense = keras.layers.Dense(4)(keras.layers.Flatten()(conv))
    model = keras.Model(inp, dense)
    model.layers[1].set_weights(
        [np.full((3, 3, 1, 2), 1 / 9, "float32"), np.zeros(2, "float32")]
    )
    return model, inp, conv, dense


def integrate_and_fire(model, scale):
    """``model`` with IntegrateAndFire neurons scaled by ``scale``."""
    return snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=scale,
    )


def test_measure_counts_spikes_synops_and_macs():
    model, inp, conv, dense = spiking_conv_network()
    # conv output (3x3x2) is 1 everywhere inside, less at the padded border;
    # scale 1000 makes an activation of 1 exactly one spike per step
    converter = integrate_and_fire(model, 1000)
    x = np.ones((2, 1, 36), "float32")
    n_steps = 8
    nodes, probes = list(converter.net.nodes), list(converter.net.probes)
    stats = measure(converter, x, n_steps=n_steps)
    # measuring leaves the network as it was
    assert converter.net.nodes == nodes and converter.net.probes == probes
    assert measure(converter, x, n_steps=n_steps).spikes == stats.spikes
    activation = keras.Model(inp, conv).predict(x.reshape(2, 6, 6, 1), verbose=0)
    # IF with initial voltage 0.5: floor(0.5 + t * a) spikes after t steps
    spikes = np.floor(0.5 + n_steps * activation[0] + 1e-6).sum()
    (layer,) = stats.layers
    assert layer.spikes == pytest.approx(spikes)
    assert stats.spikes_per_neuron == pytest.approx(spikes / 18)
    # every spike reaches the 4 dense units through Flatten
    assert stats.synops == pytest.approx(4 * spikes)
    assert layer.mean_rate == pytest.approx(spikes / 18 / (n_steps * DT))
    assert layer.max_rate == pytest.approx(1000.0)  # one spike per step at most here
    # the ANN: per axis, 3 outputs read inputs 0-2, 2-4 and 4-5 (+ padding),
    # i.e. 8 taps; the convolution has 8 * 8 * 2 connections, the dense 18 * 4
    assert taps_per_input(6, 3, 2, 1, "same").sum() == 8
    conv_connections = taps_per_input(6, 3, 2, 1, "same").sum() ** 2 * 2
    assert stats.ann_macs == conv_connections + 18 * 4
    # the convolution sees the constant input: computed once per inference
    assert stats.snn_macs == conv_connections
    energy = EnergyModel(mac=2.0, add=0.5, name="made up")
    assert stats.energy(energy) == pytest.approx(
        2.0 * conv_connections + 0.5 * 4 * spikes
    )
    assert stats.ann_energy() == pytest.approx(stats.ann_macs * 4.6e-12)
    summary = stats.summary().splitlines()
    assert summary[1].split()[:3] == [layer.name, "18", f"{spikes:.4g}"]
    assert f"{spikes:.4g} spikes, {4 * spikes:.4g} SynOps" in summary[-1]


def test_spikes_taken_back_count_as_spikes():
    inp = keras.Input((1,))
    model = keras.Model(inp, keras.layers.Dense(1, activation="relu")(inp))
    model.set_weights([np.ones((1, 1), "float32"), np.zeros(1, "float32")])
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SignedIntegrateAndFire()},
        scale_firing_rates=1000,  # an input of 1 moves the voltage by 1
    )
    # v: 0.5 + 1.3 -> one spike (0.8); 0.8 - 1 -> one taken back (0.8); again
    x = np.array([1.3, -1.0, 1.0, -1.0], "float32").reshape(1, 4, 1)
    stats = measure(converter, x, n_steps=4)
    assert stats.spikes == pytest.approx(4.0)
    assert stats.layers[0].max_rate == pytest.approx(1000.0)


def test_summary_columns_stay_apart_at_high_rates():
    # scale 1e6: an activation of 1 is 1000 spikes per step, 1e6 Hz, the
    # widest number the table prints
    model, inp, conv, dense = spiking_conv_network()
    converter = integrate_and_fire(model, 1e6)
    stats = measure(converter, np.ones((2, 1, 36), "float32"), n_steps=4)
    rows = stats.summary().splitlines()[1 : 1 + len(stats.layers)]
    assert max(layer.max_rate for layer in stats.layers) >= 1e5
    for row in rows:  # name, neurons, spikes, spk/neuron, mean Hz, max Hz, SynOps
        assert len(row.split()) == 7, row


def test_measure_prefixes_equal_shorter_runs():
    model, inp, conv, dense = spiking_conv_network()
    converter = integrate_and_fire(model, 700)
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 36)).astype("float32")
    labels = np.array([0, 1, 2])
    by_steps = measure(converter, x, y=labels, steps=[2, 5])
    short = measure(converter, x, y=labels, n_steps=2)
    assert by_steps[2].spikes == pytest.approx(short.spikes)
    assert by_steps[2].synops == pytest.approx(short.synops)
    assert by_steps[2].accuracy == short.accuracy
    assert by_steps[5].spikes > by_steps[2].spikes


def test_rate_neurons_and_time_varying_inputs_cost_macs():
    model, inp, conv, dense = spiking_conv_network()
    converter = snnify.Converter(model)  # ReLU rate neurons: no spikes
    x = np.ones((1, 3, 36), "float32")  # three different steps: not constant
    stats = measure(converter, x, n_steps=3)
    assert stats.synops == 0
    assert stats.snn_macs == 3 * stats.ann_macs


def test_measure_of_a_network_without_neurons_says_so():
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="relu6", name="bounded")(inp)
    converter = snnify.Converter(keras.Model(inp, keras.layers.Dense(2)(hidden)))
    # an obscure "probe of another network" before
    with pytest.raises(ValueError, match=r"has none: .*'bounded' \('relu6'\)"):
        measure(converter, np.ones((2, 1, 4), "float32"), n_steps=3)


def test_every_converted_layer_has_a_cost():
    """stats knows the cost of every layer type that converts (from its rule)."""
    from test_rules import CASES, randomize

    for name, make in CASES.items():
        converter = snnify.Converter(randomize(make()))
        for node in converter.net.nodes:
            if isinstance(node, snnify.graph.LayerNode):
                assert node.cost is not None, (name, node.layer)


def test_moves_and_merges_carry_the_fan_out():
    """Spikes reach Dense layers through Concatenate, Add and UpSampling1D."""
    inp = keras.Input((4, 2))
    a = keras.layers.Dense(2, activation="relu")(inp)
    b = keras.layers.Dense(2, activation="relu")(inp)
    joined = keras.layers.Concatenate()([a, keras.layers.Add()([a, b])])  # (4, 4)
    up = keras.layers.UpSampling1D(3)(joined)  # (12, 4): every value 3 times
    out = keras.layers.Dense(5)(keras.layers.Flatten()(up))
    converter = integrate_and_fire(keras.Model(inp, out), 1000)
    stats = measure(converter, np.ones((1, 1, 8), "float32"), n_steps=2)
    fan_out = {s.name: s.fan_out for s in stats.layers}
    # a reaches 2 places of `joined`, b one; each is repeated 3 times, x 5 units
    assert fan_out[converter.layers[a].name.split(".")[0]] == 2 * 3 * 5
    assert fan_out[converter.layers[b].name.split(".")[0]] == 3 * 5
    assert stats.uncounted == ()
