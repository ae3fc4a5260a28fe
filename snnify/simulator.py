"""Simulator: runs a spiking network over time, trains it, saves its parameters.

The user's side of it, with NengoDL's API. ``compile``, ``fit`` and
``evaluate`` come from :class:`snnify.training.Training` (through the
simulator's own :class:`~snnify.training.SimulatorModel`); ``predict`` runs
batches of examples in chunks of steps through
:class:`snnify.prediction.Prediction`.

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
from collections.abc import Mapping

import keras
import numpy as np

from snnify import backend, engine, params
from snnify.graph import Probe, steps_between_samples
from snnify.inputs import (
    check_own_probes,
    check_steps,
    numpy_batches,
    pipeline_kind,
    resolve_steps,
    standardize_inputs,
)
from snnify.network import Network
from snnify.prediction import Prediction
from snnify.training import SimulatorModel, Training
from snnify.validation import check_seed, positive_integer, positive_number

# most examples simulated at once (per device, under a keras.distribution)
MAX_BATCH = 100


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
        *,
        batch_size: int | None = None,
        verbose=None,
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
            batch_size: the most examples simulated at once, rounded up to a
                multiple of ``minibatch_size`` (default: 100); fewer take
                less memory. Predictions do not depend on it.
            verbose: 0 hides the progress bar, as in Keras's ``predict``
                (default: the simulator's ``progress_bar``).

        Returns:
            ``{probe: array}``: ``(batch, n_steps, probe.size_in)`` for probes
            that keep all steps (fewer steps with ``sample_every``),
            ``(batch, 1, size_in)`` for ``keep="last"``, and a
            :class:`~snnify.engine.ProbeStats` for ``keep="stats"`` and
            ``"sum"``.
        """
        self._check_open()
        stateful = self.net.settings.stateful if stateful is None else stateful
        options = {"batch_size": batch_size, "verbose": verbose}
        if pipeline_kind(x) is not None:
            return _predict_batches(self, x, n_steps, stateful, probes, options)
        inputs = standardize_inputs(self.net, x)
        n_steps = resolve_steps(inputs, n_steps)
        probes = list(self.net.probes if probes is None else probes)
        check_own_probes(self.net, probes, "predict's probes", by_target=True)
        n_examples = next(iter(inputs.values())).shape[0]
        run = _prediction(self, probes, n_steps, n_examples, stateful, **options)
        for start in range(0, n_examples, run.batch):
            run.simulate_batch(inputs, slice(start, min(start + run.batch, n_examples)))
        outputs, state = run.results()
        if stateful:
            self._state = state
            self._n_steps += n_steps
        return outputs

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


def _predict_batches(sim, x, n_steps, stateful, probes, options) -> dict:
    """``sim.predict`` of a data pipeline: its batches' records, joined."""
    if stateful:
        raise ValueError(
            "A stateful run continues the streams of one batch; a data "
            "pipeline gives other examples in every batch. Use arrays, or "
            "stateful=False."
        )
    runs = [
        sim.predict(batch, n_steps, False, probes, **options)
        for batch in numpy_batches(x)
    ]
    return {p: _concatenate([run[p] for run in runs]) for p in runs[0]}


def _prediction(
    sim, probes, n_steps, n_examples, stateful, batch_size=None, verbose=None
) -> Prediction:
    """The :class:`~snnify.prediction.Prediction` of one ``sim.predict`` call."""
    if batch_size is not None:
        batch_size = positive_integer(batch_size, "batch_size", " or None")
    shards = backend.batch_shards()
    return Prediction(
        sim.net,
        probes,
        n_steps,
        n_examples,
        batch=examples_per_run(n_examples, sim.minibatch_size, shards, batch_size),
        dt=sim.dt,
        seed=sim.seed,
        state=sim._state,
        stateful=stateful,
        functions=sim._functions,
        progress_bar=sim.progress_bar if verbose is None else bool(verbose),
    )


def examples_per_run(
    n_examples: int, minibatch_size: int | None, shards: int = 1, at_most=None
) -> int:
    """Examples per run: a multiple of minibatch_size and of ``shards``.

    ``shards``: the devices a batch is split across; at most ``MAX_BATCH``
    examples per device (or ``at_most`` in all, rounded up to the multiple),
    in runs of equal size.
    """
    multiple = math.lcm(minibatch_size or 1, shards)
    padded = math.ceil(n_examples / multiple) * multiple
    if at_most is None:
        limit = MAX_BATCH * shards
    else:
        limit = math.ceil(at_most / multiple) * multiple
    n_chunks = math.ceil(padded / limit)
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
