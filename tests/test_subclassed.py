"""Subclassed models and layers: traced into the graph of their own layers."""

import os
import warnings

import keras
import numpy as np
import pytest
from keras import layers, ops

import snnify
from snnify.graph import NeuronsNode

N_STEPS = 4


class ResidualBlock(layers.Layer):
    """Convolution, batch normalisation, a skip and a ReLU of ``keras.ops``."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(filters, 3, padding="same")
        self.norm = layers.BatchNormalization()

    def call(self, x, training=None):
        return ops.relu(x + self.norm(self.conv(x), training=training))


class ResNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem = layers.Conv2D(4, 3, padding="same", activation="relu")
        self.blocks = [ResidualBlock(4), ResidualBlock(4)]
        self.pool = layers.GlobalAveragePooling2D()
        self.dropout = layers.Dropout(0.5)
        self.head = layers.Dense(3)

    def call(self, x, training=False):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(self.dropout(self.pool(x), training=training))


def functional_twin(model):
    """The same network built by hand on a keras.Input, with copies of its layers."""

    inp = keras.Input((8, 8, 1))
    pairs = [(model.stem, layers.Conv2D(4, 3, padding="same", activation="relu"))]
    x = pairs[0][1](inp)
    for block in model.blocks:
        conv, norm = layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization()
        x = ops.relu(x + norm(conv(x)))
        pairs += [(block.conv, conv), (block.norm, norm)]
    head = layers.Dense(3)
    out = head(layers.GlobalAveragePooling2D()(x))
    pairs.append((model.head, head))
    for original, clone in pairs:
        clone.set_weights(original.get_weights())
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype("float32")


def built_resnet(data, seed=0):
    keras.utils.set_random_seed(seed)
    model = ResNet()
    model(data[:1])
    for layer in (block.norm for block in model.blocks):  # statistics of their own
        rng = np.random.default_rng(seed)
        gamma, beta, mean, variance = layer.get_weights()
        layer.set_weights([gamma, beta, rng.normal(0, 0.1, mean.shape),
                           rng.uniform(0.5, 2, variance.shape)])  # fmt: skip
    return model


def outputs(converter, x, n_steps=N_STEPS):
    probe = next(iter(converter.outputs.values()))
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        return sim.predict(np.repeat(x[:, None], n_steps, 1))[probe]


def neuron_names(converter):
    return [node.name for node in converter.net.nodes if isinstance(node, NeuronsNode)]


def test_subclassed_model_converts_as_its_functional_twin(data):
    model = built_resnet(data)
    converter = snnify.Converter(model)
    assert converter.verify(data, rtol=1e-5)
    # the ReLUs inside the blocks are layers of the graph, not one opaque block
    assert len(neuron_names(converter)) == 3
    assert any(name.startswith("residual_block/") for name in neuron_names(converter))
    swap = {"swap_activations": {"relu": snnify.IntegrateAndFire()},
            "scale_firing_rates": 20.0}  # fmt: skip
    spiking = outputs(snnify.Converter(model, **swap), data)
    twin = outputs(snnify.Converter(functional_twin(model), **swap), data)
    np.testing.assert_allclose(spiking, twin, atol=1e-5)
    # the model's own layers are the converter's keys
    assert converter.outputs[model.head] is next(iter(converter.outputs.values()))
    assert isinstance(converter.layers[model.stem], NeuronsNode)


def test_weights_trained_through_the_simulator_go_back_into_the_model(data):
    model = built_resnet(data)
    converter = snnify.Converter(model)
    probe = next(iter(converter.outputs.values()))
    targets = np.random.default_rng(1).normal(0, 1, (len(data), 1, 3))
    with snnify.Simulator(converter.net, minibatch_size=8, progress_bar=False) as sim:
        sim.compile(optimizer=keras.optimizers.SGD(0.5), loss={probe: "mse"})
        sim.fit(data[:, None], {probe: targets}, epochs=2, verbose=0)
    kernels = [model.head.kernel, model.blocks[1].conv.kernel]
    before = [keras.ops.convert_to_numpy(kernel) for kernel in kernels]
    converter.update_model()
    for kernel, old in zip(kernels, before):
        assert np.abs(keras.ops.convert_to_numpy(kernel) - old).max() > 1e-4
    assert converter.verify(data, rtol=1e-5)  # the model computes the network


def test_convert_for_steps_and_quantisation_reach_the_blocks(data):
    model = built_resnet(data)
    converter = snnify.convert_for_steps(model, data, n_steps=N_STEPS)
    assert len(converter.calibration.layers) == 3
    quantized = snnify.quantize_model(model, levels=4, initial_threshold=2.0)
    qcfs = [
        layer for layer in quantized._flatten_layers() if type(layer).__name__ == "QCFS"
    ]
    assert len(qcfs) == 3
    expected = quantized.predict(data, verbose=0)
    decoded = outputs(snnify.convert_quantized(quantized), data).mean(axis=1)
    np.testing.assert_allclose(decoded, expected, atol=1e-5)


def test_subclassed_network_saves_and_loads(data, tmp_path):
    model = built_resnet(data)
    converter = snnify.Converter(
        model, swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=20.0,
    )  # fmt: skip
    path = os.path.join(tmp_path, "resnet.keras")
    snnify.save_network(converter, path)
    loaded = snnify.load_network(path)  # without the classes that built it
    assert not isinstance(loaded.model, ResNet)
    np.testing.assert_array_equal(outputs(loaded.converter, data),
                                  outputs(converter, data))  # fmt: skip


def test_a_subclassed_model_never_called_is_refused(data):
    with pytest.raises(ValueError, match=r"never been called.*model\(x\[:1\]\)"):
        snnify.Converter(ResNet())


def backend_relu(x):
    """A ReLU of the backend's own library, which Keras tensors cannot enter."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.nn.relu(x)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.nn.relu(x)
    import torch

    return torch.relu(x)


