"""Operations that are not layers: ``x + y``, ``x * 2.0``, ``keras.ops.relu(x)``...

A functional model records them as Keras operations; they convert as the
layers that compute the same (checked as in ``test_rules.check``).
"""

import warnings

import keras
import numpy as np
import pytest
from test_rules import check

import snnify
from snnify.graph import FunctionNode, LayerNode, NeuronsNode
from snnify.swaps import describe

ops = keras.ops


def _residual(with_operations: bool) -> keras.Model:
    """Conv, ReLU, conv + skip, ReLU, mean, Dense: as operations or as layers."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv0")(inp)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv1")
    if with_operations:
        x = ops.relu(x)
        x = ops.relu(y(x) + x)
        x = ops.mean(x, axis=(1, 2)) * 2.0
    else:
        x = keras.layers.ReLU()(x)
        x = keras.layers.ReLU()(keras.layers.Add()([y(x), x]))
        x = keras.layers.Rescaling(2.0)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


@pytest.mark.parametrize(
    "operation",
    [
        lambda x, y: x + y,
        lambda x, y: x - 0.5 * y,
        lambda x, y: -x / 4.0,
        lambda x, y: 1.0 - x,
        lambda x, y: ops.concatenate([x, y], axis=-1),
        lambda x, y: ops.reshape(
            ops.transpose(ops.reshape(x, (-1, 2, 3)), (0, 2, 1)), (-1, 6)
        ),
        lambda x, y: ops.sum(ops.expand_dims(x, 1), axis=-1),
        lambda x, y: ops.squeeze(ops.expand_dims(x, 1), axis=1) + ops.mean(y, -1, keepdims=True),
    ],
    ids=["add", "scaled-subtract", "negative-divide", "constant-minus", "concatenate",
         "reshape-transpose", "expand-sum", "squeeze-mean"],
)  # fmt: skip
def test_linear_operations_convert_exactly(operation):
    inp = keras.Input((4,))
    x = keras.layers.Dense(6, activation="relu", name="a")(inp)
    y = keras.layers.Dense(6, name="b")(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(operation(x, y)))
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", UserWarning
        )  # no fallback warning: each has a rule
        converter = check(model)
    assert all(
        type(n.layer).__name__ == "OperationLayer"
        for n in converter.net.nodes
        if isinstance(n, LayerNode) and n.layer.name not in ("a_snn", "b_snn")
        and not isinstance(n.layer, keras.layers.Dense)
    )  # fmt: skip


def test_relu_and_residual_operations_spike_as_their_layers():
    """keras.ops.relu becomes neurons; both models spike alike, step by step."""
    x = np.random.default_rng(0).uniform(0, 1, (8, 6, 6, 2)).astype("float32")
    outputs, neurons = [], []
    for with_operations in (True, False):
        model = _residual(with_operations)
        converter = snnify.Converter(
            model,
            swap_activations={"relu": snnify.IntegrateAndFire()},
            scale_firing_rates=200,
        )
        neurons.append(sum(isinstance(n, NeuronsNode) for n in converter.net.nodes))
        with snnify.Simulator(converter.net, progress_bar=False) as sim:
            data = sim.predict(x[:, None], n_steps=10)
        outputs.append(data[converter.outputs[model.output]])
    assert neurons == [2, 2]
    assert np.abs(outputs[0]).max() > 0
    # the same sums in another order: float32 rounding at most
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_activation_operations_convert_as_activation_layers():
    inp = keras.Input((4,))
    x = ops.leaky_relu(keras.layers.Dense(6)(inp))
    model = keras.Model(inp, ops.softmax(keras.layers.Dense(3)(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        converter = check(model)
    functions = [n for n in converter.net.nodes if isinstance(n, FunctionNode)]
    assert [describe(n.function) for n in functions] == ["'leaky_relu'", "'softmax'"]
    # not keras.activations.gelu's default (approximate=False): no activation
    gelu = keras.Model(inp, keras.layers.Dense(3)(ops.gelu(inp, approximate=True)))
    with pytest.warns(UserWarning, match=r"\(Gelu\) is not linear"):
        check(gelu)


def test_options_keyed_by_an_operation_reach_its_neurons():
    model = _residual(with_operations=True)
    second = _operation_outputs(model)[1]
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates={second: 7.0},
    )
    scales = sorted(
        float(n.scale) for n in converter.net.nodes if isinstance(n, NeuronsNode)
    )
    assert scales == [1.0, 7.0]
    assert converter.layers[second].scale == 7.0


def _operation_outputs(model) -> list:
    """The output tensors of the model's ReLU operations, in order."""
    return [
        node.outputs[0]
        for depth in sorted(model._nodes_by_depth, reverse=True)
        for node in model._nodes_by_depth[depth]
        if type(node.operation).__name__ == "Relu"
    ]


def test_a_nonlinear_operation_is_applied_exactly_or_refused():
    inp = keras.Input((4,))
    x = keras.layers.Dense(6, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(x * ops.exp(-x)))
    with pytest.warns(
        UserWarning, match=r"'multiply(_\d+)?' \(Multiply\) is not linear"
    ):
        check(model)
    with pytest.raises(TypeError, match=r"'exp(_\d+)?' \(Exp\) cannot be converted"):
        snnify.Converter(model, allow_fallback=False)
    square = keras.Model(inp, keras.layers.Dense(3)(x * x))  # one tensor, read twice
    with pytest.raises(TypeError, match=r"\(Multiply\) cannot be converted"):
        snnify.Converter(square, allow_fallback=False)


