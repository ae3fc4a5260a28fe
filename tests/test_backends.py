"""The same conversion and simulation on the TensorFlow and PyTorch backends.

Each backend runs :func:`workload` in a subprocess (``KERAS_BACKEND`` is read
once, at import) and saves its results to an ``.npz`` file; the test compares
them with the same workload run on JAX.
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
    inp = keras.Input((8, 8, 1))
    conv0 = layers.Conv2D(4, 3, activation="relu")(inp)
    conv1 = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(conv0)
    pooled = layers.AveragePooling2D(1)(conv1)
    out = layers.Dense(3)(layers.Flatten()(pooled))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            kernel, bias = weights
            fan_in = np.prod(kernel.shape[:-1])
            kernel = rng.normal(0, np.sqrt(2 / fan_in), kernel.shape)
            bias = rng.normal(0.2, 0.2, bias.shape)
            layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    x = rng.uniform(0, 1, (5, 64)).astype("float32")

    results = {
        "backend": np.array(keras.backend.backend()),
        "predict": model.predict(x.reshape(5, 8, 8, 1), verbose=0),
        "verify": np.array(snnify.Converter(model).verify()),
    }
    for name, neuron in [
        ("srl", snnify.SpikingRectifiedLinear()),  # seeded uniform voltages
        ("lif", snnify.LIF(initial_voltage=0.5)),
    ]:
        converter = snnify.Converter(
            model,
            swap_activations={"relu": neuron},
            scale_firing_rates=1000.0 if name == "srl" else 20.0,
            synapse=0.005,
        )
        with converter.net:
            probe = snnify.Probe(converter.layers[conv0])
        with snnify.Simulator(converter.net, progress_bar=False, seed=3) as sim:
            data = sim.predict({converter.inputs[inp]: x[:, None]}, n_steps=N_STEPS)
        results[f"{name}_spikes"] = data[probe]
        results[f"{name}_output"] = data[converter.outputs[out]]
    np.savez(path, **results)


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
    assert got["verify"] <= 1e-5 and want["verify"] <= 1e-5
    for name in ("srl", "lif"):
        spikes, want_spikes = got[f"{name}_spikes"], want[f"{name}_spikes"]
        assert spikes.shape == want_spikes.shape == (5, N_STEPS, 6 * 6 * 4)
        assert (want_spikes > 0).mean() > 0.05, "too few spikes to compare"
        # float rounding of the convolution may move a rare spike by a step
        same = np.isclose(spikes, want_spikes, rtol=1e-5, atol=1e-3).mean()
        assert same > 0.995, f"{name}: only {same:.2%} of the spikes agree"
        output, want_output = got[f"{name}_output"], want[f"{name}_output"]
        assert output.shape == want_output.shape == (5, N_STEPS, 3)
        scale = np.abs(want_output).max()
        mean_diff = np.abs(output.mean(axis=1) - want_output.mean(axis=1)).max()
        assert mean_diff < 0.01 * scale, f"{name}: mean output differs by {mean_diff}"
        if same == 1.0:
            np.testing.assert_allclose(
                output, want_output, rtol=1e-4, atol=1e-4 * scale
            )
