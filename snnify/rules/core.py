"""Rules for Dense, Activation, ReLU, Dropout and Identity layers."""

from keras import activations, layers

from snnify.rules import Conversion, clone, register, split_activation

register(layers.Dense, layers.EinsumDense)(split_activation)


@register(layers.Activation)
def activation(layer):
    return Conversion(activation=layer.activation)


@register(layers.ReLU)
def relu(layer):
    plain = (
        layer.max_value is None
        and float(layer.negative_slope) == 0.0
        and float(layer.threshold) == 0.0
    )
    if plain:
        return Conversion(activation=activations.relu)
    return Conversion(clone(layer))  # clipped or leaky: applied exactly


@register(layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D)
def dropout(layer):
    return Conversion(clone(layer))  # identity except while training


@register(layers.Identity)
def identity(layer):
    return Conversion()
