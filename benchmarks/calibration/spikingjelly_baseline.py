"""SpikingJelly's ann2snn recipes on the same weights and data as snnify.

For each network exported by export_weights.py: rebuild it in PyTorch
(torch_port.py), check that the PyTorch ANN reproduces the Keras ANN's test
accuracy (to <= 0.05 points) and logits, then convert it with every ann2snn
recipe of SpikingJelly that applies to a ReLU CNN, calibrated on the same 500
images (batches of 100, as in SpikingJelly's MNIST example), and run the
spiking network for 16 steps on the whole test set. The output is summed over
the steps (SpikingJelly's own evaluation; same arg-max as snnify's mean
decoding); accuracy and spikes per inference are read at 2/4/8/16 steps from
the one run.

    venv-sj/bin/python spikingjelly_baseline.py [NAME ...] [--n-test N]
        [--recipes LABEL ...] [--cal-batch 100]

Writes ``results/sj-NAME.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import spikingjelly
import torch
import torch_port
from spikingjelly.activation_based import ann2snn, functional, neuron
from spikingjelly.activation_based.neuron.base_node import BaseNode

HERE = Path(__file__).resolve().parent
STEPS = (2, 4, 8, 16)
torch.set_num_threads(2)
try:  # SpikingJelly logs with loguru; keep the output short
    from loguru import logger as _loguru

    _loguru.remove()
except Exception:  # pragma: no cover
    logging.getLogger("spikingjelly").setLevel(logging.WARNING)


def recipes(loader):
    """``{label: recipe factory}``: every ann2snn recipe for ReLU CNNs."""
    rate = ann2snn.RateCodingRecipe
    return {
        # layer-wise thresholds, IFNode (soft reset, v starts at 0)
        "SJ rate max": lambda: rate(loader, mode="max"),
        "SJ rate 99.9%": lambda: rate(loader, mode="99.9%"),
        "SJ rate 99%": lambda: rate(loader, mode="99%"),
        "SJ rate 1/2 max": lambda: rate(loader, mode=1.0 / 2),
        "SJ rate 1/3 max": lambda: rate(loader, mode=1.0 / 3),
        "SJ rate 1/4 max": lambda: rate(loader, mode=1.0 / 4),
        "SJ rate 1/5 max": lambda: rate(loader, mode=1.0 / 5),
        # layer-wise 99.9% with SpikingJelly's half-threshold IF neuron
        # (initial voltage = threshold / 2, as snnify's IntegrateAndFire)
        "SJ rate 99.9% + half-threshold IF": lambda: rate(
            loader,
            mode="99.9%",
            neuron_factory=lambda scale: neuron.HalfThresholdIFNode(),
        ),  # fmt: skip
        # channel-wise thresholds (robust per-channel norm)
        "SJ channel-wise max": lambda: rate(loader, mode="max", channel_wise=True),
        "SJ channel-wise 99.9% + half-threshold": lambda: rate(
            loader, mode="99.9%", channel_wise=True, half_threshold=True
        ),
        "SJ channel-wise 99% + half-threshold": lambda: rate(
            loader, mode="99%", channel_wise=True, half_threshold=True
        ),
        # local threshold balancing (Bu et al., CVPR 2025), channel-wise,
        # half-threshold IF
        "SJ local threshold balancing": lambda: ann2snn.LocalThresholdBalancingRecipe(
            loader
        ),
    }


def ann_check(module, x, y, keras_logits, batch=500):
    with torch.no_grad():
        logits = torch.cat([module(x[i : i + batch]) for i in range(0, len(x), batch)])
    logits = logits.numpy()
    keras_logits = keras_logits[: len(logits)]
    return {
        "torch_accuracy": float(np.mean(logits.argmax(-1) == y)),
        "keras_accuracy": float(np.mean(keras_logits.argmax(-1) == y)),
        "max_abs_logit_diff": float(np.abs(logits - keras_logits).max()),
        "argmax_disagreements": int(
            np.sum(logits.argmax(-1) != keras_logits.argmax(-1))
        ),
    }


def simulate(snn, x, y, batch=500):
    """Accuracy and spikes per inference at each of STEPS (one run)."""
    nodes = [m for m in snn.modules() if isinstance(m, BaseNode)]
    counts = np.zeros(max(STEPS))
    neurons = [0]
    state = {"t": 0}

    def hook(module, inputs, output):
        counts[state["t"]] += float(output.sum())

    handles = [m.register_forward_hook(hook) for m in nodes]
    correct = np.zeros(max(STEPS))
    predicted = {t: [] for t in STEPS}
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                xb, yb = x[i : i + batch], torch.from_numpy(y[i : i + batch])
                functional.reset_net(snn)
                total = None
                for t in range(max(STEPS)):
                    state["t"] = t
                    out = snn(xb)
                    total = out if total is None else total + out
                    correct[t] += float((total.argmax(-1) == yb).sum())
                    if t + 1 in predicted:
                        predicted[t + 1].append(total.argmax(-1).numpy().astype("int8"))
                if i == 0:  # neurons: elements of the outputs of the IF nodes
                    neurons[0] = 0
                    for m in nodes:
                        v = m.v if isinstance(m.v, torch.Tensor) else None
                        neurons[0] += int(v[0].numel()) if v is not None else 0
    finally:
        for h in handles:
            h.remove()
    n = len(x)
    cumulative = np.cumsum(counts) / n
    return (
        {
            str(t): {
                "accuracy": correct[t - 1] / n,
                "spikes_per_inference": float(cumulative[t - 1]),
            }
            for t in STEPS
        },
        neurons[0],
        len(nodes),
        {t: np.concatenate(v) for t, v in predicted.items()},
    )


def thresholds(snn):
    """Summary of the thresholds chosen (scaler1 of each replaced ReLU)."""
    out = {}
    for name, m in snn.named_modules():
        if name.endswith("scaler1"):
            scale = getattr(m, "scale", None)
            if isinstance(scale, torch.Tensor):
                s = scale.detach().flatten().numpy()
                out[name] = [float(s.mean()), float(s.min()), float(s.max())]
            elif scale is not None:
                out[name] = float(scale)
    return out


def run(name, n_test, labels, cal_batch, log):
    module, graph, keras_logits = torch_port.load(name)
    with np.load(HERE / graph["eval_arrays"]) as d:
        x_cal, x_test, y_test = d["x_cal"], d["x_test"], d["y_test"]
    if n_test:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    xt = torch_port.to_torch_images(x_test)
    xc = torch_port.to_torch_images(x_cal)
    check = ann_check(module, xt, y_test, keras_logits)
    log(f"[{name}] torch ANN {100 * check['torch_accuracy']:.2f} % vs Keras "
        f"{100 * check['keras_accuracy']:.2f} %, max |logit diff| "
        f"{check['max_abs_logit_diff']:.2e}, {check['argmax_disagreements']} "
        "arg-max disagreements")  # fmt: skip
    if abs(check["torch_accuracy"] - check["keras_accuracy"]) > 0.0005:
        raise SystemExit(f"{name}: the PyTorch port does not reproduce the ANN")
    loader = [(xc[i : i + cal_batch],) for i in range(0, len(xc), cal_batch)]
    out = HERE / "results" / f"sj-{name}{'-n' + str(n_test) if n_test else ''}.json"
    result = json.loads(out.read_text()) if out.exists() else {"recipes": {}}
    if cal_batch == 100:
        result["calibration_batch"] = cal_batch
    result.update(
        name=name, test_images=int(len(x_test)), ann=check,
        spikingjelly=spikingjelly.__version__ if hasattr(spikingjelly, "__version__")
        else "2.0.0", torch=torch.__version__,
    )  # fmt: skip
    for label, factory in recipes(loader).items():
        if labels and label not in labels:
            continue
        if cal_batch != 100:  # a variant: keep the default rows
            label = f"{label} (calibration batches of {cal_batch})"
        t = time.time()
        try:
            converter = ann2snn.Converter(recipe=factory(), device="cpu")
            snn = converter.convert(copy.deepcopy(module)).eval()
            steps, n_neurons, n_nodes, pred = simulate(snn, xt, y_test)
        except Exception as error:  # record what failed and go on
            result["recipes"][label] = {"error": f"{type(error).__name__}: {error}"}
            log(f"[{name}] {label}: FAILED {type(error).__name__}: {error}")
            continue
        seconds = time.time() - t
        result["recipes"][label] = {
            "seconds": round(seconds, 1),
            "neurons": n_neurons,
            "neuron_layers": n_nodes,
            "thresholds": thresholds(snn),
            "steps": steps,
        }
        pred_path = out.with_suffix(".pred.npz")
        saved = dict(np.load(pred_path)) if pred_path.exists() else {}
        saved.update({f"{label}|{t}": p for t, p in pred.items()})
        np.savez_compressed(pred_path, **saved)
        accs = " / ".join(f"{100 * steps[str(s)]['accuracy']:.2f}" for s in STEPS)
        log(f"[{name}] {label}: {accs} % at {STEPS} steps, {seconds:.0f} s")
        out.write_text(json.dumps(result, indent=1))
    out.write_text(json.dumps(result, indent=1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--recipes", nargs="*", default=None)
    parser.add_argument("--cal-batch", type=int, default=100)
    args = parser.parse_args()
    names = args.names or sorted(
        p.name[: -len(".graph.json")] for p in (HERE / "models").glob("*.graph.json")
    )
    (HERE / "results").mkdir(exist_ok=True)
    start = time.time()

    def log(message):
        print(f"{time.time() - start:6.0f} s  {message}", flush=True)

    for name in names:
        run(name, args.n_test, args.recipes, args.cal_batch, log)


if __name__ == "__main__":
    main()
