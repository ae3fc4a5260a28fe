"""The Keras-to-SNN tutorial, end to end: ``snnify demo``.

It trains a small convolutional network on MNIST through the converter and the
simulator, converts it to spiking neurons in every configuration that the
tutorial tries (presentation time, synaptic filters, firing-rate scaling,
firing-rate regularisation), and reports for each one the test accuracy, the
firing rates of the first convolutional layer and the time it took, as a table
on the terminal and as an HTML page with figures.

Example:
    >>> from snnify.demo import TUTORIAL_CONFIGURATIONS
    >>> [c.n_steps for c in TUTORIAL_CONFIGURATIONS]
    [10, 10, 50, 120, 120, 120, 30, 30, 30, 10, 10, 30]

Run it from a shell with ``snnify demo`` (``snnify demo --quick`` for a
smoke test), or from Python::

    from snnify.demo import run_demo
    results = run_demo(out="snnify-demo", quick=True)
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

# images whose accuracy the tutorial reports, and whose conv0 rates we summarise
N_FIRST = 400
# test images simulated at once (bounds the memory of the conv0 statistics)
CHUNK = 1000
# largest conv0 history recorded in the main run instead of a separate one
HISTORY_BYTES = 256 * 2**20
# default number of test images: as many as fit the 5-minute budget of a
# default run on a 2-core CPU (use --n-test 10000 for the whole test set)
DEFAULT_N_TEST = 1000
TARGET_RATE = 250.0  # Hz, the tutorial's target for the regularised network
RATE_LOSS_WEIGHT = 1e-3
TRAIN_BATCH = 200  # the tutorial's minibatch
# The tutorial's regularised training makes 3,000 updates (10 epochs of 60,000
# images in minibatches of 200). On 10,000 images within the time budget, 5
# epochs in minibatches of 20 make 2,500 updates, for about the same compute as
# 5 epochs of 200.
REGULARIZED_BATCH = 20


@dataclass(frozen=True)
class Configuration:
    """One way of running the trained network.

    Attributes:
        name: a short description.
        neurons: ``"rate"`` (``RectifiedLinear``) or ``"spiking"``
            (``SpikingRectifiedLinear``).
        n_steps: steps for which each image is presented.
        synapse: low-pass time constant in seconds after every neuron layer
            (None: no filter).
        scale: ``scale_firing_rates``.
        params: which trained parameters: ``"trained"`` (the plain training)
            or ``"regularized"`` (the firing-rate regularised training).
        note: what the configuration shows, for the HTML page.
    """

    name: str
    neurons: str
    n_steps: int
    synapse: float | None = None
    scale: float = 1.0
    params: str = "trained"
    note: str = ""

    @property
    def spiking(self) -> bool:
        return self.neurons == "spiking"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


TUTORIAL_CONFIGURATIONS = (
    Configuration(
        "rate neurons",
        "rate",
        10,
        note="The trained network with its ReLU rate neurons: the reference "
        "accuracy. Its output is the same at every step.",
    ),
    Configuration(
        "spiking, 10 steps",
        "spiking",
        10,
        note="ReLUs swapped for integrate-and-fire neurons, nothing else "
        "changed. Most neurons fire below 100 Hz, that is less than one spike "
        "per 10 steps of 1 ms, so almost nothing reaches the output in time.",
    ),
    Configuration(
        "spiking, 50 steps",
        "spiking",
        50,
        note="A longer presentation gives the neurons time to spike, but "
        "every layer adds delay, and reading raw spikes at the last step is "
        "noisy.",
    ),
    Configuration(
        "spiking, synapse 0.001",
        "spiking",
        120,
        synapse=0.001,
        note="A 1 ms low-pass filter after every layer: barely any smoothing.",
    ),
    Configuration(
        "spiking, synapse 0.005",
        "spiking",
        120,
        synapse=0.005,
        note="A 5 ms filter averages the spikes over a few steps.",
    ),
    Configuration(
        "spiking, synapse 0.01",
        "spiking",
        120,
        synapse=0.01,
        note="A 10 ms filter smooths more, and delays the output more.",
    ),
    Configuration(
        "spiking, scale 2",
        "spiking",
        30,
        synapse=0.01,
        scale=2,
        note="Firing rates doubled after training (current x2, output /2); "
        "30 steps are still too few.",
    ),
    Configuration(
        "spiking, scale 10",
        "spiking",
        30,
        synapse=0.01,
        scale=10,
        note="Ten times the firing rates: the spikes now carry the values well.",
    ),
    Configuration(
        "spiking, scale 20",
        "spiking",
        30,
        synapse=0.01,
        scale=20,
        note="Twenty times the firing rates: close to the rate network in 30 steps.",
    ),
    Configuration(
        "spiking, scale 1000",
        "spiking",
        10,
        scale=1000,
        note="So many spikes per step that the network behaves like the rate "
        "network, and nothing is left of the sparsity of spikes.",
    ),
    Configuration(
        "regularised, rate neurons",
        "rate",
        10,
        params="regularized",
        note="The network trained with a loss pulling the firing rates of both "
        f"convolutional layers towards {TARGET_RATE:.0f} Hz, with rate neurons.",
    ),
    Configuration(
        "regularised, spiking",
        "spiking",
        30,
        synapse=0.01,
        params="regularized",
        note="The regularised network with spiking neurons, no scaling: its "
        "neurons already fire fast enough.",
    ),
)


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


# --- the network ------------------------------------------------------------
def build_model():
    """The tutorial's network: two convolutions and a dense readout.

    Returns:
        ``(model, tensors)`` with ``tensors`` a dict of the Keras tensors
        ``inp``, ``conv0``, ``conv1`` and ``dense``.
    """
    import keras

    inp = keras.Input(shape=(28, 28, 1))
    conv0 = keras.layers.Conv2D(32, 3, activation=keras.activations.relu)(inp)
    conv1 = keras.layers.Conv2D(64, 3, strides=2, activation=keras.activations.relu)(
        conv0
    )
    dense = keras.layers.Dense(10)(keras.layers.Flatten()(conv1))
    model = keras.Model(inputs=inp, outputs=dense)
    return model, {"inp": inp, "conv0": conv0, "conv1": conv1, "dense": dense}


def train(
    model,
    tensors: dict,
    x_train: np.ndarray,
    y_train: np.ndarray,
    path: str,
    epochs: int,
    validation: tuple | None = None,
    regularize: bool = False,
    minibatch_size: int = 200,
    verbose: int = 2,
):
    """Train the converted (non-spiking) network and save its parameters.

    Args:
        model: the Keras model (its own weights are the starting point).
        tensors: as returned by :func:`build_model`.
        x_train: ``(n, 1, 784)`` images.
        y_train: ``(n, 1, 1)`` labels.
        path: where to save the parameters (``.npz`` is added).
        epochs: passes over the training data.
        validation: ``(x_test, y_test)`` shaped like the training data.
        regularize: add the tutorial's firing-rate losses on both
            convolutional layers (MSE to ``TARGET_RATE`` Hz, weight 1e-3).
        minibatch_size: examples per update.
        verbose: Keras's ``fit`` verbosity.

    Returns:
        The Keras ``History``.
    """
    import keras

    import snnify

    inp, conv0, conv1, dense = (tensors[k] for k in ("inp", "conv0", "conv1", "dense"))
    converter = snnify.Converter(model)
    output = converter.outputs[dense]
    loss = {output: keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    loss_weights = {output: 1.0}
    targets = {output: y_train}
    if regularize:
        with converter.net:
            rate_probes = [
                snnify.Probe(converter.layers[conv0]),
                snnify.Probe(converter.layers[conv1]),
            ]
        for probe in rate_probes:
            loss[probe] = keras.losses.MeanSquaredError()
            loss_weights[probe] = RATE_LOSS_WEIGHT
            # the same target for every image: a read-only view, not a copy
            targets[probe] = np.broadcast_to(
                np.float32(TARGET_RATE), (len(x_train), 1, probe.size_in)
            )
    with snnify.Simulator(converter.net, minibatch_size=minibatch_size) as sim:
        sim.compile(
            optimizer=keras.optimizers.RMSprop(0.001),
            loss=loss,
            loss_weights=loss_weights,
            metrics={output: [keras.metrics.sparse_categorical_accuracy]},
        )
        validation_data = None
        if validation is not None and not regularize:
            validation_data = (
                {converter.inputs[inp]: validation[0]},
                {output: validation[1]},
            )
        history = sim.fit(
            {converter.inputs[inp]: x_train},
            targets,
            validation_data=validation_data,
            epochs=epochs,
            verbose=verbose,
        )
        sim.save_params(path)
    return history


# --- running a configuration ------------------------------------------------
def _converter(model, configuration: Configuration):
    import keras

    import snnify

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
        model, tensors: as returned by :func:`build_model`.
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
    sample = run.sample
    scale = configuration.scale
    correct = np.zeros(n_steps)
    rate_sum, rate_count, rate_max = 0.0, 0, 0.0
    drawn = None
    for begin in range(0, n_test, chunk):
        rows = slice(begin, min(begin + chunk, n_test))
        outputs, mean, peak = run.predict(x_test[rows], n_steps)
        predictions = np.argmax(outputs, axis=-1)  # (batch, n_steps)
        correct += (predictions == y_test[rows, None]).sum(axis=0)
        if begin == 0:
            first_correct = int((predictions[:n_first, -1] == y_test[:n_first]).sum())
            # the tutorial's rates: spikes over the run / its duration for
            # spiking neurons, the rates at every step for rate neurons
            mean = mean[:n_first, sample] * scale
            peak = mean if configuration.spiking else peak[:n_first, sample] * scale
            rate_sum, rate_count = float(mean.sum()), mean.size
            rate_max = float(peak.max())
            if keep_history and n_figures:
                drawn = run.history[:n_figures], outputs[:n_figures]
    run.close()

    figures = []
    if n_figures:
        if drawn is None:
            run = _Run(model, tensors, configuration, params, seed, history=True)
            outputs, _, _ = run.predict(x_test[:n_figures], n_steps)
            drawn = run.history, outputs
            run.close()
        figures = _draw_figures(
            configuration, n_steps, *drawn, x_test, y_test, out, index
        )
    accuracy_per_step = (correct / n_test).tolist()
    return Result(
        configuration=configuration,
        n_steps=n_steps,
        n_first=n_first,
        accuracy_first=first_correct / n_first,
        n_test=n_test,
        accuracy=accuracy_per_step[-1],
        accuracy_per_step=accuracy_per_step,
        rate_mean=rate_sum / max(rate_count, 1),
        rate_max=rate_max,
        seconds=time.perf_counter() - start,
        figures=figures,
    )


class _Run:
    """A converted network with its probes and simulator, for one configuration.

    With ``history`` the conv0 probe records every step (kept in
    ``self.history`` after each ``predict``); otherwise it keeps running
    statistics only.
    """

    def __init__(self, model, tensors, configuration, params, seed, history):
        import snnify
        from snnify import plot

        self.converter = _converter(model, configuration)
        self.input = self.converter.inputs[tensors["inp"]]
        self.output = self.converter.outputs[tensors["dense"]]
        with self.converter.net:
            snnify.configure_settings(stateful=False)
            self.conv0 = snnify.Probe(
                self.converter.layers[tensors["conv0"]],
                keep="all" if history else "stats",
            )
        self.sample = plot.sample_neurons(self.conv0.size_in)
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
    from snnify import plot

    files = []
    for i in range(len(conv0)):
        fig = plot.plot_example(
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
        fig.savefig(os.path.join(out, name), dpi=80)
        files.append(name)
    return files


def describe(configuration: Configuration, n_steps: int | None = None) -> str:
    """``"spiking neurons, 30 steps, synapse 0.01 s, scale 20"``."""
    parts = [
        f"{configuration.neurons} neurons",
        f"{n_steps or configuration.n_steps} steps",
    ]
    if configuration.synapse is not None:
        parts.append(f"synapse {configuration.synapse:g} s")
    if configuration.scale != 1:
        parts.append(f"scale {configuration.scale:g}")
    if configuration.params != "trained":
        parts.append(f"{configuration.params} weights")
    return ", ".join(parts)


# --- reporting --------------------------------------------------------------
COLUMNS = (
    ("#", "{index}"),
    ("configuration", "{name}"),
    ("neurons", "{neurons}"),
    ("steps", "{steps}"),
    ("synapse (s)", "{synapse}"),
    ("scale", "{scale}"),
    ("acc. first {n_first} (%)", "{accuracy_first:.2f}"),
    ("acc. {n_test} (%)", "{accuracy:.2f}"),
    ("conv0 mean (Hz)", "{rate_mean:.1f}"),
    ("conv0 max (Hz)", "{rate_max:.0f}"),
    ("time (s)", "{seconds:.1f}"),
)


def table_rows(results: Sequence[Result]) -> tuple[list, list]:
    """The table's header and rows as strings."""
    if not results:
        return [name for name, _ in COLUMNS], []
    first = results[0]
    header = [
        name.format(n_first=first.n_first, n_test=first.n_test) for name, _ in COLUMNS
    ]
    rows = []
    for i, r in enumerate(results, 1):
        c = r.configuration
        values = {
            "index": i,
            "name": c.name,
            "neurons": c.neurons,
            "steps": r.n_steps,
            "synapse": "-" if c.synapse is None else f"{c.synapse:g}",
            "scale": f"{c.scale:g}",
            "accuracy_first": 100 * r.accuracy_first,
            "accuracy": 100 * r.accuracy,
            "rate_mean": r.rate_mean,
            "rate_max": r.rate_max,
            "seconds": r.seconds,
        }
        rows.append([fmt.format(**values) for _, fmt in COLUMNS])
    return header, rows


