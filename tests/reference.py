"""Plain NumPy references of the neuron and synapse equations in DESIGN.md.

Everything here is written from the equations alone (float64, one neuron at a
time where that is clearer) and never calls snnify, so that the tests compare
snnify with an independent model of what it should compute.

Each spiking reference step has the signature ``(J, state, dt) -> (output,
state)`` with NumPy arrays; its state is its own (it need not match snnify's
representation), and ``voltage`` is the voltage at the end of the step.
"""

from __future__ import annotations

import math

import numpy as np

# --- rate functions -----------------------------------------------------------


def rectified_linear(J, amplitude=1.0):
    """``amplitude * max(J, 0)``."""
    return amplitude * np.maximum(np.asarray(J, dtype=np.float64), 0.0)


def lif_rate(J, tau_rc=0.02, tau_ref=0.002, amplitude=1.0):
    """``amplitude / (tau_ref + tau_rc * log(1 + 1 / (J - 1)))`` for J > 1, else 0."""
    J = np.asarray(J, dtype=np.float64)
    out = np.zeros_like(J)
    for i, j in np.ndenumerate(J):
        if j > 1.0:
            out[i] = amplitude / (tau_ref + tau_rc * math.log(1.0 + 1.0 / (j - 1.0)))
    return out


def softplus(x):
    """``log(1 + exp(x))`` without overflow."""
    x = np.asarray(x, dtype=np.float64)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def soft_lif_rate(J, sigma, tau_rc=0.02, tau_ref=0.002, amplitude=1.0):
    """SoftLIF: the LIF rate with ``J - 1`` replaced by ``sigma * softplus((J - 1) / sigma)``."""
    J = np.asarray(J, dtype=np.float64)
    excess = sigma * softplus((J - 1.0) / sigma)
    out = np.zeros_like(J)
    for i, p in np.ndenumerate(excess):
        if p > 0.0:
            out[i] = amplitude / (tau_ref + tau_rc * math.log(1.0 + 1.0 / p))
    return out


# --- spiking neurons ----------------------------------------------------------


def spiking_rectified_linear_step(J, state, dt, amplitude=1.0):
    """Nengo's rule: ``v += max(J, 0) dt; n = floor(v); out = amplitude n / dt; v -= n``."""
    v = state["voltage"] + np.maximum(np.asarray(J, np.float64), 0.0) * dt
    n = np.floor(v)
    return amplitude * n / dt, {"voltage": v - n}


def integrate_and_fire_step(J, state, dt, amplitude=1.0, max_spikes=np.inf):
    """Signed current: ``v += J dt; n = min(max(floor(v), 0), max_spikes);
    out = amplitude n / dt; v -= n``."""
    v = state["voltage"] + np.asarray(J, np.float64) * dt
    n = np.minimum(np.maximum(np.floor(v), 0.0), max_spikes)
    return amplitude * n / dt, {"voltage": v - n}


def leaky_integrate_and_fire_step(
    J, state, dt, negative_slope, amplitude=1.0, max_spikes=np.inf
):
    """Neuron by neuron: integrate; fire while ``v >= 1`` (at most
    ``max_spikes`` times), lowering ``v`` by 1; else fire a negative spike
    while ``v <= -1 / negative_slope`` (as often), raising ``v`` by that much.
    ``negative_slope``: one value, or one per neuron (0: none); a negative
    slope fires positive spikes there instead."""
    v = np.array(state["voltage"], np.float64) + np.asarray(J, np.float64) * dt
    n = np.zeros_like(v)
    slopes = np.broadcast_to(np.asarray(negative_slope, np.float64), v.shape)
    for i in np.ndindex(v.shape):
        while v[i] >= 1 and n[i] < max_spikes:
            v[i] -= 1
            n[i] += 1
        slope, below = abs(slopes[i]), 0
        while slope > 0 and v[i] <= -1 / slope and below < max_spikes:
            v[i] += 1 / slope
            below += 1
        n[i] -= np.sign(slopes[i]) * below
    return amplitude * n / dt, {"voltage": v}


