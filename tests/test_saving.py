"""Whole networks saved as .keras files and loaded in a fresh process."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import snnify

LOAD_AND_PREDICT = """
import sys, numpy as np, snnify
saved = snnify.load_network(sys.argv[1])
x = np.load(sys.argv[2])
with snnify.Simulator(saved.net, progress_bar=False, seed=3) as sim:
    data = sim.predict(x, n_steps=saved.n_steps)
np.savez(sys.argv[3], **{probe.label: data[probe] if probe.keep == "all"
                         else data[probe].sum for probe in saved.net.probes})
"""


def converted(seeded_model=None):
    inp = keras.Input((6, 6, 2), name="image")
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    flat = keras.layers.Flatten(name="flatten")(conv)
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(flat)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(hidden))
    x = np.random.default_rng(0).uniform(0, 1, (20, 1, 72)).astype("float32")
    report = snnify.calibrate(model, x, per_channel=True)
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire(min_voltage=-2.0)},
        scale_firing_rates=report,
        synapse={hidden: 0.004},
    )
    # a changed neuron type and scale, as after tuning
    converter.layers[hidden].neuron_type = snnify.SpikingRectifiedLinear(0.5, 0.25)
    converter.layers[hidden].scale = 321.0
    with converter.net:
        snnify.Probe(converter.layers[conv], synapse=0.01, label="rates", keep="stats")
        snnify.configure_settings(lif_smoothing=0.02)
    # weights trained through the network differ from the Keras model's
    kernel = converter.net.keras_layers[0].kernel
    kernel.assign(kernel * 1.5)
    return converter, x


def test_a_saved_network_predicts_identically_in_a_fresh_process(tmp_path, seeded):
    converter, x = converted()
    path = tmp_path / "net.keras"
    snnify.save_network(converter, path, n_steps=7)
    with snnify.Simulator(converter.net, progress_bar=False, seed=3) as sim:
        expected = sim.predict(x, n_steps=7)
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(path), str(tmp_path / "x.npy"),
         str(tmp_path / "out.npz")],
        env=dict(os.environ, KERAS_BACKEND=keras.backend.backend()),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as loaded:
        assert sorted(loaded.files) == sorted(p.label for p in converter.net.probes)
        for probe in converter.net.probes:
            want = expected[probe] if probe.keep == "all" else expected[probe].sum
            np.testing.assert_array_equal(loaded[probe.label], want)
            assert want.any()


def test_per_channel_negative_slopes_are_saved(tmp_path, seeded):
    # a PReLU's slopes, one per neuron, of either sign
    inp = keras.Input((8,))
    hidden = keras.layers.PReLU(name="prelu")(keras.layers.Dense(4)(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(hidden))
    slopes = np.float32([0.0, 0.1, -0.2, 0.3])
    model.get_layer("prelu").set_weights([slopes])
    neuron = snnify.IntegrateAndFire(negative_slope=slopes)
    converter = snnify.Converter(
        model, swap_activations={"prelu": neuron}, scale_firing_rates=100.0
    )
    snnify.save_network(converter, tmp_path / "net.keras")
    loaded = snnify.load_network(tmp_path / "net.keras")
    node = next(n for n in loaded.net.nodes if getattr(n, "neuron_type", None))
    np.testing.assert_array_equal(node.neuron_type.negative_slope, slopes)
    x = np.random.default_rng(0).normal(size=(16, 1, 8)).astype("float32")
    outputs = []
    for net in (converter.net, loaded.net):
        with snnify.Simulator(net, progress_bar=False) as sim:
            outputs.append(next(iter(sim.predict(x, n_steps=6).values())))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert converter.verify(x[:, 0])


def test_what_a_loaded_network_holds(tmp_path, seeded):
    converter, _ = converted()
    snnify.save_network(converter, tmp_path / "net.keras", n_steps=7, dt=0.002)
    saved = snnify.load_network(tmp_path / "net.keras")
    loaded = saved.converter
    assert (saved.n_steps, saved.dt) == (7, 0.002)
    assert loaded.net.settings == converter.net.settings
    for name in ("conv", "hidden"):
        original = converter.layers[converter.model.get_layer(name)]
        node = loaded.layers[saved.model.get_layer(name)]
        assert node.neuron_type == original.neuron_type
        np.testing.assert_array_equal(node.scale, original.scale)
    synapses = [n for n in loaded.net.nodes if type(n).__name__ == "SynapseNode"]
    assert sorted(n.synapse.tau for n in synapses) == [0.004, 0.01]
    # the saved Keras model has the network's weights, not the original ones
    np.testing.assert_array_equal(
        saved.model.get_layer("conv").get_weights()[0],
        converter.net.keras_layers[0].get_weights()[0],
    )
    # the configuration is plain JSON (safe mode needs no code)
    json.dumps(saved.get_config())
    # written through a temporary file, with the permissions of a new file
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "net.keras").st_mode & 0o777 == 0o666 & ~umask


def test_a_network_with_nested_models_saves_and_loads(tmp_path, seeded):
    inp = keras.Input((6,))
    block = keras.Sequential([keras.layers.Dense(8, activation="relu")], name="block")
    inner = keras.Input((8,))
    sub = keras.Model(inner, keras.ops.relu(keras.layers.Dense(8)(inner) + 1.0))
    model = keras.Model(inp, keras.layers.Dense(2)(sub(block(inp))))
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=50,
    )
    dense = block.layers[0]
    converter.layers[dense].scale = 77.0  # the scales saved are the network's
    dense_weights = converter.net.get_layer(f"block/{dense.name}").kernel
    dense_weights.assign(dense_weights * 2.0)  # and so are the weights
    snnify.save_network(converter, tmp_path / "net.keras")
    loaded = snnify.load_network(tmp_path / "net.keras").converter
    x = np.random.default_rng(0).uniform(0, 1, (8, 1, 6)).astype("float32")
    outputs = []
    for network in (converter, loaded):
        with snnify.Simulator(network.net, progress_bar=False) as sim:
            outputs.append(sim.predict(x, n_steps=6)[network.net.probes[0]])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert outputs[0].any()


def pooled_batch_norm_model():
    """Convolution, batch normalisation (statistics not the identity), ReLU,
    max pooling; weights from NumPy, the same on every backend."""
    inp = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    norm = keras.layers.BatchNormalization(name="norm")(conv)
    pooled = keras.layers.MaxPooling2D(name="pool")(keras.layers.ReLU()(norm))
    out = keras.layers.Dense(3, name="out")(keras.layers.Flatten()(pooled))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if layer.weights:
            shapes = [w.shape for w in layer.weights]
            layer.set_weights([rng.uniform(0.5, 1.5, s) for s in shapes])
    return model


@pytest.mark.parametrize(
    "options",
    [
        {"max_to_avg_pool": True},
        {"fold_batch_norm": True},
        {"split_shared_weights": True},
    ],
    ids=lambda options: next(iter(options)),
)
def test_conversion_options_are_saved(tmp_path, options):
    # before, a network converted with max_to_avg_pool loaded with max pooling
    # (other outputs, silently) and one with fold_batch_norm did not load
    converter = snnify.Converter(
        pooled_batch_norm_model(),
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=4.0,
        **options,
    )
    kernel = converter.net.get_layer("conv").kernel
    kernel.assign(kernel * 1.5)  # as after training (unfolded when saved)
    snnify.save_network(converter, tmp_path / "net.keras")
    loaded = snnify.load_network(tmp_path / "net.keras").converter
    for name, value in options.items():
        assert getattr(loaded, name) == value
    x = np.random.default_rng(0).uniform(0, 1, (8, 1, 64)).astype("float32")
    outputs = []
    for network in (converter, loaded):
        with snnify.Simulator(network.net, progress_bar=False) as sim:
            outputs.append(sim.predict(x, n_steps=6)[network.net.probes[0]])
    # folding again what was unfolded rounds the kernel
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    assert np.abs(outputs[0]).max() > 1.0


def test_load_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved network"):
        snnify.load_network(tmp_path / "missing.keras")
    inp = keras.Input((3,))
    keras.Model(inp, keras.layers.Dense(2)(inp)).save(tmp_path / "plain.keras")
    with pytest.raises(ValueError, match="holds a Keras model, not a saved snnify"):
        snnify.load_network(tmp_path / "plain.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="Could not load .*junk.keras"):
        snnify.load_network(tmp_path / "junk.keras")


def test_a_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    converter, _ = converted()
    path = tmp_path / "net.keras"
    path.write_bytes(b"previous")
    with pytest.raises(ValueError, match="is a .keras file"):
        snnify.save_network(converter, tmp_path / "net.h5")

    def broken_save(self, filepath, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(snnify.SavedNetwork, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        snnify.save_network(converter, path)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["net.keras"]
