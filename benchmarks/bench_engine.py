"""Engine benchmark: spiking predict time against the dense-compute limit.

The tutorial's network (Conv2D 32 3x3 relu -> Conv2D 64 3x3 stride 2 relu ->
Flatten -> Dense 10, random weights), 400 MNIST test images held for
``n_steps`` steps, spiking rectified-linear neurons, ``synapse=0.01``,
``scale_firing_rates=20``, ``minibatch_size=10``. For every configuration it
reports

- ``predict``: median wall time of ``Simulator.predict`` after a warm-up call
  (which compiles);
- ``dense``: ``n_steps x`` the time of one non-spiking forward pass of the
  original Keras model over the same 400 images, compiled the same way as the
  engine (``snnify.backend.compile_function``: ``jax.jit``, XLA-compiled
  ``tf.function``, eager PyTorch) and also, on JAX, with XLA's default
  options and, on TensorFlow, as a ``tf.function`` without XLA: the faster
  is the reference; run at the batch size the simulator uses;
- ``ratio``: the median over the repeats of each predict time divided by the
  dense time measured just before and after it (target: <= 1.0 at 30 and 120
  steps), and the same ratio of the process's CPU times (on a machine shared
  with other jobs wall times drift; the ratios of neighbouring measurements
  are steadier);
- ``peak``: the peak RSS of the process (each configuration runs in a fresh
  subprocess), ``base`` its RSS before the first ``predict``, and ``out`` the
  bytes of the arrays ``predict`` returns;
- ``added / out``: the memory one compiled ``predict`` call adds (its peak
  RSS, reset before the call, minus the RSS before it) over the bytes it
  returns (target: <= 1.5 where the returned arrays dominate, i.e. with the
  conv0 probe).

Cases: ``out`` (only the output probed, every step kept), ``conv0`` (the
tutorial's probe on the first convolutional layer as well) and ``deep`` (a
deeper network on 32x32x3 images: four 3x3 convolutions of 32, 32, 64, 64
filters with 2x2 average pooling after each pair, Dense 256, Dense 10; random
images and weights; only the output probed).

Usage::

    python benchmarks/bench_engine.py                    # jax, 10/30/120 steps
    python benchmarks/bench_engine.py --backend all      # jax, tensorflow, torch
    python benchmarks/bench_engine.py --quick --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import fresh_process

ROOT = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = [
    ROOT.parent / "shared" / "data" / "mnist-subset.npz",
    ROOT / "snnify" / "demo" / "data" / "mnist-subset.npz",
]
BACKENDS = ("jax", "tensorflow", "torch")
CASES = ("out", "conv0", "deep")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_since_reset() -> int:
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _images(n: int, case: str):
    import numpy as np

    if case == "deep":
        return (
            np.random.default_rng(0).uniform(0, 1, (n, 1, 32, 32, 3)).astype("float32")
        )

    path = next(p for p in DATA_CANDIDATES if p.exists())
    with np.load(path) as data:
        x = data["x_test"][:n].astype("float32") / 255.0
    return x.reshape(n, 1, 28, 28, 1)


def _tutorial_model(seed: int = 0):
    import keras

    # seeded initializers rather than keras.utils.set_random_seed, which would
    # import TensorFlow (and its memory) into the JAX and PyTorch runs
    def init(i):
        return keras.initializers.GlorotUniform(seed=seed + i)

    inp = keras.Input((28, 28, 1))
    conv0 = keras.layers.Conv2D(32, 3, activation="relu", kernel_initializer=init(0))(
        inp
    )
    conv1 = keras.layers.Conv2D(
        64, 3, strides=2, activation="relu", kernel_initializer=init(1)
    )(conv0)
    dense = keras.layers.Dense(10, kernel_initializer=init(2))(
        keras.layers.Flatten()(conv1)
    )
    return keras.Model(inp, dense), conv0, dense


def _deep_model(seed: int = 0):
    import keras

    layers = keras.layers
    x = inp = keras.Input((32, 32, 3))

    def init(seed):
        return keras.initializers.HeUniform(seed=seed)

    for i, filters in enumerate((32, 32, 64, 64)):
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=init(seed + i),
        )(x)
        if i % 2:
            x = layers.AveragePooling2D(2)(x)
    dense = layers.Dense(256, activation="relu", kernel_initializer=init(seed + 4))
    x = dense(layers.Flatten()(x))
    out = layers.Dense(10, kernel_initializer=init(seed + 5))(x)
    return keras.Model(inp, out), None, out


def child(args) -> dict:
    """One configuration, in this (fresh) process; returns the measurements."""
    import keras
    import numpy as np

    import snnify
    from snnify import simulator
    from snnify.backend import compile_function

    if args.max_batch:
        simulator.MAX_BATCH = args.max_batch

    if keras.backend.backend() == "torch":
        import torch

        torch.set_grad_enabled(False)
    model, conv0, dense = (_deep_model if args.case == "deep" else _tutorial_model)()
    x = _images(args.n_images, args.case)

    def simulator_with_output(keep):
        converter = snnify.Converter(
            model,
            swap_activations={"relu": snnify.SpikingRectifiedLinear()},
            scale_firing_rates=20,
            synapse=0.01,
        )
        converter.outputs[dense].keep = keep
        with converter.net:
            if args.case == "conv0":
                snnify.Probe(converter.layers[conv0])
            snnify.configure_settings(stateful=False, torch_compile=args.torch_compile)
        return snnify.Simulator(
            converter.net, minibatch_size=args.minibatch, progress_bar=False, seed=0
        )

    sim = simulator_with_output("all")
    batch = simulator.examples_per_run(args.n_images, sim.minibatch_size)

    # the non-spiking forward pass at the simulator's batch size, compiled like
    # the engine; on TensorFlow also as a graph without XLA (faster for the
    # convolutions here): the faster of the two is the reference
    forwards = {"engine's compiler": compile_function(model, model.variables)}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        forwards["tf.function without XLA"] = tf.function(model)
    if keras.backend.backend() == "jax":  # without snnify's XLA:CPU options
        import jax

        def pure(values, a):
            mapping = list(zip(model.variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return model(a)

        plain = jax.jit(pure)
        forwards["jax.jit, XLA defaults"] = lambda a: plain(
            [v.value for v in model.variables], a
        )
    batches = [x[i : i + batch, 0] for i in range(0, len(x), batch)]
    if len(batches[-1]) < batch:  # the simulator pads the last run
        last = batches[-1]
        pad = np.repeat(last[-1:], batch - len(last), 0)
        batches[-1] = np.concatenate([last, pad])

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    def pass_with(forward):
        def dense_pass():
            for o in [forward(b) for b in batches]:
                keras.ops.convert_to_numpy(o)

        return dense_pass

    speeds = {}
    for name, forward in forwards.items():
        for _ in range(3):
            pass_with(forward)()
        speeds[name] = np.median([timed(pass_with(forward))[0] for _ in range(5)])
    reference = min(speeds, key=speeds.get)
    dense_pass = pass_with(forwards[reference])

    returned = {}

    def predict():
        data = sim.predict(x, n_steps=args.steps)
        returned["bytes"] = sum(v.nbytes for v in data.values())

    # the output kept as a sum: its last dense layer runs once per chunk
    sum_sim = simulator_with_output("sum") if args.sum else None

    def predict_sum():
        sum_sim.predict(x, n_steps=args.steps)

    base = fresh_process.rss_bytes()
    first = timed(predict)[0]
    if args.sum:
        predict_sum()
    before = fresh_process.rss_bytes()
    _reset_peak_rss()
    predict()
    added = _peak_rss_since_reset() - before
    # each predict call is compared with the dense passes timed just before and
    # just after it (the load of a shared machine drifts); medians over repeats
    dense_times = [np.median([timed(dense_pass) for _ in range(3)], axis=0)]
    predict_times, ratios, sum_times = [], [], []
    for _ in range(args.repeats):
        predict_times.append(timed(predict))
        if args.sum:  # keep="sum" against keep="all", one after the other
            sum_times.append(timed(predict_sum)[0] / predict_times[-1][0])
        dense_times.append(np.median([timed(dense_pass) for _ in range(3)], axis=0))
        around = args.steps * (dense_times[-2] + dense_times[-1]) / 2
        ratios.append(np.asarray(predict_times[-1]) / around)
    predict_wall, predict_cpu = np.median(predict_times, axis=0)
    dense_wall, dense_cpu = args.steps * np.median(dense_times, axis=0)
    ratio, cpu_ratio = np.median(ratios, axis=0)
    return {
        "backend": keras.backend.backend(),
        "case": args.case,
        "steps": args.steps,
        "batch": batch,
        "first_s": first,
        "predict_s": predict_wall,
        "predict_all_s": [t[0] for t in predict_times],
        "reference": reference,
        "forward_ms": 1e3 * dense_wall / args.steps / len(batches),
        "dense_s": dense_wall,
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "predict_cpu_s": predict_cpu,
        "dense_cpu_s": dense_cpu,
        "peak_gb": fresh_process.peak_rss_bytes() / 1e9,
        "base_gb": base / 1e9,
        "out_gb": returned["bytes"] / 1e9,
        "added_gb": added / 1e9,
        "sum_over_all": float(np.median(sum_times)) if sum_times else None,
        "sum_over_all_each": sum_times,
    }


def run_child(backend: str, case: str, steps: int, args) -> dict:
    options = ["--case", case, "--steps", steps, "--repeats", args.repeats]
    options += ["--minibatch", args.minibatch, "--n-images", args.n_images]
    options += ["--sum"] if args.sum else []
    options += ["--torch-compile"] if args.torch_compile else []
    return fresh_process.run_child(
        __file__, backend, options + ["--max-batch", args.max_batch or 0]
    )


HEADER = (
    "| backend | probes | steps | batch | predict (s) | n_steps x forward (s) "
    "| ratio | ratio of CPU times | peak RSS (GB) | RSS before predict (GB) "
    "| returned (GB) | added / returned | forward pass |"
)


def row(r: dict) -> str:
    probes = {"out": "output", "conv0": "output + conv0", "deep": "deeper net, output"}[
        r["case"]
    ]
    # the ratio only means something where the returned arrays dominate
    added = f"{r['added_gb'] / r['out_gb']:.2f}" if r["out_gb"] > 0.05 else "-"
    return (
        f"| {r['backend']} | {probes} | {r['steps']} | {r['batch']} "
        f"| {r['predict_s']:.2f} | {r['dense_s']:.2f} | **{r['ratio']:.2f}** "
        f"| {r['cpu_ratio']:.2f} | {r['peak_gb']:.2f} | {r['base_gb']:.2f} | {r['out_gb']:.3f} "
        f"| {added} | {r['reference']} |"
    )


def print_against_fastest(results: list) -> None:
    """Each predict against the fastest forward pass of any backend in the run.

    The dense limit of a case is the fastest non-spiking forward pass of the
    same model over the backends measured (each in its own process, one after
    the other: the ratios across backends carry the machine's drift).
    """
    print(
        "\n| backend | probes | steps | predict (s) | own forward (s) | ratio to own "
        "| fastest forward (s), backend | ratio to fastest | keep='sum' / 'all' |"
    )
    print("|" + "---|" * 9)
    for r in results:
        same = [
            o for o in results if (o["case"], o["steps"]) == (r["case"], r["steps"])
        ]
        fastest = min(same, key=lambda o: o["dense_s"])
        by_sum = "-" if r["sum_over_all"] is None else f"{r['sum_over_all']:.3f}"
        print(
            f"| {r['backend']} | {r['case']} | {r['steps']} | {r['predict_s']:.2f} "
            f"| {r['dense_s']:.2f} | {r['ratio']:.2f} "
            f"| {fastest['dense_s']:.2f}, {fastest['backend']} "
            f"| **{r['predict_s'] / fastest['dense_s']:.2f}** | {by_sum} |"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="jax", choices=(*BACKENDS, "all"))
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 30, 120])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--minibatch", type=int, default=10)
    parser.add_argument("--n-images", type=int, default=400)
    parser.add_argument(
        "--max-batch", type=int, help="override snnify.simulator.MAX_BATCH"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 repeats, output probe only"
    )
    parser.add_argument(
        "--sum",
        action="store_true",
        help="also time predict with the output probe keeping only its sum",
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="on PyTorch, compile the step (configure_settings(torch_compile=True))",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.steps = args.steps[0]
        print(json.dumps(child(args)))
        return
    if args.quick:
        args.repeats = min(args.repeats, 3)
        args.cases = ["out"]
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    print(
        f"{os.cpu_count()} CPUs; {args.n_images} images, minibatch_size={args.minibatch}"
    )
    print(HEADER)
    print("|" + "---|" * HEADER.count(" |"))
    results = []
    for backend in backends:
        for case in args.cases:
            for steps in args.steps:
                r = run_child(backend, case, steps, args)
                results.append(r)
                print(row(r), flush=True)
    print_against_fastest(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