def test_measure_counts_through_sums_and_reshapes():
    inp = keras.Input((4,))
    x = keras.layers.Dense(6, activation="relu")(inp)
    y = keras.layers.Dense(6, activation="relu")(inp)
    z = ops.reshape((x + y) * 0.5 - 1.0, (-1, 2, 3))  # - 1.0: a bias of what follows
    z = ops.transpose(ops.concatenate([z, -z], axis=1), (0, 2, 1))  # (3, 4)
    summed = ops.mean(z, axis=-1)  # each of x's and y's neurons reaches one of 3
    model = keras.Model(
        inp, [keras.layers.Dense(3)(summed), keras.layers.Dense(2)(ops.sum(z, 1))]
    )
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=50,
    )
    x_data = np.random.default_rng(0).uniform(0, 1, (16, 4)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "not counted" would be a warning
        stats = snnify.measure(converter, x_data, 10)
    # a neuron reaches 2 elements of z (z and -z): through the mean each is read
    # by the 3 units of the first Dense, through the sum by the 2 of the second
    assert [layer.fan_out for layer in stats.layers] == [10.0, 10.0]


def test_operations_along_the_batch_axis_are_refused():
    inp = keras.Input((4,))
    for mixed in (ops.mean(inp, axis=0), ops.sum(inp)):
        with pytest.raises(ValueError, match="along the batch axis"):
            snnify.Converter(keras.Model(inp, mixed))


@pytest.mark.slow
def test_keras_applications_that_compute_with_operations():
    """ConvNeXt adds with ``+``; MobileNetV3 computes ``x + 3.0`` and ``* (1 / 6)``."""
    for build in (keras.applications.ConvNeXtTiny, keras.applications.MobileNetV3Small):
        model = build(weights=None, input_shape=(32, 32, 3), classes=10)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            converter = snnify.Converter(model)
        operations = [n for n in converter.net.nodes if isinstance(n, LayerNode)
                      and type(n.layer).__name__ == "OperationLayer"]  # fmt: skip
        assert operations
        assert not any("is not linear" in str(w.message) for w in caught)
        # measured 1.6e-6 (ConvNeXt) and 0 (MobileNetV3): float32 sums, many layers
        assert converter.verify(rtol=1e-4)


def test_a_saved_network_with_operations_loads_and_predicts_identically(tmp_path):
    model = _residual(with_operations=True)
    x = np.random.default_rng(0).uniform(0, 1, (16, 6, 6, 2)).astype("float32")
    converter = snnify.convert_for_steps(model, x, n_steps=4)
    # a different scale per neuron layer, so that a mix-up shows
    scales = [n.scale for n in converter.net.nodes if isinstance(n, NeuronsNode)]
    assert len(scales) == 2 and not np.allclose(np.mean(scales[0]), np.mean(scales[1]))
    snnify.save_network(converter, tmp_path / "net.keras", n_steps=4)
    loaded = snnify.load_network(tmp_path / "net.keras").converter
    outputs = []
    for c in (converter, loaded):
        with snnify.Simulator(c.net, progress_bar=False) as sim:
            outputs.append(
                sim.predict(x[:, None], n_steps=4)[c.outputs[c.model.output]]
            )
    assert np.abs(outputs[0]).max() > 0
    np.testing.assert_array_equal(outputs[1], outputs[0])


def test_quantize_model_turns_relu_operations_into_calibrated_qcfs():
    x = np.random.default_rng(0).uniform(0, 1, (32, 6, 6, 2)).astype("float32")
    thresholds, outputs = [], []
    for with_operations in (True, False):
        model = _residual(with_operations)
        quantized = snnify.quantize_model(model, 4, x)
        qcfs = [layer for layer in quantized.layers if isinstance(layer, snnify.QCFS)]
        thresholds.append(sorted(float(layer.threshold) for layer in qcfs))
        outputs.append(quantized.predict(x, verbose=0))
    assert len(thresholds[0]) == 2
    np.testing.assert_allclose(thresholds[0], thresholds[1], rtol=1e-6)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    quantized = snnify.quantize_model(_residual(with_operations=True), 4, x)
    converter = snnify.convert_quantized(quantized, n_steps=4)
    assert sum(isinstance(n, NeuronsNode) for n in converter.net.nodes) == 2


def test_operations_in_a_temporal_model():
    inp = keras.Input((None, 3))
    x = keras.layers.Dense(4, name="a")(inp)
    y = ops.relu(x + keras.layers.Dense(4, name="b")(inp)) * 0.5
    check(keras.Model(inp, keras.layers.Dense(2)(y)))
    over_time = keras.Model(inp, ops.cumsum(x, axis=1))
    with pytest.warns(UserWarning, match=r"\(Cumsum\) is not linear"):
        with pytest.raises(ValueError, match=r"of type Cumsum does not act on each"):
            snnify.Converter(over_time)
