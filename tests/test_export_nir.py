"""NIR export and import: the exported graph computes what snnify computes."""

import os

import keras
import numpy as np
import pytest

import snnify
from snnify.graph import NeuronsNode

nir = pytest.importorskip("nir", reason="NIR export needs the nir package")
h5py = pytest.importorskip("h5py")

from nir_networks import (  # noqa: E402
    DT,
    dyadic,
    dyadic_converter,
    dyadic_inputs,
    residual_model,
    set_dyadic_weights,
)
from nir_reference import run_graph  # noqa: E402

N_STEPS = 6


def snnify_run(converter, x, n_steps=N_STEPS, dt=DT):
    """Outputs and spike counts (channels first) of every neuron layer."""
    neurons = [n for n in converter.net.nodes if isinstance(n, NeuronsNode)]
    probes = [snnify.Probe(n, add_to_container=False) for n in neurons]
    output = next(p for p in converter.net.probes if p.is_output)
    with snnify.Simulator(converter.net, dt=dt, progress_bar=False, seed=0) as sim:
        data = sim.predict(x[:, None], n_steps=n_steps, probes=[output, *probes])
    spikes = {}
    for node, probe in zip(neurons, probes):
        values = data[probe].reshape(len(x), n_steps, *node.shape)
        values = values * (np.asarray(node.scale) * dt / node.neuron_type.amplitude)
        spikes[node.name] = np.moveaxis(values, -1, 2) if values.ndim > 3 else values
    return data[output], spikes


def check_export(model, x, neuron_layers=1):
    """``model`` with IF neurons (scale 2**9), exported: the graph spikes as
    snnify does, layer for layer, and gives its outputs."""
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=2.0**9,
    )
    graph = snnify.export_nir(converter, dt=DT)
    out, spikes = run_graph(graph, np.moveaxis(x, -1, 1), N_STEPS)
    expected_out, expected_spikes = snnify_run(converter, x)
    names = nir_names(graph)
    assert len(names) == neuron_layers
    for node_name, nir_name in names.items():
        assert expected_spikes[node_name].sum() > 0  # the test sees spikes
        np.testing.assert_array_equal(spikes[nir_name], expected_spikes[node_name])
    np.testing.assert_array_equal(out, expected_out)


def nir_names(graph) -> dict:
    return {
        n.metadata["snnify_node"]: name
        for name, n in graph.nodes.items()
        if isinstance(n, nir.IF)
    }


@pytest.mark.parametrize(
    "pool, residual, per_channel",
    [(True, True, False), (False, True, True), (True, False, True)],
)
def test_exported_graph_computes_what_snnify_computes(
    tmp_path, pool, residual, per_channel
):
    converter = dyadic_converter(residual_model(pool, residual), per_channel)
    x = dyadic_inputs()
    path = tmp_path / "net.nir"
    snnify.export_nir(converter, path, dt=DT)
    graph = nir.read(str(path))
    out, spikes = run_graph(graph, np.moveaxis(x, -1, 1), N_STEPS)
    expected_out, expected_spikes = snnify_run(converter, x)
    names = nir_names(graph)
    assert sorted(names) == sorted(expected_spikes)
    for node_name, nir_name in names.items():
        assert np.array_equal(spikes[nir_name], expected_spikes[node_name]), node_name
        assert expected_spikes[node_name].sum() > 0  # the test sees spikes
    # the output (the last Dense, pre-activation) at every step
    np.testing.assert_array_equal(out, expected_out)


