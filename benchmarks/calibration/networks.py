"""Build and train the networks of the calibration benchmark, deterministically.

Every network is trained with plain ``model.fit`` (JAX backend, the library's
default; seeds: ``keras.utils.set_random_seed(0)`` before building and again
before fitting, as benchmarks/bench_latency.py does) and saved to
``models/NAME.keras`` with ``models/NAME.json`` (ANN test accuracy, data set,
training recipe, time). The evaluation arrays of each data set (500
calibration images = the first 500 training images, the test set) are written
to ``data/eval-DATASET.npz`` so that the snnify and SpikingJelly baselines read
exactly the same numbers.

    KERAS_BACKEND=jax python networks.py [NAME ...] [--force]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import data
import keras
import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
L = keras.layers


def _prelu(x, alpha=0.0):
    """A PReLU layer with one slope per channel, starting at ``alpha``
    (Keras's default 0; 0.25 is PyTorch's and the PReLU paper's)."""
    shared_axes = [1, 2] if len(x.shape) == 4 else None
    start = keras.initializers.Constant(alpha)
    return L.PReLU(alpha_initializer=start, shared_axes=shared_axes)(x)


def tutorial_network(shape=(28, 28, 1), activation="relu", alpha=0.0):
    """The tutorial's network (= bench_latency.tutorial_network).

    ``activation="prelu"``: ``PReLU`` layers (one slope per channel, starting
    at ``alpha``) after linear convolutions.
    """
    inp = keras.Input(shape)
    if activation == "prelu":
        x = _prelu(L.Conv2D(32, 3)(inp), alpha)
        x = _prelu(L.Conv2D(64, 3, strides=2)(x), alpha)
    else:
        x = L.Conv2D(32, 3, activation=activation)(inp)
        x = L.Conv2D(64, 3, strides=2, activation=activation)(x)
    out = L.Dense(10)(L.Flatten()(x))
    return keras.Model(inp, out, name="tutorial")


def deeper_network(
    shape=(28, 28, 1), max_value=None, negative_slope=None, prelu=False,
    activation="relu",
):  # fmt: skip
    """Task B's network (= bench_latency.deeper_network).

    ``max_value``: its ReLUs clipped there (``ReLU(max_value=...)`` layers
    instead of ``activation="relu"``); ``negative_slope``: leaky ReLUs
    (``LeakyReLU(negative_slope)`` layers) instead; ``prelu``: ``PReLU``
    layers (one slope per channel) instead; else ``activation``.
    """
    plain = max_value is None and negative_slope is None and not prelu
    act = activation if plain else None

    def clip(x):
        if max_value is not None:
            return L.ReLU(max_value=max_value)(x)
        if negative_slope is not None:
            return L.LeakyReLU(negative_slope)(x)
        if prelu:
            return _prelu(x)
        return x

    inp = keras.Input(shape)
    x = clip(L.Conv2D(32, 3, activation=act)(inp))
    x = clip(L.Conv2D(32, 3, strides=2, activation=act)(x))
    x = clip(L.Conv2D(64, 3, activation=act)(x))
    x = clip(L.Conv2D(64, 3, strides=2, activation=act)(x))
    x = clip(L.Dense(128, activation=act)(L.Flatten()(x)))
    out = L.Dense(10)(x)
    return keras.Model(inp, out, name="deeper")


def resnet_bn(shape=(28, 28, 1)):
    """A small residual network with batch normalisation.

    stem Conv16-BN-ReLU; residual block (Conv16-BN-ReLU-Conv16-BN, Add, ReLU);
    AveragePooling 2x2; Conv32-BN-ReLU; residual block of 32; global average
    pooling; Dense 10. 'same' padding, stride 1 everywhere; 6 ReLU layers;
    BatchNormalization(momentum=0.9).
    """

    def conv_bn(x, filters, name):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        # momentum 0.9: with Keras's default 0.99 the moving variance still
        # holds 0.99**300 = 5 % of its initial 1 after the 300 updates of
        # 3 epochs, several times the true variance here: the first run
        # scored 9.9 % in inference mode (97 % with batch statistics).
        return L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)

    def block(x, filters, name):
        y = L.ReLU(name=f"{name}_relu1")(conv_bn(x, filters, f"{name}a"))
        y = conv_bn(y, filters, f"{name}b")
        return L.ReLU(name=f"{name}_relu2")(L.Add(name=f"{name}_add")([x, y]))

    inp = keras.Input(shape)
    x = L.ReLU(name="stem_relu")(conv_bn(inp, 16, "stem"))
    x = block(x, 16, "block1")
    x = L.AveragePooling2D(2, name="pool")(x)
    x = L.ReLU(name="trans_relu")(conv_bn(x, 32, "trans"))
    x = block(x, 32, "block2")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="resnet_bn")


