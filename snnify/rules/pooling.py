"""Rules for pooling layers.

Average pooling is linear, so it acts on spikes as it does on rates. Max
pooling is exact on rates and, on spike trains, makes each window's spike
count follow the largest count of its inputs
(:class:`snnify.spike_pooling.SpikeCountMaxPooling`);
``Converter(max_to_avg_pool=True)`` replaces it by average pooling instead
(:func:`average_pooling_like`), as NengoDL does.

Example:
    >>> import keras
    >>> pool = keras.layers.MaxPooling1D(3, strides=2, padding="same")
    >>> [w.tolist() for w in pooling_windows(pool, (5, 2))]
    [[[0, 0, 1], [1, 2, 3], [3, 4, 4]]]
    >>> type(average_pooling_like(pool)).__name__
    'AveragePooling1D'
"""

from __future__ import annotations

import numpy as np
from keras import layers

from snnify.rules.conv import as_tuple, split_channels, tap_counts
from snnify.rules.registry import Conversion, Cost, clone, one_per_element, register
from snnify.spike_pooling import SpikeCountMaxPooling


def existing(*names: str) -> tuple:
    """The classes of ``keras.layers`` among ``names`` (newer Keras has more)."""
    return tuple(getattr(layers, name) for name in names if hasattr(layers, name))


MAX_POOLING = (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D)
GLOBAL_MAX_POOLING = (
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
)
ADAPTIVE_MAX_POOLING = existing(
    "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D"
)
ADAPTIVE_AVERAGE_POOLING = existing(
    "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D"
)


def pooling_connections(layer, input_shape) -> np.ndarray:
    n = len(input_shape) - 1
    pool = as_tuple(layer.pool_size, n)
    strides = as_tuple(layer.strides or layer.pool_size, n)
    return tap_counts(layer, input_shape, pool, strides, (1,) * n, per_tap=1)


