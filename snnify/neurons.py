"""Neuron types: a rate function, a spiking step function and an initial state.

Every neuron receives an input current ``J`` per neuron and per time step and
returns an output in Hz. Rate neurons return their firing rate; spiking neurons
return ``amplitude / dt`` for each spike emitted in the step (so the mean of a
spiking output over time estimates the rate).

``scale_firing_rates = s`` is applied by the network, not here: the current is
multiplied by ``s`` and the output divided by ``s``.

Example:
    >>> import numpy as np
    >>> neuron = SpikingRectifiedLinear(initial_voltage=0.0)
    >>> state = neuron.initial_state((3,), np.random.default_rng(0))
    >>> out, state = neuron.step(np.array([100.0, 0.0, -5.0], "float32"), state, dt=0.01)
    >>> [float(x) for x in out]
    [100.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from keras import ops

from snnify.config import Configurable, serializable
from snnify.validation import is_positive_number, positive_integer, positive_number


class NeuronType(Configurable):
    """Base class of all neuron types.

    Args:
        amplitude: scale of the output (a spike has area ``amplitude``).
    """

    spiking = False
    state_names: tuple[str, ...] = ()

    def __init__(self, amplitude: float = 1.0):
        self.amplitude = positive_number(amplitude, "amplitude", " (area of a spike)")

    def rate(self, J):
        """Firing rate (Hz) for a constant input current ``J``."""
        raise NotImplementedError

    def training_rate(self, J, lif_smoothing=None):
        """The differentiable rate used while training (default: ``rate``)."""
        return self.rate(J)

    def initial_state(self, shape, rng: np.random.Generator) -> dict:
        """Per-neuron initial state as float32 NumPy arrays of ``shape``."""
        return {}

    def step(self, J, state: dict, dt: float):
        """Advance one time step: ``(J, state, dt) -> (output, state)``.

        ``J`` and the arrays of ``state`` are tensors of the backend (as the
        simulator gives them) or float32 NumPy arrays (as :meth:`initial_state`
        returns them); the output and the new state are tensors.
        """
        return self.rate(J), state

    @property
    def held_current_closed_form(self) -> bool:
        """Whether :meth:`held_current_step` can replace ``step`` for a constant ``J``."""
        return False

    def held_current_step(self, J, state: dict, steps, dt: float):
        """``steps`` steps of a current ``J`` held constant from ``state``, at once.

        ``(J, state, steps, dt) -> (output of the last step, state after it)``,
        for the neuron types with :attr:`held_current_closed_form`.
        """
        raise NotImplementedError(f"{type(self).__name__} has no closed form")

    def get_config(self) -> dict:
        return {"amplitude": self.amplitude}


def _initial_voltage(initial_voltage, shape, rng):
    if isinstance(initial_voltage, str):
        return rng.uniform(0.0, 1.0, size=shape).astype("float32")
    if isinstance(initial_voltage, np.ndarray):  # one per channel (or neuron)
        return np.ascontiguousarray(np.broadcast_to(initial_voltage, shape))
    return np.full(shape, initial_voltage, dtype="float32")


def _check_initial_voltage(initial_voltage):
    if isinstance(initial_voltage, str):
        if initial_voltage != "uniform":
            raise ValueError(
                "initial_voltage must be 'uniform', a number (e.g. 0.5) or an "
                "array of numbers. "
                f"Received: initial_voltage={initial_voltage!r}"
            )
        return initial_voltage
    if np.ndim(initial_voltage) > 0:  # one per channel (or neuron)
        voltages = np.asarray(initial_voltage, dtype="float32")
        if not np.all((voltages >= -1) & (voltages < 1)):
            raise ValueError(
                "An array of initial voltages must hold numbers in [-1, 1) "
                "(in thresholds). Received: initial_voltage with values in "
                f"[{np.nanmin(voltages)}, {np.nanmax(voltages)}]"
                + (" and NaN" if np.isnan(voltages).any() else "")
            )
        return voltages
    if not (isinstance(initial_voltage, numbers.Real) and 0 <= initial_voltage < 1):
        raise ValueError(
            "initial_voltage must be 'uniform', a number in [0, 1) or an array "
            f"of numbers in [-1, 1). Received: initial_voltage={initial_voltage!r}"
        )
    return float(initial_voltage)


def _config_value(initial_voltage):
    """A number or array as a plain (hashable) value: nested tuples for arrays."""
    if not isinstance(initial_voltage, np.ndarray):
        return initial_voltage

    def nested(values):
        return tuple(nested(v) for v in values) if isinstance(values, list) else values

    return nested(initial_voltage.tolist())


def _negative_slope(negative_slope, min_voltage):
    """``negative_slope`` checked: a float, or a float32 array of slopes."""
    if np.ndim(negative_slope) > 0:  # one per channel (or neuron), as PReLU's
        try:
            slope = np.asarray(negative_slope, dtype="float32")
        except (TypeError, ValueError):
            slope = np.full(1, np.nan, "float32")
        valid = slope.size > 0 and bool(np.all(np.isfinite(slope)))
    else:
        slope = negative_slope
        valid = isinstance(slope, numbers.Real) and math.isfinite(slope)
    if not valid or isinstance(negative_slope, bool):
        raise ValueError(
            "negative_slope must be a finite number, or an array of finite "
            "numbers that broadcasts against the layer's shape: the slope of the "
            "leaky ReLU (or PReLU) the neurons compute (0: none, as ReLU). "
            f"Received: negative_slope={_describe(negative_slope)}"
        )
    slope = slope if np.ndim(slope) > 0 else float(slope)
    if np.any(slope) and min_voltage is not None:
        raise ValueError(
            "min_voltage bounds the voltage that the spikes of the negative part "
            "need: pass one of min_voltage and negative_slope. Received: "
            f"min_voltage={min_voltage!r}, negative_slope={_describe(slope)}"
        )
    return slope


def _slope_factors(slope):
    """``(|a|, sign(a), 1 / |a|)`` as the step multiplies by them (``1 / 0`` is 0).

    Arrays become backend tensors: a PyTorch tensor times a NumPy array can
    fall back to NumPy.
    """
    magnitude = np.abs(np.asarray(slope, "float64"))
    inverse = np.divide(
        1.0, magnitude, out=np.zeros(magnitude.shape), where=magnitude > 0
    )
    factors = (magnitude, np.where(np.asarray(slope) < 0, -1.0, 1.0), inverse)
    if np.ndim(slope) == 0:
        return tuple(float(f) for f in factors)
    return tuple(ops.convert_to_tensor(f.astype("float32")) for f in factors)


def _describe(value) -> str:
    """``value`` for a message: an array by its shape and range."""
    try:
        array = np.asarray(value, dtype="float64")
    except (TypeError, ValueError):
        return repr(value)
    if array.ndim == 0 or array.size == 0:
        return repr(value)
    return f"array of shape {array.shape} in [{array.min():g}, {array.max():g}]"


def _same_rule(neuron, cls) -> bool:
    """Whether ``neuron`` steps by ``cls``'s rule (a subclass may change it)."""
    methods = ("step", "_drive", "_spikes", "held_current_step")
    return all(getattr(type(neuron), m) is getattr(cls, m) for m in methods)


