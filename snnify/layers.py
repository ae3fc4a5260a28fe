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

from snnify.validation import positive_integer, positive_number


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
        threshold_unit: optional unit (> 0) in which the layer stores and
            trains ``lambda``: its variable holds ``lambda / threshold_unit``.
            Adam moves every variable by about its learning rate per update
            whatever its size, so a ``lambda`` of 100 stored as is hardly
            moves; in units of 100 times itself, Adam(1e-4) moves it by up to
            1 % per update. None: the variable is ``lambda``.

    Example:
        >>> QCFS(levels=4).get_config()["levels"]
        4
        >>> layer = QCFS(levels=4, initial_threshold=50.0, threshold_unit=200.0)
        >>> layer.build((None, 3))
        >>> float(layer.threshold), float(layer.trainable_weights[0])
        (50.0, 0.25)
    """

    def __init__(
        self,
        levels: int = 4,
        initial_threshold: float = 1.0,
        trainable_threshold: bool = True,
        threshold_unit: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        levels = positive_integer(levels, "levels")
        if not initial_threshold > 0:
            raise ValueError(
                "initial_threshold must be positive. Received: "
                f"initial_threshold={initial_threshold!r}"
            )
        self.levels = int(levels)
        self.initial_threshold = float(initial_threshold)
        self.trainable_threshold = bool(trainable_threshold)
        self.threshold_unit = (
            None
            if threshold_unit is None
            else positive_number(threshold_unit, "threshold_unit")
        )

    def build(self, input_shape):
        self.stored_threshold = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(
                self.initial_threshold / (self.threshold_unit or 1.0)
            ),
            trainable=self.trainable_threshold,
            name="threshold",
        )

    @property
    def threshold(self):
        """``lambda``: the stored variable times ``threshold_unit``."""
        if self.threshold_unit is None:
            return self.stored_threshold
        return self.stored_threshold * self.threshold_unit

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
            "threshold_unit": self.threshold_unit,
        }
