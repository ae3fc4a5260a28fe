"""Properties that hold for any input: random models, neurons and files (hypothesis).

Few examples each (the suite must stay fast); hypothesis replays the
failing example first when one is found.
"""

import os
import tempfile

import keras
import numpy as np
import pytest
import reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras import ops

import snnify
from snnify.threshold_search import if_counts

FEW = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- random models of supported layers ---------------------------------------
@st.composite
def small_models(draw):
    """A functional model of 1-3 image layers, then Flatten and 1-2 Dense layers."""
    size = draw(st.sampled_from([4, 6]))
    channels = draw(st.integers(1, 3))
    inp = keras.Input((size, size, channels), name="pixels")
    x = inp
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "pool", "batchnorm", "relu", "conv"]))
        if kind == "conv":
            x = keras.layers.Conv2D(
                draw(st.integers(1, 4)),
                draw(st.sampled_from([1, 3])),
                padding="same",
                activation=draw(st.sampled_from(["relu", None])),
                name=f"conv{i}",
            )(x)
        elif kind == "pool" and x.shape[1] >= 2:
            layer = draw(
                st.sampled_from(
                    [keras.layers.AveragePooling2D, keras.layers.MaxPooling2D]
                )
            )
            x = layer(2, name=f"pool{i}")(x)
        elif kind == "batchnorm":
            x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        else:
            x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in range(draw(st.integers(1, 2))):
        x = keras.layers.Dense(
            draw(st.integers(1, 6)),
            activation=draw(st.sampled_from(["relu", None])),
            name=f"dense{i}",
        )(x)
    model = keras.Model(inp, x)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # statistics that differ from (0, 1), so folding them matters
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, gamma.shape),
                    rng.normal(0, 0.5, beta.shape),
                    rng.normal(0, 0.5, mean.shape),
                    rng.uniform(0.5, 2, variance.shape),
                ]
            )
    return model, seed


@pytest.mark.filterwarnings("ignore:scale_firing_rates=.*no neurons")
@settings(FEW, max_examples=4)  # about 10 s each: a compiled simulation
@given(
    small_models(),
    st.floats(0.1, 100),
    st.booleans(),
)
def test_random_models_verify_and_scan_matches_rates(model_seed, scale, swap):
    """verify() holds, and predict's scan gives compute_rates at every step.

    With rate neurons (RectifiedLinear swapped for ReLU, any scale) the
    spiking simulation is the rate network at every step.
    """
    model, seed = model_seed
    options = {"scale_firing_rates": scale}
    if swap:
        options["swap_activations"] = {"relu": snnify.RectifiedLinear()}
    converter = snnify.Converter(model, **options)
    assert converter.verify()
    x = np.random.default_rng(seed).uniform(0, 1, (3, 1, *model.input_shape[1:]))
    probe = converter.outputs[model.output]
    with snnify.Simulator(converter.net, progress_bar=False, seed=0) as sim:
        scan = sim.predict(x.astype("float32"), n_steps=3)[probe]
    rates = converter.net.compute_rates({"pixels": x.astype("float32")}, [probe])
    rates = ops.convert_to_numpy(rates[probe.name])
    top = max(np.abs(rates).max(), 1e-6)
    for step in range(3):
        # float32 sums in another order: 1e-5 of the largest output (measured
        # at most 2e-7)
        np.testing.assert_allclose(scan[:, step], rates[:, 0], atol=1e-5 * top)


# --- neurons against the NumPy reference ---------------------------------------
def floats(low, high):
    return st.floats(low, high, allow_nan=False)


def arrays_of(low, high, n=12):
    return st.lists(floats(low, high), min_size=n, max_size=n).map(
        lambda v: np.array(v, np.float32)
    )


def run_one_step(neuron, J, state, dt):
    state = {k: ops.convert_to_tensor(v, "float32") for k, v in state.items()}
    out, state = neuron.step(ops.convert_to_tensor(J, "float32"), state, dt)
    return ops.convert_to_numpy(out), {
        k: ops.convert_to_numpy(v) for k, v in state.items()
    }


@FEW
@given(
    st.sampled_from(["spiking_rectified_linear", "integrate_and_fire"]),
    arrays_of(-3000, 6000),
    arrays_of(-1, 0.9999),
    st.floats(1e-4, 1e-2),
    st.floats(0.01, 10),
)
def test_rectified_steps_match_reference(kind, J, voltage, dt, amplitude):
    if kind == "spiking_rectified_linear":
        neuron = snnify.SpikingRectifiedLinear(amplitude)
        step = ref.spiking_rectified_linear_step
        voltage = np.abs(voltage)
    else:
        neuron = snnify.IntegrateAndFire(amplitude)
        step = ref.integrate_and_fire_step
    out, state = run_one_step(neuron, J, {"voltage": voltage}, dt)
    want, want_state = step(J, {"voltage": voltage.astype(np.float64)}, dt, amplitude)
    drive = np.maximum(J, 0) if kind == "spiking_rectified_linear" else J
    v = voltage.astype(np.float64) + drive.astype(np.float64) * dt
    # float32 may round a voltage within 1e-4 of a threshold to the other side
    clear = np.abs(v - np.round(v)) > 1e-4
    np.testing.assert_allclose(out[clear], want[clear], rtol=1e-5)
    np.testing.assert_allclose(
        state["voltage"][clear], want_state["voltage"][clear], atol=1e-3
    )


