"""The registry of conversion rules, and what a rule returns.

A rule receives a Keras layer and returns a :class:`Conversion`: the layer to
apply as it is (usually a clone whose activation is ``linear``), the
activation that becomes the layer's neurons, and the layer's :class:`Cost`
(what :mod:`snnify.stats` counts for it). Rules are found by ``isinstance``,
so subclasses of a supported layer convert too.

Every rule has a kind (:data:`KINDS`), which ``docs/layers.md`` lists for
every Keras layer type with the first line of the rule's docstring:
``"spiking"`` (the layer acts on spike trains as on rates, or its activation
becomes neurons), ``"exact"`` (applied exactly at every step, without
spikes) or ``"refused"`` (a :func:`refusal`). A layer type with no rule is
applied exactly, without spikes, when the converter allows a fallback
(:func:`fallback`).

Example:
    >>> import keras
    >>> conversion = convert_layer(keras.layers.Dense(3, activation="relu"))
    >>> conversion.activation.__name__, conversion.layer.get_config()["activation"]
    ('relu', 'linear')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

RULES: dict[type, Callable] = {}
KINDS = {
    "spiking": "acts on spike trains as on rates, or becomes neurons",
    "exact": "applied exactly at every step, without spikes",
    "refused": "cannot be converted",
}
# appended to the name of a converted layer (a clone of the Keras layer)
CLONE_SUFFIX = "_snn"


def same_values(layer, values: np.ndarray, input_shapes: list, index: int):
    """The pull-back of a layer whose output element ``i`` is its input's ``i``."""
    return values.reshape(input_shapes[index])


def one_per_element(layer, input_shape) -> np.ndarray:
    """The connections of an elementwise layer: one per element."""
    return np.ones(input_shape, "int64")


@dataclass(frozen=True)
class Cost:
    """What :mod:`snnify.stats` counts for a layer, for one example.

    Each function receives the Keras layer first.

    Attributes:
        connections: ``connections(layer, input_shape) -> array`` of the
            input's shape: for every input element, the (output element, weight)
            pairs that read it. A spike there costs that many synaptic
            operations; a non-spiking value that many multiply-accumulates.
        additions: the connections are additions (average pooling), not
            multiply-accumulates.
        extra_macs: ``extra_macs(layer, input_shape) -> float``: multiply-accumulates
            on values the layer computes itself (the pointwise part of a
            separable convolution), paid whatever its input.
        pull_back: for layers that only move values (Flatten, padding,
            merging): ``pull_back(layer, values, input_shapes, index)`` turns one
            value per output element into one value per element of input
            ``index`` (summed where an input reaches several outputs).
    """

    connections: Callable | None = None
    additions: bool = False
    extra_macs: Callable | None = None
    pull_back: Callable | None = None


MOVES_VALUES = Cost(pull_back=same_values)


@dataclass
class Conversion:
    """What a Keras layer becomes in the spiking network.

    Attributes:
        layer: a Keras layer to apply as it is, or None for the identity.
        activation: an activation to turn into neurons (or apply exactly when
            it is not a neuron), or None.
        frozen: always call ``layer`` in inference mode (BatchNormalization).
        cost: what :mod:`snnify.stats` counts for the layer (None: unknown).
        node: the class of the node that applies ``layer`` when spiking
            neurons come before it (None: always a
            :class:`snnify.graph.LayerNode`), called with a LayerNode's
            arguments; e.g. max pooling of spike counts.
    """

    layer: keras.layers.Layer | None = None
    activation: Callable | None = None
    frozen: bool = False
    cost: Cost | None = None
    node: Callable | None = None


