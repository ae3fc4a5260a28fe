"""The spiking network: its nodes, probes and settings.

A :class:`Network` is a ``keras.Model`` made of nodes, each computing one value
per time step and per example: inputs, Keras layers without their activation,
neurons (the activations), synapses and exact non-linear functions. The
:class:`~snnify.Converter` builds it from a Keras model; a
:class:`~snnify.Simulator` runs it over time.

Example:
    >>> import keras, snnify
    >>> inp = keras.Input((4,))
    >>> dense = keras.layers.Dense(3, activation="relu")(inp)
    >>> converter = snnify.Converter(keras.Model(inp, dense))
    >>> with converter.net:
    ...     probe = snnify.Probe(converter.layers[dense])
    ...     snnify.configure_settings(stateful=False)
    >>> probe.size_in
    3
"""

from __future__ import annotations

import inspect
import math
from types import SimpleNamespace

import keras
import numpy as np
from keras import ops

from snnify.neurons import NeuronType
from snnify.synapses import Lowpass, as_synapse

_ACTIVE_NETWORKS: list[Network] = []

DEFAULT_SETTINGS = {
    # carry neuron and synapse state from one predict call to the next
    "stateful": False,
    # sigma of the SoftLIF rate used to train spiking LIF neurons (None: exact)
    "lif_smoothing": 0.01,
    # train with spiking forward passes over this many steps (None: rates)
    "spike_aware_steps": None,
}


class Node:
    """One value of the network, computed for every example and time step.

    Attributes:
        name: unique name in the network.
        shape: shape of the value for one example (no batch, no time).
        parents: the nodes whose values this one reads.
    """

    stateful = False

    def __init__(self, name: str, shape, parents=()):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.parents = list(parents)
        self.network: Network | None = None

    @property
    def size(self) -> int:
        """Number of values (neurons) for one example."""
        return math.prod(self.shape)

    def initial_state(self, rng: np.random.Generator) -> dict | None:
        return None

    def compute(self, inputs: list, state, context):
        """Return ``(output, new_state)`` for one step of a batch."""
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} shape={self.shape}>"


class InputNode(Node):
    """An input of the network; its value is given to the simulator."""

    def compute(self, inputs, state, context):
        raise RuntimeError(f"Input {self.name!r} has no value.")


class LayerNode(Node):
    """A Keras layer applied as it is (its activation removed by the rule)."""

    def __init__(
        self, name, shape, parents, layer, arguments, tensor_ids, frozen=False
    ):
        super().__init__(name, shape, parents)
        self.layer = layer
        self.arguments = arguments
        self.tensor_ids = tensor_ids
        self.frozen = frozen
        self._takes_training = "training" in inspect.signature(layer.call).parameters

    def compute(self, inputs, state, context):
        args, kwargs = self.arguments.fill_in(dict(zip(self.tensor_ids, inputs)))
        if self._takes_training:
            kwargs["training"] = bool(context.training) and not self.frozen
        return self.layer(*args, **kwargs), state


class FunctionNode(Node):
    """An exact non-linear function that is not a neuron (e.g. softmax)."""

    def __init__(self, name, shape, parents, function):
        super().__init__(name, shape, parents)
        self.function = function

    def compute(self, inputs, state, context):
        return self.function(inputs[0]), state


class NeuronsNode(Node):
    """A layer of neurons: the activation of a Keras layer.

    The current is ``scale * x`` and the output is divided by ``scale``
    (``scale_firing_rates``), so rate outputs do not depend on it. ``scale``
    is a float, or an array that broadcasts against ``shape`` (e.g. one scale
    per channel).
    """

    def __init__(self, name, shape, parent, neuron_type: NeuronType, scale=1.0):
        super().__init__(name, shape, [parent])
        self.neuron_type = neuron_type
        self.scale = float(scale) if np.ndim(scale) == 0 else np.float32(scale)

    @property
    def stateful(self):
        return self.neuron_type.spiking

    def initial_state(self, rng):
        if not self.stateful:
            return None
        return self.neuron_type.initial_state(self.shape, rng)

    def compute(self, inputs, state, context):
        scaled = np.ndim(self.scale) > 0 or self.scale != 1.0
        current = inputs[0] * self.scale if scaled else inputs[0]
        if self.stateful and context.spiking:
            spikes, state = self.neuron_type.step(current, state, context.dt)
            if context.training:  # spiking forward, rate gradient backward
                rate = self.neuron_type.training_rate(current, context.lif_smoothing)
                spikes = rate + ops.stop_gradient(spikes - rate)
            output = spikes
        elif context.training:
            output = self.neuron_type.training_rate(current, context.lif_smoothing)
        else:
            output = self.neuron_type.rate(current)
        return (output / self.scale if scaled else output), state


class SynapseNode(Node):
    """A synaptic filter on the output of another node.

    In rate mode (training, ``verify``) a synapse passes its input unchanged:
    that is its steady state for a constant input.
    """

    stateful = True

    def __init__(self, name, shape, parent, synapse: Lowpass):
        super().__init__(name, shape, [parent])
        self.synapse = synapse

    def initial_state(self, rng):
        return self.synapse.initial_state(self.shape)

    def compute(self, inputs, state, context):
        if not context.spiking:
            return inputs[0], state
        return self.synapse.step(inputs[0], state, context.dt)


