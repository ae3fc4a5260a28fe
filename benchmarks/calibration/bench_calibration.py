"""snnify's calibrations for a step budget, side by side with SpikingJelly.

For each network trained by networks.py: accuracy and spikes per inference at
2, 4, 8 and 16 steps of ``IntegrateAndFire`` neurons with mean decoding, for

- ``convert_for_steps`` (its default: per-channel threshold search for at
  most two spikes per step plus initial-voltage correction, calibrated for
  each step count separately), the same with ``SignedIntegrateAndFire``
  neurons, the same for one spike per step, and (for one
  spike per step) its variants without the correction and with one
  threshold per layer;
- ``scale_firing_rates="auto"`` (the same search for 8 steps, no correction;
  one calibration for every step count);
- the fixed percentiles of ``snnify.calibrate`` (per layer 99.9, the previous
  ``"auto"``, and per channel 99).

Every calibration uses the same 500 calibration images (the first 500
training images). ``run`` writes ``results/snnify-NAME[-nN].json`` (and the
arg-max of every test image, ``.pred.npz``, to compare rows on any subset);
``tables`` prints one markdown table per network with the SpikingJelly rows
of ``results/sj-NAME[-nN].json`` (spikingjelly_baseline.py) on the same
images.

    KERAS_BACKEND=jax python bench_calibration.py run NAME [--n-test N]
        [--methods LABEL ...]
    python bench_calibration.py tables > results/tables.md
    KERAS_BACKEND=jax python bench_calibration.py seeds NAME [--n-test N]
        [--steps 2 4 8 16] [--seeds 5]

``tables`` also prints how often each conversion gives the ANN's class
(right or wrong), and ``seeds`` how much convert_for_steps's accuracy moves
with the seed of its sampling.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = (2, 4, 8, 16)
NETWORKS = (
    "tutorial_rmsprop", "tutorial_adam", "tutorial_sgdm", "taskB_deep",
    "resnet_bn", "digits_cnn",
)  # fmt: skip
# label: (kind, options)
METHODS = {
    "convert_for_steps (default)": ("steps", {}),
    "convert_for_steps, signed neurons": ("steps", {"signed": True}),
    "convert_for_steps, one spike per step": ("steps", {"spikes_per_step": 1}),
    "convert_for_steps, two spikes per step": ("steps", {"spikes_per_step": 2}),
    "convert_for_steps, four spikes per step": ("steps", {"spikes_per_step": 4}),
    "convert_for_steps, no correction": (
        "steps",
        {"correct": False, "spikes_per_step": 1},
    ),
    "convert_for_steps, per layer": (
        "steps",
        {"per_channel": False, "spikes_per_step": 1},
    ),
    'scale_firing_rates="auto"': ("auto", {}),
    "per layer p99.9 (the previous auto)": ("percentile", {"percentile": 99.9}),
    "per channel p99": ("percentile", {"percentile": 99.0, "per_channel": True}),
}


def _load(name, n_test):
    import keras
    import networks  # noqa: F401 (registers the classes of resnet_subclassed)

    info = json.loads((HERE / "models" / f"{name}.json").read_text())
    with np.load(HERE / info["eval_arrays"]) as d:
        x_cal, x_test, y_test = d["x_cal"], d["x_test"], d["y_test"]
    if n_test:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    model = keras.models.load_model(HERE / "models" / f"{name}.keras")
    return model, x_cal, x_test, y_test


def _converters(model, x_cal, kind, options):
    """``[(steps, converter)]``: one converter per step count, or one for all."""
    import snnify
    from snnify.calibrate import convert_for_steps

    if kind == "steps":
        options = dict(options)
        if options.pop("signed", False):
            options["neuron"] = snnify.SignedIntegrateAndFire()
        return [(t, convert_for_steps(model, x_cal, t, **options)) for t in STEPS]
    if kind == "auto":
        scales = "auto"
    else:
        scales = snnify.calibrate(model, x_cal, **options)
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=scales,
        calibration_data=x_cal if kind == "auto" else None,
    )
    return [(STEPS, converter)]


def run_method(model, x_cal, x_test, y_test, kind, options):
    """``({steps: row}, {steps: arg-max per test image}, calibration seconds)``."""
    import snnify

    start = time.time()
    converters = _converters(model, x_cal, kind, options)
    calibration_seconds = time.time() - start
    rows, predictions = {}, {}
    for steps, converter in converters:
        steps = steps if isinstance(steps, tuple) else (steps,)
        stats = snnify.measure(converter, x_test, y=y_test, steps=steps)
        for t, s in stats.items():
            decoded = next(iter(s.outputs.values()))
            predictions[t] = np.argmax(decoded, -1).astype("int8")
            rows[t] = {"accuracy": s.accuracy, "spikes_per_inference": s.spikes}
            expected = getattr(converter, "calibration", None)
            if getattr(expected, "expected", None):
                rows[t]["expected_on_calibration_data"] = expected.expected
    return rows, predictions, calibration_seconds


def run(name, n_test, methods, log):
    model, x_cal, x_test, y_test = _load(name, n_test)
    ann = np.argmax(model.predict(x_test, verbose=0), -1)
    path = (
        HERE / "results" / f"snnify-{name}{'-n' + str(n_test) if n_test else ''}.json"
    )
    result = json.loads(path.read_text()) if path.exists() else {"settings": {}}
    result.update(name=name, test_images=int(len(x_test)),
                  ann_accuracy=float(np.mean(ann == y_test)))  # fmt: skip
    pred_path = path.with_suffix(".pred.npz")
    predictions = dict(np.load(pred_path)) if pred_path.exists() else {}
    for label in methods:
        kind, options = METHODS[label]
        start = time.time()
        rows, preds, calibration = run_method(model, x_cal, x_test, y_test, kind,
                                              options)  # fmt: skip
        result["settings"][label] = {
            "options": options,
            "seconds": round(time.time() - start, 1),
            "calibration_seconds": round(calibration, 1),
            "steps": {str(t): rows[t] for t in sorted(rows)},
        }
        predictions.update({f"{label}|{t}": p for t, p in preds.items()})
        path.write_text(json.dumps(result, indent=1))
        np.savez_compressed(pred_path, **predictions)
        accuracies = " / ".join(f"{100 * rows[t]['accuracy']:.2f}" for t in STEPS)
        log(f"[{name}] {label}: {accuracies} % at {STEPS} steps (ANN "
            f"{100 * result['ann_accuracy']:.2f} %), {time.time() - start:.0f} s")  # fmt: skip


def _results(prefix, name):
    """The saved results of a network, fewest test images first."""
    results = [
        json.loads(path.read_text()) | {"path": path}
        for path in (HERE / "results").glob(f"{prefix}-{name}*.json")
        if path.with_suffix(".pred.npz").exists()
    ]
    return sorted(results, key=lambda r: r["test_images"])


def _peers(name):
    """SpikingJelly's results on ``name``: the run with most recipes, then
    most test images (None if there is none)."""
    runs = _results("sj", name)
    return max(runs, key=lambda r: (len(_rows(r)), r["test_images"]), default=None)


def _rows(result):
    return result.get("settings") or result.get("recipes")


def _line(label, result, n, y):
    """A table line: accuracy (%) on the first ``n`` images, and spikes."""
    steps = _rows(result)[label]["steps"]
    accuracies, spikes = [], []
    with np.load(result["path"].with_suffix(".pred.npz")) as predictions:
        for t in STEPS:
            predicted = predictions[f"{label}|{t}"][:n]
            accuracies.append(f"{100 * np.mean(predicted == y[:n]):.2f}")
            spikes.append(f"{steps[str(t)]['spikes_per_inference']:,.0f}")
    return f"| {label} | " + " | ".join(accuracies) + " | " + "/".join(spikes) + " |"


def table(name, whole_test_set=False) -> str:
    """Markdown: snnify's methods and SpikingJelly's recipes on the same images.

    The images are the first ``n`` test images that SpikingJelly was run on
    (or the whole test set); spikes per inference are over each row's own run.
    """
    info = json.loads((HERE / "models" / f"{name}.json").read_text())
    with np.load(HERE / info["eval_arrays"]) as d:
        y = d["y_test"]
    peers = _peers(name)
    n = len(y) if whole_test_set or peers is None else peers["test_images"]
    logits = np.load(HERE / "models" / f"{name}.npz")["__logits__"]
    ann = 100 * np.mean(logits[:n].argmax(-1) == y[:n])
    lines = [
        f"### {name} ({info['training']}), first {n} of {len(y)} test images",
        "",
        f"ANN: {ann:.2f} % on these images ({100 * info['ann_test_accuracy']:.2f} "
        "% on the whole test set).",
        "",
        "| method | T=2 | T=4 | T=8 | T=16 | spikes/inference at T=2/4/8/16 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ours = [r for r in _results("snnify", name) if r["test_images"] >= n]
    for label in METHODS:
        result = next((r for r in ours if label in _rows(r)), None)
        if result is not None:
            lines.append(_line(label, result, n, y).replace("| ", "| snnify ", 1))
    if peers is not None and not whole_test_set:
        lines += [_line(label, peers, n, y) for label in _rows(peers)]
    return "\n".join(lines)


def _correct(result, label, t, n, y) -> np.ndarray:
    """Which of the first ``n`` test images ``label`` classifies right at ``t``."""
    with np.load(result["path"].with_suffix(".pred.npz")) as predictions:
        return predictions[f"{label}|{t}"][:n] == y[:n]


def paired_test(ours, peer) -> str:
    """``"a/b, p=..."``: the images only ``ours`` / only ``peer`` got right.

    ``p`` is the exact two-sided McNemar test (a binomial test on those
    discordant images): how likely a difference at least this large is if
    both classify equally well.
    """
    from scipy.stats import binomtest

    only_ours, only_peer = int(np.sum(ours & ~peer)), int(np.sum(~ours & peer))
    discordant = only_ours + only_peer
    p = binomtest(only_ours, discordant).pvalue if discordant else 1.0
    return f"{only_ours}/{only_peer}, " + ("p<0.001" if p < 0.001 else f"p={p:.3f}")


def _agreement(result, label, t, n, ann_class) -> float:
    """The share (%) of the first ``n`` test images that ``label`` puts in the
    ANN's class at ``t`` steps (right or wrong)."""
    with np.load(result["path"].with_suffix(".pred.npz")) as predictions:
        return 100 * np.mean(predictions[f"{label}|{t}"][:n] == ann_class[:n])


