"""Rules for preprocessing layers inside a model.

Rescaling and Normalization are fixed affine maps of their input, so they act
on spike trains (and held inputs) as on rates. Layers that read strings or
category indices have no meaning in a network whose values are rates and
spikes: encode the data before the network.
"""

from __future__ import annotations

from keras import layers

from snnify.rules.registry import (
    Conversion,
    Cost,
    clone,
    one_per_element,
    refusal,
    register,
)


@register(layers.Rescaling, layers.Normalization)
def affine_preprocessing(layer):
    """A fixed affine map of its input."""
    return Conversion(clone(layer), cost=Cost(connections=one_per_element))


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
