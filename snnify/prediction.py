"""How ``Simulator.predict`` runs: batches of examples, each in chunks of steps.

A :class:`Prediction` runs the examples of one ``predict`` call in batches
of ``batch`` examples (the last one padded), each batch in the chunks of
steps that :func:`snnify.engine.plan_chunks` plans, through one compiled
function per kind of chunk (:meth:`Prediction.chunk_function`, cached by the
simulator). It copies the probes' histories to the host and gathers the
running summaries and, for stateful runs, the state after the last step.

Example:
    >>> pad(np.arange(3), 5)
    array([0, 1, 2, 2, 2])
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras.tree import map_structure as tree_map

from snnify import backend, engine
from snnify.backend import compile_function
from snnify.graph import StepContext, needed_nodes
from snnify.validation import check_history_memory


class Prediction:
    """One ``predict`` call: batches of examples, each run in chunks of steps.

    The histories of a chunk are copied into the outputs while the next chunk
    runs. On JAX they are written into buffers that the compiled function
    reuses (donated) once their contents are copied out: no allocation and
    zero-filling of fresh memory for every chunk.

    Args:
        network: the simulated network.
        probes: the probes to record.
        n_steps: steps to simulate.
        n_examples: examples in the inputs.
        batch: examples per run (the simulator's ``examples_per_run``).
        dt, seed: the simulator's step and seed of the initial voltages.
        state: the state of a stateful run so far, ``{node name: {name:
            (n_examples, ...)}}``, or None.
        stateful: continue from ``state`` (if any) and return the state
            after the last step (:meth:`results`).
        functions: the compiled chunk functions, by what they run (kept by
            the simulator from one call to the next).
        progress_bar: show a progress bar over the chunks.
    """

    def __init__(
        self,
        network,
        probes,
        n_steps: int,
        n_examples: int,
        *,
        batch: int,
        dt: float,
        seed: int,
        state,
        stateful: bool,
        functions: dict,
        progress_bar: bool,
    ):
        self.network = network
        self.probes = probes
        self.n_steps = n_steps
        self.dt = dt
        self.seed = seed
        self.stateful = stateful
        self.functions = functions
        self.recorded = {
            p: p.steps_between_samples(dt) for p in probes if p.keep == "all"
        }
        self.batch = batch
        self.plan = engine.plan_chunks(n_steps, self.batch, self.recorded)
        self.nodes = needed_nodes(probes)
        self.stored = _continued_state(state, stateful, n_examples)
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
        if progress_bar and total > 1:
            self.progress = keras.utils.Progbar(total, unit_name="chunk")

    def simulate_batch(self, inputs: dict, rows: slice) -> None:
        state = {
            "nodes": engine.initial_state(self.nodes, self.batch, self.seed),
            "probes": engine.new_summaries(self.probes, self.batch),
        }
        if self.stored is not None:
            state["nodes"] = tree_map(lambda v: pad(v[rows], self.batch), self.stored)
        for t0, t1, every, record in self.plan:
            constant = {
                n.name: pad(v[rows, 0], self.batch)
                for n, v in inputs.items()
                if v.shape[1] == 1
            }
            sequence = {
                n.name: pad(v[rows, t0:t1], self.batch)
                for n, v in inputs.items()
                if v.shape[1] > 1
            }
            run = self.chunk_function(constant, t1 - t0, every, record)
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

    def results(self) -> tuple[dict, dict | None]:
        """``(outputs, state)``: what ``predict`` returns, and the state.

        ``state``: after the last step of a stateful run (None otherwise).
        """
        self._store_pending()
        state = None
        if self.stateful:
            state = tree_map(lambda *v: np.concatenate(v), *self.final_states)
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
        return outputs, state

    def chunk_function(self, constant_names, n_steps, every, record):
        """The compiled simulation of one chunk of steps."""
        probes = self.probes
        key = (tuple(probes), tuple(sorted(constant_names)), n_steps, every, record)
        if key not in self.functions:
            context = StepContext(
                dt=self.dt,
                spiking=True,
                lif_smoothing=self.network.settings.lif_smoothing,
                closed_form=self.network.settings.closed_form,
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

            self.functions[key] = compile_function(
                run,
                self.network.variables,
                donate_argnums=(3,),
                compile_steps=self.network.settings.torch_compile,
            )
        return self.functions[key]


def _continued_state(state, stateful: bool, n_examples: int):
    """The state a stateful run continues from (None: the initial state)."""
    if not stateful or not state:  # nothing stored, or no state to carry
        return None
    batch = next(iter(next(iter(state.values())).values())).shape[0]
    if batch != n_examples:
        raise ValueError(
            f"A stateful simulation continues {batch} streams, but this call "
            f"gives {n_examples} examples. Keep the batch size, or call "
            "sim.reset() first."
        )
    return state


def pad(x: np.ndarray, size: int) -> np.ndarray:
    """Pad the batch axis to ``size`` by repeating the last example."""
    missing = size - x.shape[0]
    if missing <= 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], missing, axis=0)])