def signed_integrate_and_fire_step(J, state, dt, amplitude=1.0, max_spikes=np.inf):
    """Neuron by neuron: integrate; fire while ``v >= 1`` and fewer than
    ``max_spikes`` times the steps so far have been fired (net); take a spike
    back (a negative spike) while ``v < 0`` and the net count is positive."""
    v = np.array(state["voltage"], np.float64) + np.asarray(J, np.float64) * dt
    fired = np.array(state["spikes"], np.float64)
    steps = np.asarray(state["steps"], np.float64) + 1
    n = np.zeros_like(v)
    for i in np.ndindex(v.shape):
        while v[i] >= 1 and fired[i] + n[i] + 1 <= max_spikes * steps[i]:
            v[i] -= 1
            n[i] += 1
        while v[i] < 0 and fired[i] + n[i] > 0:
            v[i] += 1
            n[i] -= 1
    state = {"voltage": v, "spikes": fired + n, "steps": steps}
    return amplitude * n / dt, state


def lif_step(J, state, dt, tau_rc=0.02, tau_ref=0.002, amplitude=1.0):
    """Spiking LIF, neuron by neuron.

    State: ``voltage`` and ``refractory`` (the refractory time still to serve
    at the start of the next step). Within a step a neuron first serves what is
    left of its refractory period, then integrates ``dv/dt = (J - v) / tau_rc``
    exactly for the rest of the step; if ``v`` passes 1 it emits one spike
    (``amplitude / dt``) at the exact crossing time, resets to 0 and is
    refractory for ``tau_ref`` from that time. ``v`` never goes below 0.
    """
    J = np.broadcast_to(np.asarray(J, np.float64), np.shape(state["voltage"]))
    v_out = np.array(state["voltage"], dtype=np.float64)
    ref_out = np.array(state["refractory"], dtype=np.float64)
    out = np.zeros_like(v_out)
    for i in np.ndindex(v_out.shape):
        j, v, ref = J[i], v_out[i], ref_out[i]
        active = min(max(dt - ref, 0.0), dt)  # time of the step not refractory
        v_end = j + (v - j) * math.exp(-active / tau_rc)
        if v_end > 1.0:
            # v(t) = j + (v - j) exp(-t / tau_rc) reaches 1 at t_cross after the
            # start of the active part (j > 1 here, since v <= 1 < v_end)
            t_cross = tau_rc * math.log((j - v) / (j - 1.0))
            time_after_spike = active - t_cross  # until the end of the step
            out[i] = amplitude / dt
            v_out[i] = 0.0
            ref_out[i] = tau_ref - time_after_spike
        else:
            out[i] = 0.0
            v_out[i] = max(v_end, 0.0)
            ref_out[i] = max(ref - dt, 0.0)
    return out, {"voltage": v_out, "refractory": ref_out}


def lif_initial_state(voltage):
    voltage = np.asarray(voltage, np.float64)
    return {"voltage": voltage, "refractory": np.zeros_like(voltage)}


def run_neuron(step, currents, state, dt, **params):
    """Run ``step`` over ``currents`` of shape ``(n_steps, ...)``.

    Returns ``(outputs, voltages)``, both ``(n_steps, ...)``.
    """
    outputs, voltages = [], []
    for J in currents:
        out, state = step(J, state, dt, **params)
        outputs.append(out)
        voltages.append(state["voltage"])
    return np.array(outputs), np.array(voltages)


# --- synapses -----------------------------------------------------------------


def lowpass(u, tau, dt):
    """Filter ``u`` of shape ``(n_steps, ...)`` along axis 0.

    ``y[t] = a y[t-1] + (1 - a) u[t]``, ``a = exp(-dt / tau)``, ``y[-1] = 0``.
    """
    u = np.asarray(u, np.float64)
    a = math.exp(-dt / tau)
    y = np.zeros_like(u)
    previous = np.zeros(u.shape[1:])
    for t in range(u.shape[0]):
        previous = a * previous + (1.0 - a) * u[t]
        y[t] = previous
    return y


# --- whole networks -------------------------------------------------------------

NEURON_STEPS = {
    "spiking_rectified_linear": spiking_rectified_linear_step,
    "integrate_and_fire": integrate_and_fire_step,
    "lif": lif_step,
}