def register(*layer_types: type, kind: str = "spiking"):
    """Decorator registering a rule of ``kind`` for the given Keras layer types.

    ``kind`` is one of :data:`KINDS` (a :func:`refusal` is ``"refused"``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}. Received: {kind!r}")

    def decorate(rule):
        if not is_refusal(rule):
            rule.kind = kind
        for layer_type in layer_types:
            RULES[layer_type] = rule
        return rule

    return decorate


def clone(layer: keras.layers.Layer, **overrides) -> keras.layers.Layer:
    """A new layer of the same type and configuration (weights not copied).

    Its initializers are replaced by zeros: the converter copies the original
    weights in, and random initialisation is slow for large layers.
    """
    if "activation" in overrides and hasattr(layer, "activation"):
        # an activation that Keras cannot serialise (a functools.partial...)
        # must not stop the clone that replaces it
        original, layer.activation = layer.activation, keras.activations.linear
        try:
            config = layer.get_config()
        finally:
            layer.activation = original
    else:
        config = layer.get_config()
    config.update({k: "zeros" for k in config if k.endswith("_initializer")})
    config.update(overrides)
    config["name"] = layer.name + CLONE_SUFFIX
    return type(layer).from_config(config)


class NamedActivation:
    """An activation function with a name, for ``swap_activations`` to match.

    Example:
        >>> import functools, keras
        >>> f = NamedActivation("elu", functools.partial(keras.activations.elu, alpha=2))
        >>> f.__name__, float(f(keras.ops.convert_to_tensor(-100.0)))
        ('elu', -2.0)
    """

    def __init__(self, name: str, function: Callable):
        self.__name__ = name
        self.function = function

    def __call__(self, x):
        return self.function(x)

    def __repr__(self):
        return f"<activation {self.__name__!r}>"


def split_activation(layer: keras.layers.Layer, cost: Cost | None = None) -> Conversion:
    """The layer without its activation, and the activation."""
    return Conversion(clone(layer, activation="linear"), layer.activation, cost=cost)


def refusal(rule):
    """Mark ``rule`` as one that explains why its layer types cannot convert."""
    rule.kind = "refused"
    return rule


def is_refusal(rule) -> bool:
    return rule_kind(rule) == "refused"


def rule_kind(rule) -> str:
    """``"spiking"``, ``"exact"`` or ``"refused"`` (see :data:`KINDS`)."""
    return getattr(rule, "kind", "spiking")


def registered_rule(layer_type: type) -> Callable | None:
    """The rule of the closest registered base class of ``layer_type``, or None."""
    cls = registered_base(layer_type)
    return None if cls is None else RULES[cls]


def registered_base(layer_type: type) -> type | None:
    """The closest base class of ``layer_type`` that has a rule, or None."""
    for cls in layer_type.__mro__:
        if cls in RULES:
            return cls
    return None


def overridden_call(layer_type: type) -> type | None:
    """The subclass of the registered type that redefines ``call``, or None.

    A subclass that computes something else than its base (its own ``call``)
    is not what the base's rule converts.
    """
    base = registered_base(layer_type)
    for cls in layer_type.__mro__:
        if cls is base:
            return None
        if "call" in vars(cls):
            return cls
    return None


def supported_types() -> str:
    """Names of the layer types that convert (not those whose rule refuses)."""
    names = {cls.__name__ for cls, rule in RULES.items() if not is_refusal(rule)}
    return ", ".join(sorted(names))


class MissingRule(TypeError):
    """No rule is registered for a layer's type (or for a layer it wraps)."""


def find_rule(layer: keras.layers.Layer) -> Callable:
    """The rule of the closest registered base class of ``layer``.

    Raises:
        MissingRule: when no rule is registered for the layer's type.
    """
    rule = registered_rule(type(layer))
    if rule is None:
        raise MissingRule(
            f"Layer {layer.name!r} of type {type(layer).__name__} cannot be "
            f"converted: no rule is registered for it. Supported layer types: "
            f"{supported_types()}. Replace the layer by supported ones, register "
            "a rule with @snnify.rules.register (see docs/adding-a-layer.md), or "
            "convert with allow_fallback=True to apply it exactly, without spikes."
        )
    changed = overridden_call(type(layer))
    if changed is not None:
        raise MissingRule(
            f"Layer {layer.name!r} of type {type(layer).__name__} redefines call() "
            f"(in {changed.__name__}), so the rule of "
            f"{registered_base(type(layer)).__name__} does not know what it "
            "computes. Register a rule for it with @snnify.rules.register (see "
            "docs/adding-a-layer.md), or convert with allow_fallback=True to apply "
            "it exactly, without spikes."
        )
    return rule


def convert_layer(layer: keras.layers.Layer) -> Conversion:
    return find_rule(layer)(layer)


def fallback(layer: keras.layers.Layer) -> Conversion:
    """A layer with no rule, applied exactly as it is (no neurons, cost unknown).

    The network applies the model's own layer (not a copy: a layer with no
    rule may not rebuild from its config), so training through the simulator
    trains it in place.
    """
    return Conversion(layer=layer)
