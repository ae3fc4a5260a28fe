"""Run an exported NIR graph in independent simulators, to check the export.

Three PyTorch-based readers of NIR are supported (``pip install
'snnify[readers]'`` next to a CPU build of ``torch==2.13.0``): Sinabs 3.1,
snnTorch 1.0 and Norse 1.1. Each reads NIR's ``IF`` node its own way
(docs/nir.md), and none reads the metadata where snnify states what NIR cannot
(initial voltage, reset by subtraction, several spikes per step). With
``adjust=True`` (the default) each run applies the documented adjustments that
bring a reader as close to the graph's meaning as its neuron model allows:

- Sinabs: the membrane starts at ``initial_voltage * threshold`` (not 0), its
  lower bound is the neuron's ``min_voltage`` (none by default) instead of
  ``-threshold``, and a neuron's ``max_spikes_per_step`` becomes Sinabs's
  ``MaxSpike`` (instead of as many spikes as the membrane allows). Then it
  computes what snnify computes.
- snnTorch: its ``Leaky`` neurons return spikes only (``init_hidden=True``; it
  builds them returning ``(spikes, membrane)``, which the next layer cannot
  read), integrate without leak (``beta=1``; it builds them with 0.9),
  ``Flatten`` keeps the batch axis, and the membrane starts at
  ``initial_voltage * threshold``. It still emits at most one spike per step,
  when the membrane exceeds the threshold strictly (:class:`SnnTorchIF`).
- Norse: ``Flatten`` keeps the batch axis and the membrane starts at
  ``initial_voltage * threshold``. It still emits at most one spike per step
  and resets to 0 (:class:`NorseIF`).

:class:`SnnTorchIF` and :class:`NorseIF` are snnify neuron types with those
readers' rules: a converted network whose neurons are swapped for them
computes what the reader computes, which explains the readers' differences
from :class:`~snnify.IntegrateAndFire` layer by layer.

Example:
    >>> import numpy as np
    >>> neuron = NorseIF(initial_voltage=0.5)
    >>> state = neuron.initial_state((2,), np.random.default_rng(0))
    >>> current = np.array([1700.0, 300.0], "float32")
    >>> out, state = neuron.step(current, state, dt=0.001)
    >>> np.asarray(out).tolist(), np.asarray(state["voltage"]).tolist()  # one spike
    ([1000.0, 0.0], [0.0, 0.800000011920929])
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field

import numpy as np
from keras import ops

from snnify.export.nir_export import import_nir_package, nir_layout
from snnify.graph import NeuronsNode, Probe
from snnify.neurons import IntegrateAndFire
from snnify.simulator import Simulator


class NorseIF(IntegrateAndFire):
    """Norse 1.1's IF rule: one spike per step when ``v > 1``, reset to 0.

    ``v += J dt; spiked = v > 1; out = amplitude * spiked / dt; v = 0 if
    spiked``. Any charge above the threshold is lost.
    """

    def step(self, J, state, dt):
        voltage = ops.add(state["voltage"], J * dt)
        spiked = voltage > 1.0
        output = ops.where(spiked, self.amplitude / dt, 0.0)
        return output, {"voltage": ops.where(spiked, 0.0, voltage)}


class SnnTorchIF(IntegrateAndFire):
    """snnTorch 1.0's ``Leaky`` with ``beta=1`` and reset by subtraction.

    ``r = v > 1`` (before the step); ``v += J dt; spiked = v - r > 1; out =
    amplitude * spiked / dt; v -= spiked``: one spike per step at most, and
    after a step that ended above the threshold the next spike needs a
    voltage above 2.
    """

    def step(self, J, state, dt):
        previous = ops.cast(state["voltage"] > 1.0, "float32")
        voltage = ops.add(state["voltage"], J * dt)
        spiked = ops.cast(voltage - previous > 1.0, "float32")
        output = spiked * (self.amplitude / dt)
        return output, {"voltage": voltage - spiked}


@dataclass
class ReaderRun:
    """What a reader computed for a batch of inputs.

    Attributes:
        reader: the reader's name.
        outputs: ``{output node: (batch, n_steps, *shape)}``.
        spikes: ``{IF node: (batch, n_steps, *shape)}`` spike counts, channels
            first.
    """

    reader: str
    outputs: dict = field(default_factory=dict)
    spikes: dict = field(default_factory=dict)


def _graph(graph):
    nir = import_nir_package()
    if isinstance(graph, nir.NIRGraph):
        return graph
    return nir.read(os.fspath(graph))


def _if_nodes(graph) -> dict:
    nir = import_nir_package()
    return {k: n for k, n in graph.nodes.items() if isinstance(n, nir.IF)}


def _initial_membrane(name: str, node, batch: int) -> np.ndarray:
    """``initial_voltage * threshold`` for every neuron of an IF node."""
    initial = (node.metadata or {}).get("initial_voltage", 0.0)
    if isinstance(initial, str):
        raise ValueError(
            f"IF node {name!r} starts from random voltages (initial_voltage="
            f"{initial!r}), which no reader reproduces. Convert with a constant "
            "initial voltage, e.g. snnify.IntegrateAndFire(initial_voltage=0.5)."
        )
    threshold = np.asarray(node.v_threshold, "float32")
    initial = np.asarray(initial, "float32")
    if initial.ndim:  # one per neuron (a per-channel initial voltage)
        initial = initial.reshape(threshold.shape)
    return np.broadcast_to(initial * threshold, (batch, *threshold.shape))


def _several_inputs(graph) -> list:
    targets = [target for _, target in graph.edges]
    return sorted({t for t in targets if targets.count(t) > 1})


def _check_several_inputs(graph, reader: str) -> list:
    """The nodes with several inputs; an error if nirtorch cannot sum them."""
    import importlib.metadata

    merged = _several_inputs(graph)
    version = importlib.metadata.version("nirtorch")
    if merged and tuple(int(v) for v in version.split(".")[:3]) < (2, 0, 5):
        raise ValueError(
            f"NIR node(s) {merged} have several inputs, which nirtorch {version} "
            f"does not sum ({reader} would drop or fail on all but one). Install "
            "nirtorch>=2.0.5 (it needs nir>=1.0.6; install sinabs with --no-deps)."
        )
    return merged


def _repeat(x: np.ndarray, n_steps: int):
    """``(batch * n_steps, ...)``: each example held for ``n_steps`` steps."""
    import torch

    x = np.repeat(np.asarray(x, "float32")[:, None], n_steps, axis=1)
    return torch.from_numpy(x.reshape(-1, *x.shape[2:]))


@contextlib.contextmanager
def _recording(model, names):
    """Record the output of the modules ``names`` of ``model`` at every call."""
    records = {name: [] for name in names}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda m, i, out, name=name: records[name].append(
                (out[0] if isinstance(out, tuple) else out).detach().numpy().copy()
            )
        )
        for name in names
    ]
    try:
        yield records
    finally:
        for hook in hooks:
            hook.remove()


def run_sinabs(graph, x: np.ndarray, n_steps: int, adjust: bool = True) -> ReaderRun:
    """Run a NIR graph in Sinabs (``sinabs.from_nir``) on a constant input.

    Args:
        graph: a ``nir.NIRGraph`` or the path of a NIR file.
        x: ``(batch, *input shape)``, channels first, held for every step.
        n_steps: steps to run.
        adjust: apply the adjustments of the module's documentation.

    Raises:
        ValueError: for a graph with a node of several inputs (residual)
            when ``nirtorch`` is older than 2.0.5: ``sinabs.from_nir`` would
            silently drop one of them. With a newer ``nirtorch`` such graphs
            run through ``nirtorch.nir_to_torch``, which sums them.
    """
    import nirtorch
    import sinabs
    import torch

    graph = _graph(graph)
    batch = len(x)
    merged = _check_several_inputs(graph, "sinabs.from_nir")
    if merged:
        from sinabs.nir import _import_sinabs_module  # sinabs's own node mapping

        node_map = {
            t: (
                lambda n: _import_sinabs_module(n, batch_size=batch, num_timesteps=None)
            )
            for t in {type(n) for n in graph.nodes.values()}
        }
        model = nirtorch.nir_to_torch(graph, node_map)
    else:
        model = sinabs.from_nir(graph, batch_size=batch)
    neurons = _if_nodes(graph)
    for name, node in neurons.items():
        module = getattr(model, name)
        if adjust:
            metadata = node.metadata or {}
            minimum = metadata.get("min_voltage")
            threshold = torch.from_numpy(np.asarray(node.v_threshold, "float32"))
            module.min_v_mem = (
                None
                if minimum is None
                else torch.nn.Parameter(float(minimum) * threshold, requires_grad=False)
            )
            most = metadata.get("max_spikes_per_step")
            if most is not None:
                module.spike_fn = sinabs.activation.MaxSpike(int(most))
            module.init_state_with_shape((batch, *node.v_threshold.shape))
            v0 = _initial_membrane(name, node, batch)
            module.v_mem.data = torch.from_numpy(np.ascontiguousarray(v0))
    with torch.no_grad(), _recording(model, neurons) as records:
        result = model(_repeat(x, n_steps))
    output = (result[0] if isinstance(result, tuple) else result).numpy()
    run = ReaderRun("sinabs")
    run.outputs["output"] = output.reshape(batch, n_steps, *output.shape[1:])
    for name, (spikes,) in records.items():
        run.spikes[name] = spikes.reshape(batch, n_steps, *spikes.shape[1:])
    return run


def _stepped_run(reader, graph, outputs, records, batch) -> ReaderRun:
    run = ReaderRun(reader)
    run.outputs["output"] = np.stack([o.numpy() for o in outputs], axis=1)
    for name in records:
        run.spikes[name] = np.stack(records[name], axis=1).reshape(
            batch, len(outputs), *graph.nodes[name].v_threshold.shape
        )
    return run


def _batch_flatten(model) -> None:
    """Make torch ``Flatten`` modules built from NIR's dims keep the batch axis."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Flatten) and module.start_dim == 0:
            module.start_dim = 1


