"""Networks that users bring, through every stage of snnify's pipeline.

40 small Keras networks with random weights -- MLPs, convolutions (1D and
2D, max and global pooling, batch normalisation before and after the ReLU,
depthwise and separable, padding and cropping, channels first, grouped and
dilated, causal and dilated over a sequence, transposed in an autoencoder),
an Input of unknown size, a Siamese encoder (one nested model called on two
inputs), ``keras.ops`` on symbolic tensors, Dense and TimeDistributed layers
over a sequence, augmentation and resizing layers, a small U-Net, residual sums
(an ``Add`` layer and ``+``), Inception-like concatenations, layer and group
normalisation, dropout and noise layers, several inputs, several outputs, a
nested Sequential, a subclassed model and one of subclassed residual blocks
(batch normalisation, ``keras.ops.relu``, dropout), a model saved to ``.keras`` and
loaded, a ``Rescaling`` input, leaky_relu / relu6 / elu / sigmoid / swish
activations, PReLU layers and an Embedding text classifier -- on 16x16 images, 32 features
or 64-step sequences, with 32 random examples and labels (seeded), and three
``keras.applications`` networks (MobileNetV2 with alpha 0.35, EfficientNetB0
and ResNet50; 32x32x3 images, ``weights=None``, ``classifier_activation=None``)
run through these stages, each in its own ``try`` so that one failure does not
hide the next:

1. ``snnify.Converter(model)`` and ``verify()``;
2. ``Converter`` with ``swap_activations={<the model's activation>:
   IntegrateAndFire()}``, ``scale_firing_rates="auto"`` (calibrated on the
   examples) and ``Simulator.predict`` of 4 steps: the largest difference of
   the decoded mean output from ``model.predict``, relative to the largest
   output (the first 8 examples);
3. ``snnify.convert_for_steps(model, x, n_steps=4)``, predicting 4 steps:
   the same error;
4. ``snnify.measure`` of the network of stage 2: spikes per neuron;
5. ``save_network`` and ``load_network`` of it: the largest absolute
   difference of the two networks' outputs;
6. ``export_nir`` of it, the graph run for 4 steps by the NumPy interpreter of
   NIR graphs that the tests use (``tests/nir_reference.py``): the largest
   difference of its output from snnify's, relative to the largest output
   (networks with one input and one output);
7. ``fine_tune(levels=4, epochs=1, replace="all")``, ``convert_quantized`` and predicting 4
   steps: the error relative to the fine-tuned (QCFS) Keras model;
8. ``Simulator.compile``, ``fit`` for one epoch and ``evaluate`` (4 steps):
   the losses.

The applications run stages 1, 2, 3 and 6 only, on 4 images. Stages 4, 5, 6
and 8 need the network of stage 2. The script prints three Markdown tables:
per network and stage ``OK`` or the exception (its type and the start of its
message); the numbers above, the network's layers and its time; and the user
warnings (``UserWarning``) of each stage, counted, with the start of each
distinct one. Progress goes to stderr.

    KERAS_BACKEND=jax python benchmarks/bench_user_networks.py [--only mlp unet] [--skip-applications]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import keras
import nir
import numpy as np
from keras import layers

import snnify

# the float64 NumPy interpreter of NIR graphs that the tests use
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nir_reference import run_graph  # noqa: E402

SEED = 0
N_EXAMPLES = 32  # calibration and training examples
N_PREDICT = 8  # examples predicted and compared
N_APPLICATION = 4  # images of the keras.applications networks
N_STEPS = 4
BATCH = 16
ERROR_CHARACTERS = 80
WARNING_CHARACTERS = 60


@dataclasses.dataclass
class Case:
    """A network, its examples and targets, and the activations to swap."""

    model: keras.Model
    x: np.ndarray | dict
    y: np.ndarray | list
    loss: keras.losses.Loss | list
    activations: tuple = ("relu",)
    application: bool = False


# ------------------------------------------------------------------ data


def uniform(rng, shape, n=N_EXAMPLES, high=1.0):
    return rng.uniform(0, high, (n, *shape)).astype("float32")


def normal(rng, shape, n=N_EXAMPLES):
    return rng.normal(0, 1, (n, *shape)).astype("float32")


def images(rng, channels=1, n=N_EXAMPLES, size=16):
    return uniform(rng, (size, size, channels), n)


def sparse_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def classifier(rng, inputs, outputs, x, classes=10, activations=("relu",)):
    """A Case of ``keras.Model(inputs, outputs)`` with random labels."""
    labels = rng.integers(0, classes, N_EXAMPLES)
    model = keras.Model(inputs, outputs)
    return Case(model, x, labels, sparse_loss(), activations)


def with_batch_statistics(model, rng):
    """Give the BatchNormalization layers statistics that are not the identity."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, channels).astype("float32"))
            layer.moving_variance.assign(
                rng.uniform(0.5, 2, channels).astype("float32")
            )
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, channels).astype("float32"))
    return model


