"""Activity and cost of a spiking network: rates, spikes, synaptic operations, energy.

Counting rules (all per inference, i.e. per example):

- **Spikes** of a spiking neuron layer: the magnitude of its output times
  ``scale * dt / amplitude``, summed over neurons and steps (a negative
  spike of :class:`~snnify.SignedIntegrateAndFire` counts as one).
- **Connections** of a layer that connects neurons (``Dense``,
  ``EinsumDense``, convolutions with any strides, padding, dilation and
  groups, depthwise, separable and transposed convolutions, average pooling,
  and ``BatchNormalization`` with one per element): for every input element, the number of (output element,
  weight) pairs that read it. Taps that fall on zero padding are not
  connections. A ``Dense`` layer of ``u`` units gives ``u`` per input; a 3x3
  ``Conv2D`` of ``f`` filters gives ``9 f`` inside the image and fewer near its
  edges.
- **Fan-out** of a neuron: the connections it reaches through synapses and
  layers that only move values (``Flatten``, ``Reshape``, ``Permute``,
  ``Dropout``, padding, cropping, upsampling, merging). Each layer type's
  conversion rule says how it counts (:class:`snnify.rules.Cost`).
- **Synaptic operations** (SynOps): each spike times its neuron's fan-out,
  one accumulate (add) each.
- The pointwise part of a separable convolution costs one MAC per
  connection every step, as it reads values the layer computes itself.
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
from keras import ops

from snnify import engine
from snnify.converter import require_neurons
from snnify.decoding import decode
from snnify.graph import InputNode, LayerNode, NeuronsNode, Node, Probe, SynapseNode
from snnify.inputs import standardize_inputs
from snnify.keras_graph import layer_of
from snnify.rules import convert_layer
from snnify.simulator import Simulator
from snnify.validation import class_labels


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


def connections(layer, input_shape) -> np.ndarray | None:
    """Connections of every input element of ``layer`` (shape ``input_shape``).

    ``input_shape`` is the shape of one example (no batch). Returns None for
    layers that do not connect neurons (reshaping, elementwise moves) and for
    layers whose rule gives no cost.

    Example:
        >>> import keras
        >>> conv = keras.layers.Conv2D(2, 3, strides=2, padding="same")
        >>> connections(conv, (4, 4, 1))[..., 0].tolist()
        [[2, 2, 4, 2], [2, 2, 4, 2], [4, 4, 8, 4], [2, 2, 4, 2]]
    """
    cost = convert_layer(layer).cost
    if cost is None or cost.connections is None:
        return None
    return cost.connections(layer, tuple(int(d) for d in input_shape))


class _CostGraph:
    """The children of every node, and what each layer node costs."""

    def __init__(self, network):
        self.children = {id(n): [] for n in network.nodes}
        for node in network.nodes:
            for parent in node.parents:
                self.children[id(parent)].append(node)
        self.uncounted = set()

    @staticmethod
    def cost(node):
        return node.cost if isinstance(node, LayerNode) else None

    def connections(self, node) -> np.ndarray | None:
        cost = self.cost(node)
        if cost is None or cost.connections is None:
            return None
        return cost.connections(node.layer, node.parents[0].shape)

    def fan_out(self, node) -> np.ndarray:
        """Connections reached by every element of ``node`` through moves."""
        total = np.zeros(node.shape, "float64")
        for child in self.children[id(node)]:
            cost = self.cost(child)
            if isinstance(child, SynapseNode):
                total += self.fan_out(child)
            elif cost is not None and cost.connections is not None:
                total += self.connections(child)
            elif cost is not None and cost.pull_back is not None:
                onward = self.fan_out(child)
                shapes = [p.shape for p in child.parents]
                for index, parent in enumerate(child.parents):
                    if parent is node:
                        total += cost.pull_back(child.layer, onward, shapes, index)
            elif not isinstance(child, NeuronsNode):
                name = child.layer.name if isinstance(child, LayerNode) else child.name
                self.uncounted.add(name)
        return total

    def spike_driven(self, node) -> bool:
        """Whether ``node``'s values are spikes (through moves and synapses)."""
        if isinstance(node, NeuronsNode):
            return node.neuron_type.spiking
        cost = self.cost(node)
        moves = isinstance(node, SynapseNode) or (
            cost is not None and cost.pull_back is not None
        )
        return moves and all(self.spike_driven(p) for p in node.parents)


