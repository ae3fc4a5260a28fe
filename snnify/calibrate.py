"""Calibration: choose each layer's ``scale_firing_rates`` from data.

A rectified neuron layer converts well in few steps when its neurons fire
often enough to resolve their activation in the steps given, and no more
often than needed. :func:`calibrate` runs the non-spiking network on a sample
of inputs, takes a high percentile ``p`` of each layer's positive activations
and sets the layer's scale so that an activation of ``p`` makes
``spikes_per_step`` spikes per step (1 by default):

    ``scale = spikes_per_step / (p * dt)``

In ``T`` steps an activation ``a <= p`` is then represented by about
``a / p * T`` spikes, a resolution of ``p / T``; larger activations are not
clipped (the neurons may emit several spikes per step). Layers that are
clip-floor-shift activations (:class:`snnify.layers.QCFS`) take their
scale from their trained threshold ``lambda`` instead (``scale = 1 / (lambda
* dt)``), which needs no data.

Use it with :class:`~snnify.IntegrateAndFire` neurons (signed current,
initial voltage 0.5); :func:`snnify.decode` turns a probe's output over time into
one value per example.

When the number of steps is known, :func:`convert_for_steps` does better: it
searches each channel's threshold and initial voltage for that number of
steps, layer by layer on the spiking network (:mod:`snnify.threshold_search`).
``scale_firing_rates="auto"`` uses the same search for ``AUTO_STEPS`` steps.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, activation="relu")(inp)
    >>> model = keras.Model(inp, keras.layers.Dense(2)(hidden))
    >>> x = np.random.default_rng(0).uniform(0, 1, (64, 1, 4))
    >>> report = snnify.calibrate(model, x)
    >>> converter = snnify.Converter(
    ...     model,
    ...     swap_activations={"relu": snnify.IntegrateAndFire()},
    ...     scale_firing_rates=report,
    ... )
    >>> converter.layers[hidden].scale == report[hidden]
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from snnify import converter as converter_module
from snnify.converter import Converter, exact_converter
from snnify.graph import NeuronsNode, Probe
from snnify.inputs import standardize_inputs, whole_examples, whole_inputs
from snnify.keras_graph import (
    CLIPPED_RELUS,
    activation_name,
    functional_graph,
    layer_of,
    negative_slope,
)
from snnify.layers import QCFS
from snnify.neurons import IntegrateAndFire, NeuronType
from snnify.simulator import Simulator
from snnify.threshold_search import by_channel, channel_axis, search_thresholds
from snnify.validation import are_class_labels, class_labels, positive_integer

# most activation values kept per layer to compute a percentile
MAX_VALUES = 2**23


@dataclass
class LayerCalibration:
    """What calibration chose for one neuron layer.

    Attributes:
        layer: the Keras layer.
        name: its name.
        scale: the chosen ``scale_firing_rates`` (a float, or an array over
            channels with ``per_channel=True``).
        reference: the activation that makes ``spikes_per_step`` spikes per
            step: the percentile of the activations, or the QCFS threshold.
        source: ``"percentile"``, ``"qcfs"`` or ``"search"`` (chosen by
            :func:`convert_for_steps` for a number of steps).
        mean_activation: mean activation over the calibration data (per
            channel with ``per_channel=True``; of its magnitude after a search,
            as a leaky ReLU's negative part spikes too; NaN for QCFS layers,
            which are not measured).
        size: number of neurons.
        initial_voltage: the neurons' initial voltage in thresholds (per
            channel after a search with correction).
        error: relative RMS error of the layer's decoded activations on the
            calibration data after a search (NaN otherwise).
        max_spikes_per_step: the limit a search gave the neurons (None: none).
        negative_slope: the neurons' ``negative_slope`` after a search (0:
            no negative spikes; an array: a PReLU's slopes).
    """

    layer: keras.layers.Layer
    name: str
    scale: float | np.ndarray
    reference: float | np.ndarray
    source: str
    mean_activation: float | np.ndarray
    size: int
    initial_voltage: float | np.ndarray = 0.5
    error: float = math.nan
    max_spikes_per_step: int | None = None
    negative_slope: float | np.ndarray = 0.0

    def spikes_per_step(self, dt: float) -> float:
        """Expected spikes per step of the whole layer, for one example."""
        per_channel = np.ravel(self.mean_activation) * np.ravel(self.scale) * dt
        return float(np.mean(per_channel)) * self.size


def _slopes(slope) -> str:
    """``"0.1"``, or ``"0.02 to 0.3"`` for a PReLU's slopes."""
    low, high = np.min(slope), np.max(slope)
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


