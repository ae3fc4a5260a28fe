"""The tutorial's whole workflow, timed phase by phase, on one backend.

Runs the NengoDL tutorial's own code with ``nengo``/``nengo_dl`` renamed to
``snnify`` (the script of ``tests/test_tutorial_port.py``, TensorFlow's
``tf.*`` names on TensorFlow) at the tutorial's sizes on the bundled MNIST
subset: training for 2 epochs on all 10,000 training images (validated on the
10,000 test images), the tutorial's twelve ``run_network`` calls on 400 test
images, regularised training for 10 epochs, and the two ``run_network`` calls
on the regularised weights. Plots are not drawn. Prints the seconds of each
phase and the total wall time of the process (imports included).

``--keras-floor`` then runs the workflow's two trainings with Keras alone (no
snnify): the same network, data, optimiser, batch size, epochs, losses and
rate targets (in float32, where the tutorial's are float64), as plain
``keras.Model.fit`` calls. Their time is a floor for
the workflow's training phases on this machine.

Usage::

    python benchmarks/bench_tutorial_workflow.py --backend tensorflow
    python benchmarks/bench_tutorial_workflow.py --keras-floor
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_tutorial_port import ported_code  # noqa: E402

SIZES = dict(n_train=10_000, n_validation=10_000, n_test=400, regularised_epochs=10)

# the tutorial's run_network calls, in its order
RUNS = """
phase("imports, data, training")
run_network(activation=snnify.RectifiedLinear(), n_steps=10)
phase("rate, 10 steps")
run_network(activation=snnify.SpikingRectifiedLinear(), n_steps=10)
phase("spiking, 10 steps")
run_network(activation=snnify.SpikingRectifiedLinear(), n_steps=50)
phase("spiking, 50 steps")
for s in [0.001, 0.005, 0.01]:
    run_network(activation=snnify.SpikingRectifiedLinear(), n_steps=120, synapse=s)
phase("three synapses, 120 steps")
for scale in [2, 10, 20]:
    run_network(
        activation=snnify.SpikingRectifiedLinear(),
        scale_firing_rates=scale,
        synapse=0.01,
    )
phase("three scales, 30 steps")
run_network(
    activation=snnify.SpikingRectifiedLinear(), scale_firing_rates=1000, n_steps=10
)
phase("scale 1000, 10 steps")
"""

PROLOGUE = """
import time
_start = _last = time.perf_counter()

def phase(name):
    global _last
    now = time.perf_counter()
    print(f"PHASE {now - _last:8.1f} s  {name}", flush=True)
    _last = now
"""

EPILOGUE = """
phase("regularised training")
print("ACCURACIES", *[run_network(
    activation=a, params_file="keras_to_snn_regularized_params", n_steps=n, synapse=s
)[0] for a, n, s in [(snnify.RectifiedLinear(), 10, None),
                     (snnify.SpikingRectifiedLinear(), 30, 0.01)]])
phase("two regularised configurations")
print(f"PHASE {time.perf_counter() - _start:8.1f} s  total in the script")
"""


KERAS_FLOOR = """
import sys
import time
_start = time.perf_counter()
import keras
import numpy as np

keras.utils.set_random_seed(0)
with np.load(sys.argv[1], allow_pickle=False) as d:
    x, y = d["x_train"][:{n_train}], d["y_train"][:{n_train}]
    x_val, y_val = d["x_test"][:{n_validation}], d["y_test"][:{n_validation}]
x = x.reshape((-1, 28, 28, 1)).astype("float32")
x_val = x_val.reshape((-1, 28, 28, 1)).astype("float32")
inp = keras.Input(shape=(28, 28, 1))
conv0 = keras.layers.Conv2D(32, 3, activation="relu")(inp)
conv1 = keras.layers.Conv2D(64, 3, strides=2, activation="relu")(conv0)
dense = keras.layers.Dense(10)(keras.layers.Flatten()(conv1))
cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
model = keras.Model(inp, dense)
model.compile(keras.optimizers.RMSprop(0.001), cross_entropy,
              metrics=["sparse_categorical_accuracy"])
print(f"PHASE {{time.perf_counter() - _start:8.1f}} s  Keras alone: imports, data")
start = time.perf_counter()
model.fit(x, y, validation_data=(x_val, y_val), epochs=2, batch_size=200, verbose=0)
print(f"PHASE {{time.perf_counter() - start:8.1f}} s  Keras alone: training")
rates = keras.Model(inp, [dense, keras.layers.Flatten()(conv0),
                          keras.layers.Flatten()(conv1)])
rates.compile(keras.optimizers.RMSprop(0.001),
              [cross_entropy, "mse", "mse"],
              loss_weights=[1, 1e-3, 1e-3])
targets = [y, np.full((len(x), 21632), 250, "float32"),
           np.full((len(x), 9216), 250, "float32")]
start = time.perf_counter()
rates.fit(x, targets, epochs={regularised_epochs}, batch_size=200, verbose=0)
print(f"PHASE {{time.perf_counter() - start:8.1f}} s  Keras alone: regularised training")
"""


def run_script(code: str, backend: str, *args: str):
    """Run ``code`` in a fresh process, print its phases; return its wall time."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "script.py"
        script.write_text(code)
        env = dict(os.environ, KERAS_BACKEND=backend)
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(script), *args], cwd=folder, env=env, text=True,
            capture_output=True,
        )  # fmt: skip
        wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])
    for line in result.stdout.splitlines():
        if line.startswith(("PHASE", "ACCURACIES")):
            print(line.removeprefix("PHASE "))
    return wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument(
        "--keras-floor", action="store_true",
        help="also time the two trainings with Keras alone",
    )  # fmt: skip
    args = parser.parse_args()
    from snnify.demo.datasets import bundled_mnist_path

    data = str(bundled_mnist_path())
    code = ported_code(args.backend, data, runs=RUNS, **SIZES)
    wall = run_script(PROLOGUE + code + EPILOGUE, args.backend)
    print(f"{wall:8.1f} s  wall time of the process ({args.backend})")
    if args.keras_floor:
        wall = run_script(KERAS_FLOOR.format(**SIZES), args.backend, data)
        print(f"{wall:8.1f} s  wall time of the process (Keras alone)")


if __name__ == "__main__":
    main()