class BackendReLU(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(3)

    def call(self, x):
        return backend_relu(self.dense(x))


def test_a_call_that_cannot_be_traced_is_refused_naming_the_cause():
    model = BackendReLU()
    model(np.ones((1, 3), "float32"))
    with pytest.raises(TypeError, match=r"(?s)Cannot trace the call of the subclassed "
                       r"BackendReLU.*use only Keras layers and keras.ops"):  # fmt: skip
        snnify.Converter(model)


class BackendReLUBlock(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(3)

    def call(self, x):
        return backend_relu(self.dense(x))


def test_a_block_that_cannot_be_traced_runs_whole_and_exact():
    inp = keras.Input((3,))
    model = keras.Model(inp, layers.Dense(2)(BackendReLUBlock()(inp)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converter = snnify.Converter(model)
    assert any("no conversion rule" in str(w.message) for w in caught)
    assert converter.verify(rtol=1e-5)


class ImageAndMetadata(keras.Model):
    def __init__(self):
        super().__init__()
        self.image = layers.Dense(4, activation="relu")
        self.metadata = layers.Dense(4, activation="relu")
        self.head = layers.Dense(2)

    def call(self, inputs):
        joined = [self.image(inputs["image"]), self.metadata(inputs["metadata"])]
        return self.head(ops.concatenate(joined, axis=-1))


def test_inputs_given_as_a_dict_are_inputs_named_by_their_keys():
    model = ImageAndMetadata()
    rng = np.random.default_rng(0)
    x = {"image": rng.uniform(0, 1, (8, 5)), "metadata": rng.uniform(0, 1, (8, 3))}
    model(x)
    converter = snnify.Converter(model)
    assert sorted(node.name for node in converter.inputs.values()) == [
        "image",
        "metadata",
    ]
    assert converter.verify(x, rtol=1e-5)


class ScaledBlock(layers.Layer):
    """A block that applies weights of its own (a layer scale) to its layer's."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(4)

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(4,), initializer="ones")

    def call(self, x):
        return ops.relu(self.dense(x) * self.gamma)


def test_a_block_with_weights_of_its_own_converts_but_is_not_saved(tmp_path):
    inp = keras.Input((3,))
    block = ScaledBlock()
    model = keras.Model(inp, layers.Dense(2)(block(inp)))
    block.gamma.assign(np.array([0.5, 2.0, 1.0, 3.0], "float32"))
    x = np.random.default_rng(0).uniform(0, 1, (8, 3)).astype("float32")
    converter = snnify.Converter(model)
    assert len(neuron_names(converter)) == 1  # the block's ReLU
    assert converter.verify(x, rtol=1e-5)  # gamma as it is now
    path = tmp_path / "net.keras"
    with pytest.raises(ValueError, match=r"ScaledBlock .* applies weights of its own"):
        snnify.save_network(converter, path)
    assert not path.exists()
