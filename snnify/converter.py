"""Converter: turns a Keras 3 model into a spiking :class:`~snnify.Network`.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((28, 28, 1))
    >>> conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    >>> out = keras.layers.Dense(10)(keras.layers.Flatten()(conv))
    >>> model = keras.Model(inp, out)
    >>> converter = snnify.Converter(model)
    >>> converter.verify()
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

import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

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
    CLIPPED_RELUS,
    FlatGraph,
    KerasMap,
    OperationLayer,
    activation_name,
    bind_call,
    build_like,
    functional_graph,
    layer_of,
    negative_slope,
    set_weights,
    type_name,
)
from snnify.network import Network
from snnify.neurons import NeuronType
from snnify.rules import (
    Conversion,
    MissingRule,
    average_pooling_like,
    clone,
    convert_layer,
    fallback,
    fold_refusal,
    folded_weights,
    registered_rule,
    unfolded_weights,
)
from snnify.swaps import ActivationSwaps, describe
from snnify.synapses import as_synapse
from snnify.validation import check_finite, positive_array

# Ways of choosing scale_firing_rates named by a string, such as "auto": each
# is a function (model, calibration_data, swap_activations) -> {layer: scale}.
# The tools that provide them register them (snnify.calibrate registers "auto").
SCALE_METHODS: dict = {}
# steps of the random sequence on which a temporal model's layers are checked
CHECKED_STEPS = 3
# terminal colours in Keras's error messages
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")


class Clone(NamedTuple):
    """The network's copy of a Keras layer, and the batch norm folded into it."""

    name: str  # of the layer's call, nested models' names first
    layer: keras.layers.Layer
    copy: keras.layers.Layer
    batch_norm: object  # the call of the folded BatchNormalization, or None

    def model_weights(self) -> list:
        """``[(name, Keras layer, weights)]``: the copy's weights for the model."""
        weights = self.copy.get_weights()
        if self.batch_norm is None:
            return [(self.name, self.layer, weights)]
        norm = self.batch_norm
        kernel, moments = unfolded_weights(self.layer, norm.layer, weights)
        return [(self.name, self.layer, kernel), (norm.name, norm.layer, moments)]


def model_weights(clones) -> list:
    """``[(name, Keras layer, weights)]`` of the clones, one entry per layer.

    Raises:
        ValueError: if the copies of a layer (``split_shared_weights``) differ.
    """
    found = {}  # name -> (layer, weights)
    for copy in clones:
        for name, layer, values in copy.model_weights():
            if name in found and not all(
                np.array_equal(a, b) for a, b in zip(found[name][1], values)
            ):
                raise ValueError(
                    f"The copies of shared layer {name!r} were trained apart "
                    "(split_shared_weights=True) and no longer agree; one "
                    "Keras layer cannot hold them. Keep the network's weights "
                    "with sim.save_params(path) instead."
                )
            found[name] = (layer, values)
    return [(name, layer, values) for name, (layer, values) in found.items()]


class LayerOption:
    """An option with a value for every layer: a scalar, or a dict keyed by layer.

    Keys are Keras layers or tensors of the model (nested models' included);
    layers not in the dict take ``default``. ``unused`` names the keys that no
    neuron layer asked for; ``scalar`` is the value given for all layers (or
    None) and ``scalar_used`` whether a neuron layer took it.
    """

    def __init__(self, value, name, default, flat: FlatGraph):
        self.name = name
        self.default = default
        self.by_layer = {}
        self.unused = {}
        self.scalar = None
        self.scalar_used = False
        if isinstance(value, Mapping):
            for key, v in value.items():
                if id(layer_of(key)) not in flat.layers:
                    raise ValueError(
                        f"{name} has a key that is not a layer or tensor of the model. "
                        f"Received: key={key!r}"
                    )
                layer = flat.layers[id(layer_of(key))]  # the layer of an operation
                self.by_layer[id(layer)] = v
                self.unused[id(layer)] = getattr(layer, "name", repr(layer))
        elif value is not None:
            self.default = self.scalar = value

    def __call__(self, layer):
        self.unused.pop(id(layer), None)
        if id(layer) in self.by_layer:
            return self.by_layer[id(layer)]
        self.scalar_used = True
        return self.default


