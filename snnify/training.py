"""Training helpers: firing-rate regularisation and data for Keras's ``fit``.

Spiking neurons train through their rate functions (ReLU for the rectified
types, SoftLIF for LIF); Keras runs the training loop on ``converter.net``.

Example:
    >>> import keras, snnify
    >>> inp = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, activation="relu")(inp)
    >>> converter = snnify.Converter(keras.Model(inp, keras.layers.Dense(2)(hidden)))
    >>> with converter.net:
    ...     regularizer = snnify.regularize_firing_rates(
    ...         converter.layers[hidden], target=(100, 250)
    ...     )
    >>> regularizer.low, regularizer.high
    (100.0, 250.0)
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from snnify.graph import Node, Probe, current_network
from snnify.validation import is_positive_number


class RateRegularizer:
    """A loss on the firing rates of a node, added while training.

    ``weight * mean((low - r)_+^2 + (r - high)_+^2)``: zero for rates inside
    ``[low, high]``, the mean squared error to ``target`` when
    ``low == high == target``.
    """

    def __init__(self, node: Node, low: float, high: float, weight: float):
        self.node = node
        self.low = float(low)
        self.high = float(high)
        self.weight = float(weight)

    def loss(self, rates):
        below = ops.relu(self.low - rates)
        above = ops.relu(rates - self.high)
        return self.weight * ops.mean(below * below + above * above)


def regularize_firing_rates(target_node, target=250.0, weight=1e-3) -> RateRegularizer:
    """Pull the firing rates of a layer towards ``target`` Hz while training.

    Call inside ``with converter.net:``. It is the one-line form of a probe on
    the layer with an MSE loss towards a constant target (and needs no target
    data in ``fit``).

    Args:
        target_node: ``converter.layers[layer]`` (or a Probe on it).
        target: a rate in Hz, or a range ``(low, high)`` of acceptable rates.
        weight: weight of this loss against the others.
    """
    network = current_network("regularize_firing_rates")
    node = target_node.target if isinstance(target_node, Probe) else target_node
    low, high = target if isinstance(target, (tuple, list)) else (target, target)
    for name, value in (("target", low), ("target", high), ("weight", weight)):
        if not (value == 0 or is_positive_number(value)):
            what = "a rate in Hz" if name == "target" else "the weight of the loss"
            raise ValueError(
                f"{name} must be finite and >= 0 ({what}). Received: {name}={value!r}"
            )
    if low > high:
        raise ValueError(
            f"The rate range must be (low, high) with low <= high. Received: target={target}"
        )
    regularizer = RateRegularizer(node, low, high, weight)
    network.rate_regularizers.append(regularizer)
    return regularizer


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training when the loss becomes NaN or infinite; keep the start's weights.

    ``Simulator.fit`` adds it. When a batch's loss is not finite, training
    stops (as ``keras.callbacks.TerminateOnNaN``), and at its end the
    network's weights and the optimizer's state are set back to what they
    were when this ``fit`` started, with a warning: a diverged run never
    leaves NaN weights behind.

    Attributes:
        stopped: ``(epoch, batch, loss)`` where training stopped, or None.
    """

    def __init__(self, variables):
        super().__init__()
        self.variables = list(variables)
        self.stopped = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped = None
        self._start = [ops.convert_to_numpy(v).copy() for v in self.variables]
        optimizer = self.model.optimizer
        built = optimizer is not None and optimizer.built
        self._optimizer_start = (
            [ops.convert_to_numpy(v).copy() for v in optimizer.variables]
            if built
            else None
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(float(loss)):
            return
        self.stopped = (self._epoch, batch, float(loss))
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped is None:
            return
        for variable, value in zip(self.variables, self._start):
            variable.assign(value)
        optimizer = self.model.optimizer
        start = self._optimizer_start
        for i, variable in enumerate(optimizer.variables if optimizer else []):
            fresh = start is None or i >= len(start)
            variable.assign(ops.zeros_like(variable) if fresh else start[i])
        epoch, batch, loss = self.stopped
        warnings.warn(
            f"Training stopped at epoch {epoch + 1}, batch {batch + 1}: the loss "
            f"became {loss}. The weights are back to those this fit started from. "
            "Lower the learning rate, check the targets and inputs, or clip "
            "gradients (compile(optimizer=keras.optimizers.Adam(clipnorm=1.0))).",
            RuntimeWarning,
            stacklevel=2,
        )
