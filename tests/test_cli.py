"""The ``snnify`` command line end to end on a small model, and its error paths."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import snnify
from snnify import cli

COMMANDS = ["convert", "evaluate", "sweep", "export-nir", "demo"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small Keras model (.keras and .h5) and .npz data sets in 0..255."""
    folder = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 1))
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(
        keras.layers.Flatten(name="flatten")(conv)
    )
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(hidden))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (120, 6, 6)).astype("uint8")
    y = np.argmax(model.predict(x[..., None] / 255.0, verbose=0), axis=-1)
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")
    (folder / "notes.txt").write_text("not arrays")
    np.savez(folder / "train.npz", x_train=x[:80], y_train=y[:80])
    np.savez(folder / "test.npz", x=x[80:], y=y[80:])
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=100,
    )
    snnify.save_network(converter, folder / "net.keras", n_steps=4)
    return folder


def run(argv, capsys):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_convert_evaluate_sweep_export(files, tmp_path, capsys):
    net = tmp_path / "net.keras"
    status, out, _ = run(
        ["convert", files / "model.keras", "--data", files / "train.npz",
         "--input-scale", "1/255", "--steps", 4, "-o", net],
        capsys,
    )  # fmt: skip
    assert status == 0 and f"wrote {net}" in out
    assert "search" in out  # the calibration table (thresholds searched)
    saved = snnify.load_network(net)
    assert saved.n_steps == 4

    report = tmp_path / "eval.json"
    status, out, _ = run(
        ["evaluate", net, files / "test.npz", "--input-scale", "1/255",
         "--json", report],
        capsys,
    )  # fmt: skip
    assert status == 0 and f"wrote {report}" in out
    with np.load(files / "test.npz") as data:
        x, y = data["x"].reshape(40, 1, 36) / 255.0, data["y"]
    expected = snnify.measure(saved.converter, x, 4, y=y)
    measured = json.loads(report.read_text())
    assert measured["accuracy"] == pytest.approx(expected.accuracy)
    assert measured["spikes"] == pytest.approx(expected.spikes)
    assert [layer["name"] for layer in measured["layers"]] == ["conv", "hidden"]
    assert f"accuracy: {100 * expected.accuracy:.2f} %" in out

    status, out, _ = run(
        ["sweep", files / "model.keras", files / "test.npz", "--calibration",
         files / "train.npz", "--input-scale", "1/255", "--steps", "1,4",
         "--per-channel", "--tolerance", 0.5, "--out", tmp_path / "sweep"],
        capsys,
    )  # fmt: skip
    assert status == 0 and "best within 0.5 of the ANN: " in out
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert table.count("| p99.9 |") == 2 and table.count("| p99.9 per channel |") == 2
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000

    status, out, _ = run(["export-nir", net, "-o", tmp_path / "net.nir"], capsys)
    assert status == 0 and f"wrote {tmp_path / 'net.nir'}: 8 nodes" in out
    nir = pytest.importorskip("nir")
    graph = nir.read(str(tmp_path / "net.nir"))
    assert sum(type(n).__name__ == "IF" for n in graph.nodes.values()) == 2


def test_evaluate_reads_one_hot_labels_as_their_classes(files, tmp_path, capsys):
    with np.load(files / "test.npz") as data:
        x, y = data["x"], data["y"]
    np.savez(tmp_path / "one_hot.npz", x=x, y=np.eye(3)[y])
    reports = []
    for name, labels in (
        ("labels", files / "test.npz"),
        ("one_hot", tmp_path / "one_hot.npz"),
    ):
        report = tmp_path / f"{name}.json"
        status, _, _ = run(
            ["evaluate", files / "net.keras", labels, "--json", report], capsys
        )
        assert status == 0
        reports.append(json.loads(report.read_text())["accuracy"])
    assert reports[1] == reports[0]  # "120 labels for 40 inputs" before
    np.savez(tmp_path / "short.npz", x=x, y=y[:30])
    status, _, err = run(
        ["evaluate", files / "net.keras", tmp_path / "short.npz"], capsys
    )
    assert status == 1 and "one per example, for 40 examples" in err


def test_convert_an_h5_model_with_a_fixed_scale(files, tmp_path, capsys):
    net = tmp_path / "net.keras"
    status, out, _ = run(
        ["convert", files / "model.h5", "--scale", 200, "--neuron", "spiking-relu",
         "--synapse", 0.005, "-o", net],
        capsys,
    )  # fmt: skip
    assert status == 0, out
    converter = snnify.load_network(net).converter
    node = converter.layers[converter.model.get_layer("conv")]
    assert node.scale == 200.0
    assert node.neuron_type == snnify.SpikingRectifiedLinear(initial_voltage=0.5)


