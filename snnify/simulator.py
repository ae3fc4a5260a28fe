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
from dataclasses import dataclass

import keras
import numpy as np
from keras.tree import map_structure as tree_map

from snnify import engine, params
from snnify._backend import compile_function
from snnify.network import InputNode, Network, Probe

# device memory for the probe histories of one chunk of steps
CHUNK_BYTES = 64 * 2**20
# most examples simulated at once, and most steps per compiled scan
MAX_BATCH = 100
MAX_CHUNK_STEPS = 1000


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
                f"minibatch_size must be a positive integer or None. Received: minibatch_size={minibatch_size!r}"
            )
        if not dt > 0:
            raise ValueError(f"dt must be positive (seconds). Received: dt={dt!r}")
        self.net = network
        self.minibatch_size = minibatch_size
        self.dt = float(dt)
        network.dt = self.dt
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

    def _output_probes(self) -> list:
        outputs = [p for p in self.net.probes if p.is_output]
        return outputs or list(self.net.probes)

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
            trained = self._output_probes()
        self.net.trained_probes = trained

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
        inputs = {n.name: v for n, v in self.standardize_inputs(x).items()}
        if y is None:
            return inputs, None
        trained = self.net.trained_probes
        if not trained:
            raise RuntimeError("Call sim.compile(...) before sim.fit or sim.evaluate.")
        if not isinstance(y, Mapping):
            if len(trained) != 1:
                raise ValueError(
                    f"This network trains {len(trained)} probes: pass y as a dict keyed by them."
                )
            y = {trained[0]: y}
        targets = {p.name: np.asarray(v) for p, v in self._probe_dict(y, "y").items()}
        missing = [p.name for p in trained if p.name not in targets]
        if missing:
            raise ValueError(
                f"No targets given for the trained probe(s) {missing}. Give them in y, "
                "or leave them out of compile's loss."
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
        return self.net.evaluate(x, y, **self._batch_options(kwargs))

    def save_params(self, path) -> None:
        """Save the network's parameters to ``path`` + ``.npz`` (atomically)."""
        self._check_open()
        params.save_params(self.net, path)

    def load_params(self, path) -> None:
        """Load parameters saved by :meth:`save_params`; changes nothing on error."""
        self._check_open()
        params.load_params(self.net, path)

    # --- inputs -----------------------------------------------------------
    def _input_node(self, key) -> InputNode:
        nodes = self.net.input_nodes
        for node in nodes:
            if key is node or key == node.name:
                return node
        names = ", ".join(repr(n.name) for n in nodes)
        raise KeyError(
            f"{key!r} is not an input of this network. Use converter.inputs[...] (the "
            f"network's inputs are {names}). Received: key={key!r}"
        )

    def standardize_inputs(self, x) -> dict:
        """``{input node: float32 array (batch, steps, *node.shape)}``."""
        nodes = self.net.input_nodes
        if not isinstance(x, Mapping):
            if len(nodes) != 1:
                raise ValueError(
                    f"This network has {len(nodes)} inputs: pass a dict keyed by "
                    "converter.inputs[...]."
                )
            x = {nodes[0]: x}
        arrays = {self._input_node(k): v for k, v in x.items()}
        missing = [n.name for n in nodes if n not in arrays]
        if missing:
            raise ValueError(f"No data given for input(s) {missing}.")
        result = {}
        for node, value in arrays.items():
            value = np.asarray(value)
            flat = value.ndim == 3 and value.shape[2] == node.size
            if value.ndim < 3 or not (flat or value.shape[2:] == node.shape):
                raise ValueError(
                    f"Input {node.name!r} expects arrays of shape (batch, steps, "
                    f"{node.size}) or (batch, steps, {', '.join(map(str, node.shape))}). "
                    f"Received: shape={value.shape}"
                )
            result[node] = value.reshape(value.shape[:2] + node.shape).astype(
                "float32", copy=False
            )
        if len({v.shape[0] for v in result.values()}) > 1:
            raise ValueError(
                "All inputs must have the same batch size. Received: "
                f"{ {n.name: v.shape[0] for n, v in result.items()} }"
            )
        return result

    @staticmethod
    def _resolve_steps(inputs: dict, n_steps) -> int:
        lengths = {v.shape[1] for v in inputs.values()}
        if n_steps is None:
            n_steps = max(lengths)
        if int(n_steps) != n_steps or n_steps < 1:
            raise ValueError(
                f"n_steps must be an integer >= 1. Received: n_steps={n_steps!r}"
            )
        if lengths - {1, n_steps}:
            raise ValueError(
                f"Inputs must have 1 step (held for all steps) or n_steps={n_steps} steps. "
                f"Received steps: {sorted(lengths)}"
            )
        return int(n_steps)

    # --- state ------------------------------------------------------------
    def _initial_state(self, nodes, batch: int) -> dict:
        """Per-neuron initial states (seeded by node), broadcast over the batch."""
        state = {}
        for node in nodes:
            if not node.stateful:
                continue
            index = self.net.nodes.index(node)
            values = node.initial_state(np.random.default_rng([self.seed, index]))
            # contiguous: a broadcast view (stride 0) is copied to the
            # device element by element, about 2x slower
            state[node.name] = {
                k: np.ascontiguousarray(np.broadcast_to(v, (batch, *v.shape)))
                for k, v in values.items()
            }
        return state

    # --- running ----------------------------------------------------------
    def _batch_size(self, n_examples: int) -> int:
        """Examples per run: a multiple of minibatch_size, in equal chunks."""
        multiple = self.minibatch_size or 1
        padded = math.ceil(n_examples / multiple) * multiple
        n_chunks = math.ceil(padded / MAX_BATCH)
        return math.ceil(padded / n_chunks / multiple) * multiple

    @staticmethod
    def _plan(n_steps: int, batch: int, recorded: dict) -> list:
        """Chunks ``(start, stop, every, record)`` covering ``n_steps`` steps.

        Probes are recorded every ``every`` steps (the gcd of their sampling
        periods). Chunks start at multiples of every period, so that each
        probe's samples fall at the same place in every chunk, and are sized
        so that their histories fit in ``CHUNK_BYTES``. Steps after the last
        sample run in a final chunk that records nothing.
        """
        every = math.gcd(*recorded.values()) if recorded else 1
        period = math.lcm(*recorded.values()) if recorded else 1
        step_bytes = (
            4 * batch * sum(p.size_in * every // k for p, k in recorded.items())
        )
        chunk = min(n_steps, MAX_CHUNK_STEPS, CHUNK_BYTES // max(step_bytes, 1))
        chunk = max(period, chunk // period * period)
        recordable = n_steps // every * every
        # chunks of equal length (one compiled function instead of two)
        n_chunks = max(1, math.ceil(recordable / chunk))
        chunk = math.ceil(recordable / n_chunks / period) * period or period
        plan = [
            (t, min(t + chunk, recordable), every, True)
            for t in range(0, recordable, chunk)
        ]
        if recordable < n_steps:
            plan.append((recordable, n_steps, 1, False))
        return plan

    def _function(self, probes, constant_names, n_steps, every, record):
        key = (tuple(probes), tuple(sorted(constant_names)), n_steps, every, record)
        if key not in self._functions:

            def run(constant_inputs, sequence_inputs, state, buffers=None):
                return engine.simulate(
                    self.net,
                    probes,
                    n_steps,
                    self.dt,
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

    def predict(
        self, x, n_steps: int | None = None, stateful: bool | None = None
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

        Returns:
            ``{probe: array}``: ``(batch, n_steps, probe.size_in)`` for probes
            that keep all steps (fewer steps with ``sample_every``),
            ``(batch, 1, size_in)`` for ``keep="last"``, and a
            :class:`ProbeStats` for ``keep="stats"``.
        """
        self._check_open()
        inputs = self.standardize_inputs(x)
        n_steps = self._resolve_steps(inputs, n_steps)
        stateful = self.net.settings["stateful"] if stateful is None else stateful
        probes = list(self.net.probes)
        recorded = {
            p: p.steps_between_samples(self.dt) for p in probes if p.keep == "all"
        }
        n_examples = next(iter(inputs.values())).shape[0]
        batch = self._batch_size(n_examples)
        plan = self._plan(n_steps, batch, recorded)
        nodes = self.net.needed_nodes(probes)
        stored = self._stored_state(stateful, n_examples)
        outputs = {
            p: np.empty((n_examples, n_steps // k, p.size_in), "float32")
            for p, k in recorded.items()
        }
        progress = self._progress(math.ceil(n_examples / batch) * len(plan))
        summaries, new_state = [], []

        def store(histories, rows, t0, every):
            for (probe, period), history in zip(recorded.items(), histories):
                ratio = period // every  # history: (steps, batch, size)
                n_rows = rows.stop - rows.start
                history = _host_view(history)[ratio - 1 :: ratio, :n_rows]
                steps = slice(t0 // period, t0 // period + history.shape[0])
                outputs[probe][rows, steps] = history.swapaxes(0, 1)

        pending = []  # histories of the chunk before, copied while the next runs
        # On JAX the histories are written into buffers that the compiled
        # function reuses (donated) once their contents are copied out: no
        # allocation and zero-filling of fresh memory for every chunk
        reuse = bool(recorded) and keras.backend.backend() == "jax"
        free = []

        def buffers_for(t0, t1, every):
            shapes = [((t1 - t0) // every, batch, p.size_in) for p in recorded]
            for i, buffers in enumerate(free):
                if [tuple(b.shape) for b in buffers] == shapes:
                    return free.pop(i)
            return tuple(keras.ops.zeros(shape) for shape in shapes)

        for start in range(0, n_examples, batch):
            rows = slice(start, min(start + batch, n_examples))
            state = {
                "nodes": self._initial_state(nodes, batch),
                "probes": _new_summaries(probes, batch),
            }
            if stored is not None:
                state["nodes"] = tree_map(
                    lambda v, rows=rows: _pad(v[rows], batch), stored
                )
            for t0, t1, every, record in plan:
                constant = {
                    n.name: _pad(v[rows, 0], batch)
                    for n, v in inputs.items()
                    if v.shape[1] == 1
                }
                sequence = {
                    n.name: _pad(v[rows, t0:t1], batch)
                    for n, v in inputs.items()
                    if v.shape[1] > 1
                }
                run = self._function(probes, constant, t1 - t0, every, record)
                buffers = buffers_for(t0, t1, every) if reuse and record else None
                histories, state = run(constant, sequence, state, buffers)
                # JAX runs this chunk asynchronously: meanwhile, copy the
                # histories of the previous one into the outputs
                for item in pending:
                    store(*item)
                    if reuse:
                        free.append(tuple(item[0]))
                pending = [(histories, rows, t0, every)] if record else []
                if progress:
                    progress.add(1)
            n_rows = rows.stop - start
            if not stateful:  # the neuron state is not kept: no copy to the host
                state = {"probes": state["probes"]}
            state = tree_map(
                lambda v, n=n_rows: keras.ops.convert_to_numpy(v)[:n], state
            )
            summaries.append(state["probes"])
            new_state.append(state.get("nodes"))
        for item in pending:
            store(*item)
        if stateful:
            self._state = tree_map(lambda *v: np.concatenate(v), *new_state)
        summaries = tree_map(lambda *v: np.concatenate(v), *summaries)
        for probe in probes:
            if probe.keep == "last":
                outputs[probe] = summaries[probe.name]["last"][:, None]
            elif probe.keep == "stats":
                outputs[probe] = ProbeStats(n_steps=n_steps, **summaries[probe.name])
        return outputs

    def _stored_state(self, stateful: bool, n_examples: int):
        if not stateful or self._state is None:
            return None
        batch = next(iter(next(iter(self._state.values())).values())).shape[0]
        if batch != n_examples:
            raise ValueError(
                f"A stateful simulation continues {batch} streams, but this call gives "
                f"{n_examples} examples. Keep the batch size, or call sim.reset() first."
            )
        return self._state

    def _progress(self, total: int):
        if not self.progress_bar or total < 2:
            return None
        return keras.utils.Progbar(total, unit_name="chunk")


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


def _new_summaries(probes, batch: int) -> dict:
    summaries = {}
    for p in probes:
        if p.keep == "last":
            summaries[p.name] = {"last": np.zeros((batch, p.size_in), "float32")}
        elif p.keep == "stats":
            summaries[p.name] = {
                "sum": np.zeros((batch, p.size_in), "float32"),
                "max": np.full((batch, p.size_in), -np.inf, "float32"),
            }
    return summaries


@dataclass
class ProbeStats:
    """Running statistics of a probe with ``keep="stats"``, per neuron.

    Attributes:
        sum: ``(batch, size_in)`` sum of the values over all steps.
        max: ``(batch, size_in)`` largest value.
        n_steps: number of steps summed.
    """

    sum: np.ndarray
    max: np.ndarray
    n_steps: int

    @property
    def mean(self) -> np.ndarray:
        """Mean value over the steps (the firing rate, for spiking neurons)."""
        return self.sum / self.n_steps