@keras.saving.register_keras_serializable(package="calibration")
class ResidualBlock(L.Layer):
    """resnet_bn's residual block as a subclassed layer."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv_a = L.Conv2D(filters, 3, padding="same", use_bias=False)
        self.norm_a = L.BatchNormalization(momentum=0.9)
        self.conv_b = L.Conv2D(filters, 3, padding="same", use_bias=False)
        self.norm_b = L.BatchNormalization(momentum=0.9)

    def call(self, x, training=None):
        y = keras.ops.relu(self.norm_a(self.conv_a(x), training=training))
        y = self.norm_b(self.conv_b(y), training=training)
        return keras.ops.relu(x + y)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="calibration")
class SubclassedResNet(keras.Model):
    """resnet_bn written as a subclassed model of subclassed blocks."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem_conv = L.Conv2D(16, 3, padding="same", use_bias=False)
        self.stem_norm = L.BatchNormalization(momentum=0.9)
        self.block1 = ResidualBlock(16)
        self.pool = L.AveragePooling2D(2)
        self.trans_conv = L.Conv2D(32, 3, padding="same", use_bias=False)
        self.trans_norm = L.BatchNormalization(momentum=0.9)
        self.block2 = ResidualBlock(32)
        self.gap = L.GlobalAveragePooling2D()
        self.logits = L.Dense(10)

    def call(self, x, training=None):
        x = keras.ops.relu(self.stem_norm(self.stem_conv(x), training=training))
        x = self.pool(self.block1(x, training=training))
        x = keras.ops.relu(self.trans_norm(self.trans_conv(x), training=training))
        return self.logits(self.gap(self.block2(x, training=training)))


def resnet_subclassed(shape=(28, 28, 1)):
    """resnet_bn as users of subclassing write it (built by a first call)."""
    model = SubclassedResNet(name="resnet_subclassed")
    model(np.zeros((1, *shape), "float32"))
    return model


def tutorial_clipped(shape=(28, 28, 1), max_value=1.0):
    """The tutorial's network with ReLU layers clipped at ``max_value``."""
    inp = keras.Input(shape)
    x = L.ReLU(max_value=max_value)(L.Conv2D(32, 3)(inp))
    x = L.ReLU(max_value=max_value)(L.Conv2D(64, 3, strides=2)(x))
    out = L.Dense(10)(L.Flatten()(x))
    return keras.Model(inp, out, name="tutorial_clipped")