@serializable
class RectifiedLinear(NeuronType):
    """Rate neuron ``out = amplitude * max(J, 0)``.

    Example:
        >>> float(RectifiedLinear(amplitude=2).rate(np.float32(3.0)))
        6.0
    """

    def rate(self, J):
        return self.amplitude * ops.relu(J)


@serializable
class SpikingRectifiedLinear(RectifiedLinear):
    """Integrate-and-fire neuron with Nengo's rule (current rectified each step).

    ``v += max(J, 0) * dt; n = floor(v); out = amplitude * n / dt; v -= n``.
    Several spikes per step are possible; the reset is by subtraction.

    Args:
        amplitude: area of one spike.
        initial_voltage: ``"uniform"`` (seeded, uniform in [0, 1), as Nengo)
            or a constant such as 0.5.
    """

    spiking = True
    state_names = ("voltage",)

    def __init__(self, amplitude: float = 1.0, initial_voltage="uniform"):
        super().__init__(amplitude)
        self.initial_voltage = _check_initial_voltage(initial_voltage)

    def get_config(self):
        return {
            "amplitude": self.amplitude,
            "initial_voltage": _config_value(self.initial_voltage),
        }

    def initial_state(self, shape, rng):
        return {"voltage": _initial_voltage(self.initial_voltage, shape, rng)}

    def _drive(self, J):
        return ops.relu(J)

    def _spikes(self, voltage):
        return ops.maximum(ops.floor(voltage), 0.0)

    def step(self, J, state, dt):
        voltage = ops.add(state["voltage"], self._drive(J) * dt)
        n_spikes = self._spikes(voltage)
        output = (self.amplitude / dt) * n_spikes
        return output, {"voltage": voltage - n_spikes}

    @property
    def held_current_closed_form(self):
        return _same_rule(self, SpikingRectifiedLinear)

    def held_current_step(self, J, state, steps, dt):
        """``steps`` calls of :meth:`step` with the same ``J``, in closed form.

        From a voltage ``v < 1`` the neuron has fired ``c(t) = max(floor(v + t
        * drive(J) * dt), 0)`` spikes after ``t`` steps, so step ``t`` emits
        ``c(t) - c(t - 1)`` and leaves ``v + t * drive(J) * dt - c(t)``: no
        voltage is read or written in between. In float32 the spikes equal
        those of ``steps`` calls of :meth:`step` except where ``v + t *
        drive(J) * dt`` lies within rounding of an integer (one spike in about
        a million moves by one step; benchmarks/RESULTS.md).

        Example:
            >>> neuron = SpikingRectifiedLinear(initial_voltage=0.5)
            >>> state = neuron.initial_state((1,), np.random.default_rng(0))
            >>> out, state = neuron.held_current_step(np.float32([300.0]), state, 5, 0.001)
            >>> float(out[0] * 0.001), round(float(state["voltage"][0]), 6)
            (1.0, 0.0)
        """
        if not self.held_current_closed_form:  # the base class refuses
            return super().held_current_step(J, state, steps, dt)
        voltage = ops.convert_to_tensor(state["voltage"])
        charge = self._drive(J) * dt

        def fired(t):
            return ops.maximum(ops.floor(voltage + t * charge), 0.0)

        count = fired(steps)
        output = (self.amplitude / dt) * (count - fired(steps - 1))
        return output, {"voltage": voltage + steps * charge - count}


