"""Import a NIR graph as a snnify network.

:func:`import_nir` builds a Keras model that computes what the graph's rates
compute (``IF`` and ``LIF`` nodes become ReLU activations, converted to
spiking neurons) and converts it, so the result is an ordinary
:class:`~snnify.Converter`: ``converter.model`` is the non-spiking network and
``converter.net`` the spiking one. An ``IF`` node reads as
:class:`~snnify.IntegrateAndFire` (reset by subtraction, several spikes per
step), an ``LIF`` node as :class:`~snnify.LIF`, an ``LI`` node after neurons as
a :class:`~snnify.Lowpass` synapse. Initial voltages, spike rules and
refractory periods come from the node metadata that
:func:`~snnify.export_nir` writes; other graphs start from a voltage of 0.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((4,), name="pixels")
    >>> hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    >>> converter = snnify.Converter(
    ...     keras.Model(inp, keras.layers.Dense(2, name="out")(hidden)),
    ...     swap_activations={"relu": snnify.IntegrateAndFire()},
    ...     scale_firing_rates=100,
    ... )
    >>> imported = snnify.import_nir(snnify.export_nir(converter))
    >>> [layer.name for layer in imported.model.layers]
    ['input', 'l001_hidden', 'l002_hidden_neurons', 'l003_out']
    >>> imported.layers[imported.model.layers[2]].neuron_type == snnify.IntegrateAndFire()
    True
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import keras
import numpy as np

from snnify.converter import Converter
from snnify.export.nir_export import import_nir_package
from snnify.neurons import LIF, IntegrateAndFire, SpikingRectifiedLinear
from snnify.synapses import Lowpass


@dataclass
class Imported:
    """A NIR node's output in Keras: ``keras value = gain * NIR value``.

    Attributes:
        tensor: the Keras tensor (channels last).
        gain: per element, channels first (the NIR layout).
        neurons: the name of the Keras layer whose neurons emit it, if any.
    """

    tensor: object
    gain: np.ndarray
    neurons: str | None = None


def _channels_last(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, 0, -1) if array.ndim >= 2 else array


def _keras_shape(nir_shape) -> tuple:
    shape = tuple(int(d) for d in nir_shape)
    return shape[1:] + shape[:1] if len(shape) >= 2 else shape


def _known_shape(types: dict) -> tuple | None:
    """The shape of a node's ``"input"`` port, or None where it is not given."""
    shape = np.asarray(types.get("input", ()))
    if shape.dtype == object or shape.size == 0:
        return None
    return tuple(int(d) for d in shape)


def _uniform(array, what: str, name: str) -> float:
    array = np.asarray(array, "float64")
    if not np.all(array == array.flat[0]):
        raise ValueError(f"NIR node {name!r} has a {what} that varies over neurons.")
    return float(array.flat[0])


def _pair(value, rank: int) -> tuple:
    return tuple(int(v) for v in np.broadcast_to(np.asarray(value), (rank,)))


