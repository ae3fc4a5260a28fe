"""The demo (``snnify demo``), the MNIST loader and the figures."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from snnify import cli
from snnify.demo import plots as plot
from snnify.demo import run as demo
from snnify.demo.datasets import load_mnist


def test_load_mnist_bundled_subset():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    assert x_train.shape == (10000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (10000,) and y_test.shape == (10000,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8
    assert x_train.max() == 255 and x_test.min() == 0
    assert set(np.unique(y_train)) == set(range(10))
    # the official test set starts with a 7, a 2 and a 1
    assert y_test[:3].tolist() == [7, 2, 1]


def test_load_mnist_full_falls_back_offline(monkeypatch, capsys):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    (x_train, _), (x_test, _) = load_mnist(full=True)
    assert x_train.shape == (10000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert "bundled subset" in capsys.readouterr().err


def test_neuron_activity_as_the_tutorial():
    # probe data of 2 spiking neurons over 4 steps of 1 ms, scale 2: the probe
    # holds amplitude * spikes / dt / scale
    spikes = np.array([[0, 1], [1, 0], [0, 2], [1, 1]], dtype=float)
    data = spikes / 0.001 / 2
    activity, rates = plot.neuron_activity(data, spiking=True, scale=2)
    np.testing.assert_allclose(activity, spikes)
    np.testing.assert_allclose(rates, [500, 1000])  # spikes / 4 ms
    activity, rates = plot.neuron_activity(
        np.full((3, 2), 40.0), spiking=False, scale=2
    )
    np.testing.assert_allclose(rates, np.full((3, 2), 80.0))


def test_plot_example_panels(tmp_path):
    rng = np.random.default_rng(0)
    n_steps = 20
    spikes = (rng.random((n_steps, 5000)) < 0.1) * 1000.0
    spikes[:, 4000] = 2000.0  # two spikes every step: the busiest neuron
    fig = plot.plot_example(
        np.zeros((28, 28)),
        spikes,
        rng.normal(size=(n_steps, 10)),
        spiking=True,
        label=7,
    )
    image, neurons, output, colorbar = fig.axes
    assert image.get_title() == "Input image (label 7)"
    _, expected = plot.neuron_activity(spikes[:, plot.sample_neurons(5000)], True)
    title = neurons.get_title()
    assert f"this image: 1000 sampled neurons fire at {expected.mean():.0f} Hz" in title
    assert "busiest 2000 Hz" in title  # neuron 4000 is among the sampled
    # the raster: one row per drawn neuron, one column per step, the busiest first
    raster = neurons.get_images()[0].get_array()
    assert raster.shape == (60, n_steps)
    np.testing.assert_array_equal(raster[0], np.full(n_steps, 2.0))
    assert colorbar.get_ylabel() == "spikes in the step"
    assert (
        "ms" in neurons.get_xlabel() and output.get_ylabel() == "output value (logit)"
    )
    legend = [t.get_text() for t in output.get_legend().get_texts()]
    assert legend == [f"{d}" + (" (true)" if d == 7 else "") for d in range(10)]
    fig.savefig(tmp_path / "example.png", dpi=100)
    assert (tmp_path / "example.png").stat().st_size > 10_000

    rates = plot.plot_example(
        np.zeros(784), np.full((5, 300), 0.5), np.zeros((5, 10)), spiking=False
    )
    assert rates.axes[3].get_ylabel() == "firing rate (Hz)"


def test_drawn_neurons_include_the_busiest():
    rates = np.arange(100.0)[::-1] % 17  # busiest: rates of 16 at several places
    drawn = plot.drawn_neurons(rates, 20, n_busiest=5)
    assert len(set(drawn.tolist())) == 20
    assert set(np.argsort(-rates, kind="stable")[:5]) <= set(drawn.tolist())
    assert np.all(np.diff(rates[drawn]) <= 0)  # sorted, busiest first


def test_accuracy_plots():
    fig = plot.plot_accuracy(["a", "b"], {"400": [0.9, 0.1], "all": [0.8, 0.2]}, 0.9)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b"]
    fig = plot.plot_accuracy_vs_steps({"a": [0.1, 0.5]}, reference=0.9)
    assert fig.axes[0].get_xlabel() == "Time step (dt = 1 ms)"


def test_cli_parser():
    args = cli.build_parser().parse_args(["demo", "--n-test", "30", "--backend", "jax"])
    assert (args.n_test, args.backend, args.out, args.quick) == (
        30,
        "jax",
        "snnify-demo",
        False,
    )
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["demo", "--n-test", "0"])


def test_configurations_are_the_tutorials():
    runs = [
        (c.neurons, c.n_steps, c.synapse, c.scale, c.params)
        for c in demo.TUTORIAL_CONFIGURATIONS
    ]
    assert runs == [
        ("rate", 10, None, 1, "trained"),
        ("spiking", 10, None, 1, "trained"),
        ("spiking", 50, None, 1, "trained"),
        ("spiking", 120, 0.001, 1, "trained"),
        ("spiking", 120, 0.005, 1, "trained"),
        ("spiking", 120, 0.01, 1, "trained"),
        ("spiking", 30, 0.01, 2, "trained"),
        ("spiking", 30, 0.01, 10, "trained"),
        ("spiking", 30, 0.01, 20, "trained"),
        ("spiking", 10, None, 1000, "trained"),
        ("rate", 10, None, 1, "regularized"),
        ("spiking", 30, 0.01, 1, "regularized"),
    ]


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "report"
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-m", "snnify", "demo", "--quick", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stdout = result.stdout
    n = len(demo.TUTORIAL_CONFIGURATIONS)
    for i, configuration in enumerate(demo.TUTORIAL_CONFIGURATIONS, 1):
        assert f"[{i}/{n}] {configuration.name}" in stdout  # progress
    lines = stdout.splitlines()
    top = next(
        i for i, line in enumerate(lines) if line.split()[:2] == ["#", "configuration"]
    )
    rows = lines[top + 2 : top + 2 + n]
    assert [int(row.split()[0]) for row in rows] == list(range(1, n + 1))
    assert str(out / "index.html") in stdout

    page = (out / "index.html").read_text()
    results = json.loads((out / "results.json").read_text())["results"]
    assert len(results) == n
    accuracy = {r["configuration"]["name"]: r["accuracy"] for r in results}
    # measured with seed 0 on JAX: rate neurons 94 %, spiking at scale 1000 94 %,
    # naive spiking in 2 steps 4 % (50 test images; margins of 5 images)
    assert accuracy["rate neurons"] >= 0.84  # trained: chance is 0.10
    assert abs(accuracy["spiking, scale 1000"] - accuracy["rate neurons"]) <= 0.04
    assert accuracy["spiking, 10 steps"] <= 0.30
    for r in results:
        assert 0 <= r["accuracy"] <= 1 and r["n_test"] == 50
        assert r["rate_max"] >= r["rate_mean"] >= 0
        assert len(r["accuracy_per_step"]) == r["n_steps"]
        assert r["figures"], r["configuration"]["name"]
        for name in r["figures"]:
            assert (out / name).stat().st_size > 10_000
            assert f'src="{name}"' in page
        assert r["configuration"]["name"] in page
    for name in ("accuracy.png", "accuracy-vs-steps.png"):
        assert (out / name).exists() and f'src="{name}"' in page
    # every file the page refers to exists; every anchor it links to is on it
    for target in re.findall(r'(?:src|href)="([^"]+)"', page):
        if target.startswith("#"):
            assert f'id="{target[1:]}"' in page, target
        else:
            assert (out / target).is_file(), target
    assert (out / "params.npz").exists() and (out / "params-regularized.npz").exists()
    table, provenance = (out / "table.md").read_text().split("\n\n")
    assert table.count("\n") == n + 1  # header, alignment, a row per configuration
    assert provenance.startswith("Written by `snnify demo`: Keras backend")


def test_backend_switch_reruns_the_command(monkeypatch):
    import keras

    calls = []

    class Reexec(Exception):
        pass

    def fake_execv(path, args):
        calls.append(args)
        raise Reexec

    other = "torch" if keras.backend.backend() != "torch" else "jax"
    monkeypatch.setenv("KERAS_BACKEND", keras.backend.backend())
    monkeypatch.setenv(cli._REEXEC_FLAG, "")  # restored after the test
    monkeypatch.setattr(cli.os, "execv", fake_execv)
    # the backend already in use: nothing to do
    cli._select_backend(keras.backend.backend(), ["demo"])
    assert calls == []
    with pytest.raises(Reexec):
        cli._select_backend(other, ["demo", "--quick", "--backend", other])
    assert calls == [
        [sys.executable, "-m", "snnify", "demo", "--quick", "--backend", other]
    ]
    assert os.environ["KERAS_BACKEND"] == other
    # a re-executed process that still has the wrong backend stops, not loops
    with pytest.raises(SystemExit, match="could not switch"):
        cli._select_backend(other, ["demo"])
