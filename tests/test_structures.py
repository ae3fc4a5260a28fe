"""Model structures: nested and temporal models, fallback, folding, swaps.

Every converted model is checked as in ``test_rules.check``: ``verify()``
(relative error <= 1e-5) and the simulator's scan.
"""

import functools
import re
import warnings

import keras
import numpy as np
import pytest
from reference import ZeroInitLayers
from test_rules import RTOL, check, randomize

import snnify
from snnify.graph import FunctionNode, LayerNode, NeuronsNode
from snnify.rules.pooling import pull_back_windows
from snnify.rules.reshaping import pull_back_upsampling
from snnify.spike_pooling import SpikeCountMaxPooling

layers = ZeroInitLayers()


# --- nested models ----------------------------------------------------------------


def _block(name, outputs=1):
    inp = keras.Input((6,), name=f"{name}_in")
    hidden = layers.Dense(5, activation="relu", name=f"{name}_hidden")(inp)
    out = layers.Dense(4, name=f"{name}_out")(hidden)
    return keras.Model(inp, [hidden, out] if outputs == 2 else out, name=name)


def test_nested_functional_and_sequential_models():
    inner = _block("inner", outputs=2)
    sequential = keras.Sequential(
        [keras.Input((4,)), layers.Dense(3, name="seq_dense"), layers.ReLU()],
        name="seq",
    )
    inp = keras.Input((6,))
    hidden, out = inner(inp)
    outer = keras.Model(inp, [hidden, sequential(out)])
    converter = check(outer)
    # the inner layers are found by layer and by tensor
    inner_hidden = inner.get_layer("inner_hidden")
    assert isinstance(converter.layers[inner_hidden], NeuronsNode)
    assert converter.layers[inner_hidden] is converter.layers[hidden]
    assert converter.layers[inner_hidden].name == "inner/inner_hidden.neurons"
    assert converter.layers[sequential.layers[1]].shape == (3,)
    # per-layer options reach inner layers
    spiking = snnify.Converter(
        outer,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates={inner_hidden: 7.0},
    )
    assert spiking.layers[inner_hidden].scale == 7.0


