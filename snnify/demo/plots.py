"""Figures of a converted network's behaviour over time.

The functions build ``matplotlib`` figures on the Agg canvas without touching
``pyplot``'s global state, so they work in scripts, tests and servers without a
display; save them with ``fig.savefig(path)``. In a notebook, show one with
``display(fig)``.

Example:
    >>> import numpy as np
    >>> from snnify.demo.plots import plot_example
    >>> rng = np.random.default_rng(0)
    >>> spikes = (rng.random((30, 5000)) < 0.05) * 1000.0  # probe data: spikes / dt
    >>> fig = plot_example(np.zeros((28, 28)), spikes, rng.normal(size=(30, 10)),
    ...                    spiking=True, label=3)
    >>> [ax.get_title().split(":")[0] for ax in fig.axes[:2]]
    ['Input image (label 3)', 'conv0 activity']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# neurons whose activity is shown and summarised, as in the tutorial
N_SAMPLE_NEURONS = 1000


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def sample_neurons(n_neurons: int, n_sample: int = N_SAMPLE_NEURONS) -> np.ndarray:
    """Indices of ``n_sample`` evenly spaced neurons out of ``n_neurons``.

    Example:
        >>> sample_neurons(10, 4)
        array([0, 2, 5, 7])
    """
    return np.linspace(0, n_neurons, min(n_sample, n_neurons), endpoint=False).astype(
        "int64"
    )


def neuron_activity(
    data: np.ndarray, spiking: bool, scale: float = 1.0, dt: float = 0.001
):
    """Turn a neuron probe's record into what the figures show.

    A probe on neurons records their output, ``amplitude * spikes / dt /
    scale`` for spiking neurons (``scale`` being ``scale_firing_rates``) and
    ``rate / scale`` for rate neurons.

    Args:
        data: ``(n_steps, n_neurons)`` probe data of one example.
        spiking: whether the neurons spike.
        scale: the ``scale_firing_rates`` of the layer.
        dt: the simulator's time step in seconds.

    Returns:
        ``(activity, rates)``: ``activity`` is ``(n_steps, n_neurons)``, the
        number of spikes of each neuron at each step (spiking neurons) or its
        firing rate in Hz (rate neurons); ``rates`` are firing rates in Hz,
        ``(n_neurons,)`` for spiking neurons (spikes over the whole run divided
        by its duration) and ``(n_steps, n_neurons)`` for rate neurons.

    Example:
        >>> data = np.array([[0.0, 1000.0], [1000.0, 1000.0]])  # 1 ms steps
        >>> activity, rates = neuron_activity(data, spiking=True)
        >>> activity.tolist(), rates.tolist()
        ([[0.0, 1.0], [1.0, 1.0]], [500.0, 1000.0])
    """
    data = np.asarray(data, "float64") * scale
    if spiking:
        counts = data * dt
        return counts, counts.sum(axis=0) / (counts.shape[0] * dt)
    return data, data


def plot_example(
    image: np.ndarray,
    neurons: np.ndarray,
    output: np.ndarray,
    spiking: bool,
    scale: float = 1.0,
    dt: float = 0.001,
    label: int | None = None,
    title: str | None = None,
    layer_name: str = "conv0",
    n_sample: int = N_SAMPLE_NEURONS,
    n_lines: int = 100,
) -> Figure:
    """The three panels of the tutorial for one example.

    Left: the input image. Middle: the activity of ``n_sample`` evenly spaced
    neurons of a layer over time (spike counts per step for spiking neurons,
    firing rates in Hz for rate neurons), titled with their mean and maximum
    firing rate in Hz. Right: the softmax of the network's output at every
    step, one line per class.

    Args:
        image: the input, ``(28, 28)``, ``(28, 28, 1)`` or ``(784,)``.
        neurons: ``(n_steps, n_neurons)`` record of a probe on the layer's
            neurons for this example.
        output: ``(n_steps, n_classes)`` record of the output probe (logits).
        spiking: whether the layer's neurons spike.
        scale: the layer's ``scale_firing_rates``.
        dt: simulator time step in seconds.
        label: the true class, shown in the image's title.
        title: a title for the whole figure (e.g. the configuration).
        layer_name: name of the probed layer in the middle panel's title.
        n_sample: neurons summarised in the middle panel's title.
        n_lines: at most this many of the sampled neurons are drawn, so the
            plot stays readable (the title always summarises all of them).

    Returns:
        A ``matplotlib.figure.Figure``; ``fig.savefig("example.png")``.
    """
    neurons = np.asarray(neurons)
    sample = sample_neurons(neurons.shape[1], n_sample)
    # fixed margins: a constrained layout would cost seconds per figure
    fig = _figure(14, 4.2, layout=None)
    ax_image, ax_neurons, ax_output = fig.subplots(
        1,
        3,
        gridspec_kw={
            "width_ratios": [0.7, 1.15, 1.15],
            "left": 0.01,
            "right": 0.93,
            "bottom": 0.12,
            "top": 0.8 if title else 0.86,
            "wspace": 0.22,
        },
    )
    _draw_image(ax_image, image, label)
    _draw_activity(
        ax_neurons, neurons[:, sample], spiking, scale, dt, layer_name, n_lines
    )
    _draw_output(ax_output, output, dt)
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def _draw_image(ax, image, label) -> None:
    image = np.asarray(image, "float64")
    side = int(round(np.sqrt(image.size)))
    ax.imshow(image.reshape(side, side), cmap="gray")
    ax.set_title("Input image" + ("" if label is None else f" (label {int(label)})"))
    ax.axis("off")


def _draw_activity(ax, neurons, spiking, scale, dt, layer_name, n_lines) -> None:
    n_steps, n_sampled = neurons.shape
    activity, rates = neuron_activity(neurons, spiking, scale, dt)
    steps = np.arange(1, n_steps + 1)
    shown = np.linspace(0, n_sampled, min(n_lines, n_sampled), endpoint=False)
    shown = shown.astype("int64")
    ax.plot(steps, activity[:, shown], linewidth=0.6, alpha=0.5)
    ax.set_title(
        f"{layer_name} activity: mean {rates.mean():.0f} Hz, max {rates.max():.0f} Hz\n"
        f"({n_sampled} sampled neurons, {len(shown)} drawn)",
        fontsize="medium",
    )
    ax.set_xlabel(f"Time step (dt = {dt * 1000:g} ms)")
    if spiking:
        ax.set_ylabel("Spikes in the step (count)")
        ax.yaxis.get_major_locator().set_params(integer=True)
    else:
        ax.set_ylabel("Firing rate (Hz)")
    ax.set_xlim(0.5, n_steps + 0.5)
    ax.set_ylim(bottom=0)


def _draw_output(ax, output, dt) -> None:
    output = np.asarray(output, "float64")
    n_steps = len(output)
    steps = np.arange(1, n_steps + 1)
    shifted = output - output.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    marker = "o" if n_steps <= 12 else None
    for digit in range(probabilities.shape[1]):
        ax.plot(
            steps,
            probabilities[:, digit],
            marker=marker,
            markersize=3,
            label=str(digit),
        )
    predicted = int(np.argmax(output[-1]))
    ax.set_title(
        f"Output (softmax): predicts {predicted} at the last step", fontsize="medium"
    )
    ax.set_xlabel(f"Time step (dt = {dt * 1000:g} ms)")
    ax.set_ylabel("Probability")
    ax.set_xlim(0.5, n_steps + 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(
        title="Digit", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small"
    )


def plot_accuracy(
    labels: Sequence[str],
    accuracies: Mapping[str, Sequence[float]],
    reference: float | None = None,
    chance: float | None = 0.1,
    title: str = "Test accuracy per configuration",
) -> Figure:
    """Horizontal bars of accuracy per configuration.

    Args:
        labels: configuration names, top to bottom.
        accuracies: ``{series name: accuracies (fractions 0..1) per label}``,
            e.g. ``{"first 400 images": [...], "10000 images": [...]}``.
        reference: an accuracy to mark with a dashed line (e.g. the
            non-spiking network's).
        chance: accuracy of guessing, marked with a dotted line (None: none).
        title: the figure's title.

    Example:
        >>> fig = plot_accuracy(["rate", "spiking"], {"test": [0.98, 0.12]})
        >>> fig.axes[0].get_xlabel()
        'Accuracy (%)'
    """
    labels = list(labels)
    fig = _figure(9, 0.45 * len(labels) + 1.6)
    ax = fig.subplots()
    n_series = max(len(accuracies), 1)
    height = 0.8 / n_series
    y = np.arange(len(labels))
    for i, (name, values) in enumerate(accuracies.items()):
        values = 100 * np.asarray(values, "float64")
        offset = (i - (n_series - 1) / 2) * height
        bars = ax.barh(y + offset, values, height=height, label=name)
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize="x-small")
    if reference is not None:
        ax.axvline(100 * reference, color="k", linestyle="--", linewidth=1)
        ax.text(100 * reference, -0.9, " non-spiking", fontsize="small")
    if chance is not None:
        ax.axvline(100 * chance, color="gray", linestyle=":", linewidth=1)
        ax.text(100 * chance, -0.9, " chance", fontsize="small", color="gray")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_ylim(len(labels) - 0.5, -1.2)
    ax.set_xlabel("Accuracy (%)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_accuracy_vs_steps(
    curves: Mapping[str, Sequence[float]],
    dt: float = 0.001,
    reference: float | None = None,
    chance: float | None = 0.1,
    title: str = "Accuracy when reading the output at each step",
) -> Figure:
    """Accuracy over time: one line per configuration.

    Args:
        curves: ``{configuration: accuracy (0..1) at steps 1, 2, ...}``.
        dt: simulator time step in seconds.
        reference: an accuracy to mark with a dashed line.
        chance: accuracy of guessing, marked with a dotted line.
        title: the figure's title.

    Example:
        >>> fig = plot_accuracy_vs_steps({"spiking": [0.1, 0.5, 0.9]})
        >>> fig.axes[0].get_ylabel()
        'Accuracy (%)'
    """
    fig = _figure(9, 4.5)
    ax = fig.subplots()
    for name, values in curves.items():
        values = 100 * np.asarray(values, "float64")
        ax.plot(np.arange(1, len(values) + 1), values, label=name, linewidth=1.5)
    if reference is not None:
        ax.axhline(
            100 * reference, color="k", linestyle="--", linewidth=1, label="non-spiking"
        )
    if chance is not None:
        ax.axhline(
            100 * chance, color="gray", linestyle=":", linewidth=1, label="chance"
        )
    ax.set_xlabel(f"Time step (dt = {dt * 1000:g} ms)")
    ax.set_ylabel("Accuracy (%)")
    ax.set_ylim(0, 101)
    ax.set_xlim(left=1)
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    ax.grid(alpha=0.3)
    return fig
