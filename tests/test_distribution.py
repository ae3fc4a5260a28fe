"""Data parallelism under ``keras.distribution.DataParallel`` (JAX, two devices).

:func:`workload` runs in a subprocess whose JAX has two virtual CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``, read when JAX is
imported): ``predict``, ``fit`` and ``evaluate`` once on one device and once
under ``DataParallel`` over both, recording the sharding of the arrays they
compute. The test compares the results and checks that the batch was split.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
N_STEPS = 20


def build():
    """A small converted conv network with seeded weights, conv0 probed."""
    import keras

    import snnify

    def init(seed):
        return keras.initializers.GlorotUniform(seed=seed)

    inp = keras.Input((8, 8, 1))
    # named layers: the initial voltages are seeded by the nodes' names
    conv0 = keras.layers.Conv2D(
        4, 3, activation="relu", kernel_initializer=init(0), name="conv0"
    )
    conv1 = keras.layers.Conv2D(
        6, 3, strides=2, activation="relu", kernel_initializer=init(1), name="conv1"
    )
    dense = keras.layers.Dense(3, kernel_initializer=init(2), name="dense")
    hidden = conv0(inp)
    out = dense(keras.layers.Flatten(name="flatten")(conv1(hidden)))
    converter = snnify.Converter(
        keras.Model(inp, out, name="net"),
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=500,
        synapse=0.005,
    )
    with converter.net:
        spikes = snnify.Probe(converter.layers[hidden])
    return converter, converter.outputs[out], spikes


def shardings_of_chunks(prediction_class, record: list):
    """Wrap predict's compiled chunks to record their outputs' shardings."""
    original = prediction_class.chunk_function

    def recording(self, *args, **kwargs):
        run = original(self, *args, **kwargs)

        def run_and_record(*run_args):
            histories, state = run(*run_args)
            record.extend(h.sharding for h in histories)
            return histories, state

        return run_and_record

    prediction_class.chunk_function = recording


def describe(sharding) -> dict:
    spec = getattr(sharding, "spec", None)  # a SingleDeviceSharding has none
    return {"devices": len(sharding.device_set), "spec": spec and list(spec)}


def workload(path):
    """Run one device, then two under DataParallel; save results to ``path``."""
    import jax
    import keras

    import snnify
    from snnify.prediction import Prediction

    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 1, 64)).astype("float32")
    y = rng.integers(0, 3, (8, 1, 1))
    chunk_shardings = []
    shardings_of_chunks(Prediction, chunk_shardings)
    results, shardings = {}, {}
    for run, distribution in (
        ("one", None),
        ("two", keras.distribution.DataParallel()),
    ):
        keras.distribution.set_distribution(distribution)
        converter, out, spikes = build()
        sim = snnify.Simulator(converter.net, progress_bar=False, seed=0)
        # 7 examples: padded to a multiple of the devices
        data = sim.predict(x[:7], n_steps=N_STEPS)
        results[f"{run}_output"] = data[out]
        results[f"{run}_spikes"] = data[spikes]
        inside = []

        def call(inputs, training=None, call=sim.keras_model.call, inside=inside):
            outputs = call(inputs, training)
            for value in [*inputs.values(), *outputs.values()]:
                jax.debug.inspect_array_sharding(value, callback=inside.append)
            return outputs

        sim.keras_model.call = call
        sim.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss={out: keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        )
        history = sim.fit(x, {out: y}, epochs=3, batch_size=4, shuffle=False, verbose=0)
        results[f"{run}_fit_loss"] = np.array(history.history["loss"])
        results[f"{run}_weights"] = np.concatenate(
            [keras.ops.convert_to_numpy(w).ravel() for w in converter.net.weights]
        )
        evaluated = sim.evaluate(x, {out: y}, n_steps=N_STEPS, batch_size=4, verbose=0)
        results[f"{run}_evaluate_loss"] = np.array(evaluated["loss"])
        shardings[run] = {
            "predict": [describe(s) for s in chunk_shardings],
            "fit_evaluate": [describe(s) for s in inside],
            "weights": [describe(w.value.sharding) for w in converter.net.weights],
        }
        chunk_shardings.clear()
    keras.distribution.set_distribution(None)
    results["shardings"] = np.array(json.dumps(shardings))
    np.savez(path, **results)


def test_data_parallel_matches_one_device(tmp_path):
    path = tmp_path / "results.npz"
    script = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import test_distribution
test_distribution.workload({str(path)!r})
"""
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    with np.load(path, allow_pickle=False) as data:
        got = {k: data[k] for k in data.files}
    shardings = json.loads(str(got["shardings"]))

    # the batch is split across both devices, the weights replicated
    two, one = shardings["two"], shardings["one"]
    assert two["predict"] and all(
        s == {"devices": 2, "spec": [None, "batch"]}
        for s in two["predict"]  # histories: (steps, batch, size)
    ), two["predict"]
    assert two["fit_evaluate"] and all(
        s["devices"] == 2 and s["spec"][0] == "batch"
        for s in two["fit_evaluate"]  # inputs and outputs: (batch, steps, size)
    ), two["fit_evaluate"]
    assert all(s["devices"] == 2 for s in two["weights"])
    assert all(s["devices"] == 1 for s in one["predict"] + one["fit_evaluate"])

    # the same spikes; outputs, losses and weights within float32 rounding
    # (a device's products may sum in another order; measured differences: 4e-8
    # in outputs up to 0.43, 1.2e-7 in losses about 1.1, 3e-8 in weights)
    assert (got["one_spikes"] > 0).mean() > 0.05, "too few spikes to compare"
    np.testing.assert_array_equal(got["two_spikes"], got["one_spikes"])
    np.testing.assert_allclose(got["two_output"], got["one_output"], atol=1e-5)
    np.testing.assert_array_equal(
        got["two_output"].argmax(-1), got["one_output"].argmax(-1)
    )
    assert got["one_fit_loss"][-1] < got["one_fit_loss"][0]  # it trained
    np.testing.assert_allclose(got["two_fit_loss"], got["one_fit_loss"], rtol=1e-5)
    np.testing.assert_allclose(got["two_weights"], got["one_weights"], atol=1e-5)
    np.testing.assert_allclose(
        got["two_evaluate_loss"], got["one_evaluate_loss"], rtol=1e-5
    )
