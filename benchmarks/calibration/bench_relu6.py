"""ReLU6 networks converted for a step budget (docs/low-latency.md, "ReLU6").

Three networks with ReLU6 activations that snnify was not developed on
(networks.py: the tutorial's network trained by the tutorial's recipe with
ReLU6, a small MobileNet with batch normalisation, the digits CNN with
ReLU6) and three with ReLUs clipped at 1 (the tutorial's network trained
with Adam and by the tutorial's recipe, task B's deeper network), each
converted four ways and run on its whole test set at 2, 4, 8 and 16 steps:

- ``convert_for_steps``: the one call (ReLU6 becomes integrate-and-fire
  neurons, limited to the two spikes per step its search assumes, so that
  they saturate as ReLU6 does, in the layers where that decodes better);
- ``convert_for_steps, signed``: the same with
  ``neuron=SignedIntegrateAndFire()``, which takes spikes back;
- ``auto, limited``: ``Converter(swap_activations={"relu6":
  IntegrateAndFire(max_spikes_per_step=1)}, scale_firing_rates="auto")``;
- ``auto, no limit``: the same with ``IntegrateAndFire()``, which does not
  saturate (the converter warns); for contrast.

It also prints how many of each network's clipped activations are at their
clip on the calibration images. Results go to ``results/relu6-NAME.json``.

    KERAS_BACKEND=jax python networks.py tutorial_relu6 mobilenet_relu6 digits_relu6
    KERAS_BACKEND=jax python networks.py tutorial_clip1 tutorial_clip1_rmsprop taskB_clip1
    KERAS_BACKEND=jax python bench_relu6.py [NAME ...] [--methods LABEL ...]

``--methods`` runs some of the methods; the others' results already in
the network's JSON file are kept.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import keras
import numpy as np

import snnify

HERE = Path(__file__).resolve().parent
NAMES = ("tutorial_relu6", "mobilenet_relu6", "digits_relu6", "tutorial_clip1",
         "tutorial_clip1_rmsprop", "taskB_clip1")  # fmt: skip
STEPS = (2, 4, 8, 16)


def _load(name):
    info = json.loads((HERE / "models" / f"{name}.json").read_text())
    with np.load(HERE / info["eval_arrays"]) as d:
        arrays = d["x_cal"], d["x_test"], d["y_test"]
    return keras.models.load_model(HERE / "models" / f"{name}.keras"), arrays


def _clip(layer) -> float | None:
    """Where ``layer``'s ReLU clips, or None."""
    if getattr(layer, "max_value", None) is not None:
        return float(layer.max_value)
    relu6 = getattr(getattr(layer, "activation", None), "__name__", "") == "relu6"
    return 6.0 if relu6 else None


def saturated_share(model, x) -> float:
    """The share of the clipped ReLU layers' outputs that are at their clip on ``x``."""
    clipped = [layer for layer in model.layers if _clip(layer) is not None]
    outputs = [layer.output for layer in clipped]
    values = keras.Model(model.inputs, outputs).predict(x, verbose=0)
    values = values if isinstance(values, list) else [values]
    at_clip = sum(int(np.sum(v >= _clip(c))) for v, c in zip(values, clipped))
    return at_clip / sum(v.size for v in values)


def _auto(model, x_cal, neuron):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unlimited neurons' warning
        converter = snnify.Converter(
            model,
            swap_activations={"relu6": neuron, "clipped_relu": neuron},
            scale_firing_rates="auto",
            calibration_data=x_cal,
        )
    return [(STEPS, converter)]


def _for_steps(model, x_cal, **options):
    return [((t,), snnify.convert_for_steps(model, x_cal, t, **options)) for t in STEPS]


METHODS = {
    "convert_for_steps": _for_steps,
    "convert_for_steps, signed": lambda model, x_cal: _for_steps(
        model, x_cal, neuron=snnify.SignedIntegrateAndFire()
    ),
    "auto, limited": lambda model, x_cal: _auto(
        model, x_cal, snnify.IntegrateAndFire(max_spikes_per_step=1)
    ),
    "auto, no limit": lambda model, x_cal: _auto(
        model, x_cal, snnify.IntegrateAndFire()
    ),
}


def run(name: str, labels=tuple(METHODS), methods=METHODS, prefix="relu6",
        share=saturated_share) -> dict:  # fmt: skip
    """Run ``methods[label]`` for each label on network ``name``.

    ``share(model, x_cal)``: the share of activations in the regime the
    benchmark is about (at the clip; negative), kept as ``result["share"]``.
    """
    model, (x_cal, x_test, y_test) = _load(name)
    ann = float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))
    path = HERE / "results" / f"{prefix}-{name}.json"
    result = json.loads(path.read_text()) if path.exists() else {"methods": {}}
    result.update(name=name, test_images=len(x_test), ann_accuracy=ann,
                  share=share(model, x_cal))  # fmt: skip
    print(f"{name}: ANN {100 * ann:.2f} %, {share.__name__} of the calibration "
          f"images' activations {100 * result['share']:.2f} %", flush=True)  # fmt: skip
    for label in labels:
        convert, start, rows = methods[label], time.time(), {}
        for steps, converter in convert(model, x_cal):
            stats = snnify.measure(converter, x_test, y=y_test, steps=steps)
            for t, s in stats.items():
                rows[str(t)] = {"accuracy": s.accuracy, "spikes": s.spikes}
        result["methods"][label] = {"steps": rows, "seconds": time.time() - start}
        line = " / ".join(f"{100 * r['accuracy']:.2f}" for r in rows.values())
        print(f"  {label}: {line} ({time.time() - start:.0f} s)", flush=True)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    return result


def table(results, share="outputs at the clip") -> str:
    lines = [
        f"| network (test images, ANN, {share}) | method | T=2 | T=4 | T=8 "
        "| T=16 | spikes/inference at T=2/4/8/16 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        first = (
            f"{r['name']} ({r['test_images']}, {100 * r['ann_accuracy']:.2f} %, "
            f"{100 * r.get('share', r.get('saturated_share')):.2f} %)"
        )
        for label, method in r["methods"].items():
            rows = [method["steps"][str(t)] for t in STEPS]
            accuracies = " | ".join(f"{100 * row['accuracy']:.2f}" for row in rows)
            spikes = "/".join(f"{row['spikes']:,.0f}" for row in rows)
            lines.append(f"| {first} | {label} | {accuracies} | {spikes} |")
            first = ""
    return "\n".join(lines)


def main(description=__doc__, names=NAMES, methods=METHODS, prefix="relu6",
         share=saturated_share, share_label="outputs at the clip"):  # fmt: skip
    """The command line of this benchmark, or of one like it (bench_leaky.py)."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(names))
    parser.add_argument("--methods", nargs="+", choices=tuple(methods),
                        default=tuple(methods), help="methods to run (default: all)")  # fmt: skip
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown network(s) {unknown}; choose from {names}")
    results = [run(name, args.methods, methods, prefix, share)
               for name in args.names or names]  # fmt: skip
    print(table(results, share_label))


if __name__ == "__main__":
    main()