def test_calibration_and_stats_see_the_layers_of_nested_models():
    inner = _block("inner")
    inp = keras.Input((6,))
    model = randomize(keras.Model(inp, layers.Dense(2)(inner(inp))))
    x = np.random.default_rng(0).uniform(0, 1, (20, 1, 6))
    report = snnify.calibrate(model, x)
    assert [c.name for c in report.layers] == ["inner_hidden"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every scale is used
        converter = snnify.Converter(
            model,
            swap_activations={"relu": snnify.IntegrateAndFire()},
            scale_firing_rates=report,
        )
    stats = snnify.measure(converter, x, n_steps=4)
    assert [layer.name for layer in stats.layers] == ["inner_hidden"]


def test_nested_model_inside_a_nested_model():
    inner = _block("inner")
    middle_in = keras.Input((6,))
    middle = keras.Model(middle_in, layers.Dense(2)(inner(middle_in)), name="middle")
    inp = keras.Input((6,))
    converter = check(keras.Model(inp, middle(inp)))
    assert converter.layers[inner.get_layer("inner_hidden")].name == (
        "middle/inner/inner_hidden.neurons"
    )


def test_nested_model_called_twice():
    inner = _block("shared")
    a, b = keras.Input((6,)), keras.Input((6,))
    ya, yb = inner(a), inner(b)
    converter = check(keras.Model([a, b], layers.Add()([ya, yb])))
    assert converter.layers[ya] is not converter.layers[yb]
    with pytest.raises(
        KeyError,
        match=r"Layer 'shared_hidden' gives 2 of the layers \(it lies in a nested "
        r"model called more than once\).*only the nested model's outputs can be "
        r"named \(y = nested\(x\)\)",
    ):
        converter.layers[inner.get_layer("shared_hidden")]
    with pytest.raises(KeyError, match="lies in a nested model that is called more"):
        converter.layers[inner.outputs[0]]
    with pytest.raises(KeyError, match=r"gives 2 of the layers \(it is called 2 times"):
        converter.layers[inner]


def test_nested_model_with_several_outputs_is_ambiguous_by_layer():
    inner = _block("two", outputs=2)
    inp = keras.Input((6,))
    hidden, out = inner(inp)
    converter = check(keras.Model(inp, layers.Concatenate()([hidden, out])))
    with pytest.raises(KeyError, match=r"\(it has 2 outputs\)"):
        converter.layers[inner]


# --- temporal models ---------------------------------------------------------------


def test_temporal_model_maps_time_to_steps():
    inp = keras.Input((None, 3))
    x = layers.Dense(6, activation="relu")(inp)
    y = layers.TimeDistributed(layers.Dense(4, activation="relu"))(x)
    y = layers.BatchNormalization()(y)
    out = layers.Dense(2)(layers.Concatenate()([x, y]))
    converter = check(keras.Model(inp, out))
    assert converter.temporal_model
    assert converter.inputs[inp].shape == (3,)  # one step
    assert isinstance(converter.layers[y._keras_history.operation], LayerNode)
    # (batch, steps, features) in, (batch, steps, outputs) out: time is steps
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        data = sim.predict(np.ones((2, 7, 3)))
    assert data[converter.outputs[out]].shape == (2, 7, 2)


def test_time_distributed_image_layers_and_spiking_neurons():
    inp = keras.Input((None, 6, 6, 1))
    x = layers.TimeDistributed(layers.Conv2D(3, 3, activation="relu"))(inp)
    x = layers.TimeDistributed(layers.MaxPooling2D(2))(x)
    x = layers.TimeDistributed(layers.Flatten())(x)
    out = layers.Dense(2)(x)
    model = keras.Model(inp, out)
    converter = check(model)
    conv = x._keras_history.operation
    assert converter.layers[conv].shape == (12,)
    spiking = snnify.Converter(
        model, swap_activations={"relu": snnify.IntegrateAndFire()}
    )
    first = model.layers[1]
    assert spiking.layers[first].neuron_type == snnify.IntegrateAndFire()
    pool = [n for n in spiking.net.nodes if isinstance(n, SpikeCountMaxPooling)]
    assert len(pool) == 1 and pool[0].shape == (2, 2, 3)
    averaged = snnify.Converter(model, max_to_avg_pool=True)
    wrapped = [
        getattr(layer, "layer", None) for _, layer in averaged.net.converted_layers
    ]
    assert "AveragePooling2D" in [type(layer).__name__ for layer in wrapped]


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda: layers.Conv1D(2, 3, padding="same"), "depends on other steps"),
        (  # on PyTorch, one step is too short for the pooling window
            lambda: layers.MaxPooling1D(2),
            "(does not have one step per input step|applied to one step it fails)",
        ),
        (lambda: layers.SimpleRNN(2, return_sequences=True), "depends on other"),
    ],
    ids=["Conv1D", "MaxPooling1D", "SimpleRNN"],
)
def test_temporal_model_refuses_layers_that_mix_steps(make, problem):
    inp = keras.Input((None, 3))
    layer = make()
    model = keras.Model(inp, layer(inp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SimpleRNN's fallback warning
        with pytest.raises(
            ValueError,
            match=rf"Layer '{layer.name}' of type {type(layer).__name__} does not act "
            rf"on each step of the time axis alone \(.*{problem}.*TimeDistributed.*"
            r"temporal_model=False",
        ):
            snnify.Converter(model)


def test_temporal_model_refuses_layers_that_remove_time():
    inp = keras.Input((None, 3))
    model = keras.Model(inp, layers.GlobalAveragePooling1D(name="mean")(inp))
    with pytest.raises(
        ValueError,
        match=r"Layer 'mean' of type GlobalAveragePooling1D gives an output of shape "
        r"\(None, 3\), with no time axis.*snnify.decode",
    ):
        snnify.Converter(model)


def test_temporal_model_options():
    inp = keras.Input((5, 3))  # a fixed-length time axis, on request
    model = keras.Model(inp, layers.Dense(2, activation="relu")(inp))
    assert not snnify.Converter(model).temporal_model
    assert check(model, temporal_model=True).temporal_model
    inp = keras.Input((None,))
    with pytest.raises(ValueError, match=r"feature axis.*keras.Input\(\(None, 1\)\)"):
        snnify.Converter(keras.Model(inp, layers.Identity()(inp)))


# --- fallback -----------------------------------------------------------------------


class Cube(keras.layers.Layer):
    """A layer with no conversion rule."""

    def call(self, x):
        return x**3

    def compute_output_shape(self, input_shape):
        return input_shape


def test_fallback_applies_the_layer_exactly_with_a_warning():
    inp = keras.Input((4, 3))
    x = layers.Dense(3, activation="relu")(inp)
    x = Cube(name="cube")(x)
    y = layers.LSTM(2, name="lstm")(x)  # the whole sequence at every step
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        converter = check(keras.Model(inp, layers.Dense(2)(y)))
    messages = [str(w.message) for w in record if w.category is UserWarning]
    assert len(messages) == 2
    assert re.match(
        r"Layer 'cube' of type Cube has no conversion rule.*applied exactly as in "
        r"Keras at every step, without spiking neurons \(allow_fallback=True\)"
        r".*allow_fallback=False",
        messages[0],
    )
    assert messages[1].startswith("Layer 'lstm' of type LSTM has no conversion rule")
    with pytest.raises(TypeError, match="Layer 'cube' of type Cube cannot be"):
        snnify.Converter(converter.model, allow_fallback=False)


def test_fallback_inside_time_distributed():
    inp = keras.Input((None, 3))
    out = layers.TimeDistributed(Cube(), name="cubes")(inp)
    with pytest.warns(UserWarning, match="'cubes' of type TimeDistributed has no"):
        check(keras.Model(inp, out))


# --- max pooling --------------------------------------------------------------------


def _pooling_model():
    inp = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    pooled = [
        layers.MaxPooling2D(2)(x),
        layers.MaxPooling2D(3, strides=2, padding="same")(x),
        layers.GlobalMaxPooling2D()(x),
    ]
    return randomize(keras.Model(inp, pooled)), x


def test_spiking_max_pooling_is_the_max_of_the_spike_counts():
    """Over T steps, the mean output is exactly the max of the inputs' means."""
    model, x = _pooling_model()
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=30,
    )
    with converter.net:
        neurons = snnify.Probe(converter.layers[x])
    images = np.random.default_rng(0).uniform(0, 1, (4, 1, 6, 6, 2))
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        data = sim.predict(images, n_steps=25)
    spikes = data[neurons].reshape(4, 25, 6, 6, 4)
    assert 0 < np.count_nonzero(spikes) < spikes.size  # really spiking
    for layer, probe in zip(model.layers[2:], converter.outputs.values()):
        want = keras.ops.convert_to_numpy(layer(spikes.mean(axis=1)))
        got = data[probe].mean(axis=1).reshape(want.shape)
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
        # and, step by step, every output is a whole number of spikes
        per_spike = 1 / (30 * 0.001)
        counts = data[probe] / per_spike
        assert np.abs(counts - np.round(counts)).max() < 1e-3


def test_max_to_avg_pool():
    model, _ = _pooling_model()
    converter = snnify.Converter(model, max_to_avg_pool=True)
    pooling = [n for n in converter.net.nodes[3:] if isinstance(n, LayerNode)]
    names = sorted(type(n.layer).__name__ for n in pooling)
    assert names == ["AveragePooling2D", "AveragePooling2D", "GlobalAveragePooling2D"]
    with pytest.raises(ValueError, match="max_to_avg_pool changes the pooling"):
        converter.verify()


def test_costs_of_pooling_and_upsampling():
    pool = keras.layers.MaxPooling1D(3, strides=2, padding="same")
    onward = np.array([[1.0], [10.0], [100.0]])  # one value per output
    reached = pull_back_windows(pool, onward, [(5, 1)], 0)
    np.testing.assert_array_equal(reached[:, 0], [1, 11, 10, 110, 100])
    upsampling = keras.layers.UpSampling2D((2, 3), data_format="channels_first")
    reached = pull_back_upsampling(upsampling, np.ones((2, 6, 12)), [(2, 3, 4)], 0)
    np.testing.assert_array_equal(reached, np.full((2, 3, 4), 6.0))
    # and snnify.measure counts a network with them, every layer counted
    inp = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = layers.UpSampling2D(2)(layers.MaxPooling2D(2)(x))
    x = layers.RepeatVector(2)(layers.GlobalMaxPooling2D()(x))
    model = randomize(keras.Model(inp, layers.Dense(3)(x)))
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=50,
    )
    stats = snnify.measure(converter, np.ones((2, 1, 72)), n_steps=4)
    assert stats.uncounted == () and stats.synops > 0
    # a conv spike: its pooling window, 4 upsampled copies, the global window,
    # 2 repeats, 3 units each
    assert stats.layers[0].fan_out == 4 * 2 * 3


