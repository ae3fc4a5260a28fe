"""Networks without ReLUs, made to spike by QCFS fine-tuning (docs/low-latency.md).

Networks trained by networks.py with activations that have no spiking form
(GELU, SiLU, ELU, tanh: the tutorial's network by the tutorial's recipe;
task B's deeper network and the digits CNN with GELU) and two whose
activations do have one (the tutorial's network with leaky ReLUs and with
PReLUs, for comparison with ``convert_for_steps``, which needs no
retraining). For each network and each number of epochs ``E``:

- ``snnify.fine_tune(model, x_train, y_train, levels=4, epochs=E,
  replace="all")``: every hidden activation becomes a QCFS layer of 4 levels
  (thresholds from the first 1,000 training images), trained with
  ``fine_tune``'s defaults (Adam(1e-4)) on the network's own training set and
  batch size, seed 0;
- the control: the network itself (its own activations) trained the same
  epochs with the same optimizer, data, batch size and seed, so that the
  QCFS model's accuracy can be told apart from that of more training;
- ``convert_quantized(quantized, n_steps=T)`` for T = 1, 2, 4 (and 8, with
  ``--levels 8``), each run for its T steps on the whole test set (mean decoding);
- for the leaky ReLU and PReLU networks, ``convert_for_steps(model, x_cal,
  T)`` of the trained network itself at T = 2 and 4.

Results go to ``results/activations-NAME-eE.json``; ``tables`` prints them.

    KERAS_BACKEND=jax python networks.py tutorial_gelu_rmsprop tutorial_silu_rmsprop \
        tutorial_elu_rmsprop tutorial_tanh_rmsprop taskB_gelu digits_gelu
    KERAS_BACKEND=jax python bench_activations.py run [NAME ...] [--epochs 2 10] [--levels 4]
    python bench_activations.py tables
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NAMES = (
    "tutorial_gelu_rmsprop", "tutorial_silu_rmsprop", "tutorial_elu_rmsprop",
    "tutorial_tanh_rmsprop", "taskB_gelu", "digits_gelu",
    "tutorial_leaky_rmsprop", "tutorial_prelu_rmsprop",
)  # fmt: skip
QCFS_STEPS = (1, 2, 4, 8)  # those that divide the levels
NO_RETRAINING_STEPS = (2, 4)
LEVELS = 4


def _rows(converter_for, x_test, y_test, steps) -> dict:
    """``{T: {"accuracy", "spikes_per_inference"}}`` of ``converter_for(T)``."""
    import snnify

    rows = {}
    for t in steps:
        stats = snnify.measure(converter_for(t), x_test, t, y=y_test)
        rows[str(t)] = {
            "accuracy": stats.accuracy,
            "spikes_per_inference": stats.spikes,
        }
    return rows


def run(name: str, epochs: int, log, levels: int = LEVELS) -> dict:
    import data
    import keras
    import networks

    import snnify

    info = json.loads((HERE / "models" / f"{name}.json").read_text())
    with np.load(HERE / info["eval_arrays"]) as d:
        x_cal, x_test, y_test = d["x_cal"], d["x_test"], d["y_test"]
    model = keras.models.load_model(HERE / "models" / f"{name}.keras")
    dataset, _, _, batch_size, _, _ = networks.NETWORKS[name]
    (x_train, y_train), _ = data.load(dataset)
    start = time.time()
    keras.utils.set_random_seed(0)
    quantized, _ = snnify.fine_tune(
        model, x_train, y_train, levels=levels, epochs=epochs, loss=networks.LOSS,
        batch_size=batch_size, verbose=0, replace="all",
    )  # fmt: skip
    control = keras.models.clone_model(model)
    control.set_weights(model.get_weights())
    control.compile(optimizer=keras.optimizers.Adam(1e-4), loss=networks.LOSS)
    keras.utils.set_random_seed(0)
    control.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    result = {
        "name": name, "epochs": epochs, "levels": levels,
        "test_images": int(len(y_test)), "training": info["training"],
        "fine_tune_seconds": round(time.time() - start, 1),
        "ann_accuracy": networks.accuracy(model, x_test, y_test),
        "qcfs_accuracy": networks.accuracy(quantized, x_test, y_test),
        "control_accuracy": networks.accuracy(control, x_test, y_test),
        "qcfs_layers": sum(isinstance(la, snnify.QCFS) for la in quantized.layers),
    }  # fmt: skip
    result["convert_quantized"] = _rows(
        lambda t: snnify.convert_quantized(quantized, n_steps=t),
        x_test, y_test, [t for t in QCFS_STEPS if levels % t == 0],
    )  # fmt: skip
    if "leaky" in name or "prelu" in name:
        result["convert_for_steps"] = _rows(
            lambda t: snnify.convert_for_steps(model, x_cal, t),
            x_test, y_test, NO_RETRAINING_STEPS,
        )  # fmt: skip
    tail = "" if levels == LEVELS else f"-L{levels}"
    (RESULTS / f"activations-{name}-e{epochs}{tail}.json").write_text(
        json.dumps(result, indent=1)
    )
    accuracies = " / ".join(
        f"{100 * r['accuracy']:.2f}" for r in result["convert_quantized"].values()
    )
    log(f"[{name}] e{epochs}: ANN {100 * result['ann_accuracy']:.2f}, control "
        f"{100 * result['control_accuracy']:.2f}, QCFS "
        f"{100 * result['qcfs_accuracy']:.2f}, spiking at "
        f"T={'/'.join(result['convert_quantized'])}: {accuracies}")  # fmt: skip
    return result


def _cell(row, ann) -> str:
    accuracy = 100 * row["accuracy"]
    return f"{accuracy:.2f} ({accuracy - 100 * ann:+.2f})"


def tables() -> str:
    lines = [
        "| network (test images) | ANN | levels, epochs | control | QCFS model | "
        "`convert_quantized` at T steps (vs ANN) | spikes at T=4 | "
        "`convert_for_steps` of the ANN at T=2 / 4 |",
        "|---|---:|---|---:|---:|---|---:|---|",
    ]
    for name in NAMES:
        results = [json.loads(p.read_text())
                   for p in RESULTS.glob(f"activations-{name}-e*.json")]  # fmt: skip
        for r in sorted(results, key=lambda r: (r["levels"], r["epochs"])):
            ann = r["ann_accuracy"]
            rows = r["convert_quantized"]
            spiking = ", ".join(f"T={t}: {_cell(row, ann)}" for t, row in rows.items())
            direct = r.get("convert_for_steps")
            direct = (
                " / ".join(_cell(x, ann) for x in direct.values()) if direct else "-"
            )
            lines.append(
                f"| {name} ({r['test_images']}) | {100 * ann:.2f} | "
                f"{r['levels']}, {r['epochs']} | {100 * r['control_accuracy']:.2f} | "
                f"{100 * r['qcfs_accuracy']:.2f} | {spiking} | "
                f"{rows['4']['spikes_per_inference']:,.0f} | {direct} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("run", "tables"))
    parser.add_argument("names", nargs="*", default=list(NAMES))
    parser.add_argument("--epochs", type=int, nargs="+", default=[2])
    parser.add_argument("--levels", type=int, default=LEVELS, help="QCFS levels")
    args = parser.parse_args()
    if args.command == "tables":
        print(tables())
        return
    RESULTS.mkdir(exist_ok=True)
    start = time.time()

    def log(message):
        print(f"{time.time() - start:6.0f} s  {message}", flush=True)

    for name in args.names:
        for epochs in args.epochs:
            run(name, epochs, log, args.levels)


if __name__ == "__main__":
    main()
