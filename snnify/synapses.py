"""Synaptic filters applied to the output of spiking layers.

Example:
    >>> import numpy as np
    >>> synapse = Lowpass(0.01)
    >>> state = synapse.initial_state((2,))
    >>> y, state = synapse.step(np.array([1000.0, 0.0]), state, dt=0.001)
    >>> round(float(y[0]), 3)
    95.163
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from snnify.config import Configurable, serializable
from snnify.validation import is_positive_number


@serializable
class Lowpass(Configurable):
    """First-order low-pass filter ``y[t] = a * y[t-1] + (1 - a) * u[t]``.

    ``a = exp(-dt / tau)``; there is no delay (the current input already
    contributes to the current output) and the filter starts at 0.

    Args:
        tau: time constant in seconds (> 0).
    """

    def __init__(self, tau: float):
        if not is_positive_number(tau):
            raise ValueError(
                "A Lowpass time constant must be positive and finite, in seconds "
                f"(use synapse=None for no filtering). Received: tau={tau!r}"
            )
        self.tau = float(tau)

    def decay(self, dt: float) -> float:
        return math.exp(-dt / self.tau)

    def initial_state(self, shape) -> dict:
        return {"output": np.zeros(shape, dtype="float32")}

    def step(self, u, state: dict, dt: float):
        a = self.decay(dt)
        y = a * state["output"] + (1.0 - a) * u
        return y, {"output": y}

    def get_config(self) -> dict:
        return {"tau": self.tau}


def as_synapse(synapse) -> Lowpass | None:
    """Turn ``None``, a time constant or a ``Lowpass`` into a synapse."""
    if synapse is None or isinstance(synapse, Lowpass):
        return synapse
    if isinstance(synapse, numbers.Real) and not isinstance(synapse, bool):
        # 0 means "no filter"; a negative or NaN time constant is an error
        return None if synapse == 0 else Lowpass(synapse)
    raise TypeError(
        "A synapse must be None, a time constant in seconds or snnify.Lowpass. "
        f"Received: synapse={synapse!r}"
    )
