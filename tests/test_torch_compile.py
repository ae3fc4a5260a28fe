"""``configure_settings(torch_compile=True)``: the same predictions on PyTorch.

:func:`workload` runs in a subprocess with ``KERAS_BACKEND=torch``: the
same network predicted with the step run eagerly and compiled by
``torch.compile`` as one graph, over two chunks of steps (the compiled step
reused).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SKIP_EXIT_CODE = 77


def compile_whole_steps() -> list:
    """Make ``torch.compile`` compile as one graph; return the list of its calls.

    With ``fullgraph=True`` a graph break (Python that dynamo cannot trace,
    which would run most of the step eagerly) or passing PyTorch's limit of
    compiled versions raises, and the engine's warning fails the test.
    """
    import torch

    calls = []
    compile_step = torch.compile

    def counted(*args, **kwargs):
        calls.append(1)
        return compile_step(*args, fullgraph=True, **kwargs)

    torch.compile = counted
    return calls


def workload(path):
    import keras

    import snnify
    from snnify import engine

    calls = compile_whole_steps()  # the step must in fact be compiled
    engine.MAX_CHUNK_STEPS = 10  # 20 steps: two chunks
    init = keras.initializers.GlorotUniform
    inp = keras.Input((8, 8, 1), name="pixels")
    hidden = keras.layers.Conv2D(
        4, 3, activation="relu", kernel_initializer=init(0), name="conv0"
    )(inp)
    out = keras.layers.Dense(3, kernel_initializer=init(1), name="dense")(
        keras.layers.Flatten(name="flatten")(hidden)
    )
    x = np.random.default_rng(0).uniform(0, 1, (3, 20, 64)).astype("float32")
    results = {}
    for compiled in (False, True):
        calls.clear()
        converter = snnify.Converter(
            keras.Model(inp, out, name="net"),
            swap_activations={"relu": snnify.SpikingRectifiedLinear()},
            synapse=0.005,
        )
        # per channel, as convert_for_steps sets them
        converter.layers[hidden].scale = np.array([500, 1000, 2000, 1000], "float32")
        with converter.net:
            spikes = snnify.Probe(converter.layers[hidden])
            snnify.configure_settings(torch_compile=compiled)
        with snnify.Simulator(converter.net, progress_bar=False, seed=0) as sim:
            data = sim.predict(x)
        results[f"spikes_{compiled}"] = data[spikes]
        results[f"output_{compiled}"] = data[converter.outputs[out]]
        results[f"compiled_{compiled}"] = np.array(len(calls))
    np.savez(path, **results)


def many_networks(path):
    """Predict with more compiled steps than PyTorch keeps by default (8).

    PyTorch keeps the compiled versions of the step with its code; networks
    of other shapes (or neurons, probes) compile new versions.
    """
    import keras

    import snnify

    calls = compile_whole_steps()
    inp = keras.Input((4,), name="x")
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 4)).astype("float32")
    for units in range(2, 14):  # a new shape: a new compiled step
        out = keras.layers.Dense(units, activation="relu", name="dense")(inp)
        converter = snnify.Converter(
            keras.Model(inp, out),
            swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        )
        with converter.net:
            snnify.configure_settings(torch_compile=True)
        with snnify.Simulator(converter.net, progress_bar=False) as sim:
            sim.predict(x, n_steps=5)
    np.savez(path, compiled=np.array(len(calls)))


def run_workload(name, path):
    """Run ``name`` of this module on PyTorch in a subprocess; ``path``: its results.

    The engine's warning that ``torch.compile`` failed (and the step ran
    eagerly) fails the run.
    """
    script = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
try:
    import torch
except ImportError as error:
    print(error)
    sys.exit({SKIP_EXIT_CODE})
import test_torch_compile
test_torch_compile.{name}({str(path)!r})
"""
    env = {
        **os.environ,
        "KERAS_BACKEND": "torch",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
    }
    result = subprocess.run(
        [sys.executable, "-W", "error::UserWarning:snnify.backend", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode == SKIP_EXIT_CODE:
        pytest.skip(f"PyTorch is not importable: {result.stdout.strip()}")
    assert result.returncode == 0, result.stderr[-5000:]
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_compiled_step_predicts_as_eager(tmp_path):
    got = run_workload("workload", tmp_path / "results.npz")
    assert got["compiled_False"] == 0 and got["compiled_True"] > 0
    # measured: 6.6 % of the values are spikes
    assert (got["spikes_False"] > 0).mean() > 0.03, "too few spikes to compare"
    np.testing.assert_array_equal(got["spikes_True"], got["spikes_False"])
    # measured: identical; the compiled kernels may fuse the filter's products
    np.testing.assert_allclose(got["output_True"], got["output_False"], atol=1e-5)


def test_compiled_steps_outnumber_pytorchs_default_limit(tmp_path):
    got = run_workload("many_networks", tmp_path / "results.npz")
    assert got["compiled"] == 12
