"""The package as a whole: what importing it loads, and configuration objects."""

import os
import subprocess
import sys

import keras
import pytest

import snnify

BLOCK_MATPLOTLIB = """
import sys
class Block:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("matplotlib is blocked")
sys.meta_path.insert(0, Block())
import keras, snnify
inp = keras.Input((3,))
converter = snnify.Converter(keras.Model(inp, keras.layers.Dense(2)(inp)))
assert converter.verify()
assert "snnify.demo" not in sys.modules, "importing snnify imported the demo"
print("OK")
"""


def test_snnify_works_without_matplotlib_and_without_the_demo():
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_MATPLOTLIB],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-2000:]


CONFIGURABLES = [
    snnify.RectifiedLinear(amplitude=0.5),
    snnify.SpikingRectifiedLinear(amplitude=2.0, initial_voltage=0.25),
    snnify.IntegrateAndFire(initial_voltage="uniform"),
    snnify.LIFRate(tau_rc=0.03, tau_ref=0.001),
    snnify.LIF(tau_rc=0.05, amplitude=0.01, initial_voltage=0.0),
    snnify.Lowpass(0.005),
    snnify.Settings(stateful=True, lif_smoothing=None, spike_aware_steps=4),
]


@pytest.mark.parametrize("obj", CONFIGURABLES, ids=lambda o: type(o).__name__)
def test_configuration_objects_serialise_the_keras_way(obj):
    config = obj.get_config()
    assert type(obj).from_config(config) == obj
    saved = keras.saving.serialize_keras_object(obj)
    assert saved["module"] is not None or saved["registered_name"].startswith("snnify")
    rebuilt = keras.saving.deserialize_keras_object(saved)
    assert type(rebuilt) is type(obj) and rebuilt == obj
    # every argument of __init__ is in the config
    other = type(obj).from_config({**config})
    assert other.get_config() == config
    assert repr(obj).startswith(f"{type(obj).__name__}(")


def test_equal_configurations_are_equal_objects():
    assert snnify.LIF(tau_rc=0.03) == snnify.LIF(tau_rc=0.03)
    assert snnify.LIF(tau_rc=0.03) != snnify.LIF(tau_rc=0.02)
    assert snnify.SpikingRectifiedLinear() != snnify.IntegrateAndFire()
    assert len({snnify.Lowpass(0.01), snnify.Lowpass(0.01)}) == 1


def test_converting_on_jax_prints_nothing_from_other_backends():
    """TensorFlow's start-up notices stay off the terminal when it is not in use."""
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    code = (
        "import keras, snnify\n"
        "inp = keras.Input((3,))\n"
        "snnify.Converter(keras.Model(inp, keras.layers.Dense(2)(inp))).verify()\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == "" and result.stdout == ""
