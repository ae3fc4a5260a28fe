"""Rules for layers that only move, pad or repeat values.

Their cost is a pull-back: it carries the fan-out of every output element
back to the input element it came from.
"""

from __future__ import annotations

import numpy as np
from keras import layers

from snnify.rules.registry import MOVES_VALUES, Conversion, Cost, clone, register


def spatial_widths(layer, widths, rank: int) -> list:
    """``[(before, after)]`` for every axis of an example (channels: 0)."""
    if all(isinstance(w, int) for w in widths):  # a 1D layer's single pair
        widths = [widths]
    pads = [tuple(int(v) for v in w) for w in widths]
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return [(0, 0), *pads]
    return [*pads, (0, 0)][:rank]


def pull_back_padding(layer, values, input_shapes, index) -> np.ndarray:
    pads = spatial_widths(layer, layer.padding, values.ndim)
    return values[tuple(slice(lo, d - hi) for (lo, hi), d in zip(pads, values.shape))]


def pull_back_cropping(layer, values, input_shapes, index) -> np.ndarray:
    return np.pad(values, spatial_widths(layer, layer.cropping, values.ndim))


def pull_back_permute(layer, values, input_shapes, index) -> np.ndarray:
    return np.transpose(values, tuple(np.argsort(layer.dims)))


def upsampling_sizes(layer, rank: int) -> tuple:
    """The repetitions along each spatial axis of an example of ``rank`` axes."""
    size = layer.size
    return tuple(size) if isinstance(size, (tuple, list)) else (int(size),) * (rank - 1)


def pull_back_upsampling(layer, values, input_shapes, index) -> np.ndarray:
    """Each input element reaches a block of ``size`` outputs: their sum."""
    shape = input_shapes[index]
    sizes = upsampling_sizes(layer, len(shape))
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        spatial = shape[1:]
        split = [shape[0]] + [v for n, s in zip(spatial, sizes) for v in (n, s)]
        axes = tuple(range(2, 2 + 2 * len(sizes), 2))
    else:
        spatial = shape[:-1]
        split = [v for n, s in zip(spatial, sizes) for v in (n, s)] + [shape[-1]]
        axes = tuple(range(1, 2 * len(sizes), 2))
    return values.reshape(split).sum(axis=axes)


# input elements that an output of an interpolating upsampling reads, per axis
INTERPOLATION_TAPS = {"bilinear": 2, "bicubic": 4, "lanczos3": 6, "lanczos5": 10}


def interpolation_connections(layer, input_shape) -> np.ndarray:
    """About ``taps`` per axis for every output: a weighted sum of inputs."""
    sizes = upsampling_sizes(layer, len(input_shape))
    taps = INTERPOLATION_TAPS.get(layer.interpolation, 1)
    return np.full(input_shape, int(np.prod(sizes)) * taps ** len(sizes), "int64")


def pull_back_repeat(layer, values, input_shapes, index) -> np.ndarray:
    return values.reshape(int(layer.n), -1).sum(axis=0)


@register(layers.Flatten, layers.Reshape)
def reshaping(layer):
    """Moves values."""
    return Conversion(clone(layer), cost=MOVES_VALUES)


@register(layers.Permute)
def permute(layer):
    """Moves values."""
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_permute))


@register(layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D)
def zero_padding(layer):
    """Moves values (and adds zeros)."""
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_padding))


@register(layers.Cropping1D, layers.Cropping2D, layers.Cropping3D)
def cropping(layer):
    """Moves values."""
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_cropping))


@register(layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D)
def upsampling(layer):
    """Repeats values ("nearest"); other interpolations are linear."""
    if getattr(layer, "interpolation", "nearest") != "nearest":
        return Conversion(
            clone(layer), cost=Cost(connections=interpolation_connections)
        )
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_upsampling))


@register(layers.RepeatVector)
def repeat_vector(layer):
    """Repeats values."""
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_repeat))
