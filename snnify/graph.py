"""The graph of a spiking network: nodes, probes, and one step of evaluation.

Every node computes one value per example and per time step: an input, a
Keras layer without its activation, neurons (the activation), a synapse or an
exact non-linear function. A :class:`Probe` marks a node whose value the
simulator records. :func:`evaluate_nodes` computes a list of nodes for one step
(or, in rate mode, for all steps at once); the engine and the network's rate
computation both use it.

Example:
    >>> import keras, snnify
    >>> inp = keras.Input((4,), name="pixels")
    >>> dense = keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    >>> converter = snnify.Converter(keras.Model(inp, dense))
    >>> with converter.net:
    ...     probe = snnify.Probe(converter.layers[dense])
    >>> probe.size_in
    3
    >>> [node.name for node in needed_nodes([probe])]
    ['pixels', 'hidden', 'hidden.neurons']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from snnify.neurons import NeuronType
from snnify.synapses import Lowpass, as_synapse

# the networks of the enclosing `with network:` blocks, innermost last
_active_networks: list = []


def enter_network(network) -> None:
    """Make ``network`` the one that probes and settings are added to."""
    _active_networks.append(network)


def exit_network(network) -> None:
    _active_networks.remove(network)


def current_network(caller: str):
    """The network of the innermost ``with network:`` block.

    Raises:
        RuntimeError: outside such a block, naming ``caller``.
    """
    if not _active_networks:
        raise RuntimeError(f"{caller} must be called inside `with converter.net:`.")
    return _active_networks[-1]


@dataclass(frozen=True)
class StepContext:
    """How nodes compute: time step, spiking or rates, training or not.

    Attributes:
        dt: the time step (s).
        spiking: spiking neurons step (else every neuron gives its rate).
        training: use the training rates (SoftLIF) and trainable layers.
        lif_smoothing: sigma of the SoftLIF rate.
        closed_form: spiking neurons of constant current may run in closed
            form (:func:`snnify.engine.held_current_neurons`).
    """

    dt: float = 0.001
    spiking: bool = False
    training: bool = False
    lif_smoothing: float | None = None
    closed_form: bool = True


class Node:
    """One value of the network, computed for every example and time step.

    Attributes:
        name: unique name in the network.
        shape: shape of the value for one example (no batch, no time).
        parents: the nodes whose values this one reads.
        network: the network the node belongs to (None for a node that only
            a tool uses for one run).
    """

    stateful = False
    # an affine function of its inputs at every step, f(x) = A x + b, so the
    # mean of its outputs over steps is f of the means of its inputs
    affine = False

    def __init__(self, name: str, shape, parents=()):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.parents = list(parents)
        self.network = None

    @property
    def size(self) -> int:
        """Number of values (neurons) for one example."""
        return math.prod(self.shape)

    def initial_state(self, rng: np.random.Generator) -> dict | None:
        return None

    def compute(self, inputs: list, state, context: StepContext):
        """Return ``(output, new_state)`` for one step of a batch."""
        raise NotImplementedError

    def __getitem__(self, key) -> SliceNode:
        """A view of some of the node's values (neurons), for a :class:`Probe`.

        ``key`` indexes the values in Keras's flattening order of ``shape``:
        an integer, a slice, or a 1-D sequence of integers or booleans, as in
        ``converter.layers[conv0][indices]``.

        Example:
            >>> import keras, snnify
            >>> inp = keras.Input((4,))
            >>> hidden = keras.layers.Dense(8, activation="relu", name="h")(inp)
            >>> converter = snnify.Converter(keras.Model(inp, hidden))
            >>> with converter.net:
            ...     probe = snnify.Probe(converter.layers[hidden][[0, 2, 4]])
            >>> probe.size_in
            3
        """
        return SliceNode(self, key)

    # indexing must not make a node iterable (or a NumPy sequence)
    __iter__ = None

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} shape={self.shape}>"


class InputNode(Node):
    """An input of the network; its value is given to the simulator."""

    def compute(self, inputs, state, context):
        raise RuntimeError(f"Input {self.name!r} has no value.")


# Keras layers that are affine in their inputs once their activation is linear
# (batch normalisation: in inference mode, as snnify applies it)
AFFINE_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Average,
    keras.layers.Concatenate,
    keras.layers.BatchNormalization,
    keras.layers.Rescaling,
    keras.layers.Identity,
    keras.layers.Dropout,
)


class LayerNode(Node):
    """A Keras layer applied as it is (its activation removed by the rule).

    Outputs of layers that compute in 16-bit floats (a ``"mixed_float16"`` or
    ``"bfloat16"`` dtype policy) become float32, the dtype of every state and
    probe of the network.

    Attributes:
        layer: the Keras layer that computes the node (a copy of the model's).
        source_name: the name of the model's layer it was converted from.
        call: ``call(inputs, training) -> output``, the layer applied with
            the arguments of the model's call.
        frozen: always call the layer in inference mode.
        cost: what :mod:`snnify.stats` counts for the layer (see
            :class:`snnify.rules.Cost`), or None if unknown.
    """

    def __init__(
        self, name, shape, parents, layer, call, source_name, frozen=False, cost=None
    ):
        super().__init__(name, shape, parents)
        self.layer = layer
        self.call = call
        self.source_name = source_name
        self.frozen = frozen
        self.cost = cost
        self._half = layer.compute_dtype in ("float16", "bfloat16")

    @property
    def affine(self) -> bool:
        activation = getattr(self.layer, "activation", None)
        return isinstance(self.layer, AFFINE_LAYERS) and activation in (
            None,
            keras.activations.linear,
        )

    def compute(self, inputs, state, context):
        return self.apply(inputs, bool(context.training) and not self.frozen), state

    def apply(self, inputs, training=False):
        """The layer's output for ``inputs``, in float32."""
        output = self.call(inputs, training)
        return ops.cast(output, "float32") if self._half else output


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
        self.scale = scale

    @property
    def stateful(self):
        return self.neuron_type.spiking

    def initial_state(self, rng):
        if not self.stateful:
            return None
        return self.neuron_type.initial_state(self.shape, rng)

    @property
    def scale(self):
        """``scale_firing_rates`` of these neurons: a float, or per channel."""
        return self._scale

    @scale.setter
    def scale(self, scale):
        # decided here, not in the step: compilers trace plain attributes only
        # (a NumPy call in the step breaks torch.compile's graph)
        per_channel = np.ndim(scale) > 0
        self._scale = np.float32(scale) if per_channel else float(scale)
        # what the step multiplies by (None: nothing); per channel a backend
        # tensor: a PyTorch tensor times a NumPy array can fall back to NumPy,
        # which refuses tensors that require gradients and breaks
        # torch.compile's graph
        if per_channel:
            self._factor = ops.convert_to_tensor(self._scale)
        else:
            self._factor = None if self._scale == 1.0 else self._scale

    def _current(self, inputs):
        return inputs[0] if self._factor is None else inputs[0] * self._factor

    def _output(self, output):
        return output if self._factor is None else output / self._factor

    def compute(self, inputs, state, context):
        current = self._current(inputs)
        neuron = self.neuron_type
        if self.stateful and context.spiking:
            output, state = neuron.step(current, state, context.dt)
            if context.training:  # spiking forward, rate gradient backward
                rate = neuron.training_rate(current, context.lif_smoothing)
                output = rate + ops.stop_gradient(output - rate)
        elif context.training:
            output = neuron.training_rate(current, context.lif_smoothing)
        else:
            output = neuron.rate(current)
        return self._output(output), state

    def compute_held(self, inputs, state, steps, context):
        """``compute`` at the ``steps``-th step of an input held since ``state``.

        Returns the output of that step and the state after it, in closed form
        (see :meth:`~snnify.neurons.NeuronType.held_current_step`).
        """
        output, state = self.neuron_type.held_current_step(
            self._current(inputs), state, steps, context.dt
        )
        return self._output(output), state


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


class SliceNode(Node):
    """Some of the values of another node (``node[indices]``).

    A slice is a view: it joins the network only when a :class:`Probe`
    records it.
    """

    def __init__(self, node: Node, key):
        if isinstance(key, tuple):
            raise IndexError(
                "A node is indexed by the position of its values in the flattened "
                "shape, with one integer, slice or 1-D array of integers (e.g. "
                f"node[[0, 5, 9]]). Received: key={key!r}"
            )
        try:
            indices = np.arange(node.size)[key]
        except IndexError as error:
            raise IndexError(
                f"Cannot index {node.name!r} (of {node.size} values) with "
                f"{key!r}: {error}. Received: key={key!r}"
            ) from None
        indices = np.atleast_1d(indices)
        if indices.ndim != 1 or indices.size == 0:
            raise IndexError(
                f"A slice of {node.name!r} must select a 1-D, non-empty set of "
                f"values. Received: key={key!r}"
            )
        if isinstance(node, SliceNode):  # a slice of a slice: index the source
            node, indices = node.parents[0], node.indices[indices]
        super().__init__(f"{node.name}.slice", (indices.size,), [node])
        self.indices = indices.astype("int32")
        self.affine = True

    def compute(self, inputs, state, context):
        parent = self.parents[0]
        flat = ops.reshape(inputs[0], (-1, parent.size))
        return ops.take(flat, self.indices, axis=1), state


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
            (only the value at the last step: ``(batch, 1, size)``),
            ``"stats"`` (running sum and max per neuron, see
            :class:`~snnify.engine.ProbeStats`) or ``"sum"`` (the running sum
            only: a ``ProbeStats`` without ``max``, to decode as a mean or a
            count). With ``"last"``, ``"stats"`` and ``"sum"`` memory does
            not grow with the number of steps. With ``"sum"``, the affine
            layers after the last spiking layer (e.g. the output ``Dense``)
            run once per chunk of steps on the mean of their inputs instead
            of at every step: the same sum up to float rounding, faster.
        sample_every: with ``keep="all"``, record every this many seconds
            (a multiple of the simulator's ``dt``; default: every step).
        add_to_container: add the probe to the network (default). A probe
            that is not added is only recorded where it is given explicitly,
            as in ``sim.predict(x, probes=[probe])``.
    """

    KEEP = ("all", "last", "stats", "sum")

    def __init__(
        self,
        target,
        synapse=None,
        label=None,
        keep="all",
        sample_every=None,
        add_to_container=True,
    ):
        if isinstance(target, Probe):
            target = target.target
        if not isinstance(target, Node):
            raise TypeError(
                "A Probe target must be a node of a converted network, such as "
                f"converter.layers[layer]. Received: target={target!r}"
            )
        # every check before anything is added to the network
        self.keep = keep
        self.sample_every = sample_every
        synapse = as_synapse(synapse)
        source = target.parents[0] if isinstance(target, SliceNode) else target
        network = None
        if add_to_container:
            network = current_network("Probe") if _active_networks else source.network
            if source.network is not network:
                raise ValueError(
                    f"Probe target {target.name!r} belongs to another network than "
                    "the one of the enclosing `with` block."
                )
        name = label or f"probe_{target.name}"
        self.label = network.reserve_name(name) if network is not None else name
        if network is not None and target.network is None:  # a slice joins
            target = network.add_node(target)
        if synapse is not None:
            filtered = SynapseNode(
                f"{self.label}.synapse", target.shape, target, synapse
            )
            target = network.add_node(filtered) if network is not None else filtered
        self.target = target
        self.synapse = synapse
        self.is_output = False  # set by the Converter for its outputs
        if network is not None:
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
                "sample_every must be None or positive (seconds). "
                f"Received: sample_every={seconds!r}"
            )
        self._sample_every = seconds

    def steps_between_samples(self, dt: float) -> int:
        """``sample_every`` in steps of ``dt``."""
        return steps_between_samples(self.sample_every, dt, f"Probe {self.label!r}: ")

    @property
    def size_in(self) -> int:
        """Number of values recorded per step (the target's neurons)."""
        return self.target.size

    @property
    def name(self) -> str:
        return self.label

    def __repr__(self):
        return f"<Probe {self.label!r} size_in={self.size_in}>"


def steps_between_samples(sample_every: float | None, dt: float, what="") -> int:
    """``sample_every`` (s, None for every step) in steps of ``dt``."""
    if sample_every is None:
        return 1
    steps = round(sample_every / dt)
    if steps < 1 or abs(steps * dt - sample_every) > 1e-9:
        raise ValueError(
            f"{what}sample_every={sample_every} is not a multiple of dt={dt}."
        )
    return steps


def needed_nodes(probes, extra_nodes=()) -> list[Node]:
    """The nodes that ``probes`` (and ``extra_nodes``) depend on, parents first."""
    order, seen = [], set()
    stack = [(node, False) for node in [p.target for p in probes] + list(extra_nodes)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in reversed(node.parents))
    return order


def evaluate_nodes(nodes, values: dict, states: dict, context: StepContext) -> dict:
    """Compute ``nodes`` in order; ``values`` (by name) receives their outputs.

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
