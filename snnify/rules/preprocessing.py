"""Rules for preprocessing layers inside a model.

Rescaling and Normalization are fixed affine maps of their input, and
Resizing and CenterCrop fixed linear ones (interpolation), so they act on
spike trains (and held inputs) as on rates. Random data augmentation
(RandomFlip, RandomRotation, RandAugment...) is the identity outside
training, as in Keras. Layers that read strings or category indices have no
meaning in a network whose values are rates and spikes: encode the data
before the network.
"""

from __future__ import annotations

import numpy as np
from keras import layers

from snnify.rules.registry import (
    MOVES_VALUES,
    Conversion,
    Cost,
    clone,
    one_per_element,
    refusal,
    register,
)
from snnify.rules.reshaping import INTERPOLATION_TAPS


@register(layers.Rescaling, layers.Normalization)
def affine_preprocessing(layer):
    """A fixed affine map of its input."""
    return Conversion(clone(layer), cost=Cost(connections=one_per_element))


def resizing_connections(layer, input_shape) -> np.ndarray:
    """About ``taps`` per axis for every output, spread over the inputs."""
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    height, width = input_shape[1:3] if channels_first else input_shape[:2]
    outputs_per_input = layer.height * layer.width / (height * width)
    taps = INTERPOLATION_TAPS.get(getattr(layer, "interpolation", "nearest"), 1)
    return np.full(input_shape, outputs_per_input * taps**2)


@register(layers.Resizing, layers.CenterCrop)
def resizing(layer):
    """A fixed linear map of its input (cropping and interpolation)."""
    return Conversion(clone(layer), cost=Cost(connections=resizing_connections))


# Keras applies these while training only (RandomCrop is left out: in
# inference it changes the shape or not, depending on the input)
AUGMENTATION_NAMES = (
    "RandomBrightness", "RandomColorDegeneration", "RandomColorJitter",
    "RandomContrast", "RandomElasticTransform", "RandomErasing", "RandomFlip",
    "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert",
    "RandomPerspective", "RandomPosterization", "RandomRotation",
    "RandomSaturation", "RandomSharpness", "RandomShear", "RandomTranslation",
    "RandomZoom", "RandAugment", "AugMix", "MixUp", "CutMix", "Solarization",
)  # fmt: skip
AUGMENTATION = tuple(
    getattr(layers, name) for name in AUGMENTATION_NAMES if hasattr(layers, name)
)


@register(*AUGMENTATION)
def augmentation(layer):
    """The identity, except while training (random data augmentation)."""
    return Conversion(clone(layer), cost=MOVES_VALUES)


@register(
    layers.TextVectorization,
    layers.StringLookup,
    layers.IntegerLookup,
    layers.Hashing,
    layers.HashedCrossing,
    layers.CategoryEncoding,
)
@refusal
def categorical_preprocessing(layer):
    """Reads strings or category indices: encode them before the network."""
    raise TypeError(
        f"Layer {layer.name!r} of type {type(layer).__name__} reads strings or "
        "category indices, which a spiking network (whose values are rates and "
        "spikes) cannot carry. Apply it to the data before the network, and "
        "convert the model that starts after it."
    )