def test_convert_with_a_fixed_scale_makes_every_rectifier_neurons(tmp_path, capsys):
    # before, --scale swapped ReLU only: ReLU6 and leaky ReLUs stayed exact
    inp = keras.Input((4,))
    six = keras.layers.Dense(8, activation="relu6", name="six")(inp)
    leaky = keras.layers.LeakyReLU(0.1, name="leaky")(keras.layers.Dense(8)(six))
    keras.Model(inp, keras.layers.Dense(2)(leaky)).save(tmp_path / "model.keras")
    net = tmp_path / "net.keras"
    with pytest.warns(snnify.converter.UnclippedWarning, match=r"layer\(s\) 'six'"):
        status, out, _ = run(
            ["convert", tmp_path / "model.keras", "--scale", 50, "-o", net], capsys
        )
    assert status == 0, out
    converter = snnify.load_network(net).converter
    six, leaky = (converter.layers[converter.model.get_layer(name).output]
                  for name in ("six", "leaky"))  # fmt: skip
    assert six.neuron_type == snnify.IntegrateAndFire() and six.scale == 50.0
    assert leaky.neuron_type == snnify.IntegrateAndFire(negative_slope=0.1)


def test_convert_for_one_spike_per_step(files, tmp_path, capsys):
    # thresholds chosen for one spike per step are at least as high as those
    # for two (the default): no candidate below the activations they clip
    scales = []
    for option in ([], ["--spikes-per-step", 1], ["--spikes-per-step", "auto"]):
        net = tmp_path / f"net{len(scales)}.keras"
        status, out, _ = run(
            ["convert", files / "model.keras", "--data", files / "train.npz",
             "--input-scale", "1/255", "--steps", 4, "-o", net, *option],
            capsys,
        )  # fmt: skip
        assert status == 0, out
        converter = snnify.load_network(net).converter
        scales.append(converter.layers[converter.model.get_layer("conv")].scale)
    assert np.all(scales[1] <= scales[0]) and np.any(scales[1] < scales[0])
    # "auto": two spikes per step, or four (thresholds lower still)
    assert np.all(scales[2] >= scales[0])


def test_convert_with_signed_neurons(files, tmp_path, capsys):
    net = tmp_path / "net.keras"
    status, out, _ = run(
        ["convert", files / "model.keras", "--data", files / "train.npz",
         "--input-scale", "1/255", "--steps", 4, "--neuron",
         "signed-integrate-and-fire", "-o", net],
        capsys,
    )  # fmt: skip
    assert status == 0, out
    converter = snnify.load_network(net).converter
    neuron = converter.layers[converter.model.get_layer("conv")].neuron_type
    assert isinstance(neuron, snnify.SignedIntegrateAndFire)
    assert "search" in out  # searched like IntegrateAndFire


def test_convert_a_qcfs_model_without_data(files, tmp_path, capsys):
    # a fine-tuned model's thresholds give the scales: 4 levels in 2 steps,
    # exact (signed neurons, up to two spikes per step)
    inp = keras.Input((6, 6, 1))
    x = snnify.QCFS(4, 2.0, name="conv_qcfs")(keras.layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    model.save(tmp_path / "qcfs.keras")
    net = tmp_path / "net.keras"
    status, out, _ = run(
        ["convert", tmp_path / "qcfs.keras", "--steps", 2, "-o", net], capsys
    )
    assert status == 0, out
    saved = snnify.load_network(net)
    qcfs = saved.converter.layers[saved.model.get_layer("conv_qcfs")]
    assert qcfs.neuron_type == snnify.SignedIntegrateAndFire(max_spikes_per_step=2)
    x = np.random.default_rng(0).uniform(0, 1, (8, 6, 6, 1)).astype("float32")
    with snnify.Simulator(saved.net, progress_bar=False) as sim:
        out = sim.predict(x.reshape(8, 1, -1), n_steps=saved.n_steps)
    got = out[saved.converter.outputs[saved.model.outputs[0]]].mean(axis=1)
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)
    status, _, err = run(
        ["convert", tmp_path / "qcfs.keras", "--steps", 3, "-o", net], capsys
    )
    assert status == 1 and "one of [1, 2, 4]. Received: n_steps=3" in err


def test_convert_finds_qcfs_layers_in_a_nested_model(tmp_path, capsys):
    # quantize_model quantises nested models: the CLI must find their layers
    block_input = keras.Input((4,))
    block = keras.Model(block_input, snnify.QCFS(4, 2.0)(block_input), name="base")
    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Dense(3)(block(inp))).save(tmp_path / "q.keras")
    status, out, err = run(
        ["convert", tmp_path / "q.keras", "--steps", 2, "-o", tmp_path / "n.keras"],
        capsys,
    )
    assert status == 0, err
    assert "QCFS layers: thresholds from the model" in err