# ------------------------------------------------------------- networks


def mlp(rng):
    inp = keras.Input((32,))
    h = layers.Dense(32, activation="relu")(inp)
    h = layers.Dense(32, activation="relu")(h)
    return classifier(rng, inp, layers.Dense(10)(h), uniform(rng, (32,)))


def conv1d(rng):
    inp = keras.Input((64, 3))
    h = layers.Conv1D(8, 5, activation="relu")(inp)
    h = layers.MaxPooling1D(2)(h)
    h = layers.Conv1D(16, 3, activation="relu")(h)
    h = layers.GlobalAveragePooling1D()(h)
    x = normal(rng, (64, 3))
    return classifier(rng, inp, layers.Dense(5)(h), x, classes=5)


def cnn_max_pooling(rng):
    inp = keras.Input((16, 16, 1))
    h = layers.Conv2D(8, 3, activation="relu")(inp)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2D(16, 3, activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Flatten()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng))


def bn_before_relu(rng):
    inp = keras.Input((16, 16, 1))
    h = layers.Conv2D(8, 3, use_bias=False)(inp)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU()(h)
    h = layers.Conv2D(8, 3, strides=2)(h)
    h = layers.BatchNormalization()(h)
    h = layers.Activation("relu")(h)
    h = layers.Flatten()(h)
    case = classifier(rng, inp, layers.Dense(10)(h), images(rng))
    with_batch_statistics(case.model, rng)
    return case


def bn_after_relu(rng):
    inp = keras.Input((16, 16, 1))
    h = layers.Conv2D(8, 3, activation="relu")(inp)
    h = layers.BatchNormalization()(h)
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = layers.BatchNormalization()(h)
    h = layers.Flatten()(h)
    case = classifier(rng, inp, layers.Dense(10)(h), images(rng))
    with_batch_statistics(case.model, rng)
    return case


def depthwise_separable(rng):
    inp = keras.Input((16, 16, 3))
    h = layers.Conv2D(8, 3, activation="relu")(inp)
    h = layers.DepthwiseConv2D(3, activation="relu")(h)
    h = layers.SeparableConv2D(16, 3, strides=2, activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng, 3))


def unet(rng):
    """Encoder, decoder with a Concatenate skip, image out; trained to copy."""
    inp = keras.Input((16, 16, 1))
    e1 = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    e2 = layers.MaxPooling2D(2)(e1)
    e2 = layers.Conv2D(16, 3, padding="same", activation="relu")(e2)
    h = layers.Concatenate()([layers.UpSampling2D(2)(e2), e1])
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2DTranspose(8, 2, strides=2, activation="relu")(h)
    x = images(rng)
    model = keras.Model(inp, layers.Conv2D(1, 1)(h))
    return Case(model, x, x, keras.losses.MeanSquaredError())


def residual_add_layer(rng):
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(8, 3, padding="same")(y)
    h = layers.Activation("relu")(layers.Add()([x, y]))
    h = layers.GlobalAveragePooling2D()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng, 3))


def residual_plus(rng):
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(8, 3, padding="same")(y)
    h = keras.ops.relu(x + 0.5 * y)
    h = layers.Flatten()(layers.AveragePooling2D(4)(h))
    return classifier(rng, inp, layers.Dense(10)(h), images(rng, 3))


def inception_concatenate(rng):
    inp = keras.Input((16, 16, 3))
    b1 = layers.Conv2D(4, 1, activation="relu")(inp)
    b2 = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b3 = layers.MaxPooling2D(3, strides=1, padding="same")(inp)
    b3 = layers.Conv2D(4, 1, activation="relu")(b3)
    h = layers.Concatenate()([b1, b2, b3])
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng, 3))


