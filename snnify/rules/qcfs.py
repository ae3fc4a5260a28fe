"""Rule for the clip-floor-shift activation (:class:`snnify.layers.QCFS`).

Unswapped, a QCFS layer is applied exactly (so ``Converter.verify`` holds);
``swap_activations={"qcfs": neuron}`` (or ``{snnify.QCFS: neuron}``) turns it
into neurons, whose threshold is ``lambda`` when the layer's scale is
``1 / (lambda * dt)`` (see :func:`snnify.convert_quantized`).
"""

from __future__ import annotations

from snnify.layers import QCFS
from snnify.rules.registry import MOVES_VALUES, Conversion, register


class QuantizedActivation:
    """The activation of a QCFS layer, named ``"qcfs"`` for swap_activations."""

    __name__ = "qcfs"

    def __init__(self, layer: QCFS):
        self.layer = layer

    def __call__(self, x):
        return self.layer.call(x)


@register(QCFS, kind="exact")
def qcfs(layer):
    """Applied exactly; ``swap_activations={"qcfs": neuron}`` makes neurons."""
    return Conversion(activation=QuantizedActivation(layer), cost=MOVES_VALUES)
