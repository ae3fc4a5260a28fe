"""Long streams: memory flat in the number of steps, and no subnormal slowdown.

The tutorial's network (random weights), spiking rectified-linear neurons,
``synapse=0.01``, ``scale_firing_rates=20``, 10 MNIST test images held for
``n_steps`` steps. Every run is a fresh process; it reports the wall time,
the time per step, the peak RSS, the RSS before ``predict`` and the bytes
``predict`` returned.

Probes (on the first convolutional layer and on the output):

- ``stats``: running sum, count and max per neuron (``keep="stats"``);
- ``last``: the last step only (``keep="last"``);
- ``sampled``: the output every 100th step (``sample_every=0.1``), the
  convolutional layer as statistics.

The ratio ``peak(n_steps) / peak(smallest n_steps)`` is the memory target
(within 10 %, i.e. <= 1.10, for ``stats`` and ``last``).

``--subnormal``: the images are shown for 50 steps and then replaced by zeros
for the rest of a long run, so that the synapses' state decays towards zero
through the subnormal range (about 900 steps of silence with ``tau=0.01``);
it prints the time of that run, of the same run with the images shown all
along, their ratio (a subnormal slowdown would show as >> 1) and how many
values of the final state are subnormal.

Usage::

    python benchmarks/bench_stream.py                         # jax, 1,000 and 100,000 steps
    python benchmarks/bench_stream.py --steps 1000 20000 --backend all
    python benchmarks/bench_stream.py --subnormal --backend all
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import fresh_process

BACKENDS = ("jax", "tensorflow", "torch")
CASES = ("stats", "last", "sampled")
N_IMAGES = 10


def _network(probe_keep: str):
    """The converted tutorial network with the probes of one case."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_engine import _tutorial_model

    import snnify

    model, conv0, out = _tutorial_model()
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=20,
        synapse=0.01,
    )
    output = converter.outputs[out]
    with converter.net:
        if probe_keep == "sampled":
            output.sample_every = 0.1
            snnify.Probe(converter.layers[conv0], keep="stats")
        else:
            output.keep = probe_keep
            snnify.Probe(converter.layers[conv0], keep=probe_keep)
    return converter


def _images():

    from snnify.demo.datasets import load_mnist

    _, (x, _) = load_mnist(verbose=False)
    return (x[:N_IMAGES].astype("float32") / 255.0).reshape(N_IMAGES, 1, -1)


def child_stream(args) -> dict:
    import keras

    import snnify
    from snnify.engine import ProbeStats

    converter = _network(args.case)
    x = _images()
    sim = snnify.Simulator(converter.net, progress_bar=args.progress, seed=0)
    base = fresh_process.rss_bytes()
    start = time.perf_counter()
    data = sim.predict(x, n_steps=args.steps)
    wall = time.perf_counter() - start
    returned = sum(
        v.sum.nbytes + v.max.nbytes if isinstance(v, ProbeStats) else v.nbytes
        for v in data.values()
    )
    return {
        "backend": keras.backend.backend(),
        "case": args.case,
        "steps": args.steps,
        "wall_s": wall,
        "us_per_step": 1e6 * wall / args.steps,
        "peak_gb": fresh_process.peak_rss_bytes() / 1e9,
        "base_gb": base / 1e9,
        "returned_mb": returned / 1e6,
    }


def child_subnormal(args) -> dict:
    import keras
    import numpy as np

    import snnify

    converter = _network("last")
    images = _images()
    sim = snnify.Simulator(converter.net, progress_bar=False, seed=0)
    active = np.repeat(images, args.steps, axis=1)
    silent = active.copy()
    silent[:, 50:] = 0.0
    times = {}
    for name, x in [("active", active), ("silent", silent)] * 2:
        sim.reset()
        start = time.perf_counter()
        sim.predict(x, stateful=True)  # stateful: keep the final state
        times.setdefault(name, []).append(time.perf_counter() - start)
    tiny = np.finfo("float32").tiny
    state = keras.tree.flatten(sim._state)
    subnormal = sum(int(np.sum((v != 0) & (np.abs(v) < tiny))) for v in state)
    return {
        "backend": keras.backend.backend(),
        "steps": args.steps,
        "active_s": min(times["active"]),
        "silent_s": min(times["silent"]),
        "ratio": min(times["silent"]) / min(times["active"]),
        "subnormal_values": subnormal,
        "state_values": sum(int(np.size(v)) for v in state),
    }


def run_child(backend: str, options: list) -> dict:
    return fresh_process.run_child(
        __file__, backend, options, show_stderr="--progress" in options
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="jax", choices=(*BACKENDS, "all"))
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--subnormal", action="store_true")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="stats", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.steps = args.steps[0]
        run = child_subnormal if args.subnormal else child_stream
        print(json.dumps(run(args)))
        return
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    print(f"{os.cpu_count()} CPUs; {N_IMAGES} images")
    results = []
    if args.subnormal:
        steps = max(args.steps) if len(args.steps) == 1 else 5000
        print(
            "| backend | steps | images all along (s) | images, then zeros (s) "
            "| ratio | subnormal values in the final state |"
        )
        print("|---|---|---|---|---|---|")
        for backend in backends:
            r = run_child(backend, ["--subnormal", "--steps", str(steps)])
            results.append(r)
            print(
                f"| {backend} | {steps} | {r['active_s']:.2f} | {r['silent_s']:.2f} "
                f"| **{r['ratio']:.2f}** | {r['subnormal_values']} of {r['state_values']} |",
                flush=True,
            )
    else:
        print(
            "| backend | probes | steps | time (s) | µs per step | peak RSS (GB) "
            "| RSS before predict (GB) | returned (MB) | peak / peak at fewest steps |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for backend in backends:
            for case in args.cases:
                first = None
                for steps in sorted(args.steps):
                    extra = ["--case", case, "--steps", str(steps)]
                    r = run_child(
                        backend, extra + (["--progress"] if args.progress else [])
                    )
                    first = first or r["peak_gb"]
                    r["peak_ratio"] = r["peak_gb"] / first
                    results.append(r)
                    print(
                        f"| {backend} | {case} | {steps} | {r['wall_s']:.1f} "
                        f"| {r['us_per_step']:.0f} | {r['peak_gb']:.3f} | {r['base_gb']:.3f} "
                        f"| {r['returned_mb']:.2f} | **{r['peak_ratio']:.3f}** |",
                        flush=True,
                    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
