"""QCFS in place of activations other than ReLU: ``replace="all"`` or by name."""

import keras
import numpy as np
import pytest

import snnify
from snnify.layers import QCFS


def mixed_model(output_activation="sigmoid"):
    """Every kind of hidden activation; by default a sigmoid output."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    x = keras.layers.Dense(8, activation="gelu", name="gelu")(inp)
    x = keras.layers.Dense(8, name="leaky_dense")(x)
    x = keras.layers.LeakyReLU(name="leaky")(x)
    x = keras.layers.Dense(8, name="prelu_dense")(x)
    x = keras.layers.PReLU(name="prelu")(x)
    x = keras.layers.Dense(8, name="elu_dense")(x)
    x = keras.layers.ELU(name="elu")(x)
    x = keras.layers.Dense(8, name="silu_dense")(x)
    x = keras.ops.silu(x)
    x = keras.layers.Dense(8, activation="relu", name="relu")(x)
    x = keras.layers.Dense(8, name="tanh_dense")(x)
    x = keras.layers.Activation("tanh", name="tanh")(x)
    out = keras.layers.Dense(3, activation=output_activation, name="out")(x)
    return keras.Model(inp, out)


def clipped_twin(model, threshold):
    """``model`` with ``ReLU(max_value=threshold)`` for each hidden activation."""
    inp = keras.Input((6,))
    x = inp
    for _ in range(7):
        x = keras.layers.Dense(8)(x)
        x = keras.layers.ReLU(max_value=threshold)(x)
    twin = keras.Model(inp, keras.layers.Dense(3, activation="sigmoid")(x))
    dense = [la for la in model.layers if isinstance(la, keras.layers.Dense)]
    twin_dense = [la for la in twin.layers if isinstance(la, keras.layers.Dense)]
    for original, copy in zip(dense, twin_dense, strict=True):
        copy.set_weights(original.get_weights())
    return twin


def qcfs_names(model):
    return [layer.name for layer in model.layers if isinstance(layer, QCFS)]


def test_all_replaces_every_hidden_activation_and_keeps_the_output():
    model = mixed_model()
    quantized = snnify.quantize_model(
        model, levels=10000, initial_threshold=2.0, replace="all"
    )
    assert len(qcfs_names(quantized)) == 7
    assert {"leaky_qcfs", "prelu_qcfs", "elu_qcfs", "tanh_qcfs"} <= set(
        qcfs_names(quantized)
    )
    for name in ("gelu", "relu"):
        assert quantized.get_layer(name).get_config()["activation"] == "linear"
    assert quantized.get_layer("out").get_config()["activation"] == "sigmoid"
    assert not any(
        isinstance(la, (keras.layers.PReLU, keras.layers.LeakyReLU, keras.layers.ELU))
        for la in quantized.layers
    )
    # 10,000 levels up to 2: each activation is a ReLU clipped at 2, to
    # within half a level (1e-4) per layer
    x = np.random.default_rng(1).normal(0, 2, (64, 6)).astype("float32")
    want = clipped_twin(model, 2.0).predict(x, verbose=0)
    got = quantized.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert np.abs(model.predict(x, verbose=0) - want).max() > 0.01  # not the same


def test_replace_by_name_and_relu_by_default():
    model = mixed_model()
    assert qcfs_names(snnify.quantize_model(model)) == ["relu_qcfs"]
    quantized = snnify.quantize_model(model, replace=["gelu", "prelu"])
    assert qcfs_names(quantized) == ["gelu_qcfs", "prelu_qcfs"]
    assert isinstance(quantized.get_layer("leaky"), keras.layers.LeakyReLU)
    assert quantized.get_layer("relu").get_config()["activation"] == "relu"
    # "relu" names the clipped forms too, as the default does
    quantized = snnify.quantize_model(model, replace=["relu", "tanh"])
    assert qcfs_names(quantized) == ["relu_qcfs", "tanh_qcfs"]


def test_thresholds_start_at_the_percentile_of_each_activation():
    model = mixed_model()
    x = np.random.default_rng(2).normal(0, 2, (256, 6)).astype("float32")
    quantized = snnify.quantize_model(
        model, calibration_data=x, percentile=100, replace="all"
    )
    for name, qcfs in [
        ("gelu", "gelu_qcfs"),
        ("prelu", "prelu_qcfs"),
        ("tanh", "tanh_qcfs"),
    ]:
        activations = keras.Model(model.inputs, model.get_layer(name).output)
        largest = activations.predict(x, verbose=0).max()
        got = quantized.get_layer(qcfs).threshold
        assert float(keras.ops.convert_to_numpy(got)) == pytest.approx(
            float(largest), rel=1e-5
        )


def test_fine_tuned_network_without_relus_spikes_as_it_computes():
    # logits: a sigmoid applied at every step would average sigmoids
    model = mixed_model(output_activation=None)
    model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, (128, 6)).astype("float32")
    y = (x[:, :3] > 0).astype("float32")
    quantized, _ = snnify.fine_tune(
        model, x, y, levels=4, epochs=1, batch_size=32, verbose=0, replace="all"
    )
    converter = snnify.convert_quantized(quantized, n_steps=4)
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        out = sim.predict(np.tile(x[:, None], (1, 4, 1)), n_steps=4)
    got = out[converter.outputs[quantized.outputs[0]]].mean(axis=1)
    want = quantized.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    "replace", ["everything", ["softmax"], ["relu", "no_such"], [], [3]]
)
def test_bad_replace_is_refused(replace):
    with pytest.raises(ValueError, match="replace must be 'relu', 'all' or a list"):
        snnify.quantize_model(mixed_model(), replace=replace)


def test_nothing_to_replace_names_the_fix():
    inp = keras.Input((4,))
    gelu = keras.Model(inp, keras.layers.Dense(2, activation="gelu")(inp))
    with pytest.raises(ValueError, match="replace='all'"):
        snnify.quantize_model(gelu)
    hidden = keras.layers.Dense(3, activation="gelu")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(hidden))
    with pytest.raises(ValueError, match=r"replace=\['tanh'\] selects"):
        snnify.quantize_model(model, replace=["tanh"])
    # an output activation is kept, so a model with only that has nothing
    with pytest.raises(ValueError, match="replace='all' selects"):
        snnify.quantize_model(gelu, replace="all")


def test_activations_inside_a_recurrence_are_kept():
    inp = keras.Input((5, 4))
    x = keras.layers.SimpleRNN(8, activation="relu", name="rnn")(inp)
    x = keras.layers.Dense(8, activation="gelu", name="gelu")(x)
    model = keras.Model(inp, keras.layers.Dense(2)(x))
    quantized = snnify.quantize_model(model, replace="all")
    assert qcfs_names(quantized) == ["gelu_qcfs"]
    assert quantized.get_layer("rnn").get_config()["activation"] == "relu"


def test_activations_at_every_position_are_replaced():
    # before: the ReLU of a TimeDistributed(Dense) stayed, and
    # convert_quantized asked for calibration data for it
    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 4))
    x = keras.layers.TimeDistributed(
        keras.layers.Dense(8, activation="relu"), name="positions"
    )(inp)
    x = keras.layers.TimeDistributed(keras.layers.ReLU(6.0), name="relu6")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(6, activation="gelu"))(x)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    quantized = snnify.quantize_model(model, replace="all", initial_threshold=8.0)
    assert qcfs_names(quantized) == [
        "positions_qcfs",
        "relu6_qcfs",
        "time_distributed_qcfs",
    ]
    assert quantized.get_layer("positions").layer.get_config()["activation"] == (
        "linear"
    )
    assert "relu6" not in [layer.name for layer in quantized.layers]
    threshold = quantized.get_layer("relu6_qcfs").threshold
    assert float(keras.ops.convert_to_numpy(threshold)) == 6.0  # clipped there
    converter = snnify.convert_quantized(quantized, n_steps=4)
    x = np.random.default_rng(0).normal(0, 1, (16, 5, 4)).astype("float32")
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        out = sim.predict(np.tile(x[:, None], (1, 4, 1, 1)), n_steps=4)
    got = out[converter.outputs[quantized.outputs[0]]].mean(axis=1)
    np.testing.assert_allclose(got, quantized.predict(x, verbose=0), atol=1e-5)
