"""Rules for operations that are not layers: ``x + y``, ``keras.ops.reshape``...

A functional model records ``x + y``, ``x * 2.0`` or ``keras.ops.mean(x,
axis=1)`` on symbolic tensors as Keras operations; the converter applies each
as a :class:`snnify.keras_graph.OperationLayer` (and an activation operation
such as ``keras.ops.relu(x)`` as an ``Activation`` layer, whose rule makes
neurons). Sums, differences, negation, products and quotients by constants,
means, sums and moves of values are linear: they act on spike trains as on
rates. Any other operation (the product of two tensors, an exponential) has no
rule: with ``allow_fallback`` it is applied exactly at every step, with a
warning.

Example:
    >>> import keras
    >>> inp = keras.Input((4,))
    >>> model = keras.Model(inp, keras.ops.reshape(inp * 2.0, (-1, 2, 2)))
    >>> layers = FlatGraph(model).calls[1:]
    >>> [(c.layer.operation_name, convert_layer(c.layer).layer is c.layer)
    ...  for c in layers]
    [('Multiply', True), ('Reshape', True)]
"""

from __future__ import annotations

import numpy as np

from snnify.keras_graph import FlatGraph, OperationLayer  # noqa: F401 (doctest)
from snnify.rules.merging import part_along
from snnify.rules.registry import (
    MOVES_VALUES,
    Conversion,
    Cost,
    MissingRule,
    convert_layer,  # noqa: F401 (doctest)
    register,
)

# linear in every tensor they read
LINEAR = {
    "Add",
    "Subtract",
    "Negative",
    "Mean",
    "Sum",
    "Concatenate",
    "Transpose",
    "Reshape",
    "ExpandDims",
    "Squeeze",
}
# linear when they scale one tensor by constants (x * 2.0, x / 4)
SCALING = {"Multiply", "Divide", "TrueDivide"}
MOVES = {"Reshape", "ExpandDims", "Squeeze"}


def scales_one_tensor(layer) -> bool:
    """Whether the operation multiplies or divides one tensor by constants.

    True for ``x * 2.0``, ``0.5 * x``, ``x / 4`` and ``-x``; False for ``x * y``,
    ``x * x`` (one tensor read twice) and ``2 / x``.
    """
    return layer.tensors == 1 and (
        layer.operation_name == "Multiply" or layer.tensor_first
    )


def summed_to_input(layer, values, input_shapes, index) -> np.ndarray:
    """The pull-back of an elementwise operation that may broadcast its inputs."""
    shape = tuple(input_shapes[index])
    values = values.sum(axis=tuple(range(values.ndim - len(shape))))
    broadcast = [i for i, n in enumerate(shape) if n == 1 and values.shape[i] != 1]
    return values.sum(axis=tuple(broadcast), keepdims=True)


def reduced_to_input(layer, values, input_shapes, index) -> np.ndarray:
    """Mean, sum: each input element reaches the output element it is reduced to."""
    shape = input_shapes[index]
    axes = [a - 1 if a > 0 else len(shape) + a for a in _axes(layer)]
    if not layer.config.get("keepdims"):
        values = np.expand_dims(values, axes)
    return np.broadcast_to(values, shape)


def transposed_back(layer, values, input_shapes, index) -> np.ndarray:
    """Transpose: the output's values in the input's order."""
    return values.transpose(np.argsort([a - 1 for a in layer.config["axes"][1:]]))


def concatenated_to_input(layer, values, input_shapes, index) -> np.ndarray:
    return part_along(layer.config["axis"], values, input_shapes, index)


PULL_BACKS = {
    "Mean": reduced_to_input,
    "Sum": reduced_to_input,
    "Transpose": transposed_back,
    "Concatenate": concatenated_to_input,
}


def _axes(layer) -> tuple:
    """The axes (batch included) that a reduction or concatenation acts on."""
    axis = layer.config.get("axis")
    return tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)


def _check_batch_axis(layer) -> None:
    """Refuse an operation that mixes the examples of a batch."""
    name = layer.operation_name
    if name in ("Mean", "Sum", "Concatenate"):
        mixes = None in _axes(layer) or 0 in _axes(layer)
    elif name == "Transpose":
        axes = layer.config["axes"]
        mixes = axes is None or axes[0] != 0
    else:
        mixes = False
    if mixes:
        raise ValueError(
            f"Operation {layer.name!r} ({name}) acts along the batch axis "
            f"({layer.config}), which mixes examples; a spiking network simulates "
            "examples independently. Give it the feature axes (e.g. axis=-1, or "
            "axes that keep 0 first)."
        )


def _cost(layer, scaling: bool) -> Cost | None:
    """Moves and elementwise operations of spike trains keep them events."""
    name = layer.operation_name
    if name in MOVES:
        return MOVES_VALUES
    if name in PULL_BACKS:
        return Cost(pull_back=PULL_BACKS[name])
    # x + c: the constant is a bias of the layers it feeds, spikes still events
    elementwise = name in ("Negative", "Add", "Subtract")
    return Cost(pull_back=summed_to_input) if scaling or elementwise else None


@register(OperationLayer)
def operation(layer):
    """Linear operations act on spike trains as on rates."""
    name = layer.operation_name
    scaling = name in SCALING and scales_one_tensor(layer)
    if name not in LINEAR and not scaling:
        raise MissingRule(
            f"Operation {layer.name!r} ({name}) cannot be converted: only sums, "
            "differences, means and moves of tensors and their products and "
            "quotients by constants act on spike trains as on rates. Compute it "
            "with a layer that has a rule (see docs/layers.md), or convert with "
            "allow_fallback=True to apply it exactly, without spikes."
        )
    _check_batch_axis(layer)
    return Conversion(layer=layer, cost=_cost(layer, scaling))
