"""Max pooling of spike trains by their counts.

The maximum of spike trains is not the maximum of their rates: at any step
most inputs are silent, and a window that passed on whichever input spikes
now would fire at about the sum of their rates. Following the idea of
Rueckauer et al. (2017, "Conversion of continuous-valued deep networks to
efficient event-driven networks") of letting through only the spikes of the
most active input, :class:`SpikeCountMaxPooling` makes each window's count of
output spikes so far equal to the largest count of its inputs so far:

    ``A[t] = A[t-1] + x[t]`` (per input), ``M[t] = maxpool(A[t])``,
    ``out[t] = M[t] - M[t-1]``

A spike passes when it raises the window's largest count, so the window
follows the input that has spiked most; when the lead changes, only what
exceeds the previous maximum passes (selecting one input by its count and
passing all its spikes would count twice around a change of lead). Over
``T`` steps the mean output is exactly the maximum of the inputs' means, and
for inputs that are constant over time (rates, an image) every step is
exact max pooling. The inputs need not be spikes: ``A`` accumulates any
value.

Example:
    >>> import keras, numpy as np
    >>> from snnify.graph import InputNode, StepContext
    >>> pool = keras.layers.MaxPooling1D(2)
    >>> inp = InputNode("x", (2, 1))
    >>> node = SpikeCountMaxPooling("pool", (1, 1), [inp], pool, lambda x, t: pool(x[0]),
    ...                             source_name="pool")
    >>> state = node.initial_state(None)
    >>> spiking = StepContext(spiking=True)
    >>> outputs = []
    >>> for x in ([1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]):  # two spike trains
    ...     out, state = node.compute([np.array([x]).reshape(1, 2, 1)], state, spiking)
    ...     outputs.append(float(out[0, 0, 0]))
    >>> outputs  # counts (1, 0), (1, 1), (1, 2), (2, 2): the maximum is 1, 1, 2, 2
    [1.0, 0.0, 1.0, 0.0]
"""

from __future__ import annotations

import numpy as np

from snnify.graph import LayerNode


class SpikeCountMaxPooling(LayerNode):
    """A max pooling layer: exact on rates, on spike counts for spike trains.

    In rate mode (training, ``Converter.verify``) it applies the Keras layer.
    Spiking, its output makes each window's count so far the largest count
    so far of its inputs (see the module). It takes the arguments of
    :class:`~snnify.graph.LayerNode`; ``layer`` is any Keras max pooling
    layer (windowed, global or adaptive).
    """

    stateful = True

    def initial_state(self, rng):
        return {
            "accumulated": np.zeros(self.parents[0].shape, "float32"),
            "maximum": np.zeros(self.shape, "float32"),
        }

    def compute(self, inputs, state, context):
        if not context.spiking:
            return super().compute(inputs, state, context)
        accumulated = state["accumulated"] + inputs[0]
        maximum = self.apply([accumulated])
        output = maximum - state["maximum"]
        return output, {"accumulated": accumulated, "maximum": maximum}
