"""Layer-wise threshold search and potential correction for a step budget.

A rectified layer replaced by integrate-and-fire neurons reports, after ``T``
steps, ``theta / T`` times its spike count, where ``theta = 1 / (scale * dt)``
is its threshold in activation units. How close that comes to the ReLU
activation it replaces depends on ``theta`` and on ``T``: a high threshold
resolves the large activations and loses the small ones, a low one clips the
large ones. :func:`search_thresholds` chooses, layer after layer (the earlier
layers already spiking with their chosen thresholds), the threshold of every
channel (or of the whole layer) that minimises the squared error between
the decoded spiking activations at ``T`` steps and the Keras model's
activations on calibration data (a ReLU6 layer's clipped at 6, whatever
neurons replace the layers before it). The currents into the layer are recorded
once from the spiking network and the neuron is then replayed on them in
NumPy for every candidate threshold (a grid below the largest activation).

With ``correct=True`` it then removes the mean error that each channel still
adds at ``T`` steps by moving its initial voltage (the potential correction of
Li et al., "A free lunch from ANN: towards efficient, accurate spiking neural
networks calibration", ICML 2021), and the threshold is chosen for the
smallest error after that correction.

Example:
    >>> import numpy as np
    >>> counts = if_counts(np.full((4, 1), 0.3, "float32"), 0.5)
    >>> counts.tolist()  # 0.5 + 4 * 0.3 = 1.7: one spike, rounding 1.2
    [1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from keras import ops

from snnify.converter import exact_converter
from snnify.graph import NeuronsNode, Probe
from snnify.inputs import standardize_inputs
from snnify.keras_graph import CLIPPED_RELUS, activation_name
from snnify.neurons import IntegrateAndFire, SignedIntegrateAndFire
from snnify.simulator import Simulator

# candidate thresholds, as fractions of the largest calibration activation
GRID = np.geomspace(1.0, 1.0 / 64, 31)
# activations that saturate (ReLU6 at 6, ReLU(max_value=m) at m, QCFS at its
# threshold)
SATURATING = (*CLIPPED_RELUS, "qcfs")
# initial voltages (in thresholds) that the correction may choose: the
# neurons take [-1, 1)
VOLTAGE_RANGE = (-1.0, 0.999)


def channel_axis(layer, shape) -> int:
    """Axis of the channels in a layer's output for one example."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return 0
    return len(shape) - 1


def if_counts(
    drive, initial_voltage, max_spikes_per_step=None, signed=False, negative_slope=0.0
) -> np.ndarray:
    """Spike counts of :class:`~snnify.IntegrateAndFire` neurons over time.

    Args:
        drive: ``(steps, ...)`` input per step in thresholds (``J * dt``).
        initial_voltage: the initial voltage (broadcasts against
            ``drive.shape[1:]``).
        max_spikes_per_step: spikes a neuron may emit in one step (no limit
            by default, as ``IntegrateAndFire``).
        signed: count the net spikes of
            :class:`~snnify.SignedIntegrateAndFire` neurons instead, whose
            ``max_spikes_per_step`` bounds the average over the steps.
        negative_slope: the neurons' ``negative_slope`` (one value, or one
            per channel): the spikes of the negative part count with the
            sign of ``-a`` (negative for a leaky ReLU).

    Returns:
        the number of spikes of every neuron, ``drive.shape[1:]``.
    """
    if signed:  # the order of the input does not matter
        counts = np.maximum(np.floor(initial_voltage + drive.sum(axis=0)), 0.0)
        if max_spikes_per_step is not None:
            counts = np.minimum(counts, max_spikes_per_step * len(drive))
        return counts.astype("float32")
    voltage = np.broadcast_to(initial_voltage, drive.shape[1:]).astype("float32")
    total = np.zeros(drive.shape[1:], "float32")
    limit = np.inf if max_spikes_per_step is None else max_spikes_per_step
    slope = np.asarray(negative_slope, "float32")  # per channel, or one value
    magnitude = np.abs(slope)
    inverse = np.divide(1.0, magnitude.astype("float64"), where=magnitude > 0,
                        out=np.zeros(magnitude.shape)).astype("float32")  # fmt: skip
    for step in drive:
        voltage = voltage + step
        spikes = np.minimum(np.maximum(np.floor(voltage), 0.0), limit)
        voltage -= spikes
        if np.any(slope):  # the negative part: a spike at each -1 / |a|
            below = np.minimum(np.maximum(np.floor(-voltage * magnitude), 0), limit)
            voltage += below * inverse
            spikes -= np.sign(slope) * below
        total += spikes
    return total


