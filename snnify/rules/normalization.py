"""Rule for BatchNormalization: its inference form, a fixed affine map."""

from __future__ import annotations

from keras import layers

from snnify.rules.registry import Conversion, Cost, clone, one_per_element, register


@register(layers.BatchNormalization)
def batch_normalization(layer):
    return Conversion(clone(layer), frozen=True, cost=Cost(connections=one_per_element))
