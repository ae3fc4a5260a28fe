"""The spiking network as a ``keras.Model``, and its settings.

A :class:`Network` holds the nodes and probes of :mod:`snnify.graph`. Called
as a Keras model it computes the rates of its probes with every neuron's rate
function (time folded into the batch); :meth:`Network.run_spiking` runs its
spiking neurons as a differentiable function. Each
:class:`~snnify.Simulator` trains and evaluates it through a Keras model of
its own that uses both. The :class:`~snnify.Converter` builds the network.

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

import os

import keras
from keras import ops

from snnify import engine
from snnify.config import Configurable, serializable
from snnify.graph import (
    InputNode,
    LayerNode,
    Node,
    Probe,
    StepContext,
    current_network,
    enter_network,
    evaluate_nodes,
    exit_network,
    needed_nodes,
)
from snnify.validation import positive_integer

# What Network.save writes with: snnify.export.saving, which sits above this
# module, registers save_network(converter, path, n_steps, dt) as "keras".
SAVE_FUNCTIONS: dict = {}
_RUN_IN_SIMULATOR = (
    "A Network has no {method} of its own: simulate it with snnify.Simulator, "
    "`with snnify.Simulator(converter.net) as sim: sim.{method}(...)`, whose "
    "{method} takes inputs with a time axis, (batch, steps, ...)."
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
        torch_compile: on the PyTorch backend, ``predict`` compiles the
            simulation step with ``torch.compile`` (the first call of each
            network and shape takes seconds longer, 2.4 s for the tutorial's
            network; later calls run 3-4x faster; benchmarks/RESULTS.md,
            issue 15). PyTorch keeps 8 compiled versions of a function by
            default; snnify raises ``torch._dynamo.config.recompile_limit``
            to 64 so that many networks in one process stay compiled.
        closed_form: spiking neurons of constant current (the first layer of
            an image classifier) compute their spikes from the step number
            (:meth:`~snnify.neurons.NeuronType.held_current_step`), 6-14 %
            faster where the step is compiled (JAX, TensorFlow, PyTorch with
            ``torch_compile``; eager PyTorch steps them as any other); their
            float32 spikes may differ from step-by-step sums
            where a voltage lies within rounding of the threshold. False: step
            by step, as NengoDL and earlier snnify, bit for bit.
    """

    def __init__(
        self,
        stateful=False,
        lif_smoothing=0.01,
        spike_aware_steps=None,
        torch_compile=False,
        closed_form=True,
    ):
        if spike_aware_steps is not None:
            spike_aware_steps = positive_integer(
                spike_aware_steps, "spike_aware_steps", " or None"
            )
        if lif_smoothing is not None and not lif_smoothing > 0:
            raise ValueError(
                "lif_smoothing must be None or positive. "
                f"Received: lif_smoothing={lif_smoothing!r}"
            )
        self.stateful = bool(stateful)
        self.lif_smoothing = None if lif_smoothing is None else float(lif_smoothing)
        self.spike_aware_steps = spike_aware_steps
        self.torch_compile = bool(torch_compile)
        self.closed_form = bool(closed_form)

    def get_config(self) -> dict:
        return {
            "stateful": self.stateful,
            "lif_smoothing": self.lif_smoothing,
            "spike_aware_steps": self.spike_aware_steps,
            "torch_compile": self.torch_compile,
            "closed_form": self.closed_form,
        }