class Converter:
    """Convert a Keras model into a spiking network.

    With no options the network computes exactly what the Keras model does
    (see :meth:`verify`); ``swap_activations`` turns activations into spiking
    neurons. Models nested in the model (functional or Sequential, used as
    layers) are flattened into its graph: ``converter.layers`` finds their
    layers too.

    Args:
        model: a functional or Sequential Keras 3 model.
        swap_activations: ``{key: value}``, keys and values Keras activations
            (or their names) or neuron types, as in NengoDL: see
            :mod:`snnify.swaps`. ``{"relu": snnify.SpikingRectifiedLinear()}``
            makes every ReLU a spiking neuron. Keys that match nothing warn
            (``converter.swap_activations.unused_keys()`` lists them).
        scale_firing_rates: multiply the input current of every neuron by this
            and divide its output by it (a scalar, or a dict keyed by layer or
            tensor). ``"auto"`` chooses it from ``calibration_data`` with
            :func:`snnify.calibrate` (see ``converter.calibration``).
        synapse: time constant (s) or :class:`~snnify.Lowpass` of a filter on
            the output of every neuron layer (a scalar, or a dict keyed by layer
            or tensor).
        calibration_data: inputs for ``scale_firing_rates="auto"``, in any
            format ``Simulator.predict`` takes (e.g. ``(n, 1, 784)``).
        allow_fallback: apply a layer that has no conversion rule exactly, as
            Keras does, at every step and without spikes (with a warning that
            names it), as NengoDL does. False: refuse it (``TypeError``).
        max_to_avg_pool: convert max pooling to average pooling (as NengoDL;
            this changes the network). False: exact max pooling on rates,
            gated by the inputs' activity on spikes (:mod:`~snnify.spike_pooling`).
        fold_batch_norm: fold every BatchNormalization that follows a Dense
            or convolution layer into that layer's kernel and bias (exactly);
            the others stay, with a warning.
        temporal_model: the first axis after the batch of every input is
            time, and becomes the simulation's steps (see docs/layers.md).
            None: True when an input's first axis has no fixed length
            (``keras.Input((None, d))``).
        split_shared_weights: give each call of a layer applied more than
            once its own copy of the weights, which training changes apart
            (NengoDL's option). False: the calls share them, as in Keras.
        inference_only: NengoDL's option. snnify always converts batch
            normalisation in its inference form (NengoDL's True: fit trains
            its scale and offset only); False warns if the model has any.

    Attributes:
        net: the :class:`~snnify.Network`.
        inputs: ``{keras input tensor or layer: input node}``.
        outputs: ``{keras output tensor or layer: Probe}``.
        layers: ``{keras tensor or layer: node}``, the neurons of a layer that
            has them, else its output.
        calibration: the scales chosen for ``scale_firing_rates="auto"``.
        temporal_model: whether the model's time axis is the steps.
    """

    def __init__(
        self,
        model,
        swap_activations=None,
        scale_firing_rates=None,
        synapse=None,
        calibration_data=None,
        allow_fallback: bool = True,
        max_to_avg_pool: bool = False,
        fold_batch_norm: bool = False,
        temporal_model: bool | None = None,
        split_shared_weights: bool = False,
        inference_only: bool | None = None,
    ):
        flat = FlatGraph(model)
        import_unused_tensorflow_quietly()
        self.model = model
        self.calibration = None
        if isinstance(scale_firing_rates, str) or calibration_data is not None:
            scale_firing_rates = _chosen_scales(
                model, scale_firing_rates, calibration_data, swap_activations
            )
            self.calibration = scale_firing_rates
        self.swap_activations = ActivationSwaps(swap_activations)
        self.allow_fallback = allow_fallback
        self.max_to_avg_pool = max_to_avg_pool
        self.fold_batch_norm = fold_batch_norm
        self.temporal_model = _is_temporal(flat, temporal_model)
        self.split_shared_weights = split_shared_weights
        self.inference_only = inference_only
        self.scale_firing_rates = LayerOption(
            _checked_scales(scale_firing_rates), "scale_firing_rates", 1.0, flat
        )
        self.synapse = LayerOption(synapse, "synapse", None, flat)
        self.net = Network(name=f"{model.name}_snn")
        self.net.converter = self
        self.inputs = KerasMap("inputs")
        self.outputs = KerasMap("outputs")
        self.layers = KerasMap("layers")
        self._clones = {}  # id(layer), or id(call) if split -> Clone
        # {id(Keras node of a layer): the BatchNormalization call folded into it}
        self._folds = _batch_norm_folds(flat) if fold_batch_norm else {}
        folded = {id(call.keras_node) for call in self._folds.values()}
        self._node_of = {}  # key of a Keras tensor -> the node of its value
        self._neurons_of = {}  # key -> the node that converter.layers gives
        self._input_tensors = [tensor for tensor, _ in flat.inputs]
        self._spiking = {}  # id(node) -> whether spiking neurons come before it
        self._unclipped = []  # clipped ReLUs that became neurons without a limit
        for call in flat.calls:
            self._convert_call(call, id(call.keras_node) in folded)
        for tensor, key in flat.tensors:
            self.layers.set(tensor, self._neurons_of[key])
        for tensor, key in flat.aliases:
            self.layers.set(tensor, self._neurons_of[key], alias=True)
        for tensor, key in flat.inputs:
            self.inputs.set(tensor, self._node_of[key])
        with self.net:
            for tensor, key in flat.outputs:
                probe = Probe(self._node_of[key])
                probe.is_output = True
                self.outputs.set(tensor, probe)
        warn_unused(self)
        warn_exact_after_spikes(self.net.nodes, self._spiking)
        warn_unclipped(self._unclipped)
        warn_batch_norm_in_inference_form(flat, inference_only)

    # --- conversion -------------------------------------------------------
    def _convert_call(self, call, folded: bool):
        if len(call.outputs) != 1:
            raise TypeError(
                f"Layer {call.name!r} has {len(call.outputs)} outputs; only "
                "single-output layers can be converted."
            )
        shape = example_shape(call, self.temporal_model)
        if call.is_input:
            node = self.net.add_node(InputNode(call.name, shape))
            self._set_output(call, node, node)
            return
        parents = [self._node_of[k] for k in call.inputs]
        if folded:  # a batch normalisation folded into the layer before it
            self._set_output(call, self._neurons_of[call.inputs[0]], parents[0])
            return
        fold = self._folds.get(id(call.keras_node))
        conversion = self._conversion(call, fold)
        if conversion.layer is not None:
            node = self._layer_node(call, conversion, parents, shape, fold)
        elif len(parents) == 1:
            node = parents[0]
        else:
            raise TypeError(f"Layer {call.name!r} with several inputs needs a layer.")
        neurons = node
        if conversion.activation is not None:
            node, neurons = self._activation_nodes(
                call, node, shape, conversion.activation
            )
        self._set_output(call, neurons, node)

    def _conversion(self, call, fold) -> Conversion:
        """The rule's conversion of the call's layer (or the fallback)."""
        layer = average_pooling_like(call.layer) if self.max_to_avg_pool else call.layer
        try:
            conversion = convert_layer(layer)
        except MissingRule:
            if not self.allow_fallback:
                raise
            warnings.warn(_fallback_message(call.name, layer), stacklevel=4)
            return fallback(layer)
        if fold is not None:
            folded = clone(layer, activation="linear", use_bias=True)
            return Conversion(folded, cost=conversion.cost)
        return conversion

    def _layer_node(self, call, conversion, parents, shape, fold) -> LayerNode:
        layer = self._built_clone(call, conversion.layer, fold)
        run = bind_call(call.keras_node, layer)
        if self.temporal_model:
            check_acts_per_step(call, layer, run, parents)
            run = per_step(run)
        spiking = conversion.node is not None and any(
            carries_spikes(p, self.net.nodes, self._spiking) for p in parents
        )
        make = conversion.node if spiking else LayerNode
        return self.net.add_node(
            make(
                call.name,
                shape,
                parents,
                layer,
                run,
                source_name=call.name,
                frozen=conversion.frozen,
                cost=conversion.cost,
            )
        )

    def _set_output(self, call, neurons, node):
        self._neurons_of[call.outputs[0]] = neurons
        self._node_of[call.outputs[0]] = node

    def _built_clone(self, call, copy, fold):
        """Build the copy once per layer (shared layers share weights), or
        once per call with ``split_shared_weights``."""
        layer = call.layer
        if copy is layer:  # the fallback applies the model's own layer
            return layer
        key = id(call) if self.split_shared_weights else id(layer)
        if key not in self._clones:
            build_like(copy, call.keras_node)
            if fold is None:
                set_weights(copy, layer.get_weights())
            else:
                set_weights(copy, folded_weights(layer, fold.layer))
            self._clones[key] = Clone(call.name, layer, copy, fold)
        return self._clones[key].copy

    def _activation_nodes(self, call, node, shape, activation):
        """Nodes for an activation: (output node, node that converter.layers gives)."""
        neuron_type = self.swap_activations.resolve(activation)
        if neuron_type is None:
            return node, node
        if not isinstance(neuron_type, NeuronType):
            node = self.net.add_node(
                FunctionNode(f"{call.name}.activation", shape, [node], neuron_type)
            )
            return node, node
        if activation_name(activation) in CLIPPED_RELUS and _unbounded(neuron_type):
            self._unclipped.append(call.name)
        scale = self.scale_firing_rates(call.layer)
        neurons = self.net.add_node(
            NeuronsNode(f"{call.name}.neurons", shape, node, neuron_type, scale)
        )
        synapse = as_synapse(self.synapse(call.layer))
        if synapse is None:
            return neurons, neurons
        filtered = self.net.add_node(
            SynapseNode(f"{call.name}.synapse", shape, neurons, synapse)
        )
        return filtered, neurons

    def update_model(self):
        """Copy the network's current weights (as after training) back into
        the Keras model (``converter.model``, also returned). A folded batch
        normalisation is unfolded: the layer before it gets the kernel (and
        bias) that, normalised, give the trained ones.

        Raises:
            ValueError: if training changed the copies of a shared layer
                apart (``split_shared_weights``); nothing is changed.
        """
        for _, layer, weights in self.trained_weights():
            set_weights(layer, weights)
        return self.model

    def trained_weights(self) -> list:
        """``[(name, Keras layer, weights)]`` of the network, for the model."""
        return model_weights(self._clones.values())

    # --- checks -----------------------------------------------------------
    def verify(self, inputs=None, rtol: float = 1e-5) -> bool:
        """Check that the network's rates reproduce ``model.predict``.

        Runs both on ``inputs`` (default: 8 random examples, of 5 steps for a
        temporal model) and compares them: the largest difference, relative to
        the largest Keras output, must not exceed ``rtol``. Spiking neurons are
        compared through their rate functions.

        Args:
            inputs: an array for a model with one input; for several, a list
                in the order of ``model.inputs`` or a dict keyed by the
                inputs' names (as ``model.predict`` takes them).
            rtol: the largest relative difference allowed.

        Returns:
            True (as NengoDL's ``verify``), so that ``assert converter.verify()``
            reads as a check.

        Raises:
            ValueError: if the difference exceeds ``rtol``; the message gives
                the largest difference.
        """
        # in the order of the model's inputs (the network's may differ)
        nodes = [self.inputs[t] for t in self._input_tensors]
        inputs = _listed_inputs(inputs, self._input_tensors, nodes, self.temporal_model)
        # the structure the model was built with: an array, a list or a dict
        input_structure = functional_graph(self.model).input
        structured = keras.tree.pack_sequence_as(input_structure, inputs)
        expected = keras.tree.flatten(self.model.predict(structured, verbose=0))
        probes = list(self.outputs.values())
        compute = compile_function(
            lambda x: self.net.compute_rates(x, probes), self.net.variables
        )
        time = (lambda x: x) if self.temporal_model else (lambda x: x[:, None])
        rates = compute({n.name: time(x) for n, x in zip(nodes, inputs)})
        worst = 0.0
        for probe, want in zip(probes, expected):
            got = keras.ops.convert_to_numpy(rates[probe.name]).reshape(want.shape)
            worst = max(worst, relative_difference(got, want))
        if worst > rtol:
            raise ValueError(
                f"The converted network differs from the Keras model by {worst:.3g} "
                f"(relative), more than rtol={rtol}. This is expected when "
                "swap_activations changes the rate function (e.g. LIF) or "
                "max_to_avg_pool changes the pooling." + _precision_note(self.model)
            )
        return True


