"""Networks for the NIR tests, built so that every reader computes exactly.

Weights, biases and inputs are small multiples of powers of two, firing-rate
scales are powers of two and ``dt = 2**-10``: every sum the simulators form is
exact in float32, so two correct implementations of the same graph agree spike
for spike, and any difference is a difference of meaning, not of rounding.
"""

from __future__ import annotations

import keras
import numpy as np

import snnify

DT = 2.0**-10


def dyadic(rng, shape, low, high, denominator):
    return (rng.integers(low, high + 1, size=shape) / denominator).astype("float32")


def set_dyadic_weights(model, seed=2):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights(
            [dyadic(rng, w.shape, -6, 8, 64) for w in layer.get_weights()]
        )


def residual_model(pool: bool = True, residual: bool = True) -> keras.Model:
    """Conv (same padding) -> [avg pool] -> grouped conv (+ skip) -> Flatten -> Dense."""
    inp = keras.Input((8, 8, 2), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv0")(inp)
    if pool:
        x = keras.layers.AveragePooling2D(2, name="pool")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", groups=2, name="conv1")(x)
    if residual:
        y = keras.layers.Add(name="add")([y, x])
    y = keras.layers.Activation("relu", name="act")(y)
    flat = keras.layers.Flatten(name="flatten")(y)
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(flat)
    out = keras.layers.Dense(3, name="out")(hidden)
    return keras.Model(inp, out)


def dyadic_converter(model, per_channel: bool = False, initial_voltage=0.5):
    """``model`` with dyadic weights, converted with power-of-two scales."""
    set_dyadic_weights(model)
    scales = {model.get_layer(name): 2.0**9 for name in ("conv0", "act", "hidden")}
    if per_channel:
        scales[model.get_layer("conv0")] = np.float32([2**8, 2**9, 2**10, 2**9])
    neuron = snnify.IntegrateAndFire(initial_voltage=initial_voltage)
    return snnify.Converter(
        model, swap_activations={"relu": neuron}, scale_firing_rates=scales
    )


def dyadic_inputs(n=5, seed=1):
    return dyadic(np.random.default_rng(seed), (n, 8, 8, 2), 0, 16, 16)


def dense_converter(neuron, seed=1):
    """Two spiking Dense layers whose second layer's voltages fall far below 0."""
    import keras

    inp = keras.Input((12,), name="features")
    h1 = keras.layers.Dense(10, activation="relu", name="h1")(inp)
    h2 = keras.layers.Dense(4, activation="relu", name="h2")(h1)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(h2))
    rng = np.random.default_rng(seed)
    ranges = {"h1": ((-8, 12, 32), (-8, 8, 16)), "h2": ((-24, 16, 16), (-8, 4, 16))}
    ranges["out"] = ranges["h1"]
    for layer in model.layers[1:]:
        kernel, bias = ranges[layer.name]
        layer.set_weights(
            [dyadic(rng, (12 if layer.name == "h1" else 10 if layer.name == "h2" else 4,
                          layer.units), *kernel),
             dyadic(rng, (layer.units,), *bias)]
        )  # fmt: skip
    return snnify.Converter(
        model, swap_activations={"relu": neuron}, scale_firing_rates=2.0**10
    )


def dense_inputs(n=5, seed=1):
    return dyadic(np.random.default_rng(seed), (n, 12), 0, 4, 4)