class CalibrationReport(Mapping):
    """The scales chosen by :func:`calibrate`, keyed by Keras layer.

    It is a mapping ``{layer: scale}``, so it can be given as it is to
    ``Converter(..., scale_firing_rates=report)``. Items also look up by
    Keras tensor or by layer name.

    Attributes:
        layers: one :class:`LayerCalibration` per neuron layer, in order.
        percentile, spikes_per_step, dt, n_steps: the options used (after
            :func:`convert_for_steps` with ``spikes_per_step="auto"``, the
            spikes per step it kept).
        expected: after :func:`convert_for_steps`, what the spiking network
            did on the calibration data at ``n_steps``: ``agreement`` (share
            of examples where its arg-max is the Keras model's),
            ``spikes_per_inference`` and, given labels, ``accuracy`` and
            ``ann_accuracy``. Empty otherwise.
    """

    def __init__(self, layers, percentile, spikes_per_step, dt, n_steps):
        self.layers = list(layers)
        self.percentile = percentile
        self.spikes_per_step = spikes_per_step
        self.dt = dt
        self.n_steps = n_steps
        self.expected = {}
        self._by_id = {id(c.layer): c for c in self.layers}

    def layer(self, key) -> LayerCalibration:
        """The :class:`LayerCalibration` of a layer, tensor or layer name."""
        key = layer_of(key)
        if id(key) in self._by_id:
            return self._by_id[id(key)]
        for c in self.layers:
            if c.name == key:
                return c
        names = ", ".join(repr(c.name) for c in self.layers)
        raise KeyError(
            f"{key!r} is not a calibrated layer; the calibrated layers are {names}."
        )

    def __getitem__(self, key):
        return self.layer(key).scale

    def __iter__(self):
        return iter(c.layer for c in self.layers)

    def __len__(self):
        return len(self.layers)

    def apply(self, converter: Converter) -> None:
        """Set the scales of an existing converter's neurons (in place).

        Call it before creating a :class:`~snnify.Simulator` on the network.
        """
        for c in self.layers:
            for node in converter.layers.all(c.layer):
                if not isinstance(node, NeuronsNode):
                    raise ValueError(
                        f"Layer {c.name!r} has no neurons in this converter; it "
                        "cannot take a scale."
                    )
                node.scale = c.scale

    def spikes_per_inference(self, n_steps: int | None = None) -> float:
        """Spikes per example that the calibration data predicts in ``n_steps``."""
        n_steps = n_steps or self.n_steps
        if n_steps is None:
            raise ValueError("Give n_steps (calibrate was called without it).")
        return n_steps * sum(
            c.spikes_per_step(self.dt) for c in self.layers if c.source != "qcfs"
        )

    def summary(self) -> str:
        """A table of the chosen scales, one line per layer."""
        lines = [
            f"{'layer':<24}{'source':>11}{'reference':>12}{'scale':>12}"
            f"{'spikes/step':>13}"
        ]
        for c in self.layers:
            ref = np.mean(c.reference)
            scale = np.mean(c.scale)
            spikes = c.spikes_per_step(self.dt)
            per_channel = "*" if np.ndim(c.scale) else " "
            lines.append(
                f"{c.name:<24}{c.source:>11}{ref:>12.4g}{scale:>11.4g}{per_channel}"
                f"{spikes:>13.4g}"
            )
        if any(np.ndim(c.scale) for c in self.layers):
            lines.append("* per channel: mean over channels shown")
        limited = {}
        for c in self.layers:
            if c.max_spikes_per_step is not None:
                limited.setdefault(c.max_spikes_per_step, []).append(c.name)
        for most, names in limited.items():
            lines.append(f"at most {most} spikes per step: {', '.join(names)}")
        leaky = [f"{c.name} ({_slopes(c.negative_slope)})" for c in self.layers
                 if np.any(c.negative_slope)]  # fmt: skip
        if leaky:
            lines.append(f"negative spikes (negative_slope): {', '.join(leaky)}")
        if self.percentile is None and self.spikes_per_step is not None:
            lines.append(f"thresholds for {self.spikes_per_step} spikes per step")
        for key, value in self.expected.items():
            lines.append(f"expected {key} at {self.n_steps} steps: {value:.4g}")
        return "\n".join(lines)

    def __repr__(self):
        scales = ", ".join(f"{c.name}: {np.mean(c.scale):.4g}" for c in self.layers)
        return f"<CalibrationReport {{{scales}}}>"