def run_snntorch(graph, x: np.ndarray, n_steps: int, adjust: bool = True) -> ReaderRun:
    """Run a NIR graph in snnTorch (``import_from_nir``) on a constant input.

    Args: as :func:`run_sinabs`.
    """
    import snntorch
    import torch
    from snntorch.import_nir import import_from_nir

    graph = _graph(graph)
    batch = len(x)
    _check_several_inputs(graph, "snnTorch")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a debug line
        model = import_from_nir(graph)
    neurons = _if_nodes(graph)
    if adjust:
        _batch_flatten(model)
        for name, node in neurons.items():
            module = getattr(model, name)
            if isinstance(module, snntorch.Leaky):
                module.init_hidden = True
                module.beta = torch.tensor(1.0)
                v0 = _initial_membrane(name, node, batch)
                module.mem = torch.from_numpy(np.ascontiguousarray(v0))

    x_t = torch.from_numpy(np.asarray(x, "float32"))
    outputs = []
    with torch.no_grad(), _recording(model, neurons) as records:
        for _ in range(n_steps):
            out = model(x_t)
            outputs.append(out[0] if isinstance(out, tuple) else out)
    return _stepped_run("snntorch", graph, outputs, records, batch)


def run_norse(graph, x: np.ndarray, n_steps: int, adjust: bool = True) -> ReaderRun:
    """Run a NIR graph in Norse (``norse.torch.from_nir``) on a constant input.

    Args: as :func:`run_sinabs`.
    """
    import norse.torch
    import torch
    from nirtorch.graph_executor import GraphExecutorState
    from norse.torch.functional.iaf import IAFFeedForwardState

    graph = _graph(graph)
    batch = len(x)
    merged = _several_inputs(graph)
    if merged:
        raise ValueError(
            f"NIR node(s) {merged} have several inputs; norse.torch.from_nir "
            "(nirtorch's graph executor) delivers all but one of them a step late."
        )
    model = norse.torch.from_nir(graph)
    neurons = _if_nodes(graph)
    state = None
    if adjust:
        _batch_flatten(model)
        state = GraphExecutorState(
            state={
                name: (
                    IAFFeedForwardState(
                        v=torch.from_numpy(
                            np.ascontiguousarray(_initial_membrane(name, node, batch))
                        )
                    ),
                )
                for name, node in neurons.items()
            }
        )
    x_t = torch.from_numpy(np.asarray(x, "float32"))
    outputs, records = [], {name: [] for name in neurons}
    with torch.no_grad():
        for _ in range(n_steps):
            out, state = model(x_t, state)
            outputs.append(out)
            for name in neurons:
                records[name].append(state.cache[name].numpy().copy())
    return _stepped_run("norse", graph, outputs, records, batch)


