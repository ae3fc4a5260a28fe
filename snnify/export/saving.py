"""Saving and loading whole converted networks in Keras's ``.keras`` format.

A ``.keras`` file holds a Keras object's configuration (``get_config``) and its
weights. :class:`SavedNetwork` is the Keras object of a converted network: its
configuration is the Keras model (with the network's current weights) and
everything the conversion added to it -- the neuron type, firing-rate scale
and synapse of every neuron layer, the swapped activations, the probes, the
network's settings, and the steps and ``dt`` it is meant to run with. Loading
converts the model again with the same options and puts every saved neuron
type and scale back, so the loaded network predicts exactly what the saved one
did. Everything is rebuilt from configurations, so Keras's ``safe_mode`` stays
on.

Example:
    >>> import keras, numpy as np, os, tempfile, snnify
    >>> inp = keras.Input((4,), name="pixels")
    >>> hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    >>> converter = snnify.Converter(
    ...     keras.Model(inp, keras.layers.Dense(2, name="out")(hidden)),
    ...     swap_activations={"relu": snnify.IntegrateAndFire()},
    ...     scale_firing_rates=100,
    ... )
    >>> path = os.path.join(tempfile.mkdtemp(), "net.keras")
    >>> snnify.save_network(converter, path, n_steps=8)
    >>> saved = snnify.load_network(path)
    >>> saved.n_steps, saved.converter.layers[saved.model.get_layer("hidden")].scale
    (8, 100.0)
"""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np

from snnify.config import serializable
from snnify.converter import Converter
from snnify.export.files import write_atomically
from snnify.graph import NeuronsNode, Probe
from snnify.keras_graph import (
    FlatGraph,
    activation_name,
    functional_copy,
    layer_of,
    set_weights,
)
from snnify.network import SAVE_FUNCTIONS, Settings
from snnify.synapses import as_synapse

serialize = keras.saving.serialize_keras_object
deserialize = keras.saving.deserialize_keras_object


def _scale_config(scale):
    return float(scale) if np.ndim(scale) == 0 else np.asarray(scale).tolist()


def _model_copy(converter) -> keras.Model:
    """The converter's Keras model with the network's current weights."""
    copy = functional_copy(converter.model)
    for name, _, weights in converter.trained_weights():
        if weights:  # not an operation such as x + y
            nested = copy
            for part in name.split("/"):  # "block/dense": layer dense of block
                nested = nested.get_layer(part)
            set_weights(nested, weights)
    return copy


# the Converter options that change the network a model converts to
CONVERSION_OPTIONS = (
    "allow_fallback",
    "max_to_avg_pool",
    "fold_batch_norm",
    "temporal_model",
    "split_shared_weights",
)


def _layers_by_name(model) -> dict:
    """``{name: key of converter.layers}`` for every layer and operation called.

    A layer of a nested model is named after the nested models' names
    (``"block/dense"``); an operation's key is its output tensor.
    """
    layers = {}
    for call in FlatGraph(model).calls:
        operation = call.keras_node.operation
        if isinstance(operation, keras.layers.Layer):
            layers.setdefault(call.name, operation)
        elif not call.is_input:
            layers.setdefault(call.name, call.output_tensors[0])
    return layers


def _neuron_layers(converter) -> dict:
    """``{neuron node name: {"layer", "neuron", "scale", "synapse"}}``.

    One entry per node: a layer called more than once has neurons (and a
    scale) per call.
    """
    names = {
        id(layer_of(key)): name
        for name, key in _layers_by_name(converter.model).items()
    }
    neurons = {}
    for layer, nodes in converter.layers.by_layer():
        for node in nodes:
            if isinstance(node, NeuronsNode):
                neurons[node.name] = {
                    "layer": names[id(layer)],
                    "neuron": serialize(node.neuron_type),
                    "scale": _scale_config(node.scale),
                    "synapse": serialize(as_synapse(converter.synapse(layer))),
                }
    return neurons


def _probes(converter) -> tuple[list, list]:
    """The configurations of the added probes and of the output probes."""
    added, outputs = [], []
    for probe in converter.net.probes:
        options = {"keep": probe.keep, "sample_every": probe.sample_every}
        if probe.is_output:
            outputs.append(options)
            continue
        target = probe.target.parents[0] if probe.synapse else probe.target
        added.append(
            {
                "label": probe.label,
                "target": target.name,
                "synapse": serialize(probe.synapse),
                **options,
            }
        )
    return added, outputs