@dataclass
class LayerSearch:
    """What the search chose for one layer.

    Attributes:
        name: the Keras layer's name.
        threshold: activation per spike per step (per channel or one value).
        initial_voltage: initial voltage in thresholds (per channel or one).
        error: relative RMS error of the decoded activations at ``n_steps``
            on the calibration samples, after the choice.
        mean_activation: mean magnitude of the non-spiking activation per
            channel (a leaky ReLU's negative part spikes too).
        max_spikes_per_step: the limit of the neurons that run (None: none).
        negative_slope: that of the neurons that run (0: no negative spikes;
            an array: a PReLU's slopes).
    """

    name: str
    threshold: np.ndarray
    initial_voltage: np.ndarray
    error: float
    mean_activation: np.ndarray
    max_spikes_per_step: int | None = None
    negative_slope: float | np.ndarray = 0.0


def choose_threshold(
    currents,
    target,
    n_steps,
    per_channel=True,
    correct=True,
    spikes_per_step=1,
    neuron=None,
):
    """The threshold and initial voltage that minimise the decoding error.

    Candidates are judged as neurons that emit at most ``spikes_per_step``
    spikes per step (one: the neurons of the literature), so that a low
    threshold pays for the activations it clips, and, with ``correct``, after
    one step of the initial-voltage correction. The neurons that run need
    not have that limit; it sets how fine the thresholds may get: the higher
    it is, the smaller the decoding error and the more the spikes.

    Args:
        currents: ``(n_steps, samples, channels)`` input of the layer.
        target: ``(samples, channels)`` non-spiking activations.
        n_steps: steps of the simulation.
        per_channel: one threshold per channel (else one per layer).
        correct: correct each channel's mean error with its initial voltage.
        spikes_per_step: the most spikes per step the candidates may emit.
        neuron: the neuron type that will run (default ``IntegrateAndFire()``),
            replayed with its own ``max_spikes_per_step`` and
            ``negative_slope`` for the initial voltages
            (:class:`~snnify.SignedIntegrateAndFire` neurons as such).

    Returns:
        ``(threshold, initial_voltage, relative RMS error)``, per channel.
    """
    reference = target.max(axis=0)
    overall = max(float(reference.max()), 1e-9)
    # a channel silent on the calibration data takes the layer's threshold
    reference = np.where(reference > 0, reference, overall)
    if not per_channel:
        reference = np.full_like(reference, overall)
    signed = isinstance(neuron, SignedIntegrateAndFire)
    limit = getattr(neuron, "max_spikes_per_step", None)
    slope = getattr(neuron, "negative_slope", 0.0)

    def counts(theta, voltage, max_spikes_per_step=limit):
        return if_counts(currents / theta, voltage, max_spikes_per_step, signed, slope)

    best = (np.full(reference.shape, np.inf), reference.copy())
    for fraction in GRID:
        theta = (reference * fraction).astype("float32")
        voltage = np.float32(0.5)
        for _ in range(2 if correct else 1):
            error = counts(theta, voltage, spikes_per_step) * theta / n_steps - target
            voltage = _corrected(voltage, error, theta, n_steps)
        cost = np.mean(error**2, axis=0)
        if not per_channel:
            cost = np.full_like(cost, cost.sum())
        better = cost < best[0]
        best = (np.where(better, cost, best[0]), np.where(better, theta, best[1]))
    theta = best[1].astype("float32")
    plain = counts(theta, 0.5) * theta / n_steps - target
    voltage, error = np.full(theta.shape, 0.5, "float32"), plain
    for _ in range(3 if correct else 0):  # the count is not linear in the voltage
        voltage = _corrected(voltage, error, theta, n_steps)
        error = counts(theta, voltage) * theta / n_steps - target
    # keep 0.5 where the correction did not help (it is bounded)
    worse = np.mean(error**2, axis=0) > np.mean(plain**2, axis=0)
    voltage = np.where(worse, 0.5, voltage).astype("float32")
    error = np.where(worse, plain, error)
    relative = np.sqrt(np.mean(error**2) / max(np.mean(target**2), 1e-30))
    return theta, voltage, float(relative)


