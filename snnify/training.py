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

from keras import ops

from snnify.graph import Node, Probe, current_network


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
    if low > high:
        raise ValueError(
            f"The rate range must be (low, high) with low <= high. Received: target={target}"
        )
    regularizer = RateRegularizer(node, low, high, weight)
    network.rate_regularizers.append(regularizer)
    return regularizer
