"""Quantisation-aware fine-tuning (QCFS) against a ReLU control, on the six networks.

For each network trained by networks.py, starting from its trained weights:

- ``snnify.fine_tune`` with ``QCFS`` activations of ``L`` levels (default 4)
  for ``E`` epochs (default 2), Adam(1e-4), on the network's own training set
  with its own batch size; the thresholds start from each layer's
  activations on the first 1,000 training images: at their 99.9th
  percentile (``--threshold-init percentile``, ``fine_tune``'s default) or
  where 4 levels quantise them with the least squared error
  (``--threshold-init min_error``); the thresholds are trained in units of
  100 times their initial value (``--threshold-unit 100``, ``fine_tune``'s
  default) or, with ``--threshold-unit 0``, in the activations' units (as
  before that default); batch normalisation re-estimated after training
  (``fine_tune``'s default since the residual network's rows of 4 levels
  with ``n_steps``);
- the ReLU control: the same model trained with its ReLUs the same epochs,
  same optimizer, data, batch size and seed.

Both are evaluated on the whole test set, non-spiking and with
``IntegrateAndFire`` neurons at 2, 4, 8 and 16 steps (mean decoding):

- ``QCFS, convert_quantized``: ``snnify.convert_quantized`` with
  ``IntegrateAndFire(initial_voltage=0.5)`` neurons (its default until the
  signed neurons; threshold = the trained ``lambda``), one run of 16 steps
  read at every step count;
- ``QCFS, convert_quantized, signed``: the same with its default now,
  ``SignedIntegrateAndFire(max_spikes_per_step=1)`` neurons (which compute
  the QCFS network exactly at ``T = L`` steps);
- ``QCFS, convert_quantized, n_steps``: ``convert_quantized(quantized,
  n_steps=T)`` for every ``T`` of 1, 2, 4, 8, 16 that divides ``L``, each run
  for its ``T`` steps: signed neurons that may emit ``L / T`` spikes per step
  (threshold ``lambda T / L``), exact at ``T`` (``-`` in the tables where
  ``T`` does not divide ``L``);
- ``QCFS, convert_for_steps``: the same QCFS model calibrated for each step
  count by ``snnify.convert_for_steps`` (threshold search and initial-voltage
  correction, from the 500 calibration images), with thresholds chosen for
  ``--spikes-per-step`` spikes per step (default 1, the neurons of the
  literature, with which docs/low-latency.md's table was measured;
  ``convert_for_steps``'s own default is 2);
- ``ReLU control, convert_for_steps``: the control, calibrated the same way.

``run`` writes the fine-tuned models to ``results/qcfs-NAME-LL-eE[-INIT][-uU].keras``
and ``results/control-NAME-eE.keras`` (reused when present) and the figures
to ``results/qcfs-NAME-LL-eE[-INIT][-uU][-nN].json`` (``-INIT`` for a
``--threshold-init`` other than ``percentile``, ``-uU`` for a threshold
unit); ``tables`` prints the
Markdown tables of both initialisations.

    KERAS_BACKEND=jax python bench_qcfs.py run [NAME ...] [--levels 4]
        [--epochs 2] [--n-test N] [--conversions LABEL ...]
        [--spikes-per-step 1] [--threshold-init percentile|min_error]
    python bench_qcfs.py tables [--levels 4] [--epochs 2] > results/qcfs.md
    KERAS_BACKEND=jax python bench_qcfs.py seeds [NAME ...] --epochs 40|trained
        [--learning-rate 1e-3] [--seeds 3]
    KERAS_BACKEND=jax python bench_qcfs.py early-stopping NAME --epochs 40
        [--learning-rate 1e-3] [--seeds 3]

``seeds`` fine-tunes both copies from several seeds and prints each run and
the min / median / max (nothing saved); ``--epochs trained`` gives each
network as many epochs as its own training (networks.py). ``early-stopping``
does the same, stopping when the loss on a held-out tenth of the training
set stops falling.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STEPS = (2, 4, 8, 16)
NETWORKS = (
    "tutorial_rmsprop", "tutorial_adam", "tutorial_sgdm", "taskB_deep",
    "resnet_bn", "digits_cnn",
)  # fmt: skip
CONVERSIONS = (
    "QCFS, convert_quantized",
    "QCFS, convert_quantized, signed",
    "QCFS, convert_quantized, n_steps",
    "QCFS, convert_for_steps",
    "ReLU control, convert_for_steps",
)
LEARNING_RATE = 1e-4
RELATIVE_THRESHOLD_UNIT = 100.0  # fine_tune's default
THRESHOLD_INITS = ("percentile", "min_error")


def _stem(name, levels, epochs, init="percentile", unit=None):
    tail = "" if init == "percentile" else f"-{init}"
    tail += "" if unit is None else f"-u{unit:g}"
    return f"{name}-L{levels}-e{epochs}{tail}"


def _accuracy(model, x, y) -> float:
    predicted = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(predicted, -1) == y))


def _control(model, learning_rate):
    """A copy of ``model`` with its ReLUs, compiled to fine-tune with Adam."""
    import keras
    import networks

    control = keras.models.clone_model(model)
    control.set_weights(model.get_weights())
    control.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=networks.LOSS)
    return control


def fine_tuned(name, model, levels, epochs, init, unit, log):
    """``(QCFS model, ReLU control)``, trained or read from ``results/``."""
    import data
    import keras
    import networks

    import snnify

    qcfs_path = RESULTS / f"qcfs-{_stem(name, levels, epochs, init, unit)}.keras"
    control_path = RESULTS / f"control-{name}-e{epochs}.keras"
    dataset, _, _, batch_size, _, _ = networks.NETWORKS[name]
    (x_train, y_train), _ = data.load(dataset)
    if not qcfs_path.exists():
        start = time.time()
        keras.utils.set_random_seed(0)
        quantized, _ = snnify.fine_tune(
            model, x_train, y_train, levels=levels, epochs=epochs,
            optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=networks.LOSS,
            batch_size=batch_size, verbose=0, threshold_init=init,
            relative_threshold_unit=unit,
        )  # fmt: skip
        quantized.save(qcfs_path)
        log(f"[{name}] QCFS L={levels} ({init}, unit {unit}) fine-tuned, "
            f"{time.time() - start:.0f} s")  # fmt: skip
    if not control_path.exists():
        start = time.time()
        control = _control(model, LEARNING_RATE)
        keras.utils.set_random_seed(0)
        control.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
        control.save(control_path)
        log(f"[{name}] ReLU control fine-tuned, {time.time() - start:.0f} s")
    load = keras.models.load_model
    return load(qcfs_path), load(control_path)


def _spiking(label, quantized, control, x_cal, x_test, y_test, spikes_per_step):
    """``{steps: {"accuracy", "spikes_per_inference"}}`` of one conversion."""
    import snnify
    from snnify.quantize import quantization_levels

    def row(stats):
        return {"accuracy": stats.accuracy, "spikes_per_inference": stats.spikes}

    if label.endswith("n_steps"):
        levels = quantization_levels(snnify.calibrate(quantized))
        rows = {}
        for t in (1, *STEPS):
            if levels % t == 0:
                converter = snnify.convert_quantized(quantized, n_steps=t)
                rows[t] = row(snnify.measure(converter, x_test, t, y=y_test))
        return rows
    if label.startswith("QCFS, convert_quantized"):
        neuron = snnify.IntegrateAndFire(initial_voltage=0.5)
        if label.endswith("signed"):  # convert_quantized's default
            neuron = snnify.SignedIntegrateAndFire(max_spikes_per_step=1)
        converter = snnify.convert_quantized(quantized, neuron_type=neuron)
        stats = snnify.measure(converter, x_test, y=y_test, steps=STEPS)
        return {t: row(s) for t, s in stats.items()}
    model = quantized if label.startswith("QCFS") else control
    rows = {}
    for t in STEPS:
        converter = snnify.convert_for_steps(
            model, x_cal, t, spikes_per_step=spikes_per_step
        )
        rows[t] = row(snnify.measure(converter, x_test, t, y=y_test))
    return rows


def run(name, levels, epochs, init, unit, n_test, conversions, spikes_per_step, log):
    import keras

    import snnify

    info = json.loads((HERE / "models" / f"{name}.json").read_text())
    with np.load(HERE / info["eval_arrays"]) as d:
        x_cal, x_test, y_test = d["x_cal"], d["x_test"], d["y_test"]
    x_test, y_test = x_test[:n_test], y_test[:n_test]
    model = keras.models.load_model(HERE / "models" / f"{name}.keras")
    quantized, control = fine_tuned(name, model, levels, epochs, init, unit, log)
    suffix = f"-n{n_test}" if n_test else ""
    path = RESULTS / f"qcfs-{_stem(name, levels, epochs, init, unit)}{suffix}.json"
    result = json.loads(path.read_text()) if path.exists() else {"conversions": {}}
    result.update(
        name=name, levels=levels, epochs=epochs, test_images=int(len(y_test)),
        optimizer=f"Adam({LEARNING_RATE})", spikes_per_step=spikes_per_step,
        threshold_init=init, relative_threshold_unit=unit,
        ann_accuracy=_accuracy(model, x_test, y_test),
        control_accuracy=_accuracy(control, x_test, y_test),
        qcfs_accuracy=_accuracy(quantized, x_test, y_test),
        thresholds={layer.name: float(keras.ops.convert_to_numpy(layer.threshold))
                    for layer in quantized.layers if isinstance(layer, snnify.QCFS)},
    )  # fmt: skip
    log(f"[{name}] ANN {100 * result['ann_accuracy']:.2f} %, control "
        f"{100 * result['control_accuracy']:.2f} %, QCFS "
        f"{100 * result['qcfs_accuracy']:.2f} %")  # fmt: skip
    for label in conversions:
        start = time.time()
        rows = _spiking(label, quantized, control, x_cal, x_test, y_test,
                        spikes_per_step)  # fmt: skip
        result["conversions"][label] = {
            "seconds": round(time.time() - start, 1),
            "steps": {str(t): r for t, r in rows.items()},
        }
        if label.endswith("convert_for_steps"):  # runs may differ in this
            result["conversions"][label]["spikes_per_step"] = spikes_per_step
        path.write_text(json.dumps(result, indent=1))
        accuracies = " / ".join(f"{100 * r['accuracy']:.2f}" for r in rows.values())
        log(f"[{name}] {label}: {accuracies} % at {tuple(rows)} steps, "
            f"{time.time() - start:.0f} s")  # fmt: skip


def _results(name, levels, epochs):
    """The saved results of a network, percentile start first, then most
    test images first."""
    paths = RESULTS.glob(f"qcfs-{_stem(name, levels, epochs)}*.json")
    results = [json.loads(p.read_text()) for p in paths]
    for r in results:  # files from before the options
        r.setdefault("threshold_init", "percentile")
        r.setdefault("relative_threshold_unit", None)
    order = {init: k for k, init in enumerate(THRESHOLD_INITS)}
    return sorted(results, key=lambda r: (
        r["relative_threshold_unit"] is not None, order[r["threshold_init"]],
        -r["test_images"],
    ))  # fmt: skip


def _start(result) -> str:
    """How the thresholds started and in what unit they were trained."""
    unit = result["relative_threshold_unit"]
    return result["threshold_init"] + ("" if unit is None else f", unit {unit:g}x")


def _cell(accuracy, ann, control):
    return f"{accuracy:.2f} ({accuracy - ann:+.2f} / {accuracy - control:+.2f})"


def table(result) -> str:
    """Markdown: one network's conversions, against the ANN and the control."""
    ann, control = 100 * result["ann_accuracy"], 100 * result["control_accuracy"]
    lines = [
        f"#### {result['name']}, thresholds from {_start(result)} "
        f"({result['test_images']} test images)",
        "",
        f"ANN {ann:.2f} %; ReLU control {control:.2f} %; QCFS L={result['levels']} "
        f"non-spiking {100 * result['qcfs_accuracy']:.2f} % (after "
        f"{result['epochs']} epochs of {result['optimizer']}). Cells: accuracy "
        "(vs ANN / vs control).",
        "",
        "| conversion | T=2 | T=4 | T=8 | T=16 | spikes/inference at T=2/4/8/16 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, entry in result["conversions"].items():
        rows = [entry["steps"].get(str(t)) for t in STEPS]
        cells = [_cell(100 * r["accuracy"], ann, control) if r else "-" for r in rows]
        spikes = "/".join(
            f"{r['spikes_per_inference']:,.0f}" if r else "-" for r in rows
        )
        if "spikes_per_step" in entry:
            label = f"{label} ({entry['spikes_per_step']} spikes per step)"
        lines.append(f"| {label} | {' | '.join(cells)} | {spikes} |")
    return "\n".join(lines)


def _accuracies(steps) -> str:
    """``a / b / c / d`` (%) at 2 / 4 / 8 / 16 steps, or ``-``."""
    if steps is None:
        return "-"
    return " / ".join(
        f"{100 * steps[str(t)]['accuracy']:.2f}" if str(t) in steps else "-"
        for t in STEPS
    )


def summary(results, conversion=CONVERSIONS[0]) -> str:
    """Markdown: every network, QCFS against the ANN, the control and the target.

    ``conversion``: the QCFS row shown (the neurons of ``convert_quantized``).
    """
    lines = [
        "| network (test images) | thresholds from | ANN | ReLU control | QCFS "
        f"non-spiking | {conversion} at T=2 / 4 / 8 / 16 | >= ANN - 0.1 "
        "at T=4 | control convert_for_steps at T=2 / 4 / 8 / 16 | spikes at T=4, "
        "QCFS / control |",
        "|---|---|---:|---:|---:|---|---|---|---:|",
    ]
    for r in results:
        qcfs, control = (r["conversions"].get(label, {}).get("steps")
                         for label in (conversion, CONVERSIONS[4]))  # fmt: skip
        ann = 100 * r["ann_accuracy"]
        met, spikes = "-", ["-", "-"]
        if qcfs is not None and "4" in qcfs:
            at4 = 100 * qcfs["4"]["accuracy"]
            met = f"{'yes' if at4 >= ann - 0.1 else '**no**'} ({at4 - ann:+.2f})"
        for k, steps in enumerate((qcfs, control)):
            if steps is not None and "4" in steps:
                spikes[k] = f"{steps['4']['spikes_per_inference']:,.0f}"
        lines.append(
            f"| {r['name']} ({r['test_images']}) | {_start(r)} | {ann:.2f} | "
            f"{100 * r['control_accuracy']:.2f} | {100 * r['qcfs_accuracy']:.2f} | "
            f"{_accuracies(qcfs)} | {met} | {_accuracies(control)} | "
            f"{' / '.join(spikes)} |"
        )
    return "\n".join(lines)


def seeds(name, levels, epochs, learning_rate, n_seeds, early_stop, log):
    """Print QCFS and control fine-tuned from several seeds, and their spread.

    Both train with Adam(``learning_rate``) for ``epochs`` epochs on the
    training set, or, with ``early_stop``, for at most ``epochs`` epochs on
    90 % of it, keeping the weights of the epoch with the lowest loss on the
    other 10 % (patience 3). The QCFS model is converted by
    ``convert_quantized(n_steps=T)`` for ``T`` of 1, 2, 4 that divides ``L``
    and measured on the whole test set. Nothing is saved.
    """
    import data
    import keras
    import networks

    import snnify

    info = json.loads((HERE / "models" / f"{name}.json").read_text())
    with np.load(HERE / info["eval_arrays"]) as d:
        x_test, y_test = d["x_test"], d["y_test"]
    model = keras.models.load_model(HERE / "models" / f"{name}.keras")
    dataset, _, _, batch_size, _, _ = networks.NETWORKS[name]
    (x_train, y_train), _ = data.load(dataset)
    ann = 100 * _accuracy(model, x_test, y_test)
    log(f"[{name}] ANN {ann:.2f} %")

    def fit_options():
        options = dict(batch_size=batch_size, epochs=epochs, verbose=0)
        if early_stop:
            stop = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
            options.update(validation_split=0.1, callbacks=[stop])
        return options

    steps = [t for t in (1, 2, 4) if levels % t == 0]
    figures = {"QCFS": [], "control": []}
    figures.update({f"T={t}": [] for t in steps})
    for seed in range(n_seeds):
        keras.utils.set_random_seed(seed)
        quantized, history = snnify.fine_tune(
            model, x_train, y_train, levels=levels, loss=networks.LOSS,
            optimizer=keras.optimizers.Adam(learning_rate), **fit_options(),
        )  # fmt: skip
        control = _control(model, learning_rate)
        keras.utils.set_random_seed(seed)
        control_history = control.fit(x_train, y_train, **fit_options())
        figures["QCFS"].append(100 * _accuracy(quantized, x_test, y_test))
        figures["control"].append(100 * _accuracy(control, x_test, y_test))
        for t in steps:
            converter = snnify.convert_quantized(quantized, n_steps=t)
            stats = snnify.measure(converter, x_test, t, y=y_test)
            figures[f"T={t}"].append(100 * stats.accuracy)
        log(f"[{name}] seed {seed}: QCFS {figures['QCFS'][-1]:.2f} % "
            f"({len(history.epoch)} epochs), control {figures['control'][-1]:.2f} % "
            f"({len(control_history.epoch)} epochs); convert_quantized "
            + " / ".join(f"{figures[f'T={t}'][-1]:.2f}" for t in steps)
            + f" % at T = {steps}")  # fmt: skip
    for label, values in figures.items():
        low, mid, high = np.percentile(values, [0, 50, 100])
        log(
            f"[{name}] {label}: min / median / max {low:.2f} / {mid:.2f} / "
            f"{high:.2f} % (ANN {ann:.2f}, median {mid - ann:+.2f})"
        )


def _epochs(text):
    """``--epochs``: a number, or ``"trained"`` (resolved per network)."""
    return text if text == "trained" else int(text)


def _spikes_per_step(text):
    return text if text == "auto" else int(text)


def _epochs_for(name, epochs) -> int:
    """The fine-tuning epochs of ``name``: ``epochs``, or its training's."""
    if epochs != "trained":
        return epochs
    import networks

    return networks.NETWORKS[name][4]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("run", "tables", "seeds", "early-stopping"))
    parser.add_argument("names", nargs="*")
    parser.add_argument("--levels", type=int, default=4, help="QCFS levels L")
    parser.add_argument(
        "--epochs", type=_epochs, default=2,
        help="fine-tuning epochs, or 'trained': as many as the network's training",
    )  # fmt: skip
    parser.add_argument("--n-test", type=int, default=None, help="first N test images")
    parser.add_argument(
        "--conversions", nargs="*", choices=CONVERSIONS, default=list(CONVERSIONS)
    )
    parser.add_argument(
        "--spikes-per-step", type=_spikes_per_step, default=1,
        help="convert_for_steps's spikes_per_step, an integer or 'auto' (its "
        "default; the first tables: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--threshold-init", choices=THRESHOLD_INITS, default="percentile",
        help="fine_tune's threshold_init",
    )  # fmt: skip
    parser.add_argument(
        "--threshold-unit", type=float, default=RELATIVE_THRESHOLD_UNIT,
        help="fine_tune's relative_threshold_unit (0: None, the thresholds "
        "trained in the activations' units)",
    )  # fmt: skip
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE,
                        help="seeds, early-stopping: Adam's learning rate")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3,
                        help="seeds, early-stopping: seeds 0..N-1")  # fmt: skip
    args = parser.parse_args()
    names = args.names or list(NETWORKS)
    if args.command == "tables":
        results = [r for n in names
                   for r in _results(n, args.levels, _epochs_for(n, args.epochs))]  # fmt: skip
        summaries = [summary(results, label) for label in CONVERSIONS[:3]]
        print("\n\n".join(summaries + list(map(table, results))))
        return
    RESULTS.mkdir(exist_ok=True)
    start = time.time()

    def log(message):
        print(f"{time.time() - start:6.0f} s  {message}", flush=True)

    for name in names:
        epochs = _epochs_for(name, args.epochs)
        if args.command in ("seeds", "early-stopping"):
            seeds(name, args.levels, epochs, args.learning_rate, args.seeds,
                  args.command == "early-stopping", log)  # fmt: skip
            continue
        unit = args.threshold_unit or None
        run(name, args.levels, epochs, args.threshold_init, unit,
            args.n_test, args.conversions, args.spikes_per_step, log)  # fmt: skip


if __name__ == "__main__":
    main()