@serializable
class IntegrateAndFire(SpikingRectifiedLinear):
    """Integrate-and-fire neuron of the conversion literature (signed current).

    ``v += J * dt; n = min(max(floor(v), 0), max_spikes_per_step); out =
    amplitude * n / dt; v -= n``.
    Unlike :class:`SpikingRectifiedLinear`, negative input lowers the voltage
    (which may go below 0), so a spike train that alternates in sign is not
    over-counted. This makes it the right neuron for conversion at few steps.
    Its rate function is ReLU. The default initial voltage is 0.5, which halves
    the quantisation error of the first steps.

    Args:
        amplitude: area of one spike.
        initial_voltage: a constant such as 0.5, ``"uniform"``, or an array
            that broadcasts against the layer's shape (e.g. one value per
            channel, as :func:`snnify.convert_for_steps` chooses).
        min_voltage: optional lower bound (at most 0) on the voltage after the
            reset: ``v = max(v, min_voltage)``. ``-1`` is the default of
            Sinabs's ``IAFSqueeze`` (``min_v_mem = -threshold``), so a network
            exported to NIR computes the same spikes there (see docs/nir.md).
        max_spikes_per_step: optional limit on the spikes of one step (an
            integer >= 1); the voltage above it is kept for the next steps.
            ``1`` gives the neurons of neuromorphic chips, which saturate at
            one spike per step as QCFS saturates at its threshold. Without
            it (the default) a neuron fires as often as its voltage allows.
            The rate function is not limited (it does not know ``dt``).
        negative_slope: ``a``, one number or an array that broadcasts
            against the layer's shape (a PReLU's slopes, one per channel);
            where ``a != 0`` the neuron also fires for the negative part, one
            spike each time its voltage falls to ``-1 / |a|`` (the voltage
            then rises by ``1 / |a|``): a negative spike for ``a > 0`` (the
            signed neuron with imbalanced thresholds of Kim et al., 2020,
            "Spiking-YOLO"), a positive one for ``a < 0``. So its mean output
            is ``J`` for ``J >= 0`` and ``a J`` below, the leaky ReLU (PReLU)
            of its mean input, which is its rate function. The limit of
            spikes per step bounds these spikes too; ``min_voltage`` cannot
            be combined with it.

    Example:
        >>> neuron = IntegrateAndFire()
        >>> state = neuron.initial_state((1,), np.random.default_rng(0))
        >>> out, state = neuron.step(np.float32([-400.0]), state, dt=0.001)
        >>> round(float(state["voltage"][0]), 6)
        0.1
        >>> bounded = IntegrateAndFire(min_voltage=-1)
        >>> out, state = bounded.step(np.float32([-4000.0]), state, dt=0.001)
        >>> float(state["voltage"][0])
        -1.0
        >>> one = IntegrateAndFire(max_spikes_per_step=1)
        >>> state = one.initial_state((1,), np.random.default_rng(0))
        >>> out, state = one.step(np.float32([2000.0]), state, dt=0.001)
        >>> float(out[0] * 0.001), float(state["voltage"][0])  # 1 spike, 1.5 kept
        (1.0, 1.5)
        >>> leaky = IntegrateAndFire(initial_voltage=0.0, negative_slope=0.25)
        >>> state = leaky.initial_state((1,), np.random.default_rng(0))
        >>> for current in (-3000.0, -2000.0):  # negative spikes at -4, +4 each
        ...     out, state = leaky.step(np.float32([current]), state, dt=0.001)
        ...     print(float(out[0] * 0.001), round(float(state["voltage"][0]), 6))
        0.0 -3.0
        -1.0 -1.0
    """

    def __init__(
        self,
        amplitude: float = 1.0,
        initial_voltage=0.5,
        min_voltage=None,
        max_spikes_per_step=None,
        negative_slope=0.0,
    ):
        super().__init__(amplitude, initial_voltage)
        self.negative_slope = _negative_slope(negative_slope, min_voltage)
        self._leaky = bool(np.any(self.negative_slope))
        self._magnitude, self._sign, self._inverse = _slope_factors(self.negative_slope)
        self._slope = self._sign * self._magnitude  # the rate's, once
        if min_voltage is not None and not float(min_voltage) <= 0:
            raise ValueError(
                "min_voltage must be None or a number <= 0 (in thresholds). "
                f"Received: min_voltage={min_voltage!r}"
            )
        self.min_voltage = None if min_voltage is None else float(min_voltage)
        self.max_spikes_per_step = (
            None
            if max_spikes_per_step is None
            else positive_integer(
                max_spikes_per_step, "max_spikes_per_step", " or None (no limit)"
            )
        )

    def get_config(self):
        return {
            **super().get_config(),
            "min_voltage": self.min_voltage,
            "max_spikes_per_step": self.max_spikes_per_step,
            "negative_slope": _config_value(self.negative_slope),
        }

    def rate(self, J):
        if not self._leaky:
            return super().rate(J)
        return self.amplitude * (ops.relu(J) - self._slope * ops.relu(-J))

    @property
    def held_current_closed_form(self):
        bounded = self.min_voltage is not None or self.max_spikes_per_step is not None
        plain = not bounded and not self._leaky
        return _same_rule(self, IntegrateAndFire) and plain

    def _drive(self, J):
        return J

    def _spikes(self, voltage):
        n_spikes = super()._spikes(voltage)
        if self.max_spikes_per_step is None:
            return n_spikes
        return ops.minimum(n_spikes, float(self.max_spikes_per_step))

    def step(self, J, state, dt):
        output, state = super().step(J, state, dt)
        if self.min_voltage is not None:
            state = {"voltage": ops.maximum(state["voltage"], self.min_voltage)}
        if self._leaky:
            voltage = state["voltage"]  # below 0 only where no spike fired
            below = self._spikes(-voltage * self._magnitude)
            output = output - (self.amplitude / dt) * self._sign * below
            state = {"voltage": voltage + below * self._inverse}
        return output, state


