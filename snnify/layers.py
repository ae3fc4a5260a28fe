"""Keras layers that snnify provides for training networks that convert well.

:class:`QCFS` is the clip-floor-shift activation of quantisation-aware
training (see :mod:`snnify.quantize`): the mean output of integrate-and-fire
neurons with threshold ``lambda`` over ``L`` steps.

Example:
    >>> import numpy as np
    >>> layer = QCFS(levels=4, initial_threshold=2.0)
    >>> [float(v) for v in layer(np.array([-1.0, 0.2, 0.3, 1.0, 5.0]))]
    [0.0, 0.0, 0.5, 1.0, 2.0]
"""

from __future__ import annotations

import keras
from keras import ops


def clip_floor_shift(x, threshold, levels: int):
    """``threshold * clip(floor(x * levels / threshold + 0.5) / levels, 0, 1)``.

    The floor has a straight-through gradient (that of the identity).
    """
    u = x * (levels / threshold) + 0.5
    u = u + ops.stop_gradient(ops.floor(u) - u)
    return threshold * ops.clip(u / levels, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="snnify")
class QCFS(keras.layers.Layer):
    """Clip-floor-shift activation with a trainable threshold ``lambda``.

    ``out = lambda * clip(floor(x * L / lambda + 0.5) / L, 0, 1)``, with a
    straight-through gradient for the floor (see :mod:`snnify.quantize`).
    Converted, it becomes integrate-and-fire neurons with threshold
    ``lambda``: ``swap_activations={"qcfs": snnify.IntegrateAndFire()}`` and
    the scales of :func:`snnify.calibrate`, or simply
    :func:`snnify.convert_quantized`.

    Args:
        levels: number of quantisation levels ``L`` (the number of steps the
            spiking network will run).
        initial_threshold: initial ``lambda`` (> 0).
        trainable_threshold: train ``lambda`` with the weights.

    Example:
        >>> QCFS(levels=4).get_config()["levels"]
        4
    """

    def __init__(
        self,
        levels: int = 4,
        initial_threshold: float = 1.0,
        trainable_threshold: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(levels) != levels or levels < 1:
            raise ValueError(
                f"levels must be an integer >= 1. Received: levels={levels!r}"
            )
        if not initial_threshold > 0:
            raise ValueError(
                "initial_threshold must be positive. Received: "
                f"initial_threshold={initial_threshold!r}"
            )
        self.levels = int(levels)
        self.initial_threshold = float(initial_threshold)
        self.trainable_threshold = bool(trainable_threshold)

    def build(self, input_shape):
        self.threshold = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_threshold),
            trainable=self.trainable_threshold,
            name="threshold",
        )

    def call(self, inputs):
        # a threshold trained to 0 or below would divide by 0: keep it positive
        threshold = ops.maximum(ops.cast(self.threshold, inputs.dtype), 1e-6)
        return clip_floor_shift(inputs, threshold, self.levels)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "levels": self.levels,
            "initial_threshold": self.initial_threshold,
            "trainable_threshold": self.trainable_threshold,
        }
