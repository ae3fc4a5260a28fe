"""Rules for convolutional layers (all options: strides, padding, dilation)."""

from keras import layers

from snnify.rules import register, split_activation

register(
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.DepthwiseConv1D,
    layers.DepthwiseConv2D,
    layers.SeparableConv1D,
    layers.SeparableConv2D,
)(split_activation)
