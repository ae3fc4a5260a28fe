"""Configuration objects serialised the Keras way.

Neuron types, synapses and the network's settings are small objects whose
``__init__`` validates and stores its arguments and whose :meth:`get_config`
returns them all, so that ``type(obj).from_config(obj.get_config())`` rebuilds
an equal object and ``keras.saving.serialize_keras_object`` can save it.

Example:
    >>> import keras, snnify
    >>> neuron = snnify.LIF(tau_rc=0.03)
    >>> config = keras.saving.serialize_keras_object(neuron)
    >>> keras.saving.deserialize_keras_object(config) == neuron
    True
"""

from __future__ import annotations

import keras


def serializable(cls):
    """Register ``cls`` with Keras's serialisation under the package ``snnify``."""
    return keras.saving.register_keras_serializable(package="snnify")(cls)


class Configurable:
    """Base class: equality, hashing and ``repr`` follow :meth:`get_config`."""

    def get_config(self) -> dict:
        """Every argument of ``__init__``, as plain Python values."""
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))
