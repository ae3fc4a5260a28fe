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
    pooling,
    qcfs,
    reshaping,
)
from snnify.rules.registry import (
    CLONE_SUFFIX,
    MOVES_VALUES,
    RULES,
    Conversion,
    Cost,
    clone,
    convert_layer,
    find_rule,
    is_refusal,
    refusal,
    register,
    split_activation,
    supported_types,
)

__all__ = [
    "CLONE_SUFFIX",
    "MOVES_VALUES",
    "RULES",
    "Conversion",
    "Cost",
    "clone",
    "convert_layer",
    "find_rule",
    "is_refusal",
    "refusal",
    "register",
    "split_activation",
    "supported_types",
]