# --- batch normalisation ------------------------------------------------------------


def _normalized(make, input_shape, axis=-1):
    inp = keras.Input(input_shape)
    y = layers.BatchNormalization(axis=axis)(make()(inp))
    return keras.Model(inp, layers.Activation("relu")(y))


FOLDS = {
    "Dense": lambda: _normalized(lambda: layers.Dense(4), (3, 5)),
    "Conv2D_no_bias": lambda: _normalized(
        lambda: layers.Conv2D(4, 3, use_bias=False), (5, 5, 2)
    ),
    "Conv2D_channels_first": lambda: _normalized(
        lambda: layers.Conv2D(4, 3, data_format="channels_first"), (2, 5, 5), axis=1
    ),
    "DepthwiseConv2D": lambda: _normalized(
        lambda: layers.DepthwiseConv2D(3, depth_multiplier=2), (5, 5, 3)
    ),
    "SeparableConv1D": lambda: _normalized(
        lambda: layers.SeparableConv1D(4, 3, depth_multiplier=2), (7, 3)
    ),
    "Conv2DTranspose": lambda: _normalized(
        lambda: layers.Conv2DTranspose(3, 3, strides=2), (3, 3, 2)
    ),
}


@pytest.mark.parametrize("name", sorted(FOLDS))
def test_fold_batch_norm_is_exact(name):
    if "channels_first" in name and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's CPU convolutions take channels_last only")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # folded: nothing to warn
        converter = check(FOLDS[name](), fold_batch_norm=True)
    kinds = [type(n.layer).__name__ for n in converter.net.nodes if hasattr(n, "layer")]
    assert "BatchNormalization" not in kinds and len(kinds) == 1


