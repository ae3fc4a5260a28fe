"""Exported graphs in independent simulators: Sinabs, snnTorch and Norse.

Each test needs its reader (``pip install 'snnify[readers]'`` next to a CPU
build of ``torch==2.13.0``; CI installs them) and is skipped with the reason
otherwise. The networks are exact in float32 (tests/nir_networks.py), so
agreement is spike for spike; the 1,000-image comparison on MNIST is
``benchmarks/bench_nir.py``.
"""

import importlib.metadata

import numpy as np
import pytest

import snnify
from snnify.graph import NeuronsNode

pytest.importorskip("nir", reason="needs the nir package")
pytest.importorskip("torch", reason="the NIR readers need torch")

from nir_networks import (  # noqa: E402
    DT,
    dense_converter,
    dense_inputs,
    dyadic_converter,
    dyadic_inputs,
    residual_model,
)

from snnify.export import readers  # noqa: E402

N_STEPS = 8


def needs(reader: str):
    pytest.importorskip(reader, reason=f"{reader} is not installed (snnify[readers])")


def assert_same_run(got, expected):
    np.testing.assert_array_equal(got.outputs["output"], expected.outputs["output"])
    assert sorted(got.spikes) == sorted(expected.spikes)
    for name, spikes in expected.spikes.items():
        assert np.array_equal(got.spikes[name], spikes), name
        assert spikes.sum() > 0, name  # the comparison sees spikes


def swap_neurons(converter, neuron):
    for node in converter.net.nodes:
        if isinstance(node, NeuronsNode):
            node.neuron_type = neuron


def export(converter, tmp_path):
    path = tmp_path / "net.nir"
    snnify.export_nir(converter, path, dt=DT)
    return path


def test_sinabs_computes_what_snnify_computes(tmp_path):
    needs("sinabs")
    converter = dyadic_converter(residual_model(residual=False), per_channel=True)
    x = dyadic_inputs()
    path = export(converter, tmp_path)
    expected = readers.snnify_run(converter, path, x, N_STEPS, dt=DT)
    got = readers.run_sinabs(path, np.moveaxis(x, -1, 1), N_STEPS)
    assert_same_run(got, expected)
    # without the adjustments Sinabs starts from 0 instead of half a threshold
    raw = readers.run_sinabs(path, np.moveaxis(x, -1, 1), N_STEPS, adjust=False)
    assert sum(s.sum() for s in raw.spikes.values()) < sum(
        s.sum() for s in expected.spikes.values()
    )


def test_sinabs_voltage_bound_is_min_voltage(tmp_path):
    needs("sinabs")
    bounded = snnify.IntegrateAndFire(initial_voltage=0.0, min_voltage=-1.0)
    converter = dense_converter(bounded)
    x, n_steps = dense_inputs(), 30
    path = export(converter, tmp_path)
    expected = readers.snnify_run(converter, path, x, n_steps, dt=DT)
    assert_same_run(readers.run_sinabs(path, x, n_steps), expected)
    # Sinabs's own defaults (bound -threshold, initial voltage 0) are this neuron
    assert_same_run(readers.run_sinabs(path, x, n_steps, adjust=False), expected)
    # and the bound matters on this network (measured: 353 against 348 spikes)
    unbounded = dense_converter(snnify.IntegrateAndFire(initial_voltage=0.0))
    free = readers.snnify_run(unbounded, path, x, n_steps, dt=DT)
    assert (
        free.spikes["l004_h2_neurons"].sum() != expected.spikes["l004_h2_neurons"].sum()
    )


def test_sinabs_limits_the_spikes_per_step(tmp_path):
    needs("sinabs")
    converter = dense_converter(snnify.IntegrateAndFire(max_spikes_per_step=1))
    x, n_steps = dense_inputs(), 30
    path = export(converter, tmp_path)
    expected = readers.snnify_run(converter, path, x, n_steps, dt=DT)
    assert_same_run(readers.run_sinabs(path, x, n_steps), expected)
    # the limit matters on this network: without it some neuron fires twice
    raw = readers.run_sinabs(path, x, n_steps, adjust=False)
    assert max(s.max() for s in raw.spikes.values()) > 1


def test_sinabs_residual_graph(tmp_path):
    needs("sinabs")
    converter = dyadic_converter(residual_model(), per_channel=True)
    x = dyadic_inputs()
    path = export(converter, tmp_path)
    version = importlib.metadata.version("nirtorch")
    if tuple(int(v) for v in version.split(".")[:3]) < (2, 0, 5):
        # sinabs.from_nir would silently drop one input of the sum
        with pytest.raises(ValueError, match="several inputs"):
            readers.run_sinabs(path, np.moveaxis(x, -1, 1), N_STEPS)
        return
    expected = readers.snnify_run(converter, path, x, N_STEPS, dt=DT)
    assert_same_run(readers.run_sinabs(path, np.moveaxis(x, -1, 1), N_STEPS), expected)