@pytest.mark.parametrize(
    "shape, layer",
    [
        ((6, 6, 2), keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")),
        ((9, 3), keras.layers.Conv1D(4, 3, strides=2, padding="same", name="c1d")),
        ((12, 2), keras.layers.DepthwiseConv1D(3, dilation_rate=2, depth_multiplier=2)),
        # padding="same" with one more zero at the end (stride 2, even kernel)
        ((6, 6, 2), keras.layers.Conv2D(3, 3, strides=2, padding="same")),
        ((6, 6, 2), keras.layers.Conv2D(3, 2, padding="same")),
        # zero padding folded into the convolution after it
        ((6, 6, 2), keras.Sequential([
            keras.layers.ZeroPadding2D(((1, 2), (0, 1))), keras.layers.Conv2D(3, 3)
        ])),
        ((7, 7, 2), keras.Sequential([  # MobileNetV2's strided depthwise block
            keras.layers.ZeroPadding2D(((0, 1), (0, 1))),
            keras.layers.DepthwiseConv2D(3, strides=2),
        ])),
        ((9, 3), keras.Sequential([
            keras.layers.ZeroPadding1D((2, 0)),
            keras.layers.Conv1D(4, 3, dilation_rate=2, padding="same"),
        ])),
        ((6, 6, 2), keras.Sequential([  # the identity in inference
            keras.layers.GaussianNoise(0.5), keras.layers.AlphaDropout(0.5),
            keras.layers.RandomFlip(), keras.layers.RandomRotation(0.2),
            keras.layers.Conv2D(3, 3),
        ])),
        ((6, 6, 2), keras.layers.SeparableConv2D(3, 3, strides=2, padding="same",
                                                 depth_multiplier=2)),
        ((9, 3), keras.layers.SeparableConv1D(4, 3, dilation_rate=2)),
    ],
    ids=["depthwise", "conv1d-same", "depthwise1d-dilated", "strided-same",
         "even-same", "zero-padding", "padded-depthwise", "padded-conv1d",
         "noise-and-augmentation", "separable", "separable1d"],
)  # fmt: skip
def test_other_convolutions(shape, layer):
    inp = keras.Input(shape)
    hidden = keras.layers.Activation("relu", name="act")(layer(inp))
    flat = keras.layers.Flatten(name="flatten")(hidden)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(flat))
    set_dyadic_weights(model)
    # a separable convolution multiplies two small kernels: larger inputs spike
    denominator = 1 if "Separable" in type(layer).__name__ else 16
    check_export(
        model, dyadic(np.random.default_rng(1), (4, *shape), 0, 16, denominator)
    )


@pytest.mark.parametrize(
    "padding, pool_size, strides",
    [(1, 2, 2), (((0, 1), (0, 1)), 2, 1), (((1, 0), (2, 1)), 2, 2)],
    ids=["symmetric", "one-more-at-the-end", "uneven"],
)
def test_zero_padded_average_pooling_of_spikes(padding, pool_size, strides):
    # ResNet50's ZeroPadding2D -> MaxPooling2D, with max_to_avg_pool: NIR's
    # SumPool2d has no padding that readers apply, so it is a Conv2d
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(inp)
    x = keras.layers.ZeroPadding2D(padding)(x)
    x = keras.layers.AveragePooling2D(pool_size, strides=strides)(x)
    x = keras.layers.Activation("relu", name="act")(x)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    set_dyadic_weights(model)
    check_export(model, dyadic(np.random.default_rng(1), (4, 6, 6, 2), 0, 16, 16), 2)


def _concatenated(how: str) -> keras.Model:
    """Branches of IF neurons (and the input itself) joined, then more neurons."""
    layers = keras.layers
    inp = keras.Input((6, 6, 2))
    a = layers.Conv2D(3, 3, padding="same", activation="relu")(inp)
    if how == "flat":  # a permuted Flatten joined to a Dense: NIR orders differ
        a = layers.Flatten()(layers.Conv2D(2, 3, activation="relu")(inp))
        b = layers.Dense(5, activation="relu")(layers.Flatten()(inp))
        x = layers.Dense(4, activation="relu")(layers.Concatenate()([a, b]))
    else:
        b = layers.Conv2D(2, 1, activation="relu")(
            layers.Rescaling(2.0, offset=0.5)(inp)
        )
        parts = [a, b, layers.Rescaling(0.5, offset=0.25)(inp)]  # a shift joined
        x = (
            layers.Concatenate()(parts)
            if how == "channels"
            else keras.ops.concatenate(parts, -1)
        )
        x = layers.Flatten()(layers.Conv2D(3, 3, activation="relu")(x))
    model = keras.Model(inp, layers.Dense(3)(x))
    set_dyadic_weights(model)
    return model


@pytest.mark.parametrize("how", ["channels", "operation", "flat"])
def test_concatenations_export(how):
    x = dyadic(np.random.default_rng(1), (4, 6, 6, 2), 0, 16, 16)
    check_export(_concatenated(how), x, neuron_layers=3)