def exact_converter(model) -> Converter:
    """``Converter(model)``, quietly: the reference whose rates are the model's.

    Calibration compares spiking layers with the Keras model's activations;
    this converter computes them (ReLU as rate neurons, every other
    activation exactly). Its warnings are those the caller's own converter
    of the same model gave already.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Converter(model)


def _listed_inputs(inputs, input_tensors, nodes, temporal: bool) -> list:
    """``verify``'s inputs as a list in the order of ``input_tensors``.

    ``None`` gives 8 random examples (of 5 steps for a temporal model).
    """
    if inputs is None:
        rng = np.random.default_rng(0)
        steps = (5,) if temporal else ()
        shapes = [(8, *steps, *n.shape) for n in nodes]
        return [rng.uniform(0, 1, shape).astype("float32") for shape in shapes]
    if isinstance(inputs, Mapping):
        names = [tensor.name for tensor in input_tensors]
        if sorted(inputs) != sorted(names):
            raise ValueError(
                "Inputs given as a dict must have one entry per input of the "
                f"model, keyed by its name: {sorted(names)}. "
                f"Received: keys={sorted(inputs)}"
            )
        inputs = [inputs[name] for name in names]
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    for x in inputs:
        check_finite(np.asarray(x), "verify's inputs")
    return inputs


def _precision_note(model) -> str:
    """Why a model that computes in 16-bit floats differs, and what to do."""
    low = sorted(
        {
            layer.compute_dtype
            for layer in FlatGraph(model).layers.values()
            if layer.compute_dtype in ("float16", "bfloat16")
        }
    )
    if not low:
        return ""
    return (
        f" The model computes in {' and '.join(low)} (its dtype policy), the "
        "network's neurons, scaled values and activations split from their "
        "layers in float32: differences of up to about 1e-3 (float16) or 1e-2 "
        "(bfloat16) are rounding; pass a larger rtol, e.g. verify(rtol=0.01)."
    )


def relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    """Largest ``|got - want|`` relative to the largest ``|want|`` (inf if NaN)."""
    if not (np.isfinite(got).all() and np.isfinite(want).all()):
        return math.inf  # NaN would compare as no difference
    scale = max(float(np.max(np.abs(want))), 1e-12)
    return float(np.max(np.abs(got - want))) / scale


def example_shape(call, temporal: bool) -> tuple:
    """The shape of one example (and one step) of the call's output."""
    tensor_shape = tuple(call.output_tensors[0].shape)
    shape = tensor_shape[2:] if temporal else tensor_shape[1:]
    if temporal and len(tensor_shape) < 3:
        raise ValueError(
            f"Layer {call.name!r} of type {type_name(call.layer)} gives an "
            f"output of shape {tensor_shape}, with no time axis. In a temporal "
            "model the time axis is the simulation's steps and every layer keeps "
            "it: reduce the network's outputs over the steps afterwards (e.g. "
            "snnify.decode) instead of pooling or flattening time in the model."
        )
    if any(d is None for d in shape):
        raise ValueError(
            f"Layer {call.name!r} has an output of unknown shape {tensor_shape}: "
            "the network's neurons need the size of every example. Give the "
            "model's Input a full shape (except the batch, and the time axis of a "
            "temporal model). For a trained model, call its layers on an Input "
            "of the size you will simulate, which keeps their weights: "
            "keras.models.clone_model(model, input_tensors=keras.Input(shape), "
            "clone_function=lambda layer: layer), e.g. shape=(28, 28, 1)."
        )
    return shape


