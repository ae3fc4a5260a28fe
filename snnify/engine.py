"""The simulation engine: one scan over time steps, the whole network per step.

Nodes whose value cannot change over time (they depend only on inputs held
constant and have no state, e.g. the first convolution of an image classifier)
are computed once, before the scan. Everything else runs inside the scan body,
one step at a time, with the state of every spiking neuron and synapse carried
from step to step, except the spiking neurons whose current is one of those
constant values and whose type has a closed form for it (integrate-and-fire
without bounds): their spikes at step ``t`` are computed from the current and
``t`` (:meth:`~snnify.neurons.NeuronType.held_current_step`) and their state
once, after the scan, which saves reading and writing their voltages at
every step. Probes either record their value (every step, or every k-th
step) or keep a running summary in the carried state (last value, sum, max).
Affine nodes read only by probes that keep a sum (e.g. the output ``Dense``
after the last spiking layer) run once per chunk, after the scan, on the mean
of their inputs (:func:`affine_tail`): by linearity that is the mean of their
outputs.

One run (:func:`simulate`): :func:`plan_steps` sorts the work into what runs
before, during and after the scan; :func:`step_function` is the body of one
time step; :func:`block_function` runs ``every`` steps and records the last.

Long runs are cut into chunks of steps (:func:`plan_chunks`) with the state
carried from one to the next; :func:`initial_state` gives the state that both
prediction and spike-aware training start from.

Example:
    >>> plan_chunks(n_steps=10, batch=2, recorded={})
    [(0, 10, 1, True)]
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
from keras import ops, tree

from snnify import backend
from snnify.graph import (
    InputNode,
    NeuronsNode,
    StepContext,
    evaluate_nodes,
    needed_nodes,
)

# memory for the probe histories of one chunk of steps
CHUNK_BYTES = 64 * 2**20
# most steps per compiled scan
MAX_CHUNK_STEPS = 1000
# the scan's input that numbers the steps of a chunk from 1
STEP = "step number"


def split_static(nodes, static_names) -> tuple[list, list]:
    """Split ``nodes`` into those computed once and those computed every step."""
    static_names = set(static_names)
    static, dynamic = [], []
    for node in nodes:
        if not node.stateful and all(p.name in static_names for p in node.parents):
            static.append(node)
            static_names.add(node.name)
        else:
            dynamic.append(node)
    return static, dynamic


def affine_tail(nodes, probes) -> set:
    """Names of the ``nodes`` that can run once on the mean of their inputs.

    Those that are affine and read only by probes that keep ``"sum"``, through
    affine nodes only: the mean of ``f(x_t)`` over steps is then ``f`` of the
    mean of ``x_t``. ``nodes``: the nodes the ``probes`` need, parents first.
    """
    per_step = {n.name for n in needed_nodes([p for p in probes if p.keep != "sum"])}
    children = {}
    for node in nodes:
        for parent in node.parents:
            children.setdefault(parent.name, []).append(node.name)
    tail = set()
    for node in reversed(nodes):
        if (
            node.affine
            and node.name not in per_step
            and all(child in tail for child in children.get(node.name, ()))
        ):
            tail.add(node.name)
    return tail


def tail_of(probe, tail: set) -> tuple[list, list]:
    """The nodes of ``tail`` that ``probe`` reads, and the other nodes they read.

    Returns ``(nodes, inputs)``; the values of ``inputs`` are summed at every
    step.
    """
    nodes = [n for n in needed_nodes([probe]) if n.name in tail]
    inputs = {p.name: p for n in nodes for p in n.parents if p.name not in tail}
    return nodes, list(inputs.values())


def summarize(keep: str, summary: dict, value) -> dict:
    """Update a probe's running summary with this step's value."""
    if keep == "last":
        return {"last": value}
    if keep == "sum":
        return {"sum": summary["sum"] + value}
    return {"sum": summary["sum"] + value, "max": ops.maximum(summary["max"], value)}


def _sum_tail_inputs(summary: dict, step_values: dict) -> dict:
    """A ``"sum"`` summary of a tail probe: its tail's inputs summed, steps counted."""
    inputs = {k: v + step_values[k] for k, v in summary["inputs"].items()}
    return {**summary, "inputs": inputs, "steps": summary["steps"] + 1}