def test_random_initial_voltages_are_refused(tmp_path):
    needs("sinabs")
    converter = dyadic_converter(residual_model(residual=False))
    swap_neurons(converter, snnify.IntegrateAndFire(initial_voltage="uniform"))
    path = export(converter, tmp_path)
    with pytest.raises(ValueError, match="random voltages"):
        readers.run_sinabs(path, np.moveaxis(dyadic_inputs(), -1, 1), N_STEPS)


@pytest.mark.parametrize(
    "reader, rule",
    [("snntorch", readers.SnnTorchIF), ("norse", readers.NorseIF)],
)
def test_single_spike_readers_compute_their_documented_rule(tmp_path, reader, rule):
    needs(reader)
    # no pooling (snnTorch reads SumPool2d only with nirtorch >= 2.0.5), one
    # threshold per layer (snnTorch's IF requires it), no residual (Norse
    # delivers one input of a sum a step late)
    converter = dyadic_converter(residual_model(pool=False, residual=False))
    x = dyadic_inputs()
    path = export(converter, tmp_path)
    got = readers.READERS[reader](path, np.moveaxis(x, -1, 1), N_STEPS)
    with_integrate_and_fire = readers.snnify_run(converter, path, x, N_STEPS, dt=DT)
    swap_neurons(converter, rule(initial_voltage=0.5))
    assert_same_run(got, readers.snnify_run(converter, path, x, N_STEPS, dt=DT))
    # and that rule is not IntegrateAndFire's on this network
    assert any(
        not np.array_equal(got.spikes[name], spikes)
        for name, spikes in with_integrate_and_fire.spikes.items()
    )


def test_a_sinabs_network_exported_to_nir_runs_spike_for_spike(tmp_path):
    # the other direction: a network built in Sinabs (its own IAF: several
    # spikes per step, subtractive reset, no lower bound), written by
    # sinabs.to_nir and imported; dyadic weights and inputs, exact in float32
    needs("sinabs")
    import sinabs
    import torch

    batch = 4
    rng = np.random.default_rng(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        sinabs.layers.IAFSqueeze(batch_size=batch),
        sinabs.layers.SumPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(36, 10),
        sinabs.layers.IAFSqueeze(batch_size=batch),
        torch.nn.Linear(10, 3),
    )
    with torch.no_grad():
        for parameter in net.parameters():
            dyadic = rng.integers(-4, 6, parameter.shape) / 8
            parameter.copy_(torch.tensor(dyadic, dtype=torch.float32))
    graph = sinabs.to_nir(net, torch.zeros(batch, 1, 8, 8))
    sinabs.reset_states(net)  # to_nir ran the network once
    x = (rng.integers(0, 5, (batch, N_STEPS, 8, 8, 1)) / 4).astype("float32")
    with torch.no_grad():
        flat = torch.tensor(np.moveaxis(x, -1, 2).reshape(-1, 1, 8, 8))
        expected = net(flat).numpy().reshape(batch, N_STEPS, 3)
    imported = snnify.import_nir(graph, dt=DT)  # a power of two: exact voltages
    with snnify.Simulator(imported.net, dt=DT, progress_bar=False) as sim:
        got = sim.predict(x)[imported.outputs[imported.model.outputs[0]]]
    np.testing.assert_array_equal(got, expected)
    spikes = [node for node in imported.net.nodes if isinstance(node, NeuronsNode)]
    assert len(spikes) == 2 and np.abs(expected).max() > 1


def test_a_norse_network_exported_to_nir_runs_with_norses_rule(tmp_path):
    # Norse writes its Input with a batch axis of 1, which the import drops
    # (before: "needs a flat input"); its IAF neuron (one spike per step,
    # v > thr, reset to 0) is NorseIF, which the user sets after the import
    needs("norse")
    import norse.torch as norse
    import torch

    rng = np.random.default_rng(0)
    net = norse.SequentialState(
        torch.nn.Linear(6, 10), norse.IAFCell(), torch.nn.Linear(10, 3)
    )
    with torch.no_grad():
        for parameter in net.parameters():
            dyadic = rng.integers(-4, 6, parameter.shape) / 8
            parameter.copy_(torch.tensor(dyadic, dtype=torch.float32))
    graph = norse.to_nir(net, torch.zeros(1, 6))
    x = (rng.integers(0, 5, (4, N_STEPS, 6)) / 4).astype("float32")
    state, expected = None, []
    with torch.no_grad():
        for step in range(N_STEPS):
            output, state = net(torch.tensor(x[:, step]), state)
            expected.append(output.numpy())
    expected = np.stack(expected, axis=1)
    imported = snnify.import_nir(graph, dt=DT)
    outputs = []
    for neuron in (None, readers.NorseIF(initial_voltage=0.0)):
        if neuron is not None:
            swap_neurons(imported, neuron)
        with snnify.Simulator(imported.net, dt=DT, progress_bar=False) as sim:
            outputs.append(sim.predict(x)[imported.net.probes[0]])
    np.testing.assert_array_equal(outputs[1], expected)
    assert not np.array_equal(outputs[0], expected)  # snnify's own IF differs