def warn_unused(converter) -> None:
    """Warn about options that no layer used, naming them."""
    for key in converter.swap_activations.unused_keys():
        warnings.warn(
            f"swap_activations key {describe(key)} matches no activation of the "
            "model; it was not used.",
            stacklevel=3,
        )
    for option in (converter.scale_firing_rates, converter.synapse):
        for name in option.unused.values():
            warnings.warn(
                f"{option.name} was given for layer {name!r}, which has no neurons; "
                "it was not used.",
                stacklevel=3,
            )
        if option.scalar is not None:
            _warn_ignored(option, converter.net.nodes)


def _unbounded(neuron_type: NeuronType) -> bool:
    """Spiking neurons without a limit on their spikes per step."""
    limit = getattr(neuron_type, "max_spikes_per_step", None)
    return neuron_type.spiking and limit is None


class UnclippedWarning(UserWarning):
    """Clipped ReLUs became neurons that do not saturate (see ``warn_unclipped``)."""


def warn_unclipped(names: list[str]) -> None:
    """Warn of clipped ReLUs (ReLU6) that became neurons that do not saturate."""
    if names:
        listed = first_few([repr(name) for name in names])
        warnings.warn(
            f"The clipped ReLU (ReLU6) activations of layer(s) {listed} became "
            "spiking neurons without a limit on their spikes per step: they do "
            "not saturate at the ReLU's max_value, so activations above it pass "
            "unclipped. snnify.convert_for_steps(model, data, n_steps) gives "
            "them a limit where that lowers their error; or swap them for "
            "snnify.IntegrateAndFire(max_spikes_per_step=1) with "
            "scale_firing_rates='auto' and calibration_data, which chooses "
            "thresholds against the clipped activations.",
            UnclippedWarning,
            stacklevel=3,
        )