def global_pooling(rng, pooling):
    inp = keras.Input((16, 16, 3))
    h = layers.Conv2D(8, 3, activation="relu")(inp)
    h = layers.Conv2D(16, 3, activation="relu")(h)
    return classifier(rng, inp, layers.Dense(10)(pooling()(h)), images(rng, 3))


def global_average_pooling(rng):
    return global_pooling(rng, layers.GlobalAveragePooling2D)


def global_max_pooling(rng):
    return global_pooling(rng, layers.GlobalMaxPooling2D)


def layer_norm_mlp(rng):
    inp = keras.Input((32,))
    h = layers.Dense(32, activation="relu")(inp)
    h = layers.LayerNormalization()(h)
    h = layers.Dense(32, activation="relu")(h)
    return classifier(rng, inp, layers.Dense(10)(h), uniform(rng, (32,)))


def group_norm_cnn(rng):
    inp = keras.Input((16, 16, 3))
    h = layers.Conv2D(8, 3)(inp)
    h = layers.GroupNormalization(groups=4)(h)
    h = layers.ReLU()(h)
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = layers.Flatten()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng, 3))


def pad_crop(rng):
    inp = keras.Input((16, 16, 1))
    h = layers.ZeroPadding2D(2)(inp)
    h = layers.Conv2D(8, 3, activation="relu")(h)
    h = layers.Cropping2D(((1, 1), (2, 0)))(h)
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = layers.Flatten()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng))


def dropout_noise(rng):
    inp = keras.Input((16, 16, 1))
    h = layers.Conv2D(8, 3, activation="relu")(inp)
    h = layers.SpatialDropout2D(0.2)(h)
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = layers.Dropout(0.5)(layers.Flatten()(h))
    h = layers.Dense(16, activation="relu")(h)
    h = layers.GaussianNoise(0.1)(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng))


def multi_input(rng):
    image = keras.Input((16, 16, 1), name="image")
    meta = keras.Input((8,), name="meta")
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(image)
    g = layers.Dense(8, activation="relu")(meta)
    h = layers.Concatenate()([layers.Flatten()(h), g])
    h = layers.Dense(16, activation="relu")(h)
    x = {"image": images(rng), "meta": uniform(rng, (8,))}
    return classifier(rng, [image, meta], layers.Dense(10)(h), x)


def multi_output(rng):
    """A classifier and a regression head on one body."""
    inp = keras.Input((16, 16, 1))
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    h = layers.Dense(16, activation="relu")(layers.Flatten()(h))
    outputs = [layers.Dense(10, name="label")(h), layers.Dense(1, name="value")(h)]
    x = images(rng)
    y = [rng.integers(0, 10, N_EXAMPLES), normal(rng, (1,))]
    loss = [sparse_loss(), keras.losses.MeanSquaredError()]
    return Case(keras.Model(inp, outputs), x, y, loss)


def nested_sequential(rng):
    block = keras.Sequential(
        [
            layers.Conv2D(8, 3, activation="relu"),
            layers.Conv2D(8, 3, strides=2, activation="relu"),
        ],
        name="block",
    )
    inp = keras.Input((16, 16, 1))
    h = layers.Flatten()(block(inp))
    return classifier(rng, inp, layers.Dense(10)(h), images(rng))


class SmallSubclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(8, 3, activation="relu")
        self.flatten = layers.Flatten()
        self.dense = layers.Dense(10)

    def call(self, x):
        return self.dense(self.flatten(self.conv(x)))


def subclassed(rng):
    model = SmallSubclassed()
    x = images(rng)
    model(x[:2])
    return Case(model, x, rng.integers(0, 10, N_EXAMPLES), sparse_loss())


