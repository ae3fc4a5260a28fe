"""The spiking network as a ``keras.Model``, and its settings.

A :class:`Network` holds the nodes and probes of :mod:`snnify.graph`. Keras's
``fit`` and ``evaluate`` call it like any model: it then computes the rates of
its trained probes with every neuron's rate function (time folded into the
batch), or, with the ``spike_aware_steps`` setting, runs its spiking neurons
for that many steps with rate gradients backward. The
:class:`~snnify.Converter` builds it; a :class:`~snnify.Simulator` runs it.

Example:
    >>> import keras, snnify
    >>> inp = keras.Input((2,))
    >>> net = snnify.Converter(keras.Model(inp, keras.layers.Dense(1)(inp))).net
    >>> with net:
    ...     snnify.configure_settings(stateful=True)
    >>> net.settings.stateful
    True
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from snnify import engine
from snnify.config import Configurable, serializable
from snnify.graph import (
    InputNode,
    LayerNode,
    Node,
    StepContext,
    current_network,
    enter_network,
    evaluate_nodes,
    exit_network,
    needed_nodes,
)


@serializable
class Settings(Configurable):
    """Settings of a network, changed with :func:`configure_settings`.

    Args:
        stateful: carry neuron and synapse state from one ``predict`` call to
            the next (default False: every call starts from the initial state).
        lif_smoothing: sigma of the SoftLIF rate used to train spiking LIF
            neurons (None: the exact LIF rate).
        spike_aware_steps: if set, training runs the spiking neurons forward
            for this many steps and uses rate gradients backward.
    """

    def __init__(self, stateful=False, lif_smoothing=0.01, spike_aware_steps=None):
        if spike_aware_steps is not None and (
            isinstance(spike_aware_steps, bool)
            or not isinstance(spike_aware_steps, int)
            or spike_aware_steps < 1
        ):
            raise ValueError(
                "spike_aware_steps must be None or an integer >= 1. "
                f"Received: spike_aware_steps={spike_aware_steps!r}"
            )
        if lif_smoothing is not None and not lif_smoothing > 0:
            raise ValueError(
                "lif_smoothing must be None or positive. "
                f"Received: lif_smoothing={lif_smoothing!r}"
            )
        self.stateful = bool(stateful)
        self.lif_smoothing = None if lif_smoothing is None else float(lif_smoothing)
        self.spike_aware_steps = spike_aware_steps

    def get_config(self) -> dict:
        return {
            "stateful": self.stateful,
            "lif_smoothing": self.lif_smoothing,
            "spike_aware_steps": self.spike_aware_steps,
        }


class Network(keras.Model):
    """A spiking network as a ``keras.Model``.

    Use it as a context manager to add probes and settings.

    Attributes:
        nodes: every node, parents before children.
        input_nodes: the nodes the simulator feeds.
        probes: the probes, the converter's outputs first.
        settings: the :class:`Settings`.
        trained_probes: the probes that ``fit`` trains (set by ``compile``).
        keras_layers: the Keras layers that the nodes apply, once each.
        rate_regularizers: losses added to training by
            :func:`snnify.regularize_firing_rates`.
    """

    def __init__(self, name: str = "snnify_network"):
        super().__init__(name=name)
        self.nodes: list[Node] = []
        self.input_nodes: list[InputNode] = []
        self.probes: list = []
        self.settings = Settings()
        self.trained_probes: list = []
        self.rate_regularizers: list = []
        self.training_run = (0.001, 0)  # (dt, seed) of spike-aware training
        # the Keras layers the nodes apply: a list attribute, so that Keras
        # tracks their weights as the network's
        self.keras_layers: list = []
        self._names: set[str] = set()
        self.built = True

    # --- construction -----------------------------------------------------
    def reserve_name(self, name: str) -> str:
        """``name``, or ``name_2``, ``name_3``... if taken; reserved for the caller."""
        candidate, i = name, 1
        while candidate in self._names:
            i += 1
            candidate = f"{name}_{i}"
        self._names.add(candidate)
        return candidate

    def add_node(self, node: Node) -> Node:
        node.name = self.reserve_name(node.name)
        node.network = self
        self.nodes.append(node)
        if isinstance(node, InputNode):
            self.input_nodes.append(node)
        if isinstance(node, LayerNode) and all(
            node.layer is not layer for layer in self.keras_layers
        ):
            self.keras_layers.append(node.layer)
        return node

    @property
    def converted_layers(self) -> list:
        """``[(source name, layer)]``: every Keras layer the network applies, once."""
        layers = {}
        for node in self.nodes:
            if isinstance(node, LayerNode):
                layers.setdefault(id(node.layer), (node.source_name, node.layer))
        return list(layers.values())

    def __enter__(self):
        enter_network(self)
        return self

    def __exit__(self, *exc):
        exit_network(self)

    @contextlib.contextmanager
    def training_options(self, dt: float, seed: int):
        """Spike-aware training inside the block uses this ``dt`` and ``seed``."""
        previous, self.training_run = self.training_run, (dt, seed)
        try:
            yield
        finally:
            self.training_run = previous

    # --- evaluation -------------------------------------------------------
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
        nodes = needed_nodes(probes, [r.node for r in regularizers])
        nodes = [n for n in nodes if not isinstance(n, InputNode)]
        context = StepContext(
            training=training, lif_smoothing=self.settings.lif_smoothing
        )
        evaluate_nodes(nodes, values, {}, context)
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
        steps = self.settings.spike_aware_steps
        if training and steps:
            return self.spike_aware_rates(inputs, probes, steps)
        return self.compute_rates(inputs, probes, training=bool(training))

    def spike_aware_rates(self, inputs: dict, probes, n_steps: int) -> dict:
        """Mean over ``n_steps`` spiking steps, with rate gradients backward.

        The neurons start from the state ``Simulator.predict`` starts from
        (:func:`snnify.engine.initial_state` with the simulator's seed).
        """
        constant, sequence = {}, {}
        for node in self.input_nodes:
            x = ops.cast(inputs[node.name], "float32")
            x = ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], *node.shape))
            if x.shape[1] == 1:
                constant[node.name] = x[:, 0]
            else:
                sequence[node.name] = x
        batch = ops.shape(next(iter({**constant, **sequence}.values())))[0]
        dt, seed = self.training_run
        state = {
            name: {
                k: ops.zeros((batch, *v.shape[1:])) + ops.convert_to_tensor(v[0])
                for k, v in node_state.items()
            }
            for name, node_state in engine.initial_state(
                needed_nodes(probes), 1, seed
            ).items()
        }
        context = StepContext(
            dt=dt,
            spiking=True,
            training=True,
            lif_smoothing=self.settings.lif_smoothing,
        )
        histories, _ = engine.simulate(
            probes,
            n_steps,
            context,
            constant,
            sequence,
            {"nodes": state, "probes": {}},
        )
        return {
            p.name: ops.mean(h, axis=1, keepdims=True)
            for p, h in zip(probes, histories)
        }


def configure_settings(**settings):
    """Change :class:`Settings` of the network of the enclosing ``with`` block.

    Example:
        >>> import keras, snnify
        >>> inp = keras.Input((2,))
        >>> net = snnify.Converter(keras.Model(inp, keras.layers.Dense(1)(inp))).net
        >>> with net:
        ...     snnify.configure_settings(spike_aware_steps=8)
        >>> net.settings
        Settings(stateful=False, lif_smoothing=0.01, spike_aware_steps=8)
    """
    network = current_network("configure_settings")
    known = network.settings.get_config()
    unknown = set(settings) - set(known)
    if unknown:
        raise ValueError(
            f"Unknown setting(s) {sorted(unknown)}; the settings are "
            f"{sorted(known)}. Received: {settings}"
        )
    network.settings = Settings.from_config({**known, **settings})
