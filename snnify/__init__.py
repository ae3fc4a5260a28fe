"""snnify: convert Keras 3 models into spiking neural networks.

Example:
    >>> import keras, snnify
    >>> inp = keras.Input((784,))
    >>> out = keras.layers.Dense(10, activation="relu")(inp)
    >>> converter = snnify.Converter(
    ...     keras.Model(inp, out),
    ...     swap_activations={keras.activations.relu: snnify.SpikingRectifiedLinear()},
    ...     scale_firing_rates=20,
    ...     synapse=0.01,
    ... )
    >>> converter.outputs[out].size_in
    10
"""

import os
import sys

# JAX is snnify's default backend; set KERAS_BACKEND to choose another
if "KERAS_BACKEND" not in os.environ and "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "jax"

from snnify.calibrate import CalibrationReport, calibrate, convert_for_steps
from snnify.converter import Converter
from snnify.decoding import decode
from snnify.export import (
    SavedNetwork,
    export_nir,
    import_nir,
    load_network,
    save_network,
)
from snnify.graph import Probe
from snnify.layers import QCFS
from snnify.network import Network, Settings, configure_settings
from snnify.neurons import (
    IF,
    LIF,
    IntegrateAndFire,
    LIFRate,
    NeuronType,
    RectifiedLinear,
    ReLU,
    SignedIntegrateAndFire,
    SpikingRectifiedLinear,
    SpikingReLU,
)
from snnify.quantize import convert_quantized, fine_tune, quantize_model
from snnify.simulator import Simulator
from snnify.stats import EnergyModel, NetworkStats, measure
from snnify.sweep import SweepResult, sweep
from snnify.synapses import Lowpass
from snnify.training import regularize_firing_rates

__version__ = "0.1.0"

__all__ = [
    "CalibrationReport",
    "EnergyModel",
    "NetworkStats",
    "SweepResult",
    "measure",
    "QCFS",
    "calibrate",
    "convert_for_steps",
    "convert_quantized",
    "decode",
    "export_nir",
    "import_nir",
    "load_network",
    "save_network",
    "SavedNetwork",
    "fine_tune",
    "quantize_model",
    "sweep",
    "Converter",
    "IF",
    "IntegrateAndFire",
    "LIF",
    "LIFRate",
    "Lowpass",
    "Network",
    "NeuronType",
    "Probe",
    "RectifiedLinear",
    "SignedIntegrateAndFire",
    "ReLU",
    "Simulator",
    "SpikingRectifiedLinear",
    "SpikingReLU",
    "Settings",
    "configure_settings",
    "regularize_firing_rates",
]