class NIRImporter:
    """Builds the Keras model of a NIR graph, node by node in graph order."""

    def __init__(self, graph, dt: float):
        self.nir = import_nir_package()
        self.graph = graph
        self.dt = dt
        self.values: dict = {}  # NIR name -> Imported
        self.neurons: dict = {}  # Keras layer name -> {"neuron", "scale", "synapse"}
        self.inputs, self.outputs = [], []

    def order(self) -> list:
        """The nodes, every node after its sources."""
        sources = {name: [] for name in self.graph.nodes}
        for source, target in self.graph.edges:
            sources[target].append(source)
        order, done = [], set()
        while len(order) < len(sources):
            ready = [n for n in sources if n not in done and set(sources[n]) <= done]
            if not ready:
                raise ValueError(
                    "The NIR graph has a cycle (a recurrent connection); snnify "
                    "imports feed-forward graphs only."
                )
            order += ready
            done.update(ready)
        return [(name, sources[name]) for name in order]

    def converter(self) -> Converter:
        for name, sources in self.order():
            node = self.graph.nodes[name]
            inputs = [self.values[s] for s in sources]
            self.values[name] = self.convert(name, node, inputs)
        model = keras.Model(self.inputs, self.outputs, name="nir_model")
        layers = {layer.name: layer for layer in model.layers}
        converter = Converter(
            model,
            swap_activations={"relu": IntegrateAndFire()} if self.neurons else None,
            scale_firing_rates={layers[k]: v["scale"] for k, v in self.neurons.items()},
            synapse={layers[k]: v["synapse"] for k, v in self.neurons.items()},
        )
        for name, options in self.neurons.items():
            converter.layers[layers[name]].neuron_type = options["neuron"]
        return converter

    # --- one node ---------------------------------------------------------
    def convert(self, name: str, node, inputs: list) -> Imported:
        nir = self.nir
        layer_name = re.sub(r"\W", "_", name)
        if isinstance(node, nir.Input):
            nir_shape = self.input_shape(name, node)
            tensor = keras.Input(_keras_shape(nir_shape), name=layer_name)
            self.inputs.append(tensor)
            return Imported(tensor, np.ones(nir_shape))
        if not inputs:
            raise ValueError(f"NIR node {name!r} has no input.")
        value = self.sum(name, inputs)
        if isinstance(node, nir.Output):
            return self.output(name, node, value)
        if isinstance(node, nir.Affine | nir.Linear):
            return self.affine(layer_name, node, value)
        if isinstance(node, nir.Conv1d | nir.Conv2d):
            return self.convolution(layer_name, node, value)
        if isinstance(node, nir.SumPool2d | nir.AvgPool2d):
            return self.pooling(layer_name, node, value)
        if isinstance(node, nir.Flatten):
            return self.flatten(layer_name, node, value)
        if isinstance(node, nir.IF | nir.LIF):
            return self.spiking(layer_name, node, value)
        if isinstance(node, nir.LI):
            return self.synapse(name, node, value)
        raise ValueError(
            f"NIR node {name!r} is a {type(node).__name__}, which snnify does not "
            "import. Supported: Input, Output, Affine, Linear, Conv1d, Conv2d, "
            "SumPool2d, AvgPool2d, Flatten, IF, LIF, and LI after neurons."
        )

    def input_shape(self, name: str, node) -> tuple:
        """An Input node's shape, without a batch axis of 1 that some tools
        (Norse) write where the nodes that read it expect none."""
        shape = _known_shape(node.input_type)
        if shape is None:
            raise ValueError(f"NIR input {name!r} has no shape.")
        readers = [self.graph.nodes[t] for s, t in self.graph.edges if s == name]
        expected = {_known_shape(reader.input_type) for reader in readers}
        if len(shape) > 1 and shape[0] == 1 and expected == {shape[1:]}:
            return shape[1:]
        return shape

    def sum(self, name: str, inputs: list) -> Imported:
        """The inputs of a node, summed (as NIR sums several edges)."""
        if len(inputs) == 1:
            return inputs[0]
        if any(not np.array_equal(v.gain, inputs[0].gain) for v in inputs):
            raise ValueError(
                f"NIR node {name!r} sums inputs on different scales (e.g. spikes of "
                "different thresholds); snnify cannot import that."
            )
        tensor = keras.layers.Add(name=re.sub(r"\W", "_", name) + "_sum")(
            [v.tensor for v in inputs]
        )
        return Imported(tensor, inputs[0].gain)

    def output(self, name: str, node, value: Imported) -> Imported:
        expected = (self.graph.metadata or {}).get("output_scales", {}).get(name, 1.0)
        if not np.allclose(value.gain, expected, rtol=1e-5):
            if value.neurons is None:
                raise ValueError(
                    f"NIR output {name!r} would come out scaled by the thresholds "
                    "before it; snnify imports outputs of neurons and linear nodes."
                )
            # spikes of area 1, as NIR's: amplitude / (scale * dt) = 1
            options = self.neurons[value.neurons]
            amplitude = _uniform(options["scale"], "threshold", name) * self.dt
            config = {**options["neuron"].get_config(), "amplitude": amplitude}
            options["neuron"] = type(options["neuron"]).from_config(config)
        self.outputs.append(value.tensor)
        return value

    def affine(self, name: str, node, value: Imported) -> Imported:
        if value.gain.ndim != 1:
            raise ValueError(f"NIR node {name!r} needs a flat input; flatten first.")
        weight = np.asarray(node.weight, "float64") / value.gain[None, :]
        bias = isinstance(node, self.nir.Affine)
        layer = keras.layers.Dense(weight.shape[0], use_bias=bias, name=name)
        tensor = layer(value.tensor)
        weights = [weight.T] + ([np.asarray(node.bias)] if bias else [])
        layer.set_weights([w.astype("float32") for w in weights])
        return Imported(tensor, np.ones(weight.shape[0]))

    def convolution(self, name: str, node, value: Imported) -> Imported:
        weight = np.asarray(node.weight, "float64")  # (out, in / groups, k...)
        rank = weight.ndim - 2
        gain = value.gain.reshape(value.gain.shape[0], -1)
        if not np.all(gain == gain[:, :1]) or (
            node.groups > 1 and not np.all(gain == gain.flat[0])
        ):
            raise ValueError(f"NIR node {name!r} has inputs on varying scales.")
        gain = (
            gain[:, 0] if node.groups == 1 else np.full(weight.shape[1], gain.flat[0])
        )
        kernel = np.moveaxis(weight, (0, 1), (-1, -2)) / gain[:, None]
        tensor = value.tensor
        padding = "valid"
        if isinstance(node.padding, str):
            padding = node.padding
        elif any(_pair(node.padding, rank)):
            pad_layer = (
                keras.layers.ZeroPadding1D if rank == 1 else keras.layers.ZeroPadding2D
            )
            pads = _pair(node.padding, rank)
            tensor = pad_layer(pads[0] if rank == 1 else pads, name=f"{name}_padding")(
                tensor
            )
        conv = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
        layer = conv(
            weight.shape[0],
            weight.shape[2:],
            strides=_pair(node.stride, rank),
            padding=padding,
            dilation_rate=_pair(node.dilation, rank),
            groups=int(node.groups),
            name=name,
        )
        tensor = layer(tensor)
        bias = np.zeros(weight.shape[0]) if node.bias is None else node.bias
        layer.set_weights([kernel.astype("float32"), np.asarray(bias, "float32")])
        shape = (weight.shape[0], *tensor.shape[1:-1])
        return Imported(tensor, np.ones(shape))

    def pooling(self, name: str, node, value: Imported) -> Imported:
        if np.any(np.asarray(node.padding)):
            raise ValueError(
                f"NIR node {name!r} pads; snnify imports pooling without padding."
            )
        kernel, stride = _pair(node.kernel_size, 2), _pair(node.stride, 2)
        gain = value.gain.reshape(value.gain.shape[0], -1)
        if not np.all(gain == gain[:, :1]):
            raise ValueError(f"NIR node {name!r} has inputs on varying scales.")
        gain = gain[:, 0]
        if isinstance(node, self.nir.SumPool2d):  # Keras averages: the sum / k^2
            gain = gain / np.prod(kernel)
        tensor = keras.layers.AveragePooling2D(kernel, stride, name=name)(value.tensor)
        shape = (gain.size, *tensor.shape[1:-1])
        return Imported(tensor, np.broadcast_to(gain[:, None, None], shape))

    def flatten(self, name: str, node, value: Imported) -> Imported:
        rank = value.gain.ndim
        if (node.start_dim, node.end_dim % rank) != (0, rank - 1):
            raise ValueError(
                f"NIR node {name!r} flattens dimensions {node.start_dim} to "
                f"{node.end_dim} of a rank-{rank} value; snnify imports Flatten "
                "of all dimensions (start_dim=0, end_dim=-1)."
            )
        if rank == 1:
            return value
        tensor = keras.layers.Permute((rank, *range(1, rank)), name=f"{name}_permute")(
            value.tensor
        )
        tensor = keras.layers.Flatten(name=name)(tensor)
        return Imported(tensor, value.gain.reshape(-1))

    def spiking(self, name: str, node, value: Imported) -> Imported:
        """IF and LIF nodes: a ReLU activation converted to neurons."""
        metadata = dict(node.metadata or {})
        shape = value.gain.shape
        threshold = np.broadcast_to(node.v_threshold / node.r, shape).astype("float64")
        initial = metadata.get("initial_voltage", 0.0)
        if np.ndim(initial) > 0:  # one per neuron, NIR order
            initial = _channels_last(np.asarray(initial, "float32").reshape(shape))
        elif not isinstance(initial, str):
            initial = float(initial)
        if isinstance(node, self.nir.LIF):
            if np.any(np.asarray(node.v_leak)):
                raise ValueError(f"NIR node {name!r} has v_leak != 0.")
            tau = _uniform(node.tau, "time constant", name)
            tau_ref = float(metadata.get("tau_ref", 0.0))
            neuron = LIF(tau_rc=tau, tau_ref=tau_ref, initial_voltage=initial)
            scale = 1.0 / (threshold * value.gain)
        else:
            if metadata.get("neuron") == "SpikingRectifiedLinear":
                neuron = SpikingRectifiedLinear(initial_voltage=initial)
            else:
                minimum = metadata.get("min_voltage")
                most = metadata.get("max_spikes_per_step")
                neuron = IntegrateAndFire(
                    initial_voltage=initial,
                    min_voltage=None if minimum is None else float(minimum),
                    max_spikes_per_step=None if most is None else int(most),
                )
            scale = 1.0 / (threshold * self.dt * value.gain)
        gain = 1.0 / (scale * self.dt)  # amplitude / (scale * dt), amplitude 1
        tensor = keras.layers.Activation("relu", name=name)(value.tensor)
        scale = _channels_last(scale)
        if np.all(scale == scale.flat[0]):
            scale = float(scale.flat[0])
        self.neurons[name] = {"neuron": neuron, "scale": scale, "synapse": None}
        return Imported(tensor, gain, neurons=name)

    def synapse(self, name: str, node, value: Imported) -> Imported:
        sources = [s for s, t in self.graph.edges if t == name]
        readers = [t for s, t in self.graph.edges if s in sources]
        if value.neurons is None or readers != [name]:
            raise ValueError(
                f"NIR node {name!r} (LI) is not the only reader of a neuron node; "
                "snnify imports LI nodes as synapses on the output of neurons."
            )
        if np.any(np.asarray(node.v_leak)) or not np.all(np.asarray(node.r) == 1):
            raise ValueError(f"NIR node {name!r} (LI) needs r = 1 and v_leak = 0.")
        tau = _uniform(node.tau, "time constant", name)
        self.neurons[value.neurons]["synapse"] = Lowpass(tau)
        return Imported(value.tensor, value.gain)


def import_nir(graph, dt: float | None = None) -> Converter:
    """Build a spiking network from a NIR graph or file.

    Args:
        graph: a ``nir.NIRGraph``, or the path of a NIR file.
        dt: the time step to simulate with (s); default: the graph's metadata
            ``dt`` (written by :func:`~snnify.export_nir`), else 0.001. Run the
            network with ``Simulator(converter.net, dt=dt)``: one NIR step is
            one step of ``dt``.

    Returns:
        a :class:`~snnify.Converter` whose ``net`` runs the graph.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: naming a node that snnify cannot import.
    """
    nir = import_nir_package()
    if not isinstance(graph, nir.NIRGraph):
        path = os.fspath(graph)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No NIR file at {path!r}. Received: {path!r}")
        graph = nir.read(path)
    if dt is None:
        dt = float((graph.metadata or {}).get("dt", 0.001))
    if not dt > 0:
        raise ValueError(f"dt must be positive (seconds). Received: dt={dt!r}")
    return NIRImporter(graph, float(dt)).converter()
