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
clip-floor-shift activations (:class:`snnify.quantized.QCFS`) take their
scale from their trained threshold ``lambda`` instead (``scale = 1 / (lambda
* dt)``), which needs no data.

Use it with :class:`~snnify.IntegrateAndFire` neurons (signed current,
initial voltage 0.5); :func:`decode` turns a probe's output over time into
one value per example.

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
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from snnify.converter import Converter
from snnify.network import Network, NeuronsNode
from snnify.quantized import QCFS
from snnify.simulator import ProbeStats, Simulator
from snnify.synapses import as_synapse

DECODINGS = ("mean", "last", "count")
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
        source: ``"percentile"`` or ``"qcfs"``.
        mean_activation: mean activation over the calibration data (per
            channel with ``per_channel=True``; NaN for QCFS layers, which are
            not measured).
        size: number of neurons.
    """

    layer: keras.layers.Layer
    name: str
    scale: float | np.ndarray
    reference: float | np.ndarray
    source: str
    mean_activation: float | np.ndarray
    size: int

    def spikes_per_step(self, dt: float) -> float:
        """Expected spikes per step of the whole layer, for one example."""
        per_channel = np.ravel(self.mean_activation) * np.ravel(self.scale) * dt
        return float(np.mean(per_channel)) * self.size


class CalibrationReport(Mapping):
    """The scales chosen by :func:`calibrate`, keyed by Keras layer.

    It is a mapping ``{layer: scale}``, so it can be given as it is to
    ``Converter(..., scale_firing_rates=report)``. Items also look up by
    Keras tensor or by layer name.

    Attributes:
        layers: one :class:`LayerCalibration` per neuron layer, in order.
        percentile, spikes_per_step, dt, n_steps: the options used.
    """

    def __init__(self, layers, percentile, spikes_per_step, dt, n_steps):
        self.layers = list(layers)
        self.percentile = percentile
        self.spikes_per_step = spikes_per_step
        self.dt = dt
        self.n_steps = n_steps
        self._by_id = {id(c.layer): c for c in self.layers}

    def layer(self, key) -> LayerCalibration:
        """The :class:`LayerCalibration` of a layer, tensor or layer name."""
        history = getattr(key, "_keras_history", None)
        if history is not None:
            key = history.operation
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
            node = converter.layers[c.layer]
            if not isinstance(node, NeuronsNode):
                raise ValueError(
                    f"Layer {c.name!r} has no neurons in this converter; it cannot "
                    "take a scale."
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
        return "\n".join(lines)

    def __repr__(self):
        scales = ", ".join(f"{c.name}: {np.mean(c.scale):.4g}" for c in self.layers)
        return f"<CalibrationReport {{{scales}}}>"


def _quantized_threshold(layer):
    """A QCFS layer's threshold ``lambda``, or None for other layers."""
    if isinstance(layer, QCFS):
        return float(keras.ops.convert_to_numpy(layer.threshold))
    return None


class _Tap:
    """What ``Network.compute_rates`` needs of a probe, without adding one."""

    def __init__(self, node):
        self.target = node
        self.name = f"calibrate:{node.name}"
        self.size_in = node.size


def _standard_inputs(network: Network, data) -> dict:
    """``{input name: (n, steps, *shape)}`` from any format ``predict`` takes.

    Arrays in Keras's own format (no time axis) are accepted too.
    """
    nodes = network.input_nodes
    if not isinstance(data, Mapping):
        data = {nodes[0]: data} if len(nodes) == 1 else dict(zip(nodes, data))
    prepared = {}
    for key, value in data.items():
        value = np.asarray(value)
        node = next((n for n in nodes if key is n or key == n.name), None)
        if node is not None and value.shape[1:] in (node.shape, (node.size,)):
            value = value[:, None]
        prepared[key] = value
    with Simulator(network, progress_bar=False, seed=0) as sim:
        return {n.name: v for n, v in sim.standardize_inputs(prepared).items()}