def _quantized_threshold(layer):
    """A QCFS layer's threshold ``lambda``, or None for other layers."""
    if isinstance(layer, QCFS):
        return float(keras.ops.convert_to_numpy(layer.threshold))
    return None


def _percentiles(values: np.ndarray, percentile: float, per_channel: bool):
    """Percentile of the positive values (per column when ``per_channel``)."""
    if not per_channel:
        positive = values[values > 0]
        return float(np.percentile(positive, percentile)) if positive.size else 0.0
    result = np.zeros(values.shape[1], "float64")
    for channel in range(values.shape[1]):
        column = values[:, channel]
        positive = column[column > 0]
        if positive.size:
            result[channel] = np.percentile(positive, percentile)
    return result


def calibrate(
    converter_or_model,
    data=None,
    percentile: float = 99.9,
    per_channel: bool = False,
    n_steps: int | None = None,
    spikes_per_step: float = 1.0,
    dt: float = 0.001,
    batch_size: int = 100,
    seed: int = 0,
) -> CalibrationReport:
    """Choose every neuron layer's ``scale_firing_rates`` from data.

    Args:
        converter_or_model: a Keras model (every ReLU layer is calibrated) or
            a :class:`~snnify.Converter` (its neuron layers are calibrated,
            from the activations of its Keras model).
        data: calibration inputs, e.g. a few hundred training examples, in
            any format ``Simulator.predict`` takes (``(n, 1, 784)``, a dict
            keyed by ``converter.inputs[...]``), Keras's own ``(n, 28, 28,
            1)``, or a data pipeline of ``x`` or ``(x, y)``, read whole. Only
            needed for layers that are not QCFS activations.
        percentile: percentile (0-100] of a layer's positive activations
            that makes ``spikes_per_step`` spikes per step.
        per_channel: one scale per channel (last axis, or the channel axis of
            ``channels_first`` layers) instead of one per layer. Channels
            that never activate take the layer's scale.
        n_steps: the number of steps the network will run; only used to
            report the expected spikes per inference.
        spikes_per_step: spikes per step at the percentile activation.
        dt: the simulator's time step (s).
        batch_size: examples per batch while computing activations.
        seed: seed of the subsampling of very large layers.

    Returns:
        a :class:`CalibrationReport`, usable as ``scale_firing_rates``.

    Raises:
        ValueError: for options out of range, or when data is needed but
            missing.
    """
    if not 0 < percentile <= 100:
        raise ValueError(
            f"percentile must be in (0, 100]. Received: percentile={percentile!r}"
        )
    if not spikes_per_step > 0 or not dt > 0:
        raise ValueError(
            "spikes_per_step and dt must be positive. Received: "
            f"spikes_per_step={spikes_per_step!r}, dt={dt!r}"
        )
    exact, layers = _layers_to_calibrate(converter_or_model)
    if not layers:
        spiking = (
            converter_or_model if isinstance(converter_or_model, Converter) else exact
        )
        converter_module.require_neurons(
            spiking.net.nodes, "calibrate chooses the scales of neurons"
        )
    measured = [(ly, t) for ly, t in layers if _quantized_threshold(ly) is None]
    activations = {}
    if measured:
        if data is None:
            names = ", ".join(repr(ly.name) for ly, _ in measured)
            raise ValueError(
                f"calibrate needs data for layer(s) {names}: pass calibration "
                "inputs, e.g. calibration_data=x_train[:500] (as the model "
                "takes them, or as Simulator.predict does)."
            )
        activations = _activations(exact, measured, data, batch_size, seed)
    results = []
    for layer, nodes in layers:
        size = sum(node.size for node in nodes)
        threshold = _quantized_threshold(layer)
        if threshold is not None:
            scale = 1.0 / (threshold * dt)
            results.append(
                LayerCalibration(
                    layer, layer.name, scale, threshold, "qcfs", math.nan, size
                )
            )
            continue
        values, channel_means = activations[id(layer)]
        reference, scale = _percentile_scale(
            layer, nodes[0].shape, values, percentile, per_channel,
            spikes_per_step / dt,
        )  # fmt: skip
        mean = channel_means if per_channel else float(channel_means.mean())
        results.append(
            LayerCalibration(
                layer, layer.name, scale, reference, "percentile", mean, size
            )
        )
    return CalibrationReport(results, percentile, spikes_per_step, dt, n_steps)


