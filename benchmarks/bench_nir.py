"""NIR export checked by independent simulators (issue 13).

The calibrated MNIST network -- the tutorial's network
(``snnify.demo.tutorial.build_model``: Conv2D 32 3x3 -> Conv2D 64 3x3 stride 2
-> Dense 10) trained with ``model.fit`` (RMSprop 1e-3, batches of 200, 2
epochs on the bundled 10,000 training images scaled to [0, 1]) and converted
with ``snnify.calibrate.convert_for_steps`` for 8 steps (IntegrateAndFire,
initial voltage 0.5, 99.9th percentile of 1,000 training images) -- is
exported to NIR and run for 8 steps on the first 1,000 test images in snnify
and in every installed reader (Sinabs, snnTorch, Norse; ``snnify[readers]``).

For every reader it prints the predictions (arg-max of the mean output over
the steps) that agree with snnify's, the reader's accuracy, and per layer the
spikes per image and the share of neurons whose spike count, and whose whole
spike train, is identical to snnify's. Each reader runs with the adjustments
of ``snnify.export.readers`` (``adjusted``) and, for Sinabs, without them
(``as read``). snnTorch and Norse emit at most one spike per step: they are
also compared with snnify running the same graph with their documented rules
(``SnnTorchIF``, ``NorseIF``), which explains their differences layer by layer,
and Sinabs with the float64 NumPy interpreter of NIR graphs that the tests use
(``tests/nir_reference.py``), which shows whose float32 rounding differs.

    KERAS_BACKEND=jax python benchmarks/bench_nir.py [--n-test 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import keras
import nir
import numpy as np

import snnify
from snnify.calibrate import convert_for_steps
from snnify.demo.datasets import load_mnist
from snnify.demo.tutorial import build_model
from snnify.export import readers
from snnify.graph import NeuronsNode

# the float64 NumPy interpreter of NIR graphs that the tests use
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nir_reference import run_graph  # noqa: E402

N_STEPS = 8
BATCH = 100


def calibrated_network(seed: int = 0):
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_mnist()
    x_train = x_train[..., None].astype("float32") / 255.0
    x_test = x_test[..., None].astype("float32") / 255.0
    model, _ = build_model()
    model.compile(
        optimizer=keras.optimizers.RMSprop(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=200, epochs=2, verbose=0)
    converter = convert_for_steps(model, x_train[:1000], N_STEPS)
    ann = np.argmax(model.predict(x_test, verbose=0), axis=-1)
    return model, converter, x_test, y_test, ann


def with_neurons(converter, neuron):
    for node in converter.net.nodes:
        if isinstance(node, NeuronsNode):
            node.neuron_type = neuron


class Tally:
    """Agreement of one run with a reference run, summed over batches."""

    def __init__(self):
        self.images = 0
        self.same_prediction = 0
        self.correct = 0
        self.layers = {}

    def add(self, run, reference, labels):
        predicted = run.outputs["output"].mean(axis=1).argmax(axis=-1)
        expected = reference.outputs["output"].mean(axis=1).argmax(axis=-1)
        self.images += len(labels)
        self.same_prediction += int(np.sum(predicted == expected))
        self.correct += int(np.sum(predicted == labels))
        for name, want in reference.spikes.items():
            got = run.spikes[name]
            totals = self.layers.setdefault(name, np.zeros(6))
            difference = np.abs(got.sum(axis=1) - want.sum(axis=1))
            trains_equal = np.all(got == want, axis=1)
            totals[:5] += [
                got.sum(),
                want.sum(),
                np.sum(difference == 0),
                trains_equal.sum(),
                difference.size,
            ]
            totals[5] = max(totals[5], difference.max())

    def summary(self) -> dict:
        return {
            "images": self.images,
            "same_prediction": self.same_prediction / self.images,
            "accuracy": self.correct / self.images,
            "layers": {
                name: {
                    "spikes_per_image": t[0] / self.images,
                    "reference_spikes_per_image": t[1] / self.images,
                    "same_counts": t[2] / t[4],
                    "same_trains": t[3] / t[4],
                    "different_counts": int(t[4] - t[2]),
                    "largest_difference": int(t[5]),
                }
                for name, t in self.layers.items()
            },
        }


def comparisons(available) -> list:
    """``(label, run, reference run)`` for every installed reader."""
    rows = [("NumPy float64 interpreter", "numpy", "snnify")]
    if "sinabs" in available:
        rows += [
            ("Sinabs, adjusted", "sinabs", "snnify"),
            ("Sinabs, adjusted, vs NumPy float64", "sinabs", "numpy"),
            ("Sinabs, as read", "sinabs as read", "snnify"),
        ]
    for name, label in (("snntorch", "snnTorch"), ("norse", "Norse")):
        if name in available:
            rows += [
                (f"{label}, adjusted", name, "snnify"),
                (f"{label}, adjusted, vs its rule", name, f"snnify {name} rule"),
            ]
    return rows


def runners(converter, path, graph) -> dict:
    """``{run: function(x) -> ReaderRun}`` of every run a comparison can use."""

    def in_snnify(neuron):
        def run(x):
            with_neurons(converter, neuron)
            return readers.snnify_run(converter, path, x, N_STEPS)

        return run

    def in_numpy(x):
        output, spikes = run_graph(graph, np.moveaxis(x, -1, 1), N_STEPS)
        return readers.ReaderRun("numpy", {"output": output}, spikes)

    def reader(name, adjust=True):
        return lambda x: readers.READERS[name](
            path, np.moveaxis(x, -1, 1), N_STEPS, adjust=adjust
        )

    return {
        "snnify": in_snnify(snnify.IntegrateAndFire()),
        "snnify snntorch rule": in_snnify(readers.SnnTorchIF(initial_voltage=0.5)),
        "snnify norse rule": in_snnify(readers.NorseIF(initial_voltage=0.5)),
        "numpy": in_numpy,
        "sinabs": reader("sinabs"),
        "sinabs as read": reader("sinabs", adjust=False),
        "snntorch": reader("snntorch"),
        "norse": reader("norse"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    available = [r for r in readers.READERS if importlib.util.find_spec(r)]
    missing = sorted(set(readers.READERS) - set(available))
    if missing:
        print(f"not installed (pip install 'snnify[readers]'): {', '.join(missing)}")
    start = time.perf_counter()
    model, converter, x_test, y_test, ann = calibrated_network()
    n = args.n_test
    x_test, y_test, ann = x_test[:n], y_test[:n], ann[:n]
    print(f"trained and calibrated in {time.perf_counter() - start:.0f} s")
    print(converter.calibration.summary())
    path = Path(tempfile.mkdtemp()) / "mnist.nir"
    graph = snnify.export_nir(converter, path)
    print(f"exported: {[type(n).__name__ for n in graph.nodes.values()]}")
    rows = comparisons(available)
    run = runners(converter, path, nir.read(str(path)))
    tallies = {label: Tally() for label, *_ in rows}
    snnify_tally, ann_agreement = Tally(), 0
    for start in range(0, len(x_test), BATCH):
        x, labels = x_test[start : start + BATCH], y_test[start : start + BATCH]
        used = {"snnify"} | {k for _, *keys in rows for k in keys}
        runs = {key: run[key](x) for key in sorted(used)}
        snnify_tally.add(runs["snnify"], runs["snnify"], labels)
        predicted = runs["snnify"].outputs["output"].mean(axis=1).argmax(axis=-1)
        ann_agreement += int(np.sum(predicted == ann[start : start + BATCH]))
        for label, key, reference in rows:
            tallies[label].add(runs[key], runs[reference], labels)
        print(f"  {start + len(x)} / {len(x_test)} images", flush=True)
    results = {
        "n_test": len(x_test),
        "n_steps": N_STEPS,
        "ann_accuracy": float(np.mean(ann == y_test)),
        "snnify": snnify_tally.summary(),
        "snnify_same_prediction_as_ann": ann_agreement / len(x_test),
        "readers": {label: t.summary() for label, t in tallies.items()},
    }
    print_tables(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def print_tables(results):
    print(
        f"\nANN accuracy {100 * results['ann_accuracy']:.2f} %; snnify "
        f"{100 * results['snnify']['accuracy']:.2f} % at {results['n_steps']} steps "
        f"({results['n_test']} test images)\n"
    )
    print("| run | predictions as snnify's | accuracy % |")
    print("|---|---:|---:|")
    for label, r in results["readers"].items():
        print(
            f"| {label} | {100 * r['same_prediction']:.1f} % | "
            f"{100 * r['accuracy']:.2f} |"
        )
    print(
        "\n| run | layer | spikes/image (reference) | same counts | same trains "
        "| pairs with other counts (largest difference) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for label, r in results["readers"].items():
        for name, layer in r["layers"].items():
            print(
                f"| {label} | {name} | {layer['spikes_per_image']:.1f} "
                f"({layer['reference_spikes_per_image']:.1f}) | "
                f"{100 * layer['same_counts']:.3f} % | "
                f"{100 * layer['same_trains']:.3f} % | {layer['different_counts']} "
                f"({layer['largest_difference']}) |"
            )


if __name__ == "__main__":
    main()
