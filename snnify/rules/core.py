"""Rules for Dense, EinsumDense, activation layers, Dropout-like and Identity layers.

An activation becomes neurons when it is a ReLU (or when ``swap_activations``
maps it to a neuron type); any other activation is applied exactly, without
spikes, at every step. Activation layers with a named elementwise function
(``LeakyReLU``, ``ELU``, ``ReLU(max_value=m)``) give that function a name, so
that ``swap_activations={"leaky_relu": neuron}`` can turn them into neurons
(rectified neurons drop the negative part; ``IntegrateAndFire(negative_slope=a)``
neurons give it with negative spikes).

Example:
    >>> import keras
    >>> activation = leaky_relu(keras.layers.LeakyReLU(0.5)).activation
    >>> activation.__name__, float(activation(keras.ops.convert_to_tensor(-2.0)))
    ('leaky_relu', -1.0)
"""

from __future__ import annotations

import functools

import numpy as np
from keras import activations, layers, ops

from snnify.keras_graph import relu_form
from snnify.rules.registry import (
    MOVES_VALUES,
    Conversion,
    Cost,
    NamedActivation,
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
    """Linear; a ReLU activation becomes neurons, others are applied exactly."""
    return split_activation(layer, Cost(connections=dense_connections))


@register(layers.EinsumDense)
def einsum_dense(layer):
    """Linear; a ReLU activation becomes neurons, others are applied exactly."""
    return split_activation(layer, Cost(connections=einsum_connections))


@register(layers.Activation)
def activation(layer):
    """ReLU becomes neurons; other activations are applied exactly."""
    return Conversion(activation=layer.activation, cost=MOVES_VALUES)


@register(layers.ReLU)
def relu(layer):
    """Becomes neurons; clipped, leaky or shifted forms are applied exactly.

    ``max_value=6`` alone is named ``"relu6"``, another positive
    ``max_value`` alone ``"clipped_relu"`` and a slope alone ``"leaky_relu"``,
    for ``swap_activations``.
    """
    form = relu_form(layer)
    if form == "relu":
        return Conversion(activation=activations.relu, cost=MOVES_VALUES)
    if form == "relu6":
        return Conversion(activation=activations.relu6, cost=MOVES_VALUES)
    if form == "clipped_relu":
        activation = clipped_relu(float(layer.max_value))
        return Conversion(activation=activation, cost=MOVES_VALUES)
    if form == "leaky_relu":
        return leaky_relu(layer)
    # clipped and leaky or shifted: applied exactly, one operation per element
    return Conversion(clone(layer), cost=Cost(connections=one_per_element))


def clipped_relu(max_value: float) -> NamedActivation:
    """``min(max(x, 0), max_value)``, named ``"clipped_relu"``.

    Example:
        >>> import keras
        >>> f = clipped_relu(2.0)
        >>> f.__name__, keras.ops.convert_to_numpy(f(keras.ops.arange(-1.0, 4.0)))
        ('clipped_relu', array([0., 0., 1., 2., 2.], dtype=float32))
    """
    function = functools.partial(activations.relu, max_value=max_value)
    return NamedActivation("clipped_relu", function)


@register(layers.LeakyReLU, kind="exact")
def leaky_relu(layer):
    """Applied exactly; ``swap_activations={"leaky_relu": neuron}`` makes neurons."""
    function = functools.partial(
        activations.leaky_relu, negative_slope=float(layer.negative_slope)
    )
    return Conversion(
        activation=NamedActivation("leaky_relu", function), cost=MOVES_VALUES
    )


@register(layers.ELU, kind="exact")
def elu(layer):
    """Applied exactly; ``swap_activations={"elu": neuron}`` makes neurons."""
    function = functools.partial(activations.elu, alpha=float(layer.alpha))
    return Conversion(activation=NamedActivation("elu", function), cost=MOVES_VALUES)


@register(layers.PReLU, kind="exact")
def prelu(layer):
    """Applied exactly with the layer's slopes (``alpha``), named ``"prelu"``.

    ``swap_activations={"prelu": neuron}`` makes neurons (rectified ones drop
    the negative part); :func:`snnify.convert_for_steps` gives them the
    layer's slopes as ``negative_slope``.

    Example:
        >>> import keras, numpy as np
        >>> layer = keras.layers.PReLU()
        >>> layer.build((None, 3))
        >>> layer.set_weights([np.float32([0.5, 0.0, 2.0])])
        >>> f = prelu(layer).activation
        >>> f.__name__, keras.ops.convert_to_numpy(f(-keras.ops.ones((1, 3))))
        ('prelu', array([[-0.5,  0. , -2. ]], dtype=float32))
    """
    alpha = ops.convert_to_tensor(ops.convert_to_numpy(layer.alpha))  # a copy

    def function(x):
        return activations.relu(x) - alpha * activations.relu(-x)

    return Conversion(activation=NamedActivation("prelu", function), cost=MOVES_VALUES)


@register(layers.Softmax, kind="exact")
def softmax(layer):
    """Applied exactly at every step (usually on the output, read as it is)."""
    return Conversion(clone(layer), cost=Cost(connections=one_per_element))


@register(
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
    layers.AlphaDropout,
    layers.GaussianDropout,
    layers.GaussianNoise,
    layers.ActivityRegularization,
)
def dropout(layer):
    """The identity, except while training."""
    return Conversion(clone(layer), cost=MOVES_VALUES)


@register(layers.Identity)
def identity(layer):
    """The identity."""
    return Conversion(cost=MOVES_VALUES)