def layer_activations(
    converter_or_model, data, batch_size: int = 100, seed: int = 0
) -> dict[str, np.ndarray]:
    """The activations of a model's neuron layers on ``data``, per channel.

    Args:
        converter_or_model: a Keras model (its ReLU layers) or a
            :class:`~snnify.Converter` (its neuron layers; the activations
            are its Keras model's).
        data: inputs, in any format :func:`calibrate` takes.
        batch_size: examples per batch.
        seed: seed of the subsampling of very large layers (at most
            ``MAX_VALUES`` values are kept per layer).

    Returns:
        ``{layer name: array (values, channels)}``, the rectified outputs of
        every layer that becomes neurons (channels last).

    Example:
        >>> import keras, numpy as np
        >>> inp = keras.Input((4,))
        >>> hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
        >>> model = keras.Model(inp, keras.layers.Dense(2, name="out")(hidden))
        >>> x = np.random.default_rng(0).uniform(0, 1, (64, 4))
        >>> values = layer_activations(model, x)
        >>> values["hidden"].shape, bool(values["hidden"].min() >= 0)
        ((64, 8), True)
    """
    exact, layers = _layers_to_calibrate(converter_or_model)
    measured = [(ly, t) for ly, t in layers if _quantized_threshold(ly) is None]
    if not measured:
        return {}
    activations = _activations(exact, measured, data, batch_size, seed)
    return {layer.name: activations[id(layer)][0] for layer, _ in measured}


def _layers_to_calibrate(converter_or_model) -> tuple[Converter, list]:
    """The exact (non-spiking) converter, and ``[(layer, nodes)]`` to calibrate.

    For a model: every layer with neurons and every QCFS layer; for a
    converter: the layers that have neurons in it. ``nodes`` are the exact
    converter's, one per call of the layer (a shared layer takes one scale,
    from the activations of all its calls).
    """
    if isinstance(converter_or_model, Converter):
        model, wanted = converter_or_model.model, converter_or_model.layers
    elif isinstance(converter_or_model, keras.Model):
        model, wanted = converter_or_model, None
    else:
        raise TypeError(
            "calibrate needs a Keras model or a snnify.Converter. Received: "
            f"{type(converter_or_model).__name__}"
        )
    # the exact network gives the activations of the Keras model
    exact = Converter(model) if wanted is None else exact_converter(model)
    layers = []
    for layer, nodes in exact.layers.by_layer():
        if wanted is None:
            chosen = isinstance(nodes[0], NeuronsNode)
            chosen = chosen or _quantized_threshold(layer) is not None
        else:
            chosen = isinstance(wanted.all(layer)[0], NeuronsNode)
        if chosen:
            layers.append((layer, nodes))
    return exact, layers


def _percentile_scale(layer, shape, values, percentile, per_channel, rate):
    """``(reference, scale)``: the percentile activation fires at ``rate`` Hz."""
    overall = _percentiles(values, percentile, False)
    if overall <= 0:
        return 0.0, 1.0  # a silent layer: any scale will do
    if not per_channel:
        return overall, rate / overall
    reference = _percentiles(values, percentile, True)
    reference = np.where(reference > 0, reference, overall)
    scale = (rate / reference).astype("float32")
    axis = channel_axis(layer, shape)
    return reference, scale.reshape((-1,) + (1,) * (len(shape) - 1 - axis))


