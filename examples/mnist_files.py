"""Write the files that docs/cli.md feeds to the ``snnify`` command line.

- ``mnist.keras``: the tutorial's network (two convolutions and a dense
  readout, ``snnify.demo.tutorial.build_model``) trained with ``model.fit``:
  RMSprop 1e-3, batches of 200, 2 epochs on the bundled 10,000 MNIST training
  images scaled to [0, 1];
- ``mnist-train.npz`` (``x``, ``y``) and ``mnist-test.npz`` (``x``, ``y``): the
  bundled training and test images as ``uint8`` 0..255 (so the commands scale
  them with ``--input-scale 1/255``) and their labels.

Run it with ``python examples/mnist_files.py [FOLDER]`` (about a minute on 2
CPU cores).
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")  # as snnify: JAX unless told otherwise

import keras  # noqa: E402
import numpy as np  # noqa: E402

from snnify.demo.datasets import load_mnist  # noqa: E402
from snnify.demo.tutorial import build_model  # noqa: E402


def main(folder: str = ".") -> None:
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_mnist()
    model, _ = build_model()
    model.compile(
        optimizer=keras.optimizers.RMSprop(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train[..., None] / 255.0, y_train, batch_size=200, epochs=2, verbose=2)
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "mnist.keras"))
    np.savez(os.path.join(folder, "mnist-train.npz"), x=x_train, y=y_train)
    np.savez(os.path.join(folder, "mnist-test.npz"), x=x_test, y=y_test)
    print(f"wrote mnist.keras, mnist-train.npz and mnist-test.npz in {folder}")


if __name__ == "__main__":
    main(*sys.argv[1:])
