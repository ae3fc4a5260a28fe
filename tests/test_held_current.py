"""Spiking neurons whose current is held constant run in closed form.

The first spiking layer of an image classifier sees a constant current (the
first convolution of an image held for every step): its spikes at step ``t``
come from the current and ``t``, its voltage is updated once per chunk. The
plain path is ``configure_settings(closed_form=False)``. With
dyadic inputs, weights, scales and ``dt`` every sum is exact in float32 in both
paths, so the spikes must be identical; with arbitrary floats they may differ
where a voltage lies within rounding of the threshold.

(Every layer is named: Keras's automatic names count the layers made so far in
the process, and the initial voltages depend on the layers' names.)
"""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snnify
from snnify import engine
from snnify.graph import StepContext

DT = 2.0**-10
# eager PyTorch steps every neuron: the closed form costs it more operations
compiled_steps = pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="eager PyTorch: backend.steps_fused()"
)
SCALE = 1024  # currents of whole 256ths of a threshold per step
VOLTAGES = np.array([-0.5])  # below 0: allowed as an array (per channel)


class OwnRule(snnify.IntegrateAndFire):
    """A subclass with its own step rule (here: one spike per step at most)."""

    def step(self, J, state, dt):
        output, state = super().step(J, state, dt)
        return keras.ops.minimum(output, 1 / dt), state


def dyadic_network(seed=0):
    """conv -> conv (stride 2) -> dense, weights in sixteenths."""
    inp = keras.Input((6, 6, 1), name="pixels")
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv0")(inp)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv1")(x)
    out = keras.layers.Dense(5, name="dense")(keras.layers.Flatten(name="flatten")(x))
    model = keras.Model(inp, out, name="dyadic")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights(
            [rng.integers(-8, 9, w.shape) / 16 for w in layer.get_weights()]
        )
    return model, inp, out


