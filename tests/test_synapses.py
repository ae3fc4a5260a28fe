"""Lowpass against the NumPy reference (tests/reference.py), and its errors."""

import math

import numpy as np
import pytest
import reference as ref
from keras import ops

import snnify
from snnify.synapses import as_synapse


def run_lowpass(synapse, u, dt):
    state = synapse.initial_state(u.shape[1:])
    np.testing.assert_array_equal(state["output"], 0.0)
    state = {k: ops.convert_to_tensor(v) for k, v in state.items()}  # as the engine
    outputs = []
    for u_t in u:
        y, state = synapse.step(ops.convert_to_tensor(u_t, "float32"), state, dt)
        outputs.append(ops.convert_to_numpy(y))
    np.testing.assert_array_equal(outputs[-1], ops.convert_to_numpy(state["output"]))
    return np.array(outputs, np.float64)


@pytest.mark.parametrize("tau, dt", [(0.01, 0.001), (0.005, 0.001), (0.1, 0.002)])
def test_lowpass_matches_reference(tau, dt):
    rng = np.random.default_rng(0)
    n_steps = 70
    # spike trains (0 or k / dt), negative values and a smooth signal
    spikes = rng.poisson(0.3, (n_steps, 3, 4)) / dt
    signed = rng.normal(0, 50, (n_steps, 3, 2))
    smooth = np.sin(np.arange(n_steps) * 0.2)[:, None, None] * np.ones((1, 3, 1))
    u = np.concatenate([spikes, signed, smooth], axis=2)
    got = run_lowpass(snnify.Lowpass(tau), u, dt)
    want = ref.lowpass(u, tau, dt)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_lowpass_hand_computed():
    # a = exp(-1 ms / 10 ms); no delay: the first output already sees u[0]
    a = math.exp(-0.1)
    u = np.array([[1000.0], [0.0], [0.0], [500.0]])
    want = [(1 - a) * 1000]
    want.append(a * want[-1])
    want.append(a * want[-1])
    want.append(a * want[-1] + (1 - a) * 500)
    np.testing.assert_allclose(ref.lowpass(u, 0.01, 0.001)[:, 0], want)
    np.testing.assert_allclose(
        run_lowpass(snnify.Lowpass(0.01), u, 0.001)[:, 0], want, rtol=1e-6
    )
    assert snnify.Lowpass(0.01).decay(0.001) == pytest.approx(a)


def test_lowpass_of_constant_input_converges_to_it():
    u = np.full((400, 2), [30.0, -7.0])
    y = run_lowpass(snnify.Lowpass(0.02), u, 0.001)
    np.testing.assert_allclose(y[-1], [30.0, -7.0], rtol=1e-6)
    # after 20 steps (one time constant): y = u * (1 - a ** 20) = u * (1 - 1 / e)
    assert y[19, 0] / 30 == pytest.approx(1 - math.exp(-1), abs=1e-6)


@pytest.mark.parametrize("tau", [0.0, -0.01, float("nan"), -np.inf, np.inf])
def test_lowpass_rejects_bad_tau(tau):
    with pytest.raises(
        ValueError, match="time constant must be positive.*Received: tau="
    ):
        snnify.Lowpass(tau)


@pytest.mark.parametrize("tau", [-0.01, float("nan"), float("inf")])
def test_synapse_option_rejects_bad_tau(tau):
    with pytest.raises(ValueError, match="time constant must be positive"):
        as_synapse(tau)


@pytest.mark.parametrize("synapse", ["0.01", True, [0.01]])
def test_synapse_option_rejects_other_types(synapse):
    with pytest.raises(TypeError, match="A synapse must be None, a time constant"):
        as_synapse(synapse)


def test_synapse_option_values():
    assert as_synapse(None) is None
    assert as_synapse(0) is None  # no filter
    assert as_synapse(0.01) == snnify.Lowpass(0.01)
    assert as_synapse(np.float32(0.5)) == snnify.Lowpass(0.5)
    lowpass = snnify.Lowpass(0.003)
    assert as_synapse(lowpass) is lowpass
    assert repr(lowpass) == "Lowpass(tau=0.003)"
    assert snnify.Lowpass(0.01) != snnify.Lowpass(0.02)
    assert hash(snnify.Lowpass(0.01)) == hash(snnify.Lowpass(0.01))