class ResidualBlock(layers.Layer):
    """A subclassed layer of layers: convolution, batch norm, ReLU, skip."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(filters, 3, padding="same")
        self.norm = layers.BatchNormalization()

    def call(self, x, training=None):
        return keras.ops.relu(x + self.norm(self.conv(x), training=training))


class SubclassedResNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem = layers.Conv2D(8, 3, padding="same", activation="relu")
        self.blocks = [ResidualBlock(8), ResidualBlock(8)]
        self.pool = layers.GlobalAveragePooling2D()
        self.dropout = layers.Dropout(0.2)
        self.head = layers.Dense(10)

    def call(self, x, training=False):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(self.dropout(self.pool(x), training=training))


def subclassed_blocks(rng):
    """A subclassed model of subclassed residual blocks (batch norm, dropout)."""
    model = SubclassedResNet()
    x = images(rng, 3)
    model(x[:2])
    return Case(model, x, rng.integers(0, 10, N_EXAMPLES), sparse_loss())


def saved_and_loaded(rng):
    """A model compiled, saved to a .keras file and loaded back."""
    inp = keras.Input((16, 16, 1))
    h = layers.Conv2D(8, 3, activation="relu")(inp)
    h = layers.Flatten()(layers.MaxPooling2D(2)(h))
    model = keras.Model(inp, layers.Dense(10)(h))
    model.compile("adam", sparse_loss())
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    return Case(loaded, images(rng), rng.integers(0, 10, N_EXAMPLES), sparse_loss())


def rescaling(rng):
    """Pixels 0-255 scaled to [0, 1] by the model."""
    inp = keras.Input((16, 16, 1))
    h = layers.Rescaling(1 / 255)(inp)
    h = layers.Conv2D(8, 3, activation="relu")(h)
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = layers.Flatten()(h)
    x = np.round(uniform(rng, (16, 16, 1), high=255.0))
    return classifier(rng, inp, layers.Dense(10)(h), x)


def activation_mlp(rng, activation):
    inp = keras.Input((32,))
    h = layers.Dense(32, activation=activation)(inp)
    h = layers.Dense(32, activation=activation)(h)
    x = normal(rng, (32,))
    return classifier(rng, inp, layers.Dense(10)(h), x, activations=(activation,))


def leaky_relu(rng):
    return activation_mlp(rng, "leaky_relu")


def relu6(rng):
    return activation_mlp(rng, "relu6")


def elu(rng):
    return activation_mlp(rng, "elu")


def sigmoid(rng):
    return activation_mlp(rng, "sigmoid")


def swish(rng):
    return activation_mlp(rng, "swish")


def activation_layers(rng):
    """LeakyReLU, ReLU(max_value=6) and ELU layers."""
    inp = keras.Input((16, 16, 1))
    h = layers.LeakyReLU(0.1)(layers.Conv2D(8, 3)(inp))
    h = layers.ReLU(max_value=6)(layers.Conv2D(8, 3, strides=2)(h))
    h = layers.ELU()(layers.Dense(16)(layers.Flatten()(h)))
    names = ("leaky_relu", "relu6", "elu")
    return classifier(rng, inp, layers.Dense(10)(h), images(rng), activations=names)


def prelu(rng):
    """PReLU layers, slopes starting at PyTorch's 0.25 (one per channel after
    the convolution, one per neuron after the Dense layer)."""
    start = keras.initializers.Constant(0.25)
    inp = keras.Input((16, 16, 1))
    h = layers.PReLU(start, shared_axes=[1, 2])(layers.Conv2D(8, 3, strides=2)(inp))
    h = layers.PReLU(start)(layers.Dense(16)(layers.Flatten()(h)))
    return classifier(
        rng, inp, layers.Dense(10)(h), images(rng), activations=("prelu",)
    )


def embedding_text(rng):
    inp = keras.Input((20,), dtype="int32")
    h = layers.Embedding(100, 8)(inp)
    h = layers.GlobalAveragePooling1D()(h)
    h = layers.Dense(16, activation="relu")(h)
    x = rng.integers(0, 100, (N_EXAMPLES, 20)).astype("int32")
    return classifier(rng, inp, layers.Dense(2)(h), x, classes=2)


def channels_first(rng):
    """Convolutions and pooling on channels-first images (PyTorch's layout)."""
    inp = keras.Input((1, 16, 16))
    h = layers.Conv2D(8, 3, activation="relu", data_format="channels_first")(inp)
    h = layers.MaxPooling2D(2, data_format="channels_first")(h)
    h = layers.Conv2D(16, 3, activation="relu", data_format="channels_first")(h)
    h = layers.AveragePooling2D(2, data_format="channels_first")(h)
    h = layers.Flatten()(h)
    x = uniform(rng, (1, 16, 16))
    return classifier(rng, inp, layers.Dense(10)(h), x)


def grouped_dilated(rng):
    """A grouped convolution (groups=4) and a dilated one."""
    inp = keras.Input((16, 16, 4))
    h = layers.Conv2D(16, 3, groups=4, activation="relu")(inp)
    h = layers.Conv2D(16, 3, dilation_rate=2, activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng, 4))


