"""``swap_activations``: what each activation of a model becomes.

As in NengoDL, keys and values are Keras activations or neuron types, and the
swap is applied twice around the default map (ReLU becomes
:class:`~snnify.RectifiedLinear` neurons):

1. a key matching the layer's activation (by identity, or by name:
   ``"relu"``, ``keras.activations.relu``, a backend's relu...) replaces it
   by its value, an activation or a neuron type;
2. an activation named ``"relu"`` becomes ``RectifiedLinear()``, ``"linear"``
   nothing, any other stays an exact function;
3. a neuron type key equal to the neurons so far replaces them by its value.

So ``{"relu": snnify.SpikingRectifiedLinear()}``,
``{snnify.RectifiedLinear(): snnify.SpikingRectifiedLinear()}`` and
``{"sigmoid": "relu"}`` (then rate neurons) all work, and a swap can be
swapped again (``{"relu": snnify.LIFRate(), snnify.LIFRate(): snnify.LIF()}``).

Example:
    >>> import keras, snnify
    >>> swaps = ActivationSwaps(
    ...     {"sigmoid": "relu", snnify.RectifiedLinear(): snnify.LIF()}
    ... )
    >>> swaps.resolve(keras.activations.sigmoid)
    LIF(tau_rc=0.02, tau_ref=0.002, amplitude=1.0, initial_voltage='uniform')
    >>> swaps.resolve(keras.activations.tanh).__name__
    'tanh'
    >>> swaps.unused_keys()
    []
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from snnify.keras_graph import activation_name
from snnify.neurons import NeuronType, RectifiedLinear


def describe(key) -> str:
    """A readable name of a key or value of ``swap_activations``."""
    if isinstance(key, str | NeuronType):
        return repr(key)
    name = getattr(key, "__name__", None)
    return repr(name) if name else repr(key)


def _as_swap_value(key, value):
    """``value`` as a neuron type or an activation function (strings resolved)."""
    if isinstance(value, NeuronType) or (
        callable(value) and not isinstance(value, type)
    ):
        return value
    if isinstance(value, str):
        try:
            return keras.activations.get(value)
        except ValueError:
            pass
    raise TypeError(
        "swap_activations values must be neuron types such as "
        "snnify.SpikingRectifiedLinear() or Keras activations such as "
        "keras.activations.relu (or their names). Received: "
        f"{describe(key)}: {value!r}"
    )


def _canonical_name(key) -> str | None:
    """The activation name a key matches (``"swish"`` is Keras's ``"silu"``)."""
    if isinstance(key, str):
        try:
            return activation_name(keras.activations.get(key))
        except ValueError:
            return activation_name(key)
    return activation_name(key)


class ActivationSwaps(Mapping):
    """The ``swap_activations`` of a converter, and which keys it used.

    A read-only mapping of the keys and values as given (strings among the
    values resolved to Keras activations).
    """

    def __init__(self, swaps=None):
        if swaps is not None and not isinstance(swaps, Mapping):
            raise TypeError(
                "swap_activations must be a dict {activation: neuron type}, e.g. "
                '{"relu": snnify.SpikingRectifiedLinear()}. '
                f"Received: swap_activations={swaps!r}"
            )
        self._swaps = {k: _as_swap_value(k, v) for k, v in dict(swaps or {}).items()}
        self._used: set[int] = set()

    def __getitem__(self, key):
        return self._swaps[key]

    def __iter__(self):
        return iter(self._swaps)

    def __len__(self):
        return len(self._swaps)

    def unused_keys(self) -> list:
        """The keys that matched no activation of the converted model."""
        return [k for k in self._swaps if id(k) not in self._used]

    def _use(self, key):
        self._used.add(id(key))
        return self._swaps[key]

    def _activation_key(self, activation):
        keys = [k for k in self._swaps if not isinstance(k, NeuronType)]
        for key in keys:
            if key is activation:
                return key
        name = activation_name(activation)
        if name is None:  # an unnamed function only matches itself
            return None
        return next((k for k in keys if _canonical_name(k) == name), None)

    def _neuron_key(self, neuron: NeuronType):
        return next(
            (k for k in self._swaps if isinstance(k, NeuronType) and k == neuron), None
        )

    def resolve(self, activation):
        """What ``activation`` becomes: a neuron type, an exact function, or None.

        None means the identity (a linear activation).
        """
        key = self._activation_key(activation)
        result = _default_form(self._use(key) if key is not None else activation)
        key = self._neuron_key(result) if isinstance(result, NeuronType) else None
        return _default_form(self._use(key)) if key is not None else result


def _default_form(activation):
    """ReLU as rate neurons, linear as None, anything else as it is."""
    if isinstance(activation, NeuronType):
        return activation
    name = activation_name(activation)
    if name == "relu":
        return RectifiedLinear()
    return None if name == "linear" else activation
