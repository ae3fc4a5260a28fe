"""The same conversion and simulation on the TensorFlow and PyTorch backends.

Each backend runs :func:`workload` in a subprocess (``KERAS_BACKEND`` is read
once, at import) and saves its results to an ``.npz`` file; the test compares
them with the same workload run on JAX.

The integrate-and-fire run is exact in float32 on every backend: weights,
biases and inputs are multiples of 1/8, the scale is 1024 and ``dt`` is 1/1024,
so every sum and product is exact whatever order a backend computes it in, and
the spikes and outputs must be identical. The LIF run goes through ``exp`` and
``log1p``, whose last bit differs between backends, so it is compared within a
tolerance.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
BACKEND_MODULES = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}
SKIP_EXIT_CODE = 77
N_STEPS = 30


def workload(path):
    """Convert and simulate a small conv network; save the results to ``path``."""
    import reference as ref

    import snnify

    layers = ref.ZeroInitLayers()
    # named layers: the names seed the initial voltages, and automatic names
    # depend on what the process built before
    inp = keras.Input((8, 8, 1), name="x")
    conv0 = layers.Conv2D(4, 3, activation="relu", name="conv0")(inp)
    conv1 = layers.Conv2D(
        6, 3, strides=2, padding="same", activation="relu", name="conv1"
    )(conv0)
    pooled = layers.AveragePooling2D(1, name="pool")(conv1)
    out = layers.Dense(3, name="out")(layers.Flatten(name="flatten")(pooled))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            kernel, bias = (rng.integers(-4, 5, w.shape) / 8 for w in weights)
            layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    x = (rng.integers(0, 9, (5, 64)) / 8).astype("float32")

    results = {
        "backend": np.array(keras.backend.backend()),
        "predict": model.predict(x.reshape(5, 8, 8, 1), verbose=0),
        "verify": np.array(snnify.Converter(model).verify(rtol=1e-5)),
    }
    runs = [
        # seeded uniform initial voltages, exact arithmetic (see above)
        ("srl", snnify.SpikingRectifiedLinear(), 1024.0, None, 1 / 1024),
        ("lif", snnify.LIF(initial_voltage=0.5), 20.0, 0.005, 0.001),
    ]
    # per-channel scales, powers of 2: still exact
    channel_scales = np.array([1024.0, 512.0, 2048.0, 1024.0], "float32")
    runs.append(("channels", snnify.SpikingRectifiedLinear(), 1.0, None, 1 / 1024))
    for name, neuron, scale, synapse, dt in runs:
        converter = snnify.Converter(
            model,
            swap_activations={"relu": neuron},
            scale_firing_rates=scale,
            synapse=synapse,
        )
        if name == "channels":
            converter.layers[conv0].scale = channel_scales
        with converter.net:
            probe = snnify.Probe(converter.layers[conv0])
        with snnify.Simulator(converter.net, dt=dt, progress_bar=False, seed=3) as sim:
            data = sim.predict({converter.inputs[inp]: x[:, None]}, n_steps=N_STEPS)
        results[f"{name}_spikes"] = data[probe]
        results[f"{name}_output"] = data[converter.outputs[out]]
        if name == "srl":  # evaluate twice, with other steps in the data
            steps = np.repeat(x[:, None], N_STEPS, axis=1)
            with snnify.Simulator(
                converter.net, dt=dt, progress_bar=False, seed=3
            ) as sim:
                sim.compile(loss="mse")
                results["evaluate"] = np.array([
                    sim.evaluate(steps[:, :n], np.zeros((5, n, 3)), verbose=0)["loss"]
                    for n in (N_STEPS, 7)
                ])  # fmt: skip
    # the one call of low latency: its search computes rates with per-channel
    # scales while the weights can take gradients (on PyTorch, tensors that
    # require grad)
    converter = snnify.convert_for_steps(model, x.reshape(5, 8, 8, 1), n_steps=4)
    results["calibrated_scales"] = converter.layers[conv0].scale
    results.update(neuron_steps_on_numpy(rng))
    np.savez(path, **results)


def neuron_steps_on_numpy(rng):
    """The neurons' step functions called directly with NumPy arrays.

    As their docstring examples do: the initial state is NumPy and so is the
    current. ``J dt`` is a multiple of 1/8, so the integrate-and-fire rules are
    exact; LIF goes through ``expm1`` and ``log1p``.
    """
    import snnify

    dt = 1 / 1024
    currents = (rng.integers(-12, 13, (4, 6)) * 128).astype("float32")
    exact = [
        snnify.SpikingRectifiedLinear(),
        snnify.IntegrateAndFire(min_voltage=-1),
        snnify.IntegrateAndFire(max_spikes_per_step=1),
        snnify.SignedIntegrateAndFire(max_spikes_per_step=1),
        snnify.IntegrateAndFire(negative_slope=0.5),
    ]
    results = {}
    for key, neurons in (("exact", exact), ("lif", [snnify.LIF()])):
        outputs = []
        for neuron in neurons:
            state = neuron.initial_state((6,), np.random.default_rng(0))
            for current in currents:
                output, state = neuron.step(current, state, dt)
                outputs.append(keras.ops.convert_to_numpy(output))
        results[f"numpy_steps_{key}"] = np.array(outputs)
    held = snnify.SpikingRectifiedLinear()
    state = held.initial_state((6,), np.random.default_rng(0))
    output, _ = held.held_current_step(currents[0], state, 3, dt)
    results["numpy_held_step"] = keras.ops.convert_to_numpy(output)
    return results


def run_in_subprocess(backend, path):
    """Run :func:`workload` with ``KERAS_BACKEND=backend``; skip if not importable."""
    module = BACKEND_MODULES[backend]
    script = f"""
