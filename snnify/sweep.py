"""Search for the cheapest spiking configuration that is accurate enough.

:func:`sweep` converts a Keras model once per *setting* (neuron type,
calibration percentile, synapse, decoding...), simulates each setting once for
the largest number of steps asked for, and reads every smaller step count off
the same run (the first ``T`` steps of a run are a run of ``T`` steps). Each
row of the resulting table gives the accuracy, spikes and synaptic operations
per inference and the energy estimate of :mod:`snnify.stats`.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((4,))
    >>> hidden = keras.layers.Dense(16, activation="relu")(inp)
    >>> model = keras.Model(inp, keras.layers.Dense(2)(hidden))
    >>> x = np.random.default_rng(0).uniform(0, 1, (32, 4))
    >>> y = np.argmax(model.predict(x, verbose=0), axis=-1)
    >>> result = snnify.sweep(model, x, y, steps=[2, 8], calibration_data=x)
    >>> [(row["setting"], row["steps"]) for row in result.rows]
    [('calibrated', 2), ('calibrated', 8)]
    >>> best = result.best(target=0.5)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from snnify.calibrate import calibrate
from snnify.converter import Converter
from snnify.graph import NeuronsNode
from snnify.inputs import standardize_inputs, whole_inputs
from snnify.layers import QCFS
from snnify.neurons import IntegrateAndFire
from snnify.quantize import qcfs_neuron
from snnify.stats import HOROWITZ_45NM, EnergyModel, measure
from snnify.validation import class_labels

DEFAULT_STEPS = (1, 2, 4, 8, 16, 32, 64)
COSTS = ("energy", "synops", "spikes", "steps")
# options of a setting that go to calibrate()
_CALIBRATION_OPTIONS = ("percentile", "per_channel", "spikes_per_step")


class SweepResult:
    """The table of a :func:`sweep`.

    Attributes:
        rows: one dict per (setting, steps): ``setting``, ``steps``,
            ``accuracy``, ``spikes`` (per inference), ``spikes_per_neuron``,
            ``synops``, ``macs`` (of layers fed by non-spikes), ``energy_nj``.
        ann_accuracy: accuracy of the Keras model on the same data.
        ann_energy_nj: its energy estimate per inference.
        settings: ``{name: options}`` as used.
        stats: ``{(setting, steps): NetworkStats}``.
        energy_model: the :class:`~snnify.stats.EnergyModel` of the estimates.
    """

    def __init__(self, rows, ann_accuracy, ann_energy_nj, settings, stats, energy):
        self.rows = rows
        self.ann_accuracy = ann_accuracy
        self.ann_energy_nj = ann_energy_nj
        self.settings = settings
        self.stats = stats
        self.energy_model = energy

    def best(self, target: float | None = None, tolerance: float | None = None,
             cost: str = "energy"):  # fmt: skip
        """The cheapest row whose accuracy reaches the target, or None.

        Args:
            target: the accuracy (0..1) to reach.
            tolerance: instead of ``target``: reach ``ann_accuracy -
                tolerance`` (e.g. 0.003 for "within 0.3 points").
            cost: ``"energy"``, ``"synops"``, ``"spikes"`` or ``"steps"``;
                ties go to fewer steps, then fewer spikes.
        """
        if cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}. Received: {cost!r}")
        if (target is None) == (tolerance is None):
            raise ValueError(
                "Give exactly one of target and tolerance. Received: "
                f"target={target!r}, tolerance={tolerance!r}"
            )
        if target is None:
            target = self.ann_accuracy - tolerance
        good = [r for r in self.rows if r["accuracy"] >= target - 1e-12]
        if not good:
            return None
        key = {"energy": "energy_nj"}.get(cost, cost)
        return min(good, key=lambda r: (r[key], r["steps"], r["spikes"]))

    def table(self, markdown: bool = False) -> str:
        """The rows as text (or a Markdown table)."""
        head = [
            "setting",
            "steps",
            "accuracy %",
            "spikes/inference",
            "spikes/neuron",
            "SynOps",
            "MACs",
            "energy nJ",
        ]
        lines = []
        for r in self.rows:
            lines.append(
                [
                    r["setting"],
                    str(r["steps"]),
                    f"{100 * r['accuracy']:.2f}",
                    f"{r['spikes']:.4g}",
                    f"{r['spikes_per_neuron']:.3g}",
                    f"{r['synops']:.4g}",
                    f"{r['macs']:.4g}",
                    f"{r['energy_nj']:.4g}",
                ]
            )
        lines.append(
            ["ANN", "-", f"{100 * self.ann_accuracy:.2f}", "-", "-", "-", "-",
             f"{self.ann_energy_nj:.4g}"]
        )  # fmt: skip
        if markdown:
            out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(cells) + " |" for cells in lines]
            return "\n".join(out)
        widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
        return "\n".join(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                      enumerate(zip(cells, widths)))
            for cells in [head, *lines]
        )  # fmt: skip

    def plot(self, path=None):
        """Accuracy against steps and against spikes per inference.

        Returns the matplotlib Figure (drawn on the Agg canvas); saved to
        ``path`` if given.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 4), layout="constrained")
        FigureCanvasAgg(fig)
        by_steps, by_spikes = fig.subplots(1, 2, sharey=True)
        for name in self.settings:
            rows = [r for r in self.rows if r["setting"] == name]
            accuracy = [100 * r["accuracy"] for r in rows]
            by_steps.plot([r["steps"] for r in rows], accuracy, "o-", label=name)
            by_spikes.plot([r["spikes"] for r in rows], accuracy, "o-", label=name)
        for ax in (by_steps, by_spikes):
            ax.axhline(100 * self.ann_accuracy, color="k", ls="--", lw=1, label="ANN")
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
        by_steps.set_xlabel("time steps")
        by_spikes.set_xlabel("spikes per inference")
        by_steps.set_ylabel("accuracy (%)")
        by_steps.legend(fontsize="small")
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _accuracy(model, x, y) -> float:
    inputs = [v[:, 0] for v in x.values()]
    predicted = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    predicted = predicted[0] if isinstance(predicted, list) else predicted
    return float(np.mean(np.argmax(predicted, axis=-1) == y))