def _activations(exact: Converter, measured, data, batch_size, seed) -> dict:
    """``{id(layer): (values (rows, channels), mean per channel)}``."""
    net = exact.net
    inputs = standardize_inputs(net, data, time_axis_optional=True)
    inputs = {node.name: value for node, value in inputs.items()}
    n = next(iter(inputs.values())).shape[0]
    taps = {
        id(layer): [Probe(node, add_to_container=False) for node in nodes]
        for layer, nodes in measured
    }
    rng = np.random.default_rng(seed)
    kept = {key: [] for key in taps}
    sums = dict.fromkeys(taps, 0.0)
    counts = dict.fromkeys(taps, 0)
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in inputs.items()}
        rates = net.compute_rates(batch, [tap for t in taps.values() for tap in t])
        for layer, _ in measured:
            values = np.concatenate(
                [_channel_columns(layer, tap, rates) for tap in taps[id(layer)]]
            )
            sums[id(layer)] = sums[id(layer)] + values.sum(axis=0, dtype="float64")
            counts[id(layer)] += len(values)
            examples = min(batch_size, n - start)
            keep = MAX_VALUES / (values.size / examples * n)
            if keep < 1.0:
                values = values[rng.random(len(values)) < keep]
            kept[id(layer)].append(values)
    return {
        key: (np.concatenate(kept[key]), sums[key] / max(counts[key], 1))
        for key in taps
    }


def _channel_columns(layer, tap, rates) -> np.ndarray:
    """A tap's rates as ``(values, channels)``."""
    shape = tap.target.shape
    values = keras.ops.convert_to_numpy(rates[tap.name]).reshape(-1, 1, tap.target.size)
    per_channel = by_channel(values, shape, channel_axis(layer, shape))
    return per_channel.reshape(-1, per_channel.shape[-1])


# the step budget that scale_firing_rates="auto" calibrates for
AUTO_STEPS = 8
# spikes_per_step="auto": the budgets tried in turn, and the relative error
# of the output on the calibration data below which the trying stops
AUTO_BUDGETS = (2, 4)
AUTO_OUTPUT_ERROR = 0.1


def convert_for_steps(
    model,
    data,
    n_steps: int,
    *,
    labels=None,
    per_channel: bool = True,
    correct: bool = True,
    spikes_per_step: int | str = "auto",
    neuron=None,
    synapse=None,
    dt: float = 0.001,
    seed: int = 0,
) -> Converter:
    """Convert ``model`` to run in ``n_steps`` steps, calibrated for them.

    Every ReLU becomes an :class:`~snnify.IntegrateAndFire` neuron (or
    ``neuron``). For each layer in turn, with the layers before it already
    spiking, a search chooses the threshold of every channel (its
    ``scale_firing_rates``) that minimises the squared error between the
    activations decoded from ``n_steps`` steps of spikes and the Keras
    model's, on ``data``; then each channel's initial voltage removes the
    mean error the layer still adds (see :mod:`snnify.threshold_search`).
    QCFS layers are searched the same way, from their largest activation on
    ``data`` (at most the trained threshold). Clipped ReLUs (ReLU6,
    ``ReLU(max_value=m)``) and QCFS saturate; neurons without a limit on
    their spikes per step do not, so each such layer is searched both ways
    and keeps the neurons with the smaller error on ``data``: unlimited, or
    limited to ``spikes_per_step`` spikes per step. Leaky ReLUs and PReLUs
    become the same neurons with the layer's slopes as ``negative_slope``,
    which also fire for the negative part (where ``neuron`` has that option:
    :class:`~snnify.IntegrateAndFire`). Nothing is retrained. The converted
    network is then simulated once on ``data`` to report what to expect.

    The thresholds are chosen for neurons that emit at most
    ``spikes_per_step`` spikes in one step: one, the neurons of the
    literature, or more, for finer activations and more spikes.

    Args:
        model: the trained Keras model.
        data: calibration inputs (a few hundred training examples), as
            ``Simulator.predict`` or Keras take them, or a pipeline (read whole).
        n_steps: the steps the network will run.
        labels: labels of ``data`` (integers or one-hot rows), to report the
            expected accuracy (default: a pipeline's targets, if labels).
        per_channel: one threshold per channel (else one per layer).
        correct: correct each channel's mean error with its initial voltage
            (else every neuron starts at 0.5).
        spikes_per_step: the most spikes per step the thresholds are chosen
            for (the neurons that run have no limit, unless ``neuron`` is
            ``IntegrateAndFire(max_spikes_per_step=K)`` or the layer
            saturates, see above). ``"auto"`` (the default): two, and where
            the output's relative error on ``data`` is above 0.1 with two,
            four if their error is smaller (up to twice the search time;
            1.6-1.9 times the spikes where four are kept, about the spikes of
            twice the steps with two, which residual networks need at few
            steps; ``converter.calibration.spikes_per_step`` says which;
            docs/low-latency.md has the figures).
        neuron: the neuron type (default ``IntegrateAndFire()``). The search
            needs ``IntegrateAndFire`` neurons; others get the scales of
            :func:`calibrate` (99.9th percentile per layer) instead.
        synapse: the converter's ``synapse`` option (default: none).
        dt: the time step the network will run with (s).
        seed: seed of the positions sampled in convolutional layers.

    Returns:
        the :class:`~snnify.Converter`; ``converter.calibration`` is the
        :class:`CalibrationReport` (its ``summary()`` shows the choices, its
        ``expected`` dict the agreement with the Keras model, the spikes per
        inference and, given ``labels``, the accuracy on ``data``).

    Example:
        >>> import keras, numpy as np
        >>> inp = keras.Input((4,))
        >>> hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
        >>> model = keras.Model(inp, keras.layers.Dense(2, name="out")(hidden))
        >>> x = np.random.default_rng(0).uniform(0, 1, (64, 4))
        >>> converter = convert_for_steps(model, x, n_steps=8)
        >>> report = converter.calibration
        >>> report.n_steps, report.layer("hidden").source
        (8, 'search')
        >>> report.expected["agreement"] > 0.9
        True
    """
    neuron = IntegrateAndFire() if neuron is None else neuron
    budgets = _spike_budgets(n_steps, spikes_per_step, neuron)
    data, labels = _examples_and_labels(model, data, labels)  # read once
    best = None
    for budget in budgets:
        converter = _searched_converter(
            model, data, n_steps, budget, neuron, per_channel=per_channel,
            correct=correct, seed=seed, synapse=synapse, dt=dt, labels=labels,
        )  # fmt: skip
        error = converter.calibration.expected["output_error"]
        if best is None or error < best.calibration.expected["output_error"]:
            best = converter
        if error <= AUTO_OUTPUT_ERROR:
            break
    _warn_exact_activations(best.net.nodes)
    return best