def simulate_dense_network(
    x, layers, n_steps, dt=0.001, initial_voltage=0.5, threshold_margin=False
):
    """Simulate a chain of Dense layers step by step with the input held constant.

    Args:
        x: input ``(batch, n_in)``, the same at every step.
        layers: list of dicts with ``kernel`` ``(n_in, n_out)``, ``bias``, and
            for a layer with neurons ``neuron`` (a key of ``NEURON_STEPS``),
            ``params`` (dict of neuron parameters, e.g. ``amplitude``), ``scale``
            (``scale_firing_rates``) and ``tau`` (Lowpass time constant or None).
            A layer without ``neuron`` is linear.
        n_steps: number of steps.
        initial_voltage: the constant initial voltage of every neuron.
        threshold_margin: also return the smallest distance of any voltage to
            a spiking threshold (an integer for the rectified neurons, 1 for
            LIF); a small one means float32 rounding could change a spike.

    Returns:
        ``{"output": (batch, n_steps, n_out of the last layer), "spikes": [per
        neuron layer (batch, n_steps, n_out)]}``: the output after the last
        layer (filtered if that layer has a synapse) and the unfiltered
        (rescaled) outputs of each neuron layer; with ``threshold_margin``,
        ``(result, margin)``.
    """
    x = np.asarray(x, np.float64)
    batch = x.shape[0]
    states = []
    for layer in layers:
        shape = (batch, layer["kernel"].shape[1])
        voltage = np.full(shape, float(initial_voltage))
        if layer.get("neuron") == "lif":
            states.append({"neuron": lif_initial_state(voltage)})
        elif layer.get("neuron"):
            states.append({"neuron": {"voltage": voltage}})
        else:
            states.append({})
        if layer.get("tau"):
            states[-1]["synapse"] = np.zeros(shape)
    spikes = [[] for layer in layers if layer.get("neuron")]
    outputs = []
    margin = np.inf
    for _ in range(n_steps):
        h = x
        k = 0
        for layer, state in zip(layers, states):
            h = h @ np.asarray(layer["kernel"], np.float64) + layer["bias"]
            if not layer.get("neuron"):
                continue
            scale = layer.get("scale", 1.0)
            step = NEURON_STEPS[layer["neuron"]]
            params = layer.get("params", {})
            J = h * scale
            if threshold_margin:
                margin = min(margin, _margin(layer["neuron"], J, state, dt, params))
            out, state["neuron"] = step(J, state["neuron"], dt, **params)
            h = out / scale
            spikes[k].append(h)
            k += 1
            if layer.get("tau"):
                a = math.exp(-dt / layer["tau"])
                state["synapse"] = a * state["synapse"] + (1.0 - a) * h
                h = state["synapse"]
        outputs.append(h)
    result = {
        "output": np.stack(outputs, axis=1),
        "spikes": [np.stack(s, axis=1) for s in spikes],
    }
    return (result, margin) if threshold_margin else result


def _margin(neuron, J, state, dt, params):
    """Distance of this step's voltage from the nearest spiking threshold."""
    if neuron == "lif":
        tau_rc = params.get("tau_rc", 0.02)
        v = state["neuron"]["voltage"]
        active = np.clip(dt - state["neuron"]["refractory"], 0.0, dt)
        v_end = J + (v - J) * np.exp(-active / tau_rc)
        # refractory neurons (active == 0) cannot spike, whatever their voltage
        return float(np.min(np.where(active > 0, np.abs(v_end - 1.0), np.inf)))
    drive = np.maximum(J, 0.0) if neuron == "spiking_rectified_linear" else J
    v = state["neuron"]["voltage"] + drive * dt
    return float(np.min(np.abs(v - np.round(v))))


# --- Keras helpers ----------------------------------------------------------------


class ZeroInitLayers:
    """``keras.layers``, but random weight initializers default to zeros.

    The tests set every weight themselves. Building a layer with a random
    initializer compiles a random-number program for each new weight shape on
    JAX, which takes seconds on a busy CPU; zeros do not.

    Example:
        >>> layers = ZeroInitLayers()
        >>> dense = layers.Dense(3)  # kernel_initializer="zeros"
    """

    def __getattr__(self, name):
        import inspect

        import keras

        cls = getattr(keras.layers, name)
        if not isinstance(cls, type):
            return cls
        zeros = {
            p.name: "zeros"
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name.endswith("_initializer") and p.default not in ("zeros", "ones")
        }

        def make(*args, **kwargs):
            return cls(*args, **{**zeros, **kwargs})

        return make