def sweep(
    model,
    x,
    y,
    steps=DEFAULT_STEPS,
    settings: Mapping | None = None,
    calibration_data=None,
    energy: EnergyModel = HOROWITZ_45NM,
    minibatch_size: int | None = None,
    seed: int = 0,
    dt: float = 0.001,
) -> SweepResult:
    """Evaluate spiking conversions of ``model`` over steps and settings.

    Args:
        model: a trained Keras classifier (ReLU and/or QCFS layers).
        x: test inputs (any format ``Simulator.predict`` takes, or Keras's).
        y: labels, integers ``(n,)`` or one-hot rows ``(n, k)``.
        steps: the step counts to report (one simulation of ``max(steps)``
            per setting).
        settings: ``{name: options}``. Options: ``neuron`` (default
            ``IntegrateAndFire()`` for ReLU layers and, as in
            :func:`snnify.convert_quantized`,
            ``SignedIntegrateAndFire(max_spikes_per_step=1)`` for QCFS
            layers), ``scale_firing_rates`` (a number, a dict,
            or ``"calibrate"`` -- the default), the options of
            :func:`snnify.calibrate` (``percentile``, ``per_channel``,
            ``spikes_per_step``), ``synapse``, ``decoding`` (``"mean"``,
            ``"last"``, ``"count"``) and ``decoding_synapse``. Default: one
            setting, ``{"calibrated": {}}``.
        calibration_data: inputs for calibration (e.g. training examples).
        energy: the per-operation energies.
        minibatch_size, seed, dt: as for :class:`~snnify.Simulator`.

    Returns:
        a :class:`SweepResult`; ``result.best(tolerance=0.003)`` is the
        cheapest configuration within 0.3 points of the ANN.
    """
    settings = dict(settings or {"calibrated": {}})
    steps = sorted({int(t) for t in steps})
    if not steps or steps[0] < 1:
        raise ValueError(f"steps must be integers >= 1. Received: steps={steps!r}")
    calibration_data = whole_inputs(calibration_data)  # read once, not per setting
    probe_converter = Converter(model)
    inputs = standardize_inputs(probe_converter.net, x, time_axis_optional=True)
    inputs = {node.name: value for node, value in inputs.items()}
    labels = class_labels(y, len(next(iter(inputs.values()))))
    ann_accuracy = _accuracy(model, inputs, labels)
    rows, all_stats = [], {}
    ann_energy = None
    for name, options in settings.items():
        converter = _convert(model, dict(options), calibration_data, dt)
        results = measure(
            converter,
            inputs,
            y=labels,
            steps=steps,
            decoding=options.get("decoding", "mean"),
            synapse=options.get("decoding_synapse"),
            minibatch_size=minibatch_size,
            seed=seed,
            dt=dt,
        )
        for t, stats in results.items():
            all_stats[(name, t)] = stats
            ann_energy = stats.ann_energy(energy) * 1e9
            rows.append(
                {
                    "setting": name,
                    "steps": t,
                    "accuracy": stats.accuracy,
                    "spikes": stats.spikes,
                    "spikes_per_neuron": stats.spikes_per_neuron,
                    "synops": stats.synops,
                    "macs": stats.snn_macs,
                    "energy_nj": stats.energy(energy) * 1e9,
                }
            )
    return SweepResult(rows, ann_accuracy, ann_energy, settings, all_stats, energy)


def _convert(model, options, calibration_data, dt) -> Converter:
    known = {
        "neuron",
        "scale_firing_rates",
        "synapse",
        "decoding",
        "decoding_synapse",
        *_CALIBRATION_OPTIONS,
    }
    unknown = set(options) - known
    if unknown:
        raise ValueError(
            f"Unknown sweep setting option(s) {sorted(unknown)}; the options are "
            f"{sorted(known)}."
        )
    scale = options.get("scale_firing_rates", "calibrate")
    if isinstance(scale, str) and scale in ("calibrate", "auto"):
        calibration_options = {
            k: options[k] for k in _CALIBRATION_OPTIONS if k in options
        }
        scale = calibrate(model, calibration_data, dt=dt, **calibration_options)
    # swap only what the model has, so that no swap goes unused (and warns)
    exact = Converter(model)
    swaps = {}
    if any(isinstance(exact.layers[t], NeuronsNode) for t in exact.layers):
        swaps["relu"] = options.get("neuron", IntegrateAndFire())
    if any(isinstance(layer, QCFS) for layer in model.layers):
        swaps["qcfs"] = options.get("neuron", qcfs_neuron())
    return Converter(
        model,
        swap_activations=swaps,
        scale_firing_rates=scale,
        synapse=options.get("synapse"),
    )