class Probe:
    """Records the value of a node during a simulation.

    Create probes inside ``with network:``. ``Simulator.predict`` returns, for
    each probe, an array ``(batch, n_steps, probe.size_in)`` whose last axis
    follows Keras's own flattening order of the target's shape.

    Args:
        target: a node, e.g. ``converter.layers[conv0]`` (its neurons) or an
            output of the converted network.
        synapse: optional filter applied to the recorded value (a time
            constant in seconds or a :class:`~snnify.Lowpass`).
        label: a name for the probe (defaults to one derived from the target).
        keep: ``"all"`` (record the value at every sampled step), ``"last"``
            (only the value at the last step: ``(batch, 1, size)``) or
            ``"stats"`` (running sum and max per neuron, see
            :class:`~snnify.simulator.ProbeStats`). With ``"last"`` and
            ``"stats"`` memory does not grow with the number of steps.
        sample_every: with ``keep="all"``, record every this many seconds
            (a multiple of the simulator's ``dt``; default: every step).
    """

    KEEP = ("all", "last", "stats")

    def __init__(self, target, synapse=None, label=None, keep="all", sample_every=None):
        if isinstance(target, Probe):
            target = target.target
        if not isinstance(target, Node):
            raise TypeError(
                "A Probe target must be a node of a converted network, such as "
                "converter.layers[layer]. Received: "
                f"target={target!r}"
            )
        network = _ACTIVE_NETWORKS[-1] if _ACTIVE_NETWORKS else target.network
        if target.network is not network:
            raise ValueError(
                f"Probe target {target.name!r} belongs to another network than "
                "the one of the enclosing `with` block."
            )
        synapse = as_synapse(synapse)
        self.label = label or network.unique_name(f"probe_{target.name}")
        network._names.add(self.label)
        if synapse is not None:
            target = network.add_node(
                SynapseNode(f"{self.label}.synapse", target.shape, target, synapse)
            )
        self.target = target
        self.synapse = synapse
        self.keep = keep
        self.sample_every = sample_every
        self.is_output = False  # set by the Converter for its outputs
        network.probes.append(self)

    @property
    def keep(self) -> str:
        return self._keep

    @keep.setter
    def keep(self, keep):
        if keep not in self.KEEP:
            raise ValueError(
                f"keep must be one of {self.KEEP}. Received: keep={keep!r}"
            )
        self._keep = keep

    @property
    def sample_every(self) -> float | None:
        return self._sample_every

    @sample_every.setter
    def sample_every(self, seconds):
        if seconds is not None and not seconds > 0:
            raise ValueError(
                f"sample_every must be None or positive (seconds). Received: {seconds!r}"
            )
        self._sample_every = seconds

    def steps_between_samples(self, dt: float) -> int:
        """``sample_every`` in steps of ``dt``."""
        if self.sample_every is None:
            return 1
        steps = round(self.sample_every / dt)
        if steps < 1 or abs(steps * dt - self.sample_every) > 1e-9:
            raise ValueError(
                f"Probe {self.label!r}: sample_every={self.sample_every} is not a multiple "
                f"of dt={dt}."
            )
        return steps

    @property
    def size_in(self) -> int:
        """Number of values recorded per step (the target's neurons)."""
        return self.target.size

    @property
    def name(self) -> str:
        return self.label

    def __repr__(self):
        return f"<Probe {self.label!r} size_in={self.size_in}>"


