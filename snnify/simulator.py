"""Simulator: runs a spiking network over time, trains it, saves its parameters.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((4,))
    >>> out = keras.layers.Dense(2, activation="relu")(inp)
    >>> converter = snnify.Converter(
    ...     keras.Model(inp, out),
    ...     swap_activations={"relu": snnify.SpikingRectifiedLinear()},
    ... )
    >>> with snnify.Simulator(converter.net, progress_bar=False) as sim:
    ...     data = sim.predict(np.ones((3, 1, 4)), n_steps=20)
    >>> data[converter.outputs[out]].shape
    (3, 20, 2)
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping

import keras
import numpy as np
from keras import ops
from keras.tree import map_structure as tree_map

from snnify import backend, engine, params
from snnify.backend import compile_function
from snnify.graph import Probe, StepContext, needed_nodes, steps_between_samples
from snnify.inputs import (
    BatchRenamer,
    check_steps,
    keras_pipeline,
    numpy_batches,
    pipeline_kind,
    resolve_steps,
    standardize_inputs,
)
from snnify.network import Network
from snnify.training import StopOnNonFiniteLoss
from snnify.validation import (
    check_history_memory,
    check_seed,
    check_targets,
    positive_number,
)

# most examples simulated at once (per device, under a keras.distribution)
MAX_BATCH = 100


class SimulatorModel(keras.Model):
    """The ``keras.Model`` that one :class:`~snnify.Simulator` compiles and fits.

    Each simulator has its own: optimizer, losses and metrics, the probes it
    trains, ``dt`` and ``seed``. The weights are the network's, shared by
    every simulator of it.

    ``fit`` computes rates (time folded into the batch), or with the
    ``spike_aware_steps`` setting the mean of a spiking run (rate gradients
    backward). ``evaluate`` runs the spiking network as ``Simulator.predict``
    does, or computes rates if ``spiking`` is False.

    Attributes:
        network: the :class:`Network`.
        dt, seed: of the simulator's spiking runs.
        spiking: whether ``evaluate`` runs the spiking network.
        n_steps: steps of an evaluation whose inputs have one step.
    """

    def __init__(self, network: Network, dt: float, seed: int):
        super().__init__(name=f"{network.name}_model")
        self.network = network
        self.trained_probes: list = []
        self.dt = dt
        self.seed = seed
        self.spiking = True
        self.n_steps = None
        self._function_keys = {}
        self.built = True

    def call(self, inputs, training=None):
        net = self.network
        probes = self.trained_probes or net.probes
        steps = net.settings.spike_aware_steps
        if training and steps:
            outputs = net.run_spiking(
                inputs, probes, steps, self.dt, self.seed, training=True
            )
            return {k: ops.mean(v, axis=1, keepdims=True) for k, v in outputs.items()}
        if training or not self.spiking:
            return net.compute_rates(inputs, probes, training=bool(training))
        return net.run_spiking(inputs, probes, self.n_steps, self.dt, self.seed)

    def compile_probes(self, loss=None, metrics=None, loss_weights=None, **kwargs):
        """``compile``, with losses, metrics and weights keyed by probes."""
        net = self.network
        names = BatchRenamer(net, net.probes)
        dicts = [d for d in (loss, metrics, loss_weights) if isinstance(d, Mapping)]
        for d in dicts:
            check_own_probes(net, d, "compile's loss, metrics or loss_weights")
        keyed = {names.probe_name(k) for d in dicts for k in d}
        if dicts:
            trained = [p for p in net.probes if p.name in keyed]
        else:
            trained = [p for p in net.probes if p.is_output] or net.probes
        self.trained_probes = trained

        def by_name(value):
            if isinstance(value, Mapping):
                return {names.probe_name(k): v for k, v in value.items()}
            if value is None or len(trained) == 1:
                return value
            return {p.name: value for p in trained}

        self.compile(
            loss=by_name(loss),
            metrics=by_name(metrics),
            loss_weights=by_name(loss_weights),
            **kwargs,
        )

    def keras_data(self, x, y, kwargs: dict, batch_size: int, n_steps=None):
        """``x``, ``y`` as Keras takes them: dicts keyed by names, or a pipeline.

        ``batch_size`` is the default for arrays (in ``kwargs``); arrays of
        targets are checked against the inputs (``n_steps``: of an evaluation).
        """
        if not self.compiled:
            raise RuntimeError("Call sim.compile(...) before sim.fit or sim.evaluate.")
        rename = BatchRenamer(self.network, self.trained_probes)
        if pipeline_kind(x) is not None:
            if y is not None:
                raise ValueError(
                    "With a data pipeline, give the targets in its batches, (x, y). "
                    f"Received: y of type {type(y).__name__}"
                )
            return keras_pipeline(x, rename), None
        kwargs.setdefault("batch_size", batch_size)
        x = {node.name: v for node, v in standardize_inputs(self.network, x).items()}
        if y is None:
            return x, None
        if isinstance(y, Mapping):
            check_own_probes(self.network, y, "y (the targets)")
        y = rename.targets_by_name(y)
        probes = {p.name: p for p in self.trained_probes}
        steps = {1, *(v.shape[1] for v in x.values()), n_steps or 1}
        batch = next(iter(x.values())).shape[0]
        return x, {
            name: check_targets(np.asarray(v), probes[name], batch, steps)
            for name, v in y.items()
        }

    def warn_one_step(self, x, n_steps) -> None:
        """Warn if evaluating arrays ``x`` runs a spiking network for one step."""
        if (
            not isinstance(x, dict)
            or (n_steps or max(v.shape[1] for v in x.values())) > 1
        ):
            return
        if any(node.stateful for node in needed_nodes(self.trained_probes)):
            warnings.warn(
                "Evaluating the spiking network for 1 step, which a network with "
                "spiking neurons or synapses cannot answer in. Give inputs with "
                "more steps or evaluate(..., n_steps=...), or evaluate the rates "
                "with spiking=False.",
                stacklevel=4,
            )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        y = _held(y, y_pred)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, _held(y, y_pred), y_pred, sample_weight)

    def _stale(self, kind: str) -> bool:
        """Whether the compiled ``kind`` function read other options than now.

        Keras compiles ``call`` once and reuses it: a change of the options
        it reads (``dt``, ``seed``, settings, steps, probes, regularisers)
        must compile it again.
        """
        key = (
            self.dt,
            self.seed,
            self.spiking,
            self.n_steps,
            tuple(p.name for p in self.trained_probes),
            tuple(sorted(self.network.settings.get_config().items())),
            tuple(id(r) for r in self.network.rate_regularizers),
        )
        stale = self._function_keys.get(kind, key) != key
        self._function_keys[kind] = key
        return stale

    def make_train_function(self, force=False):
        return super().make_train_function(force or self._stale("train"))

    def make_test_function(self, force=False):
        return super().make_test_function(force or self._stale("test"))


def check_own_probes(network, keys, what: str, by_target: bool = False) -> None:
    """Refuse probes of another network among ``keys`` (names are not checked).

    ``by_target``: a probe need not be added to the network (``add_to_container
    =False``), but what it records must be one of the network's nodes.
    """
    for key in keys:
        if by_target:
            node = key.target
            while node.network is None and node.parents:  # a probe's own filter
                node = node.parents[0]
            foreign = node.network is not network
        else:
            foreign = isinstance(key, Probe) and key not in network.probes
        if foreign:
            raise ValueError(
                f"{what}: {key!r} is a probe of another network. Use "
                "the probes of this simulator's network (converter.outputs[...] of "
                f"the converter whose .net it simulates). Received: key={key!r}"
            )


def _held(targets, outputs):
    """Targets of one step held for all the steps of the outputs."""
    if not isinstance(targets, dict) or not isinstance(outputs, dict):
        return targets
    held = dict(targets)
    for name, target in targets.items():
        steps = outputs[name].shape[1]
        if len(target.shape) > 2 and target.shape[1] == 1 and steps not in (1, None):
            held[name] = ops.repeat(target, steps, axis=1)
    return held


class Training:
    """``compile``, ``fit`` and ``evaluate`` of a :class:`Simulator`.

    As Keras's ``Model`` takes them from its ``Trainer``: through the
    simulator's own ``keras_model``, with data keyed by snnify's inputs and
    probes.
    """

    def compile(
        self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs
    ):
        """Configure training, as ``keras.Model.compile``.

        ``loss``, ``metrics`` and ``loss_weights`` are single values (for the
        network's outputs) or dicts keyed by probes (outputs or hidden layers).
        The probes named in them are the outputs that ``fit`` trains. The
        compiled state (optimizer, losses) is this simulator's own.
        """
        self._check_open()
        self.keras_model.compile_probes(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            loss_weights=loss_weights,
            **kwargs,
        )

    def _keras_data(self, x, y, kwargs: dict, n_steps=None):
        kwargs.setdefault("verbose", "auto" if self.progress_bar else 0)
        return self.keras_model.keras_data(
            x, y, kwargs, self.minibatch_size or 32, n_steps
        )

    def fit(self, x=None, y=None, validation_data=None, epochs=1, **kwargs):
        """Train the network, as ``keras.Model.fit`` (returns its History).

        ``x``: ``{converter.inputs[inp]: (n, steps, ...)}``; ``y``: ``{probe:
        (n, steps, ...)}`` (e.g. labels ``(n, 1, 1)``, target rates ``(n, 1,
        size)``); or ``x`` a data pipeline yielding ``(x, y)`` batches.
        Spiking neurons train through their rate functions; validation runs
        as :meth:`evaluate` does (spiking). If the loss becomes NaN or infinite,
        training stops and the weights go back to those it started from, with
        a warning (:class:`snnify.training.StopOnNonFiniteLoss`).
        """
        self._check_open()
        x, y = self._keras_data(x, y, kwargs)
        kwargs["callbacks"] = [
            *(kwargs.get("callbacks") or []),
            StopOnNonFiniteLoss(self.net.weights),
        ]
        if isinstance(validation_data, (tuple, list)):
            validation_data = self._keras_data(*validation_data[:2], {})
            self.keras_model.warn_one_step(validation_data[0], None)
        elif validation_data is not None:
            validation_data = self._keras_data(validation_data, None, {})[0]
        self._remember_weights()
        return self.keras_model.fit(
            x, y, validation_data=validation_data, epochs=epochs, **kwargs
        )

    def evaluate(self, x=None, y=None, n_steps=None, spiking=True, **kwargs):
        """Loss and metrics of the network as it runs, as ``keras.Model.evaluate``.

        As NengoDL's: the spiking network runs as in :meth:`predict`, for
        ``n_steps`` (default: the inputs' steps), and the losses compare every
        step of the outputs with the targets (a target of one step is held for
        all steps). ``spiking=False`` evaluates the rates that ``fit`` trains
        instead. Returns a dict (``return_dict=True`` by default).
        """
        self._check_open()
        n_steps = None if n_steps is None else check_steps(n_steps)
        x, y = self._keras_data(x, y, kwargs, n_steps)
        model = self.keras_model
        if spiking:
            model.warn_one_step(x, n_steps)
        kwargs.setdefault("return_dict", True)
        model.spiking, model.n_steps = bool(spiking), n_steps
        try:
            return model.evaluate(x, y, **kwargs)
        finally:
            model.spiking, model.n_steps = True, None


class Simulator(Training):
    """Simulates a :class:`~snnify.Network` over time, trains and evaluates it.

    Its API is NengoDL's: ``predict``, ``predict_on_batch``, ``run_steps`` /
    ``run`` / ``step`` with ``sim.data`` and ``trange``, ``compile`` / ``fit``
    / ``evaluate``, ``reset``, and parameters. Data are arrays ``(batch,
    steps, ...)`` or, for ``fit``, ``evaluate`` and ``predict``, a data
    pipeline (``keras.utils.PyDataset``, generator, ``tf.data.Dataset``,
    ``torch.utils.data.DataLoader``) yielding batches in the same formats.

    Args:
        network: the network to simulate (``converter.net``).
        minibatch_size: examples per training batch, and per ``run_steps``;
            batches given to ``predict`` are padded to a multiple of it
            (padding is removed from the results). Predictions do not depend
            on it.
        dt: length of a time step in seconds.
        progress_bar: show progress while simulating and training.
        seed: seed of the neurons' random initial voltages (drawn from
            NumPy's global generator if None).

    Attributes:
        keras_model: the ``keras.Model`` that ``compile``, ``fit`` and
            ``evaluate`` use; its own to this simulator (the weights are the
            network's).
        data: what ``run_steps`` recorded, ``sim.data[probe]``.
    """

    def __init__(
        self,
        network: Network,
        minibatch_size: int | None = None,
        dt: float = 0.001,
        progress_bar: bool = True,
        seed: int | None = None,
    ):
        _check_arguments(network, minibatch_size, dt)
        self.net = network
        self.minibatch_size = minibatch_size
        self.dt = float(dt)
        self.progress_bar = progress_bar
        seed = int(np.random.randint(2**31 - 1)) if seed is None else check_seed(seed)
        self.keras_model = SimulatorModel(network, self.dt, seed)
        self.data = SimulationData(self)
        self._state = None  # stateful runs: {node name: {name: (batch, ...)}}
        self._functions = {}
        self._recorders = {}  # run_steps: {probe: a probe recording every step}
        self._n_steps = 0
        self._initial_weights = None  # before this simulator first changed them
        self.closed = False

    # --- context manager and state ----------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Release compiled functions and state; the simulator cannot run again."""
        self._functions.clear()
        self._state = None
        self.closed = True

    def _check_open(self):
        if self.closed:
            raise RuntimeError("This Simulator is closed; create a new one.")

    @property
    def seed(self) -> int:
        """Seed of the neurons' random initial voltages."""
        return self.keras_model.seed

    @property
    def n_steps(self) -> int:
        """Steps simulated since the start or the last reset (stateful runs)."""
        return self._n_steps

    @property
    def time(self) -> float:
        """Simulated time (s) since the start or the last reset."""
        return self._n_steps * self.dt

    def reset(self, seed=None, include_trainable=True, include_probes=True):
        """Go back to the start, as NengoDL's ``reset``.

        Forgets the state carried between stateful calls and sets
        :attr:`n_steps` to 0.

        Args:
            seed: a new seed for the initial voltages (if not None).
            include_trainable: also restore the weights this simulator started
                with (undoing its ``fit`` and ``load_params``). The weights are
                the network's: other simulators of it see them change too.
            include_probes: also clear :attr:`data`.
        """
        self._state = None
        self._n_steps = 0
        if include_probes:
            self.data.clear()
        if include_trainable and self._initial_weights is not None:
            for variable, value in zip(self.net.weights, self._initial_weights):
                variable.assign(value)
        if seed is not None:
            self.keras_model.seed = check_seed(seed)

    def soft_reset(self, include_trainable=False, include_probes=False):
        """:meth:`reset` that keeps the weights and the recorded data."""
        self.reset(include_trainable=include_trainable, include_probes=include_probes)

    def _remember_weights(self):
        if self._initial_weights is None:
            self._initial_weights = [
                keras.ops.convert_to_numpy(v).copy() for v in self.net.weights
            ]

    # --- parameters -------------------------------------------------------
    def save_params(self, path, include_state=False) -> None:
        """Save the network's parameters to ``path`` + ``.npz`` (atomically)."""
        self._check_open()
        _refuse_state(include_state)
        params.save_params(self.net, path)

    def load_params(self, path, include_state=False) -> None:
        """Load parameters saved by :meth:`save_params` or by NengoDL.

        See :func:`snnify.params.load_params`; changes nothing on error.
        """
        self._check_open()
        _refuse_state(include_state)
        self._remember_weights()
        params.load_params(self.net, path)

    def freeze_params(self, objs) -> None:
        """NengoDL's way to keep trained weights; in snnify they are kept already.

        The weights live in the network (``converter.net``), which every
        simulator of it shares, so there is nothing to copy: this checks that
        ``objs`` is the network (or its nodes) and returns. To write them into
        the Keras model, use ``converter.update_model()``.
        """
        for obj in objs if isinstance(objs, (list, tuple)) else [objs]:
            if obj is not self.net and getattr(obj, "network", None) is not self.net:
                raise ValueError(
                    "freeze_params takes this simulator's network or its nodes. "
                    f"Received: {obj!r}"
                )

    # --- running ----------------------------------------------------------
    def predict(
        self,
        x,
        n_steps: int | None = None,
        stateful: bool | None = None,
        probes=None,
    ) -> dict:
        """Simulate the network and return what every probe recorded.

        Args:
            x: ``{converter.inputs[inp]: array}`` (or one array for a
                single-input network) of shape ``(batch, steps, ...)``,
                flattened ``(batch, steps, size)`` or shaped. An input of one
                step is held for all ``n_steps`` (without copying it). Or a
                data pipeline yielding such inputs (targets are ignored).
            n_steps: steps to simulate (default: the inputs' steps).
            stateful: carry the state of the previous call (default: the
                network's ``stateful`` setting).
            probes: the probes to record (default: all the network's).

        Returns:
            ``{probe: array}``: ``(batch, n_steps, probe.size_in)`` for probes
            that keep all steps (fewer steps with ``sample_every``),
            ``(batch, 1, size_in)`` for ``keep="last"``, and a
            :class:`~snnify.engine.ProbeStats` for ``keep="stats"`` and
            ``"sum"``.
        """
        self._check_open()
        stateful = self.net.settings.stateful if stateful is None else stateful
        if pipeline_kind(x) is not None:
            if stateful:
                raise ValueError(
                    "A stateful run continues the streams of one batch; a data "
                    "pipeline gives other examples in every batch. Use arrays, or "
                    "stateful=False."
                )
            runs = [self.predict(b, n_steps, False, probes) for b in numpy_batches(x)]
            return {p: _concatenate([run[p] for run in runs]) for p in runs[0]}
        inputs = standardize_inputs(self.net, x)
        n_steps = resolve_steps(inputs, n_steps)
        probes = list(self.net.probes if probes is None else probes)
        check_own_probes(self.net, probes, "predict's probes", by_target=True)
        n_examples = next(iter(inputs.values())).shape[0]
        run = _Prediction(self, probes, n_steps, n_examples, stateful)
        for start in range(0, n_examples, run.batch):
            run.simulate_batch(inputs, slice(start, min(start + run.batch, n_examples)))
        if stateful:
            self._n_steps += n_steps
        return run.results()

    def predict_on_batch(self, x, n_steps=None, stateful=False) -> dict:
        """:meth:`predict` for one minibatch (``minibatch_size`` examples)."""
        return self.predict(self._one_minibatch(x), n_steps, stateful)

    def _one_minibatch(self, x) -> dict:
        inputs = standardize_inputs(self.net, x)
        batch = next(iter(inputs.values())).shape[0]
        if batch != (self.minibatch_size or 1):
            raise ValueError(
                f"predict_on_batch and run_steps take one minibatch of "
                f"{self.minibatch_size or 1} examples (minibatch_size). "
                f"Received: batch={batch}"
            )
        return inputs

    def run_steps(self, n_steps: int, data=None, progress_bar=None, stateful=True):
        """Run ``n_steps`` steps and append every probe's values to :attr:`data`.

        As NengoDL's: one minibatch of ``minibatch_size`` examples (1 if None)
        continues from where the previous run stopped (``stateful=True``).
        ``data`` gives every input (``(minibatch_size, steps, ...)``), or is
        None for inputs of 0. Every probe records its whole history (sampled
        every ``sample_every``), whatever its ``keep``.

        Example:
            >>> import keras, numpy as np, snnify
            >>> inp = keras.Input((2,))
            >>> out = keras.layers.Dense(1, name="out")(inp)
            >>> converter = snnify.Converter(keras.Model(inp, out))
            >>> with snnify.Simulator(converter.net, progress_bar=False) as sim:
            ...     sim.run_steps(3)
            ...     sim.step()
            ...     steps = sim.data[converter.outputs[out]].shape
            ...     times = sim.trange()
            >>> steps, times
            ((4, 1), array([0.001, 0.002, 0.003, 0.004]))
        """
        self._check_open()
        n_steps = check_steps(n_steps)
        batch = self.minibatch_size or 1
        if data is None:
            data = {
                node: np.zeros((batch, 1, *node.shape), "float32")
                for node in self.net.input_nodes
            }
        start = self._n_steps if stateful else 0
        histories = {p: self._recorder(p) for p in self.net.probes}
        shown, self.progress_bar = (
            self.progress_bar,
            bool(self.progress_bar if progress_bar is None else progress_bar),
        )
        try:
            inputs = self._one_minibatch(data)
            output = self.predict(inputs, n_steps, stateful, list(histories.values()))
        finally:
            self.progress_bar = shown
        steps = np.arange(start + 1, start + n_steps + 1)
        for probe, history in histories.items():
            period = probe.steps_between_samples(self.dt)
            self.data.append(probe, output[history][:, steps % period == 0])

    def _recorder(self, probe):
        """A probe of ``probe``'s target that records every step (kept)."""
        if probe not in self._recorders:
            self._recorders[probe] = Probe(probe, add_to_container=False)
        return self._recorders[probe]

    def step(self, **kwargs):
        """Run one step (see :meth:`run_steps`), without a progress bar."""
        kwargs.setdefault("progress_bar", False)
        self.run_steps(1, **kwargs)

    def run(self, time_in_seconds: float, **kwargs):
        """Run for ``time_in_seconds`` of simulated time (see :meth:`run_steps`)."""
        positive_number(time_in_seconds, "time_in_seconds", " (seconds)")
        steps = int(np.round(float(time_in_seconds) / self.dt))
        if steps < 1:
            raise ValueError(
                f"run needs at least one step of dt={self.dt} s. "
                f"Received: time_in_seconds={time_in_seconds!r}"
            )
        self.run_steps(steps, **kwargs)

    def trange(self, sample_every=None) -> np.ndarray:
        """The times (s) of the steps run so far, from ``dt``: ``sim.data``'s time axis.

        ``sample_every`` (s) gives the times a probe with that ``sample_every``
        records.
        """
        period = steps_between_samples(sample_every, self.dt)
        steps = np.arange(1, self._n_steps + 1)
        return self.dt * steps[steps % period == 0]


class SimulationData(Mapping):
    """What :meth:`Simulator.run_steps` recorded: ``sim.data[probe]``.

    ``(minibatch_size, steps, probe.size_in)``, or ``(steps, size_in)`` for a
    simulator without ``minibatch_size`` (as NengoDL's); read-only.
    """

    def __init__(self, sim: Simulator):
        self.sim = sim
        self._pieces = {}

    def append(self, probe, values: np.ndarray) -> None:
        self._pieces.setdefault(probe, []).append(values)

    def clear(self) -> None:
        self._pieces.clear()

    def __getitem__(self, probe) -> np.ndarray:
        if probe not in self.sim.net.probes:
            raise KeyError(
                "sim.data holds the probes of the simulated network. "
                f"Received: {probe!r}"
            )
        pieces = self._pieces.get(probe)
        if pieces is None:
            batch = self.sim.minibatch_size or 1
            pieces = [np.zeros((batch, 0, probe.size_in), "float32")]
        data = np.concatenate(pieces, axis=1)
        data = data if self.sim.minibatch_size else data[0]
        data.setflags(write=False)
        return data

    def __iter__(self):
        return iter(self.sim.net.probes)

    def __len__(self):
        return len(self.sim.net.probes)


class _Prediction:
    """One ``predict`` call: batches of examples, each run in chunks of steps.

    The histories of a chunk are copied into the outputs while the next chunk
    runs. On JAX they are written into buffers that the compiled function
    reuses (donated) once their contents are copied out: no allocation and
    zero-filling of fresh memory for every chunk.
    """

    def __init__(self, sim: Simulator, probes, n_steps, n_examples, stateful):
        self.sim = sim
        self.probes = probes
        self.n_steps = n_steps
        self.stateful = stateful
        self.recorded = {
            p: p.steps_between_samples(sim.dt) for p in probes if p.keep == "all"
        }
        self.batch = examples_per_run(
            n_examples, sim.minibatch_size, backend.batch_shards()
        )
        self.plan = engine.plan_chunks(n_steps, self.batch, self.recorded)
        self.nodes = needed_nodes(probes)
        self.stored = _stored_state(sim, stateful, n_examples)
        check_history_memory(self.recorded, n_examples, n_steps)
        self.outputs = {
            p: np.empty((n_examples, n_steps // k, p.size_in), "float32")
            for p, k in self.recorded.items()
        }
        self.summaries, self.final_states = [], []
        self.pending = []  # histories of the chunk before, not yet copied
        self.reuse = bool(self.recorded) and keras.backend.backend() == "jax"
        self.free = []  # buffers whose histories were copied out
        self.progress = None
        total = math.ceil(n_examples / self.batch) * len(self.plan)
        if sim.progress_bar and total > 1:
            self.progress = keras.utils.Progbar(total, unit_name="chunk")

    def simulate_batch(self, inputs: dict, rows: slice) -> None:
        state = {
            "nodes": engine.initial_state(self.nodes, self.batch, self.sim.seed),
            "probes": engine.new_summaries(self.probes, self.batch),
        }
        if self.stored is not None:
            state["nodes"] = tree_map(lambda v: _pad(v[rows], self.batch), self.stored)
        for t0, t1, every, record in self.plan:
            constant = {
                n.name: _pad(v[rows, 0], self.batch)
                for n, v in inputs.items()
                if v.shape[1] == 1
            }
            sequence = {
                n.name: _pad(v[rows, t0:t1], self.batch)
                for n, v in inputs.items()
                if v.shape[1] > 1
            }
            run = _chunk_function(
                self.sim, self.probes, constant, t1 - t0, every, record
            )
            buffers = self._buffers(t0, t1, every) if self.reuse and record else None
            # under a keras.distribution: the batch split across the devices
            constant, sequence, state = backend.distribute_batch(
                (constant, sequence, state)
            )
            buffers = backend.distribute_batch(buffers, batch_axis=1)
            histories, state = run(constant, sequence, state, buffers)
            # JAX runs this chunk asynchronously: meanwhile, copy the previous
            self._store_pending()
            self.pending = [(histories, rows, t0, every)] if record else []
            if self.progress:
                self.progress.add(1)
        n_rows = rows.stop - rows.start
        if not self.stateful:  # the neuron state is not kept: no copy to the host
            state = {"probes": state["probes"]}
        state = tree_map(lambda v: backend.to_host(v)[:n_rows], state)
        self.summaries.append(state["probes"])
        self.final_states.append(state.get("nodes"))

    def _buffers(self, t0, t1, every):
        shapes = [((t1 - t0) // every, self.batch, p.size_in) for p in self.recorded]
        for i, buffers in enumerate(self.free):
            if [tuple(b.shape) for b in buffers] == shapes:
                return self.free.pop(i)
        return tuple(keras.ops.zeros(shape) for shape in shapes)

    def _store_pending(self):
        for histories, rows, t0, every in self.pending:
            for (probe, period), history in zip(self.recorded.items(), histories):
                ratio = period // every  # history: (steps, batch, size)
                n_rows = rows.stop - rows.start
                # a JAX array on the CPU is viewed in place (read-only)
                history = backend.to_host(history)[ratio - 1 :: ratio, :n_rows]
                steps = slice(t0 // period, t0 // period + history.shape[0])
                self.outputs[probe][rows, steps] = history.swapaxes(0, 1)
            if self.reuse:
                self.free.append(tuple(histories))
        self.pending = []

    def results(self) -> dict:
        self._store_pending()
        if self.stateful:
            self.sim._state = tree_map(lambda *v: np.concatenate(v), *self.final_states)
        summaries = tree_map(lambda *v: np.concatenate(v), *self.summaries)
        outputs = self.outputs
        for probe in self.probes:
            if probe.keep == "last":
                outputs[probe] = summaries[probe.name]["last"][:, None]
            elif probe.keep in ("stats", "sum"):
                summary = summaries[probe.name]
                outputs[probe] = engine.ProbeStats(
                    summary["sum"], summary.get("max"), self.n_steps
                )
        return outputs


def _stored_state(sim, stateful: bool, n_examples: int):
    if not stateful or not sim._state:  # nothing stored, or no state to carry
        return None
    batch = next(iter(next(iter(sim._state.values())).values())).shape[0]
    if batch != n_examples:
        raise ValueError(
            f"A stateful simulation continues {batch} streams, but this call "
            f"gives {n_examples} examples. Keep the batch size, or call "
            "sim.reset() first."
        )
    return sim._state


def _chunk_function(sim, probes, constant_names, n_steps, every, record):
    """The compiled simulation of one chunk of steps."""
    key = (tuple(probes), tuple(sorted(constant_names)), n_steps, every, record)
    if key not in sim._functions:
        context = StepContext(
            dt=sim.dt,
            spiking=True,
            lif_smoothing=sim.net.settings.lif_smoothing,
        )

        def run(constant_inputs, sequence_inputs, state, buffers=None):
            return engine.simulate(
                probes,
                n_steps,
                context,
                constant_inputs,
                sequence_inputs,
                state,
                every=every,
                record=record,
                time_major=True,
                history_buffers=buffers,
            )

        sim._functions[key] = compile_function(
            run,
            sim.net.variables,
            donate_argnums=(3,),
            compile_steps=sim.net.settings.torch_compile,
        )
    return sim._functions[key]


def examples_per_run(
    n_examples: int, minibatch_size: int | None, shards: int = 1
) -> int:
    """Examples per run: a multiple of minibatch_size and of ``shards``.

    ``shards``: the devices a batch is split across; at most ``MAX_BATCH``
    examples per device, in runs of equal size.
    """
    multiple = math.lcm(minibatch_size or 1, shards)
    padded = math.ceil(n_examples / multiple) * multiple
    n_chunks = math.ceil(padded / (MAX_BATCH * shards))
    return math.ceil(padded / n_chunks / multiple) * multiple


def _check_arguments(network, minibatch_size, dt) -> None:
    if not isinstance(network, Network):
        raise TypeError(
            "Simulator needs an snnify Network such as converter.net. "
            f"Received: network={type(network).__name__}"
        )
    if minibatch_size is not None and (
        isinstance(minibatch_size, bool)
        or not isinstance(minibatch_size, numbers.Integral)
        or minibatch_size < 1
    ):
        raise ValueError(
            "minibatch_size must be a positive integer or None. "
            f"Received: minibatch_size={minibatch_size!r}"
        )
    positive_number(dt, "dt", " (the length of a step in seconds, e.g. 0.001)")


def _concatenate(values: list):
    """Results of several batches as one (arrays, or ProbeStats)."""
    if isinstance(values[0], engine.ProbeStats):
        return engine.ProbeStats(
            sum=np.concatenate([v.sum for v in values]),
            max=None
            if values[0].max is None
            else np.concatenate([v.max for v in values]),
            n_steps=values[0].n_steps,
        )
    return np.concatenate(values)


def _refuse_state(include_state: bool) -> None:
    if include_state:
        raise ValueError(
            "snnify's parameter files hold weights only, not the simulation "
            "state. Received: include_state=True"
        )


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    """Pad the batch axis to ``size`` by repeating the last example."""
    missing = size - x.shape[0]
    if missing <= 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], missing, axis=0)])
