"""Conversion rules: one small function per Keras layer type.

A rule receives a Keras layer and returns a :class:`Conversion` (see
:mod:`snnify.rules.registry`). The modules of this package register the rules
of one layer family each; adding a layer type::

    from snnify.rules import Conversion, Cost, clone, register

    @register(MyLayer)
    def my_layer(layer):
        return Conversion(layer=clone(layer), cost=Cost(connections=...))

Example:
    >>> import keras
    >>> type(convert_layer(keras.layers.Flatten()).layer).__name__
    'Flatten'
"""

from snnify.rules import (  # noqa: F401  (each module registers its rules)
    conv,
    core,
    merging,
    normalization,
    operations,
    pooling,
    preprocessing,
    qcfs,
    reshaping,
    wrappers,
)
from snnify.rules.normalization import (
    FOLDABLE,
    fold_refusal,
    folded_weights,
    unfolded_weights,
)
from snnify.rules.pooling import average_pooling_like
from snnify.rules.registry import (
    CLONE_SUFFIX,
    KINDS,
    MOVES_VALUES,
    RULES,
    Conversion,
    Cost,
    MissingRule,
    NamedActivation,
    clone,
    convert_layer,
    fallback,
    find_rule,
    is_refusal,
    refusal,
    register,
    registered_rule,
    rule_kind,
    split_activation,
    supported_types,
)

__all__ = [
    "CLONE_SUFFIX",
    "FOLDABLE",
    "KINDS",
    "MOVES_VALUES",
    "RULES",
    "Conversion",
    "Cost",
    "MissingRule",
    "NamedActivation",
    "average_pooling_like",
    "clone",
    "convert_layer",
    "fallback",
    "find_rule",
    "fold_refusal",
    "folded_weights",
    "is_refusal",
    "refusal",
    "register",
    "registered_rule",
    "rule_kind",
    "split_activation",
    "supported_types",
    "unfolded_weights",
]