@FEW
@given(
    st.integers(1, 12),
    st.sampled_from([1, 2, None]),
    st.data(),
)
def test_signed_neuron_count_ignores_the_order_of_its_input(n_steps, limit, data):
    # drives on a grid of 1/64 thresholds and dt = 2**-10: every sum is exact
    drive = (
        np.array(
            data.draw(
                st.lists(
                    st.integers(-192, 192), min_size=n_steps * 5, max_size=n_steps * 5
                )
            ),  # fmt: skip
            "float32",
        ).reshape(n_steps, 5)
        / 64
    )
    voltage = np.array(data.draw(st.lists(st.integers(-64, 63), min_size=5,
                                          max_size=5)), "float32") / 64  # fmt: skip
    dt = 2.0**-10
    neuron = snnify.SignedIntegrateAndFire(max_spikes_per_step=limit)
    state = {**neuron.initial_state((5,), None), "voltage": voltage}
    total = np.zeros(5)
    for step in drive:
        out, state = run_one_step(neuron, step / dt, state, dt)
        total += out * dt
    want = np.maximum(np.floor(voltage + drive.sum(0)), 0)
    if limit is not None:
        want = np.minimum(want, limit * n_steps)
    np.testing.assert_array_equal(total, want)
    np.testing.assert_array_equal(state["spikes"], want)
    np.testing.assert_array_equal(if_counts(drive, voltage, limit, signed=True), want)
    # in reverse order: the same count
    reverse = np.zeros(5)
    state = {**neuron.initial_state((5,), None), "voltage": voltage}
    for step in drive[::-1]:
        out, state = run_one_step(neuron, step / dt, state, dt)
        reverse += out * dt
    np.testing.assert_array_equal(reverse, want)


@FEW
@given(
    arrays_of(-2, 40),
    arrays_of(0, 0.9999),
    arrays_of(0, 1),
    st.floats(2e-4, 2e-3),
    st.floats(0.005, 0.1),
    st.floats(0, 0.004),
)
def test_lif_step_matches_reference(J, voltage, refractory, dt, tau_rc, tau_ref):
    neuron = snnify.LIF(tau_rc=tau_rc, tau_ref=tau_ref)
    refractory = (refractory * tau_ref).astype(np.float32)
    # snnify's refractory_time counts the coming step too (as Nengo's): the
    # reference's time still to serve, plus dt
    state = {"voltage": voltage, "refractory_time": refractory + np.float32(dt)}
    out, new = run_one_step(neuron, J, state, dt)
    ref_state = {"voltage": voltage.astype(np.float64), "refractory": refractory}
    want, want_state = ref.lif_step(J, ref_state, dt, tau_rc=tau_rc, tau_ref=tau_ref)
    active = np.clip(dt - refractory, 0, dt)
    v_end = J + (voltage - J) * np.exp(-active / tau_rc)
    clear = (np.abs(v_end - 1) > 1e-4) | (active == 0)
    np.testing.assert_allclose(out[clear], want[clear], rtol=1e-5)
    np.testing.assert_allclose(
        new["voltage"][clear], want_state["voltage"][clear], atol=1e-4
    )


@FEW
@given(arrays_of(-5, 200), st.floats(0.005, 0.1), st.floats(0, 0.004))
def test_lif_rate_matches_reference(J, tau_rc, tau_ref):
    J = J[np.abs(J - 1) > 1e-3]  # the rate's log is steep at J = 1
    got = ops.convert_to_numpy(snnify.LIFRate(tau_rc, tau_ref).rate(J))
    want = ref.lif_rate(J.astype(np.float64), tau_rc, tau_ref)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


# --- random bytes as a parameter file ----------------------------------------
@pytest.fixture(scope="module")
def loaded():
    inp = keras.Input((3,), name="x")
    out = keras.layers.Dense(2, name="dense")(inp)
    converter = snnify.Converter(keras.Model(inp, out))
    sim = snnify.Simulator(converter.net, progress_bar=False)
    folder = tempfile.mkdtemp()
    yield converter, sim, folder
    sim.close()


@FEW
@given(
    st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=400).map(lambda b: b"PK\x03\x04" + b),  # a zip's start
        st.binary(max_size=400).map(lambda b: b"\x93NUMPY" + b),  # a .npy's start
    )
)
def test_random_bytes_as_parameter_file(loaded, content):
    converter, sim, folder = loaded
    path = os.path.join(folder, "random.npz")
    with open(path, "wb") as file:
        file.write(content)
    before = [ops.convert_to_numpy(v).copy() for v in converter.net.weights]
    with pytest.raises(ValueError, match="random.npz"):
        sim.load_params(path)
    for old, variable in zip(before, converter.net.weights):
        np.testing.assert_array_equal(old, ops.convert_to_numpy(variable))


# --- determinism -----------------------------------------------------------
def test_same_seed_gives_identical_spikes():
    keras.utils.set_random_seed(0)
    inp = keras.Input((10,), name="x")
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(3, name="out")(hidden)
    converter = snnify.Converter(
        keras.Model(inp, out),
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=50,
        synapse=0.005,
    )
    with converter.net:
        spikes = snnify.Probe(converter.layers[hidden])
    x = np.random.default_rng(0).uniform(0, 1, (7, 1, 10)).astype("float32")
    runs = []
    for seed in (3, 3, 4):
        with snnify.Simulator(converter.net, progress_bar=False, seed=seed) as sim:
            runs.append(sim.predict(x, n_steps=40)[spikes])
            runs.append(sim.predict(x, n_steps=40)[spikes])  # same simulator again
    assert runs[0].any()
    for again in runs[1:4]:
        np.testing.assert_array_equal(runs[0], again)  # bit for bit
    # another seed draws other initial voltages: other spike times
    assert not np.array_equal(runs[0], runs[4])
    np.testing.assert_array_equal(runs[4], runs[5])