def _tail_sum(probe, summary: dict, nodes: list, values: dict, context):
    """The sum over steps of ``probe``'s value, from its tail's summed inputs."""
    steps = summary["steps"]
    values = dict(values)
    for name, total in summary["inputs"].items():
        values[name] = total / ops.reshape(steps, (-1,) + (1,) * (total.ndim - 1))
    evaluate_nodes(nodes, values, {}, context)
    mean = ops.reshape(values[probe.target.name], (-1, probe.size_in))
    return {**summary, "sum": mean * steps[:, None]}


def _split_tails(nodes, probes, summarized) -> tuple[dict, list]:
    """``({probe name: (probe, its tail nodes)}, the nodes run every step)``."""
    tail = affine_tail(nodes, probes) if summarized else set()
    tails = {
        p.name: (p, tail_of(p, tail)[0]) for p in summarized if p.target.name in tail
    }
    return tails, [n for n in nodes if n.name not in tail]


@dataclass
class StepPlan:
    """What one run computes before, during and after its scan over steps.

    Attributes:
        values: ``{name: value}`` of the constant inputs and of the nodes that
            depend only on them (computed once, before the scan).
        per_step: the nodes evaluated at every step, parents first.
        recorded: the probes whose value is recorded.
        summarized: the probes that keep a running summary instead.
        tails: ``{probe name: (probe, tail nodes)}`` for the ``"sum"`` probes
            whose nodes run once, after the scan (:func:`affine_tail`).
        held: the spiking neurons whose current is in ``values``, computed
            in closed form (:func:`held_current_neurons`).
    """

    values: dict
    per_step: list
    recorded: list
    summarized: list
    tails: dict
    held: list


def plan_steps(probes, context, constant_inputs: dict, record: bool) -> StepPlan:
    """Sort the work of a run of the network that ``probes`` read.

    Evaluates the nodes that do not change over time (``context``: how they
    compute) on ``constant_inputs``. Every probe records its value when
    ``context.training``; none does when not ``record``.
    """
    nodes = [n for n in needed_nodes(probes) if not isinstance(n, InputNode)]
    recorded = [p for p in probes if p.keep == "all" or context.training]
    summarized = [p for p in probes if p not in recorded]
    recorded = recorded if record else []  # the steps after the last sample
    tails, per_step = _split_tails(nodes, probes, summarized)
    static, dynamic = split_static(per_step, constant_inputs)
    values = dict(constant_inputs)
    evaluate_nodes(static, values, {}, context)
    held = held_current_neurons(dynamic, values, context)
    dynamic = [n for n in dynamic if n not in held]
    return StepPlan(values, dynamic, recorded, summarized, tails, held)


def held_current_neurons(nodes, values: dict, context) -> list:
    """The spiking neurons of ``nodes`` whose current is one of the ``values``.

    Only those whose neuron type has a closed form for a constant current,
    and not while training (whose gradients need every step), where
    ``context.closed_form`` is off, or where the step is not compiled (eager
    PyTorch: the closed form takes more operations than a step).
    """
    if not context.spiking or context.training or not context.closed_form:
        return []
    if not backend.steps_fused():
        return []
    return [
        n
        for n in nodes
        if isinstance(n, NeuronsNode)
        and n.stateful
        and n.neuron_type.held_current_closed_form
        and all(p.name in values for p in n.parents)
    ]


def _compute_held(node, values: dict, state: dict, steps, context):
    """``node.compute_held`` on its parents' constant ``values``."""
    inputs = [values[p.name] for p in node.parents]
    return node.compute_held(inputs, state, steps, context)


def _flat(step_values: dict, probe):
    """``probe``'s value in ``step_values``, as ``(batch, probe.size_in)``."""
    return ops.reshape(step_values[probe.target.name], (-1, probe.size_in))


