"""Converter: turns a Keras 3 model into a spiking :class:`~snnify.Network`.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((28, 28, 1))
    >>> conv = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    >>> out = keras.layers.Dense(10)(keras.layers.Flatten()(conv))
    >>> model = keras.Model(inp, out)
    >>> converter = snnify.Converter(model)
    >>> converter.verify() < 1e-5
    True
    >>> spiking = snnify.Converter(
    ...     model,
    ...     swap_activations={"relu": snnify.SpikingRectifiedLinear()},
    ...     scale_firing_rates=20,
    ...     synapse=0.01,
    ... )
    >>> spiking.layers[conv]
    <NeuronsNode 'conv2d.neurons' shape=(26, 26, 4)>
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import keras
import numpy as np

from snnify._backend import compile_function
from snnify.network import (
    FunctionNode,
    InputNode,
    LayerNode,
    Network,
    NeuronsNode,
    Probe,
    SynapseNode,
)
from snnify.neurons import NeuronType, RectifiedLinear
from snnify.rules import convert_layer
from snnify.synapses import as_synapse


class KerasMap(Mapping):
    """A read-only dict keyed by the Keras tensors (or layers) of a model."""

    def __init__(self, what: str):
        self._what = what
        self._tensors = {}  # id(tensor) -> tensor
        self._values = {}  # id(tensor) -> value
        self._by_layer = {}  # id(layer) -> id(tensor)

    def _set(self, tensor, value):
        self._tensors[id(tensor)] = tensor
        self._values[id(tensor)] = value
        self._by_layer[id(tensor._keras_history.operation)] = id(tensor)

    def __getitem__(self, key):
        if id(key) in self._values:
            return self._values[id(key)]
        if id(key) in self._by_layer:
            return self._values[self._by_layer[id(key)]]
        name = getattr(key, "name", repr(key))
        raise KeyError(
            f"{name!r} is not among the {self._what} of the converted model. Use a "
            "Keras tensor or layer of the model given to the Converter. "
            f"Received: key={key!r}"
        )

    def __iter__(self):
        return iter(self._tensors[i] for i in self._values)

    def __len__(self):
        return len(self._values)

    def __contains__(self, key):
        return id(key) in self._values or id(key) in self._by_layer


def _activation_name(activation) -> str | None:
    if activation is None:
        return "linear"
    name = (
        activation
        if isinstance(activation, str)
        else getattr(activation, "__name__", None)
    )
    return name.lower().rstrip("_") if name else None


def _graph_of(model):
    """The functional graph of a functional or Sequential model."""
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no known input shape. Start it "
                "with keras.Input(shape) (or call model.build(input_shape)) before "
                "converting it."
            )
        return graph
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise TypeError(
            "The Converter needs a functional or Sequential keras.Model (subclassed "
            "models have no graph to walk). Received: "
            f"model={type(model).__name__}"
        )
    return model


class _PerLayer:
    """A scalar for every layer, or a dict keyed by Keras layers or tensors."""

    def __init__(self, value, name, default, graph):
        self.name = name
        self.default = default
        self.by_layer = {}
        self.unused = {}
        if isinstance(value, Mapping):
            layers = {id(op) for op in graph.operations}
            for key, v in value.items():
                layer = getattr(key, "_keras_history", None)
                layer = layer.operation if layer is not None else key
                if id(layer) not in layers:
                    raise ValueError(
                        f"{name} has a key that is not a layer or tensor of the model. "
                        f"Received: key={key!r}"
                    )
                self.by_layer[id(layer)] = v
                self.unused[id(layer)] = getattr(layer, "name", repr(layer))
        elif value is not None:
            self.default = value

    def __call__(self, layer):
        self.unused.pop(id(layer), None)
        return self.by_layer.get(id(layer), self.default)


class Converter:
    """Convert a Keras model into a spiking network.

    With no options the network computes exactly what the Keras model does
    (see :meth:`verify`); ``swap_activations`` turns activations into spiking
    neurons.

    Args:
        model: a functional or Sequential Keras 3 model.
        swap_activations: ``{activation: neuron_type}``; keys match a layer's
            activation by identity or by name (``"relu"``,
            ``keras.activations.relu``, ``tf.nn.relu``, ``jax.nn.relu``...).
        scale_firing_rates: multiply the input current of every neuron by this
            and divide its output by it (a scalar, or a dict keyed by layer or
            tensor). ``"auto"`` chooses it from ``calibration_data`` with
            :func:`snnify.calibrate` (see ``converter.calibration``).
        synapse: time constant (s) or :class:`~snnify.Lowpass` of a filter on
            the output of every neuron layer (a scalar, or a dict keyed by layer
            or tensor).
        calibration_data: inputs for ``scale_firing_rates="auto"``, in any
            format ``Simulator.predict`` takes (e.g. ``(n, 1, 784)``).

    Attributes:
        net: the :class:`~snnify.Network`.
        inputs: ``{keras input tensor or layer: input node}``.
        outputs: ``{keras output tensor or layer: Probe}``.
        layers: ``{keras tensor or layer: node}``, the neurons of a layer that
            has them, else its output.
    """

    def __init__(
        self,
        model,
        swap_activations=None,
        scale_firing_rates=None,
        synapse=None,
        calibration_data=None,
    ):
        graph = _graph_of(model)
        self.model = model
        self.calibration = None
        if isinstance(scale_firing_rates, str) or calibration_data is not None:
            from snnify.calibrate import auto_scales  # it imports this module

            scale_firing_rates = auto_scales(
                model, scale_firing_rates, calibration_data
            )
            self.calibration = scale_firing_rates
        self.swap_activations = dict(swap_activations or {})
        for key, neuron in self.swap_activations.items():
            if not isinstance(neuron, NeuronType):
                raise TypeError(
                    "swap_activations values must be neuron types such as "
                    "snnify.SpikingRectifiedLinear(). Received: "
                    f"{_activation_name(key)!r}: {neuron!r}"
                )
        self._unused_swaps = {id(k): k for k in self.swap_activations}
        self.scale_firing_rates = _PerLayer(
            scale_firing_rates, "scale_firing_rates", 1.0, graph
        )
        self.synapse = _PerLayer(synapse, "synapse", None, graph)
        self.net = Network(name=f"{model.name}_snn")
        self.inputs = KerasMap("inputs")
        self.outputs = KerasMap("outputs")
        self.layers = KerasMap("layers")
        self._clones = {}
        self._node_of = {}  # id(keras tensor) -> node
        for keras_node in _nodes_in_order(graph):
            self._convert_node(keras_node)
        with self.net:
            for tensor in graph.outputs:
                probe = Probe(self._node_of[id(tensor)])
                probe.is_output = True
                self.outputs._set(tensor, probe)
        self._warn_unused()

    # --- conversion -------------------------------------------------------
    def _convert_node(self, keras_node):
        layer = keras_node.operation
        if len(keras_node.outputs) != 1:
            raise TypeError(
                f"Layer {layer.name!r} has {len(keras_node.outputs)} outputs; only "
                "single-output layers can be converted."
            )
        tensor = keras_node.outputs[0]
        shape = tuple(tensor.shape[1:])
        if any(d is None for d in shape):
            raise ValueError(
                f"Layer {layer.name!r} has an output of unknown shape {shape}. Give "
                "the model's Input a full shape (except the batch)."
            )
        if keras_node.is_input:
            node = self.net.add_node(InputNode(layer.name, shape))
            self.inputs._set(tensor, node)
            self._set_output(tensor, node, node)
            return
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"Operation {layer.name!r} of type {type(layer).__name__} is not a "
                "Keras layer and cannot be converted. Wrap it in a layer that a rule "
                "supports (see docs/adding-a-layer.md)."
            )
        conversion = convert_layer(layer)
        parents = [self._node_of[id(t)] for t in keras_node.input_tensors]
        node = parents[0] if len(parents) == 1 else None
        if conversion.layer is not None:
            node = self.net.add_node(
                LayerNode(
                    layer.name,
                    shape,
                    parents,
                    self._built_clone(layer, conversion.layer, keras_node),
                    keras_node.arguments,
                    [id(t) for t in keras_node.input_tensors],
                    frozen=conversion.frozen,
                )
            )
        if node is None:
            raise TypeError(f"Layer {layer.name!r} with several inputs needs a layer.")
        neurons = node
        if _activation_name(conversion.activation) != "linear":
            node, neurons = self._activation_nodes(
                layer, node, shape, conversion.activation
            )
        self._set_output(tensor, neurons, node)

    def _set_output(self, tensor, neurons, node):
        self.layers._set(tensor, neurons)
        self._node_of[id(tensor)] = node

    def _built_clone(self, layer, clone, keras_node):
        """Build the clone once per layer (shared layers share weights)."""
        if id(layer) not in self._clones:
            args, kwargs = keras_node.arguments.fill_in(
                {id(t): t for t in keras_node.input_tensors}
            )
            clone(*args, **kwargs)
            clone.set_weights(layer.get_weights())
            self._clones[id(layer)] = (layer, clone)
        return self._clones[id(layer)][1]

    def _activation_nodes(self, layer, node, shape, activation):
        """Nodes for an activation: (output node, node that converter.layers gives)."""
        neuron_type = self._neuron_type(activation)
        if neuron_type is None:
            node = self.net.add_node(
                FunctionNode(f"{layer.name}.activation", shape, [node], activation)
            )
            return node, node
        scale = self.scale_firing_rates(layer)
        neurons = self.net.add_node(
            NeuronsNode(f"{layer.name}.neurons", shape, node, neuron_type, scale)
        )
        synapse = as_synapse(self.synapse(layer))
        if synapse is None:
            return neurons, neurons
        filtered = self.net.add_node(
            SynapseNode(f"{layer.name}.synapse", shape, neurons, synapse)
        )
        return filtered, neurons

    def _neuron_type(self, activation) -> NeuronType | None:
        name = _activation_name(activation)
        matches = [k for k in self.swap_activations if k is activation]
        matches = matches or [
            k for k in self.swap_activations if _activation_name(k) == name
        ]
        if matches:
            self._unused_swaps.pop(id(matches[0]), None)
            return self.swap_activations[matches[0]]
        return RectifiedLinear() if name == "relu" else None

    def _warn_unused(self):
        for key in self._unused_swaps.values():
            warnings.warn(
                f"swap_activations key {_activation_name(key)!r} matches no activation "
                "of the model; it was not used.",
                stacklevel=3,
            )
        for option in (self.scale_firing_rates, self.synapse):
            for name in option.unused.values():
                warnings.warn(
                    f"{option.name} was given for layer {name!r}, which has no neurons; "
                    "it was not used.",
                    stacklevel=3,
                )

    def update_model(self):
        """Copy the network's current weights back into the Keras model.

        Use it after training through the simulator to get a Keras model with
        the trained weights (``converter.model``, which is also returned).
        """
        for layer, clone in self._clones.values():
            layer.set_weights(clone.get_weights())
        return self.model

    # --- checks -----------------------------------------------------------
    def verify(self, inputs=None, rtol: float = 1e-5) -> float:
        """Check that the network's rates reproduce ``model.predict``.

        Runs both on ``inputs`` (default: 8 random examples) and returns the
        largest difference relative to the largest Keras output. Spiking
        neurons are compared through their rate functions.

        Raises:
            ValueError: if the difference exceeds ``rtol``.
        """
        # in the order of the model's inputs (the network's may differ)
        nodes = [self.inputs[t] for t in _graph_of(self.model).inputs]
        if inputs is None:
            rng = np.random.default_rng(0)
            inputs = [rng.uniform(0, 1, (8, *n.shape)).astype("float32") for n in nodes]
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        expected = self.model.predict(
            list(inputs) if len(inputs) > 1 else inputs[0], verbose=0
        )
        expected = expected if isinstance(expected, (list, tuple)) else [expected]
        probes = list(self.outputs.values())
        compute = compile_function(
            lambda x: self.net.compute_rates(x, probes), self.net.variables
        )
        rates = compute({n.name: x[:, None] for n, x in zip(nodes, inputs)})
        worst = 0.0
        for probe, want in zip(self.outputs.values(), expected):
            got = keras.ops.convert_to_numpy(rates[probe.name]).reshape(want.shape)
            scale = max(float(np.max(np.abs(want))), 1e-12)
            worst = max(worst, float(np.max(np.abs(got - want))) / scale)
        if worst > rtol:
            raise ValueError(
                f"The converted network differs from the Keras model by {worst:.3g} "
                f"(relative), more than rtol={rtol}. This is expected when "
                "swap_activations changes the rate function (e.g. LIF)."
            )
        return worst


def _nodes_in_order(graph):
    """The Keras nodes of a functional graph, inputs first."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        yield from graph._nodes_by_depth[depth]