def warn_batch_norm_in_inference_form(flat: FlatGraph, inference_only) -> None:
    """Warn that ``inference_only=False`` cannot keep batch statistics in training."""
    if inference_only is not False:
        return
    names = [
        call.name
        for call in flat.calls
        if isinstance(call.layer, keras.layers.BatchNormalization)
    ]
    if names:
        warnings.warn(
            f"inference_only=False: BatchNormalization layer(s) "
            f"{first_few([repr(n) for n in names])} are converted in their "
            "inference form: training through the simulator normalises with "
            "their moving statistics, not the batch's, and leaves those "
            "statistics as they are (NengoDL's inference_only=True). Pass "
            "inference_only=True to say that this is what you want.",
            stacklevel=3,
        )


def warn_exact_after_spikes(nodes, memo: dict) -> None:
    """Warn of non-linear layers that read spikes and that other layers read."""
    read = {id(p) for node in nodes for p in node.parents}
    exact = [
        node
        for node in nodes
        if isinstance(node, LayerNode)
        and id(node) in read
        and getattr(registered_rule(type(node.layer)), "kind", None) == "exact"
        and any(carries_spikes(p, nodes, memo) for p in node.parents)
    ]
    if exact:
        names = ", ".join(f"{n.name!r} ({type_name(n.layer)})" for n in exact)
        warnings.warn(
            f"Layer(s) {names} are not linear and read spikes: they compute their "
            "function of each step's spikes, not of the firing rates the Keras "
            "layer sees, so the spiking network computes something else than the "
            "model (verify(), on rates, does not show it). Move them before the "
            "neurons, or train the network through the simulator (Simulator.fit).",
            stacklevel=3,
        )