def test_fold_batch_norm_writes_trained_weights_back():
    for name in ("Dense", "Conv2D_no_bias"):
        model = randomize(FOLDS[name]())
        converter = snnify.Converter(model, fold_batch_norm=True)
        (_, layer), *_ = converter.net.converted_layers
        layer.set_weights([w * 1.5 + 0.1 for w in layer.get_weights()])  # "trained"
        converter.update_model()
        assert converter.verify(rtol=RTOL)  # the model now computes the network


def test_fold_batch_norm_leaves_what_cannot_fold_with_a_warning():
    inp = keras.Input((4,))
    a, b = layers.Dense(3)(inp), layers.Dense(3)(inp)
    norm = layers.BatchNormalization(name="after_add")(layers.Add()([a, b]))
    with pytest.warns(
        UserWarning,
        match=r"BatchNormalization 'after_add' is not folded: its input comes from "
        r"layer '.*' of type Add, not a Dense or convolution layer",
    ):
        check(keras.Model(inp, norm), fold_batch_norm=True)
    c = layers.Dense(3, name="used_twice")(inp)
    out = layers.Add()([layers.BatchNormalization()(c), c])
    with pytest.warns(UserWarning, match="output of 'used_twice' is also used"):
        check(keras.Model(inp, out), fold_batch_norm=True)


def test_unfolded_batch_norm_trains_gamma_and_beta_not_its_statistics():
    inp = keras.Input((4,))
    out = layers.Dense(2)(layers.BatchNormalization()(layers.Dense(3)(inp)))
    model = randomize(keras.Model(inp, out))
    converter = snnify.Converter(model)
    x = np.random.default_rng(0).normal(size=(16, 1, 4))
    y = np.random.default_rng(1).normal(size=(16, 1, 2))
    norm = [n.layer for n in converter.net.nodes if "batch" in n.name][0]
    before = {w.name: keras.ops.convert_to_numpy(w).copy() for w in norm.weights}
    with snnify.Simulator(converter.net, minibatch_size=16, progress_bar=False) as sim:
        sim.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        sim.fit(x, y, epochs=1)
    after = {w.name: keras.ops.convert_to_numpy(w) for w in norm.weights}
    for name in ("gamma", "beta"):
        assert np.abs(after[name] - before[name]).max() > 1e-4
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_array_equal(after[name], before[name])


# --- swap_activations and per-layer options -----------------------------------------


