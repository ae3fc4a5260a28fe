"""Rule for TimeDistributed: the wrapped layer's conversion, applied at every step.

In a temporal model (see :class:`snnify.Converter`) the time axis of the
model is the simulation's steps, so a ``TimeDistributed(layer)`` is ``layer``
applied to each step: it converts as ``layer`` does (a ReLU activation
becomes neurons, max pooling is gated...), and costs what ``layer`` costs.

Example:
    >>> import keras
    >>> wrapped = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="relu"))
    >>> wrapped.build((None, None, 4))
    >>> conversion = time_distributed(wrapped)
    >>> conversion.activation.__name__, type(conversion.layer.layer).__name__
    ('relu', 'Dense')
"""

from __future__ import annotations

from keras import layers

from snnify.rules.registry import (
    CLONE_SUFFIX,
    Conversion,
    Cost,
    convert_layer,
    register,
)


def inner_cost(cost: Cost | None) -> Cost | None:
    """``cost`` of the wrapped layer, for functions that receive the wrapper."""
    if cost is None:
        return None

    def unwrap(function):
        if function is None:
            return None
        return lambda wrapper, *args: function(wrapper.layer, *args)

    return Cost(
        connections=unwrap(cost.connections),
        additions=cost.additions,
        extra_macs=unwrap(cost.extra_macs),
        pull_back=unwrap(cost.pull_back),
    )


@register(layers.TimeDistributed)
def time_distributed(layer):
    """Converts as the wrapped layer, at every step."""
    inner = convert_layer(layer.layer)
    if inner.layer is None:
        return Conversion(activation=inner.activation, cost=inner_cost(inner.cost))
    wrapper = layers.TimeDistributed(inner.layer, name=layer.name + CLONE_SUFFIX)
    return Conversion(
        wrapper,
        inner.activation,
        frozen=inner.frozen,
        cost=inner_cost(inner.cost),
        node=inner.node,
    )
