"""Rules for linear merging layers."""

from keras import layers

from snnify.rules import Conversion, clone, register


@register(layers.Add, layers.Subtract, layers.Average, layers.Concatenate)
def merging(layer):
    return Conversion(clone(layer))
