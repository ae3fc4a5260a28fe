"""Rules for layers that only move or pad values."""

from keras import layers

from snnify.rules import Conversion, clone, register


@register(
    layers.Flatten,
    layers.Reshape,
    layers.Permute,
    layers.ZeroPadding1D,
    layers.ZeroPadding2D,
    layers.ZeroPadding3D,
    layers.Cropping1D,
    layers.Cropping2D,
    layers.Cropping3D,
    layers.UpSampling1D,
)
def reshaping(layer):
    return Conversion(clone(layer))