def agreement_summary() -> str:
    """Markdown: how often each conversion gives the ANN's class.

    Less noisy than accuracy: a conversion that reproduces the ANN scores
    100 % here, while its accuracy can trail a conversion whose errors
    happen to fix some of the ANN's.
    """
    label = "convert_for_steps (default)"
    lines = [
        "| network (test images) | convert_for_steps at T=2 / 4 / 8 / 16 | "
        "most faithful SpikingJelly recipe at T=2 / 4 / 8 / 16 |",
        "|---|---|---|",
    ]
    for name in NETWORKS:
        peers = _peers(name)
        n = peers["test_images"]
        ours = next(r for r in _results("snnify", name)
                    if r["test_images"] >= n and label in _rows(r))  # fmt: skip
        ann_class = np.load(HERE / "models" / f"{name}.npz")["__logits__"].argmax(-1)
        mine, best = [], []
        for t in STEPS:
            snn = _agreement(ours, label, t, n, ann_class)
            peer = max(_agreement(peers, p, t, n, ann_class) for p in _rows(peers))
            mine.append(f"{snn:.2f}")
            best.append(f"{peer:.2f} ({'ahead' if snn > peer else 'not ahead'})")
        lines.append(f"| {name} ({n}) | {' / '.join(mine)} | {' / '.join(best)} |")
    return "\n".join(lines)