class _ActivityCounter(Node):
    """Per step: spikes, synaptic operations and the busiest neuron, per layer.

    Its output is ``(3 * n_layers,)`` per example: for every neuron layer, the
    spikes of this step, their synaptic operations and the largest spike count
    of a neuron since the start. It is not added to the network: ``measure``
    records it for one run.
    """

    stateful = True

    def __init__(self, neurons, fan_outs):
        super().__init__("activity", (3 * len(neurons),), neurons)
        self.fan_outs = [f.astype("float32") for f in fan_outs]

    def initial_state(self, rng):
        return {
            f"count{k}": np.zeros(n.shape, "float32")
            for k, n in enumerate(self.parents)
        }

    def compute(self, inputs, state, context):
        outputs, new_state = [], {}
        for k, (node, value) in enumerate(zip(self.parents, inputs)):
            # negative spikes (SignedIntegrateAndFire) count as spikes too
            spikes = ops.abs(value) * (
                node.scale * context.dt / node.neuron_type.amplitude
            )
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
        uncounted: layers after neurons whose cost is not counted.
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
    uncounted: tuple = ()

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
            f"{'mean Hz':>10}{'max Hz':>10}{'SynOps':>11}"
        ]
        for s in self.layers:
            lines.append(
                f"{s.name:<24}{s.neurons:>9}{s.spikes:>11.4g}"
                f"{s.spikes_per_neuron:>11.3g}{s.mean_rate:>10.4g}{s.max_rate:>10.4g}"
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


@dataclass
class _LayerCosts:
    """The costs of a network that do not depend on its spikes."""

    ann_macs: float = 0.0
    ann_adds: float = 0.0
    # (MACs, adds, paid every step) of layers fed by values that are not spikes
    fixed: list = field(default_factory=list)

    def snn(self, n_steps: int) -> tuple[float, float]:
        """``(MACs, adds)`` per inference of the spiking network."""
        macs = sum(m * (n_steps if every else 1) for m, _, every in self.fixed)
        adds = sum(a * (n_steps if every else 1) for _, a, every in self.fixed)
        return macs, adds


def _layer_costs(network, graph: _CostGraph, constant_inputs) -> _LayerCosts:
    nodes = [n for n in network.nodes if not isinstance(n, InputNode)]
    static, _ = engine.split_static(nodes, constant_inputs)
    static = {id(n) for n in static}
    costs = _LayerCosts()
    for node in network.nodes:
        count = graph.connections(node)
        if count is None:
            continue
        count = float(count.sum())
        additions = graph.cost(node).additions
        extra = graph.cost(node).extra_macs
        extra = float(extra(node.layer, node.parents[0].shape)) if extra else 0.0
        macs, adds = (extra, count) if additions else (count + extra, 0.0)
        costs.ann_macs += macs
        costs.ann_adds += adds
        every_step = id(node) not in static
        if graph.spike_driven(node.parents[0]):
            costs.fixed.append((extra, 0.0, every_step))  # the spikes are SynOps
        else:
            costs.fixed.append((macs, adds, every_step))
    return costs


def ann_operations(network) -> dict:
    """``{layer name: (MACs, adds)}`` of the non-spiking network, per inference."""
    graph = _CostGraph(network)
    result = {}
    for node in network.nodes:
        count = graph.connections(node)
        if count is not None:
            total = float(count.sum())
            result[node.name] = (0.0, total) if node.cost.additions else (total, 0.0)
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
        y: labels (integers ``(n,)`` or ``(n, 1, 1)``, or one-hot rows) for the accuracy of
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
    graph = _CostGraph(net)
    neurons = require_neurons(net.nodes, "measure counts the spikes of neuron layers")
    fan_outs = [graph.fan_out(n) for n in neurons]
    if graph.uncounted:
        warnings.warn(
            f"The operations of layer(s) {sorted(graph.uncounted)} after neurons "
            "are not counted: their conversion rules give no cost.",
            stacklevel=2,
        )
    inputs = standardize_inputs(net, x, time_axis_optional=True)
    counter = Probe(_ActivityCounter(neurons, fan_outs), add_to_container=False)
    outputs = [p for p in net.probes if p.is_output]
    with Simulator(
        net, minibatch_size=minibatch_size, dt=dt, progress_bar=False, seed=seed
    ) as sim:
        data = sim.predict(inputs, n_steps=wanted[-1], probes=[counter, *outputs])
    activity = data[counter].reshape(len(data[counter]), wanted[-1], -1, 3)
    constant = [n.name for n, v in inputs.items() if v.shape[1] == 1]
    costs = _layer_costs(net, graph, constant)
    names = {id(converter.layers[t]): layer_of(t).name for t in converter.layers}
    labels = None if y is None else class_labels(y, len(activity))
    results = {}
    for t in wanted:
        layer_stats = [
            _layer_stats(node, activity[:, :t, k], fan_outs[k], t, dt, names)
            for k, node in enumerate(neurons)
        ]
        decoded = {p: decode(data[p][:, :t], decoding, synapse, dt) for p in outputs}
        accuracy = None
        if labels is not None and outputs:
            predicted = np.argmax(decoded[outputs[0]], axis=-1)
            accuracy = float(np.mean(predicted == labels))
        snn_macs, snn_adds = costs.snn(t)
        results[t] = NetworkStats(
            n_steps=t,
            n_examples=len(activity),
            dt=dt,
            layers=layer_stats,
            snn_macs=snn_macs,
            snn_adds=snn_adds,
            ann_macs=costs.ann_macs,
            ann_adds=costs.ann_adds,
            accuracy=accuracy,
            outputs=decoded,
            uncounted=tuple(sorted(graph.uncounted)),
        )
    return results if steps else results[wanted[0]]


def _layer_stats(node, activity, fan_out, n_steps, dt, names) -> LayerStats:
    """The statistics of one neuron layer from its activity ``(n, steps, 3)``."""
    n_examples = len(activity)
    spikes = float(activity[..., 0].sum()) / n_examples
    return LayerStats(
        name=names.get(id(node), node.name),
        neurons=node.size,
        spiking=node.neuron_type.spiking,
        spikes=spikes,
        synops=float(activity[..., 1].sum()) / n_examples,
        mean_rate=spikes / (node.size * n_steps * dt),
        max_rate=float(activity[:, -1, 2].max()) / (n_steps * dt),
        fan_out=float(fan_out.mean()),
    )
