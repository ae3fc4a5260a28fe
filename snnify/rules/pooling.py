"""Rules for pooling layers.

Average pooling is linear, so it acts on spikes as it does on rates. Max
pooling of spike trains is not the max of the rates: it is refused.
"""

from __future__ import annotations

import numpy as np
from keras import layers

from snnify.rules.conv import as_tuple, tap_counts
from snnify.rules.registry import (
    Conversion,
    Cost,
    clone,
    one_per_element,
    refusal,
    register,
    supported_types,
)


def pooling_connections(layer, input_shape) -> np.ndarray:
    n = len(input_shape) - 1
    pool = as_tuple(layer.pool_size, n)
    strides = as_tuple(layer.strides or layer.pool_size, n)
    return tap_counts(layer, input_shape, pool, strides, (1,) * n, per_tap=1)


@register(layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
def average_pooling(layer):
    cost = Cost(connections=pooling_connections, additions=True)
    return Conversion(clone(layer), cost=cost)


@register(
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
)
def global_average_pooling(layer):
    cost = Cost(connections=one_per_element, additions=True)
    return Conversion(clone(layer), cost=cost)


@register(
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.MaxPooling3D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
)
@refusal
def max_pooling(layer):
    raise TypeError(
        f"Layer {layer.name!r} of type {type(layer).__name__} cannot be converted: "
        "the max of spike trains is not the max of their rates. Use the matching "
        "AveragePooling layer instead (and retrain). Supported layer types: "
        f"{supported_types()}."
    )
