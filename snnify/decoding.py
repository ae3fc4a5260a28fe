"""Decoding: one value per example and output from a probe's output over time.

Example:
    >>> import numpy as np
    >>> out = np.array([[[0.0, 1000.0], [1000.0, 0.0], [0.0, 1000.0]]])
    >>> decode(out, "mean").tolist()
    [[333.3333333333333, 666.6666666666666]]
"""

from __future__ import annotations

import numpy as np

from snnify.engine import ProbeStats
from snnify.synapses import as_synapse

DECODINGS = ("mean", "last", "count")


def decode(output, method: str = "mean", synapse=None, dt: float = 0.001):
    """One value per example and output from a probe's output over time.

    Args:
        output: ``(batch, n_steps, size)`` as ``Simulator.predict`` returns it
            (a :class:`~snnify.simulator.ProbeStats` works for ``"mean"`` and
            ``"count"``).
        method: ``"mean"`` (mean over the steps: the rate estimate),
            ``"last"`` (the last step, after filtering with ``synapse`` if
            given, as in the NengoDL tutorial) or ``"count"`` (sum over the
            steps times ``dt``: the number of spikes of a spiking probe with
            amplitude 1 and scale 1).
        synapse: time constant (s) or :class:`~snnify.Lowpass` applied over
            time before ``"last"`` (ignored by the linear ``"mean"`` and
            ``"count"``, which a filter would only delay).
        dt: the simulator's time step (s).

    Returns:
        ``(batch, size)``.

    Example:
        >>> out = np.array([[[0.0, 1000.0], [1000.0, 0.0], [0.0, 1000.0]]])
        >>> decode(out, "count").tolist()
        [[1.0, 2.0]]
        >>> decode(out, "last").tolist()
        [[0.0, 1000.0]]
    """
    if method not in DECODINGS:
        raise ValueError(f"method must be one of {DECODINGS}. Received: {method!r}")
    if isinstance(output, ProbeStats):
        if method == "last":
            raise ValueError(
                "A probe with keep='stats' has no last step; use keep='last' or "
                "'all', or decode with method='mean' or 'count'."
            )
        return output.mean if method == "mean" else output.sum * dt
    output = np.asarray(output)
    if output.ndim != 3:
        raise ValueError(
            "decode expects (batch, n_steps, size) as predict returns. Received: "
            f"shape={output.shape}"
        )
    if method == "mean":
        return output.mean(axis=1)
    if method == "count":
        return output.sum(axis=1) * dt
    synapse = as_synapse(synapse)
    if synapse is None:
        return output[:, -1]
    a = synapse.decay(dt)
    weights = (1 - a) * a ** np.arange(output.shape[1] - 1, -1, -1)
    return np.einsum("btn,t->bn", output, weights.astype(output.dtype))