def any_image_size(rng):
    """A fully convolutional network whose input has no fixed size."""
    inp = keras.Input((None, None, 1))
    h = layers.Conv2D(8, 3, activation="relu")(inp)
    h = layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = layers.GlobalMaxPooling2D()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng))


def shared_layers(rng):
    """A Siamese network: one encoder applied to two inputs, then subtracted."""
    encoder = keras.Sequential(
        [layers.Dense(16, activation="relu"), layers.Dense(8, activation="relu")]
    )
    a, b = keras.Input((32,), name="a"), keras.Input((32,), name="b")
    h = layers.Subtract()([encoder(a), encoder(b)])
    x = {"a": uniform(rng, (32,)), "b": uniform(rng, (32,))}
    return classifier(rng, [a, b], layers.Dense(2)(h), x, classes=2)


def temporal_conv(rng):
    """A temporal convolutional network: causal, dilated Conv1D over a sequence."""
    inp = keras.Input((64, 2))
    h = layers.Conv1D(8, 3, padding="causal", activation="relu")(inp)
    h = layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu")(h)
    h = layers.Conv1D(8, 3, padding="causal", dilation_rate=4, activation="relu")(h)
    h = layers.Dense(4)(h)
    x = normal(rng, (64, 2))
    y = normal(rng, (64, 4))
    model = keras.Model(inp, h)
    return Case(model, x, y, keras.losses.MeanSquaredError())


def keras_ops_graph(rng):
    """keras.ops applied to symbolic tensors: a mean, a product by a constant,
    a transpose and a concatenation in the functional graph."""
    inp = keras.Input((8, 8, 2))
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    pooled = keras.ops.mean(h, axis=(1, 2))
    scaled = keras.ops.multiply(pooled, 0.5)
    rows = keras.ops.reshape(keras.ops.transpose(h, (0, 3, 1, 2)), (-1, 8 * 64))
    h = keras.ops.concatenate([scaled, rows], axis=-1)
    h = layers.Dense(16, activation="relu")(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng, 2, size=8))


def transposed_autoencoder(rng):
    """Strided convolutions down, transposed convolutions up, sigmoid out."""
    inp = keras.Input((16, 16, 1))
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(1, 3, strides=2, padding="same")(h)
    out = layers.Activation("sigmoid")(h)
    x = images(rng)
    return Case(keras.Model(inp, out), x, x, keras.losses.BinaryCrossentropy())


def sequence_dense(rng):
    """Dense layers on every position of a sequence, then flattened."""
    inp = keras.Input((10, 6))
    h = layers.Dense(12, activation="relu")(inp)
    h = layers.TimeDistributed(layers.Dense(8, activation="relu"))(h)
    h = layers.Flatten()(h)
    return classifier(rng, inp, layers.Dense(3)(h), normal(rng, (10, 6)), classes=3)