class Network(keras.Model):
    """A spiking network as a ``keras.Model``.

    Use it as a context manager to add probes and settings.

    Attributes:
        nodes: every node, parents before children.
        input_nodes: the nodes the simulator feeds.
        probes: the probes, the converter's outputs first.
        settings: the :class:`Settings`.
        keras_layers: the Keras layers that the nodes apply, once each.
        rate_regularizers: losses added to training by
            :func:`snnify.regularize_firing_rates`.
        converter: the :class:`~snnify.Converter` that built it (None for a
            network built otherwise), which :meth:`save` saves.
    """

    def __init__(self, name: str = "snnify_network"):
        super().__init__(name=name)
        self.nodes: list[Node] = []
        self.input_nodes: list[InputNode] = []
        self.probes: list = []
        self.settings = Settings()
        self.rate_regularizers: list = []
        # the Keras layers the nodes apply: a list attribute, so that Keras
        # tracks their weights as the network's
        self.keras_layers: list = []
        self.converter = None
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

    def save(self, filepath, overwrite=True, n_steps=None, dt=0.001):
        """Save the network whole, as :func:`snnify.save_network` does.

        This is what Keras's ``model.save`` and ``ModelCheckpoint`` call; the
        file loads with :func:`snnify.load_network`. Keras's own form of a
        model would not load: a network is not a Keras model of layers.
        """
        if self.converter is None:
            raise ValueError(
                f"Network {self.name!r} was not built by a Converter, so it cannot "
                "be saved whole. Save its weights instead: sim.save_params(path), "
                "or ModelCheckpoint(path ending in '.weights.h5', "
                "save_weights_only=True)."
            )
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(
                f"{os.fspath(filepath)!r} exists and overwrite=False; it is unchanged."
            )
        SAVE_FUNCTIONS["keras"](self.converter, filepath, n_steps=n_steps, dt=dt)

    def get_layer(self, name=None, index=None):
        """A Keras layer of the network, as ``keras.Model.get_layer``.

        ``name`` may also be the name of the model's layer it was converted
        from: ``converter.net.get_layer("conv0").trainable = False`` freezes
        the converted ``conv0`` for training.
        """
        for source_name, layer in self.converted_layers:
            if name is not None and name == source_name:
                return layer
        return super().get_layer(name, index)

    # --- evaluation -------------------------------------------------------
    def compute_rates(self, inputs: dict, probes, training=False) -> dict:
        """Rates of ``probes`` for inputs ``{input name: (batch, t, ...)}``.

        Time is folded into the batch and every neuron uses its rate function;
        returns ``{probe name: (batch, t, probe.size_in)}``.
        """
        values = {}
        for node in self.input_nodes:
            x = input_value(node, inputs[node.name])
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

    def predict(self, *args, **kwargs):
        """Refused: a network runs in a :class:`~snnify.Simulator`."""
        raise TypeError(_RUN_IN_SIMULATOR.format(method="predict"))

    def fit(self, *args, **kwargs):
        """Refused: a network trains in a :class:`~snnify.Simulator`."""
        raise TypeError(_RUN_IN_SIMULATOR.format(method="fit"))

    def evaluate(self, *args, **kwargs):
        """Refused: a network is evaluated in a :class:`~snnify.Simulator`."""
        raise TypeError(_RUN_IN_SIMULATOR.format(method="evaluate"))

    def call(self, inputs, training=None):
        """The rates of every probe (see :meth:`compute_rates`)."""
        return self.compute_rates(inputs, self.probes, training=bool(training))

    def run_spiking(
        self, inputs: dict, probes, n_steps=None, dt=0.001, seed=0, training=False
    ) -> dict:
        """What ``Simulator.predict`` records, as a differentiable function.

        Runs the spiking neurons for ``n_steps`` steps (default: the inputs'
        steps) from the state ``predict`` starts from
        (:func:`snnify.engine.initial_state` with ``seed``). With
        ``training=True`` gradients flow through the rate functions.

        Returns:
            ``{probe name: (batch, n_steps, probe.size_in)}``.
        """
        constant, sequence = {}, {}
        for node in self.input_nodes:
            x = input_value(node, inputs[node.name])
            x = ops.reshape(x, (ops.shape(x)[0], x.shape[1], *node.shape))
            if x.shape[1] == 1:
                constant[node.name] = x[:, 0]
            else:
                sequence[node.name] = x
                n_steps = n_steps or x.shape[1]
        n_steps = n_steps or 1
        if any(x.shape[1] != n_steps for x in sequence.values()):
            raise ValueError(
                f"Inputs must have 1 step (held for all steps) or n_steps={n_steps} "
                f"steps. Received steps: {[x.shape[1] for x in sequence.values()]}"
            )
        batch = ops.shape(next(iter({**constant, **sequence}.values())))[0]
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
            training=training,
            lif_smoothing=self.settings.lif_smoothing,
            closed_form=self.settings.closed_form,
        )
        histories, _ = engine.simulate(
            [_recording(p) for p in probes],
            n_steps,
            context,
            constant,
            sequence,
            {"nodes": state, "probes": {}},
        )
        return {p.name: h for p, h in zip(probes, histories)}


def input_value(node: InputNode, x):
    """``x`` as float32, after checking its shape: ``(batch, steps, ...)``."""
    shape = tuple(x.shape)
    if len(shape) < 3 or not (
        _matches(shape[2:], node.shape) or _matches(shape[2:], (node.size,))
    ):
        raise ValueError(
            f"Input {node.name!r} expects arrays of shape (batch, steps, "
            f"{node.size}) or (batch, steps, {', '.join(map(str, node.shape))}). "
            f"Received: shape={shape}"
        )
    return ops.cast(x, "float32")


def _matches(shape, expected) -> bool:
    """Whether ``shape`` is ``expected``, where unknown (None) dimensions match."""
    return len(shape) == len(expected) and all(
        a is None or a == b for a, b in zip(shape, expected)
    )


def _recording(probe):
    """``probe``, or a probe of its target that records every step."""
    if probe.keep == "all":
        return probe
    return Probe(probe, add_to_container=False)


# what NengoDL code does instead of NengoDL's settings that snnify lacks
_SIMULATION_PLAN = (
    "snnify compiles one scan over steps and plans it itself; remove the setting."
)
NENGO_DL_SETTINGS = {
    "trainable": "snnify freezes layers the Keras way: set the `trainable` "
    'attribute of the converted layer, e.g. converter.net.get_layer("conv0")'
    ".trainable = False (the name of the model's layer).",
    "keep_history": 'probes choose what they keep: snnify.Probe(target, keep="last") '
    "records the last step only (the converter's outputs: "
    'converter.outputs[out].keep = "last").',
    "inference_only": "pass it to the Converter, "
    "snnify.Converter(model, inference_only=True).",
    "dtype": "layers compute in their Keras dtype policy (float32 unless "
    "keras.config.set_dtype_policy says otherwise).",
    "learning_phase": "sim.evaluate(..., spiking=False) evaluates the rates "
    "that training uses.",
    "planner": _SIMULATION_PLAN,
    "sorter": _SIMULATION_PLAN,
    "simplifications": _SIMULATION_PLAN,
    "use_loop": _SIMULATION_PLAN,
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
        Settings(stateful=False, lif_smoothing=0.01, spike_aware_steps=8, torch_compile=False, closed_form=True)
    """
    network = current_network("configure_settings")
    known = network.settings.get_config()
    unknown = set(settings) - set(known)
    from_nengo_dl = sorted(unknown & set(NENGO_DL_SETTINGS))
    if from_nengo_dl:
        name = from_nengo_dl[0]
        raise ValueError(
            f"NengoDL's setting {name!r} has no snnify setting: "
            f"{NENGO_DL_SETTINGS[name]} Received: {settings}"
        )
    if unknown:
        raise ValueError(
            f"Unknown setting(s) {sorted(unknown)}; the settings are "
            f"{sorted(known)}. Received: {settings}"
        )
    network.settings = Settings.from_config({**known, **settings})