@pytest.mark.parametrize("keepdims", [False, True])
def test_means_and_sums_over_positions_export_as_pooling(keepdims):
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.ops.mean(x, axis=(1, 2), keepdims=keepdims) + keras.ops.sum(
        keras.layers.AveragePooling2D(2)(x), axis=(-3, -2), keepdims=keepdims
    )
    x = keras.layers.Flatten()(x) if keepdims else x
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    set_dyadic_weights(model)
    check_export(model, dyadic(np.random.default_rng(1), (4, 6, 6, 2), 0, 16, 16))
    channels = keras.Model(inp, keras.layers.Dense(3)(keras.ops.mean(inp, axis=-1)))
    with pytest.raises(ValueError, match="Received: Mean of 1 tensor"):
        snnify.export_nir(snnify.Converter(channels))


def test_concatenation_along_positions_is_refused():
    inp = keras.Input((4, 4, 2))
    joined = keras.layers.Concatenate(axis=1, name="rows")([inp, inp])
    converter = snnify.Converter(keras.Model(inp, keras.layers.Conv2D(2, 3)(joined)))
    with pytest.raises(ValueError, match="'rows'.*concatenates channels"):
        snnify.export_nir(converter)


def _shifted_input_model(first, hidden) -> keras.Model:
    """``first`` (an elementwise affine layer), ``hidden`` (with ReLU), Dense."""
    inp = keras.Input((6, 6, 2))
    x = hidden(first(inp))
    flat = keras.layers.Flatten()(x) if len(x.shape) > 2 else x
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(flat))
    rng = np.random.default_rng(2)
    for layer in (model.get_layer("hidden"), model.get_layer("out")):
        layer.set_weights(
            [dyadic(rng, w.shape, -6, 8, 64) for w in layer.get_weights()]
        )
    return model


def _batch_normalization(shape=(None, 6, 6, 2)):
    norm = keras.layers.BatchNormalization(epsilon=2.0**-10)
    norm.build(shape)
    # gamma, beta, mean, variance: a = gamma / 2 and 1 / 4, b dyadic
    norm.set_weights(
        np.float32([[1, 0.5], [0.25, -0.5], [1, 0.5], [4, 4]])
        - np.float32([[0], [0], [0], [2**-10]])
    )
    return norm


def _conv(kind=keras.layers.Conv2D, **kwargs):
    return kind(3, 3, activation="relu", name="hidden", **kwargs)


@pytest.mark.parametrize(
    "first, hidden",
    [
        (lambda: keras.layers.Rescaling(1 / 16, offset=-0.5), _conv),
        (
            lambda: keras.layers.Normalization(mean=[0.5, 0.25], variance=[4.0, 0.25]),
            lambda: _conv(keras.layers.DepthwiseConv2D),
        ),
        (
            # per pixel: the shift moves with Flatten's permutation to channels first
            lambda: keras.layers.Normalization(
                axis=(1, 2, 3),
                mean=np.arange(72).reshape(6, 6, 2) / 8,
                variance=4.0 ** (np.arange(72).reshape(6, 6, 2) % 3),
            ),
            lambda: keras.Sequential(
                [keras.layers.Flatten(), keras.layers.Dense(5, activation="relu")],
                name="hidden",
            ),
        ),
        (_batch_normalization, _conv),
    ],
    ids=["rescaling", "normalization", "normalization-per-pixel", "batch-norm"],
)
def test_rescaling_and_normalization_fold_into_the_next_layer(first, hidden):
    model = _shifted_input_model(first(), hidden())
    check_export(model, dyadic(np.random.default_rng(1), (4, 6, 6, 2), 0, 16, 1))


def test_operations_export_as_their_layers():
    """``y + x``, ``keras.ops.relu``, ``* 0.5``, ``ops.reshape`` (not layers)."""
    inp = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv0")(inp)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(x)
    y = keras.ops.relu(y + x) * 0.5
    flat = keras.ops.reshape(y, (-1, 256))
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(-flat))
    set_dyadic_weights(model)
    check_export(model, dyadic_inputs(), neuron_layers=2)
    inp = keras.Input((4,))
    with pytest.warns(UserWarning, match=r"\(Multiply\) is not linear"):
        converter = snnify.Converter(keras.Model(inp, inp * inp))
    with pytest.raises(ValueError, match=r"\(Multiply\) cannot be exported"):
        snnify.export_nir(converter)