def _examples_and_labels(model, data, labels) -> tuple:
    """The inputs of ``data``, read whole, and ``labels``, or the targets of a
    pipeline of ``(x, y)`` where ``y`` are class labels of the first output."""
    x, y = whole_examples(data)
    if labels is None and y is not None:
        output = keras.tree.flatten(functional_graph(model).output)[0]
        if are_class_labels(y, output.shape[-1]):
            labels = y
    return x, labels


def _searched_converter(
    model, data, n_steps, budget, neuron, *, per_channel, correct, seed, synapse,
    dt, labels,
):  # fmt: skip
    """:func:`convert_for_steps` for one budget of spikes per step."""
    with warnings.catch_warnings():  # the search limits them where that helps
        warnings.simplefilter("ignore", converter_module.UnclippedWarning)
        converter = spiking_converter(model, neuron, synapse=synapse)
    report = calibrate(converter, data, n_steps=n_steps, dt=dt)
    report.apply(converter)
    if isinstance(neuron, IntegrateAndFire):
        searched = search_thresholds(converter, data, n_steps, per_channel, correct,
                                     budget, limit_saturating=True, dt=dt,
                                     seed=seed)  # fmt: skip
        report = _searched_report(converter, report, searched, budget)
    report.expected = expected_results(converter, data, n_steps, labels, dt)
    converter.calibration = report
    return converter


def spiking_converter(model, neuron=None, **options) -> Converter:
    """``model`` converted with every activation that has a neuron form as neurons.

    ReLU, clipped ReLUs (ReLU6, ``ReLU(max_value=m)``) and QCFS become
    ``neuron`` (default :class:`~snnify.IntegrateAndFire`), and so do leaky
    ReLUs and PReLUs, with each layer's slope (a PReLU's: an array) as
    ``negative_slope``, where ``neuron`` has that option (an
    ``IntegrateAndFire`` without ``min_voltage``).
    :func:`convert_for_steps` starts from it. Clipped ReLUs become neurons
    without a limit unless ``neuron`` has one (the converter warns).

    Args:
        model: the Keras model.
        neuron: the neuron type.
        **options: other arguments of :class:`~snnify.Converter`
            (``scale_firing_rates``, ``synapse``...).

    Example:
        >>> import keras
        >>> inp = keras.Input((4,))
        >>> hidden = keras.layers.LeakyReLU(0.1, name="leaky")(inp)
        >>> converter = spiking_converter(keras.Model(inp, hidden))
        >>> converter.layers[hidden].neuron_type.negative_slope
        0.1
    """
    neuron = IntegrateAndFire() if neuron is None else neuron
    exact = exact_converter(model)  # names the activations and their slopes
    swaps = _neuron_swaps(exact.net.nodes, neuron)
    converter = Converter(model, swap_activations=swaps, **options)
    _leaky_neurons(converter, exact)
    return converter