def digits_cnn(shape=(16, 16, 1), activation="relu"):
    """Small CNN for the 16x16 digits: 'same' convolutions and average pooling."""
    inp = keras.Input(shape)
    x = L.Conv2D(16, 3, padding="same", activation=activation)(inp)
    x = L.AveragePooling2D(2)(x)
    x = L.Conv2D(32, 3, padding="same", activation=activation)(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Dense(64, activation=activation)(L.Flatten()(x))
    out = L.Dense(10)(x)
    return keras.Model(inp, out, name="digits_cnn")


def mobilenet_relu6(shape=(28, 28, 1)):
    """A small MobileNet (v1-style): ReLU6 after every batch normalisation.

    Conv 3x3/2 16; two depthwise-separable blocks (depthwise 3x3 -> BN ->
    ReLU6 -> 1x1 conv -> BN -> ReLU6) of 32 and 64 channels, the second with
    stride 2; global average pooling; Dense 10. 'same' padding; 5 ReLU6
    layers (as keras.applications.MobileNet's ``ReLU(6.0)`` layers).
    """

    def bn_relu6(x, name):
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return L.ReLU(6.0, name=f"{name}_relu6")(x)

    inp = keras.Input(shape)
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = bn_relu6(x, "stem")
    for k, (filters, stride) in enumerate([(32, 1), (64, 2)]):
        x = L.DepthwiseConv2D(3, stride, padding="same", use_bias=False,
                              name=f"dw{k}")(x)  # fmt: skip
        x = bn_relu6(x, f"dw{k}")
        x = L.Conv2D(filters, 1, use_bias=False, name=f"pw{k}")(x)
        x = bn_relu6(x, f"pw{k}")
    out = L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out, name="mobilenet_relu6")


