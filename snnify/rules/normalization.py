"""Rules for normalisation layers, and folding batch normalisation.

BatchNormalization at inference is a fixed affine map per channel, so it acts
on spike trains as on rates. ``Converter(fold_batch_norm=True)`` folds it into
the Dense or convolution layer before it (:func:`folded_weights`), exactly,
leaving one layer with a kernel and a bias as hardware expects. Layer, group,
RMS and unit normalisation divide by statistics of their own input, so they
are applied exactly, without spikes, at every step.

Example:
    >>> import keras, numpy as np
    >>> inp = keras.Input((3,))
    >>> dense, norm = keras.layers.Dense(2), keras.layers.BatchNormalization()
    >>> model = keras.Model(inp, norm(dense(inp)))
    >>> kernel, bias = folded_weights(dense, norm)
    >>> x = np.ones((1, 3), "float32")
    >>> bool(np.allclose(x @ kernel + bias, model.predict(x, verbose=0), atol=1e-6))
    True
"""

from __future__ import annotations

import numpy as np
from keras import layers

from snnify.rules.registry import Conversion, Cost, clone, one_per_element, register

# layers whose output channels a batch normalisation after them can scale
FOLDABLE = (
    layers.Dense,
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
    layers.DepthwiseConv1D,
    layers.DepthwiseConv2D,
    layers.SeparableConv1D,
    layers.SeparableConv2D,
)


@register(layers.BatchNormalization)
def batch_normalization(layer):
    """An affine map per channel (its inference form); can be folded."""
    return Conversion(clone(layer), frozen=True, cost=Cost(connections=one_per_element))


@register(
    layers.LayerNormalization,
    layers.GroupNormalization,
    layers.UnitNormalization,
    *[getattr(layers, n) for n in ("RMSNormalization",) if hasattr(layers, n)],
    kind="exact",
)
def normalization_by_statistics(layer):
    """Applied exactly at every step: it divides by its input's own statistics."""
    return Conversion(clone(layer), cost=Cost(connections=one_per_element))


def scale_and_shift(batch_norm) -> tuple[np.ndarray, np.ndarray]:
    """``(s, t)`` with ``batch_norm(x) = s * x + t`` per channel, at inference."""
    variance = np.asarray(batch_norm.moving_variance, "float64")
    scale = 1.0 / np.sqrt(variance + batch_norm.epsilon)
    if batch_norm.scale:
        scale = scale * np.asarray(batch_norm.gamma, "float64")
    shift = -np.asarray(batch_norm.moving_mean, "float64") * scale
    if batch_norm.center:
        shift = shift + np.asarray(batch_norm.beta, "float64")
    return scale, shift


def fold_refusal(layer, batch_norm, rank: int) -> str | None:
    """Why ``batch_norm`` cannot fold into ``layer`` (``rank``: its output's), or None."""
    if not isinstance(layer, FOLDABLE):
        return (
            f"its input comes from layer {layer.name!r} of type "
            f"{type(layer).__name__}, not a Dense or convolution layer"
        )
    if getattr(layer.activation, "__name__", "linear") != "linear":
        return f"layer {layer.name!r} has an activation before it"
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    channel_axis = 1 if channels_first else rank - 1
    if batch_norm.axis % rank != channel_axis:
        return (
            f"it normalises axis {batch_norm.axis}, not the channels of {layer.name!r}"
        )
    if getattr(batch_norm, "renorm", False):
        return "it uses batch renormalisation"
    return None


def _channel_shape(layer, kernel: np.ndarray) -> tuple:
    """The shape that one value per output channel takes to scale ``kernel``."""
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        return kernel.shape[-2:]  # (..., inputs, multiplier)
    if isinstance(
        layer, (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
    ):
        return (kernel.shape[-2], 1)  # (..., filters, inputs)
    return kernel.shape[-1:]


def _kernel_index(layer) -> int:
    """Which weight scales the output channels (the pointwise one if separable)."""
    return (
        1 if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)) else 0
    )


def folded_weights(layer, batch_norm) -> list[np.ndarray]:
    """The weights of ``layer`` followed by ``batch_norm``, as one layer with a bias.

    For ``clone(layer, activation="linear", use_bias=True)``.
    """
    scale, shift = scale_and_shift(batch_norm)
    weights = [np.asarray(w, "float64") for w in layer.get_weights()]
    index = _kernel_index(layer)
    bias = weights[index + 1] if layer.use_bias else np.zeros_like(scale)
    kernel = weights[index]
    weights[index] = kernel * scale.reshape(_channel_shape(layer, kernel))
    weights[index + 1 :] = [bias * scale + shift]
    return [w.astype("float32") for w in weights]


def unfolded_weights(layer, batch_norm, folded) -> tuple[list, list]:
    """``(layer weights, batch_norm weights)`` equivalent to ``folded`` ones.

    The inverse of :func:`folded_weights` for trained weights: the kernel is
    divided by the normalisation's scale; the bias goes into ``layer``'s bias,
    or into ``batch_norm``'s moving mean when ``layer`` has none.

    Raises:
        ValueError: if a channel's scale is 0 (its kernel cannot be recovered).
    """
    scale, shift = scale_and_shift(batch_norm)
    if np.any(scale == 0):
        raise ValueError(
            f"BatchNormalization {batch_norm.name!r} has channels of scale 0 (gamma "
            f"= 0); the trained weights of {layer.name!r} cannot be written back "
            "through it. Convert without fold_batch_norm to train this model."
        )
    weights = [np.asarray(w, "float64") for w in folded]
    index = _kernel_index(layer)
    kernel = weights[index]
    weights[index] = kernel / scale.reshape(_channel_shape(layer, kernel))
    bias = weights.pop(index + 1)
    norm_weights = [np.asarray(w) for w in batch_norm.get_weights()]
    if layer.use_bias:
        weights.append((bias - shift) / scale)
    else:  # s * (0 - mean) + beta = bias
        beta = np.asarray(batch_norm.beta) if batch_norm.center else 0.0
        norm_weights[-2] = (beta - bias) / scale
    return [w.astype("float32") for w in weights], [
        w.astype("float32") for w in norm_weights
    ]
