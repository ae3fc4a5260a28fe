"""Activity and cost of a spiking network: rates, spikes, synaptic operations, energy.

Counting rules (all per inference, i.e. per example):

- **Spikes** of a spiking neuron layer: its output times ``scale * dt /
  amplitude``, summed over neurons and steps.
- **Connections** of a layer that connects neurons (``Dense``, ``Conv1D/2D/3D``
  with any strides, padding, dilation and groups, ``DepthwiseConv1D/2D``,
  average pooling): for every input element, the number of (output element,
  weight) pairs that read it. Taps that fall on zero padding are not
  connections. A ``Dense`` layer of ``u`` units gives ``u`` per input; a 3x3
  ``Conv2D`` of ``f`` filters gives ``9 f`` inside the image and fewer near its
  edges.
- **Fan-out** of a neuron: the connections it reaches through layers that
  only move values (``Flatten``, ``Reshape``, ``Permute``, ``Dropout``,
  padding, cropping, synapses).
- **Synaptic operations** (SynOps): each spike times its neuron's fan-out,
  one accumulate (add) each.
- Connection layers fed by values that are not spikes (the input image,
  rate neurons, the output of pooling or normalisation) cost one
  multiply-accumulate (MAC) per connection: once per inference when their
  input is constant over the steps (the simulator computes them once), every
  step otherwise. Average pooling costs adds instead of MACs.
- The non-spiking network (ANN) costs one MAC per connection of every
  ``Dense``/convolution and one add per connection of average pooling.
- Neuron updates (a voltage add per neuron per step) and memory traffic are
  not counted.

Energy is ``MACs * E_mac + adds * E_add``; the default figures are Horowitz's
(ISSCC 2014) for 32-bit floating point in 45 nm CMOS: 4.6 pJ per
multiply-accumulate (3.7 pJ multiply + 0.9 pJ add) and 0.9 pJ per add. Give
:class:`EnergyModel` other figures for a chip.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, activation="relu")(inp)
    >>> model = keras.Model(inp, keras.layers.Dense(3)(hidden))
    >>> converter = snnify.Converter(
    ...     model, swap_activations={"relu": snnify.IntegrateAndFire()},
    ...     scale_firing_rates=100,
    ... )
    >>> stats = snnify.measure(converter, np.ones((2, 1, 4)), n_steps=10)
    >>> stats.ann_macs  # 4 * 8 + 8 * 3
    56.0
    >>> stats.synops == 3 * stats.spikes
    True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from keras import layers as kl
from keras import ops

from snnify import engine
from snnify.calibrate import _standard_inputs, decode
from snnify.network import (
    InputNode,
    LayerNode,
    NeuronsNode,
    Node,
    Probe,
    SynapseNode,
)
from snnify.simulator import Simulator


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation (joules).

    Attributes:
        mac: one multiply-accumulate.
        add: one accumulate (a synaptic operation of a spike).
        name: where the figures come from.
    """

    mac: float = 4.6e-12
    add: float = 0.9e-12
    name: str = "45 nm CMOS, 32-bit float (Horowitz, ISSCC 2014)"


HOROWITZ_45NM = EnergyModel()

_PASSTHROUGH = (
    kl.Flatten,
    kl.Reshape,
    kl.Permute,
    kl.Dropout,
    kl.SpatialDropout1D,
    kl.SpatialDropout2D,
    kl.SpatialDropout3D,
    kl.Identity,
    kl.ZeroPadding1D,
    kl.ZeroPadding2D,
    kl.ZeroPadding3D,
    kl.Cropping1D,
    kl.Cropping2D,
    kl.Cropping3D,
)
_CONVOLUTIONS = (kl.Conv1D, kl.Conv2D, kl.Conv3D)
_DEPTHWISE = (kl.DepthwiseConv1D, kl.DepthwiseConv2D)
_POOLING = (kl.AveragePooling1D, kl.AveragePooling2D, kl.AveragePooling3D)
_GLOBAL_POOLING = (
    kl.GlobalAveragePooling1D,
    kl.GlobalAveragePooling2D,
    kl.GlobalAveragePooling3D,
)
_CONNECTION_TYPES = (
    kl.Dense,
    *_CONVOLUTIONS,
    *_DEPTHWISE,
    *_POOLING,
    *_GLOBAL_POOLING,
)