def _channel_axis(layer, shape) -> int:
    """Axis of the channels in a layer's output for one example."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return 0
    return len(shape) - 1


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
            keyed by ``converter.inputs[...]``), or Keras's own ``(n, 28, 28,
            1)``. Only needed for layers that are not QCFS activations.
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
    if isinstance(converter_or_model, Converter):
        model = converter_or_model.model
        wanted = converter_or_model.layers
    elif isinstance(converter_or_model, keras.Model):
        model, wanted = converter_or_model, None
    else:
        raise TypeError(
            "calibrate needs a Keras model or a snnify.Converter. Received: "
            f"{type(converter_or_model).__name__}"
        )
    # the exact (non-spiking) network gives the activations of the Keras model
    exact = Converter(model)
    layers = []  # (layer, tensor) of every layer to calibrate
    for tensor in exact.layers:
        layer = tensor._keras_history.operation
        if wanted is None:
            chosen = isinstance(exact.layers[tensor], NeuronsNode)
            chosen = chosen or _quantized_threshold(layer) is not None
        else:
            chosen = isinstance(wanted[tensor], NeuronsNode)
        if chosen:
            layers.append((layer, tensor))

    measured = [(ly, t) for ly, t in layers if _quantized_threshold(ly) is None]
    activations = {}
    if measured:
        if data is None:
            names = ", ".join(repr(ly.name) for ly, _ in measured)
            raise ValueError(
                f"calibrate needs data for layer(s) {names}: pass calibration "
                "inputs, e.g. calibration_data=x_train[:500] (shaped (n, 1, "
                "size) like predict's inputs)."
            )
        activations = _activations(exact, measured, data, batch_size, seed)

    results = []
    for layer, tensor in layers:
        node = exact.layers[tensor]
        threshold = _quantized_threshold(layer)
        if threshold is not None:
            results.append(
                LayerCalibration(
                    layer, layer.name, 1.0 / (threshold * dt), threshold, "qcfs",
                    math.nan, node.size,
                )
            )  # fmt: skip
            continue
        values, channel_means = activations[id(layer)]
        mean = channel_means if per_channel else float(channel_means.mean())
        overall = _percentiles(values, percentile, False)
        if overall <= 0:
            reference, scale = 0.0, 1.0  # a silent layer: any scale will do
        elif per_channel:
            reference = _percentiles(values, percentile, True)
            reference = np.where(reference > 0, reference, overall)
            scale = (spikes_per_step / (reference * dt)).astype("float32")
            axis = _channel_axis(layer, node.shape)
            scale = scale.reshape((-1,) + (1,) * (len(node.shape) - 1 - axis))
        else:
            reference = overall
            scale = spikes_per_step / (overall * dt)
        results.append(
            LayerCalibration(
                layer, layer.name, scale, reference, "percentile", mean, node.size
            )
        )
    return CalibrationReport(results, percentile, spikes_per_step, dt, n_steps)


def _activations(exact: Converter, measured, data, batch_size, seed) -> dict:
    """``{id(layer): (values (rows, channels), mean per channel)}``."""
    net = exact.net
    inputs = _standard_inputs(net, data)
    n = next(iter(inputs.values())).shape[0]
    taps = {id(layer): _Tap(exact.layers[t]) for layer, t in measured}
    rng = np.random.default_rng(seed)
    kept = {key: [] for key in taps}
    sums = dict.fromkeys(taps, 0.0)
    counts = dict.fromkeys(taps, 0)
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in inputs.items()}
        rates = net.compute_rates(batch, list(taps.values()))
        for layer, _ in measured:
            tap = taps[id(layer)]
            values = keras.ops.convert_to_numpy(rates[tap.name])
            shape = tap.target.shape
            values = values.reshape((-1, *shape))
            values = np.moveaxis(values, 1 + _channel_axis(layer, shape), -1)
            values = values.reshape(-1, values.shape[-1])
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


def auto_scales(model, scale_firing_rates, calibration_data):
    """``Converter(scale_firing_rates="auto", calibration_data=x)``."""
    if isinstance(scale_firing_rates, str) and scale_firing_rates != "auto":
        raise ValueError(
            "scale_firing_rates must be a number, a dict keyed by layer, or "
            f"'auto' (with calibration_data). Received: {scale_firing_rates!r}"
        )
    if not isinstance(scale_firing_rates, str):
        raise ValueError(
            "calibration_data is only used with scale_firing_rates='auto'. "
            f"Received: scale_firing_rates={scale_firing_rates!r}"
        )
    return calibrate(model, calibration_data)


def decode(output, method: str = "mean", synapse=None, dt: float = 0.001):
    """One value per example and output from a probe's output over time.

    Args:
        output: ``(batch, n_steps, size)`` as ``Simulator.predict`` returns it
            (a :class:`~snnify.simulator.ProbeStats` works for ``"mean"`` and
            ``"count"``).
        method: ``"mean"`` (mean over the steps: the rate estimate),
            ``"last"`` (the last step, after filtering with ``synapse`` if
            given, as in the NengoDL tutorial) or ``"count"`` (sum over the
            steps times ``dt``: the number of spikes of a spiking probe with
            amplitude 1 and scale 1).
        synapse: time constant (s) or :class:`~snnify.Lowpass` applied over
            time before ``"last"`` (ignored by the linear ``"mean"`` and
            ``"count"``, which a filter would only delay).
        dt: the simulator's time step (s).

    Returns:
        ``(batch, size)``.

    Example:
        >>> out = np.array([[[0.0, 1000.0], [1000.0, 0.0], [0.0, 1000.0]]])
        >>> decode(out, "count").tolist()
        [[1.0, 2.0]]
        >>> decode(out, "last").tolist()
        [[0.0, 1000.0]]
    """
    if method not in DECODINGS:
        raise ValueError(f"method must be one of {DECODINGS}. Received: {method!r}")
    if isinstance(output, ProbeStats):
        if method == "last":
            raise ValueError(
                "A probe with keep='stats' has no last step; use keep='last' or "
                "'all', or decode with method='mean' or 'count'."
            )
        return output.mean if method == "mean" else output.sum * dt
    output = np.asarray(output)
    if output.ndim != 3:
        raise ValueError(
            "decode expects (batch, n_steps, size) as predict returns. Received: "
            f"shape={output.shape}"
        )
    if method == "mean":
        return output.mean(axis=1)
    if method == "count":
        return output.sum(axis=1) * dt
    synapse = as_synapse(synapse)
    if synapse is None:
        return output[:, -1]
    a = synapse.decay(dt)
    weights = (1 - a) * a ** np.arange(output.shape[1] - 1, -1, -1)
    return np.einsum("btn,t->bn", output, weights.astype(output.dtype))