def choose_neuron(
    currents, target, n_steps, neurons, per_channel=True, correct=True,
    spikes_per_step=1,
):  # fmt: skip
    """Of ``neurons``, the one whose searched threshold decodes best.

    Each is replayed as :func:`choose_threshold` replays it; ties go to the
    first.

    Returns:
        ``(neuron, threshold, initial_voltage, relative RMS error)``.

    Example: one spike per step cannot catch up with input that arrives late
        >>> currents = np.array([0, 0, 0, 2], "float32").reshape(4, 1, 1)
        >>> target = np.full((1, 1), 0.5, "float32")  # the mean input
        >>> neurons = [IntegrateAndFire(max_spikes_per_step=1), IntegrateAndFire()]
        >>> neuron, *_, error = choose_neuron(currents, target, 4, neurons)
        >>> neuron.max_spikes_per_step, error
        (None, 0.0)
    """
    searches = []
    for neuron in neurons:
        found = choose_threshold(currents, target, n_steps, per_channel, correct,
                                 spikes_per_step, neuron)  # fmt: skip
        searches.append((neuron, *found))
    return min(searches, key=lambda search: search[3])  # the first of equals


def _corrected(voltage, error, theta, n_steps):
    """The initial voltage that removes the mean error (to first order)."""
    voltage = voltage - error.mean(axis=0) * n_steps / theta
    return np.clip(voltage, *VOLTAGE_RANGE).astype("float32")


def search_thresholds(
    converter,
    data,
    n_steps: int,
    per_channel: bool = True,
    correct: bool = True,
    spikes_per_step: int = 1,
    samples_per_example: int = 16,
    batch_size: int = 100,
    dt: float = 0.001,
    seed: int = 0,
    limit_saturating: bool = False,
) -> list[LayerSearch]:
    """Set the scale and initial voltage of every spiking layer for ``n_steps``.

    Layers are calibrated in order; each sees the spikes of the layers before
    it as they will run. Only :class:`~snnify.IntegrateAndFire` layers are
    searched (others keep their scale). A layer called more than once takes
    one threshold, searched on the currents of all its calls.

    Args:
        converter: a :class:`~snnify.Converter` with ``IntegrateAndFire``
            neurons; changed in place (``node.scale``, ``node.neuron_type``).
        data: calibration inputs, in any format ``Simulator.predict`` takes.
        n_steps: the steps the network will run.
        per_channel: one threshold per channel instead of one per layer.
        correct: choose each channel's initial voltage to remove its mean
            error (else 0.5).
        spikes_per_step: the most spikes per step the thresholds are chosen
            for (see :func:`choose_threshold`).
        samples_per_example: positions sampled per example in each channel
            of a convolutional layer.
        batch_size: examples simulated at once.
        dt: the simulator's time step (s).
        seed: seed of the sampling of positions.
        limit_saturating: where a layer's activation saturates (ReLU6, QCFS)
            and its neurons have no limit, also try neurons limited to
            ``spikes_per_step`` spikes per step, which saturate too, and keep
            the neurons with the smaller error on ``data``.

    Returns:
        one :class:`LayerSearch` per searched layer, in order.
    """
    net = converter.net
    inputs = standardize_inputs(net, data, time_axis_optional=True)
    exact = exact_converter(converter.model)
    rng = np.random.default_rng(seed)
    chosen = []
    for layer, nodes in converter.layers.by_layer():
        node = nodes[0]  # a shared layer's calls share one threshold
        if not isinstance(node, NeuronsNode):
            continue
        if not isinstance(node.neuron_type, IntegrateAndFire):
            continue
        axis = channel_axis(layer, node.shape)
        exact_nodes = exact.layers.all(layer)
        recorded = [
            _record(net, spiking, (exact.net, reference), inputs, n_steps, axis,
                    batch_size, samples_per_example, dt, rng)
            for spiking, reference in zip(nodes, exact_nodes)
        ]  # fmt: skip
        currents = np.concatenate([c for c, _ in recorded], axis=1)
        target = np.concatenate([t for _, t in recorded])
        options = [node.neuron_type]
        if limit_saturating and _saturates(exact_nodes[0], node.neuron_type):
            options.append(_limited(node.neuron_type, spikes_per_step))
        replays = [_replayed(option, node.shape, axis) for option in options]
        replayed, theta, voltage, error = choose_neuron(
            currents, target, n_steps, replays, per_channel, correct, spikes_per_step
        )
        neuron = options[[r is replayed for r in replays].index(True)]
        trailing = (1,) * (len(node.shape) - 1 - axis)
        scale = (1.0 / (theta * dt)).reshape((-1, *trailing))
        voltage_config = {"initial_voltage": voltage.reshape((-1, *trailing))}
        neuron = type(neuron)(**{**neuron.get_config(), **voltage_config})
        for each in nodes:
            each.scale, each.neuron_type = scale, neuron
        chosen.append(LayerSearch(layer.name, theta, voltage, error,
                                  np.abs(target).mean(axis=0),
                                  neuron.max_spikes_per_step,
                                  getattr(neuron, "negative_slope", 0.0)))  # fmt: skip
    return chosen


