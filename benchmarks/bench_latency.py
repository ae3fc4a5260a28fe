"""Low-latency conversion (issue 6): accuracy, spikes and energy at few steps.

Task A -- the tutorial's network (Conv2D 32 3x3 -> Conv2D 64 3x3 stride 2 ->
Dense 10, ReLU) trained with ``model.fit`` for 2 epochs (RMSprop 1e-3, batch
200, as in the tutorial) on the bundled 10,000-image MNIST training subset,
tested on the full 10,000-image MNIST test set.

Task B (harder) -- "shifted noisy MNIST", built from the same bundled data:
every digit is shifted by up to 3 pixels in each direction, its contrast
scaled by a factor in [0.5, 1] and uniform noise in [0, 0.5) added (clipped to
[0, 1]); a deeper network (Conv 32 -> Conv 32/2 -> Conv 64 -> Conv 64/2 ->
Dense 128 -> Dense 10, 5 ReLU layers) trained for 3 epochs (Adam 1e-3).

For each task:

- ``ANN``: the non-spiking Keras model;
- ``tutorial hand-tuned``: ``SpikingRectifiedLinear`` (Nengo's rule, uniform
  initial voltages), ``scale_firing_rates=20``, ``synapse=0.01``, 30 steps,
  output read at the last step (the NengoDL tutorial's configuration);
- ``calibrated``: ``IntegrateAndFire`` (signed current, initial voltage 0.5),
  scales from ``snnify.calibrate`` on 500 training images (99.9th
  percentile, one spike per step), output = mean over steps, at 4, 8 and 16
  steps (and per channel);
- ``convert_for_steps``: ``snnify.convert_for_steps`` with its defaults from
  the same 500 images, calibrated for each of 2, 4, 8 and 16 steps;
- ``QCFS L=4``: the ANN fine-tuned by ``snnify.fine_tune`` with its defaults
  (2 epochs of Adam 1e-4, clip-floor-shift activations of 4 levels), converted
  by ``snnify.convert_quantized`` with its defaults (threshold lambda), at 2, 4
  and 8 steps; ``ReLU fine-tuned`` is the same extra training with plain
  ReLU, a control for the effect of the extra epochs.

Spikes are per neuron per inference; energy per inference with the 45 nm
figures of :mod:`snnify.stats` (4.6 pJ per MAC, 0.9 pJ per add).

    KERAS_BACKEND=jax python benchmarks/bench_latency.py [--quick] [--task a]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np

import snnify
from snnify.demo.datasets import load_mnist
from snnify.stats import measure

ROOT = Path(__file__).resolve().parents[1]
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def tutorial_network():
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inp)
    x = keras.layers.Conv2D(64, 3, strides=2, activation="relu")(x)
    out = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    return keras.Model(inp, out, name="tutorial")


def deeper_network():
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, strides=2, activation="relu")(x)
    x = keras.layers.Dense(128, activation="relu")(keras.layers.Flatten()(x))
    out = keras.layers.Dense(10)(x)
    return keras.Model(inp, out, name="deeper")


def shifted_noisy(images: np.ndarray, seed: int) -> np.ndarray:
    """Task B's images from MNIST images in [0, 1], ``(n, 28, 28)``."""
    rng = np.random.default_rng(seed)
    n = len(images)
    padded = np.pad(images, ((0, 0), (3, 3), (3, 3)))
    dy, dx = rng.integers(0, 7, (2, n))
    rows = dy[:, None] + np.arange(28)
    cols = dx[:, None] + np.arange(28)
    shifted = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    contrast = rng.uniform(0.5, 1.0, (n, 1, 1))
    noise = rng.uniform(0.0, 0.5, images.shape)
    return np.clip(shifted * contrast + noise, 0, 1).astype("float32")


def accuracy(model, x, y) -> float:
    predicted = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(predicted, -1) == y))


