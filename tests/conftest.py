"""Shared fixtures of the test suite.

Tests marked ``slow`` train networks or run many steps; ``pytest -m "not
slow"`` leaves them out for a quick check (CI runs everything).
"""

import keras
import numpy as np
import pytest

from snnify.demo.datasets import load_mnist


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: trains a network or runs long simulations (seconds each)"
    )


@pytest.fixture(scope="session")
def mnist_arrays():
    """The bundled MNIST: ``((x_train, y_train), (x_test, y_test))``, uint8."""
    return load_mnist()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def seeded():
    """Seed Keras (weights, shuffling) for a reproducible test."""
    keras.utils.set_random_seed(0)


@pytest.fixture
def clipped_network():
    """``clipped_network(max_value) -> (model, x)``: two clipped ReLU layers.

    A fifth of the inputs of the first layer ("first") are above the clip;
    the second is named "second". At 6 they are ReLU6 (``activation="relu6"``,
    then ``ReLU(max_value=6)``); at another clip ``m``, ``ReLU(max_value=m)``
    layers with the first kernel scaled by ``m / 6``: the same network in units
    ``m / 6`` as large (its biases start at 0). ``x``: 256 uniform inputs.
    """

    def build(max_value=6.0):
        keras.utils.set_random_seed(0)
        x = np.random.default_rng(0).uniform(0, 1, (256, 8)).astype("float32")
        inp = keras.Input((8,))
        if max_value == 6.0:
            first = keras.layers.Dense(16, activation="relu6", name="first")
            hidden = first(inp)
        else:
            first = keras.layers.Dense(16)
            hidden = keras.layers.ReLU(max_value=max_value, name="first")(first(inp))
        second = keras.layers.ReLU(max_value=max_value, name="second")
        hidden = second(keras.layers.Dense(16)(hidden))
        model = keras.Model(inp, keras.layers.Dense(3)(hidden))
        kernel, bias = first.get_weights()
        first.set_weights([20 * max_value / 6 * kernel, bias])
        return model, x

    return build
