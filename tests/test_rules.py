"""Every supported layer type converts exactly (``Converter.verify``), and refusals.

``verify`` runs ``model.predict`` on the original Keras model and the network's
rate computation on the same inputs, and raises ``ValueError`` above a relative
error of 1e-5. Each model below gets random weights (non-zero biases,
non-trivial BatchNormalization statistics), so a rule that dropped a bias, an
option or an activation would fail.
"""

import warnings

import keras
import numpy as np
import pytest
from reference import ZeroInitLayers

import snnify
from snnify.graph import FunctionNode, NeuronsNode

RTOL = 1e-5
layers = ZeroInitLayers()  # keras.layers; the tests set the weights


def randomize(model, seed=0):
    """Give every weight of ``model`` random, non-trivial values."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            shape = tuple(weight.shape)
            name = weight.path.split("/")[-1]
            if "variance" in name:
                values.append(rng.uniform(0.5, 2.0, shape))
            elif name == "gamma":
                values.append(rng.uniform(0.5, 1.5, shape))
            else:
                values.append(rng.normal(0, 0.5, shape))
        if values:
            layer.set_weights([v.astype("float32") for v in values])
    return model


def check(model, seed=0, inputs=None, **options):
    """Convert ``model`` with random weights and check it against Keras.

    ``options`` go to the Converter.
    """
    randomize(model, seed)
    if inputs is None:
        rng = np.random.default_rng(seed + 1)
        inputs = [
            # batch 8 as verify's default inputs, so the second call compiles nothing
            rng.normal(0, 1, (8, *[5 if d is None else d for d in t.shape[1:]])).astype(
                "float32"
            )
            for t in model.inputs
        ]
    inputs = inputs if isinstance(inputs, list) else [inputs]
    converter = snnify.Converter(model, **options)
    assert converter.verify(inputs, rtol=RTOL)
    assert converter.verify(rtol=RTOL)  # the default inputs, uniform in [0, 1)
    check_scan(converter, inputs)
    return converter


def check_scan(converter, inputs, n_steps=2):
    """The simulator's scan gives Keras's outputs at every step.

    In a temporal model the model's time axis is the steps: step ``t`` of the
    scan gives Keras's output at time ``t``.
    """
    expected = converter.model.predict(
        inputs if len(inputs) > 1 else inputs[0], verbose=0
    )
    expected = expected if isinstance(expected, list) else [expected]
    nodes = [converter.inputs[t] for t in converter.model.inputs]
    temporal = converter.temporal_model
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        data = sim.predict(
            {n: x if temporal else x[:, None] for n, x in zip(nodes, inputs)},
            None if temporal else n_steps,
        )
    outputs = [converter.outputs[t] for t in converter.model.outputs]
    assert len(outputs) == len(expected)
    for probe, want in zip(outputs, expected):
        scale = max(np.abs(want).max(), 1e-12)
        if temporal:
            assert np.abs(data[probe].reshape(want.shape) - want).max() <= RTOL * scale
            continue
        got = data[probe].reshape((len(want), n_steps, *want.shape[1:]))
        for step in range(n_steps):
            assert np.abs(got[:, step] - want).max() <= RTOL * scale


def branches(input_shape, *make_layers):
    """A model applying each layer (or list of layers) to the same input."""
    inp = keras.Input(input_shape)
    outputs = []
    for make in make_layers:
        x = inp
        for layer in make if isinstance(make, list) else [make]:
            x = layer(x)
        outputs.append(x)
    return keras.Model(inp, outputs)


# --- one model per layer type, with its options as parallel branches ----------

CASES = {
    "Dense": lambda: branches(
        (6,),
        [layers.Dense(5, activation="relu"), layers.Dense(3)],
        layers.Dense(4, use_bias=False, activation="relu"),
    ),
    "Dense_on_sequence": lambda: branches((4, 6), layers.Dense(3, activation="relu")),
    "EinsumDense": lambda: branches(
        (6,),
        layers.EinsumDense(
            "ab,bc->ac", output_shape=4, bias_axes="c", activation="relu"
        ),
    ),
    "activation_arguments": lambda: branches(
        (6,),
        *[
            layers.Dense(4, activation=a)
            for a in [
                "relu",
                keras.activations.relu,
                keras.ops.relu,
                None,
                "tanh",
                "softmax",
                "relu6",
                "leaky_relu",
                "gelu",
            ]
        ],
    ),
    "Activation": lambda: branches(
        (3, 5),
        layers.Activation("relu"),
        layers.Activation(keras.ops.relu),
        layers.Activation("softmax"),
        layers.Activation("tanh"),
        layers.Activation("linear"),
    ),
    "ReLU": lambda: branches(
        (7,),
        layers.ReLU(),
        layers.ReLU(max_value=0.5),
        layers.ReLU(negative_slope=0.2),
        layers.ReLU(threshold=0.3),
    ),
    "Dropout": lambda: branches(
        (8, 3),
        [layers.Dropout(0.5), layers.Dense(2)],
        layers.SpatialDropout1D(0.5),
    ),
    "SpatialDropout2D": lambda: branches((5, 5, 3), layers.SpatialDropout2D(0.5)),
    "SpatialDropout3D": lambda: branches((3, 3, 2, 2), layers.SpatialDropout3D(0.5)),
    "Identity": lambda: branches((4,), [layers.Identity(), layers.Dense(2)]),
    "Conv1D": lambda: branches(
        (12, 3),
        layers.Conv1D(4, 3, strides=2, padding="same", activation="relu"),
        layers.Conv1D(2, 2, strides=3, padding="valid"),
        layers.Conv1D(3, 3, dilation_rate=2, padding="same", activation="relu"),
        layers.Conv1D(4, 3, padding="causal", use_bias=False),
    ),
    "Conv2D": lambda: branches(
        (9, 8, 3),
        layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(2, (3, 2), strides=(2, 1), padding="valid"),
        layers.Conv2D(3, 3, dilation_rate=2, padding="same", activation="relu"),
        layers.Conv2D(3, 2, dilation_rate=(2, 1), padding="valid", use_bias=False),
        layers.Conv2D(6, 3, groups=3, padding="same"),
    ),
    "Conv3D": lambda: branches(
        (5, 5, 4, 2), layers.Conv3D(3, 2, strides=(1, 2, 1), activation="relu")
    ),
    "ConvTranspose": lambda: branches(
        (6, 2),
        layers.Conv1DTranspose(3, 3, strides=2, padding="same", activation="relu"),
        [layers.Reshape((3, 2, 2)), layers.Conv2DTranspose(3, 3, strides=2)],
        [layers.Reshape((3, 1, 2, 2)), layers.Conv3DTranspose(2, 2, padding="same")],
    ),
    "DepthwiseConv": lambda: branches(
        (10, 3),
        layers.DepthwiseConv1D(3, depth_multiplier=2, activation="relu"),
        [
            layers.Reshape((5, 2, 3)),
            layers.DepthwiseConv2D(2, strides=1, padding="same", activation="relu"),
        ],
    ),
    "SeparableConv": lambda: branches(
        (10, 3),
        layers.SeparableConv1D(4, 3, activation="relu"),
        [layers.Reshape((5, 2, 3)), layers.SeparableConv2D(4, 2, padding="same")],
    ),
    "AveragePooling1D": lambda: branches(
        (10, 3),
        layers.AveragePooling1D(2),
        layers.AveragePooling1D(3, strides=2, padding="same"),
    ),
    "AveragePooling2D": lambda: branches(
        (7, 7, 2),
        layers.AveragePooling2D(2),
        layers.AveragePooling2D(3, strides=2, padding="same"),
        layers.AveragePooling2D((2, 3), strides=1),
    ),
    "AveragePooling3D": lambda: branches((4, 4, 4, 2), layers.AveragePooling3D(2)),
    "GlobalAveragePooling": lambda: branches(
        (5, 6, 3),
        layers.GlobalAveragePooling2D(),
        layers.GlobalAveragePooling2D(keepdims=True),
        [layers.Reshape((30, 3)), layers.GlobalAveragePooling1D()],
        [layers.Reshape((30, 3)), layers.GlobalAveragePooling1D(keepdims=True)],
        [layers.Reshape((5, 3, 2, 3)), layers.GlobalAveragePooling3D()],
    ),
    "BatchNormalization": lambda: branches(
        (5, 4, 3),
        [layers.Dense(6), layers.BatchNormalization(), layers.Activation("relu")],
        [layers.Conv2D(4, 3), layers.BatchNormalization(), layers.ReLU()],
        layers.BatchNormalization(axis=1, epsilon=0.1),
        layers.BatchNormalization(center=False, scale=False),
    ),
    "Flatten_Reshape_Permute": lambda: branches(
        (3, 4, 2),
        [layers.Flatten(), layers.Dense(3, activation="relu")],
        layers.Reshape((4, 6)),
        layers.Reshape((-1, 2)),
        layers.Permute((2, 1, 3)),
    ),
    "ZeroPadding": lambda: branches(
        (4, 5, 2),
        layers.ZeroPadding2D(1),
        [layers.ZeroPadding2D(((1, 2), (0, 1))), layers.Conv2D(2, 3)],
        [layers.Reshape((20, 2)), layers.ZeroPadding1D((2, 1))],
        [layers.Reshape((2, 2, 5, 2)), layers.ZeroPadding3D(1)],
    ),
    "MaxPooling1D": lambda: branches(
        (10, 3),
        layers.MaxPooling1D(2),
        layers.MaxPooling1D(3, strides=2, padding="same"),
        layers.MaxPooling1D(2, data_format="channels_first"),
    ),
    "MaxPooling2D": lambda: branches(
        (7, 7, 2),
        [layers.Conv2D(3, 2, activation="relu"), layers.MaxPooling2D(2)],
        layers.MaxPooling2D(3, strides=2, padding="same"),
        layers.MaxPooling2D((2, 3), strides=1),
        layers.MaxPooling2D(2, padding="same", data_format="channels_first"),
    ),
    "MaxPooling3D": lambda: branches(
        (4, 5, 4, 2),
        layers.MaxPooling3D(2),
        layers.MaxPooling3D((2, 3, 2), strides=1, padding="same"),
    ),
    "GlobalMaxPooling": lambda: branches(
        (5, 6, 3),
        layers.GlobalMaxPooling2D(),
        layers.GlobalMaxPooling2D(keepdims=True),
        layers.GlobalMaxPooling2D(data_format="channels_first"),
        [layers.Reshape((30, 3)), layers.GlobalMaxPooling1D()],
        [layers.Reshape((5, 3, 2, 3)), layers.GlobalMaxPooling3D(keepdims=True)],
    ),
    "AdaptivePooling": lambda: branches(
        (7, 5, 2),
        layers.AdaptiveMaxPooling2D((3, 2)),
        layers.AdaptiveAveragePooling2D((3, 2), data_format="channels_first"),
        [layers.Reshape((35, 2)), layers.AdaptiveMaxPooling1D(4)],
    ),
    "activation_layers": lambda: branches(
        (4, 5),
        layers.LeakyReLU(0.1),
        layers.PReLU(),
        layers.PReLU(shared_axes=[1]),
        layers.ELU(0.5),
        layers.Softmax(),
        layers.Softmax(axis=1),
        layers.Activation("swish"),
        layers.ReLU(max_value=6.0),
        layers.ReLU(max_value=2.0, negative_slope=0.1),
    ),
    "normalization_by_statistics": lambda: branches(
        (4, 6),
        layers.LayerNormalization(),
        layers.GroupNormalization(groups=3),
        layers.UnitNormalization(),
        layers.RMSNormalization(),
    ),
    "noise_and_regularization": lambda: branches(
        (6,),
        layers.GaussianNoise(0.3),
        layers.GaussianDropout(0.3),
        layers.AlphaDropout(0.3),
        layers.ActivityRegularization(0.1, 0.1),
    ),
    "preprocessing": lambda: branches(
        (3, 2),
        layers.Rescaling(0.5, offset=0.25),
        layers.Normalization(mean=[0.5, -1.0], variance=[2.0, 0.5]),
    ),
    "image_preprocessing": lambda: branches(
        (8, 8, 3),
        layers.Resizing(5, 6),
        layers.Resizing(10, 12, interpolation="nearest"),
        layers.CenterCrop(4, 6),
        layers.RandomFlip(),
        layers.RandomRotation(0.2),
        layers.RandomZoom(0.2),
        layers.RandomContrast(0.2),
        layers.RandAugment(value_range=(-3, 3)),
    ),
    "UpSampling": lambda: branches(
        (3, 4, 2),
        layers.UpSampling2D(2),
        layers.UpSampling2D((2, 3), data_format="channels_first"),
        layers.UpSampling2D(2, interpolation="bilinear"),
        [layers.Reshape((3, 2, 2, 2)), layers.UpSampling3D((1, 2, 3))],
        [
            layers.Reshape((3, 2, 2, 2)),
            layers.UpSampling3D(2, data_format="channels_first"),
        ],
        [layers.Flatten(), layers.RepeatVector(3)],
    ),
    "Cropping_UpSampling": lambda: branches(
        (6, 6, 2),
        layers.Cropping2D(((1, 0), (2, 1))),
        [layers.Reshape((36, 2)), layers.Cropping1D((1, 2))],
        [layers.Reshape((3, 2, 6, 2)), layers.Cropping3D(((1, 1), (0, 1), (2, 0)))],
        [layers.Reshape((36, 2)), layers.UpSampling1D(2)],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_converts_exactly(name):
    check(CASES[name]())


def test_adapted_normalization_keeps_its_statistics():
    # adapt() leaves the mean and variance as tensors derived from the layer's
    # weights; copying the weights alone left a copy normalising with 0 and 1
    x = np.random.default_rng(0).uniform(0, 255, (64, 3, 2)).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(x)
    inp = keras.Input((3, 2))
    model = keras.Model(inp, keras.layers.Dense(4, activation="relu")(norm(inp)))
    assert snnify.Converter(model).verify(x[:8], rtol=RTOL)
    quantized = snnify.quantize_model(model, calibration_data=x)
    copy = [la for la in quantized.layers if isinstance(la, type(norm))][0]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(copy(x)), keras.ops.convert_to_numpy(norm(x))
    )


def test_augmentation_converts_without_warnings_and_augments_while_training():
    inp = keras.Input((4, 4, 1))
    flip = layers.RandomFlip("horizontal", seed=0)
    model = keras.Model(inp, layers.Flatten()(flip(inp)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no conversion rule" fallback
        converter = snnify.Converter(model)
    x = np.arange(64 * 16, dtype="float32").reshape(64, 1, 4, 4, 1)
    name = converter.inputs[inp].name
    probe = converter.outputs[model.outputs[0]]
    rates = {
        training: keras.ops.convert_to_numpy(
            converter.net.compute_rates({name: x}, [probe], training=training)[
                probe.name
            ]
        )[:, 0]
        for training in (False, True)
    }
    np.testing.assert_array_equal(rates[False], x.reshape(64, 16))
    flipped = x[:, 0, :, ::-1].reshape(64, 16)
    same = np.all(rates[True] == x.reshape(64, 16), axis=1)
    assert same.any() and not same.all()  # some flipped, some not
    np.testing.assert_array_equal(rates[True][~same], flipped[~same])


def test_merge_layers():
    inp = keras.Input((3, 4))
    a, b, c = [layers.Dense(4, activation="relu")(inp) for _ in range(3)]
    outputs = [
        layers.Add()([a, b]),
        layers.Add()([a, b, c]),
        layers.Subtract()([a, c]),
        layers.Average()([a, b, c]),
        layers.Concatenate()([a, b]),
        layers.Concatenate(axis=1)([a, b, c]),
        layers.Multiply()([a, b, c]),
        layers.Maximum()([a, b]),
        layers.Minimum()([a, b, c]),
    ]
    check(keras.Model(inp, outputs))


def test_several_inputs():
    a, b = keras.Input((4,)), keras.Input((2, 3))
    x = layers.Concatenate()(
        [layers.Dense(3, activation="relu")(a), layers.Flatten()(b)]
    )
    y = layers.Add()([layers.Dense(2)(x), layers.Dense(2)(layers.Flatten()(b))])
    converter = check(keras.Model([a, b], y))
    assert converter.inputs[a].shape == (4,)
    assert converter.inputs[b].shape == (2, 3)


def test_residual_network():
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    y = layers.Conv2D(4, 3, padding="same")(x)
    y = layers.BatchNormalization()(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.AveragePooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(5, activation="softmax")(x)
    check(keras.Model(inp, out))


def test_sequential_model():
    model = keras.Sequential(
        [
            keras.Input((10, 2)),
            layers.Conv1D(4, 3, activation="relu"),
            layers.AveragePooling1D(2),
            layers.Flatten(),
            layers.Dense(3),
        ]
    )
    converter = check(model)
    assert len(converter.inputs) == 1 and len(converter.outputs) == 1
    conv = model.layers[0]
    assert isinstance(converter.layers[conv], NeuronsNode)
    assert converter.layers[conv].shape == (8, 4)


def test_sequential_model_without_input_shape():
    model = keras.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match="no known input shape.*keras.Input"):
        snnify.Converter(model)


def tutorial_model():
    inp = keras.Input((28, 28, 1))
    conv0 = layers.Conv2D(32, 3, activation=keras.ops.relu)(inp)
    conv1 = layers.Conv2D(64, 3, strides=2, activation=keras.ops.relu)(conv0)
    dense = layers.Dense(10)(layers.Flatten()(conv1))
    return keras.Model(inp, dense), (inp, conv0, conv1, dense)


def test_tutorial_network():
    model, (inp, conv0, conv1, dense) = tutorial_model()
    converter = check(
        model, inputs=np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1))
    )
    assert converter.inputs[inp].shape == (28, 28, 1)
    assert converter.layers[conv0].shape == (26, 26, 32)
    assert converter.layers[conv1].shape == (12, 12, 64)
    assert converter.outputs[dense].size_in == 10
    # the layers are reachable by tensor and by layer
    assert converter.layers[conv0] is converter.layers[conv0._keras_history.operation]
    # relu becomes rate neurons by default
    assert isinstance(converter.layers[conv0], NeuronsNode)
    assert converter.layers[conv0].neuron_type == snnify.RectifiedLinear()


def test_spiking_swap_and_scale_keep_rates_exact():
    """Spiking neurons are verified through their rates; scaling cancels."""
    model, (_, conv0, conv1, _) = tutorial_model()
    randomize(model)
    converter = snnify.Converter(
        model,
        swap_activations={keras.ops.relu: snnify.SpikingRectifiedLinear()},
        scale_firing_rates={conv0: 20, conv1: 300},
        synapse=0.01,
    )
    assert converter.layers[conv0].scale == 20
    assert converter.layers[conv1].scale == 300
    assert converter.verify(rtol=RTOL)


def test_shared_layers():
    a, b = keras.Input((5,)), keras.Input((5,))
    shared = layers.Dense(5, activation="relu")
    square = layers.Dense(5, activation="tanh")
    x = square(square(shared(a)))  # the same layer twice in a row
    y = shared(b)
    out = layers.Dense(2)(layers.Concatenate()([x, y]))
    converter = check(keras.Model([a, b], out))
    assert converter.layers[x].shape == (5,) and converter.layers[y].shape == (5,)
    assert converter.layers[x] is not converter.layers[y]
    # a layer called more than once does not name one of its calls
    with pytest.raises(
        KeyError,
        match=r"Layer '.*' gives 2 of the layers \(it is called 2 times in the model\)"
        r".*Use the output tensor of the call you mean \(y = layer\(x\); "
        r"converter.layers\[y\]\)",
    ):
        converter.layers[shared]
    assert shared not in converter.layers
    with pytest.raises(KeyError, match="called 2 times"):
        converter.layers.get(shared)  # no silent default either
    assert converter.layers.get(layers.Dense(2)) is None


@pytest.mark.parametrize("axis", [0, -2])
def test_concatenation_along_the_batch_axis_is_refused(axis):
    inp = keras.Input((3,))
    out = layers.Concatenate(axis=axis, name="stack")([inp, inp])
    with pytest.raises(
        ValueError,
        match=rf"'stack' concatenates along the batch axis \(axis={axis}\), which "
        r"mixes examples.*Concatenate along a feature axis",
    ):
        snnify.Converter(keras.Model(inp, out))


def test_verify_detects_a_difference():
    model = randomize(CASES["Dense"]())
    converter = snnify.Converter(model)
    assert converter.verify(rtol=RTOL)
    # the converted network keeps the weights it was built with
    dense = model.layers[1]
    dense.set_weights([w + 0.1 for w in dense.get_weights()])
    with pytest.raises(
        ValueError, match="differs from the Keras model by .* rtol=1e-05"
    ):
        converter.verify()


def test_verify_fails_for_a_different_rate_function():
    model = randomize(CASES["Dense"]())
    converter = snnify.Converter(model, swap_activations={"relu": snnify.LIFRate()})
    with pytest.raises(ValueError, match="differs from the Keras model"):
        converter.verify()


# --- unsupported layers ---------------------------------------------------------


def _supported_list(message):
    return message.split("Supported layer types: ")[1].split(".")[0].split(", ")


def test_unsupported_layer_error():
    inp = keras.Input((6, 4))
    out = layers.LSTM(3, name="my_lstm")(inp)
    with pytest.raises(
        TypeError,
        match=r"Layer 'my_lstm' of type LSTM cannot be converted: no rule is "
        r"registered for it\. Supported layer types: Activation, .*Conv2D, .*Dense, "
        r".*register a rule with @snnify.rules.register \(see "
        r"docs/adding-a-layer.md\), or convert with allow_fallback=True",
    ) as info:
        snnify.Converter(keras.Model(inp, out), allow_fallback=False)
    supported = _supported_list(str(info.value))
    required = [
        "Dense",
        "Conv1D",
        "Conv2D",
        "Flatten",
        "Reshape",
        "Activation",
        "ReLU",
        "Dropout",
        "AveragePooling1D",
        "AveragePooling2D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "BatchNormalization",
        "Add",
        "Concatenate",
        "ZeroPadding2D",
    ]
    assert set(required) <= set(supported)
    # refused types are not offered as supported
    assert not {"StringLookup", "CategoryEncoding", "LSTM"} & set(supported)


def test_categorical_preprocessing_is_refused():
    inp = keras.Input((3,), dtype="int32")
    out = layers.CategoryEncoding(num_tokens=4, name="onehot")(inp)
    with pytest.raises(
        TypeError,
        match=r"Layer 'onehot' of type CategoryEncoding reads strings or category "
        r"indices.*Apply it to the data before the network",
    ):
        snnify.Converter(keras.Model(inp, out))


def test_subclass_of_supported_layer_converts():
    class MyDense(keras.layers.Dense):
        pass

    inp = keras.Input((4,))
    dense = MyDense(3, activation="relu", kernel_initializer="zeros")
    check(keras.Model(inp, dense(inp)))


# --- swap_activations ----------------------------------------------------------


def _relu_model():
    inp = keras.Input((4,))
    a = layers.Dense(3, activation="relu")(inp)
    b = layers.Dense(3, activation=keras.activations.relu)(a)
    c = layers.Dense(3, activation=keras.ops.relu)(b)
    d = layers.Activation("relu")(c)
    e = layers.ReLU()(d)
    f = layers.Dense(2, activation="tanh")(e)
    return keras.Model(inp, f), [a, b, c, d, e], f


@pytest.mark.parametrize(
    "key",
    ["relu", keras.activations.relu, keras.ops.relu],
    ids=["str", "activations", "ops"],
)
def test_swap_keys_match_by_name(key):
    model, relus, tanh = _relu_model()
    neuron = snnify.SpikingRectifiedLinear(amplitude=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every key is used: no warning
        converter = snnify.Converter(model, swap_activations={key: neuron})
    for tensor in relus:
        assert isinstance(converter.layers[tensor], NeuronsNode)
        assert converter.layers[tensor].neuron_type is neuron
    assert isinstance(converter.layers[tanh], FunctionNode)


def test_swap_key_of_the_backend():
    jax = pytest.importorskip("jax")
    if keras.backend.backend() != "jax":
        pytest.skip("jax.nn.relu is the backend's relu only on the JAX backend")
    model, relus, _ = _relu_model()
    neuron = snnify.LIF()
    converter = snnify.Converter(model, swap_activations={jax.nn.relu: neuron})
    assert all(converter.layers[t].neuron_type is neuron for t in relus)


def test_swap_other_activation():
    model, relus, tanh = _relu_model()
    neuron = snnify.LIFRate()
    converter = snnify.Converter(model, swap_activations={"tanh": neuron})
    assert converter.layers[tanh].neuron_type is neuron
    assert converter.layers[relus[0]].neuron_type == snnify.RectifiedLinear()


def test_unused_swap_key_warns():
    model, relus, _ = _relu_model()
    with pytest.warns(
        UserWarning, match="swap_activations key 'sigmoid' matches no activation"
    ) as record:
        converter = snnify.Converter(
            model,
            swap_activations={
                "relu": snnify.SpikingRectifiedLinear(),
                keras.activations.sigmoid: snnify.LIF(),
            },
        )
    # the used key does not warn
    assert len([w for w in record if w.category is UserWarning]) == 1
    assert converter.layers[relus[0]].neuron_type == snnify.SpikingRectifiedLinear()


def test_non_linear_layers_that_read_spikes_warn():
    inp = keras.Input((8,))
    x = layers.Dense(16, activation="relu")(inp)
    x = layers.Dense(4, activation="relu")(layers.LayerNormalization(name="norm")(x))
    model = keras.Model(inp, layers.Softmax(name="probabilities")(layers.Dense(3)(x)))

    def warned(swaps):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always", UserWarning)
            snnify.Converter(model, swap_activations=swaps)
        return [str(w.message) for w in record if w.category is UserWarning]

    (message,) = warned({"relu": snnify.IntegrateAndFire()})
    # the norm reads spikes; the final softmax is read by nothing: no warning
    assert "'norm' (LayerNormalization) are not linear and read spikes" in message
    assert warned(None) == []  # rate neurons: the network computes the model


def test_swap_value_must_be_a_neuron_type_or_an_activation():
    model, _, _ = _relu_model()
    with pytest.raises(
        TypeError,
        match=r"swap_activations values must be neuron types such as "
        r"snnify.SpikingRectifiedLinear\(\) or Keras activations such as "
        r"keras.activations.relu \(or their names\). Received: 'relu': 'spiking'",
    ):
        snnify.Converter(model, swap_activations={"relu": "spiking"})


# --- per-layer options ----------------------------------------------------------


def test_per_layer_options():
    model, relus, _ = _relu_model()
    a, b = relus[0], relus[1]
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates={a: 10.0, b._keras_history.operation: 3.0},
        synapse={a: 0.01, b: snnify.Lowpass(0.005)},
    )
    assert converter.layers[a].scale == 10.0
    assert converter.layers[b].scale == 3.0
    assert converter.layers[relus[2]].scale == 1.0
    assert converter.verify(rtol=RTOL)


def test_per_layer_option_on_a_layer_without_neurons_warns():
    inp = keras.Input((4,))
    hidden = layers.Dense(3)(inp)
    out = layers.Dense(2, activation="relu")(hidden)
    with pytest.warns(
        UserWarning,
        match="scale_firing_rates was given for layer '.*', which has no neurons",
    ):
        snnify.Converter(keras.Model(inp, out), scale_firing_rates={hidden: 5.0})


def test_per_layer_option_with_a_foreign_key():
    model, _, _ = _relu_model()
    other = layers.Dense(2)
    with pytest.raises(
        ValueError, match="synapse has a key that is not a layer or tensor"
    ):
        snnify.Converter(model, synapse={other: 0.01})