# name: (data set, builder, optimizer factory, batch size, epochs, recipe text)
NETWORKS = {
    "tutorial_rmsprop": (
        "mnist255", tutorial_network, lambda: keras.optimizers.RMSprop(0.001), 200, 2,
        "tutorial recipe: RMSprop(0.001), batch 200, 2 epochs, pixels 0..255",
    ),
    "tutorial_adam": (
        "mnist01", tutorial_network, lambda: keras.optimizers.Adam(0.001), 100, 6,
        "Adam(0.001), batch 100, 6 epochs, pixels in [0, 1]",
    ),
    "tutorial_sgdm": (
        "mnist01", tutorial_network,
        lambda: keras.optimizers.SGD(0.02, momentum=0.9), 100, 6,
        "SGD(0.02, momentum 0.9), batch 100, 6 epochs, pixels in [0, 1]",
    ),
    "taskB_deep": (
        "taskB", deeper_network, lambda: keras.optimizers.Adam(0.001), 100, 3,
        "bench_latency task B: Adam(0.001), batch 100, 3 epochs",
    ),
    "resnet_bn": (
        "mnist01", resnet_bn, lambda: keras.optimizers.Adam(0.001), 100, 3,
        "Adam(0.001), batch 100, 3 epochs, pixels in [0, 1]",
    ),
    "resnet_subclassed": (
        "mnist01", resnet_subclassed, lambda: keras.optimizers.Adam(0.001), 100, 3,
        "resnet_bn as a subclassed model; Adam(0.001), batch 100, 3 epochs, "
        "pixels in [0, 1]",
    ),
    "digits_cnn": (
        "digits16", digits_cnn, lambda: keras.optimizers.Adam(0.001), 32, 40,
        "Adam(0.001), batch 32, 40 epochs, sklearn digits 16x16 in [0, 1]",
    ),
    # ReLU6 networks (bench_relu6.py)
    "tutorial_relu6": (
        "mnist255", functools.partial(tutorial_network, activation="relu6"),
        lambda: keras.optimizers.RMSprop(0.001), 200, 2,
        "the tutorial's network with ReLU6, tutorial recipe: RMSprop(0.001), "
        "batch 200, 2 epochs, pixels 0..255",
    ),
    "mobilenet_relu6": (
        "mnist01", mobilenet_relu6, lambda: keras.optimizers.Adam(0.003), 100, 10,
        "Adam(0.003), batch 100, 10 epochs, pixels in [0, 1]",
    ),
    "digits_relu6": (
        "digits16", functools.partial(digits_cnn, activation="relu6"),
        lambda: keras.optimizers.Adam(0.001), 32, 40,
        "digits_cnn with ReLU6: Adam(0.001), batch 32, 40 epochs, sklearn digits "
        "16x16 in [0, 1]",
    ),
    # clipped ReLU networks (bench_relu6.py)
    "tutorial_clip1": (
        "mnist01", tutorial_clipped, lambda: keras.optimizers.Adam(0.001), 100, 6,
        "the tutorial's network with ReLU(max_value=1): Adam(0.001), batch 100, "
        "6 epochs, pixels in [0, 1]",
    ),
    "tutorial_clip1_rmsprop": (
        "mnist255", tutorial_clipped, lambda: keras.optimizers.RMSprop(0.001), 200, 2,
        "the tutorial's network with ReLU(max_value=1), tutorial recipe: "
        "RMSprop(0.001), batch 200, 2 epochs, pixels 0..255",
    ),
    "taskB_clip1": (
        "taskB", functools.partial(deeper_network, max_value=1.0),
        lambda: keras.optimizers.Adam(0.001), 100, 3,
        "task B's network with ReLU(max_value=1): Adam(0.001), batch 100, 3 epochs",
    ),
    # leaky ReLU networks (bench_leaky.py)
    "tutorial_leaky": (
        "mnist01", functools.partial(tutorial_network, activation="leaky_relu"),
        lambda: keras.optimizers.Adam(0.001), 100, 6,
        "the tutorial's network with activation='leaky_relu' (slope 0.2): "
        "Adam(0.001), batch 100, 6 epochs, pixels in [0, 1]",
    ),
    "tutorial_leaky_rmsprop": (
        "mnist255", functools.partial(tutorial_network, activation="leaky_relu"),
        lambda: keras.optimizers.RMSprop(0.001), 200, 2,
        "the tutorial's network with activation='leaky_relu' (slope 0.2), "
        "tutorial recipe: RMSprop(0.001), batch 200, 2 epochs, pixels 0..255",
    ),
    "taskB_leaky": (
        "taskB", functools.partial(deeper_network, negative_slope=0.1),
        lambda: keras.optimizers.Adam(0.001), 100, 3,
        "task B's network with LeakyReLU(0.1) layers: Adam(0.001), batch 100, "
        "3 epochs",
    ),
    "digits_leaky": (
        "digits16", functools.partial(digits_cnn, activation="leaky_relu"),
        lambda: keras.optimizers.Adam(0.001), 32, 40,
        "digits_cnn with activation='leaky_relu' (slope 0.2): Adam(0.001), "
        "batch 32, 40 epochs, sklearn digits 16x16 in [0, 1]",
    ),
    # PReLU networks (bench_leaky.py)
    "tutorial_prelu_rmsprop": (
        "mnist255", functools.partial(tutorial_network, activation="prelu"),
        lambda: keras.optimizers.RMSprop(0.001), 200, 2,
        "the tutorial's network with PReLU layers (one slope per channel), "
        "tutorial recipe: RMSprop(0.001), batch 200, 2 epochs, pixels 0..255",
    ),
    "tutorial_prelu25_rmsprop": (
        "mnist255",
        functools.partial(tutorial_network, activation="prelu", alpha=0.25),
        lambda: keras.optimizers.RMSprop(0.001), 200, 2,
        "the tutorial's network with PReLU layers (one slope per channel) "
        "starting at 0.25, tutorial recipe: RMSprop(0.001), batch 200, 2 "
        "epochs, pixels 0..255",
    ),
    "taskB_prelu": (
        "taskB", functools.partial(deeper_network, prelu=True),
        lambda: keras.optimizers.Adam(0.001), 100, 3,
        "task B's network with PReLU layers (one slope per channel): "
        "Adam(0.001), batch 100, 3 epochs",
    ),
    # networks without ReLUs (bench_activations.py)
    **{
        f"tutorial_{act}_rmsprop": (
            "mnist255", functools.partial(tutorial_network, activation=act),
            lambda: keras.optimizers.RMSprop(0.001), 200, 2,
            f"the tutorial's network with activation='{act}', tutorial recipe: "
            "RMSprop(0.001), batch 200, 2 epochs, pixels 0..255",
        )
        for act in ("gelu", "silu", "elu", "tanh")
    },
    "taskB_gelu": (
        "taskB", functools.partial(deeper_network, activation="gelu"),
        lambda: keras.optimizers.Adam(0.001), 100, 3,
        "task B's network with activation='gelu': Adam(0.001), batch 100, 3 epochs",
    ),
    "digits_gelu": (
        "digits16", functools.partial(digits_cnn, activation="gelu"),
        lambda: keras.optimizers.Adam(0.001), 32, 40,
        "digits_cnn with activation='gelu': Adam(0.001), batch 32, 40 epochs, "
        "sklearn digits 16x16 in [0, 1]",
    ),
    # bench_latency's task A exactly (pixels in [0, 1]), for comparison
    "tutorial_rmsprop01": (
        "mnist01", tutorial_network, lambda: keras.optimizers.RMSprop(0.001), 200, 2,
        "RMSprop(0.001), batch 200, 2 epochs, pixels in [0, 1] (bench_latency A)",
    ),
}  # fmt: skip