def _is_temporal(flat: FlatGraph, temporal_model) -> bool:
    """Whether the model's first axis after the batch is time (see Converter)."""
    shapes = [tuple(t.shape) for t, _ in flat.inputs]
    if temporal_model is None:
        temporal_model = any(len(s) > 1 and s[1] is None for s in shapes)
    if temporal_model and any(len(s) < 3 for s in shapes):
        raise ValueError(
            "In a temporal model every input is (batch, time, features...), with a "
            "feature axis after the time axis: use keras.Input((None, 1)) for one "
            f"value per step. Received input shapes: {shapes}"
        )
    return bool(temporal_model)


def check_acts_per_step(call, layer, run, parents) -> None:
    """Refuse a layer of a temporal model that does not act on each step alone.

    ``run`` is applied to a random sequence of ``CHECKED_STEPS`` steps, and to
    each of its steps alone; the results must agree. ``layer`` (the layer
    ``run`` applies) gets random weights meanwhile, so that the check does not
    depend on the model's own (which may be zero before training).
    """
    rng = np.random.default_rng(0)
    xs = [
        rng.normal(size=(2, CHECKED_STEPS, *p.shape)).astype("float32") for p in parents
    ]
    weights = layer.get_weights()
    layer.set_weights([rng.uniform(0.5, 1.5, np.shape(w)) for w in weights])
    problem = None
    try:
        whole = ops.convert_to_numpy(run(xs))
        each = np.concatenate(
            [
                ops.convert_to_numpy(run([x[:, t : t + 1] for x in xs]))
                for t in range(CHECKED_STEPS)
            ],
            axis=1,
        )
    except Exception as error:  # the layer's own error, reported
        problem = f"applied to one step it fails: {gist(error)}"
    else:
        scale = max(float(np.max(np.abs(whole))), 1e-12)
        if whole.shape != each.shape:
            problem = "its output does not have one step per input step"
        elif not np.max(np.abs(whole - each)) <= 1e-5 * scale:
            problem = "its output at a step depends on other steps"
    finally:
        layer.set_weights(weights)
    if problem is not None:
        raise ValueError(
            f"Layer {call.name!r} of type {type_name(call.layer)} does not act on "
            f"each step of the time axis alone ({problem}). In a temporal model the "
            "time axis is the simulation's steps, so every layer must act step by "
            "step: pooling, convolution, recurrence or reshaping along time cannot "
            "be converted. Use layers that act per step (TimeDistributed), or give "
            "the input a fixed length and convert with temporal_model=False to "
            "treat the whole sequence as one input."
        )


