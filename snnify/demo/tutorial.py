"""The tutorial's network and its training through the converter.

Example:
    >>> model, tensors = build_model()
    >>> sorted(tensors), model.output_shape
    (['conv0', 'conv1', 'dense', 'inp'], (None, 10))
"""

from __future__ import annotations

import keras
import numpy as np

import snnify
from snnify.demo.configurations import RATE_LOSS_WEIGHT, TARGET_RATE


def build_model():
    """The tutorial's network: two convolutions and a dense readout.

    Returns:
        ``(model, tensors)`` with ``tensors`` a dict of the Keras tensors
        ``inp``, ``conv0``, ``conv1`` and ``dense``.
    """
    inp = keras.Input(shape=(28, 28, 1))
    conv0 = keras.layers.Conv2D(32, 3, activation=keras.activations.relu)(inp)
    conv1 = keras.layers.Conv2D(64, 3, strides=2, activation=keras.activations.relu)(
        conv0
    )
    dense = keras.layers.Dense(10)(keras.layers.Flatten()(conv1))
    model = keras.Model(inputs=inp, outputs=dense)
    return model, {"inp": inp, "conv0": conv0, "conv1": conv1, "dense": dense}


def train(
    model,
    tensors: dict,
    x_train: np.ndarray,
    y_train: np.ndarray,
    path: str,
    epochs: int,
    validation: tuple | None = None,
    regularize: bool = False,
    minibatch_size: int = 200,
    verbose: int = 2,
):
    """Train the converted (non-spiking) network and save its parameters.

    Args:
        model: the Keras model (its own weights are the starting point).
        tensors: as returned by :func:`build_model`.
        x_train: ``(n, 1, 784)`` images.
        y_train: ``(n, 1, 1)`` labels.
        path: where to save the parameters (``.npz`` is added).
        epochs: passes over the training data.
        validation: ``(x_test, y_test)`` shaped like the training data.
        regularize: add the tutorial's firing-rate losses on both
            convolutional layers (MSE to ``TARGET_RATE`` Hz, weight 1e-3).
        minibatch_size: examples per update.
        verbose: Keras's ``fit`` verbosity.

    Returns:
        The Keras ``History``.
    """
    inp, conv0, conv1, dense = (tensors[k] for k in ("inp", "conv0", "conv1", "dense"))
    converter = snnify.Converter(model)
    output = converter.outputs[dense]
    loss = {output: keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    loss_weights = {output: 1.0}
    targets = {output: y_train}
    if regularize:
        with converter.net:
            rate_probes = [
                snnify.Probe(converter.layers[conv0]),
                snnify.Probe(converter.layers[conv1]),
            ]
        for probe in rate_probes:
            loss[probe] = keras.losses.MeanSquaredError()
            loss_weights[probe] = RATE_LOSS_WEIGHT
            # the same target for every image: a read-only view, not a copy
            targets[probe] = np.broadcast_to(
                np.float32(TARGET_RATE), (len(x_train), 1, probe.size_in)
            )
    with snnify.Simulator(converter.net, minibatch_size=minibatch_size) as sim:
        sim.compile(
            optimizer=keras.optimizers.RMSprop(0.001),
            loss=loss,
            loss_weights=loss_weights,
            metrics={output: [keras.metrics.sparse_categorical_accuracy]},
        )
        validation_data = None
        if validation is not None and not regularize:
            validation_data = (
                {converter.inputs[inp]: validation[0]},
                {output: validation[1]},
            )
        history = sim.fit(
            {converter.inputs[inp]: x_train},
            targets,
            validation_data=validation_data,
            epochs=epochs,
            verbose=verbose,
        )
        sim.save_params(path)
    return history
