"""Rules for pooling layers.

Average pooling is linear, so it acts on spikes as it does on rates. Max
pooling of spike trains is not the max of the rates: it is refused.
"""

from keras import layers

from snnify.rules import Conversion, clone, refusal, register, supported_types


@register(
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.AveragePooling3D,
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
)
def average_pooling(layer):
    return Conversion(clone(layer))


@register(
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.MaxPooling3D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
)
@refusal
def max_pooling(layer):
    raise TypeError(
        f"Layer {layer.name!r} of type {type(layer).__name__} cannot be converted: "
        "the max of spike trains is not the max of their rates. Use the matching "
        "AveragePooling layer instead (and retrain). Supported layer types: "
        f"{supported_types()}."
    )