def augmented_input(rng):
    """Augmentation and resizing layers at the input, as Keras guides show."""
    inp = keras.Input((20, 20, 1))
    h = layers.RandomFlip("horizontal")(inp)
    h = layers.RandomRotation(0.1)(h)
    h = layers.Resizing(16, 16)(h)
    h = layers.Conv2D(8, 3, activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Flatten()(h)
    return classifier(rng, inp, layers.Dense(10)(h), images(rng, size=20))


def application(rng, constructor, activation, **options):
    model = constructor(
        input_shape=(32, 32, 3), weights=None, classifier_activation=None, **options
    )
    x = images(rng, 3, N_APPLICATION, 32)
    y = rng.integers(0, 1000, N_APPLICATION)
    return Case(model, x, y, sparse_loss(), (activation,), application=True)


def mobilenet_v2(rng):
    return application(rng, keras.applications.MobileNetV2, "relu6", alpha=0.35)


def efficientnet_b0(rng):
    return application(rng, keras.applications.EfficientNetB0, "swish")


def resnet50(rng):
    return application(rng, keras.applications.ResNet50, "relu")


NETWORKS = {
    "mlp": mlp,
    "conv1d": conv1d,
    "cnn_max_pooling": cnn_max_pooling,
    "bn_before_relu": bn_before_relu,
    "bn_after_relu": bn_after_relu,
    "depthwise_separable": depthwise_separable,
    "unet": unet,
    "residual_add_layer": residual_add_layer,
    "residual_plus": residual_plus,
    "inception_concatenate": inception_concatenate,
    "global_average_pooling": global_average_pooling,
    "global_max_pooling": global_max_pooling,
    "layer_norm_mlp": layer_norm_mlp,
    "group_norm_cnn": group_norm_cnn,
    "pad_crop": pad_crop,
    "dropout_noise": dropout_noise,
    "multi_input": multi_input,
    "multi_output": multi_output,
    "nested_sequential": nested_sequential,
    "subclassed": subclassed,
    "subclassed_blocks": subclassed_blocks,
    "saved_and_loaded": saved_and_loaded,
    "rescaling": rescaling,
    "leaky_relu": leaky_relu,
    "relu6": relu6,
    "elu": elu,
    "sigmoid": sigmoid,
    "swish": swish,
    "activation_layers": activation_layers,
    "prelu": prelu,
    "embedding_text": embedding_text,
    "channels_first": channels_first,
    "grouped_dilated": grouped_dilated,
    "any_image_size": any_image_size,
    "shared_layers": shared_layers,
    "temporal_conv": temporal_conv,
    "keras_ops_graph": keras_ops_graph,
    "transposed_autoencoder": transposed_autoencoder,
    "sequence_dense": sequence_dense,
    "augmented_input": augmented_input,
}
APPLICATIONS = {
    "MobileNetV2": mobilenet_v2,
    "EfficientNetB0": efficientnet_b0,
    "ResNet50": resnet50,
}


# -------------------------------------------------------------- helpers


def head(x, n):
    if isinstance(x, dict):
        return {name: values[:n] for name, values in x.items()}
    return x[:n]


def with_steps(x):
    """Inputs of one step: ``(n, 1, ...)``."""
    if isinstance(x, dict):
        return {name: values[:, None] for name, values in x.items()}
    return x[:, None]


def as_list(values):
    return list(values) if isinstance(values, list | tuple) else [values]


def flat(values):
    values = np.asarray(values)
    return values.reshape(len(values), -1)


def keras_outputs(model, x):
    return [flat(output) for output in as_list(model.predict(x, verbose=0))]


def simulate(converter, x):
    """The outputs ``(n, steps, size)`` of ``N_STEPS`` steps, in the model's order."""
    probes = list(converter.outputs.values())
    with snnify.Simulator(converter.net, progress_bar=False, seed=SEED) as sim:
        data = sim.predict(with_steps(x), n_steps=N_STEPS)
    return [np.asarray(data[probe]) for probe in probes]


def relative_error(spiking, expected):
    """Largest difference of the mean outputs, relative to the largest output."""
    errors = [
        np.max(np.abs(flat(snnify.decode(s, "mean")) - e)) / np.max(np.abs(e))
        for s, e in zip(spiking, expected, strict=True)
    ]
    return float(max(errors))


def channels_first(x):
    return np.moveaxis(x, -1, 1) if x.ndim > 2 else x


def flat_channels_last(output):
    """A NIR output ``(n, steps, channels, ...)`` as snnify's ``(n, steps, size)``."""
    if output.ndim > 3:
        output = np.moveaxis(output, 2, -1)
    return output.reshape(output.shape[0], output.shape[1], -1)


def step_targets(y):
    """Targets of one step: ``(n, 1, size)``."""
    y = np.asarray(y)
    return y.reshape(len(y), 1, -1)


# --------------------------------------------------------------- stages


def exact_stage(case, state):
    snnify.Converter(case.model).verify()
    return {}


def spiking_stage(case, state):
    swaps = {name: snnify.IntegrateAndFire() for name in case.activations}
    state["network"] = snnify.Converter(
        case.model,
        swap_activations=swaps,
        scale_firing_rates="auto",
        calibration_data=case.x,
    )
    x = head(case.x, N_PREDICT)
    spiking = simulate(state["network"], x)
    return {"2 rel. error": relative_error(spiking, keras_outputs(case.model, x))}


def for_steps_stage(case, state):
    converter = snnify.convert_for_steps(case.model, case.x, n_steps=N_STEPS)
    x = head(case.x, N_PREDICT)
    spiking = simulate(converter, x)
    return {"3 rel. error": relative_error(spiking, keras_outputs(case.model, x))}


def measure_stage(case, state):
    x = with_steps(head(case.x, N_PREDICT))
    stats = snnify.measure(state["network"], x, n_steps=N_STEPS)
    return {"4 spikes/neuron": stats.spikes_per_neuron}


def save_load_stage(case, state):
    converter = state["network"]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "network.keras")
        snnify.save_network(converter, path, n_steps=N_STEPS)
        saved = snnify.load_network(path)
    x = head(case.x, N_PREDICT)
    before = simulate(converter, x)
    after = simulate(saved.converter, x)
    differences = [np.max(np.abs(a - b)) for a, b in zip(before, after, strict=True)]
    return {"5 max abs diff": float(max(differences))}


