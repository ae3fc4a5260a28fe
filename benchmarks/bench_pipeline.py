"""Training from disk: a PyDataset that reads its batches from files, against arrays.

The tutorial's network (Conv2D 32 3x3 relu -> Conv2D 64 3x3 stride 2 relu ->
Flatten -> Dense 10, spiking rectified-linear neurons trained through their
rates) is trained with ``sim.fit``, batch 200, RMSprop(1e-3), on MNIST images
as raw pixels (uint8, as the tutorial feeds them), tiled to the data size:

- ``arrays``: the images loaded into memory, ``sim.fit(x, y)``;
- ``disk``: a ``keras.utils.PyDataset`` whose ``__getitem__`` reads one batch
  from ``.npy`` files (plain file reads, no memory map: the pages it reads are
  not the process's memory), ``sim.fit(dataset)``.

Throughput: one process trains an epoch of each in turn (compilation
excluded) for ``--rounds`` rounds; the ratio of images per second, disk over
arrays, per round and its median (goal: >= 0.9).

Memory: a fresh process per data size and mode trains one epoch and reports
its peak resident memory; reading from disk must stay flat in the data size.

Usage::

    python benchmarks/bench_pipeline.py                 # 10,000 images, 3 rounds
    python benchmarks/bench_pipeline.py --sizes 10000 40000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import fresh_process

BATCH = 200


def write_data(folder: Path, n: int) -> None:
    """``x.npy`` (n, 784) uint8 and ``y.npy`` (n,): MNIST training images, tiled."""
    import numpy as np

    from snnify.demo.datasets import load_mnist

    (x, y), _ = load_mnist(verbose=False)
    repeats = math.ceil(n / len(x))
    np.save(folder / "x.npy", np.tile(x.reshape(len(x), -1), (repeats, 1))[:n])
    np.save(folder / "y.npy", np.tile(y, repeats)[:n])


def disk_dataset(folder: Path, **kwargs):
    """A PyDataset reading batches ``(x (b, 1, 784), y (b, 1, 1))`` from ``folder``."""
    import keras
    import numpy as np

    class DiskImages(keras.utils.PyDataset):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.files = {}
            for name in ("x", "y"):
                header = np.load(folder / f"{name}.npy", mmap_mode="r")
                self.files[name] = (header.offset, header.shape, header.dtype)
                del header
            self.n = self.files["x"][1][0]

        def __len__(self):
            return math.ceil(self.n / BATCH)

        def read(self, name, start, stop):
            offset, shape, dtype = self.files[name]
            row = math.prod(shape[1:]) * dtype.itemsize
            with open(folder / f"{name}.npy", "rb") as file:
                file.seek(offset + start * row)
                data = file.read((stop - start) * row)
            return np.frombuffer(data, dtype).reshape(stop - start, *shape[1:])

        def __getitem__(self, i):
            start, stop = i * BATCH, min((i + 1) * BATCH, self.n)
            x = self.read("x", start, stop)[:, None]
            y = self.read("y", start, stop)[:, None, None]
            return x, y

    return DiskImages(**kwargs)


def simulator():
    import keras

    import snnify

    def init(i):
        return keras.initializers.GlorotUniform(seed=i)

    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu", kernel_initializer=init(0))(inp)
    x = keras.layers.Conv2D(
        64, 3, strides=2, activation="relu", kernel_initializer=init(1)
    )(x)
    out = keras.layers.Dense(10, kernel_initializer=init(2))(keras.layers.Flatten()(x))
    converter = snnify.Converter(
        keras.Model(inp, out),
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
    )
    sim = snnify.Simulator(converter.net, minibatch_size=BATCH, progress_bar=False)
    sim.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return sim


def arrays(folder: Path):
    import numpy as np

    x = np.load(folder / "x.npy")
    return x[:, None], np.load(folder / "y.npy")[:, None, None]


def child(args) -> dict:
    """One measurement in this (fresh) process."""
    folder = Path(args.folder)
    sim = simulator()
    if args.measure == "memory":
        start = time.perf_counter()
        if args.mode == "disk":
            sim.fit(disk_dataset(folder), epochs=1, shuffle=False, verbose=0)
        else:
            sim.fit(*arrays(folder), epochs=1, shuffle=False, verbose=0)
        return {
            "seconds": time.perf_counter() - start,
            "peak_rss_mb": fresh_process.peak_rss_bytes() / 2**20,
        }
    import numpy as np

    x, y = arrays(folder)
    dataset = disk_dataset(folder)

    def epoch(mode):
        begin = time.perf_counter()
        if mode == "disk":
            sim.fit(dataset, epochs=1, shuffle=False, verbose=0)
        else:
            sim.fit(x, y, epochs=1, shuffle=False, verbose=0)
        return len(x) / (time.perf_counter() - begin)

    epoch("arrays"), epoch("disk")  # compile
    rounds = [{m: epoch(m) for m in ("arrays", "disk")} for _ in range(args.rounds)]
    ratios = [r["disk"] / r["arrays"] for r in rounds]
    return {
        "arrays_images_per_s": float(np.median([r["arrays"] for r in rounds])),
        "disk_images_per_s": float(np.median([r["disk"] for r in rounds])),
        "ratios": ratios,
        "ratio": float(np.median(ratios)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    results = {"throughput": None, "memory": []}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for n in args.sizes:
            folders[n] = Path(tmp) / str(n)
            folders[n].mkdir()
            write_data(folders[n], n)
        n = args.sizes[0]
        options = ["--measure", "throughput", "--rounds", args.rounds]
        r = fresh_process.run_child(
            __file__, args.backend, [*options, "--folder", folders[n]]
        )
        results["throughput"] = {"images": n, **r}
        print(f"{os.cpu_count()} CPUs, {args.backend}; {n} images, batch {BATCH}")
        print(
            "| arrays in memory (images/s) | PyDataset from disk (images/s) | ratio |"
        )
        print("|---|---|---|")
        print(
            f"| {r['arrays_images_per_s']:.0f} | {r['disk_images_per_s']:.0f} "
            f"| **{r['ratio']:.2f}** (rounds: "
            f"{', '.join(f'{q:.2f}' for q in r['ratios'])}) |",
            flush=True,
        )
        print("\n| images | data on disk (MB) | mode | peak memory (MB) | epoch (s) |")
        print("|---|---|---|---|---|")
        for n in args.sizes:
            size = sum(f.stat().st_size for f in folders[n].iterdir()) / 2**20
            for mode in ("disk", "arrays"):
                options = ["--measure", "memory", "--mode", mode]
                m = fresh_process.run_child(
                    __file__, args.backend, [*options, "--folder", folders[n]]
                )
                results["memory"].append({"images": n, "mode": mode, **m})
                print(
                    f"| {n} | {size:.0f} | {mode} | {m['peak_rss_mb']:.0f} "
                    f"| {m['seconds']:.0f} |",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