def _neuron_swaps(nodes, neuron) -> dict:
    """``swap_activations`` of :func:`spiking_converter`, from the exact nodes.

    Only the activations the model has are keys: an unused key warns.
    """
    names = {
        activation_name(node.function)
        for node in converter_module.exact_activations(nodes, hidden=False)
    }
    keys = ("qcfs", *CLIPPED_RELUS)
    config = neuron.get_config()  # min_voltage would stop the negative spikes
    if "negative_slope" in config and config.get("min_voltage") is None:
        keys += ("leaky_relu", "prelu")
    swaps = {key: neuron for key in keys if key in names}
    if any(isinstance(node, NeuronsNode) for node in nodes):
        swaps["relu"] = neuron
    return swaps


def _leaky_neurons(converter: Converter, exact: Converter) -> None:
    """Give the neurons of each leaky ReLU (or PReLU) layer its negative slope."""
    for layer, nodes in converter.layers.by_layer():
        slope = negative_slope(getattr(exact.layers.all(layer)[0], "function", None))
        if not np.any(slope):
            continue
        for node in nodes:
            if isinstance(node, NeuronsNode):
                config = {**node.neuron_type.get_config(), "negative_slope": slope}
                node.neuron_type = type(node.neuron_type)(**config)


def _warn_exact_activations(nodes) -> None:
    """Warn of activations left between the neurons as exact functions.

    (A network without neurons was refused by :func:`calibrate`.)
    """
    exact = converter_module.exact_activations(nodes)
    if exact:
        warnings.warn(
            "The activations of layer(s) "
            f"{converter_module.describe_activations(exact)} have no neuron form "
            "in convert_for_steps: they run between the spiking layers as exact "
            "functions, without spikes. To make them spike, "
            f"{converter_module.spiking_fix(exact)}",
            stacklevel=3,
        )


def _spike_budgets(n_steps, spikes_per_step, neuron) -> tuple:
    """The budgets of spikes per step that :func:`convert_for_steps` tries."""
    positive_integer(n_steps, "n_steps")
    if spikes_per_step != "auto":
        _check_budget(spikes_per_step, neuron)
        return (spikes_per_step,)
    if not isinstance(neuron, IntegrateAndFire):  # no search: one is enough
        return AUTO_BUDGETS[:1]
    limit = neuron.max_spikes_per_step or max(AUTO_BUDGETS)
    return tuple(k for k in AUTO_BUDGETS if k <= limit) or (limit,)


def _check_budget(spikes_per_step, neuron) -> None:
    """The errors of :func:`convert_for_steps`'s ``spikes_per_step``."""
    positive_integer(spikes_per_step, "spikes_per_step", ' or "auto"')
    limit = getattr(neuron, "max_spikes_per_step", None)
    if limit is not None and limit < spikes_per_step:
        raise ValueError(
            f"The neurons fire at most {limit} spike(s) per step, but the "
            f"thresholds would be chosen for {spikes_per_step}: pass "
            f"spikes_per_step={limit}. Received: spikes_per_step="
            f"{spikes_per_step!r}, neuron={neuron!r}"
        )


def _searched_report(
    converter, report, searched, spikes_per_step=1
) -> CalibrationReport:
    """``report`` with the searched layers' scales and initial voltages."""
    by_name = {s.name: s for s in searched}
    layers = []
    for c in report.layers:
        found = by_name.get(c.name)
        if found is None:
            layers.append(c)
            continue
        node = converter.layers.all(c.layer)[0]  # a shared layer's are equal
        layers.append(
            LayerCalibration(
                c.layer,
                c.name,
                node.scale,
                found.threshold,
                "search",
                found.mean_activation,
                c.size,
                found.initial_voltage,
                found.error,
                found.max_spikes_per_step,
                found.negative_slope,
            )  # fmt: skip
        )
    return CalibrationReport(layers, None, spikes_per_step, report.dt, report.n_steps)