def nir_stage(case, state):
    converter = state["network"]
    graph = snnify.export_nir(converter)
    kinds = [type(node) for node in graph.nodes.values()]
    if kinds.count(nir.Input) > 1 or kinds.count(nir.Output) > 1:
        return {"6 rel. diff": "n/a (several inputs or outputs)"}
    x = head(case.x, N_PREDICT)
    output, _ = run_graph(graph, channels_first(x), N_STEPS)
    expected = simulate(converter, x)[0]
    difference = np.max(np.abs(flat_channels_last(output) - expected))
    return {"6 rel. diff": float(difference / np.max(np.abs(expected)))}


def quantized_stage(case, state):
    quantized, _ = snnify.fine_tune(
        case.model,
        case.x,
        case.y,
        levels=N_STEPS,
        epochs=1,
        loss=case.loss,
        batch_size=BATCH,
        verbose=0,
        replace="all",
    )
    converter = snnify.convert_quantized(quantized)
    x = head(case.x, N_PREDICT)
    spiking = simulate(converter, x)
    return {"7 rel. error": relative_error(spiking, keras_outputs(quantized, x))}


def fit_stage(case, state):
    converter = state["network"]
    probes = list(converter.outputs.values())
    losses = dict(zip(probes, as_list(case.loss), strict=True))
    targets = {p: step_targets(y) for p, y in zip(probes, as_list(case.y), strict=True)}
    x = with_steps(case.x)
    with snnify.Simulator(
        converter.net, minibatch_size=BATCH, progress_bar=False, seed=SEED
    ) as sim:
        sim.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses)
        history = sim.fit(x, targets, epochs=1, verbose=0)
        evaluation = sim.evaluate(x, targets, n_steps=N_STEPS, verbose=0)
    return {
        "8 loss, fit": float(history.history["loss"][-1]),
        "8 loss, evaluate": float(evaluation["loss"]),
    }


class Stage(NamedTuple):
    name: str
    run: Callable
    needs_network: bool  # the network of stage 2
    for_applications: bool


STAGES = (
    Stage("1 exact + verify", exact_stage, False, True),
    Stage("2 IF + auto, predict", spiking_stage, False, True),
    Stage("3 convert_for_steps", for_steps_stage, False, True),
    Stage("4 measure", measure_stage, True, False),
    Stage("5 save + load", save_load_stage, True, False),
    Stage("6 export_nir vs reference", nir_stage, True, True),
    Stage("7 fine_tune + convert_quantized", quantized_stage, False, False),
    Stage("8 fit + evaluate", fit_stage, True, False),
)
NUMBERS = (
    "2 rel. error",
    "3 rel. error",
    "4 spikes/neuron",
    "5 max abs diff",
    "6 rel. diff",
    "7 rel. error",
    "8 loss, fit",
    "8 loss, evaluate",
)


# --------------------------------------------------------------- runner