@serializable
class SignedIntegrateAndFire(IntegrateAndFire):
    """Integrate-and-fire neuron that takes back spikes with negative spikes.

    With ``c`` the net spikes fired so far, ``t`` the steps so far and ``K =
    max_spikes_per_step``::

        v += J * dt
        n = min(max(floor(v), 0), K * t - c) - min(c, max(ceil(-v), 0))
        out = amplitude * n / dt;  v -= n;  c += n

    A negative spike (``n < 0``) fires when the voltage is below 0 and the
    neuron has spikes to take back. So after ``T`` steps the net count is
    exactly ``min(K * T, max(0, floor(v0 + sum(J) * dt)))`` whatever the order
    of the input: the mean output is the clip-floor-shift function (QCFS, with
    ``K * T`` levels) of the mean current. A feed-forward network of these
    neurons, decoded as the mean over ``T`` steps, computes its quantised ANN
    exactly: spikes that arrive unevenly (early positive input, late negative
    input) cause no error, which residual and batch-normalised networks
    suffer most from. Its rate function is ReLU.

    The price: negative spikes on the wires, which chips with positive spikes
    only, and NIR, cannot express.

    Args:
        amplitude: area of one spike.
        initial_voltage: as for :class:`IntegrateAndFire` (0.5: rounding).
        max_spikes_per_step: ``K``, the most net spikes per step on average:
            the output saturates at ``K * amplitude / dt``, as QCFS at its
            threshold when ``K = 1`` (use 1 to compute a QCFS network exactly,
            see :func:`snnify.convert_quantized`). None (the default): no
            bound, the mean output is ``floor`` and ``max(0, .)`` only.

    Example:
        >>> neuron = SignedIntegrateAndFire(max_spikes_per_step=1)
        >>> state = neuron.initial_state((1,), np.random.default_rng(0))
        >>> for current in (800.0, -700.0):  # in thresholds per second
        ...     out, state = neuron.step(np.float32([current]), state, dt=0.001)
        ...     print(float(out[0] * 0.001))
        1.0
        -1.0
        >>> float(state["spikes"][0]), round(float(state["voltage"][0]), 6)
        (0.0, 0.6)
    """

    def __init__(self, amplitude=1.0, initial_voltage=0.5, max_spikes_per_step=None):
        super().__init__(
            amplitude, initial_voltage, max_spikes_per_step=max_spikes_per_step
        )
        self.state_names = ("voltage", "spikes")
        if self.max_spikes_per_step is not None:  # the bound needs the steps so far
            self.state_names += ("steps",)

    def get_config(self):
        config = super().get_config()
        del config["min_voltage"], config["negative_slope"]
        return config

    @property
    def held_current_closed_form(self):
        return False  # negative spikes depend on the spikes fired before

    def initial_state(self, shape, rng):
        state = super().initial_state(shape, rng)  # the voltage
        for name in self.state_names[1:]:  # counts, from 0
            state[name] = np.zeros(shape, "float32")
        return state

    def step(self, J, state, dt):
        voltage = ops.add(state["voltage"], J * dt)
        fired = ops.convert_to_tensor(state["spikes"])
        positive = ops.maximum(ops.floor(voltage), 0.0)
        steps = {}
        if self.max_spikes_per_step is not None:
            steps["steps"] = ops.add(state["steps"], 1.0)
            bound = self.max_spikes_per_step * steps["steps"] - fired
            positive = ops.minimum(positive, bound)
        negative = ops.minimum(fired, ops.relu(ops.ceil(-voltage)))
        n_spikes = positive - negative
        state = {"voltage": voltage - n_spikes, "spikes": fired + n_spikes, **steps}
        return (self.amplitude / dt) * n_spikes, state


