"""Rules for merging layers.

Addition, subtraction, averaging and concatenation are linear: they act on
spike trains as on rates. Products and elementwise extremes are not; they are
applied exactly, without spikes, at every step.
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
    register,
)


@register(layers.Add, layers.Subtract, layers.Average)
def elementwise(layer):
    """Linear."""
    return Conversion(clone(layer), cost=MOVES_VALUES)


@register(layers.Multiply, layers.Maximum, layers.Minimum, kind="exact")
def elementwise_nonlinear(layer):
    """Applied exactly at every step: spikes' products and extremes are not rates'."""
    return Conversion(clone(layer), cost=Cost(connections=one_per_element))


def concatenated_part(layer, values, input_shapes, index) -> np.ndarray:
    """The part of the output that input ``index`` fills."""
    return part_along(layer.axis, values, input_shapes, index)


def part_along(axis: int, values, input_shapes, index) -> np.ndarray:
    """The part of ``values`` that input ``index`` fills, concatenated on ``axis``.

    ``axis`` counts the batch axis; ``input_shapes`` do not.
    """
    rank = len(input_shapes[index])
    axis = axis - 1 if axis > 0 else rank + axis
    start = sum(shape[axis] for shape in input_shapes[:index])
    stop = start + input_shapes[index][axis]
    return values.take(np.arange(start, stop), axis=axis)


def batch_axis(layer) -> bool:
    """Whether ``layer`` concatenates along the batch axis (``axis`` 0 or ``-rank``)."""
    shapes = (layer.get_build_config() or {}).get("input_shape") or [()]
    rank = len(shapes[0]) if isinstance(shapes[0], (list, tuple)) else 0
    return layer.axis == 0 or (rank > 0 and layer.axis == -rank)


@register(layers.Concatenate)
def concatenate(layer):
    """Linear; refused along the batch axis."""
    if batch_axis(layer):
        raise ValueError(
            f"Layer {layer.name!r} concatenates along the batch axis "
            f"(axis={layer.axis}), which mixes examples; a spiking network "
            "simulates examples independently. Concatenate along a feature axis "
            "(axis=-1 or >= 1)."
        )
    return Conversion(clone(layer), cost=Cost(pull_back=concatenated_part))