READERS = {"sinabs": run_sinabs, "snntorch": run_snntorch, "norse": run_norse}


def snnify_run(
    converter, graph, x: np.ndarray, n_steps: int, dt: float = 0.001
) -> ReaderRun:
    """The run of the exported network in snnify, laid out as a reader's.

    Args:
        converter: the converted network that was exported.
        graph: the exported graph (or its path): it names the neurons.
        x: ``(batch, *input shape)`` as the Keras model takes it.
        n_steps: steps to run.
        dt: the ``dt`` of the export.

    Returns:
        a :class:`ReaderRun` whose spikes are keyed by the graph's IF and LIF
        node names, channels first.
    """
    names = {
        node.metadata["snnify_node"]: name
        for name, node in _graph(graph).nodes.items()
        if "snnify_node" in (getattr(node, "metadata", None) or {})
    }
    neurons = [n for n in converter.net.nodes if isinstance(n, NeuronsNode)]
    probes = [Probe(n, add_to_container=False) for n in neurons]
    outputs = [p for p in converter.net.probes if p.is_output]
    with Simulator(converter.net, dt=dt, progress_bar=False, seed=0) as sim:
        data = sim.predict(x[:, None], n_steps=n_steps, probes=probes + outputs)
    run = ReaderRun("snnify")
    run.outputs["output"] = data[outputs[0]]
    for node, probe in zip(neurons, probes):
        per_spike = np.broadcast_to(
            np.asarray(node.scale, "float32") * dt / node.neuron_type.amplitude,
            node.shape,
        )
        values = data[probe].reshape(len(x), n_steps, *node.shape) * per_spike
        counts = values.reshape(len(x), n_steps, -1)[..., nir_layout(node.shape)]
        run.spikes[names[node.name]] = np.rint(counts)
    return run
