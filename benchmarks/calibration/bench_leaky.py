"""Leaky ReLU networks converted for a step budget (docs/low-latency.md, "Leaky ReLU").

Four networks with leaky ReLUs that snnify was not developed on
(networks.py: the tutorial's network with ``activation="leaky_relu"``,
Keras's slope 0.2, trained with Adam and by the tutorial's recipe; task B's
deeper network with ``LeakyReLU(0.1)`` layers; the digits CNN with
``activation="leaky_relu"``), and three with ``PReLU`` layers (one trained
slope per channel: the tutorial's network by its recipe, with the slopes
starting at Keras's 0 and at PyTorch's 0.25, and task B's), each
converted five ways (the PReLU networks: the first three) and run on its
whole test set at 2, 4, 8 and 16 steps:

- ``convert_for_steps``: the one call (each leaky ReLU becomes
  ``IntegrateAndFire(negative_slope=a)`` neurons with its own slope ``a``,
  a PReLU its slopes, whose negative spikes give the negative part);
- ``convert_for_steps, spikes_per_step=4``: thresholds chosen for four
  spikes per step instead of two, which resolves the activations twice as
  finely for about twice the spikes;
- ``search, negative part dropped``: the same threshold search with
  ``IntegrateAndFire()`` neurons, which fire for the positive part only
  (what a swap of the leaky ReLUs for rectified neurons computes);
- ``auto, negative spikes``: ``Converter(swap_activations={"leaky_relu":
  IntegrateAndFire(negative_slope=a)}, scale_firing_rates="auto")``;
- ``auto, negative part dropped``: the same with ``IntegrateAndFire()``.

It also prints the share of the leaky ReLUs' outputs that are negative on
the calibration images. Results go to ``results/leaky-NAME.json``.

    KERAS_BACKEND=jax python networks.py tutorial_leaky tutorial_leaky_rmsprop taskB_leaky digits_leaky
    KERAS_BACKEND=jax python networks.py tutorial_prelu_rmsprop tutorial_prelu25_rmsprop taskB_prelu
    KERAS_BACKEND=jax python bench_leaky.py [NAME ...] [--methods LABEL ...]
    KERAS_BACKEND=jax python bench_leaky.py tutorial_prelu_rmsprop tutorial_prelu25_rmsprop taskB_prelu \
        --methods convert_for_steps "convert_for_steps, spikes_per_step=4" \
        "search, negative part dropped"
"""

from __future__ import annotations

import warnings

import bench_relu6
import keras
import numpy as np

import snnify
from snnify.keras_graph import negative_slope
from snnify.threshold_search import search_thresholds

NAMES = (
    "tutorial_leaky", "tutorial_leaky_rmsprop", "taskB_leaky", "digits_leaky",
    "tutorial_prelu_rmsprop", "tutorial_prelu25_rmsprop", "taskB_prelu",
)  # fmt: skip


def _leaky(model) -> list:
    """``(layer, slope)`` of each layer whose output is a leaky ReLU's (or a
    PReLU's: its slopes)."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.PReLU):
            found.append((layer, keras.ops.convert_to_numpy(layer.alpha)))
        elif isinstance(layer, keras.layers.LeakyReLU):
            found.append((layer, float(layer.negative_slope)))
        elif negative_slope(getattr(layer, "activation", None)) is not None:
            found.append((layer, negative_slope(layer.activation)))
    return found


def negative_share(model, x) -> float:
    """The share of the leaky ReLUs' outputs that are negative on ``x``."""
    outputs = [layer.output for layer, _ in _leaky(model)]
    values = keras.Model(model.inputs, outputs).predict(x, verbose=0)
    values = values if isinstance(values, list) else [values]
    return sum(int(np.sum(v < 0)) for v in values) / sum(v.size for v in values)


def _slope(model) -> float:
    """The network's one slope (every leaky ReLU of a network has the same)."""
    (slope,) = {round(slope, 6) for _, slope in _leaky(model)}
    return slope


def _auto(model, x_cal, neuron):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converter = snnify.Converter(
            model,
            swap_activations={"leaky_relu": neuron},
            scale_firing_rates="auto",
            calibration_data=x_cal,
        )
    return [(bench_relu6.STEPS, converter)]


def _dropped_search(model, x_cal):
    """``convert_for_steps``'s search, with neurons without negative spikes."""
    prelu = any(isinstance(layer, keras.layers.PReLU) for layer, _ in _leaky(model))
    key = "prelu" if prelu else "leaky_relu"
    runs = []
    for t in bench_relu6.STEPS:
        converter = snnify.Converter(
            model, swap_activations={key: snnify.IntegrateAndFire()}
        )
        snnify.calibrate(converter, x_cal, n_steps=t).apply(converter)
        search_thresholds(converter, x_cal, t, spikes_per_step=2)
        runs.append(((t,), converter))
    return runs


METHODS = {
    "convert_for_steps": bench_relu6.METHODS["convert_for_steps"],
    "convert_for_steps, spikes_per_step=4": lambda model, x_cal: bench_relu6.METHODS[
        "convert_for_steps"
    ](model, x_cal, spikes_per_step=4),
    "search, negative part dropped": _dropped_search,
    "auto, negative spikes": lambda model, x_cal: _auto(
        model, x_cal, snnify.IntegrateAndFire(negative_slope=_slope(model))
    ),
    "auto, negative part dropped": lambda model, x_cal: _auto(
        model, x_cal, snnify.IntegrateAndFire()
    ),
}


if __name__ == "__main__":
    bench_relu6.main(
        __doc__, NAMES, METHODS, "leaky", negative_share, "negative outputs"
    )
