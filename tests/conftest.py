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
