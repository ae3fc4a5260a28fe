"""Rules for Dense, EinsumDense, Activation, ReLU, Dropout and Identity layers."""

from __future__ import annotations

import numpy as np
from keras import activations, layers

from snnify.rules.registry import (
    MOVES_VALUES,
    Conversion,
    Cost,
    clone,
    one_per_element,
    register,
    split_activation,
)


def dense_connections(layer, input_shape) -> np.ndarray:
    return np.full(input_shape, int(layer.units), "int64")


def einsum_connections(layer, input_shape) -> np.ndarray:
    """Every input element meets the kernel's axes that it is not summed over."""
    inputs, kernel = layer.equation.split("->")[0].split(",")
    shape = tuple(layer.kernel.shape)
    kernel_axes = kernel.replace("...", "")
    count = np.prod([d for axis, d in zip(kernel_axes, shape) if axis not in inputs])
    return np.full(input_shape, int(count), "int64")


@register(layers.Dense)
def dense(layer):
    return split_activation(layer, Cost(connections=dense_connections))


@register(layers.EinsumDense)
def einsum_dense(layer):
    return split_activation(layer, Cost(connections=einsum_connections))


@register(layers.Activation)
def activation(layer):
    return Conversion(activation=layer.activation, cost=MOVES_VALUES)


@register(layers.ReLU)
def relu(layer):
    plain = (
        layer.max_value is None
        and float(layer.negative_slope) == 0.0
        and float(layer.threshold) == 0.0
    )
    if plain:
        return Conversion(activation=activations.relu, cost=MOVES_VALUES)
    # clipped or leaky: applied exactly, one operation per element
    return Conversion(clone(layer), cost=Cost(connections=one_per_element))


@register(
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
)
def dropout(layer):
    # the identity, except while training
    return Conversion(clone(layer), cost=MOVES_VALUES)


@register(layers.Identity)
def identity(layer):
    return Conversion(cost=MOVES_VALUES)
