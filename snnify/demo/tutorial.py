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
from snnify.backend import import_unused_tensorflow_quietly
from snnify.demo.configurations import (
    RATE_LOSS_WEIGHT,
    REGULARIZED_AVERAGE,
    TARGET_RATE,
)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend (``keras.utils.set_random_seed``).

    Keras also seeds TensorFlow when it is installed, whatever the backend;
    TensorFlow is imported first with its start-up log muted.
    """
    import_unused_tensorflow_quietly()
    keras.utils.set_random_seed(seed)


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
    seed: int = 0,
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
        seed: seeds everything random (the order of the examples, the
            neurons' initial voltages) at the start, so that the result does
            not depend on what ran before.

    Returns:
        The Keras ``History``.
    """
    seed_everything(seed)
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
    optimizer = keras.optimizers.RMSprop(0.001)
    batch = minibatch_size
    if regularize:
        updates = epochs * -(-len(x_train) // minibatch_size)
        optimizer, batch = averaging_rmsprop(updates, minibatch_size)
    with snnify.Simulator(converter.net, minibatch_size=batch, seed=seed) as sim:
        sim.compile(
            optimizer=optimizer,
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


def averaging_rmsprop(updates: int, minibatch_size: int):
    """RMSprop(1e-3) that saves the weights averaged over its last updates.

    The average spans ``REGULARIZED_AVERAGE`` updates, or a fifth of them in
    short runs (plain RMSprop below 10 updates). On JAX each update's gradient
    is accumulated over micro-batches of 20 examples, the same mean gradient as
    one minibatch, computed 3.7 times faster per example by XLA on CPU.

    Args:
        updates: how many updates the training makes.
        minibatch_size: examples per update.

    Returns:
        ``(optimizer, batch)``: the optimizer and the batch size to run.

    Example:
        >>> optimizer, batch = averaging_rmsprop(500, 200)
        >>> optimizer.use_ema, round(optimizer.ema_momentum ** (200 / batch), 3)
        (True, 0.99)
    """
    window = min(REGULARIZED_AVERAGE, updates // 5)
    if window < 2:
        return keras.optimizers.RMSprop(0.001), minibatch_size
    micro = 20 if keras.backend.backend() == "jax" else minibatch_size
    accumulate = minibatch_size // micro if minibatch_size % micro == 0 else 1
    batch = minibatch_size // accumulate
    optimizer = keras.optimizers.RMSprop(
        0.001,
        use_ema=True,
        # Keras updates the average at every micro-batch
        ema_momentum=1 - 1 / (window * accumulate),
        gradient_accumulation_steps=accumulate if accumulate > 1 else None,
    )
    return optimizer, batch