@serializable
class LIFRate(NeuronType):
    """Leaky integrate-and-fire rate neuron.

    ``rate = amplitude / (tau_ref + tau_rc * log1p(1 / (J - 1)))`` for ``J > 1``,
    else 0.

    Args:
        tau_rc: membrane time constant (s).
        tau_ref: refractory period (s).
        amplitude: scale of the output.
    """

    def __init__(self, tau_rc: float = 0.02, tau_ref: float = 0.002, amplitude=1.0):
        super().__init__(amplitude)
        if not (
            is_positive_number(tau_rc) and (tau_ref == 0 or is_positive_number(tau_ref))
        ):
            raise ValueError(
                "tau_rc must be > 0 and tau_ref >= 0, both finite (seconds). "
                f"Received: tau_rc={tau_rc}, tau_ref={tau_ref}"
            )
        self.tau_rc = float(tau_rc)
        self.tau_ref = float(tau_ref)

    def get_config(self):
        return {"tau_rc": self.tau_rc, "tau_ref": self.tau_ref, **super().get_config()}

    def _rate_of_excess(self, excess):
        """Rate for ``excess = J - 1 > 0`` (0 elsewhere), safe for gradients."""
        positive = excess > 0
        safe = ops.where(positive, excess, 1.0)
        rate = self.amplitude / (self.tau_ref + self.tau_rc * ops.log1p(1.0 / safe))
        return ops.where(positive, rate, 0.0)

    def rate(self, J):
        return self._rate_of_excess(J - 1.0)

    def training_rate(self, J, lif_smoothing=None):
        """SoftLIF when ``lif_smoothing`` (sigma) is set, else the exact rate."""
        if not lif_smoothing:
            return self.rate(J)
        sigma = lif_smoothing
        z = (J - 1.0) / sigma
        excess = sigma * ops.softplus(z)
        # log(excess) without underflow: softplus(z) ~ exp(z) for z << 0
        log_softplus = ops.where(
            z < -20.0, z, ops.log(ops.softplus(ops.maximum(z, -20.0)))
        )
        log_excess = math.log(sigma) + log_softplus
        return self.amplitude / (
            self.tau_ref + self.tau_rc * (ops.log1p(excess) - log_excess)
        )