def _activations_model():
    inp = keras.Input((4,))
    a = layers.Dense(3, activation="sigmoid", name="a")(inp)
    b = layers.Dense(3, activation="relu", name="b")(a)
    c = layers.Dense(2, activation="tanh", name="c")(b)
    return randomize(keras.Model(inp, c)), (a, b, c)


def test_swap_activation_to_activation():
    model, (a, b, c) = _activations_model()
    converter = snnify.Converter(
        model, swap_activations={keras.activations.sigmoid: keras.activations.relu}
    )
    # sigmoid became relu, which becomes rate neurons as usual
    assert converter.layers[a].neuron_type == snnify.RectifiedLinear()
    converter = snnify.Converter(model, swap_activations={"tanh": "sigmoid"})
    assert isinstance(converter.layers[c], FunctionNode)
    assert converter.layers[c].function is keras.activations.sigmoid


def test_swap_neuron_type_to_neuron_type():
    model, (a, b, c) = _activations_model()
    converter = snnify.Converter(
        model,
        swap_activations={snnify.RectifiedLinear(): snnify.SpikingRectifiedLinear()},
    )
    assert converter.layers[b].neuron_type == snnify.SpikingRectifiedLinear()
    # a swap swapped again, as NengoDL applies swaps before and after relu -> neurons
    converter = snnify.Converter(
        model,
        swap_activations={
            "sigmoid": snnify.LIFRate(),
            snnify.LIFRate(): snnify.LIF(),
            snnify.RectifiedLinear(): snnify.IntegrateAndFire(),
        },
    )
    assert converter.layers[a].neuron_type == snnify.LIF()
    assert converter.layers[b].neuron_type == snnify.IntegrateAndFire()
    assert converter.swap_activations.unused_keys() == []


def test_unused_swap_keys_are_listed_and_named():
    model, _ = _activations_model()
    clipped = functools.partial(keras.activations.relu, max_value=2.0)
    neuron_key = snnify.LIFRate()
    with pytest.warns(UserWarning) as record:
        converter = snnify.Converter(
            model,
            swap_activations={
                "relu": snnify.IntegrateAndFire(),
                clipped: snnify.LIF(),
                neuron_key: snnify.LIF(),
            },
        )
    assert converter.swap_activations.unused_keys() == [clipped, neuron_key]
    messages = [str(w.message) for w in record]
    assert any(
        "swap_activations key functools.partial(<function relu" in m for m in messages
    )
    assert any("key LIFRate(tau_rc=0.02" in m for m in messages)
    assert not any("key None" in m for m in messages)
    # a function without a name only matches itself
    inp = keras.Input((3,))
    unnamed = functools.partial(keras.activations.relu, max_value=1.0)
    model = keras.Model(inp, layers.Dense(2, activation=unnamed)(inp))
    other = functools.partial(keras.activations.relu, max_value=1.0)
    with pytest.warns(UserWarning, match="matches no activation"):
        converter = snnify.Converter(model, swap_activations={other: snnify.LIF()})
    assert isinstance(converter.layers[model.output], FunctionNode)
    converter = snnify.Converter(model, swap_activations={unnamed: snnify.LIF()})
    assert converter.layers[model.output].neuron_type == snnify.LIF()


def test_scale_firing_rates_on_activations_without_neurons_warns():
    model, (a, b, c) = _activations_model()
    with pytest.warns(
        UserWarning,
        match=r"scale_firing_rates=20 applies to neurons only; the activations of "
        r"layer\(s\) 'a' \('sigmoid'\) have no neuron form.*swap_activations",
    ):
        snnify.Converter(model, scale_firing_rates=20)
    inp = keras.Input((4,))
    only_sigmoid = keras.Model(inp, layers.Dense(2, activation="sigmoid")(inp))
    with pytest.warns(UserWarning, match=r"synapse=0.01 applies to neurons only"):
        snnify.Converter(only_sigmoid, synapse=0.01)
    linear = keras.Model(inp, layers.Dense(2)(inp))
    with pytest.warns(UserWarning, match="scale_firing_rates=5 was given, but the"):
        snnify.Converter(linear, scale_firing_rates=5)
    # neurons, and an output activation read out as it is: nothing to warn about
    inp = keras.Input((4,))
    hidden = layers.Dense(3, activation="relu")(inp)
    softmax = keras.Model(inp, layers.Dense(2, activation="softmax")(hidden))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        snnify.Converter(softmax, scale_firing_rates=20, synapse=0.01)