@pytest.mark.parametrize("dense", [False, True])
def test_batch_normalization_after_a_layer_folds_back_into_it(dense):
    """Conv2D (or Dense) -> BatchNormalization -> ReLU, without fold_batch_norm."""
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Flatten()(inp) if dense else inp
    x = (keras.layers.Dense(2) if dense else keras.layers.Conv2D(2, 3))(x)
    norm = _batch_normalization(x.shape)
    x = keras.layers.Activation("relu")(norm(x))
    x = x if dense else keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    weights = norm.get_weights()
    set_dyadic_weights(model)
    norm.set_weights(weights)
    check_export(model, dyadic(np.random.default_rng(1), (4, 6, 6, 2), 0, 16, 1))


def test_a_shift_that_nir_cannot_add_is_refused():
    padded = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="hidden")
    model = _shifted_input_model(keras.layers.Rescaling(0.5, offset=1.0), padded)
    with pytest.raises(ValueError, match="'hidden'.*at the padded border"):
        snnify.export_nir(snnify.Converter(model))
    inp = keras.Input((4,))
    shifted = keras.layers.Rescaling(0.5, offset=1.0)(inp)
    pooled = keras.layers.Activation("relu", name="act")(shifted)
    converter = snnify.Converter(
        keras.Model(inp, keras.layers.Dense(2)(pooled)),
        swap_activations={"relu": snnify.IntegrateAndFire()},
    )
    with pytest.raises(ValueError, match="'act.*' receives the shift"):
        snnify.export_nir(converter)
    # without a shift, Rescaling is a gain only and reaches the neurons
    inp = keras.Input((4,))
    scaled = keras.layers.Activation("relu")(keras.layers.Rescaling(0.5)(inp))
    converter = snnify.Converter(
        keras.Model(inp, keras.layers.Dense(2)(scaled)),
        swap_activations={"relu": snnify.IntegrateAndFire()},
    )
    assert "output" in snnify.export_nir(converter).nodes


def test_export_then_import_gives_identical_outputs(tmp_path):
    converter = dyadic_converter(residual_model(), per_channel=True)
    x = dyadic_inputs()
    snnify.export_nir(converter, tmp_path / "net.nir", dt=DT)
    imported = snnify.import_nir(tmp_path / "net.nir")
    out, spikes = snnify_run(converter, x)
    out_imported, spikes_imported = snnify_run(imported, x)
    np.testing.assert_array_equal(out_imported, out)
    assert [s.sum() for s in spikes_imported.values()] == [
        s.sum() for s in spikes.values()
    ]
    # the imported non-spiking model is the original one
    np.testing.assert_allclose(
        imported.model.predict(x, verbose=0),
        converter.model.predict(x, verbose=0),
        rtol=1e-6,
        atol=1e-6,
    )
    # and it exports again (its padding is a ZeroPadding2D before each
    # convolution) to a graph that computes the same
    again = snnify.export_nir(imported, dt=DT)
    np.testing.assert_array_equal(
        run_graph(again, np.moveaxis(x, -1, 1), N_STEPS)[0], out
    )


def test_round_trip_of_a_calibrated_network(seeded):
    """Weights and scales that are not powers of two: rounding, not meaning."""
    model = residual_model()
    x = np.random.default_rng(2).uniform(0, 1, (32, 8, 8, 2)).astype("float32")
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=snnify.calibrate(model, x, per_channel=True),
    )
    imported = snnify.import_nir(snnify.export_nir(converter))
    out, _ = snnify_run(converter, x, n_steps=8, dt=0.001)
    out_imported, _ = snnify_run(imported, x, n_steps=8, dt=0.001)
    # measured: 1.8e-7 of the largest output (float32 rounding of the folded
    # weights and thresholds); no spike changed
    np.testing.assert_allclose(out_imported, out, atol=1e-5 * np.abs(out).max())
    assert np.array_equal(out.mean(1).argmax(-1), out_imported.mean(1).argmax(-1))