class Network(keras.Model):
    """A spiking network as a ``keras.Model``.

    Use it as a context manager to add probes and settings. Called by Keras
    (``fit``, ``evaluate``), it computes the firing rates of every probe with
    the neurons' rate functions (time folded into the batch); the simulator runs
    it step by step with spiking neurons.
    """

    def __init__(self, name: str = "snnify_network"):
        super().__init__(name=name)
        self.nodes: list[Node] = []
        self.input_nodes: list[InputNode] = []
        self.probes: list[Probe] = []
        self.settings = dict(DEFAULT_SETTINGS)
        self.trained_probes: list[Probe] = []
        self.rate_regularizers = []
        self.dt = 0.001  # set by the Simulator; used by spike-aware training
        self._converted_layers = []
        self._names: set[str] = set()
        self.built = True

    # --- construction -----------------------------------------------------
    def unique_name(self, name: str) -> str:
        candidate, i = name, 1
        while candidate in self._names:
            i += 1
            candidate = f"{name}_{i}"
        return candidate

    def add_node(self, node: Node) -> Node:
        node.name = self.unique_name(node.name)
        self._names.add(node.name)
        node.network = self
        self.nodes.append(node)
        if isinstance(node, InputNode):
            self.input_nodes.append(node)
        if isinstance(node, LayerNode) and all(
            node.layer is not layer for layer in self._converted_layers
        ):
            self._converted_layers.append(node.layer)
        return node

    def __enter__(self):
        _ACTIVE_NETWORKS.append(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE_NETWORKS.remove(self)

    # --- evaluation -------------------------------------------------------
    def needed_nodes(self, probes, extra_nodes=()) -> list[Node]:
        """Nodes that the given probes (and nodes) depend on, in order."""
        needed = set()
        stack = [p.target for p in probes] + list(extra_nodes)
        while stack:
            node = stack.pop()
            if id(node) not in needed:
                needed.add(id(node))
                stack.extend(node.parents)
        return [n for n in self.nodes if id(n) in needed]

    def context(self, dt=0.001, spiking=False, training=False):
        return SimpleNamespace(
            dt=dt,
            spiking=spiking,
            training=training,
            lif_smoothing=self.settings["lif_smoothing"],
        )

    def evaluate_nodes(self, nodes, values: dict, states: dict, context):
        """Compute ``nodes`` in order; ``values`` (by name) gets their outputs.

        Returns the new states of the stateful nodes among them.
        """
        new_states = {}
        for node in nodes:
            inputs = [values[p.name] for p in node.parents]
            output, state = node.compute(inputs, states.get(node.name), context)
            values[node.name] = output
            if state is not None:
                new_states[node.name] = state
        return new_states

    def compute_rates(self, inputs: dict, probes, training=False) -> dict:
        """Rates of ``probes`` for inputs ``{input name: (batch, t, ...)}``.

        Time is folded into the batch and every neuron uses its rate function;
        returns ``{probe name: (batch, t, probe.size_in)}``.
        """
        values = {}
        for node in self.input_nodes:
            x = ops.cast(inputs[node.name], "float32")
            batch_time = ops.shape(x)[:2]
            values[node.name] = ops.reshape(x, (-1, *node.shape))
        regularizers = self.rate_regularizers if training else []
        nodes = self.needed_nodes(probes, [r.node for r in regularizers])
        nodes = [n for n in nodes if not isinstance(n, InputNode)]
        self.evaluate_nodes(nodes, values, {}, self.context(training=training))
        for regularizer in regularizers:
            self.add_loss(regularizer.loss(values[regularizer.node.name]))
        return {
            p.name: ops.reshape(values[p.target.name], (*batch_time, p.size_in))
            for p in probes
        }

    def call(self, inputs, training=None):
        """Used by Keras's ``fit`` and ``evaluate``: rates of the trained probes.

        With the ``spike_aware_steps`` setting, training runs the spiking
        neurons for that many steps and returns each probe's mean over them.
        """
        probes = self.trained_probes or self.probes
        steps = self.settings["spike_aware_steps"]
        if training and steps:
            return self.spike_aware_rates(inputs, probes, steps)
        return self.compute_rates(inputs, probes, training=bool(training))

    def spike_aware_rates(self, inputs: dict, probes, n_steps: int) -> dict:
        """Mean over ``n_steps`` spiking steps, with rate gradients backward."""
        from snnify import engine  # engine imports this module

        constant, sequence = {}, {}
        for node in self.input_nodes:
            x = ops.cast(inputs[node.name], "float32")
            x = ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], *node.shape))
            if x.shape[1] == 1:
                constant[node.name] = x[:, 0]
            else:
                sequence[node.name] = x
        batch = ops.shape(next(iter({**constant, **sequence}.values())))[0]
        rng = np.random.default_rng(0)
        state = {}
        for node in self.needed_nodes(probes):
            if node.stateful:
                state[node.name] = {
                    k: ops.zeros((batch, *node.shape)) + v
                    for k, v in node.initial_state(rng).items()
                }
        histories, _ = engine.simulate(
            self,
            probes,
            n_steps,
            self.dt,
            constant,
            sequence,
            {"nodes": state, "probes": {}},
            training=True,
        )
        return {
            p.name: ops.mean(h, axis=1, keepdims=True)
            for p, h in zip(probes, histories)
        }


def configure_settings(**settings):
    """Change settings of the network of the enclosing ``with`` block.

    Settings:
        stateful: carry neuron and synapse state between ``predict`` calls
            (default False: every call starts from the initial state).
        lif_smoothing: sigma of the SoftLIF rate used to train spiking LIF
            neurons (default 0.01; None trains with the exact LIF rate).
        spike_aware_steps: if set, training runs the spiking neurons forward
            for this many steps and uses rate gradients backward.

    Example:
        >>> import keras, snnify
        >>> inp = keras.Input((2,))
        >>> net = snnify.Converter(keras.Model(inp, keras.layers.Dense(1)(inp))).net
        >>> with net:
        ...     snnify.configure_settings(stateful=True)
        >>> net.settings["stateful"]
        True
    """
    if not _ACTIVE_NETWORKS:
        raise RuntimeError(
            "configure_settings must be called inside `with converter.net:`."
        )
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(
            f"Unknown setting(s) {sorted(unknown)}; the settings are "
            f"{sorted(DEFAULT_SETTINGS)}. Received: {settings}"
        )
    steps = settings.get("spike_aware_steps")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(
            f"spike_aware_steps must be None or an integer >= 1. Received: {steps!r}"
        )
    _ACTIVE_NETWORKS[-1].settings.update(settings)
