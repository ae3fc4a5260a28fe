"""Turning the data a user gives into the arrays the simulator runs.

Every input of a network is an array ``(batch, steps, *shape)``: flattened
``(batch, steps, size)`` arrays are reshaped, and an input of one step is held
for all steps. The simulator, calibration, statistics and sweeps all read
their data through :func:`standardize_inputs`.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((2, 3), name="pixels")
    >>> net = snnify.Converter(keras.Model(inp, keras.layers.Flatten()(inp))).net
    >>> x = standardize_inputs(net, np.zeros((5, 1, 6)))
    >>> [(node.name, array.shape) for node, array in x.items()]
    [('pixels', (5, 1, 2, 3))]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from snnify.graph import InputNode


def input_node(network, key) -> InputNode:
    """The input node of ``network`` that ``key`` (a node or its name) names."""
    for node in network.input_nodes:
        if key is node or key == node.name:
            return node
    names = ", ".join(repr(n.name) for n in network.input_nodes)
    raise KeyError(
        f"{key!r} is not an input of this network. Use converter.inputs[...] (the "
        f"network's inputs are {names}). Received: key={key!r}"
    )


def standardize_inputs(network, x, time_axis_optional: bool = False) -> dict:
    """``{input node: float32 array (batch, steps, *node.shape)}``.

    Args:
        network: the network whose inputs ``x`` feeds.
        x: ``{converter.inputs[inp] (or its name): array}``, or one array for
            a single-input network, or a list in the order of the inputs.
        time_axis_optional: also accept arrays in Keras's own format,
            ``(batch, *shape)`` or ``(batch, size)``, as one step.
    """
    nodes = network.input_nodes
    if isinstance(x, (list, tuple)) and len(nodes) > 1:
        x = dict(zip(nodes, x))
    if not isinstance(x, Mapping):
        if len(nodes) != 1:
            raise ValueError(
                f"This network has {len(nodes)} inputs: pass a dict keyed by "
                "converter.inputs[...]."
            )
        x = {nodes[0]: x}
    arrays = {input_node(network, k): np.asarray(v) for k, v in x.items()}
    missing = [n.name for n in nodes if n not in arrays]
    if missing:
        raise ValueError(f"No data given for input(s) {missing}.")
    result = {}
    for node, value in arrays.items():
        if time_axis_optional and value.shape[1:] in (node.shape, (node.size,)):
            value = value[:, None]
        flat = value.ndim == 3 and value.shape[2] == node.size
        if value.ndim < 3 or not (flat or value.shape[2:] == node.shape):
            raise ValueError(
                f"Input {node.name!r} expects arrays of shape (batch, steps, "
                f"{node.size}) or (batch, steps, {', '.join(map(str, node.shape))}). "
                f"Received: shape={value.shape}"
            )
        result[node] = value.reshape(value.shape[:2] + node.shape).astype(
            "float32", copy=False
        )
    if len({v.shape[0] for v in result.values()}) > 1:
        raise ValueError(
            "All inputs must have the same batch size. Received: "
            f"{ {n.name: v.shape[0] for n, v in result.items()} }"
        )
    return result


def resolve_steps(inputs: dict, n_steps) -> int:
    """The number of steps to run: ``n_steps``, or the inputs' steps."""
    lengths = {v.shape[1] for v in inputs.values()}
    if n_steps is None:
        n_steps = max(lengths)
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(
            f"n_steps must be an integer >= 1. Received: n_steps={n_steps!r}"
        )
    if lengths - {1, n_steps}:
        raise ValueError(
            f"Inputs must have 1 step (held for all steps) or n_steps={n_steps} "
            f"steps. Received steps: {sorted(lengths)}"
        )
    return int(n_steps)
