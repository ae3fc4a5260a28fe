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
    >>> [ax.get_title().split(",")[0] for ax in fig.axes[:2]]
    ['Input image (label 3)', 'conv0']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
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


def drawn_neurons(rates: np.ndarray, n_drawn: int, n_busiest: int) -> np.ndarray:
    """``n_drawn`` neurons to draw: the ``n_busiest`` busiest, then evenly spaced.

    Returned in order of firing rate (busiest first).

    Example:
        >>> drawn_neurons(np.array([5.0, 0.0, 9.0, 1.0, 0.0, 7.0]), 4, 2).tolist()
        [2, 5, 0, 1]
    """
    order = np.argsort(-rates, kind="stable")
    busiest = order[: min(n_busiest, n_drawn)]
    rest = order[len(busiest) :]
    others = (
        rest[sample_neurons(len(rest), n_drawn - len(busiest))] if len(rest) else []
    )
    chosen = np.concatenate([busiest, others]).astype("int64")
    return chosen[np.argsort(-rates[chosen], kind="stable")]


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
    n_drawn: int = 60,
) -> Figure:
    """The three panels of the tutorial for one example.

    Left: the input image. Middle: a raster of ``n_drawn`` of the layer's
    ``n_sample`` evenly sampled neurons over time (the busiest ten among them,
    then evenly spaced ones, sorted by firing rate): spikes per step for
    spiking neurons, firing rates in Hz for rate neurons. Its title gives the
    firing rates of all sampled neurons for this example. Right: the
    network's output at every step, the true class drawn thick.

    Args:
        image: the input, ``(28, 28)``, ``(28, 28, 1)`` or ``(784,)``.
        neurons: ``(n_steps, n_neurons)`` record of a probe on the layer's
            neurons for this example.
        output: ``(n_steps, n_classes)`` record of the output probe.
        spiking: whether the layer's neurons spike.
        scale: the layer's ``scale_firing_rates``.
        dt: simulator time step in seconds.
        label: the true class.
        title: a title for the whole figure (e.g. the configuration).
        layer_name: name of the probed layer.
        n_sample: neurons whose rates the middle panel's title summarises.
        n_drawn: neurons drawn in the raster.

    Returns:
        A ``matplotlib.figure.Figure``; ``fig.savefig("example.png")``.
    """
    neurons = np.asarray(neurons)
    sample = sample_neurons(neurons.shape[1], n_sample)
    fig = _figure(13, 4.4, layout=None)
    ax_image, ax_neurons, ax_output = fig.subplots(
        1,
        3,
        gridspec_kw={
            "width_ratios": [0.55, 1.2, 1.0],
            "left": 0.02,
            "right": 0.88,
            "bottom": 0.13,
            "top": 0.78 if title else 0.86,
            "wspace": 0.3,
        },
    )
    _draw_image(ax_image, image, label)
    _draw_activity(
        fig, ax_neurons, neurons[:, sample], spiking, scale, dt, layer_name, n_drawn
    )
    _draw_output(ax_output, output, dt, label)
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def _draw_image(ax, image, label) -> None:
    image = np.asarray(image, "float64")
    side = int(round(np.sqrt(image.size)))
    ax.imshow(image.reshape(side, side), cmap="gray")
    ax.set_title("Input image" + ("" if label is None else f" (label {int(label)})"))
    ax.axis("off")


def _draw_activity(fig, ax, neurons, spiking, scale, dt, layer_name, n_drawn):
    n_steps, n_sampled = neurons.shape
    activity, rates = neuron_activity(neurons, spiking, scale, dt)
    mean_rates = rates if spiking else rates.mean(axis=0)  # per neuron, Hz
    drawn = drawn_neurons(mean_rates, min(n_drawn, n_sampled), n_busiest=10)
    values = activity[:, drawn].T  # (neurons, steps)
    if spiking:
        top = max(int(values.max()), 1)
        cmap = matplotlib.colormaps["Greys"].resampled(top + 1)
        image = ax.imshow(
            values, aspect="auto", cmap=cmap, vmin=-0.5, vmax=top + 0.5,
            interpolation="nearest", extent=(0.5, n_steps + 0.5, len(drawn), 0),
        )  # fmt: skip
        bar = fig.colorbar(image, ax=ax, ticks=range(top + 1), pad=0.02)
        bar.set_label("spikes in the step")
    else:
        image = ax.imshow(
            values, aspect="auto", cmap="Greys", interpolation="nearest",
            extent=(0.5, n_steps + 0.5, len(drawn), 0),
        )  # fmt: skip
        fig.colorbar(image, ax=ax, pad=0.02).set_label("firing rate (Hz)")
    ax.set_title(
        f"{layer_name}, this image: {n_sampled} sampled neurons fire at "
        f"{mean_rates.mean():.0f} Hz on average\n(busiest {mean_rates.max():.0f} "
        f"Hz); {len(drawn)} drawn, busiest first",
        fontsize="medium",
    )
    ax.set_xlabel(f"Time step (dt = {dt * 1000:g} ms)")
    ax.set_ylabel("neuron (by firing rate)")
    ax.set_yticks([])


def _draw_output(ax, output, dt, label) -> None:
    output = np.asarray(output, "float64")
    steps = np.arange(1, len(output) + 1)
    marker = "o" if len(output) <= 12 else None
    for digit in range(output.shape[1]):
        true = digit == label
        ax.plot(
            steps, output[:, digit], marker=marker, markersize=3,
            linewidth=2.5 if true else 1.0, alpha=1.0 if true else 0.6,
            color="C3" if true else None, label=f"{digit}" + (" (true)" if true else ""),
            zorder=3 if true else 2,
        )  # fmt: skip
    predicted = int(np.argmax(output[-1]))
    ax.set_title(f"Output: predicts {predicted} at the last step", fontsize="medium")
    ax.set_xlabel(f"Time step (dt = {dt * 1000:g} ms)")
    ax.set_ylabel("output value (logit)")
    ax.set_xlim(0.5, len(output) + 0.5)
    ax.legend(
        title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small"
    )
    ax.grid(alpha=0.3)


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
    fig = _figure(10, 0.5 * len(labels) + 2.2)
    ax = fig.subplots()
    n_series = max(len(accuracies), 1)
    height = 0.8 / n_series
    y = np.arange(len(labels))
    for i, (name, values) in enumerate(accuracies.items()):
        values = 100 * np.asarray(values, "float64")
        offset = (i - (n_series - 1) / 2) * height
        bars = ax.barh(y + offset, values, height=height, label=name)
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize="small")
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
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncols=n_series)
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
