"""Rules for linear merging layers: they only move (and add) values."""

from __future__ import annotations

import numpy as np
from keras import layers

from snnify.rules.registry import MOVES_VALUES, Conversion, Cost, clone, register


@register(layers.Add, layers.Subtract, layers.Average)
def elementwise(layer):
    return Conversion(clone(layer), cost=MOVES_VALUES)


def concatenated_part(layer, values, input_shapes, index) -> np.ndarray:
    """The part of the output that input ``index`` fills."""
    rank = len(input_shapes[index])
    axis = layer.axis - 1 if layer.axis > 0 else rank + layer.axis
    start = sum(shape[axis] for shape in input_shapes[:index])
    stop = start + input_shapes[index][axis]
    return values.take(np.arange(start, stop), axis=axis)


@register(layers.Concatenate)
def concatenate(layer):
    if layer.axis == 0:
        raise ValueError(
            f"Layer {layer.name!r} concatenates along the batch axis (axis=0), "
            "which mixes examples; a spiking network simulates examples "
            "independently. Concatenate along a feature axis (axis=-1 or >= 1)."
        )
    return Conversion(
        clone(layer),
        cost=Cost(pull_back=concatenated_part),
    )
