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


def pull_back_upsampling(layer, values, input_shapes, index) -> np.ndarray:
    """Each input element reaches ``size`` consecutive outputs: their sum."""
    steps, channels = input_shapes[index]
    return values.reshape(steps, int(layer.size), channels).sum(axis=1)


@register(layers.Flatten, layers.Reshape)
def reshaping(layer):
    return Conversion(clone(layer), cost=MOVES_VALUES)


@register(layers.Permute)
def permute(layer):
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_permute))


@register(layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D)
def zero_padding(layer):
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_padding))


@register(layers.Cropping1D, layers.Cropping2D, layers.Cropping3D)
def cropping(layer):
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_cropping))


@register(layers.UpSampling1D)
def upsampling(layer):
    return Conversion(clone(layer), cost=Cost(pull_back=pull_back_upsampling))
