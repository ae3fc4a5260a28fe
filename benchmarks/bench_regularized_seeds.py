"""The demo's regularised rows over backends and seeds (docs/tutorial.md).

Runs the demo's two regularised configurations (training with the firing-rate
loss, then rate neurons and spiking neurons) on the whole test set, once per
seed, on the backend that ``KERAS_BACKEND`` names, and appends one JSON line
per run to ``--results``. ``--table`` writes the Markdown table of the runs
in ``--results`` instead (the last run of each backend and seed), with the
spread:

    for backend in jax tensorflow torch; do
        KERAS_BACKEND=$backend python benchmarks/bench_regularized_seeds.py
    done
    python benchmarks/bench_regularized_seeds.py --table regularized.md
    python tools/splice.py docs/tutorial.md regularized-seeds regularized.md

Each run takes 6-15 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def run(seed: int, n_test: int, n_train: int | None = None) -> dict:
    import keras

    from snnify.demo.configurations import TUTORIAL_CONFIGURATIONS
    from snnify.demo.run import run_demo

    regularized = [c for c in TUTORIAL_CONFIGURATIONS if c.params == "regularized"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        results = run_demo(
            out=out, n_test=n_test, n_train=n_train, seed=seed, n_figures=0,
            configurations=regularized,
        )  # fmt: skip
        with open(os.path.join(out, "results.json"), encoding="utf-8") as file:
            training = json.load(file)["meta"]["training"]
    rate, spiking = results
    return {
        "backend": keras.backend.backend(),
        "seed": seed,
        "n_test": rate.n_test,
        "rate": 100 * rate.accuracy,
        "spiking": 100 * spiking.accuracy,
        "conv0 Hz": spiking.rate_mean,
        "training": training,
        "seconds": time.perf_counter() - start,
    }


def table(runs: list[dict]) -> str:
    """Markdown: one row per backend and seed (the last run), then the ranges."""
    runs = list({(r["backend"], r["seed"]): r for r in runs}.values())
    lines = [
        "| backend | seed | rate neurons (%) | spiking, 30 steps (%) | conv0 mean rate, spiking (Hz) | run time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in sorted(runs, key=lambda r: (r["backend"], r["seed"])):
        lines.append(
            f"| {r['backend']} | {r['seed']} | {r['rate']:.2f} | {r['spiking']:.2f} "
            f"| {r['conv0 Hz']:.1f} | {r['seconds']:.0f} |"
        )
    spiking = np.array([r["spiking"] for r in runs])
    rate = np.array([r["rate"] for r in runs])
    lines.append("")
    lines.append(
        f"{len(runs)} runs on {runs[0]['n_test']:,} test images: spiking "
        f"{spiking.min():.2f}-{spiking.max():.2f} % (mean {spiking.mean():.2f}), "
        f"rate {rate.min():.2f}-{rate.max():.2f} % (mean {rate.mean():.2f})."
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--n-train", type=int, help="default: all 10,000")
    parser.add_argument("--results", default="regularized_seeds.jsonl")
    parser.add_argument("--table", metavar="FILE", help="write the table and stop")
    args = parser.parse_args()
    if args.table:
        with open(args.results, encoding="utf-8") as file:
            runs = [json.loads(line) for line in file if line.strip()]
        text = table(runs)
        with open(args.table, "w", encoding="utf-8") as file:
            file.write(text + "\n")
        print(text)
        return
    for seed in args.seeds:
        result = run(seed, args.n_test, args.n_train)
        print(json.dumps(result), flush=True)
        with open(args.results, "a", encoding="utf-8") as file:
            file.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