def bad_inputs(files, tmp_path):
    model, train = files / "model.keras", files / "train.npz"
    out = tmp_path / "net.keras"
    return {
        "missing model": (
            ["convert", tmp_path / "none.keras", "--scale", 10, "-o", out],
            "model file .*none.keras' does not exist",
        ),
        "not a model": (
            ["convert", train, "--scale", 10, "-o", out],
            "could not load .*train.npz' as a Keras model",
        ),
        "no calibration": (
            ["convert", model, "-o", out],
            "give --data .* or --scale",
        ),
        "no spikes per step": (
            ["convert", model, "--data", train, "--spikes-per-step", 0, "-o", out],
            "spikes_per_step must be an integer >= 1",
        ),
        "wrong shape": (
            ["convert", model, "--data", files / "test.npz", "--x-key", "y", "-o", out],
            r"inputs in .* have shape \(40,\); the model takes \(6, 6, 1\)",
        ),
        "missing key": (
            ["convert", model, "--data", train, "--x-key", "images", "-o", out],
            "has no input array: looked for images; it has x_train, y_train",
        ),
        "missing folder": (
            ["convert", model, "--scale", 10, "-o", tmp_path / "no" / "net.keras"],
            "the folder of .* does not exist",
        ),
        "not a saved network": (
            ["evaluate", model, files / "test.npz", "--steps", 4],
            "holds a Keras model, not a saved snnify network",
        ),
        "data is not npz": (
            ["evaluate", files / "net.keras", files / "notes.txt"],
            r"is not an \.npz file of arrays",
        ),
        "data is a model": (
            ["evaluate", files / "net.keras", model],
            r"model.keras' is a zip file but not an \.npz file of arrays",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["missing model", "not a model", "no calibration", "wrong shape", "missing key",
     "missing folder", "not a saved network", "data is not npz", "data is a model"],
)  # fmt: skip
def test_bad_input_gives_one_line_and_no_file(files, tmp_path, capsys, case):
    argv, message = bad_inputs(files, tmp_path)[case]
    status, _, err = run(argv, capsys)
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"snnify {argv[0]}: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert os.listdir(tmp_path) == []  # no output, no temporary file


def test_unknown_option_and_help(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["convert", "model.keras", "-o", "n.keras", "--stepz", "4"])
    assert exit.value.code == 2
    assert "unrecognized arguments: --stepz 4" in capsys.readouterr().err
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit:
            cli.main([command, "--help"])
        assert exit.value.code == 0
        assert f"example:\n  snnify {command}" in capsys.readouterr().out


def test_version_and_errors_in_a_fresh_process(tmp_path):
    command = [sys.executable, "-m", "snnify"]
    result = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("snnify ")
    result = subprocess.run(
        [*command, "export-nir", str(tmp_path / "none.keras"), "-o", "x.nir"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"snnify export-nir: error: network file '{tmp_path / 'none.keras'}' "
        "does not exist"
    )


OWN_CLASSES = """
import keras


class Doubled(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


class Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, activation="relu")
        self.doubled = Doubled()
        self.flatten = keras.layers.Flatten()
        self.out = keras.layers.Dense(3)

    def call(self, x):
        return self.out(self.flatten(self.doubled(self.conv(x))))
"""


def test_models_of_classes_of_their_own_load_with_the_file_that_defines_them(
    files, tmp_path, capsys
):
    source = tmp_path / "own_classes.py"
    source.write_text(OWN_CLASSES)
    module = {}
    exec(compile(OWN_CLASSES, str(source), "exec"), module)
    model = module["Net"]()  # subclassed, with a layer of its own
    model(np.zeros((1, 6, 6, 1), "float32"))
    model.save(tmp_path / "own.keras")
    convert = ["convert", tmp_path / "own.keras", "--data", files / "train.npz",
               "--input-scale", "1/255", "--steps", 4, "-o", tmp_path / "n.keras"]  # fmt: skip
    status, _, err = run(convert, capsys)
    assert status == 1
    assert "give the Python file that defines them with --custom-objects" in err
    status, out, err = run([*convert, "--custom-objects", source], capsys)
    assert status == 0, err
    assert "search" in out  # the traced model's ReLU became neurons, searched
    evaluate = ["evaluate", tmp_path / "n.keras", files / "test.npz",
                "--input-scale", "1/255"]  # fmt: skip
    status, _, err = run(evaluate, capsys)  # the saved network keeps Doubled
    assert status == 1 and "--custom-objects" in err
    status, out, err = run([*evaluate, "--custom-objects", source], capsys)
    assert status == 0 and "accuracy" in out, err
    status, _, err = run([*evaluate, "--custom-objects", files / "notes.txt"], capsys)
    assert status == 1 and "must be a Python file" in err
    (tmp_path / "broken.py").write_text("raise RuntimeError('not today')")
    status, _, err = run(
        [*evaluate, "--custom-objects", tmp_path / "broken.py"], capsys
    )
    assert status == 1 and "failed (RuntimeError: not today)" in err
