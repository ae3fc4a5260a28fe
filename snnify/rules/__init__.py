"""Conversion rules: one small function per Keras layer type.

A rule receives a Keras layer and returns a :class:`Conversion`: the layer to
apply as it is (usually a clone whose activation is ``linear``) and the
activation that becomes the layer's neurons. Rules are found by ``isinstance``,
so subclasses of a supported layer convert too.

Adding a layer type::

    from snnify.rules import Conversion, register

    @register(MyLayer)
    def my_layer(layer):
        return Conversion(layer=clone(layer))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

RULES: dict[type, Callable] = {}
# appended to the name of a converted layer (a clone of the Keras layer)
CLONE_SUFFIX = "_snn"


@dataclass
class Conversion:
    """What a Keras layer becomes in the spiking network.

    Attributes:
        layer: a Keras layer to apply as it is, or None for the identity.
        activation: an activation to turn into neurons (or apply exactly when
            it is not a neuron), or None.
        frozen: always call ``layer`` in inference mode (BatchNormalization).
    """

    layer: keras.layers.Layer | None = None
    activation: Callable | None = None
    frozen: bool = False


def register(*layer_types: type):
    """Decorator registering a rule for the given Keras layer types."""

    def decorate(rule):
        for layer_type in layer_types:
            RULES[layer_type] = rule
        return rule

    return decorate


def clone(layer: keras.layers.Layer, **overrides) -> keras.layers.Layer:
    """A new layer of the same type and configuration (weights not copied).

    Its initializers are replaced by zeros: the converter copies the original
    weights in, and random initialisation is slow for large layers.
    """
    config = layer.get_config()
    config.update({k: "zeros" for k in config if k.endswith("_initializer")})
    config.update(overrides)
    config["name"] = layer.name + CLONE_SUFFIX
    return type(layer).from_config(config)


def split_activation(layer: keras.layers.Layer) -> Conversion:
    """The layer without its activation, and the activation."""
    return Conversion(clone(layer, activation="linear"), layer.activation)


def supported_types() -> str:
    """Names of the layer types that convert (not those whose rule refuses)."""
    names = {cls.__name__ for cls, rule in RULES.items() if not is_refusal(rule)}
    return ", ".join(sorted(names))


def refusal(rule):
    """Mark ``rule`` as one that explains why its layer types cannot convert."""
    rule.refuses = True
    return rule


def is_refusal(rule) -> bool:
    return getattr(rule, "refuses", False)


def find_rule(layer: keras.layers.Layer) -> Callable:
    """The rule of the closest registered base class of ``layer``."""
    for cls in type(layer).__mro__:
        if cls in RULES:
            return RULES[cls]
    raise TypeError(
        f"Layer {layer.name!r} of type {type(layer).__name__} cannot be converted. "
        f"Supported layer types: {supported_types()}. Replace the layer by "
        "supported ones, or register a rule with @snnify.rules.register "
        "(see docs/adding-a-layer.md)."
    )


def convert_layer(layer: keras.layers.Layer) -> Conversion:
    return find_rule(layer)(layer)


# the modules below register their rules on import
from snnify.rules import (  # noqa: E402,F401
    conv,
    core,
    merging,
    normalization,
    pooling,
    quantized,
    reshaping,
)