def row(name, stats=None, ann=None, acc=None, steps="-"):
    """A table row; stats is a NetworkStats (spiking) or None (non-spiking)."""
    if stats is None:
        return {"name": name, "steps": steps, "accuracy": acc, "delta": acc - ann,
                "spikes": None, "synops": None, "macs": None, "energy": None}  # fmt: skip
    return {
        "name": name,
        "steps": stats.n_steps,
        "accuracy": stats.accuracy,
        "delta": stats.accuracy - ann,
        "spikes": stats.spikes_per_neuron,
        "synops": stats.synops,
        "macs": stats.snn_macs,
        "energy": stats.energy() * 1e9,
    }


def markdown(rows) -> str:
    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    lines = [
        "| configuration | steps | accuracy % | vs ANN (points) | spikes/neuron "
        "| SynOps | MACs | energy (nJ) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['steps']} | {100 * r['accuracy']:.2f} "
            f"| {100 * r['delta']:+.2f} | {num(r['spikes'], '.3f')} "
            f"| {num(r['synops'], '.3g')} | {num(r['macs'], '.3g')} "
            f"| {num(r['energy'], '.4g')} |"
        )
    return "\n".join(lines)


def run_task(name, model, train, test, fit, n_test, log):
    (x_train, y_train), (x_test, y_test) = train, test
    x_test, y_test = x_test[:n_test], y_test[:n_test]
    flat_test = x_test.reshape(len(x_test), 1, -1)
    calibration = x_train[:500].reshape(500, 1, -1)
    t0 = time.time()
    keras.utils.set_random_seed(0)
    fit(model, x_train[..., None], y_train)
    ann = accuracy(model, x_test[..., None], y_test)
    log(f"[{name}] ANN trained in {time.time() - t0:.0f} s: {100 * ann:.2f} %")
    rows = []

    def spiking(label, converter, steps, **kwargs):
        t = time.time()
        result = measure(converter, flat_test, y=y_test, steps=steps, **kwargs)
        log(f"[{name}] {label}: {time.time() - t:.0f} s")
        return result

    hand = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=20,
        synapse=0.01,
    )
    hand = spiking("hand-tuned", hand, [30], decoding="last")[30]
    rows.append(row("ANN (ReLU)", ann=ann, acc=ann))
    rows[-1].update(macs=hand.ann_macs, energy=hand.ann_energy() * 1e9)
    rows.append(row("tutorial hand-tuned (scale 20, synapse 0.01)", hand, ann))

    for per_channel in (False, True):
        report = snnify.calibrate(model, calibration, per_channel=per_channel)
        converter = snnify.Converter(
            model,
            swap_activations={"relu": snnify.IntegrateAndFire()},
            scale_firing_rates=report,
        )
        label = "calibrated p99.9" + (" per channel" if per_channel else "")
        for stats in spiking(label, converter, [4, 8, 16]).values():
            rows.append(row(label, stats, ann))
    for steps in (2, 4, 8, 16):
        converter = snnify.convert_for_steps(model, calibration, steps)
        stats = spiking(f"convert_for_steps, {steps}", converter, [steps])[steps]
        rows.append(row("convert_for_steps", stats, ann))

    t = time.time()
    quantized, _ = snnify.fine_tune(
        model, x_train[..., None], y_train, levels=4, epochs=2, loss=LOSS,
        calibration_data=x_train[:1000, ..., None], batch_size=100, verbose=0,
    )  # fmt: skip
    log(f"[{name}] QCFS fine-tuning: {time.time() - t:.0f} s")
    control = keras.models.clone_model(model)
    control.set_weights(model.get_weights())
    control.compile(optimizer=keras.optimizers.Adam(1e-4), loss=LOSS)
    keras.utils.set_random_seed(0)
    control.fit(x_train[..., None], y_train, epochs=2, batch_size=100, verbose=0)
    control_acc = accuracy(control, x_test[..., None], y_test)
    quantized_acc = accuracy(quantized, x_test[..., None], y_test)
    rows.append(
        row("ReLU fine-tuned 2 more epochs (control)", ann=ann, acc=control_acc)
    )
    rows.append(row("QCFS L=4, non-spiking", ann=ann, acc=quantized_acc))
    converter = snnify.convert_quantized(quantized)
    for stats in spiking("QCFS", converter, [2, 4, 8]).values():
        rows.append(row("QCFS L=4 -> convert_quantized", stats, ann))
    return rows, quantized