def test_thresholds_weights_and_metadata(tmp_path):
    inp = keras.Input((2, 2, 3), name="image")
    flat = keras.layers.Flatten(name="flatten")(inp)
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(flat)
    model = keras.Model(inp, hidden)
    neuron = snnify.IntegrateAndFire(
        amplitude=0.25, min_voltage=-1.0, max_spikes_per_step=1
    )
    converter = snnify.Converter(
        model, swap_activations={"relu": neuron}, scale_firing_rates=250
    )
    snnify.export_nir(converter, tmp_path / "a.nir", dt=0.002)
    graph = nir.read(str(tmp_path / "a.nir"))
    assert graph.metadata["dt"] == 0.002 and graph.metadata["reset"] == "subtract"
    neurons = graph.nodes["l003_hidden_neurons"]
    np.testing.assert_allclose(neurons.v_threshold, 1 / (250 * 0.002))  # 2.0
    assert neurons.metadata["initial_voltage"] == 0.5
    assert neurons.metadata["min_voltage"] == -1.0
    assert neurons.metadata["max_spikes_per_step"] == 1
    imported = snnify.import_nir(graph)
    [neuron_type] = [c.neuron_type for c in imported.layers.values()
                     if getattr(c, "neuron_type", None) is not None]  # fmt: skip
    assert neuron_type.max_spikes_per_step == 1
    assert neuron_type.min_voltage == -1.0
    # the Dense kernel reads Keras's (h, w, c) order; NIR flattens (c, h, w)
    kernel = model.get_layer("hidden").get_weights()[0].reshape(2, 2, 3, 4)
    expected = kernel.transpose(2, 0, 1, 3).reshape(12, 4).T
    np.testing.assert_array_equal(graph.nodes["l002_hidden"].weight, expected)
    # the output of spiking neurons carries amplitude / (scale * dt) per spike
    np.testing.assert_allclose(graph.metadata["output_scales"]["output"], 0.25 / 0.5)
    # no v_reset: nir 1.0.4 (Sinabs's pin) cannot read files that have one
    with h5py.File(tmp_path / "a.nir") as file:
        assert not any("v_reset" in node for node in file["node/nodes"].values())


@pytest.mark.parametrize(
    "layer, shape, match",
    [
        (keras.layers.Dense(3, activation="softmax"), (4,), "softmax"),
        (keras.layers.ReLU(1.0), (4,), r"'clipped_relu'.*snnify.convert_for_steps"),
        (keras.layers.LeakyReLU(0.1), (4,), r"'leaky_relu'.*needs negative spikes"),
        (keras.layers.PReLU(), (4,), r"'prelu'.*swap_activations=\{'prelu'"),
        (keras.layers.UpSampling2D(name="up"), (4, 4, 2), "'up'.*UpSampling2D"),
        (keras.layers.Rescaling(2.0, offset=1.0), (4,), "output .* receives the shift"),
        (
            keras.Sequential(
                [
                    keras.layers.ZeroPadding2D(((0, 1), (0, 1))),
                    keras.layers.Conv2D(2, 3, dilation_rate=2, name="wide"),
                ]
            ),
            (7, 7, 2),
            r"wide'.*\(0 before, 1 after, dilation 2\)",
        ),
        (
            keras.layers.MaxPooling2D(name="max"),
            (4, 4, 2),
            "'max'.*max_to_avg_pool=True",
        ),
        # no 1D pooling at all: max_to_avg_pool would not help
        (keras.layers.MaxPooling1D(name="max1"), (6, 2), "'max1'.*supports Dense"),
        (keras.layers.ZeroPadding2D(name="pad"), (4, 4, 2), "zero-padded"),
        (  # ResNet50's stem: the max pooling is what NIR lacks
            keras.Sequential(
                [keras.layers.ZeroPadding2D(), keras.layers.MaxPooling2D(name="mp")]
            ),
            (4, 4, 2),
            "mp'.*max_to_avg_pool=True",
        ),
        (
            keras.Sequential([keras.layers.ZeroPadding2D(), keras.layers.ReLU()]),
            (4, 4, 2),
            "re_lu.*zero-padded",
        ),
        (keras.layers.AveragePooling1D(2, name="pool"), (6, 2), "'pool'.*Pooling1D"),
    ],
)
def test_refusals_name_the_layer(layer, shape, match):
    inp = keras.Input(shape)
    converter = snnify.Converter(keras.Model(inp, layer(inp)))
    with pytest.raises(ValueError, match=match):
        snnify.export_nir(converter)


