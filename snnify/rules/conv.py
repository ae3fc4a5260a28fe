"""Rules for convolutional layers (all options: strides, padding, dilation, groups).

A convolution keeps its weights and loses its activation, which becomes the
layer's neurons. Its cost is counted tap by tap: taps that fall on zero padding
are not connections.

Example:
    >>> taps_per_input(5, kernel=3, stride=2).tolist()
    [1, 1, 2, 1, 1]
    >>> taps_per_input(4, kernel=3, padding="same").tolist()
    [2, 3, 3, 2]
"""

from __future__ import annotations

import numpy as np
from keras import layers

from snnify.rules.registry import Cost, register, split_activation


def taps_per_input(
    size: int, kernel: int, stride: int = 1, dilation: int = 1, padding="valid"
) -> np.ndarray:
    """For each of ``size`` inputs along one axis, the (output, tap) pairs reading it.

    ``padding`` is ``"valid"``, ``"same"`` (Keras/XLA: ``ceil(size / stride)``
    outputs, the odd padding element at the end) or ``"causal"``.
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        outputs, before = max((size - span) // stride + 1, 0), 0
    elif padding == "same":
        outputs = -(-size // stride)
        before = max((outputs - 1) * stride + span - size, 0) // 2
    elif padding == "causal":
        outputs, before = size, span - 1
    else:
        raise ValueError(
            "padding must be 'valid', 'same' or 'causal'. "
            f"Received: padding={padding!r}"
        )
    index = (
        np.arange(outputs)[:, None] * stride + np.arange(kernel)[None] * dilation
    ) - before
    index = index[(index >= 0) & (index < size)]
    return np.bincount(index, minlength=size).astype("int64")


def as_tuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def split_channels(layer, input_shape) -> tuple[tuple, int]:
    """``(spatial shape, channels)`` of one example of ``layer``'s input."""
    if getattr(layer, "data_format", None) == "channels_first":
        return tuple(input_shape[1:]), int(input_shape[0])
    return tuple(input_shape[:-1]), int(input_shape[-1])


def tap_counts(layer, input_shape, kernel, strides, dilation, per_tap) -> np.ndarray:
    """``per_tap`` times the taps reading each element, in the input's shape."""
    spatial, channels = split_channels(layer, input_shape)
    counts = np.ones((), "int64")
    for axis, size in enumerate(spatial):
        along = taps_per_input(
            size, kernel[axis], strides[axis], dilation[axis], layer.padding
        )
        counts = np.multiply.outer(counts, along)
    counts = counts * per_tap
    if getattr(layer, "data_format", None) == "channels_first":
        return np.broadcast_to(counts, (channels, *spatial)).copy()
    return np.broadcast_to(counts[..., None], (*spatial, channels)).copy()


def convolution_connections(layer, input_shape) -> np.ndarray:
    n = len(input_shape) - 1
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        per_tap = int(layer.depth_multiplier)
    else:
        per_tap = int(layer.filters) // int(getattr(layer, "groups", 1) or 1)
    return tap_counts(
        layer,
        input_shape,
        as_tuple(layer.kernel_size, n),
        as_tuple(layer.strides, n),
        as_tuple(layer.dilation_rate, n),
        per_tap,
    )


def separable_connections(layer, input_shape) -> np.ndarray:
    n = len(input_shape) - 1
    return tap_counts(
        layer,
        input_shape,
        as_tuple(layer.kernel_size, n),
        as_tuple(layer.strides, n),
        as_tuple(layer.dilation_rate, n),
        int(layer.depth_multiplier),
    )


def separable_pointwise_macs(layer, input_shape) -> float:
    """The pointwise convolution's MACs: every output position, every filter."""
    output_shape = layer.compute_output_shape((1, *input_shape))[1:]
    spatial, _ = split_channels(layer, output_shape)
    _, channels = split_channels(layer, input_shape)
    depth = channels * int(layer.depth_multiplier)
    return float(np.prod(spatial)) * depth * int(layer.filters)


def transposed_connections(layer, input_shape) -> np.ndarray:
    """Every tap of every filter: exact for ``"valid"`` padding.

    With ``"same"`` padding a few taps at the edges fall outside the output
    and are counted anyway.
    """
    n = len(input_shape) - 1
    kernel = np.prod(as_tuple(layer.kernel_size, n))
    return np.full(input_shape, int(kernel) * int(layer.filters), "int64")


@register(
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.DepthwiseConv1D,
    layers.DepthwiseConv2D,
)
def convolution(layer):
    """Linear; a ReLU activation becomes neurons, others are applied exactly."""
    return split_activation(layer, Cost(connections=convolution_connections))


@register(layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
def transposed_convolution(layer):
    """Linear; a ReLU activation becomes neurons, others are applied exactly."""
    return split_activation(layer, Cost(connections=transposed_connections))


@register(layers.SeparableConv1D, layers.SeparableConv2D)
def separable_convolution(layer):
    """Linear; a ReLU activation becomes neurons, others are applied exactly."""
    cost = Cost(connections=separable_connections, extra_macs=separable_pointwise_macs)
    return split_activation(layer, cost)
