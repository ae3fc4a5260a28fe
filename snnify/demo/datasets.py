"""Datasets for examples, the demo and tests.

The package ships a 10,000-image part of the MNIST training set and the whole
MNIST test set (``snnify/demo/data/mnist-subset.npz``, see ``snnify/demo/data/README.md``
for its origin and licence), so that everything runs without a network
connection. The full training set comes from ``keras.datasets.mnist`` when it
is asked for and can be downloaded.

Example:
    >>> from snnify.demo.datasets import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_train.dtype, y_test.shape
    ((10000, 28, 28), dtype('uint8'), (10000,))
"""

from __future__ import annotations

import sys
from importlib import resources

import numpy as np

MNIST_SUBSET = "mnist-subset.npz"


def bundled_mnist_path():
    """The bundled MNIST file (a ``Traversable``; ``str()`` gives its path)."""
    return resources.files("snnify.demo") / "data" / MNIST_SUBSET


def _bundled_mnist():
    path = bundled_mnist_path()
    with resources.as_file(path) as file, np.load(file) as data:
        return (
            (data["x_train"].astype("uint8"), data["y_train"].astype("uint8")),
            (data["x_test"].astype("uint8"), data["y_test"].astype("uint8")),
        )


def load_mnist(full: bool = False, verbose: bool = True):
    """Load MNIST as ``((x_train, y_train), (x_test, y_test))``.

    Images are ``uint8`` arrays ``(n, 28, 28)`` with values 0..255 and labels
    are ``uint8`` arrays ``(n,)``, as ``keras.datasets.mnist.load_data()``
    returns them.

    Args:
        full: if True, load the full dataset (60,000 training images) with
            ``keras.datasets.mnist.load_data()``, which downloads it once and
            caches it in ``~/.keras/datasets``. When that fails (no network),
            a message says so and the bundled subset is returned instead.
            If False (the default), return the bundled subset: 10,000
            training images (about 1,000 per digit) and the complete 10,000-image
            test set; no network needed.
        verbose: print a message when falling back to the bundled subset.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``.

    Example:
        >>> from snnify.demo.datasets import load_mnist
        >>> (x_train, y_train), (x_test, y_test) = load_mnist()
        >>> int(x_train.max()), sorted(set(y_train.tolist())) == list(range(10))
        (255, True)
    """
    if full:
        try:
            import keras

            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as error:  # no network, blocked download, bad cache...
            if verbose:
                print(
                    "Could not load the full MNIST set with keras.datasets.mnist "
                    f"({type(error).__name__}: {error}); using the bundled subset "
                    "(10,000 training images, the full test set) instead.",
                    file=sys.stderr,
                )
        else:
            return (
                (np.asarray(x_train, "uint8"), np.asarray(y_train, "uint8")),
                (np.asarray(x_test, "uint8"), np.asarray(y_test, "uint8")),
            )
    return _bundled_mnist()