def test_rate_neurons_are_refused():
    inp = keras.Input((4,))
    converter = snnify.Converter(
        keras.Model(inp, keras.layers.Dense(2, activation="relu", name="d")(inp))
    )
    with pytest.raises(ValueError, match="'d.neurons' are RectifiedLinear"):
        snnify.export_nir(converter)


@pytest.mark.parametrize(
    "neuron, match",
    [
        (snnify.SignedIntegrateAndFire(), "'d.neurons' are SignedIntegrateAndFire"),
        (
            snnify.IntegrateAndFire(negative_slope=0.1),
            "'d.neurons' also fire for the negative part",
        ),
        (
            snnify.IntegrateAndFire(negative_slope=[0.0, 0.1]),
            "'d.neurons' also fire for the negative part",
        ),
    ],
    ids=["signed", "negative_slope", "per-channel-slopes"],
)
def test_neurons_with_negative_spikes_are_refused(neuron, match):
    inp = keras.Input((4,))
    converter = snnify.Converter(
        keras.Model(inp, keras.layers.Dense(2, activation="relu", name="d")(inp)),
        swap_activations={"relu": neuron},
    )
    with pytest.raises(ValueError, match=match):
        snnify.export_nir(converter)


def test_lif_exports_with_a_warning_about_its_refractory_period():
    inp = keras.Input((4,))
    converter = snnify.Converter(
        keras.Model(inp, keras.layers.Dense(2, activation="relu", name="d")(inp)),
        swap_activations={"relu": snnify.LIF(tau_rc=0.03, initial_voltage=0.0)},
        synapse=0.005,
    )
    with pytest.warns(UserWarning, match="tau_ref=0.002"):
        graph = snnify.export_nir(converter)
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"LIF", "LI"}
    imported = snnify.import_nir(graph)
    neurons = imported.layers[imported.model.layers[-1]]
    assert neurons.neuron_type == snnify.LIF(
        tau_rc=0.03, tau_ref=0.002, initial_voltage=0.0
    )
    assert any(type(n).__name__ == "SynapseNode" for n in imported.net.nodes)


def test_a_failed_export_leaves_the_previous_file(tmp_path, monkeypatch):
    converter = dyadic_converter(residual_model())
    path = tmp_path / "net.nir"
    path.write_bytes(b"previous")

    def broken_write(filename, graph, **kwargs):
        with open(filename, "wb") as file:
            file.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        snnify.export_nir(converter, path)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["net.nir"]


def test_import_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match="No NIR file"):
        snnify.import_nir(tmp_path / "missing.nir")
    weight = np.eye(2, dtype="float32")
    recurrent = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "fc": nir.Affine(weight=weight, bias=np.zeros(2, "float32")),
            "if": nir.IF(r=np.ones(2, "float32"), v_threshold=np.ones(2, "float32")),
            "back": nir.Affine(weight=weight, bias=np.zeros(2, "float32")),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "fc"), ("fc", "if"), ("if", "back"), ("back", "fc"),
               ("if", "output")],
    )  # fmt: skip
    with pytest.raises(ValueError, match="cycle"):
        snnify.import_nir(recurrent)
    delayed = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "delay": nir.Delay(delay=np.ones(2, "float32")),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "delay"), ("delay", "output")],
    )
    with pytest.raises(ValueError, match="'delay' is a Delay"):
        snnify.import_nir(delayed)


def test_min_voltage_bounds_the_voltage_after_the_reset():
    neuron = snnify.IntegrateAndFire(initial_voltage=0.5, min_voltage=-1.0)
    state = neuron.initial_state((3,), np.random.default_rng(0))
    out, state = neuron.step(np.array([-3000.0, 1500.0, -200.0]), state, dt=0.001)
    np.testing.assert_allclose(state["voltage"], [-1.0, 0.0, 0.3], atol=1e-6)
    np.testing.assert_allclose(out, [0.0, 2000.0, 0.0])
    assert snnify.IntegrateAndFire.from_config(neuron.get_config()) == neuron
    with pytest.raises(ValueError, match="min_voltage must be None or a number <= 0"):
        snnify.IntegrateAndFire(min_voltage=0.5)