def step_function(plan: StepPlan, context):
    """``step(carry, inputs_now) -> (carry, step_values)``: one time step.

    ``carry`` is ``(node state, probe summaries)``, ``inputs_now`` the
    sequence inputs at this step; ``step_values`` holds every node's value.
    """
    values, dynamic = plan.values, plan.per_step
    summarized, tails = plan.summarized, plan.tails

    def step(carry, inputs_now):
        node_state, summaries = carry
        step_values = dict(values)
        step_values.update(inputs_now)
        held_state = {n.name: node_state[n.name] for n in plan.held}
        for node in plan.held:  # their state changes after the scan only
            step_values[node.name], _ = _compute_held(
                node, values, held_state[node.name], step_values[STEP], context
            )
        node_state = evaluate_nodes(dynamic, step_values, node_state, context)
        node_state.update(held_state)
        summaries = {
            p.name: _sum_tail_inputs(summaries[p.name], step_values)
            if p.name in tails
            else summarize(p.keep, summaries[p.name], _flat(step_values, p))
            for p in summarized
        }
        return (node_state, summaries), step_values

    return step


def block_function(step, every: int, recorded: list):
    """``block(carry, inputs_block)``: ``every`` steps, then the ``recorded`` values.

    ``inputs_block``: the sequence inputs of the ``every`` steps (or None).
    """

    def block(carry, inputs_block):
        def at(i):
            if inputs_block is None:
                return {}
            return tree.map_structure(lambda x: x[i], inputs_block)

        if every > 1:
            carry = ops.fori_loop(0, every - 1, lambda i, c: step(c, at(i))[0], carry)
        carry, step_values = step(carry, at(every - 1))
        return carry, tuple(_flat(step_values, p) for p in recorded)

    return block