def adaptive_windows(size: int, outputs: int) -> np.ndarray:
    """Input indices of adaptive pooling's windows along one axis.

    Window ``i`` covers ``[floor(i size / outputs), ceil((i + 1) size /
    outputs))``; shorter windows repeat their last index.
    """
    start = np.arange(outputs) * size // outputs
    stop = -(-np.arange(1, outputs + 1) * size // outputs)
    width = int((stop - start).max())
    return np.minimum(start[:, None] + np.arange(width), stop[:, None] - 1)


def strided_windows(size: int, pool: int, stride: int, padding: str) -> np.ndarray:
    """Input indices of a pooling window along one axis, padding clipped.

    ``"same"`` padding puts the odd padding element at the end (as Keras);
    a padded position is replaced by the nearest element of its window.
    """
    if padding == "same":
        outputs = -(-size // stride)
        before = max((outputs - 1) * stride + pool - size, 0) // 2
    else:
        outputs, before = (size - pool) // stride + 1, 0
    index = np.arange(outputs)[:, None] * stride + np.arange(pool) - before
    return np.clip(index, 0, size - 1)


def pooling_windows(layer, input_shape) -> list[np.ndarray]:
    """Per spatial axis, the input indices of every window of a max pooling layer.

    ``(outputs, window)`` arrays; an index may repeat inside a window.
    """
    spatial, _ = split_channels(layer, input_shape)
    if isinstance(layer, GLOBAL_MAX_POOLING):
        return [np.arange(size)[None] for size in spatial]
    if isinstance(layer, ADAPTIVE_MAX_POOLING):
        outputs = as_tuple(layer.output_size, len(spatial))
        return [adaptive_windows(s, o) for s, o in zip(spatial, outputs)]
    n = len(spatial)
    pool = as_tuple(layer.pool_size, n)
    strides = as_tuple(layer.strides or layer.pool_size, n)
    return [
        strided_windows(size, p, s, layer.padding)
        for size, p, s in zip(spatial, pool, strides)
    ]


def pull_back_windows(layer, values, input_shapes, index) -> np.ndarray:
    """Each input element reaches every window that contains it.

    For max pooling this is an upper bound: a spike that does not raise its
    window's largest count reaches nothing.
    """
    shape = input_shapes[index]
    spatial, channels = split_channels(layer, shape)
    windows = pooling_windows(layer, shape)
    outputs = [len(w) for w in windows]
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    if channels_first:
        values = np.moveaxis(values.reshape(channels, *outputs), 0, -1)
    values = values.reshape(*outputs, channels)
    for axis, (size, window) in enumerate(zip(spatial, windows)):
        member = np.zeros((size, len(window)))
        member[window, np.arange(len(window))[:, None]] = 1.0  # repeats count once
        values = np.moveaxis(np.tensordot(member, values, axes=(1, axis)), 0, axis)
    return np.moveaxis(values, -1, 0) if channels_first else values


def adaptive_connections(layer, input_shape) -> np.ndarray:
    """Every input element, once per window that contains it."""
    spatial, channels = split_channels(layer, input_shape)
    outputs = as_tuple(layer.output_size, len(spatial))
    counts = np.ones((), "int64")
    for size, out in zip(spatial, outputs):
        window = adaptive_windows(size, out)
        member = np.zeros((size, out), "int64")
        member[window, np.arange(out)[:, None]] = 1
        counts = np.multiply.outer(counts, member.sum(axis=1))
    if getattr(layer, "data_format", None) == "channels_first":
        return np.broadcast_to(counts, (channels, *spatial)).copy()
    return np.broadcast_to(counts[..., None], (*spatial, channels)).copy()


@register(layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
def average_pooling(layer):
    """Linear: the mean of spike trains is the mean of their rates."""
    cost = Cost(connections=pooling_connections, additions=True)
    return Conversion(clone(layer), cost=cost)


@register(
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
)
def global_average_pooling(layer):
    """Linear: the mean of spike trains is the mean of their rates."""
    cost = Cost(connections=one_per_element, additions=True)
    return Conversion(clone(layer), cost=cost)


if ADAPTIVE_AVERAGE_POOLING:

    @register(*ADAPTIVE_AVERAGE_POOLING)
    def adaptive_average_pooling(layer):
        """Linear: the mean of spike trains is the mean of their rates."""
        cost = Cost(connections=adaptive_connections, additions=True)
        return Conversion(clone(layer), cost=cost)


@register(*MAX_POOLING, *GLOBAL_MAX_POOLING, *ADAPTIVE_MAX_POOLING)
def max_pooling(layer):
    """Exact on rates; on spikes, each window's count follows its inputs' largest.

    Set ``max_to_avg_pool=True`` for average pooling instead (NengoDL's option).
    """
    cost = Cost(pull_back=pull_back_windows)
    return Conversion(clone(layer), cost=cost, node=SpikeCountMaxPooling)


AVERAGE_OF = dict(
    zip(
        MAX_POOLING + GLOBAL_MAX_POOLING + ADAPTIVE_MAX_POOLING,
        (layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
        + (
            layers.GlobalAveragePooling1D,
            layers.GlobalAveragePooling2D,
            layers.GlobalAveragePooling3D,
        )
        + ADAPTIVE_AVERAGE_POOLING,
    )
)


def average_pooling_like(layer):
    """The average pooling layer with the options of max pooling ``layer``.

    ``Converter(max_to_avg_pool=True)`` converts it in place of ``layer``
    (also inside ``TimeDistributed``); returns ``layer`` itself when it is not
    a max pooling layer.
    """
    if isinstance(layer, layers.TimeDistributed):
        inner = average_pooling_like(layer.layer)
        if inner is layer.layer:
            return layer
        return layers.TimeDistributed(inner, name=layer.name)
    for cls in type(layer).__mro__:
        if cls in AVERAGE_OF:
            return AVERAGE_OF[cls].from_config(layer.get_config())
    return layer