@serializable
class LIF(LIFRate):
    """Spiking leaky integrate-and-fire neuron.

    The voltage integrates exactly for a current held constant over the step,
    ``v += (J - v) * (1 - exp(-t / tau_rc))`` with ``t`` the part of the step
    not spent refractory; a neuron whose voltage passes 1 emits one spike
    (``amplitude / dt``), resets to 0 and stays refractory for ``tau_ref`` from
    the exact time of the crossing. Voltages are clipped at 0.

    Args:
        tau_rc: membrane time constant (s).
        tau_ref: refractory period (s).
        amplitude: area of one spike.
        initial_voltage: ``"uniform"`` (seeded, as Nengo) or a constant.
    """

    spiking = True
    state_names = ("voltage", "refractory_time")

    def __init__(
        self, tau_rc=0.02, tau_ref=0.002, amplitude=1.0, initial_voltage="uniform"
    ):
        super().__init__(tau_rc, tau_ref, amplitude)
        self.initial_voltage = _check_initial_voltage(initial_voltage)

    def get_config(self):
        return {**super().get_config(), "initial_voltage": self.initial_voltage}

    def initial_state(self, shape, rng):
        return {
            "voltage": _initial_voltage(self.initial_voltage, shape, rng),
            "refractory_time": np.zeros(shape, dtype="float32"),
        }

    def step(self, J, state, dt):
        refractory_time = ops.subtract(state["refractory_time"], dt)
        active_time = ops.clip(dt - refractory_time, 0.0, dt)
        voltage = ops.convert_to_tensor(state["voltage"])
        voltage = voltage + (voltage - J) * ops.expm1(-active_time / self.tau_rc)
        spiked = voltage > 1.0
        output = ops.where(spiked, self.amplitude / dt, 0.0)
        # time from the threshold crossing to the end of the step
        overshoot = ops.where(
            spiked, (voltage - 1.0) / ops.where(spiked, J - 1.0, 1.0), 0.0
        )
        spike_time = dt + self.tau_rc * ops.log1p(-overshoot)
        voltage = ops.where(spiked, 0.0, ops.maximum(voltage, 0.0))
        refractory_time = ops.where(spiked, self.tau_ref + spike_time, refractory_time)
        return output, {"voltage": voltage, "refractory_time": refractory_time}


SpikingReLU = SpikingRectifiedLinear
ReLU = RectifiedLinear
IF = IntegrateAndFire