def summary() -> str:
    """Markdown: convert_for_steps against the best SpikingJelly recipe."""
    label = "convert_for_steps (default)"
    lines = [
        "| network (test images) | ANN | convert_for_steps at T=2 / 4 / 8 / 16 "
        "(vs ANN) | best SpikingJelly recipe at T=2 / 4 / 8 / 16 (images only "
        "snnify / only SpikingJelly got right, McNemar p) |",
        "|---|---:|---|---|",
    ]
    for name in NETWORKS:
        info = json.loads((HERE / "models" / f"{name}.json").read_text())
        with np.load(HERE / info["eval_arrays"]) as d:
            y = d["y_test"]
        peers = _peers(name)
        n = peers["test_images"]
        ours = next(r for r in _results("snnify", name)
                    if r["test_images"] >= n and label in _rows(r))  # fmt: skip
        logits = np.load(HERE / "models" / f"{name}.npz")["__logits__"]
        ann = 100 * np.mean(logits[:n].argmax(-1) == y[:n])
        mine, best = [], []
        for t in STEPS:
            right = _correct(ours, label, t, n, y)
            # the recipe that did best on these very images (kind to the peer)
            peer = max((_correct(peers, p, t, n, y) for p in _rows(peers)), key=np.sum)
            snn, best_peer = 100 * np.mean(right), 100 * np.mean(peer)
            verdict = (
                "ahead"
                if snn > best_peer
                else ("tie" if snn == best_peer else "behind")
            )
            mine.append(f"{snn:.2f} ({snn - ann:+.2f})")
            best.append(f"{best_peer:.2f} ({verdict}, {paired_test(right, peer)})")
        lines.append(f"| {name} ({n}) | {ann:.2f} | {' / '.join(mine)} | "
                     f"{' / '.join(best)} |")  # fmt: skip
    return "\n".join(lines)