@dataclasses.dataclass
class Record:
    """What one network did at every stage."""

    name: str
    layers: int = 0
    seconds: float = 0.0
    cells: dict = dataclasses.field(default_factory=dict)
    numbers: dict = dataclasses.field(default_factory=dict)
    warnings: dict = dataclasses.field(default_factory=dict)


def describe(error: Exception) -> str:
    message = " ".join(str(error).split())
    if len(message) > ERROR_CHARACTERS:
        message = message[:ERROR_CHARACTERS] + "..."
    return f"{type(error).__name__}: {message}"


def run_stage(record: Record, stage: Stage, case: Case, state: dict) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            record.numbers.update(stage.run(case, state))
            record.cells[stage.name] = "OK"
        except Exception as error:  # every failure is a result of the benchmark
            record.cells[stage.name] = describe(error)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if messages:
        record.warnings[stage.name] = messages


def run_network(name: str, build: Callable) -> Record:
    keras.backend.clear_session()  # the same layer names whatever ran before
    keras.utils.set_random_seed(SEED)
    start = time.perf_counter()
    case = build(np.random.default_rng(SEED))
    record = Record(name, layers=len(case.model.layers))
    state = {}
    for stage in STAGES:
        stage_start = time.perf_counter()
        if case.application and not stage.for_applications:
            record.cells[stage.name] = "-"
        elif stage.needs_network and "network" not in state:
            record.cells[stage.name] = "no network"
        else:
            run_stage(record, stage, case, state)
        seconds = time.perf_counter() - stage_start
        print(f"{name}: {stage.name}: {record.cells[stage.name]} ({seconds:.1f} s)",
              file=sys.stderr, flush=True)  # fmt: skip
    record.seconds = time.perf_counter() - start
    return record


# --------------------------------------------------------------- tables


def row(cells) -> str:
    cells = [str(cell).replace("|", "\\|") for cell in cells]
    return "| " + " | ".join(cells) + " |"


def number(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def stage_table(records) -> list:
    lines = [row(["network", *(stage.name for stage in STAGES)])]
    lines.append(row(["---"] * (len(STAGES) + 1)))
    for record in records:
        lines.append(row([record.name, *(record.cells[s.name] for s in STAGES)]))
    return lines


def number_table(records) -> list:
    lines = [row(["network", "layers", *NUMBERS, "time (s)"])]
    lines.append(row(["---"] + ["---:"] * (len(NUMBERS) + 2)))
    for record in records:
        values = [number(record.numbers.get(key, "-")) for key in NUMBERS]
        lines.append(
            row([record.name, record.layers, *values, f"{record.seconds:.0f}"])
        )
    return lines


def warning_table(records) -> list:
    lines = [row(["network", "stage", "warnings", "distinct (their start)"])]
    lines.append(row(["---", "---", "---:", "---"]))
    for record in records:
        for stage, messages in record.warnings.items():
            starts = [" ".join(m.split())[:WARNING_CHARACTERS] for m in messages]
            distinct = list(dict.fromkeys(starts))
            text = " ".join(f"({i}) {s}" for i, s in enumerate(distinct, 1))
            lines.append(row([record.name, stage, len(messages), text]))
    if len(lines) == 2:
        lines.append(row(["(none)", "", "", ""]))
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        choices=[*NETWORKS, *APPLICATIONS],
                        help="run these networks only")  # fmt: skip
    parser.add_argument("--skip-applications", action="store_true",
                        help="leave out the keras.applications networks")  # fmt: skip
    args = parser.parse_args()
    builders = {**NETWORKS, **APPLICATIONS}
    names = args.only or list(builders)
    if args.skip_applications:
        names = [name for name in names if name not in APPLICATIONS]
    start = time.perf_counter()
    records = [run_network(name, builders[name]) for name in names]
    print(
        f"\nbackend {keras.backend.backend()}, Keras {keras.__version__}, "
        f"{N_EXAMPLES} examples ({N_PREDICT} predicted; applications "
        f"{N_APPLICATION}), {N_STEPS} steps, seed {SEED}, "
        f"{time.perf_counter() - start:.0f} s in all\n"
    )
    print("\n".join(stage_table(records)))
    print("\n`-`: not run for the applications; `no network`: stage 2 made none.\n")
    print("\n".join(number_table(records)))
    print()
    print("\n".join(warning_table(records)))


if __name__ == "__main__":
    main()