def fit_tutorial(model, x, y):
    model.compile(optimizer=keras.optimizers.RMSprop(0.001), loss=LOSS)
    model.fit(x, y, batch_size=200, epochs=2, verbose=0)


def fit_deeper(model, x, y):
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss=LOSS)
    model.fit(x, y, batch_size=100, epochs=3, verbose=0)


def sweep_plot(model, quantized, train, test, path, n, log):
    """Accuracy against steps and spikes, on the first ``n`` test images."""
    (x_train, _), (x_test, y_test) = train, test
    x, y = x_test[:n].reshape(n, 1, -1), y_test[:n]
    calibration = x_train[:500].reshape(500, 1, -1)
    steps = [1, 2, 4, 8, 16, 32, 64]
    t = time.time()
    relu = snnify.sweep(
        model, x, y, steps=steps, calibration_data=calibration,
        settings={
            "IF, calibrated p99.9": {},
            "IF, calibrated per channel": {"per_channel": True},
            "Nengo rule (uniform initial voltage), calibrated p99.9": {
                "neuron": snnify.SpikingRectifiedLinear()
            },
        },
    )  # fmt: skip
    unsigned = snnify.IntegrateAndFire()
    qcfs = snnify.sweep(
        quantized, x, y, steps=steps,
        settings={"QCFS L=4, IF": {"neuron": unsigned}, "QCFS L=4, signed": {}},
    )  # fmt: skip
    log(f"sweeps: {time.time() - t:.0f} s")
    merged = snnify.SweepResult(
        relu.rows + qcfs.rows,
        relu.ann_accuracy,
        relu.ann_energy_nj,
        {**relu.settings, **qcfs.settings},
        {**relu.stats, **qcfs.stats},
        relu.energy_model,
    )
    merged.plot(path)
    best = merged.best(tolerance=0.003)
    return merged, best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1000 test images")
    parser.add_argument("--task", choices=("a", "b", "both"), default="both")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "low-latency.png"))
    parser.add_argument("--sweep-images", type=int, default=1000)
    args = parser.parse_args()
    n_test = 1000 if args.quick else 10000
    start = time.time()

    def log(message):
        print(f"{time.time() - start:6.0f} s  {message}", flush=True)

    (x_train, y_train), (x_test, y_test) = load_mnist()
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    mnist = ((x_train, y_train), (x_test, y_test))
    tables = {}
    if args.task in ("a", "both"):
        keras.utils.set_random_seed(0)
        model = tutorial_network()
        rows, quantized = run_task("A", model, *mnist, fit_tutorial, n_test, log)
        tables["A: tutorial network, MNIST"] = rows
        merged, best = sweep_plot(
            model, quantized, *mnist, args.plot, args.sweep_images, log
        )
        print(f"\nSweep on the first {args.sweep_images} test images (task A):")
        print(merged.table())
        print(f"cheapest within 0.3 points of the ANN (energy): {best}")
    if args.task in ("b", "both"):
        harder = (
            (shifted_noisy(x_train, 1), y_train),
            (shifted_noisy(x_test, 2), y_test),
        )
        keras.utils.set_random_seed(0)
        rows, _ = run_task("B", deeper_network(), *harder, fit_deeper, n_test, log)
        tables["B: deeper network, shifted noisy MNIST"] = rows
    for title, rows in tables.items():
        print(f"\n### {title} ({n_test} test images)\n")
        print(markdown(rows))


if __name__ == "__main__":
    main()