def seed_spread(name, n_test, steps, seeds, log):
    """Print convert_for_steps's accuracy and agreement with the ANN for each
    seed of its sampling of positions (the default's only random choice)."""
    import snnify

    model, x_cal, x_test, y_test = _load(name, n_test)
    ann = np.argmax(model.predict(x_test, verbose=0), -1)
    log(f"[{name}] ANN {100 * np.mean(ann == y_test):.2f} % on {len(y_test)} images")
    for t in steps:
        accuracies = []
        for seed in range(seeds):
            converter = snnify.convert_for_steps(model, x_cal, t, seed=seed)
            stats = snnify.measure(converter, x_test, t, y=y_test)
            predicted = np.argmax(next(iter(stats.outputs.values())), -1)
            accuracies.append(100 * stats.accuracy)
            expected = converter.calibration.expected
            log(f"[{name}] T={t} seed {seed}: {accuracies[-1]:.2f} %, agreement "
                f"with the ANN {100 * np.mean(predicted == ann):.2f} %; on the "
                f"calibration data: output error {expected['output_error']:.4f}, "
                f"agreement {100 * expected['agreement']:.1f} %")  # fmt: skip
        log(f"[{name}] T={t}: min / median / max {min(accuracies):.2f} / "
            f"{np.median(accuracies):.2f} / {max(accuracies):.2f} %")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("run", "tables", "seeds"))
    parser.add_argument("names", nargs="*")
    parser.add_argument("--n-test", type=int, default=None, help="first N test images")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--steps", nargs="*", type=int, default=list(STEPS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    args = parser.parse_args()
    names = args.names or list(NETWORKS)
    if args.command == "tables":
        print(summary() + "\n")
        print(agreement_summary() + "\n")
        print("\n\n".join(table(name) for name in names))
        for name in ("tutorial_rmsprop", "digits_cnn"):  # snnify on every image
            print("\n" + table(name, whole_test_set=True))
        return
    (HERE / "results").mkdir(exist_ok=True)
    start = time.time()

    def log(message):
        print(f"{time.time() - start:6.0f} s  {message}", flush=True)

    for name in names:
        if args.command == "seeds":
            seed_spread(name, args.n_test, args.steps, args.seeds, log)
        else:
            run(name, args.n_test, args.methods, log)


if __name__ == "__main__":
    main()