def taps_per_input(
    size: int, kernel: int, stride: int = 1, dilation: int = 1, padding="valid"
) -> np.ndarray:
    """For each of ``size`` inputs along one axis, the (output, tap) pairs reading it.

    ``padding`` is ``"valid"``, ``"same"`` (Keras/XLA: ``ceil(size / stride)``
    outputs, the odd padding element at the end) or ``"causal"``.

    Example:
        >>> taps_per_input(5, kernel=3, stride=2).tolist()
        [1, 1, 2, 1, 1]
        >>> taps_per_input(4, kernel=3, padding="same").tolist()
        [2, 3, 3, 2]
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        outputs, before = max((size - span) // stride + 1, 0), 0
    elif padding == "same":
        outputs = -(-size // stride)
        before = max((outputs - 1) * stride + span - size, 0) // 2
    elif padding == "causal":
        outputs, before = size, span - 1
    else:
        raise ValueError(
            "padding must be 'valid', 'same' or 'causal'. "
            f"Received: padding={padding!r}"
        )
    index = (
        np.arange(outputs)[:, None] * stride + np.arange(kernel)[None] * dilation
    ) - before
    index = index[(index >= 0) & (index < size)]
    return np.bincount(index, minlength=size).astype("int64")


def _tuple(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def connections(layer, input_shape) -> np.ndarray | None:
    """Connections of every input element of ``layer`` (shape ``input_shape``).

    ``input_shape`` is the shape of one example (no batch). Returns None for
    layers that do not connect neurons (reshaping, elementwise) and for
    unsupported ones.

    Example:
        >>> import keras
        >>> conv = keras.layers.Conv2D(2, 3, strides=2, padding="same")
        >>> connections(conv, (4, 4, 1))[..., 0].tolist()
        [[2, 2, 4, 2], [2, 2, 4, 2], [4, 4, 8, 4], [2, 2, 4, 2]]
    """
    input_shape = tuple(int(d) for d in input_shape)
    if isinstance(layer, kl.Dense):
        return np.full(input_shape, int(layer.units), "int64")
    if isinstance(layer, _GLOBAL_POOLING):
        return np.ones(input_shape, "int64")
    if not isinstance(layer, (*_CONVOLUTIONS, *_DEPTHWISE, *_POOLING)):
        return None
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    spatial = input_shape[1:] if channels_first else input_shape[:-1]
    n = len(spatial)
    if isinstance(layer, _POOLING):
        kernel = _tuple(layer.pool_size, n)
        strides = _tuple(layer.strides or layer.pool_size, n)
        dilation, per_tap = (1,) * n, 1
    else:
        kernel = _tuple(layer.kernel_size, n)
        strides = _tuple(layer.strides, n)
        dilation = _tuple(layer.dilation_rate, n)
        if isinstance(layer, _DEPTHWISE):
            per_tap = int(layer.depth_multiplier)
        else:
            per_tap = int(layer.filters) // int(getattr(layer, "groups", 1) or 1)
    counts = np.ones((), "int64")
    for axis in range(n):
        along = taps_per_input(
            spatial[axis], kernel[axis], strides[axis], dilation[axis], layer.padding
        )
        counts = np.multiply.outer(counts, along)
    counts = counts * per_tap
    channels = input_shape[0] if channels_first else input_shape[-1]
    if channels_first:
        return np.broadcast_to(counts, (channels, *spatial)).copy()
    return np.broadcast_to(counts[..., None], (*spatial, channels)).copy()


def _pull_back(layer, values: np.ndarray, input_shape) -> np.ndarray | None:
    """Values per output element of a passthrough layer, per input element."""
    if isinstance(layer, kl.Permute):
        order = np.argsort(layer.dims)  # dims are 1-based axes of an example
        return np.transpose(values, tuple(order))
    padding = getattr(layer, "padding", None)
    if isinstance(layer, (kl.ZeroPadding1D, kl.ZeroPadding2D, kl.ZeroPadding3D)):
        return _crop(values, _pad_widths(padding), layer, input_shape)
    if isinstance(layer, (kl.Cropping1D, kl.Cropping2D, kl.Cropping3D)):
        widths = _pad_widths(layer.cropping)
        pads = _spatial_pads(widths, layer, len(input_shape))
        return np.pad(values, pads)
    return values.reshape(input_shape)


def _pad_widths(padding):
    """``[(before, after)]`` per spatial axis (1D layers give one pair)."""
    if all(isinstance(p, int) for p in padding):
        return [tuple(padding)]
    return [tuple(p) for p in padding]


def _spatial_pads(widths, layer, ndim):
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    pads = [tuple(int(v) for v in w) for w in widths]
    return ([(0, 0)] + pads) if first else (pads + [(0, 0)])[:ndim]


def _crop(values, widths, layer, input_shape):
    pads = _spatial_pads(widths, layer, values.ndim)
    index = tuple(slice(lo, dim - hi) for (lo, hi), dim in zip(pads, values.shape))
    return values[index]


class _Graph:
    """Children of every node, and the connections of every layer node."""

    def __init__(self, network):
        self.network = network
        self.children = {id(n): [] for n in network.nodes}
        for node in network.nodes:
            for parent in node.parents:
                self.children[id(parent)].append(node)
        self.unsupported = set()

    def is_connection(self, node) -> bool:
        return isinstance(node, LayerNode) and isinstance(node.layer, _CONNECTION_TYPES)

    def connections(self, node) -> np.ndarray:
        return connections(node.layer, node.parents[0].shape)

    def fan_out(self, node) -> np.ndarray:
        """Connections reached by every element of ``node`` through passthroughs."""
        total = np.zeros(node.shape, "float64")
        for child in self.children[id(node)]:
            if self.is_connection(child):
                total += self.connections(child)
            elif isinstance(child, SynapseNode) or (
                isinstance(child, LayerNode) and isinstance(child.layer, _PASSTHROUGH)
            ):
                onward = self.fan_out(child)
                if isinstance(child, LayerNode):
                    onward = _pull_back(child.layer, onward, node.shape)
                total += onward
            elif isinstance(child, _ActivityCounter):
                continue
            elif not isinstance(child, NeuronsNode):
                self.unsupported.add(
                    type(child.layer).__name__
                    if isinstance(child, LayerNode)
                    else type(child).__name__
                )
        return total

    def source(self, node) -> Node:
        """The node whose values reach ``node`` through passthroughs only."""
        while (
            isinstance(node, SynapseNode)
            or (isinstance(node, LayerNode) and isinstance(node.layer, _PASSTHROUGH))
        ) and len(node.parents) == 1:
            node = node.parents[0]
        return node


class _ActivityCounter(Node):
    """Per step: spikes, synaptic operations and the busiest neuron, per layer.

    Its output is ``(3 * n_layers,)`` per example: for every neuron layer, the
    spikes of this step, their synaptic operations and the largest spike count
    of a neuron since the start.
    """

    stateful = True

    def __init__(self, name, neurons, fan_outs):
        super().__init__(name, (3 * len(neurons),), neurons)
        self.fan_outs = [f.astype("float32") for f in fan_outs]

    def initial_state(self, rng):
        return {
            f"count{k}": np.zeros(n.shape, "float32")
            for k, n in enumerate(self.parents)
        }

    def compute(self, inputs, state, context):
        outputs, new_state = [], {}
        for k, (node, value) in enumerate(zip(self.parents, inputs)):
            spikes = value * (node.scale * context.dt / node.neuron_type.amplitude)
            count = state[f"count{k}"] + spikes
            new_state[f"count{k}"] = count
            batch = ops.shape(value)[0]
            outputs += [
                ops.sum(ops.reshape(spikes, (batch, -1)), axis=1),
                ops.sum(ops.reshape(spikes * self.fan_outs[k], (batch, -1)), axis=1),
                ops.max(ops.reshape(count, (batch, -1)), axis=1),
            ]
        return ops.stack(outputs, axis=1), new_state


@dataclass
class LayerStats:
    """Activity of one neuron layer, per inference.

    Attributes:
        name: the Keras layer's name.
        neurons: number of neurons.
        spiking: whether its neurons spike (else counts are expected values).
        spikes: spikes per inference (all neurons).
        synops: synaptic operations of those spikes.
        mean_rate: mean firing rate over neurons, steps and examples (Hz).
        max_rate: highest firing rate of a neuron over the run (Hz), over all
            examples.
        fan_out: mean fan-out of a neuron.
    """

    name: str
    neurons: int
    spiking: bool
    spikes: float
    synops: float
    mean_rate: float
    max_rate: float
    fan_out: float

    @property
    def spikes_per_neuron(self) -> float:
        return self.spikes / self.neurons


@dataclass
class NetworkStats:
    """Activity and cost of a spiking network, per inference.

    Attributes:
        n_steps: steps simulated.
        n_examples: examples measured.
        dt: time step (s).
        layers: one :class:`LayerStats` per neuron layer.
        snn_macs: MACs of connection layers fed by values that are not spikes.
        snn_adds: adds of average pooling fed by values that are not spikes.
        ann_macs, ann_adds: operations of the non-spiking network.
        accuracy: classification accuracy, when labels were given.
        outputs: ``{output probe: decoded (n_examples, size)}``.
        unsupported: types of layers after neurons whose cost is not counted.
    """

    n_steps: int
    n_examples: int
    dt: float
    layers: list
    snn_macs: float
    snn_adds: float
    ann_macs: float
    ann_adds: float
    accuracy: float | None = None
    outputs: dict = field(default_factory=dict, repr=False)
    unsupported: tuple = ()

    @property
    def spikes(self) -> float:
        """Spikes per inference, all spiking layers together."""
        return sum(s.spikes for s in self.layers if s.spiking)

    @property
    def synops(self) -> float:
        """Synaptic operations per inference."""
        return sum(s.synops for s in self.layers if s.spiking)

    @property
    def neurons(self) -> int:
        return sum(s.neurons for s in self.layers if s.spiking)

    @property
    def spikes_per_neuron(self) -> float:
        """Mean spikes per spiking neuron per inference."""
        return self.spikes / max(self.neurons, 1)

    def energy(self, model: EnergyModel = HOROWITZ_45NM) -> float:
        """Energy per inference of the spiking network (J)."""
        return self.snn_macs * model.mac + (self.synops + self.snn_adds) * model.add

    def ann_energy(self, model: EnergyModel = HOROWITZ_45NM) -> float:
        """Energy per inference of the non-spiking network (J)."""
        return self.ann_macs * model.mac + self.ann_adds * model.add

    def summary(self, model: EnergyModel = HOROWITZ_45NM) -> str:
        """A table per layer, then the totals."""
        lines = [
            f"{'layer':<24}{'neurons':>9}{'spikes':>11}{'spk/neuron':>11}"
            f"{'mean Hz':>9}{'max Hz':>9}{'SynOps':>11}"
        ]
        for s in self.layers:
            lines.append(
                f"{s.name:<24}{s.neurons:>9}{s.spikes:>11.4g}"
                f"{s.spikes_per_neuron:>11.3g}{s.mean_rate:>9.4g}{s.max_rate:>9.4g}"
                f"{s.synops:>11.4g}"
            )
        lines.append(
            f"per inference over {self.n_steps} steps: {self.spikes:.4g} spikes, "
            f"{self.synops:.4g} SynOps, {self.snn_macs:.4g} MACs -> "
            f"{self.energy(model) * 1e9:.4g} nJ (ANN: {self.ann_macs:.4g} MACs, "
            f"{self.ann_energy(model) * 1e9:.4g} nJ; {model.name})"
        )
        if self.accuracy is not None:
            lines.append(f"accuracy: {100 * self.accuracy:.2f} %")
        return "\n".join(lines)


def ann_operations(network) -> dict:
    """``{layer name: (MACs, adds)}`` of the non-spiking network, per inference."""
    graph = _Graph(network)
    result = {}
    for node in network.nodes:
        if graph.is_connection(node):
            count = float(graph.connections(node).sum())
            pooling = isinstance(node.layer, (*_POOLING, *_GLOBAL_POOLING))
            result[node.name] = (0.0, count) if pooling else (count, 0.0)
    return result


def measure(
    converter,
    x,
    n_steps: int | None = None,
    y=None,
    steps=None,
    decoding: str = "mean",
    synapse=None,
    minibatch_size: int | None = None,
    seed: int = 0,
    dt: float = 0.001,
):
    """Simulate a converted network and measure its activity and cost.

    Args:
        converter: a :class:`~snnify.Converter`.
        x: inputs, as for ``Simulator.predict`` (or Keras's own format).
        n_steps: steps to simulate.
        y: integer labels (``(n,)`` or ``(n, 1, 1)``) for the accuracy of
            the first output, decoded with ``decoding``.
        steps: measure at each of these step counts too (one simulation of
            ``max(steps)`` steps: the first ``T`` steps of a run are a run of
            ``T`` steps); then a ``{T: NetworkStats}`` dict is returned.
        decoding: ``"mean"``, ``"last"`` or ``"count"`` (see
            :func:`snnify.decode`).
        synapse: filter for the ``"last"`` decoding.
        minibatch_size, seed, dt: as for :class:`~snnify.Simulator`.

    Returns:
        a :class:`NetworkStats` (or a dict of them, with ``steps``).
    """
    net = converter.net
    wanted = sorted({int(t) for t in steps}) if steps else [int(n_steps or 0)]
    if wanted[0] < 1:
        raise ValueError(
            f"Give n_steps (or steps) >= 1. Received: n_steps={n_steps!r}, "
            f"steps={steps!r}"
        )
    total_steps = wanted[-1]
    graph = _Graph(net)
    neurons = [n for n in net.nodes if isinstance(n, NeuronsNode)]
    names = {}
    for tensor in converter.layers:
        node = converter.layers[tensor]
        names[id(node)] = tensor._keras_history.operation.name
    fan_outs = [graph.fan_out(n) for n in neurons]
    if graph.unsupported:
        warnings.warn(
            "The operations of layer type(s) "
            f"{sorted(graph.unsupported)} after neurons are not counted.",
            stacklevel=2,
        )
    inputs = _standard_inputs(net, x)
    with net:
        counter = net.add_node(_ActivityCounter("activity", neurons, fan_outs))
        probe = Probe(counter, keep="all")
    outputs = [p for p in net.probes if getattr(p, "is_output", False)]
    try:
        with Simulator(
            net, minibatch_size=minibatch_size, dt=dt, progress_bar=False, seed=seed
        ) as sim:
            data = sim.predict(inputs, n_steps=total_steps)
    finally:
        net.probes.remove(probe)
    activity = data[probe].reshape(len(next(iter(inputs.values()))), total_steps, -1, 3)
    n_examples = activity.shape[0]
    labels = None if y is None else np.asarray(y).reshape(-1)

    # costs that do not depend on spikes
    constant = [name for name, v in inputs.items() if v.shape[1] == 1]
    static, _ = engine.split_static(
        [n for n in net.nodes if not isinstance(n, InputNode)],
        constant,
    )
    static = {id(n) for n in static}
    fixed = []  # (MACs, adds, per step) of connection layers fed by non-spikes
    ann_macs = ann_adds = 0.0
    for node in net.nodes:
        if not graph.is_connection(node):
            continue
        count = float(graph.connections(node).sum())
        pooling = isinstance(node.layer, (*_POOLING, *_GLOBAL_POOLING))
        ann_macs += 0.0 if pooling else count
        ann_adds += count if pooling else 0.0
        source = graph.source(node.parents[0])
        if isinstance(source, NeuronsNode) and source.neuron_type.spiking:
            continue
        fixed.append(
            (
                0.0 if pooling else count,
                count if pooling else 0.0,
                id(node) not in static,
            )
        )

    results = {}
    for t in wanted:
        layer_stats = []
        for k, node in enumerate(neurons):
            spikes = float(activity[:, :t, k, 0].sum()) / n_examples
            synops = float(activity[:, :t, k, 1].sum()) / n_examples
            busiest = float(activity[:, t - 1, k, 2].max())
            layer_stats.append(
                LayerStats(
                    name=names.get(id(node), node.name),
                    neurons=node.size,
                    spiking=node.neuron_type.spiking,
                    spikes=spikes,
                    synops=synops,
                    mean_rate=spikes / (node.size * t * dt),
                    max_rate=busiest / (t * dt),
                    fan_out=float(fan_outs[k].mean()),
                )
            )
        decoded = {p: decode(data[p][:, :t], decoding, synapse, dt) for p in outputs}
        accuracy = None
        if labels is not None and outputs:
            predicted = np.argmax(decoded[outputs[0]], axis=-1)
            accuracy = float(np.mean(predicted == labels))
        results[t] = NetworkStats(
            n_steps=t,
            n_examples=n_examples,
            dt=dt,
            layers=layer_stats,
            snn_macs=sum(m * (t if per_step else 1) for m, _, per_step in fixed),
            snn_adds=sum(a * (t if per_step else 1) for _, a, per_step in fixed),
            ann_macs=ann_macs,
            ann_adds=ann_adds,
            accuracy=accuracy,
            outputs=decoded,
            unsupported=tuple(sorted(graph.unsupported)),
        )
    return results if steps else results[wanted[0]]
