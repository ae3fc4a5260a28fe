"""Rule for BatchNormalization: its inference form, a fixed affine map."""

from keras import layers

from snnify.rules import Conversion, clone, register


@register(layers.BatchNormalization)
def batch_normalization(layer):
    return Conversion(clone(layer), frozen=True)