def gist(error: Exception) -> str:
    r"""``error``'s message on one line, without Keras's wrapping around it.

    Example:
        >>> gist(ValueError("Exception encountered when calling X.call().\n\n"
        ...                 "\x1b[1mbad size: 0\x1b[0m\n\nArguments received:\n  • x"))
        'ValueError: bad size: 0'
    """
    lines = [line.strip() for line in ANSI_CODES.sub("", str(error)).splitlines()]
    wrapping = ("Exception encountered when calling", "Arguments received", "•")
    core = [line for line in lines if line and not line.startswith(wrapping)]
    return f"{type(error).__name__}: {' '.join(core or lines)}"


def carries_spikes(node, nodes, memo: dict) -> bool:
    """Whether spiking neurons come before ``node`` (or are ``node``).

    ``nodes`` are the network's, parents first; ``memo`` keeps the answers.
    """
    for n in nodes:
        if id(n) not in memo:
            spiking = isinstance(n, NeuronsNode) and n.neuron_type.spiking
            memo[id(n)] = spiking or any(memo[id(p)] for p in n.parents)
    return memo[id(node)]


def per_step(run):
    """``run`` applied to one step: the time axis added, then removed."""

    def call(inputs, training=False):
        output = run([ops.expand_dims(x, 1) for x in inputs], training)
        return ops.squeeze(output, 1)

    return call


def _batch_norm_folds(flat: FlatGraph) -> dict:
    """``{id(Keras node of a Dense or convolution): BatchNormalization call}``.

    Every BatchNormalization that can fold into the layer before it; the
    others warn, saying why not.
    """
    producers = {key: call for call in flat.calls for key in call.outputs}
    calls = Counter(id(call.layer) for call in flat.calls)
    outputs = {key for _, key in flat.outputs}
    folds = {}
    for call in flat.calls:
        if not isinstance(call.layer, keras.layers.BatchNormalization):
            continue
        key = call.inputs[0]
        producer = producers[key]
        rank = len(call.output_tensors[0].shape)
        reason = fold_refusal(producer.layer, call.layer, rank)
        if reason is None and (len(flat.consumers(key)) > 1 or key in outputs):
            reason = f"the output of {producer.name!r} is also used elsewhere"
        if reason is None and (
            calls[id(call.layer)] > 1 or calls[id(producer.layer)] > 1
        ):
            reason = "it or the layer before it is called more than once"
        if reason is not None:
            warnings.warn(
                f"fold_batch_norm: BatchNormalization {call.name!r} is not folded: "
                f"{reason}. It stays an affine map per channel.",
                stacklevel=3,
            )
            continue
        folds[id(producer.keras_node)] = call
    return folds


def exact_activations(nodes, hidden: bool = True) -> list[FunctionNode]:
    """The activations among ``nodes`` that run as exact functions, not neurons.

    ``hidden``: only those that other nodes read (not a final softmax).
    """
    read = {id(p) for node in nodes for p in node.parents}
    functions = [n for n in nodes if isinstance(n, FunctionNode)]
    return [n for n in functions if id(n) in read] if hidden else functions


def _fallback_message(name: str, layer) -> str:
    """The warning for a layer (or operation) applied exactly, without a rule."""
    applied = (
        "it is applied exactly as in Keras at every step, without spiking neurons "
        "(allow_fallback=True)."
    )
    if isinstance(layer, OperationLayer):
        return (
            f"Operation {name!r} ({type_name(layer)}) is not linear: {applied} "
            "Compute it with a layer that has a rule (docs/layers.md), or pass "
            "allow_fallback=False to refuse it."
        )
    return (
        f"Layer {name!r} of type {type_name(layer)} has no conversion rule (or "
        "wraps a layer without one, or redefines the call() of a layer that has "
        f"one): {applied} Register a rule to convert it (see "
        "docs/adding-a-layer.md), or pass allow_fallback=False to refuse it."
    )