@serializable
class SavedNetwork(keras.Model):
    """A converted network as a Keras object that ``.keras`` files save.

    Build it with :meth:`from_converter` (or :func:`save_network`); get it back
    with :func:`load_network` or ``keras.saving.load_model``.

    Args:
        model: the Keras model, with the weights to use.
        swap_activations: ``{activation name: neuron type}``.
        neuron_layers: ``{neuron node name: {"layer", "neuron", "scale",
            "synapse"}}`` for every node of neurons (one per call of a layer
            with neurons).
        probes: configurations of the probes added to the network.
        outputs: ``keep`` and ``sample_every`` of the output probes.
        settings: the network's :class:`~snnify.Settings` configuration.
        n_steps: the steps the network is meant to run (or None).
        dt: the time step its scales were chosen for (s).

    Attributes:
        converter: the rebuilt :class:`~snnify.Converter` (made on first use).
        net: ``converter.net``.
    """

    def __init__(
        self,
        model,
        swap_activations=None,
        neuron_layers=None,
        probes=None,
        outputs=None,
        settings=None,
        n_steps=None,
        dt=0.001,
        options=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model = model
        self.spec = {
            "swap_activations": dict(swap_activations or {}),
            "neuron_layers": dict(neuron_layers or {}),
            "probes": list(probes or []),
            "outputs": list(outputs or []),
            "settings": dict(settings or {}),
            # files of earlier versions have none: the defaults
            "options": dict(options or {}),
        }
        self.n_steps = None if n_steps is None else int(n_steps)
        self.dt = float(dt)
        self._converter = None
        self.built = True

    @classmethod
    def from_converter(cls, converter, n_steps=None, dt=0.001) -> SavedNetwork:
        """The saved form of ``converter`` (its network's weights, options, probes)."""
        swaps = {}
        for key, neuron in converter.swap_activations.items():
            name = activation_name(key)
            if not isinstance(name, str) or isinstance(key, keras.layers.Layer):
                raise ValueError(
                    "Only swap_activations keyed by activations with a name can be "
                    f"saved. Received: key={key!r}"
                )
            swaps[name] = serialize(neuron)
        probes, outputs = _probes(converter)
        saved = cls(
            _model_copy(converter),
            swap_activations=swaps,
            neuron_layers=_neuron_layers(converter),
            probes=probes,
            outputs=outputs,
            settings=converter.net.settings.get_config(),
            n_steps=n_steps,
            dt=dt,
            options={name: getattr(converter, name) for name in CONVERSION_OPTIONS},
            name=converter.net.name,
        )
        saved._converter = converter
        return saved

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "model": serialize(self.model),
            **self.spec,
            "n_steps": self.n_steps,
            "dt": self.dt,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = deserialize(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)

    @property
    def converter(self) -> Converter:
        if self._converter is None:
            self._converter = self._rebuild()
        return self._converter

    @property
    def net(self):
        return self.converter.net

    def _rebuild(self) -> Converter:
        spec = self.spec
        layers = _layers_by_name(self.model)
        # files of earlier versions key each entry by its Keras layer's name
        entries = {
            options.get("node", key): (options.get("layer", key), options)
            for key, options in spec["neuron_layers"].items()
        }
        synapses = {
            layers[layer]: deserialize(options["synapse"])
            for layer, options in entries.values()
            if options["synapse"] is not None
        }
        with warnings.catch_warnings():  # the saved converter warned already
            warnings.simplefilter("ignore")
            converter = Converter(
                self.model,
                swap_activations={
                    name: deserialize(neuron)
                    for name, neuron in spec["swap_activations"].items()
                },
                synapse=synapses,
                **spec["options"],
            )
        nodes = {node.name: node for node in converter.net.nodes}
        for name, (layer, options) in entries.items():
            node = nodes.get(name)
            if not isinstance(node, NeuronsNode):
                raise ValueError(
                    "The saved network does not match its model: it has neurons "
                    f"{name!r} (of layer {layer!r}), which converting its model "
                    f"again does not give (it gives {node!r}). Save the network "
                    "again with this version of snnify."
                )
            node.neuron_type = deserialize(options["neuron"])
            node.scale = options["scale"]
        net = converter.net
        net.settings = Settings.from_config(spec["settings"])
        outputs = [p for p in net.probes if p.is_output]
        for probe, options in zip(outputs, spec["outputs"]):
            probe.keep, probe.sample_every = options["keep"], options["sample_every"]
        with net:
            for options in spec["probes"]:
                Probe(
                    nodes[options["target"]],
                    synapse=deserialize(options["synapse"]),
                    label=options["label"],
                    keep=options["keep"],
                    sample_every=options["sample_every"],
                )
        return converter


def save_network(converter, path, n_steps: int | None = None, dt: float = 0.001):
    """Save a converted network, whole, to a ``.keras`` file.

    Args:
        converter: the :class:`~snnify.Converter` (its network's current
            weights, neuron types, scales, synapses, probes and settings are
            saved).
        path: the file, ending in ``.keras``. It is written next to its
            destination and renamed, so a failed save leaves any previous file
            intact.
        n_steps: the steps the network is meant to run (stored for tools such
            as ``snnify evaluate``).
        dt: the time step its scales were chosen for (s).
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"A saved network is a .keras file. Received: path={path!r}")
    saved = SavedNetwork.from_converter(converter, n_steps=n_steps, dt=dt)
    write_atomically(path, saved.save)


SAVE_FUNCTIONS["keras"] = save_network  # for Network.save and ModelCheckpoint


def load_network(path) -> SavedNetwork:
    """Load a network saved by :func:`save_network`.

    Returns:
        the :class:`SavedNetwork`: ``.converter`` (and ``.net``) is the
        network, ``.model`` its Keras model, ``.n_steps`` and ``.dt`` what it
        was saved for.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a file that is not a saved snnify network.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved network at {path!r}. Received: {path!r}")
    try:
        saved = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"Could not load {path!r} as a saved snnify network "
            f"({type(error).__name__}: {message})."
        ) from error
    if not isinstance(saved, SavedNetwork):
        raise ValueError(
            f"{path!r} holds a Keras model, not a saved snnify network. Convert it "
            "first (snnify.Converter, then snnify.save_network, or `snnify convert`)."
        )
    return saved
