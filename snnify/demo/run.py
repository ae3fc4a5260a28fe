"""The Keras-to-SNN tutorial, end to end: ``snnify demo``.

It trains a small convolutional network on MNIST through the converter and the
simulator, converts it to spiking neurons in every configuration that the
tutorial tries (presentation time, synaptic filters, firing-rate scaling,
firing-rate regularisation), and reports for each one the test accuracy, the
firing rates of the first convolutional layer and the time it took, as a table
on the terminal and as an HTML page with figures.

Run it from a shell with ``snnify demo`` (``snnify demo --quick`` for a
smoke test), or from Python::

    from snnify.demo import run_demo
    results = run_demo(out="snnify-demo", quick=True)

Example:
    >>> _flat(np.zeros((2, 28, 28), "uint8")).shape
    (2, 1, 784)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

import snnify
from snnify.demo import plots, report
from snnify.demo.configurations import (
    CHUNK,
    DEFAULT_N_TEST,
    HISTORY_BYTES,
    N_FIRST,
    REGULARIZED_EPOCHS,
    TARGET_RATE,
    TRAIN_BATCH,
    TUTORIAL_CONFIGURATIONS,
    Configuration,
    describe,
)
from snnify.demo.datasets import load_mnist
from snnify.demo.tutorial import build_model, seed_everything, train


@dataclass
class Result:
    """What one configuration gave.

    Attributes:
        configuration: the configuration.
        n_steps: steps simulated (smaller than the configuration's with --quick).
        n_first: images in the "first images" accuracy (400 unless fewer are
            tested).
        accuracy_first: accuracy on the first ``n_first`` test images.
        n_test: test images simulated.
        accuracy: accuracy on all ``n_test`` images.
        accuracy_per_step: accuracy on ``n_test`` images when the output is
            read at step 1, 2, ...
        rate_mean: mean firing rate (Hz) of the 1000 sampled conv0 neurons
            over the first ``n_first`` images.
        rate_max: highest firing rate (Hz) among them.
        seconds: wall time of the configuration (all simulations, figures).
        figures: PNG files written, relative to the output folder.
    """

    configuration: Configuration
    n_steps: int
    n_first: int
    accuracy_first: float
    n_test: int
    accuracy: float
    accuracy_per_step: list = field(repr=False)
    rate_mean: float
    rate_max: float
    seconds: float
    figures: list = field(default_factory=list)

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["configuration"] = dataclasses.asdict(self.configuration)
        return data


def converter_for(model, configuration: Configuration):
    neuron = (
        snnify.SpikingRectifiedLinear()
        if configuration.spiking
        else snnify.RectifiedLinear()
    )
    return snnify.Converter(
        model,
        swap_activations={keras.activations.relu: neuron},
        scale_firing_rates=configuration.scale,
        synapse=configuration.synapse,
    )


def run_configuration(
    model,
    tensors: dict,
    configuration: Configuration,
    params: str,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_steps: int | None = None,
    n_first: int = N_FIRST,
    n_figures: int = 1,
    out: str | None = None,
    index: int = 0,
    seed: int = 0,
) -> Result:
    """Simulate one configuration on the test images and draw its figures.

    The test images run in chunks of ``CHUNK``, recording the output at every
    step and running statistics of conv0 rather than its history, so memory
    does not grow with the number of images or steps. The figures need the
    history of conv0: a second, small run records it for the first
    ``n_figures`` images (unless the first chunk's history is small enough to
    record in the main run). Both runs use the same seed, so an image behaves
    identically in both.

    Args:
        model, tensors: as returned by :func:`snnify.demo.tutorial.build_model`.
        configuration: what to run.
        params: parameter file to load.
        x_test: ``(n, 1, 784)`` test images; y_test: ``(n,)`` labels.
        n_steps: steps to simulate (default: the configuration's).
        n_first: images over which the tutorial's accuracy and rates are taken.
        n_figures: examples to draw (one PNG each).
        out: folder for the figures (None: no figures).
        index: number of the configuration, used in the file names.
        seed: seed of the neurons' initial voltages.
    """
    start = time.perf_counter()
    n_steps = n_steps or configuration.n_steps
    n_test = len(x_test)
    n_first = min(n_first, n_test)
    n_figures = min(n_figures, n_test) if out is not None else 0
    chunk = max(CHUNK, n_first)
    size = int(np.prod(tensors["conv0"].shape[1:]))
    keep_history = min(chunk, n_test) * n_steps * size * 4 <= HISTORY_BYTES

    run = _Run(model, tensors, configuration, params, seed, history=keep_history)
    n_drawn = n_figures if keep_history else 0
    result, drawn = _simulate_test_images(
        run, x_test, y_test, n_steps, chunk, n_first, n_drawn
    )
    run.close()
    figures = []
    if n_figures:
        if drawn is None:  # a second run records the history of the drawn images
            run = _Run(model, tensors, configuration, params, seed, history=True)
            outputs, _, _ = run.predict(x_test[:n_figures], n_steps)
            drawn = run.history, outputs
            run.close()
        figures = _draw_figures(
            configuration, n_steps, *drawn, x_test, y_test, out, index
        )
    seconds = time.perf_counter() - start
    return dataclasses.replace(result, seconds=seconds, figures=figures)


def _simulate_test_images(
    run, x_test, y_test, n_steps, chunk, n_first, n_drawn
) -> tuple:
    """Simulate the test images with ``run``, in chunks of ``chunk`` images.

    Returns ``(result, drawn)``: the :class:`Result` (without its time and
    figures) and the conv0 history and outputs of the first ``n_drawn``
    images (None without ``n_drawn``). The first chunk gives the accuracy and
    conv0 rates over the first ``n_first`` images.
    """
    n_test = len(x_test)
    correct = np.zeros(n_steps)
    drawn = None
    for begin in range(0, n_test, chunk):
        rows = slice(begin, min(begin + chunk, n_test))
        outputs, mean, peak = run.predict(x_test[rows], n_steps)
        predictions = np.argmax(outputs, axis=-1)  # (batch, n_steps)
        correct += (predictions == y_test[rows, None]).sum(axis=0)
        if begin == 0:
            first_correct = int((predictions[:n_first, -1] == y_test[:n_first]).sum())
            sample = run.sample
            rate_mean, rate_max = _conv0_rates(
                run.configuration, mean[:n_first, sample], peak[:n_first, sample]
            )
            if n_drawn:
                drawn = run.history[:n_drawn], outputs[:n_drawn]
    accuracy_per_step = (correct / n_test).tolist()
    result = Result(
        configuration=run.configuration,
        n_steps=n_steps,
        n_first=n_first,
        accuracy_first=first_correct / n_first,
        n_test=n_test,
        accuracy=accuracy_per_step[-1],
        accuracy_per_step=accuracy_per_step,
        rate_mean=rate_mean,
        rate_max=rate_max,
        seconds=0.0,
    )
    return result, drawn


def _conv0_rates(configuration, mean, peak) -> tuple[float, float]:
    """The tutorial's mean and highest rate (Hz) of the sampled conv0 neurons.

    Its rates are the spikes over the run / its duration for spiking neurons,
    the rates at every step for rate neurons.
    """
    mean = mean * configuration.scale
    peak = mean if configuration.spiking else peak * configuration.scale
    return float(mean.sum()) / max(mean.size, 1), float(peak.max())


class _Run:
    """A converted network with its probes and simulator, for one configuration.

    With ``history`` the conv0 probe records every step (kept in
    ``self.history`` after each ``predict``); otherwise it keeps running
    statistics only.
    """

    def __init__(self, model, tensors, configuration, params, seed, history):
        self.configuration = configuration
        self.converter = converter_for(model, configuration)
        self.input = self.converter.inputs[tensors["inp"]]
        self.output = self.converter.outputs[tensors["dense"]]
        with self.converter.net:
            snnify.configure_settings(stateful=False)
            self.conv0 = snnify.Probe(
                self.converter.layers[tensors["conv0"]],
                keep="all" if history else "stats",
            )
        self.sample = plots.sample_neurons(self.conv0.size_in)
        self.history = None
        self.sim = snnify.Simulator(
            self.converter.net, minibatch_size=10, progress_bar=False, seed=seed
        )
        self.sim.load_params(params)

    def predict(self, x, n_steps):
        """``(output (batch, n_steps, 10), conv0 mean, conv0 max)`` per neuron."""
        data = self.sim.predict({self.input: x}, n_steps)
        conv0 = data[self.conv0]
        if self.conv0.keep == "all":
            self.history = conv0
            return data[self.output], conv0.mean(axis=1), conv0.max(axis=1)
        return data[self.output], conv0.mean, conv0.max

    def close(self):
        self.sim.close()


def _draw_figures(
    configuration, n_steps, conv0, outputs, x_test, y_test, out, index
) -> list:
    files = []
    for i in range(len(conv0)):
        fig = plots.plot_example(
            x_test[i, 0],
            conv0[i],
            outputs[i],
            spiking=configuration.spiking,
            scale=configuration.scale,
            label=int(y_test[i]),
            title=f"{index}. {configuration.name}: {describe(configuration, n_steps)}"
            f" (test image {i})",
        )
        name = f"{index:02d}-{configuration.slug}-image{i}.png"
        fig.savefig(os.path.join(out, name), dpi=100)
        files.append(name)
    return files


def _flat(images: np.ndarray) -> np.ndarray:
    """``(n, 28, 28)`` uint8 -> ``(n, 1, 784)`` float32, values kept in 0..255."""
    return images.reshape((len(images), 1, -1)).astype("float32")


@dataclass
class _DemoData:
    """The images and labels the demo trains and tests on."""

    name: str
    x_train: np.ndarray  # (n, 1, 784)
    y_train: np.ndarray  # (n, 1, 1)
    x_test: np.ndarray  # (n, 1, 784)
    y_test: np.ndarray  # (n,)


def _load_data(full_mnist: bool, n_train, n_test: int) -> _DemoData:
    (x_train, y_train), (x_test, y_test) = load_mnist(full=full_mnist)
    name = "MNIST (keras.datasets)" if len(x_train) > 10000 else "MNIST bundled subset"
    x_train, y_train = x_train[:n_train], y_train[:n_train]
    n_test = min(n_test, len(x_test))
    return _DemoData(
        name,
        _flat(x_train),
        y_train.reshape((-1, 1, 1)),
        _flat(x_test[:n_test]),
        y_test[:n_test].astype("int64"),
    )


def _train_parameters(which, model, tensors, data, path, epochs, quick, seed, log):
    """Train the ``"trained"`` or ``"regularized"`` parameters; the seconds it took."""
    start = time.perf_counter()
    if which == "trained":
        log(f"Training the network: {epochs} epoch(s), RMSprop 1e-3, minibatch "
            f"{TRAIN_BATCH}")  # fmt: skip
        validation = None if quick else (data.x_test, data.y_test.reshape(-1, 1, 1))
        train(
            model, tensors, data.x_train, data.y_train, path, epochs,
            validation=validation, verbose=2, seed=seed,
        )  # fmt: skip
    else:
        log(
            "Training again, from the same initial weights, with firing-rate "
            f"regularisation (conv0 and conv1 towards {TARGET_RATE:.0f} Hz): "
            f"{epochs} epoch(s), minibatch {TRAIN_BATCH}, weights averaged over "
            "the last updates"
        )
        train(
            model, tensors, data.x_train, data.y_train, path, epochs,
            regularize=True, minibatch_size=TRAIN_BATCH, verbose=2, seed=seed,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    log(f"  done in {seconds:.1f} s")
    return seconds


def run_demo(
    out: str = "snnify-demo",
    n_test: int | None = None,
    full_mnist: bool = False,
    quick: bool = False,
    epochs: int | None = None,
    regularized_epochs: int | None = None,
    n_train: int | None = None,
    n_figures: int = 1,
    seed: int = 0,
    configurations: Sequence[Configuration] = TUTORIAL_CONFIGURATIONS,
    log: Callable[[str], None] | None = None,
) -> list[Result]:
    """Run the tutorial's workflow and write the report into ``out``.

    Args:
        out: output folder (created if needed): ``index.html``, one PNG per
            configuration and example, ``accuracy.png``,
            ``accuracy-vs-steps.png``, ``results.json``, ``table.md``, the
            trained parameters (``params.npz``, ``params-regularized.npz``).
        n_test: test images to simulate (default ``DEFAULT_N_TEST``, 50 with
            ``quick``); the first 400 of them also give the tutorial's
            accuracy and the firing rates.
        full_mnist: train on the 60,000 MNIST images from
            ``keras.datasets`` (needs the internet once) instead of the
            bundled 10,000.
        quick: a smoke test: 2000 training images, 1 epoch of regularised
            training, 50 test images, a fifth of the steps.
        epochs: training epochs (default 2, the tutorial's).
        regularized_epochs: epochs of the regularised training (default 10; 1
            with quick). It starts from the same initial weights as the first
            training, as in the tutorial.
        n_train: training images (default all; 2000 with quick).
        n_figures: examples drawn per configuration.
        seed: seed of the weights, the training order and the neurons.
        configurations: what to run.
        log: where progress goes (default: print to stdout, flushed).

    Returns:
        The list of :class:`Result`, one per configuration.
    """
    log = log or (lambda message: print(message, flush=True))
    t_start = time.perf_counter()
    if quick:
        n_test, n_train = n_test or 50, n_train or 2000
        regularized_epochs = regularized_epochs or 1
    epochs = {
        "trained": epochs or 2,
        "regularized": regularized_epochs or REGULARIZED_EPOCHS,
    }
    os.makedirs(out, exist_ok=True)
    data = _load_data(full_mnist, n_train, n_test or DEFAULT_N_TEST)
    log(
        f"snnify demo: Keras backend {keras.backend.backend()}, {data.name}: "
        f"{len(data.x_train)} training images, {len(data.x_test)} test images; "
        f"output in {os.path.abspath(out)}"
    )
    seed_everything(seed)
    model, tensors = build_model()
    results, train_seconds = _run_configurations(
        configurations, model, tensors, data, epochs, out, quick, n_figures, seed, log
    )
    meta = _metadata(data, epochs, train_seconds, quick)
    _write_outputs(out, results, meta, t_start, log)
    return results


def _run_configurations(
    configurations, model, tensors, data, epochs, out, quick, n_figures, seed, log
) -> tuple[list, dict]:
    """Each configuration in turn, its parameters trained when first needed.

    Returns ``(results, {parameters: seconds of training})``.
    """
    results, train_seconds = [], {}
    for i, configuration in enumerate(configurations, 1):
        which = configuration.params
        path = os.path.join(out, "params" if which == "trained" else f"params-{which}")
        if which not in train_seconds:
            train_seconds[which] = _train_parameters(
                which, model, tensors, data, path, epochs[which], quick, seed, log
            )
        n_steps = max(2, configuration.n_steps // 5) if quick else None
        log(f"[{i}/{len(configurations)}] {configuration.name}: "
            f"{describe(configuration, n_steps)}")  # fmt: skip
        result = run_configuration(
            model, tensors, configuration, path, data.x_test, data.y_test,
            n_steps=n_steps, n_figures=n_figures, out=out, index=i, seed=seed,
        )  # fmt: skip
        results.append(result)
        log(
            f"  accuracy {100 * result.accuracy_first:.2f} % (first "
            f"{result.n_first}), {100 * result.accuracy:.2f} % ({result.n_test}); "
            f"conv0 mean {result.rate_mean:.1f} Hz, max {result.rate_max:.0f} Hz; "
            f"{result.seconds:.1f} s"
        )
    return results, train_seconds


def _metadata(data, epochs: dict, train_seconds: dict, quick: bool) -> dict:
    """What the report says of the data, the training and the mode."""
    return {
        "snnify": snnify.__version__,
        "Keras backend": f"{keras.backend.backend()} (Keras {keras.__version__})",
        "data": f"{data.name}: {len(data.x_train)} training images, "
        f"{len(data.x_test)} test images",
        "training": f"{epochs['trained']} epoch(s) in "
        f"{train_seconds.get('trained', 0):.0f} s; regularised: "
        f"{epochs['regularized']} epoch(s) in "
        f"{train_seconds.get('regularized', 0):.0f} s",
        "mode": "quick (smoke test: fewer images, epochs and steps)"
        if quick
        else "default",
    }


def _write_outputs(out, results, meta, t_start, log) -> None:
    """The figures, index.html, table.md and results.json; the table on ``log``."""
    figures = report.summary_figures(results, out)
    total = time.perf_counter() - t_start
    meta = {
        **meta,
        "total time": f"{total:.0f} s",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), Python "
        f"{platform.python_version()}",
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    report.write_html(os.path.join(out, "index.html"), results, meta, figures)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as file:
        file.write(report.markdown_table(results) + "\n\n")
        file.write(report.provenance(meta) + "\n")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as file:
        json.dump(
            {"meta": meta, "results": [r.as_dict() for r in results]}, file, indent=1
        )
    log("")
    log(report.format_table(results))
    log("")
    index = os.path.abspath(os.path.join(out, "index.html"))
    log(f"Total time {total:.0f} s. Report: {index}")


def main(args) -> int:
    """Entry point of ``snnify demo`` (``args`` from :mod:`snnify.cli`)."""
    run_demo(
        out=args.out,
        n_test=args.n_test,
        full_mnist=args.full_mnist,
        quick=args.quick,
        epochs=args.epochs,
        regularized_epochs=args.regularized_epochs,
        n_train=args.n_train,
        n_figures=args.figures,
        seed=args.seed,
    )
    return 0