def _saturates(exact_node, neuron) -> bool:
    """Whether the Keras activation saturates and ``neuron`` has no limit."""
    name = activation_name(getattr(exact_node, "function", None))
    return name in SATURATING and neuron.max_spikes_per_step is None


def _replayed(neuron, shape, axis):
    """``neuron`` as the search replays it, on ``(samples, channels)``.

    Slopes that vary along other axes than the channels (a PReLU without
    ``shared_axes`` after a convolution) are replayed as their mean per
    channel; the neurons that run keep them all.
    """
    slope = getattr(neuron, "negative_slope", 0.0)
    if np.ndim(slope) == 0:
        return neuron
    per_channel = np.moveaxis(np.broadcast_to(slope, shape), axis, -1)
    per_channel = per_channel.reshape(-1, shape[axis]).mean(axis=0)
    return type(neuron)(**{**neuron.get_config(), "negative_slope": per_channel})


def _limited(neuron, spikes_per_step):
    """``neuron`` limited to ``spikes_per_step`` spikes per step."""
    config = {**neuron.get_config(), "max_spikes_per_step": spikes_per_step}
    return type(neuron)(**config)


def _record(net, node, reference, inputs, n_steps, axis, batch_size, samples, dt,
            rng):  # fmt: skip
    """``(currents (n_steps, rows, C), target (rows, C))`` at sampled positions.

    ``reference``: ``(network, node)`` whose rates are the Keras model's
    activation of ``node`` (its target).
    """
    current_probe = Probe(node.parents[0], add_to_container=False)
    exact_net, exact_node = reference
    rate_probe = Probe(exact_node, add_to_container=False)
    n = next(iter(inputs.values())).shape[0]
    currents, targets = [], []
    with Simulator(net, progress_bar=False, dt=dt) as sim:
        for start in range(0, n, batch_size):
            batch = {k: v[start : start + batch_size] for k, v in inputs.items()}
            spiking = sim.predict(batch, n_steps=n_steps, probes=[current_probe])
            rates = exact_net.compute_rates(
                {k.name: v for k, v in batch.items()}, [rate_probe]
            )
            rate = ops.convert_to_numpy(rates[rate_probe.name])[:, 0]
            current = by_channel(spiking[current_probe], node.shape, axis)
            rate = by_channel(rate[:, None], node.shape, axis)[:, 0]
            positions = current.shape[2]
            if positions > samples:
                pick = rng.integers(0, positions, (len(rate), samples))
                current = np.take_along_axis(current, pick[:, None, :, None], 2)
                rate = np.take_along_axis(rate, pick[:, :, None], 1)
            channels = current.shape[-1]
            currents.append(np.moveaxis(current, 1, 0).reshape(n_steps, -1, channels))
            targets.append(rate.reshape(-1, channels))
    return np.concatenate(currents, axis=1), np.concatenate(targets)


def by_channel(values, shape, axis) -> np.ndarray:
    """``(batch, steps, size)`` -> ``(batch, steps, positions, channels)``."""
    values = np.asarray(values).reshape((*values.shape[:2], *shape))
    values = np.moveaxis(values, 2 + axis, -1)
    return values.reshape(*values.shape[:2], -1, values.shape[-1])
