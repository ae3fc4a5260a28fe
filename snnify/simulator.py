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
from collections.abc import Mapping

import keras
import numpy as np
from keras.tree import map_structure as tree_map

from snnify import engine, params
from snnify.backend import compile_function
from snnify.graph import Probe, StepContext, needed_nodes
from snnify.inputs import resolve_steps, standardize_inputs
from snnify.network import Network

# most examples simulated at once
MAX_BATCH = 100


class Simulator:
    """Simulates a :class:`~snnify.Network` over time.

    Args:
        network: the network to simulate (``converter.net``).
        minibatch_size: examples per training batch; batches given to
            ``predict`` are padded to a multiple of it (padding is removed
            from the results). Predictions do not depend on it.
        dt: length of a time step in seconds.
        progress_bar: show progress while simulating and training.
        seed: seed of the neurons' random initial voltages (drawn from
            NumPy's global generator if None).
    """

    def __init__(
        self,
        network: Network,
        minibatch_size: int | None = None,
        dt: float = 0.001,
        progress_bar: bool = True,
        seed: int | None = None,
    ):
        if not isinstance(network, Network):
            raise TypeError(
                "Simulator needs an snnify Network such as converter.net. "
                f"Received: network={type(network).__name__}"
            )
        if minibatch_size is not None and (
            int(minibatch_size) != minibatch_size or minibatch_size < 1
        ):
            raise ValueError(
                "minibatch_size must be a positive integer or None. "
                f"Received: minibatch_size={minibatch_size!r}"
            )
        if not dt > 0:
            raise ValueError(f"dt must be positive (seconds). Received: dt={dt!r}")
        self.net = network
        self.minibatch_size = minibatch_size
        self.dt = float(dt)
        self.progress_bar = progress_bar
        self.seed = int(np.random.randint(2**31 - 1) if seed is None else seed)
        self._state = None  # stateful runs: {node name: {name: (batch, ...)}}
        self._functions = {}
        self.closed = False

    # --- context manager ------------------------------------------------
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

    def reset(self):
        """Forget the state carried between ``predict`` calls (stateful runs)."""
        self._state = None

    # --- training ---------------------------------------------------------
    def _probe_dict(self, value, what: str) -> dict:
        """``{probe: v}`` from a dict keyed by probes (or probe names)."""
        probes = {p.name: p for p in self.net.probes}
        result = {}
        for key, v in value.items():
            name = key.name if isinstance(key, Probe) else key
            if name not in probes:
                raise KeyError(
                    f"{what} has a key that is not a probe of this network. Use "
                    "converter.outputs[...] or a snnify.Probe created inside "
                    f"`with converter.net:`. Received: key={key!r}"
                )
            result[probes[name]] = v
        return result

    def compile(
        self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs
    ):
        """Configure training, as ``keras.Model.compile``.

        ``loss``, ``metrics`` and ``loss_weights`` are single values (for the
        network's outputs) or dicts keyed by probes (outputs or hidden layers).
        The probes named in them are the outputs that ``fit`` trains.
        """
        self._check_open()
        dicts = [d for d in (loss, metrics, loss_weights) if isinstance(d, Mapping)]
        if dicts:
            keyed = {}
            for d, what in zip(dicts, ("loss", "metrics", "loss_weights")):
                keyed.update(self._probe_dict(d, what))
            trained = [p for p in self.net.probes if p in keyed]
        else:
            trained = [p for p in self.net.probes if p.is_output] or self.net.probes
        self.net.trained_probes = list(trained)

        def by_name(value, what):
            if isinstance(value, Mapping):
                return {p.name: v for p, v in self._probe_dict(value, what).items()}
            if value is None or len(trained) == 1:
                return value
            return {p.name: value for p in trained}

        self.net.compile(
            optimizer=optimizer,
            loss=by_name(loss, "loss"),
            metrics=by_name(metrics, "metrics"),
            loss_weights=by_name(loss_weights, "loss_weights"),
            **kwargs,
        )

    def _keras_data(self, x, y):
        """Inputs and targets as dicts keyed by Keras's names."""
        inputs = {n.name: v for n, v in standardize_inputs(self.net, x).items()}
        if y is None:
            return inputs, None
        trained = self.net.trained_probes
        if not trained:
            raise RuntimeError("Call sim.compile(...) before sim.fit or sim.evaluate.")
        if not isinstance(y, Mapping):
            if len(trained) != 1:
                raise ValueError(
                    f"This network trains {len(trained)} probes: pass y as a dict "
                    "keyed by them."
                )
            y = {trained[0]: y}
        targets = {p.name: np.asarray(v) for p, v in self._probe_dict(y, "y").items()}
        missing = [p.name for p in trained if p.name not in targets]
        if missing:
            raise ValueError(
                f"No targets given for the trained probe(s) {missing}. Give them in "
                "y, or leave them out of compile's loss."
            )
        return inputs, targets

    def _batch_options(self, kwargs: dict) -> dict:
        kwargs.setdefault("batch_size", self.minibatch_size or 32)
        kwargs.setdefault("verbose", "auto" if self.progress_bar else 0)
        return kwargs

    def fit(self, x=None, y=None, validation_data=None, epochs=1, **kwargs):
        """Train the network, as ``keras.Model.fit`` (returns its History).

        ``x``: ``{converter.inputs[inp]: (n, steps, ...)}``; ``y``: ``{probe:
        (n, steps, ...)}`` (e.g. labels ``(n, 1, 1)``, target rates ``(n, 1,
        size)``). Spiking neurons train through their rate functions.
        """
        self._check_open()
        x, y = self._keras_data(x, y)
        if validation_data is not None:
            validation_data = self._keras_data(*validation_data)
        with self.net.training_options(self.dt, self.seed):
            return self.net.fit(
                x,
                y,
                validation_data=validation_data,
                epochs=epochs,
                **self._batch_options(kwargs),
            )

    def evaluate(self, x=None, y=None, **kwargs):
        """Loss and metrics in rate mode, as ``keras.Model.evaluate``."""
        self._check_open()
        x, y = self._keras_data(x, y)
        kwargs.setdefault("return_dict", True)
        with self.net.training_options(self.dt, self.seed):
            return self.net.evaluate(x, y, **self._batch_options(kwargs))

    def save_params(self, path) -> None:
        """Save the network's parameters to ``path`` + ``.npz`` (atomically)."""
        self._check_open()
        params.save_params(self.net, path)

    def load_params(self, path) -> None:
        """Load parameters saved by :meth:`save_params`; changes nothing on error."""
        self._check_open()
        params.load_params(self.net, path)

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
                step is held for all ``n_steps`` (without copying it).
            n_steps: steps to simulate (default: the inputs' steps).
            stateful: carry the state of the previous call (default: the
                network's ``stateful`` setting).
            probes: the probes to record (default: all the network's).

        Returns:
            ``{probe: array}``: ``(batch, n_steps, probe.size_in)`` for probes
            that keep all steps (fewer steps with ``sample_every``),
            ``(batch, 1, size_in)`` for ``keep="last"``, and a
            :class:`~snnify.engine.ProbeStats` for ``keep="stats"``.
        """
        self._check_open()
        inputs = standardize_inputs(self.net, x)
        n_steps = resolve_steps(inputs, n_steps)
        stateful = self.net.settings.stateful if stateful is None else stateful
        probes = list(self.net.probes if probes is None else probes)
        n_examples = next(iter(inputs.values())).shape[0]
        run = _Prediction(self, probes, n_steps, n_examples, stateful)
        for start in range(0, n_examples, run.batch):
            run.simulate_batch(inputs, slice(start, min(start + run.batch, n_examples)))
        return run.results()

    def _stored_state(self, stateful: bool, n_examples: int):
        if not stateful or self._state is None:
            return None
        batch = next(iter(next(iter(self._state.values())).values())).shape[0]
        if batch != n_examples:
            raise ValueError(
                f"A stateful simulation continues {batch} streams, but this call "
                f"gives {n_examples} examples. Keep the batch size, or call "
                "sim.reset() first."
            )
        return self._state

    def _function(self, probes, constant_names, n_steps, every, record):
        """The compiled simulation of one chunk of steps."""
        key = (tuple(probes), tuple(sorted(constant_names)), n_steps, every, record)
        if key not in self._functions:
            context = StepContext(
                dt=self.dt,
                spiking=True,
                lif_smoothing=self.net.settings.lif_smoothing,
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

            self._functions[key] = compile_function(
                run, self.net.variables, donate_argnums=(3,)
            )
        return self._functions[key]


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
        self.batch = examples_per_run(n_examples, sim.minibatch_size)
        self.plan = engine.plan_chunks(n_steps, self.batch, self.recorded)
        self.nodes = needed_nodes(probes)
        self.stored = sim._stored_state(stateful, n_examples)
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
            run = self.sim._function(self.probes, constant, t1 - t0, every, record)
            buffers = self._buffers(t0, t1, every) if self.reuse and record else None
            histories, state = run(constant, sequence, state, buffers)
            # JAX runs this chunk asynchronously: meanwhile, copy the previous
            self._store_pending()
            self.pending = [(histories, rows, t0, every)] if record else []
            if self.progress:
                self.progress.add(1)
        n_rows = rows.stop - rows.start
        if not self.stateful:  # the neuron state is not kept: no copy to the host
            state = {"probes": state["probes"]}
        state = tree_map(lambda v: keras.ops.convert_to_numpy(v)[:n_rows], state)
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
                history = _host_view(history)[ratio - 1 :: ratio, :n_rows]
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
            elif probe.keep == "stats":
                outputs[probe] = engine.ProbeStats(
                    n_steps=self.n_steps, **summaries[probe.name]
                )
        return outputs


def examples_per_run(n_examples: int, minibatch_size: int | None) -> int:
    """Examples per run: a multiple of minibatch_size, in equal chunks."""
    multiple = minibatch_size or 1
    padded = math.ceil(n_examples / multiple) * multiple
    n_chunks = math.ceil(padded / MAX_BATCH)
    return math.ceil(padded / n_chunks / multiple) * multiple


def _host_view(x) -> np.ndarray:
    """``x`` as a NumPy array, without a copy where the backend allows it.

    A JAX array on the CPU is viewed in place (read-only); the caller copies
    what it needs out of it right away.
    """
    if keras.backend.backend() == "jax":
        return np.asarray(x)
    return keras.ops.convert_to_numpy(x)


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    """Pad the batch axis to ``size`` by repeating the last example."""
    missing = size - x.shape[0]
    if missing <= 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], missing, axis=0)])