def expected_results(converter, data, n_steps, labels=None, dt=0.001) -> dict:
    """What the spiking network does on ``data`` in ``n_steps`` steps.

    Returns:
        ``{"agreement": share of examples whose arg-max is the Keras
        model's, "output_error": relative RMS error of the output (the mean
        over the steps) against the Keras model's (of several outputs, the
        largest), "spikes_per_inference": ...}``, plus ``"accuracy"`` and
        ``"ann_accuracy"`` when ``labels`` are given (the arg-max and the
        labels of the first output).
    """
    net = converter.net
    inputs = standardize_inputs(net, data, time_axis_optional=True)
    outputs = list(converter.outputs.values())
    counters = [
        Probe(node, keep="stats", add_to_container=False)
        for node in net.nodes
        if isinstance(node, NeuronsNode) and node.neuron_type.spiking
    ]
    with Simulator(net, progress_bar=False, dt=dt) as sim:
        result = sim.predict(inputs, n_steps=n_steps, probes=[*outputs, *counters])
    keras_net = exact_converter(converter.model)  # its rates are the model's
    keras_outputs = list(keras_net.outputs.values())
    rates = keras_net.net.compute_rates(
        {k.name: v for k, v in inputs.items()}, keras_outputs
    )
    errors, classes = [], []
    for output, keras_output in zip(outputs, keras_outputs, strict=True):
        exact = keras.ops.convert_to_numpy(rates[keras_output.name])[:, 0]
        decoded = np.asarray(result[output]).mean(axis=1)
        mean_square = max(np.mean(exact**2), 1e-30)
        errors.append(np.sqrt(np.mean((decoded - exact) ** 2) / mean_square))
        classes.append((np.argmax(exact, -1), np.argmax(decoded, -1)))
    ann, snn = classes[0]
    spikes = 0.0
    for probe in counters:
        scale = np.broadcast_to(probe.target.scale, probe.target.shape).reshape(-1)
        rate = np.asarray(result[probe].mean).reshape(len(snn), -1)
        spikes += float(np.mean((rate * scale).sum(axis=1))) * n_steps * dt
    expected = {
        "agreement": float(np.mean(snn == ann)),
        "output_error": float(max(errors)),
        "spikes_per_inference": spikes,
    }
    if labels is not None:
        labels = class_labels(labels, len(snn))
        expected["accuracy"] = float(np.mean(snn == labels))
        expected["ann_accuracy"] = float(np.mean(ann == labels))
    return expected


def auto_scales(model, calibration_data, swap_activations=None) -> CalibrationReport:
    """``Converter(scale_firing_rates="auto", calibration_data=x)``.

    The per-channel thresholds that :func:`convert_for_steps` searches for
    ``AUTO_STEPS`` steps, without the initial-voltage correction, for every
    layer that ``swap_activations`` (and the default, ReLU) turns into
    neurons. The search runs ``IntegrateAndFire`` neurons (with the
    caller's ``negative_slope``); the neuron types that run are the caller's.
    """
    calibration_data = whole_inputs(calibration_data)  # read once
    with warnings.catch_warnings():  # the caller's converter gives them
        warnings.simplefilter("ignore")
        spiking = Converter(model, swap_activations=swap_activations)
        if not any(isinstance(n, NeuronsNode) for n in spiking.net.nodes):
            return calibrate(model, calibration_data)  # QCFS layers only: no data
        report = calibrate(spiking, calibration_data, n_steps=AUTO_STEPS)
        converter = Converter(
            model,
            swap_activations=_integrate_and_fire(spiking.swap_activations),
            scale_firing_rates=report,
        )
    searched = search_thresholds(
        converter, calibration_data, AUTO_STEPS, per_channel=True, correct=False
    )
    return _searched_report(converter, report, searched)


def _integrate_and_fire(swaps) -> dict:
    """``swaps`` with every neuron type (and ReLU's) as ``IntegrateAndFire``.

    A neuron's ``negative_slope`` is kept: the search replays its negative
    spikes.
    """
    search = {
        key: IntegrateAndFire(negative_slope=getattr(value, "negative_slope", 0.0))
        if isinstance(value, NeuronType)
        else value
        for key, value in swaps.items()
    }
    search.setdefault("relu", IntegrateAndFire())
    return search


converter_module.SCALE_METHODS["auto"] = auto_scales