def accuracy(model, x, y) -> float:
    predicted = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(predicted, -1) == y))


def write_eval_arrays(dataset: str) -> Path:
    path = HERE / "data" / f"eval-{dataset}.npz"
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        x_cal, x_test, y_test = data.evaluation_arrays(dataset)
        np.savez(path, x_cal=x_cal, x_test=x_test, y_test=y_test)
    return path


def train(name: str, log) -> dict:
    dataset, build, optimizer, batch, epochs, recipe = NETWORKS[name]
    (x_train, y_train), (x_test, y_test) = data.load(dataset)
    keras.utils.set_random_seed(0)
    model = build(x_train.shape[1:])
    model.compile(optimizer=optimizer(), loss=LOSS)
    keras.utils.set_random_seed(0)
    t = time.time()
    model.fit(x_train, y_train, batch_size=batch, epochs=epochs, verbose=0)
    seconds = time.time() - t
    ann = accuracy(model, x_test, y_test)
    model.save(MODELS / f"{name}.keras")
    reloaded = keras.models.load_model(MODELS / f"{name}.keras")
    ann_reloaded = accuracy(reloaded, x_test, y_test)
    info = {
        "name": name,
        "dataset": dataset,
        "data_recipe": " ".join(
            data.__doc__.split(f"``{dataset}``")[1].split("\n- ")[0].split()
        ).strip(": "),
        "train_images": int(len(x_train)),
        "test_images": int(len(x_test)),
        "calibration_images": data.N_CALIBRATION,
        "training": recipe,
        "loss": "SparseCategoricalCrossentropy(from_logits=True)",
        "seed": 0,
        "ann_test_accuracy": ann,
        "ann_test_accuracy_reloaded": ann_reloaded,
        "train_seconds": round(seconds, 1),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "params": int(model.count_params()),
        "eval_arrays": str(write_eval_arrays(dataset).relative_to(HERE)),
    }
    (MODELS / f"{name}.json").write_text(json.dumps(info, indent=2))
    log(f"{name}: ANN {100 * ann:.2f} % (reloaded {100 * ann_reloaded:.2f} %), "
        f"trained in {seconds:.0f} s")  # fmt: skip
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=list(NETWORKS))
    parser.add_argument("--force", action="store_true", help="retrain existing")
    args = parser.parse_args()
    MODELS.mkdir(exist_ok=True)
    start = time.time()

    def log(message):
        print(f"{time.time() - start:6.0f} s  {message}", flush=True)

    for name in args.names:
        if (MODELS / f"{name}.json").exists() and not args.force:
            log(f"{name}: exists, skipped (--force to retrain)")
            continue
        train(name, log)
    summary = {}
    for path in sorted(MODELS.glob("*.json")):
        if path.name != "summary.json":
            info = json.loads(path.read_text())
            summary[info["name"]] = info
    (MODELS / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
