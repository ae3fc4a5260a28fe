"""The configurations of the Keras-to-SNN tutorial that the demo runs.

Example:
    >>> [c.n_steps for c in TUTORIAL_CONFIGURATIONS]
    [10, 10, 50, 120, 120, 120, 30, 30, 30, 10, 10, 30]
    >>> describe(TUTORIAL_CONFIGURATIONS[8])
    'spiking neurons, 30 steps, synapse 0.01 s, scale 20'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# images whose accuracy the tutorial reports, and whose conv0 rates we summarise
N_FIRST = 400
# test images simulated at once (bounds the memory of the conv0 statistics)
CHUNK = 1000
# largest conv0 history recorded in the main run instead of a separate one
HISTORY_BYTES = 256 * 2**20
# default number of test images: enough for accuracies to a few tenths of a
# point while the simulations take no longer than the two trainings on a
# 2-core CPU (use --n-test 10000 for the whole test set)
DEFAULT_N_TEST = 1000
TARGET_RATE = 250.0  # Hz, the tutorial's target for the regularised network
RATE_LOSS_WEIGHT = 1e-3
TRAIN_BATCH = 200  # the tutorial's minibatch
# The regularised training is NengoDL's (its keras_to_snn_regularized_params
# were trained on the same 10,000 images): 10 epochs in minibatches of 200,
# 500 RMSprop updates. RMSprop moves each weight by about the learning rate per
# update whatever the minibatch, so the number of updates, not of images, sets
# how far the rate loss drives the weights (2,500 updates of 20 images give
# 4.5x larger conv0 biases and a mostly silent conv1).
REGULARIZED_EPOCHS = 10
# The rate loss raises the logits to a scale of hundreds (as in NengoDL's own
# weights), and with a constant learning rate the accuracy of the weights then
# swings by several points from one update to the next (83-96 % on 1,000 test
# images): the last update would decide the result. The regularised training
# saves the moving average of the weights over about its last 100 updates.
REGULARIZED_AVERAGE = 100


@dataclass(frozen=True)
class Configuration:
    """One way of running the trained network.

    Attributes:
        name: a short description.
        neurons: ``"rate"`` (``RectifiedLinear``) or ``"spiking"``
            (``SpikingRectifiedLinear``).
        n_steps: steps for which each image is presented.
        synapse: low-pass time constant in seconds after every neuron layer
            (None: no filter).
        scale: ``scale_firing_rates``.
        params: which trained parameters: ``"trained"`` (the plain training)
            or ``"regularized"`` (the firing-rate regularised training).
        note: what the configuration shows, for the HTML page.
    """

    name: str
    neurons: str
    n_steps: int
    synapse: float | None = None
    scale: float = 1.0
    params: str = "trained"
    note: str = ""

    @property
    def spiking(self) -> bool:
        return self.neurons == "spiking"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


TUTORIAL_CONFIGURATIONS = (
    Configuration(
        "rate neurons",
        "rate",
        10,
        note="The trained network with its ReLU rate neurons: the reference "
        "accuracy. Its output is the same at every step.",
    ),
    Configuration(
        "spiking, 10 steps",
        "spiking",
        10,
        note="ReLUs swapped for integrate-and-fire neurons, nothing else "
        "changed. Most neurons fire below 100 Hz, that is less than one spike "
        "per 10 steps of 1 ms, so almost nothing reaches the output in time.",
    ),
    Configuration(
        "spiking, 50 steps",
        "spiking",
        50,
        note="A longer presentation gives the neurons time to spike, but "
        "every layer adds delay, and reading raw spikes at the last step is "
        "noisy.",
    ),
    Configuration(
        "spiking, synapse 0.001",
        "spiking",
        120,
        synapse=0.001,
        note="A 1 ms low-pass filter after every layer: barely any smoothing.",
    ),
    Configuration(
        "spiking, synapse 0.005",
        "spiking",
        120,
        synapse=0.005,
        note="A 5 ms filter averages the spikes over a few steps.",
    ),
    Configuration(
        "spiking, synapse 0.01",
        "spiking",
        120,
        synapse=0.01,
        note="A 10 ms filter smooths more, and delays the output more.",
    ),
    Configuration(
        "spiking, scale 2",
        "spiking",
        30,
        synapse=0.01,
        scale=2,
        note="Firing rates doubled after training (current x2, output /2); "
        "30 steps are still too few.",
    ),
    Configuration(
        "spiking, scale 10",
        "spiking",
        30,
        synapse=0.01,
        scale=10,
        note="Ten times the firing rates: the spikes now carry the values well.",
    ),
    Configuration(
        "spiking, scale 20",
        "spiking",
        30,
        synapse=0.01,
        scale=20,
        note="Twenty times the firing rates: close to the rate network in 30 steps.",
    ),
    Configuration(
        "spiking, scale 1000",
        "spiking",
        10,
        scale=1000,
        note="So many spikes per step that the network behaves like the rate "
        "network, and nothing is left of the sparsity of spikes.",
    ),
    Configuration(
        "regularised, rate neurons",
        "rate",
        10,
        params="regularized",
        note="The network trained with a loss pulling the firing rates of both "
        f"convolutional layers towards {TARGET_RATE:.0f} Hz, with rate neurons.",
    ),
    Configuration(
        "regularised, spiking",
        "spiking",
        30,
        synapse=0.01,
        params="regularized",
        note="The regularised network with spiking neurons, no scaling: its "
        "neurons already fire fast enough.",
    ),
)


def describe(configuration: Configuration, n_steps: int | None = None) -> str:
    """``"spiking neurons, 30 steps, synapse 0.01 s, scale 20"``."""
    parts = [
        f"{configuration.neurons} neurons",
        f"{n_steps or configuration.n_steps} steps",
    ]
    if configuration.synapse is not None:
        parts.append(f"synapse {configuration.synapse:g} s")
    if configuration.scale != 1:
        parts.append(f"scale {configuration.scale:g}")
    if configuration.params != "trained":
        parts.append(f"{configuration.params} weights")
    return ", ".join(parts)