# --- input and output structures, dtype policies -----------------------------------


def test_verify_takes_inputs_and_outputs_in_the_model_s_own_structures():
    image, meta = keras.Input((4, 4, 1), name="image"), keras.Input((3,), name="meta")
    hidden = keras.layers.Concatenate()(
        [keras.layers.Flatten()(layers.Conv2D(2, 3, activation="relu")(image)), meta]
    )
    # keys out of sorted order and outputs of different sizes: a mix-up fails
    model = keras.Model(
        {"meta": meta, "image": image},
        {"wide": layers.Dense(5)(hidden), "narrow": layers.Dense(1)(hidden)},
    )
    randomize(model)
    converter = snnify.Converter(model)
    rng = np.random.default_rng(0)
    x = {"image": rng.uniform(0, 1, (6, 4, 4, 1)), "meta": rng.uniform(0, 1, (6, 3))}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Keras's structure warning
        assert converter.verify()
        assert converter.verify(x, rtol=RTOL)
    with pytest.raises(ValueError, match=r"keyed by its name: \['image', 'meta'\]"):
        converter.verify({"image": x["image"], "extra": x["meta"]})


def test_verify_of_a_16_bit_model_names_its_precision():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    hidden = keras.layers.Dense(16, activation="relu", dtype="mixed_float16")(inp)
    output = keras.layers.Dense(3, activation="sigmoid", dtype="mixed_float16")(hidden)
    # the network applies the sigmoid in float32, the model in float16
    converter = snnify.Converter(keras.Model(inp, output))
    # measured 2.9e-4 to 7.5e-4 (three backends, three seeds)
    with pytest.raises(ValueError, match="computes in float16"):
        converter.verify()
    assert converter.verify(rtol=0.01)


def _conv_net(policy):
    """Conv, max pooling, Dense (ReLU) in ``policy``, float32 output; seeded."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu", dtype=policy)(inp)
    hidden = keras.layers.MaxPooling2D(dtype=policy)(hidden)
    hidden = keras.layers.Flatten(dtype=policy)(hidden)
    hidden = keras.layers.Dense(8, activation="relu", dtype=policy)(hidden)
    return keras.Model(inp, keras.layers.Dense(3, dtype="float32")(hidden))


def test_a_mixed_precision_model_calibrates_and_spikes_as_its_float32_twin():
    mixed, twin = _conv_net("mixed_float16"), _conv_net("float32")
    x = np.random.default_rng(0).uniform(0, 1, (32, 8, 8, 1)).astype("float32")
    # float16 currents met float32 thresholds and states here (a TypeError)
    snnify.convert_for_steps(mixed, x, n_steps=4)
    outputs = []
    for model in (mixed, twin):
        converter = snnify.Converter(
            model,
            swap_activations={"relu": snnify.IntegrateAndFire()},
            scale_firing_rates=1000,  # about 5 spikes per neuron in 30 steps
        )
        with snnify.Simulator(converter.net, progress_bar=False) as sim:
            data = sim.predict(np.repeat(x[:, None], 30, axis=1))
        outputs.append(data[converter.outputs[model.output]].mean(axis=1))
    assert outputs[0].dtype == np.float32
    # measured 0.023-0.052 of the largest output and every class the same
    # (three backends): float16 rounding moves a few spikes by a step
    difference = np.abs(outputs[0] - outputs[1]).max() / np.abs(outputs[1]).max()
    assert difference < 0.1
    assert (outputs[0].argmax(-1) == outputs[1].argmax(-1)).sum() >= 29


# --- keras.applications -------------------------------------------------------------


@pytest.mark.slow
def test_mobilenet_v2_converts_verifies_and_spikes():
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )
    converter = snnify.Converter(model)
    # measured 2e-7; float32 sums over ~50 layers
    assert converter.verify(rtol=1e-4)
    spiking = snnify.Converter(
        model,
        swap_activations={"relu6": snnify.IntegrateAndFire()},
        scale_firing_rates=100,
    )
    images = np.random.default_rng(0).uniform(0, 1, (2, 1, 32, 32, 3))
    with snnify.Simulator(spiking.net, progress_bar=False) as sim:
        data = sim.predict(images, n_steps=3)
    output = data[spiking.outputs[model.output]]
    assert output.shape == (2, 3, 10) and np.isfinite(output).all()