def require_neurons(nodes, purpose: str) -> list[NeuronsNode]:
    """The neuron layers among ``nodes``; an error if there are none.

    ``purpose``: what needs them, the start of the error's first sentence.
    """
    neurons = [n for n in nodes if isinstance(n, NeuronsNode)]
    if not neurons:
        exact = exact_activations(nodes, hidden=False)
        fix = (
            "Let snnify.fine_tune(model, x, y, replace='all') replace its "
            "activations with quantised ReLUs and fine-tune it."
        )
        if exact:
            fix = (
                f"Its activations {describe_activations(exact)} run as exact "
                f"functions: {spiking_fix(exact)}"
            )
        raise ValueError(
            f"{purpose}, and this network has none: it would not spike. {fix}"
        )
    return neurons


def spiking_fix(exact: list[FunctionNode]) -> str:
    """How to make the activations ``exact`` (not neurons) spike."""
    function = exact[0].function
    slope = negative_slope(function)
    if np.ndim(slope) > 0:  # a PReLU: its slopes, one per channel
        return (
            "convert the model with snnify.convert_for_steps(model, data, n_steps), "
            "which makes them IntegrateAndFire neurons with each layer's slopes "
            "(they spike for the negative part too), or replace them with "
            "quantised ReLUs and fine-tune: snnify.fine_tune(model, x, y, "
            "replace='all')."
        )
    # neurons limited to one spike per step saturate as ReLU6 does
    if activation_name(function) in CLIPPED_RELUS:
        argument = "max_spikes_per_step=1"
    elif slope:  # negative spikes give the leaky part
        argument = f"negative_slope={slope}"
    else:
        argument = ""
    return (
        "replace them with quantised ReLUs and fine-tune (snnify.fine_tune(model, "
        "x, y, replace='all')), or map them to "
        f"neurons with swap_activations={{{describe(function)}: "
        f"snnify.IntegrateAndFire({argument})}} "
        "and calibrate them (scale_firing_rates='auto' with calibration_data, or "
        "snnify.calibrate(converter, data))."
    )


def first_few(items: list[str], most: int = 5) -> str:
    """``"a, b, c and 4 more"``: the first ``most`` items for a message."""
    listed = ", ".join(items[:most])
    return listed + (f" and {len(items) - most} more" if len(items) > most else "")


def describe_activations(nodes: list[FunctionNode], most: int = 5) -> str:
    """``'layer' (function), ...`` for error messages: the first ``most``."""
    return first_few(
        [
            f"{n.name.removesuffix('.activation')!r} ({describe(n.function)})"
            for n in nodes
        ],
        most,
    )


def _warn_ignored(option: LayerOption, nodes) -> None:
    """Warn when a scalar option meets activations that have no neurons."""
    functions, hidden = exact_activations(nodes, False), exact_activations(nodes)
    if hidden or (functions and not option.scalar_used):
        names = describe_activations(hidden or functions)
        warnings.warn(
            f"{option.name}={option.scalar!r} applies to neurons only; the "
            f"activations of layer(s) {names} have no neuron form: they run as "
            "exact functions, without spikes, and ignore it. Map them to neuron "
            "types with swap_activations (e.g. {'sigmoid': snnify.LIFRate()}).",
            stacklevel=4,
        )
    elif not option.scalar_used:
        warnings.warn(
            f"{option.name}={option.scalar!r} was given, but the model has no "
            "neurons (no ReLU or swapped activation); it was not used.",
            stacklevel=4,
        )


SCALE_HINT = (
    " (1 keeps the network's rates; a larger scale makes spiking neurons fire "
    "more often, a smaller one less)"
)


def _checked_scales(scales):
    """``scale_firing_rates``, unchanged, after checking every value is > 0 and finite.

    0 or NaN would make every output NaN, a negative scale silences the layer.
    """
    if isinstance(scales, Mapping):
        for key, value in scales.items():
            name = f"scale_firing_rates[{_key_name(key)!r}]"
            positive_array(value, name, SCALE_HINT)
    elif scales is not None:
        positive_array(scales, "scale_firing_rates", SCALE_HINT)
    return scales


def _key_name(key) -> str:
    try:
        return layer_of(key).name
    except Exception:  # not a layer: LayerOption names the bad key
        return repr(key)


def _chosen_scales(model, method, calibration_data, swap_activations):
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
    return SCALE_METHODS[method](model, calibration_data, swap_activations)
