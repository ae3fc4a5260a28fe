"""Converter: turns a Keras 3 model into a spiking :class:`~snnify.Network`.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((28, 28, 1))
    >>> conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
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
    <NeuronsNode 'conv.neurons' shape=(26, 26, 4)>
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import keras
import numpy as np

from snnify.backend import compile_function, import_unused_tensorflow_quietly
from snnify.graph import (
    FunctionNode,
    InputNode,
    LayerNode,
    NeuronsNode,
    Probe,
    SynapseNode,
)
from snnify.keras_graph import (
    KerasMap,
    activation_name,
    bind_call,
    build_like,
    functional_graph,
    layer_of,
    nodes_in_order,
)
from snnify.network import Network
from snnify.neurons import NeuronType, RectifiedLinear
from snnify.rules import convert_layer
from snnify.synapses import as_synapse

# Ways of choosing scale_firing_rates named by a string, such as "auto": each
# is a function (model, calibration_data) -> {layer: scale}. The tools that
# provide them register them (snnify.calibrate registers "auto").
SCALE_METHODS: dict = {}


class LayerOption:
    """An option with a value for every layer: a scalar, or a dict keyed by layer.

    Keys are Keras layers or tensors of the model; layers not in the dict take
    ``default``. ``unused`` names the keys that no neuron layer asked for.
    """

    def __init__(self, value, name, default, graph):
        self.name = name
        self.default = default
        self.by_layer = {}
        self.unused = {}
        if isinstance(value, Mapping):
            layers = {id(op) for op in graph.operations}
            for key, v in value.items():
                layer = layer_of(key)
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
        calibration: the scales chosen for ``scale_firing_rates="auto"``.
    """

    def __init__(
        self,
        model,
        swap_activations=None,
        scale_firing_rates=None,
        synapse=None,
        calibration_data=None,
    ):
        graph = functional_graph(model)
        import_unused_tensorflow_quietly()
        self.model = model
        self.calibration = None
        if isinstance(scale_firing_rates, str) or calibration_data is not None:
            scale_firing_rates = _chosen_scales(
                model, scale_firing_rates, calibration_data
            )
            self.calibration = scale_firing_rates
        self.swap_activations = dict(swap_activations or {})
        for key, neuron in self.swap_activations.items():
            if not isinstance(neuron, NeuronType):
                raise TypeError(
                    "swap_activations values must be neuron types such as "
                    "snnify.SpikingRectifiedLinear(). Received: "
                    f"{activation_name(key)!r}: {neuron!r}"
                )
        self._unused_swaps = {id(k): k for k in self.swap_activations}
        self.scale_firing_rates = LayerOption(
            scale_firing_rates, "scale_firing_rates", 1.0, graph
        )
        self.synapse = LayerOption(synapse, "synapse", None, graph)
        self.net = Network(name=f"{model.name}_snn")
        self.inputs = KerasMap("inputs")
        self.outputs = KerasMap("outputs")
        self.layers = KerasMap("layers")
        self._clones = {}  # id(layer) -> (layer, clone)
        self._node_of = {}  # id(keras tensor) -> node
        for keras_node in nodes_in_order(graph):
            self._convert_node(keras_node)
        with self.net:
            for tensor in graph.outputs:
                probe = Probe(self._node_of[id(tensor)])
                probe.is_output = True
                self.outputs.set(tensor, probe)
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
            self.inputs.set(tensor, node)
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
        if conversion.layer is not None:
            clone = self._built_clone(layer, conversion.layer, keras_node)
            node = self.net.add_node(
                LayerNode(
                    layer.name,
                    shape,
                    parents,
                    clone,
                    bind_call(keras_node, clone),
                    source_name=layer.name,
                    frozen=conversion.frozen,
                    cost=conversion.cost,
                )
            )
        elif len(parents) == 1:
            node = parents[0]
        else:
            raise TypeError(f"Layer {layer.name!r} with several inputs needs a layer.")
        neurons = node
        if activation_name(conversion.activation) != "linear":
            node, neurons = self._activation_nodes(
                layer, node, shape, conversion.activation
            )
        self._set_output(tensor, neurons, node)

    def _set_output(self, tensor, neurons, node):
        self.layers.set(tensor, neurons)
        self._node_of[id(tensor)] = node

    def _built_clone(self, layer, clone, keras_node):
        """Build the clone once per layer (shared layers share weights)."""
        if id(layer) not in self._clones:
            build_like(clone, keras_node)
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
        name = activation_name(activation)
        matches = [k for k in self.swap_activations if k is activation]
        matches = matches or [
            k for k in self.swap_activations if activation_name(k) == name
        ]
        if matches:
            self._unused_swaps.pop(id(matches[0]), None)
            return self.swap_activations[matches[0]]
        return RectifiedLinear() if name == "relu" else None

    def _warn_unused(self):
        for key in self._unused_swaps.values():
            warnings.warn(
                f"swap_activations key {activation_name(key)!r} matches no activation "
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
        nodes = [self.inputs[t] for t in functional_graph(self.model).inputs]
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
        for probe, want in zip(probes, expected):
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


def _chosen_scales(model, method, calibration_data):
    """The scales of ``scale_firing_rates=method`` (a name in SCALE_METHODS)."""
    if not isinstance(method, str):
        raise ValueError(
            "calibration_data is only used with scale_firing_rates='auto'. "
            f"Received: scale_firing_rates={method!r}"
        )
    if method not in SCALE_METHODS:
        raise ValueError(
            "scale_firing_rates must be a number, a dict keyed by layer, or one of "
            f"{sorted(SCALE_METHODS)} (with calibration_data). "
            f"Received: {method!r}"
        )
    return SCALE_METHODS[method](model, calibration_data)