def format_table(results: Sequence[Result]) -> str:
    """The results as an aligned plain-text table."""
    header, rows = table_rows(results)
    widths = [max(len(x) for x in column) for column in zip(header, *rows)]

    def line(cells):
        return "  ".join(
            cell.ljust(w) if i in (1, 2) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def markdown_table(results: Sequence[Result]) -> str:
    """The results as a Markdown table."""
    header, rows = table_rows(results)
    align = ["---:" if i not in (1, 2) else "---" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }
.note { color: #444; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.meta dt { font-weight: bold; }
"""


def write_html(
    path: str, results: Sequence[Result], meta: dict, summary_figures: Sequence[str]
) -> None:
    """Write the page that shows the table, the summary figures and all figures."""
    esc = html.escape
    header, rows = table_rows(results)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>snnify demo: Keras to spiking network</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>snnify demo: converting a Keras network to a spiking network</h1>",
        "<p>A small convolutional network is trained on MNIST, then run with "
        "spiking neurons in the configurations of the Keras-to-SNN tutorial. "
        "The accuracy is read from the output at the last time step. Firing "
        f"rates are those of 1000 evenly sampled neurons of the first "
        f"convolutional layer (conv0) over the first {results[0].n_first if results else N_FIRST} "
        "test images: for spiking neurons, spikes over the whole presentation "
        "divided by its duration; for rate neurons, their rate values.</p>",
        '<dl class="meta">',
    ]
    for key, value in meta.items():
        parts.append(f"<dt>{esc(str(key))}</dt><dd>{esc(str(value))}</dd>")
    parts.append("</dl><h2>Results</h2><table><thead><tr>")
    parts += [f"<th>{esc(h)}</th>" for h in header]
    parts.append("</tr></thead><tbody>")
    for i, row in enumerate(rows, 1):
        cells = []
        for j, cell in enumerate(row):
            text = f'<a href="#config-{i}">{esc(cell)}</a>' if j == 1 else esc(cell)
            cls = "" if j in (1, 2) else ' class="num"'
            cells.append(f"<td{cls}>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    for name in summary_figures:
        parts.append(f'<p><img src="{esc(name)}" alt="{esc(name)}"></p>')
    parts.append("<h2>Each configuration</h2>")
    for i, r in enumerate(results, 1):
        c = r.configuration
        parts.append(f'<h3 id="config-{i}">{i}. {esc(c.name)}</h3>')
        parts.append(
            f"<p><b>{esc(describe(c, r.n_steps))}.</b> Accuracy "
            f"{100 * r.accuracy_first:.2f} % on the first {r.n_first} images, "
            f"{100 * r.accuracy:.2f} % on {r.n_test}; conv0 mean "
            f"{r.rate_mean:.1f} Hz, max {r.rate_max:.0f} Hz.</p>"
        )
        if c.note:
            parts.append(f'<p class="note">{esc(c.note)}</p>')
        for name in r.figures:
            parts.append(
                f'<p><img src="{esc(name)}" alt="{esc(c.name)}: input, conv0 '
                'activity and output over time"></p>'
            )
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(parts) + "\n")


def _summary_figures(results: Sequence[Result], out: str) -> list:
    from snnify import plot

    files = []
    labels = [f"{i}. {r.configuration.name}" for i, r in enumerate(results, 1)]
    reference = next(
        (r.accuracy for r in results if r.configuration.neurons == "rate"), None
    )
    first = results[0]
    fig = plot.plot_accuracy(
        labels,
        {
            f"first {first.n_first} test images": [r.accuracy_first for r in results],
            f"{first.n_test} test images": [r.accuracy for r in results],
        },
        reference=reference,
    )
    fig.savefig(os.path.join(out, "accuracy.png"), dpi=80)
    files.append("accuracy.png")
    curves = {
        label: r.accuracy_per_step
        for label, r in zip(labels, results)
        if r.configuration.spiking
    }
    if curves:
        fig = plot.plot_accuracy_vs_steps(
            curves,
            reference=reference,
            title=f"Accuracy on {first.n_test} test images when the output is "
            "read at each step",
        )
        fig.savefig(os.path.join(out, "accuracy-vs-steps.png"), dpi=80)
        files.append("accuracy-vs-steps.png")
    return files


# --- the whole demo ---------------------------------------------------------
def _flat(images: np.ndarray) -> np.ndarray:
    """``(n, 28, 28)`` uint8 -> ``(n, 1, 784)`` float32, values kept in 0..255."""
    return images.reshape((len(images), 1, -1)).astype("float32")


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
        quick: a smoke test: 500 training images, 1 epoch, 50 test images,
            a fifth of the steps.
        epochs: training epochs (default 2, the tutorial's; 1 with quick).
        regularized_epochs: epochs of the regularised training (default 5; 1
            with quick). It starts from the same initial weights as the first
            training, as in the tutorial.
        n_train: training images (default all; 500 with quick).
        n_figures: examples drawn per configuration.
        seed: seed of the weights, the training order and the neurons.
        configurations: what to run.
        log: where progress goes (default: print to stdout, flushed).

    Returns:
        The list of :class:`Result`, one per configuration.
    """
    import keras

    from snnify.datasets import load_mnist

    if log is None:

        def log(message):
            print(message, flush=True)

    t_start = time.perf_counter()
    if quick:
        n_test = n_test or 50
        n_train = n_train or 500
        epochs = epochs or 1
        regularized_epochs = regularized_epochs or 1
    n_test = n_test or DEFAULT_N_TEST
    epochs = epochs or 2
    regularized_epochs = regularized_epochs or 5
    os.makedirs(out, exist_ok=True)

    (x_train, y_train), (x_test, y_test) = load_mnist(full=full_mnist)
    dataset = (
        "MNIST (keras.datasets)" if len(x_train) > 10000 else "MNIST bundled subset"
    )
    x_train, y_train = x_train[:n_train], y_train[:n_train]
    n_test = min(n_test, len(x_test))
    x_test, y_test = _flat(x_test[:n_test]), y_test[:n_test].astype("int64")
    x_train_t, y_train_t = _flat(x_train), y_train.reshape((-1, 1, 1))
    log(
        f"snnify demo: Keras backend {keras.backend.backend()}, {dataset}: "
        f"{len(x_train)} training images, {n_test} test images; output in "
        f"{os.path.abspath(out)}"
    )

    keras.utils.set_random_seed(seed)
    model, tensors = build_model()
    params = {
        "trained": os.path.join(out, "params"),
        "regularized": os.path.join(out, "params-regularized"),
    }
    verbose = 2
    results = []
    train_seconds = {}
    n = len(configurations)
    for i, configuration in enumerate(configurations, 1):
        if configuration.params not in train_seconds:
            t0 = time.perf_counter()
            if configuration.params == "trained":
                log(
                    f"Training the network: {epochs} epoch(s), RMSprop 1e-3, "
                    f"minibatch {TRAIN_BATCH}"
                )
                train(
                    model,
                    tensors,
                    x_train_t,
                    y_train_t,
                    params["trained"],
                    epochs,
                    validation=None if quick else (x_test, y_test.reshape((-1, 1, 1))),
                    verbose=verbose,
                )
            else:
                log(
                    "Training again, from the same initial weights, with firing-rate "
                    f"regularisation (conv0 and conv1 towards {TARGET_RATE:.0f} Hz): "
                    f"{regularized_epochs} epoch(s), minibatch {REGULARIZED_BATCH}"
                )
                train(
                    model,
                    tensors,
                    x_train_t,
                    y_train_t,
                    params["regularized"],
                    regularized_epochs,
                    regularize=True,
                    minibatch_size=REGULARIZED_BATCH,
                    verbose=verbose,
                )
            train_seconds[configuration.params] = time.perf_counter() - t0
            log(f"  done in {train_seconds[configuration.params]:.1f} s")
        n_steps = max(2, configuration.n_steps // 5) if quick else None
        log(f"[{i}/{n}] {configuration.name}: {describe(configuration, n_steps)}")
        result = run_configuration(
            model,
            tensors,
            configuration,
            params[configuration.params],
            x_test,
            y_test,
            n_steps=n_steps,
            n_figures=n_figures,
            out=out,
            index=i,
            seed=seed,
        )
        results.append(result)
        log(
            f"  accuracy {100 * result.accuracy_first:.2f} % (first "
            f"{result.n_first}), {100 * result.accuracy:.2f} % ({result.n_test}); "
            f"conv0 mean {result.rate_mean:.1f} Hz, max {result.rate_max:.0f} Hz; "
            f"{result.seconds:.1f} s"
        )

    summary = _summary_figures(results, out)
    total = time.perf_counter() - t_start
    meta = {
        "snnify": _version(),
        "Keras backend": f"{keras.backend.backend()} (Keras {keras.__version__})",
        "data": f"{dataset}: {len(x_train)} training images, {n_test} test images",
        "training": f"{epochs} epoch(s) in {train_seconds.get('trained', 0):.0f} s; "
        f"regularised: {regularized_epochs} epoch(s) in "
        f"{train_seconds.get('regularized', 0):.0f} s",
        "mode": "quick (smoke test: fewer images, epochs and steps)"
        if quick
        else "default",
        "total time": f"{total:.0f} s",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), Python "
        f"{platform.python_version()}",
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    write_html(os.path.join(out, "index.html"), results, meta, summary)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as file:
        file.write(markdown_table(results) + "\n")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as file:
        json.dump(
            {"meta": meta, "results": [r.as_dict() for r in results]}, file, indent=1
        )
    log("")
    log(format_table(results))
    log("")
    log(
        f"Total time {total:.0f} s. Report: {os.path.abspath(os.path.join(out, 'index.html'))}"
    )
    return results


def _version() -> str:
    from snnify import __version__

    return __version__


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit("Run the demo with `snnify demo` or `python -m snnify demo`.")