def _blocks(sequence_inputs: dict, n_steps: int, every: int) -> dict:
    """Each sequence input ``(batch, n_steps, ...)`` cut into blocks of steps.

    ``(n_steps // every, every, batch, ...)``: the scan's inputs, one block of
    ``every`` steps per iteration.
    """
    return {  # -1: the batch, unknown while TensorFlow traces evaluate
        name: ops.reshape(
            ops.moveaxis(x, 1, 0), (n_steps // every, every, -1, *x.shape[2:])
        )
        for name, x in sequence_inputs.items()
    }


def simulate(
    probes,
    n_steps: int,
    context: StepContext,
    constant_inputs: dict,
    sequence_inputs: dict,
    state: dict,
    every: int = 1,
    record: bool = True,
    time_major: bool = False,
    history_buffers=None,
):
    """Run ``n_steps`` steps of the network that ``probes`` read.

    Args:
        context: how the nodes compute (``spiking=True``; ``training=True``
            for spike-aware training: rate gradients, and every probe records
            every step).
        constant_inputs: ``{input name: (batch, ...)}``, held for every step.
        sequence_inputs: ``{input name: (batch, n_steps, ...)}``.
        state: ``{"nodes": {node name: {...}}, "probes": {probe name: {...}}}``,
            the state of the stateful nodes and the probes' running summaries.
        every: record the probes that keep every value at every ``every``-th
            step (``n_steps`` must be a multiple of it).
        record: False to record nothing (summaries still update).
        time_major: return histories as the scan stacks them, ``(n_steps //
            every, batch, probe.size_in)``, instead of transposing them inside
            the compiled function (the simulator copies them to the host
            transposed, which costs one pass over them instead of two).
        history_buffers: optional arrays ``(n_steps // every, batch,
            probe.size_in)``, one per recording probe, that the histories are
            written into (time first) and returned as. Given buffers whose
            memory the compiled function may reuse (donated), nothing is
            allocated or zero-filled for the histories.

    Returns:
        ``(histories, state)``: per recording probe ``(batch, n_steps // every,
        probe.size_in)`` (time first with ``time_major``), and the state after
        the last step.
    """
    plan = plan_steps(probes, context, constant_inputs, record)
    block = block_function(step_function(plan, context), every, plan.recorded)
    blocks = _blocks(sequence_inputs, n_steps, every)
    if plan.held:
        steps = ops.arange(1, n_steps + 1, dtype="float32")
        blocks[STEP] = ops.reshape(steps, (n_steps // every, every))
    carry = (state["nodes"], state["probes"])
    length = n_steps // every
    if history_buffers is not None and plan.recorded:
        carry, histories = _scan_into(block, carry, history_buffers, blocks, length)
    else:
        carry, histories = backend.scan(block, carry, xs=blocks or None, length=length)
        if not time_major:
            histories = tuple(ops.moveaxis(h, 0, 1) for h in histories)
    summaries = dict(carry[1])
    for name, (probe, nodes) in plan.tails.items():
        summaries[name] = _tail_sum(probe, summaries[name], nodes, plan.values, context)
    node_state = dict(carry[0])
    for node in plan.held:
        _, node_state[node.name] = _compute_held(
            node, plan.values, node_state[node.name], n_steps, context
        )
    return histories, {"nodes": node_state, "probes": summaries}


def _scan_into(block, carry, buffers, blocks, length):
    """``backend.scan`` of ``block``, writing its outputs into ``buffers``."""

    def write(carry, inputs_block):
        carry, buffers, index = carry
        carry, values = block(carry, inputs_block)
        buffers = tuple(
            ops.slice_update(b, (index, 0, 0), v[None]) for b, v in zip(buffers, values)
        )
        return (carry, buffers, index + 1), None

    start = (carry, tuple(buffers), ops.convert_to_tensor(0, "int32"))
    (carry, histories, _), _ = backend.scan(
        write, start, xs=blocks or None, length=length
    )
    return carry, histories


def initial_state(nodes, batch: int, seed: int) -> dict:
    """The state of the stateful ``nodes`` before the first step.

    ``{node name: {state name: (batch, *node.shape)}}``: the same for every
    example, drawn from a generator seeded by ``seed`` and the node's name (so
    a node's initial voltages depend neither on the other nodes nor on how
    the network is run).
    """
    state = {}
    for node in nodes:
        if not node.stateful:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(node.name.encode())])
        # contiguous: a broadcast view (stride 0) is copied to the device
        # element by element, about 2x slower
        state[node.name] = {
            k: np.ascontiguousarray(np.broadcast_to(v, (batch, *v.shape)))
            for k, v in node.initial_state(rng).items()
        }
    return state


def new_summaries(probes, batch: int) -> dict:
    """The empty running summaries of the probes that keep no history.

    ``"last"``, ``"stats"`` and ``"sum"``; a ``"sum"`` probe that reads
    nodes of the :func:`affine_tail` sums their inputs and counts the steps.
    """
    nodes = [n for n in needed_nodes(probes) if not isinstance(n, InputNode)]
    tail = affine_tail(nodes, probes)
    summaries = {}
    for p in probes:
        zeros = np.zeros((batch, p.size_in), "float32")
        if p.keep == "last":
            summaries[p.name] = {"last": zeros}
        elif p.keep == "stats":
            summaries[p.name] = {
                "sum": zeros,
                "max": np.full((batch, p.size_in), -np.inf, "float32"),
            }
        elif p.keep == "sum":
            summaries[p.name] = {"sum": zeros}
        if p.keep == "sum" and p.target.name in tail:
            inputs = tail_of(p, tail)[1]
            summaries[p.name]["steps"] = np.zeros((batch,), "float32")
            summaries[p.name]["inputs"] = {
                n.name: np.zeros((batch, *n.shape), "float32") for n in inputs
            }
    return summaries


def plan_chunks(n_steps: int, batch: int, recorded: dict) -> list:
    """Chunks ``(start, stop, every, record)`` covering ``n_steps`` steps.

    ``recorded`` maps the probes that record their history to their sampling
    period in steps. Probes are recorded every ``every`` steps (the gcd of
    the periods). Chunks start at multiples of every period, so that each
    probe's samples fall at the same place in every chunk, and are sized so
    that their histories fit in ``CHUNK_BYTES``. Steps after the last sample
    run in a final chunk that records nothing.
    """
    every = math.gcd(*recorded.values()) if recorded else 1
    period = math.lcm(*recorded.values()) if recorded else 1
    step_bytes = 4 * batch * sum(p.size_in * every // k for p, k in recorded.items())
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


@dataclass
class ProbeStats:
    """Running statistics of a probe with ``keep="stats"``, per neuron.

    A probe with ``keep="sum"`` has the sum only (``max`` is None).

    Attributes:
        sum: ``(batch, size_in)`` sum of the values over all steps.
        max: ``(batch, size_in)`` largest value, or None.
        n_steps: number of steps summed.
    """

    sum: np.ndarray
    max: np.ndarray | None
    n_steps: int

    @property
    def mean(self) -> np.ndarray:
        """Mean value over the steps (the firing rate, for spiking neurons)."""
        return self.sum / self.n_steps