import importlib, sys
sys.path.insert(0, {str(TESTS)!r})
try:
    importlib.import_module({module!r})
except ImportError as error:
    print(f"{{type(error).__name__}}: {{error}}")
    sys.exit({SKIP_EXIT_CODE})
import test_backends
test_backends.workload({str(path)!r})
"""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(TESTS)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode == SKIP_EXIT_CODE:
        pytest.skip(
            f"the {backend} backend is not importable ({module}): "
            f"{result.stdout.strip()}"
        )
    assert result.returncode == 0, (
        f"the {backend} workload failed:\n{result.stdout}\n{result.stderr[-5000:]}"
    )


def load(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    path = tmp_path_factory.mktemp("jax") / "results.npz"
    if keras.backend.backend() == "jax":
        workload(path)
    else:
        run_in_subprocess("jax", path)
    return load(path)


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_backend_matches_jax(backend, jax_results, tmp_path):
    path = tmp_path / f"{backend}.npz"
    run_in_subprocess(backend, path)
    got, want = load(path), jax_results
    assert str(got["backend"]) == backend and str(want["backend"]) == "jax"
    # the same model and weights: Keras itself agrees
    np.testing.assert_allclose(got["predict"], want["predict"], rtol=1e-4, atol=1e-4)
    assert got["verify"] and want["verify"]  # True: within 1e-5 of Keras
    spikes, want_spikes = got["srl_spikes"], want["srl_spikes"]
    assert spikes.shape == want_spikes.shape == (5, N_STEPS, 6 * 6 * 4)
    assert (want_spikes > 0).mean() > 0.05, "too few spikes to compare"
    np.testing.assert_array_equal(spikes, want_spikes)
    np.testing.assert_array_equal(got["srl_output"], want["srl_output"])

    # the same spikes, summed in another order
    np.testing.assert_allclose(got["evaluate"], want["evaluate"], rtol=1e-5)
    np.testing.assert_array_equal(got["channels_spikes"], want["channels_spikes"])
    np.testing.assert_array_equal(got["channels_output"], want["channels_output"])
    assert not np.array_equal(want["channels_spikes"], want_spikes)
    # measured: equal to float32 rounding on TensorFlow and PyTorch
    np.testing.assert_allclose(
        got["calibrated_scales"], want["calibrated_scales"], rtol=1e-5
    )

    # the step functions given NumPy arrays (they raised on PyTorch before)
    for key in ("numpy_steps_exact", "numpy_held_step"):
        assert np.abs(want[key]).max() > 0, key
        np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_allclose(got["numpy_steps_lif"], want["numpy_steps_lif"])

    spikes, want_spikes = got["lif_spikes"], want["lif_spikes"]
    assert (want_spikes > 0).mean() > 0.05, "too few spikes to compare"
    # the last bit of exp and log1p may move a rare spike by a step
    same = (spikes == want_spikes).mean()
    assert same > 0.995, f"LIF: only {same:.2%} of the spikes agree"
    output, want_output = got["lif_output"], want["lif_output"]
    assert output.shape == want_output.shape == (5, N_STEPS, 3)
    scale = np.abs(want_output).max()
    mean_diff = np.abs(output.mean(axis=1) - want_output.mean(axis=1)).max()
    assert mean_diff < 0.01 * scale, f"LIF: mean output differs by {mean_diff}"