def run(model, inp, out, neuron, x, n_steps, calls=1, closed_form=True):
    """Spikes of both layers and the outputs, over ``calls`` calls of run_steps."""
    converter = snnify.Converter(
        model, swap_activations={"relu": neuron}, scale_firing_rates=SCALE
    )
    layers = [converter.layers[model.get_layer(f"conv{i}").output] for i in (0, 1)]
    with converter.net:
        probes = [snnify.Probe(layer) for layer in layers]
        snnify.configure_settings(closed_form=closed_form)
    options = dict(dt=DT, minibatch_size=len(x), progress_bar=False, seed=3)
    with snnify.Simulator(converter.net, **options) as sim:
        for _ in range(calls):
            sim.run_steps(n_steps // calls, data={converter.inputs[inp]: x})
        return [sim.data[p] for p in [*probes, converter.outputs[out]]]


@pytest.mark.parametrize(
    "neuron",
    [
        snnify.IntegrateAndFire(),
        snnify.SpikingRectifiedLinear(0.5, 0.25),
        snnify.IntegrateAndFire(initial_voltage=VOLTAGES),
    ],
)
@pytest.mark.parametrize("chunk_steps, calls", [(engine.MAX_CHUNK_STEPS, 1), (7, 2)])
def test_held_neurons_spike_as_the_plain_path(neuron, chunk_steps, calls, monkeypatch):
    monkeypatch.setattr(engine, "MAX_CHUNK_STEPS", chunk_steps)
    model, inp, out = dyadic_network()
    x = np.random.default_rng(1).integers(0, 17, (4, 1, 36)) / 16
    held = run(model, inp, out, neuron, x, 30, calls)
    want = run(model, inp, out, neuron, x, 30, calls, closed_form=False)
    for got, expected in zip(held, want):
        np.testing.assert_array_equal(got, expected)
    spikes = held[0] * DT / neuron.amplitude * SCALE
    assert spikes.max() >= 2 and (spikes == 0).mean() > 0.2  # busy and silent neurons
    assert (held[1] > 0).mean() > 0.05


@compiled_steps
def test_plan_holds_the_neurons_of_constant_current_only():
    model, inp, out = dyadic_network()
    x = np.zeros((2, 6, 6, 1), "float32")
    for neuron, held in [(snnify.IntegrateAndFire(), ["conv0"]), (OwnRule(), [])]:
        converter = snnify.Converter(model, swap_activations={"relu": neuron})
        probes = [converter.outputs[out]]
        constant = {converter.inputs[inp].name: x}
        for context, expected in [
            (StepContext(spiking=True), held),
            (StepContext(spiking=True, training=True), []),
            (StepContext(spiking=True, closed_form=False), []),
        ]:
            plan = engine.plan_steps(probes, context, constant, record=True)
            names = [n.name.split(".")[0] for n in plan.held]
            assert names == expected, (neuron, context)


@pytest.mark.parametrize(
    "neuron",
    [
        snnify.IntegrateAndFire(min_voltage=-1),
        snnify.IntegrateAndFire(max_spikes_per_step=1),
        snnify.SignedIntegrateAndFire(),
        snnify.LIF(),
        OwnRule(),
    ],
)
def test_neurons_without_a_closed_form_say_so(neuron):
    assert not neuron.held_current_closed_form
    state = neuron.initial_state((1,), np.random.default_rng(0))
    with pytest.raises(NotImplementedError, match="no closed form"):
        neuron.held_current_step(np.ones(1), state, 3, DT)


def both_ways(neuron, J, state, n_steps, dt):
    """Outputs and final voltages of ``n_steps`` calls of ``step`` and in closed form.

    Returns ``(step outputs, closed-form outputs, step voltage, closed-form
    voltage)`` as NumPy arrays, outputs ``(n_steps, ...)``.
    """
    J = keras.ops.convert_to_tensor(J, "float32")
    start = {k: keras.ops.convert_to_tensor(v) for k, v in state.items()}
    state, stepped, held = start, [], []
    for t in range(1, n_steps + 1):
        out, state = neuron.step(J, state, dt)
        stepped.append(keras.ops.convert_to_numpy(out))
        out, last = neuron.held_current_step(J, start, t, dt)
        held.append(keras.ops.convert_to_numpy(out))
    voltages = (state["voltage"], last["voltage"])
    return (
        np.array(stepped),
        np.array(held),
        *map(keras.ops.convert_to_numpy, voltages),
    )


@settings(max_examples=60, deadline=None)
@given(
    charge=st.lists(st.integers(-3000, 3000), min_size=1, max_size=8),
    start=st.integers(-1024, 1023),
    n_steps=st.integers(1, 40),
)
def test_closed_form_equals_the_steps(charge, start, n_steps):
    # voltages and charges in 1024ths of a threshold: every sum is exact
    neuron = snnify.IntegrateAndFire(initial_voltage=np.array([start / 1024]))
    J = np.array(charge, "float32") / 1024 / DT
    state = neuron.initial_state(J.shape, None)
    stepped, held, voltage, held_voltage = both_ways(neuron, J, state, n_steps, DT)
    np.testing.assert_array_equal(held, stepped)
    np.testing.assert_array_equal(held_voltage, voltage)


def test_arbitrary_floats_differ_only_at_rounding():
    # uniform initial voltages and currents: float32 sums round differently
    # in the two paths; measured on 2.6e8 neuron-steps: one spike in 1.5e6
    # moved by one step, counts after 120 steps differ by at most 1
    rng = np.random.default_rng(0)
    neuron = snnify.IntegrateAndFire(initial_voltage="uniform")
    J = rng.normal(0, 300, (2000,)).astype("float32")
    state = neuron.initial_state(J.shape, rng)
    stepped, held, _, _ = both_ways(neuron, J, state, 120, 0.001)
    assert (held != stepped).mean() < 1e-4
    assert np.abs(held.sum(0) - stepped.sum(0)).max() <= 1000  # one spike (Hz)
    assert stepped.sum() > 0


@compiled_steps
def test_the_setting_reaches_the_engine(monkeypatch):
    model, inp, out = dyadic_network()
    x = np.zeros((4, 1, 36), "float32")
    planned = {True: [], False: []}
    original = engine.held_current_neurons
    for closed_form in (True, False):

        def record(*args, closed_form=closed_form):
            planned[closed_form].extend(original(*args))
            return original(*args)

        monkeypatch.setattr(engine, "held_current_neurons", record)
        run(model, inp, out, snnify.IntegrateAndFire(), x, 3, closed_form=closed_form)
    assert planned[True] and not planned[False]
