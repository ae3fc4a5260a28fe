"""The simulation engine: one scan over time steps, the whole network per step.

Nodes whose value cannot change over time (they depend only on inputs held
constant and have no state, e.g. the first convolution of an image classifier)
are computed once, before the scan. Everything else runs inside the scan body,
one step at a time, with the state of every spiking neuron and synapse carried
from step to step. Probes either record their value (every step, or every k-th
step) or keep a running summary in the carried state (last value, sum, max).
"""

from __future__ import annotations

from keras import ops, tree

from snnify import _backend
from snnify.network import InputNode, Network


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


def summarize(keep: str, summary: dict, value) -> dict:
    """Update a probe's running summary with this step's value."""
    if keep == "last":
        return {"last": value}
    return {"sum": summary["sum"] + value, "max": ops.maximum(summary["max"], value)}


def simulate(
    network: Network,
    probes,
    n_steps: int,
    dt: float,
    constant_inputs: dict,
    sequence_inputs: dict,
    state: dict,
    every: int = 1,
    record: bool = True,
    training: bool = False,
    time_major: bool = False,
    history_buffers=None,
):
    """Run ``n_steps`` steps of the spiking network.

    Args:
        constant_inputs: ``{input name: (batch, ...)}``, held for every step.
        sequence_inputs: ``{input name: (batch, n_steps, ...)}``.
        state: ``{"nodes": {node name: {...}}, "probes": {probe name: {...}}}``,
            the state of the stateful nodes and the probes' running summaries.
        every: record the probes that keep every value at every ``every``-th
            step (``n_steps`` must be a multiple of it).
        record: False to record nothing (summaries still update).
        training: spike-aware training: spiking forward pass with rate
            gradients, and every probe records every step.
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
    context = network.context(dt=dt, spiking=True, training=training)
    nodes = [n for n in network.needed_nodes(probes) if not isinstance(n, InputNode)]
    static, dynamic = split_static(nodes, constant_inputs)
    values = dict(constant_inputs)
    network.evaluate_nodes(static, values, {}, context)
    recorded = [p for p in probes if p.keep == "all" or training] if record else []
    summarized = [p for p in probes if p not in recorded]

    def flat(step_values, probe):
        return ops.reshape(step_values[probe.target.name], (-1, probe.size_in))

    def advance(carry, inputs_now):
        node_state, summaries = carry
        step_values = dict(values)
        step_values.update(inputs_now)
        node_state = network.evaluate_nodes(dynamic, step_values, node_state, context)
        summaries = {
            p.name: summarize(p.keep, summaries[p.name], flat(step_values, p))
            for p in summarized
        }
        return (node_state, summaries), step_values

    def block(carry, inputs_block):
        def at(i):
            if inputs_block is None:
                return {}
            return tree.map_structure(lambda x: x[i], inputs_block)

        if every > 1:
            carry = ops.fori_loop(
                0, every - 1, lambda i, c: advance(c, at(i))[0], carry
            )
        carry, step_values = advance(carry, at(every - 1))
        return carry, tuple(flat(step_values, p) for p in recorded)

    blocks = {
        name: ops.reshape(
            ops.moveaxis(x, 1, 0), (n_steps // every, every, *x.shape[:1], *x.shape[2:])
        )
        for name, x in sequence_inputs.items()
    }
    carry = (state["nodes"], state["probes"])
    if history_buffers is not None and recorded:

        def write(carry, inputs_block):
            carry, buffers, index = carry
            carry, values = block(carry, inputs_block)
            buffers = tuple(
                ops.slice_update(b, (index, 0, 0), v[None])
                for b, v in zip(buffers, values)
            )
            return (carry, buffers, index + 1), None

        start = (carry, tuple(history_buffers), ops.convert_to_tensor(0, "int32"))
        ((node_state, summaries), histories, _), _ = _backend.scan(
            write, start, xs=blocks or None, length=n_steps // every
        )
        return histories, {"nodes": node_state, "probes": summaries}
    (node_state, summaries), histories = _backend.scan(
        block, carry, xs=blocks or None, length=n_steps // every
    )
    if not time_major:
        histories = tuple(ops.moveaxis(h, 0, 1) for h in histories)
    return histories, {"nodes": node_state, "probes": summaries}
