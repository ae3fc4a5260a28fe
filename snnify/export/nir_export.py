"""Export a converted network to NIR, the Neuromorphic Intermediate Representation.

NIR (``pip install nir``) describes a spiking network as a graph of nodes
(``Affine``, ``Conv2d``, ``IF``, ``LIF``, ``LI``, ``SumPool2d``, ``Flatten``...)
that other simulators and neuromorphic chips read: Sinabs, snnTorch, Norse,
Rockpool, Spyx, Lava-DL, SpiNNaker2. One step of a NIR reader is one step of
the simulator (``dt`` seconds).

The mapping (docs/nir.md has the details and the readers' semantics):

- ``Dense`` -> ``Affine``; ``Conv1D``/``Conv2D`` (any groups) and
  ``DepthwiseConv2D`` -> ``Conv1d``/``Conv2d`` with ``groups=1``, channels
  first; ``AveragePooling2D`` and ``GlobalAveragePooling2D`` -> ``SumPool2d``
  with ``1 / k^2`` folded into what follows; ``Flatten`` -> ``Flatten``
  (the weights of the next layer are permuted from Keras's channels-last
  order); ``Add``, ``Subtract`` and ``Average`` -> several edges into one
  node; ``Concatenate`` -> one linear node per input that puts it in its
  place, and edges into one node; ``Dropout`` and ``Permute`` -> nothing;
  ``ZeroPadding2D`` -> the padding of the next convolution (an average
  pooling after it -> a ``Conv2d`` of the same window, each channel onto
  itself, as NIR readers ignore the padding of ``SumPool2d``); ``Rescaling``,
  ``Normalization`` and ``BatchNormalization`` (``y = a x + b`` element by
  element) -> nothing: into the weights of the ``Dense`` or convolution
  before, if nothing else reads it; else ``a`` goes into the gain (below)
  and ``b`` into the bias of the next ``Dense`` or convolution
  (``padding="valid"``).
- ``IntegrateAndFire`` and ``SpikingRectifiedLinear`` -> ``IF`` with ``r = 1``;
  ``LIF`` -> ``LIF``; a ``Lowpass`` synapse -> ``LI``.
- A NIR neuron emits spike counts, not rates: every value carries a *gain*
  (the Keras value is the gain times the NIR value). Firing-rate scales,
  ``dt``, amplitudes and pooling factors are folded into thresholds and into
  the weights of the next layer, so that ``v_threshold`` is the activation at
  which a neuron fires once per step.
- What NIR cannot state (the initial voltage, the reset by subtraction,
  several spikes per step, ``dt``, a lower voltage bound) is written into the
  metadata of the graph and of each neuron node.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((4,), name="pixels")
    >>> hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    >>> out = keras.layers.Dense(2, name="out")(hidden)
    >>> converter = snnify.Converter(
    ...     keras.Model(inp, out),
    ...     swap_activations={"relu": snnify.IntegrateAndFire()},
    ...     scale_firing_rates=100,
    ... )
    >>> graph = snnify.export_nir(converter)
    >>> sorted(graph.nodes)
    ['input', 'l001_hidden', 'l002_hidden_neurons', 'l003_out', 'output']
    >>> [float(t) for t in graph.nodes["l002_hidden_neurons"].v_threshold]
    [10.0, 10.0, 10.0]
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import warnings

import keras
import numpy as np

from snnify.export.files import write_atomically
from snnify.graph import FunctionNode, InputNode, LayerNode, NeuronsNode, SynapseNode
from snnify.keras_graph import CLIPPED_RELUS, OperationLayer, type_name
from snnify.neurons import LIF, SignedIntegrateAndFire, SpikingRectifiedLinear
from snnify.rules.operations import scales_one_tensor
from snnify.rules.preprocessing import AUGMENTATION

# most weights of an Affine that only moves or rescales values
MAX_AFFINE = 2**24

# layers that compute y = a x + b element by element (in inference)
ELEMENTWISE_AFFINE = (
    keras.layers.Rescaling,
    keras.layers.Normalization,
    keras.layers.BatchNormalization,
)
DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D) + DEPTHWISE + SEPARABLE
MOVES = (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Permute)
PADDED = (
    "zero-padded (ZeroPadding1D/2D), which NIR export adds to the padding of a "
    "convolution or AveragePooling2D right after it only."
)
MAX_POOLING = (
    "NIR has no max pooling. Convert with max_to_avg_pool=True (average pooling "
    "instead, which changes what the network computes: check its accuracy), or "
    "use AveragePooling2D in the model."
)
# the identity in inference
DROPOUTS = AUGMENTATION + (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.AlphaDropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.ActivityRegularization,
)


def import_nir_package():
    """The ``nir`` package, or an ImportError that says how to install it."""
    try:
        import nir
    except ImportError:
        raise ImportError(
            "NIR export and import need the nir package: pip install 'snnify[nir]'."
        ) from None
    return nir


@dataclasses.dataclass
class Value:
    """What a NIR node (or a sum of NIR nodes) computes for a snnify node.

    Attributes:
        sources: the NIR nodes whose outputs, summed, give the value.
        index: for every element of the NIR value (channels first), the flat
            index of the Keras element it holds.
        gain: per NIR element, the Keras value divided by the NIR value.
        offset: per NIR element, what the Keras value adds to ``gain`` times
            the NIR value (an elementwise affine layer's shift, which the
            next ``Dense`` or convolution folds into its bias), or None.
        padding: ``(start, end)`` zeros per spatial axis around the NIR value
            (a ``ZeroPadding2D``'s, which the next convolution adds to its
            own), or None.
    """

    sources: list
    index: np.ndarray
    gain: np.ndarray
    offset: np.ndarray | None = None
    padding: tuple | None = None

    @property
    def shape(self) -> tuple:
        return self.index.shape


def nir_layout(shape, channels_last: bool = True) -> np.ndarray:
    """Flat Keras indices of a tensor of ``shape`` arranged channels first."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    if channels_last and len(shape) >= 2:
        index = np.moveaxis(index, -1, 0)
    return index


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _unsupported(node, why: str):
    return ValueError(
        f"Layer {node.name!r} ({type_name(node.layer)}) cannot be exported to "
        f"NIR: {why}"
    )


def _numpy(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), "float64")


def _per_channel(node, gain: np.ndarray) -> np.ndarray:
    """A channels-first gain per channel (it must not vary over positions)."""
    channels = gain.reshape(gain.shape[0], -1)
    if not np.all(channels == channels[:, :1]):
        raise _unsupported(node, "its input has a scale that varies over positions.")
    return channels[:, 0]


# the operations (not layers) NIR export supports, by how
OPERATIONS = {
    "Add": "merge",
    "Subtract": "merge",
    "Negative": "elementwise",
    "Multiply": "elementwise",
    "Divide": "elementwise",
    "TrueDivide": "elementwise",
    "Reshape": "move",
    "ExpandDims": "move",
    "Squeeze": "move",
    "Transpose": "move",
    "Concatenate": "concatenate",
    "Mean": "reduction",
    "Sum": "reduction",
}


def _operation_kind(layer: OperationLayer) -> str | None:
    """How NIR export computes an operation; None if it cannot."""
    kind = OPERATIONS.get(layer.operation_name)
    if kind == "elementwise" and not scales_one_tensor(layer):
        return None  # x * y and 2 / x are not affine
    return kind


def _elementwise(node, value: Value) -> Value:
    """``y = a x + b`` element by element: folded into the gain and offset.

    ``a`` and ``b`` are read from the layer's outputs at ``x = -k, 0, k`` (``k``
    a power of two, so that dyadic parameters stay exact).
    """
    k = 256.0
    at = [
        _numpy(node.apply([np.full((1, *node.shape), x, "float32")]))
        for x in (-k, 0.0, k)
    ]
    scale = ((at[2] - at[0]) / (2 * k)).reshape(-1)[value.index]
    shift = at[1].reshape(-1)[value.index]
    if value.offset is not None:
        shift = shift + scale * value.offset
    offset = shift if shift.any() else None
    return Value(value.sources, value.index, value.gain * scale, offset)


def _sole_reader(node, net) -> bool:
    """Whether ``node`` alone reads the ``Dense`` or convolution before it."""
    parent = node.parents[0]
    readers = [n for n in net.nodes if parent in n.parents]
    readers += [p for p in net.probes if p.is_output and p.target is parent]
    linear = (keras.layers.Dense, *CONVOLUTIONS)
    return (
        len(readers) == 1
        and isinstance(parent, LayerNode)
        and isinstance(parent.layer, linear)
    )


def _fold_back(source, gain, shift) -> bool:
    """Multiply the outputs of NIR node ``source`` (``Affine`` or convolution)
    by ``gain`` and add ``shift``, in place; False if they vary over positions."""
    if len(gain.shape) > 1:  # a convolution: one value per channel
        channels = gain.reshape(len(gain), -1), shift.reshape(len(shift), -1)
        if any(not np.all(v == v[:, :1]) for v in channels):
            return False
        gain, shift = channels[0][:, 0], channels[1][:, 0]
    weight = source.weight * gain.reshape((-1,) + (1,) * (source.weight.ndim - 1))
    source.weight = weight.astype("float32")
    source.bias = (source.bias * gain + shift).astype("float32")
    return True


def _read_channels_last(users) -> bool:
    """Whether the layers among ``users`` (of an input) read it channels last."""
    return all(_channels_last(n.layer) for n in users if isinstance(n, LayerNode))


def _shift_refused(receiver: str) -> ValueError:
    return ValueError(
        f"{receiver} the shift of a Rescaling, Normalization or BatchNormalization "
        "layer (or of x + c), which NIR cannot add: only a Dense layer or a "
        "convolution with padding='valid' (after a Flatten, say) folds it into its "
        "bias. Shift the data instead (e.g. Rescaling(scale) without offset, and "
        "centred inputs), or place the layer right before such a layer. A "
        "BatchNormalization right after a Dense layer or convolution folds into "
        "its weights: convert with snnify.Converter(..., fold_batch_norm=True)."
    )


def _shift_through(node, kernel, offset, padding) -> np.ndarray:
    """What a per-channel shift of the input adds to a convolution's output."""
    if np.any(padding):  # NIR pads the NIR value with zeros, Keras the shifted value
        raise _unsupported(
            node,
            "it would add the shift of the Rescaling or Normalization before it at "
            "the padded border too, where Keras pads the shifted input with zeros; "
            "use padding='valid'.",
        )
    shift = _per_channel(node, offset)  # kernel: (out, in, k...)
    return np.tensordot(kernel, shift, axes=([1], [0])).reshape(len(kernel), -1).sum(1)


def _folds_offset(node) -> bool:
    """Whether ``node`` passes on or absorbs a shift of its input."""
    if isinstance(node, LayerNode) and isinstance(node.layer, OperationLayer):
        return _operation_kind(node.layer) in ("elementwise", "move", "concatenate")
    folding = ELEMENTWISE_AFFINE + (keras.layers.Dense, keras.layers.Concatenate)
    folding += CONVOLUTIONS
    return isinstance(node, LayerNode) and isinstance(
        node.layer, folding + MOVES + DROPOUTS
    )


def _merge_signs(layer, count: int) -> list:
    """What ``Add``, ``Subtract`` or ``Average`` multiplies each input by."""
    if isinstance(layer, keras.layers.Subtract):
        return [1.0, -1.0]
    if isinstance(layer, keras.layers.Average):
        return [1.0 / count] * count
    return [1.0] * count


def _zero_padded(node, value: Value) -> Value:
    """A ``ZeroPadding1D/2D``: its zeros, for the next convolution to add."""
    _check_layout(node, value)
    pairs = np.reshape(node.layer.padding, (-1, 2))
    padding = tuple((int(start), int(end)) for start, end in pairs)
    return dataclasses.replace(value, padding=padding)


def _check_layout(node, value: Value, shape=None) -> None:
    """Refuse an input (of ``shape``: the first's) not laid out channels first."""
    shape = node.parents[0].shape if shape is None else shape
    expected = nir_layout(shape, _channels_last(node.layer))
    if value.index.shape != expected.shape or not np.array_equal(value.index, expected):
        raise _unsupported(
            node,
            "its input is laid out differently from a channels-first tensor "
            "(a Permute or Reshape before it).",
        )


def _same_padding(size, kernel, stride, dilation) -> tuple[int, int]:
    """Keras's "same" padding along one axis: ``(start, end)``."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _symmetric(node, kernel, padding, dilation):
    """``(kernel, padding)`` with the same padding at both ends of every axis.

    Where Keras pads ``start < end`` zeros (``padding="same"`` with stride 2,
    a ``ZeroPadding2D(((0, 1), (0, 1)))``), NIR pads ``end`` at both ends and
    the kernel (out, in, k...) gets ``(end - start) / dilation`` taps of zeros
    at its start, which the extra padding meets; the other way round, at its
    end.
    """
    widths, symmetric = [(0, 0), (0, 0)], []
    for (start, end), d in zip(padding, dilation):
        if abs(end - start) % d:
            raise _unsupported(
                node,
                f"its padding ({start} before, {end} after, dilation {d}) has no "
                "symmetric NIR form. Use symmetric padding or dilation 1.",
            )
        extra = abs(end - start) // d
        widths.append((extra, 0) if end > start else (0, extra))
        symmetric.append(max(start, end))
    return np.pad(kernel, widths), tuple(symmetric)


def _dense_kernel(layer) -> np.ndarray:
    """A convolution's kernel ``(k..., in, out)`` with groups spelled out.

    For a separable convolution, its depthwise part.
    """
    separable = isinstance(layer, SEPARABLE)
    kernel = _numpy(layer.depthwise_kernel if separable else layer.kernel)
    if isinstance(layer, DEPTHWISE + SEPARABLE):
        *k, channels, multiplier = kernel.shape
        full = np.zeros((*k, channels, channels * multiplier))
        for c in range(channels):
            full[..., c, c * multiplier : (c + 1) * multiplier] = kernel[..., c, :]
        return full
    groups = int(getattr(layer, "groups", 1) or 1)
    if groups == 1:
        return kernel
    *k, per_group_in, out = kernel.shape
    per_group_out = out // groups
    full = np.zeros((*k, per_group_in * groups, out))
    for g in range(groups):
        rows = slice(g * per_group_in, (g + 1) * per_group_in)
        cols = slice(g * per_group_out, (g + 1) * per_group_out)
        full[..., rows, cols] = kernel[..., cols]
    return full


def _concatenation_axis(layer, rank: int) -> int:
    """The axis of one example (no batch) that a concatenation joins along."""
    axis = layer.axis if isinstance(layer, keras.layers.Concatenate) else None
    axis = layer.config["axis"] if axis is None else axis
    return (axis if axis >= 0 else axis + rank + 1) - 1


def _embedding(nir, node, value: Value, size: int, start: int = 0):
    """A linear NIR node that writes ``value`` (its gain and offset applied)
    into the elements (rank 1) or channels ``start...`` of a value of ``size``.
    """
    count, rank = value.shape[0], len(value.shape)
    gain, offset = value.gain, value.offset
    offset = np.zeros(value.shape) if offset is None else offset
    if rank > 1:  # a 1x1 convolution
        gain, offset = _per_channel(node, gain), _per_channel(node, offset)
    elif size * count > MAX_AFFINE:
        raise _unsupported(node, "its inputs have too many elements.")
    ones = (1,) * (rank - 1)
    weight = np.zeros((size, count) + ones)
    weight[start + np.arange(count), np.arange(count)] = gain.reshape((-1,) + ones)
    bias = np.zeros(size)
    bias[start : start + count] = offset
    if rank == 1:
        return nir.Affine(weight=weight.astype("float32"), bias=bias.astype("float32"))
    return _conv_node(nir, value.shape[1:], weight, bias, ones, (0,) * len(ones), ones)


def _max_pooling(layer) -> bool:
    """A 2D or global max pooling (or snnify's spiking one); NIR has none."""
    name = type_name(layer)
    return "MaxPool" in name and "1D" not in name


def _padded_pooling_node(nir, node, value: Value, window, gain):
    """An average pooling of a zero-padded value: a ``Conv2d`` that maps each
    channel onto itself with ``gain`` over the window (the zeros count in the
    average, as in Keras); NIR readers ignore the padding of ``SumPool2d``."""
    kernel, strides = window
    channels = gain.size
    weight = np.zeros((channels, channels, *kernel))
    weight[np.arange(channels), np.arange(channels)] = gain[:, None, None]
    weight, padding = _symmetric(node, weight, value.padding, (1, 1))
    bias = np.zeros(channels)
    return _conv_node(nir, value.shape[1:], weight, bias, strides, padding, (1, 1))


def _pool_window(node, value: Value) -> tuple:
    """``(kernel, strides)`` of an average pooling layer."""
    layer = node.layer
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        return (tuple(value.shape[1:]),) * 2
    if layer.padding != "valid":
        raise _unsupported(
            node, 'NIR readers ignore the padding of SumPool2d; use padding="valid".'
        )
    return tuple(layer.pool_size), tuple(layer.strides)


def _image_reduction(layer, shape) -> bool:
    """Whether ``keras.ops.mean`` or ``sum`` reduces the positions of an image."""
    axis = layer.config.get("axis")
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    rank = len(shape) + 1  # with the batch axis
    return len(shape) == 3 and None not in axes and {a % rank for a in axes} == {1, 2}


def _pointwise_node(nir, layer, spatial):
    """The 1x1 convolution of a separable convolution, with its bias."""
    weight = np.moveaxis(_numpy(layer.pointwise_kernel), (-1, -2), (0, 1))
    bias = _numpy(layer.bias) if layer.use_bias else np.zeros(weight.shape[0])
    ones = (1,) * len(spatial)
    return _conv_node(nir, spatial, weight, bias, ones, (0,) * len(spatial), ones)


def _conv_node(nir, spatial, weight, bias, strides, padding, dilation):
    """A ``Conv1d`` or ``Conv2d`` (``weight``: out, in, kernel...) of groups 1."""
    options = {
        "weight": weight.astype("float32"),
        "bias": bias.astype("float32"),
        "groups": 1,
    }
    if len(spatial) == 1:
        return nir.Conv1d(
            input_shape=int(spatial[0]),
            stride=int(strides[0]),
            padding=int(padding[0]),
            dilation=int(dilation[0]),
            **options,
        )
    return nir.Conv2d(
        input_shape=tuple(int(d) for d in spatial),
        stride=tuple(int(v) for v in strides),
        padding=tuple(int(v) for v in padding),
        dilation=tuple(int(v) for v in dilation),
        **options,
    )


def _neuron_node(nir, node, value: Value, dt: float):
    """The NIR neurons of a snnify neuron node fed ``value``, and their gain."""
    neuron = node.neuron_type
    shape = value.shape
    scale = np.broadcast_to(np.asarray(node.scale, "float64"), node.shape)
    scale = scale.reshape(-1)[value.index]
    config = neuron.get_config()
    metadata = {"snnify_node": node.name, "neuron": type(neuron).__name__}
    metadata.update({k: v for k, v in config.items() if v is not None})
    metadata.pop("amplitude")  # folded into the weights of the next layer
    if np.ndim(config.get("initial_voltage")) > 0:  # per channel: per neuron, NIR order
        initial = np.broadcast_to(np.asarray(config["initial_voltage"]), node.shape)
        metadata["initial_voltage"] = initial.reshape(-1)[value.index].astype("float32")
    if isinstance(neuron, SignedIntegrateAndFire):
        raise ValueError(
            f"Neurons {node.name!r} are SignedIntegrateAndFire: their negative "
            "spikes have no NIR equivalent. Export the network converted with "
            "snnify.IntegrateAndFire() instead."
        )
    if np.any(getattr(neuron, "negative_slope", 0.0)):
        raise ValueError(
            f"Neurons {node.name!r} also fire for the negative part of their "
            "input (negative_slope), spikes that have no NIR equivalent. Export "
            "the network converted with neurons without a negative slope, e.g. "
            "swap_activations={'leaky_relu': snnify.IntegrateAndFire()} (or "
            "'prelu'), which drops the negative part of the leaky ReLU."
        )
    if isinstance(neuron, LIF):
        threshold = 1.0 / (scale * value.gain)
        nir_node = nir.LIF(
            tau=np.full(shape, neuron.tau_rc),
            r=np.ones(shape, "float32"),
            v_leak=np.zeros(shape, "float32"),
            v_threshold=threshold.astype("float32"),
            metadata=metadata,
        )
        if neuron.tau_ref > 0:
            warnings.warn(
                f"NIR's LIF has no refractory period: the tau_ref={neuron.tau_ref} "
                f"of {node.name!r} is kept in its metadata only.",
                stacklevel=5,
            )
    elif isinstance(neuron, SpikingRectifiedLinear):
        threshold = 1.0 / (scale * dt * value.gain)
        nir_node = nir.IF(
            r=np.ones(shape, "float32"),
            v_threshold=threshold.astype("float32"),
            metadata=metadata,
        )
    else:
        raise ValueError(
            f"Neurons {node.name!r} are {type(neuron).__name__}, which NIR cannot "
            "express: only spiking IntegrateAndFire, SpikingRectifiedLinear and LIF "
            "neurons export. Convert with swap_activations={'relu': "
            "snnify.IntegrateAndFire()}."
        )
    if not np.all(np.isfinite(threshold) & (threshold > 0)):
        raise ValueError(
            f"Neurons {node.name!r} would need a threshold that is not a positive "
            "number in NIR (their scale or input scale is 0 or negative)."
        )
    return nir_node, neuron.amplitude / (scale * dt)


class NIRExporter:
    """Builds the NIR nodes and edges of a network, node by node."""

    def __init__(self, converter, dt: float):
        self.nir = import_nir_package()
        self.converter = converter
        self.dt = float(dt)
        self.nodes: dict = {}
        self.edges: list = []
        self.values: dict = {}  # snnify node name -> Value
        self.inputs = {  # snnify input node name -> NIR name
            node.name: "input" if k == 0 else f"input_{k + 1}"
            for k, node in enumerate(converter.net.input_nodes)
        }

    # --- graph building ---------------------------------------------------
    def add(self, base: str, node, sources) -> str:
        name = f"l{len(self.nodes) + 1:03d}_" + re.sub(r"\W", "_", base)
        self.nodes[name] = node
        self.edges += [(source, name) for source in sources]
        return name

    def graph(self):
        net = self.converter.net
        for node in net.nodes:
            self.values[node.name] = self.convert(node)
        nodes = {
            name: self.nir.Input(
                input_type={"input": np.array(self.values[node_name].shape)}
            )
            for node_name, name in self.inputs.items()
        }
        nodes.update(self.nodes)
        outputs = [p for p in net.probes if p.is_output]
        scales = {}
        for k, probe in enumerate(outputs):
            value = self.values[probe.target.name]
            if value.offset is not None:
                raise _shift_refused(f"The output {probe.target.name!r} receives")
            if value.padding is not None:
                raise ValueError(f"The output {probe.target.name!r} is {PADDED}")
            name = "output" if k == 0 else f"output_{k + 1}"
            if not np.all(value.gain == 1):
                scales[name] = value.gain.astype("float32")
            nodes[name] = self.nir.Output(output_type={"output": np.array(value.shape)})
            self.edges += [(source, name) for source in value.sources]
        metadata = _graph_metadata(self.dt, scales)
        return self.nir.NIRGraph(nodes=nodes, edges=self.edges, metadata=metadata)

    # --- one snnify node -------------------------------------------------
    def convert(self, node) -> Value:
        if isinstance(node, InputNode):
            users = [n for n in self.converter.net.nodes if node in n.parents]
            index = nir_layout(node.shape, _read_channels_last(users))
            return Value([self.inputs[node.name]], index, np.ones(index.shape))
        inputs = [self.values[p.name] for p in node.parents]
        if any(v.offset is not None for v in inputs) and not _folds_offset(node):
            raise _shift_refused(f"Node {node.name!r} receives")
        # a max pooling is refused for itself, padded or not
        padded_ok = isinstance(node, LayerNode) and (
            isinstance(node.layer, CONVOLUTIONS + (keras.layers.AveragePooling2D,))
            or _max_pooling(node.layer)
        )
        if any(v.padding is not None for v in inputs) and not padded_ok:
            raise ValueError(f"Node {node.name!r} receives a value {PADDED}")
        if isinstance(node, NeuronsNode):
            return self.neurons(node, inputs[0])
        if isinstance(node, SynapseNode):
            tau = np.full(inputs[0].shape, node.synapse.tau)  # float64: tau exactly
            name = self.add(
                node.name,
                self.nir.LI(tau=tau, r=np.ones_like(tau), v_leak=np.zeros_like(tau)),
                inputs[0].sources,
            )
            return Value([name], inputs[0].index, inputs[0].gain)
        if isinstance(node, FunctionNode):
            raise ValueError(_function_refusal(node))
        if isinstance(node, LayerNode):
            return self.layer(node, inputs)
        raise TypeError(f"Node {node.name!r} of type {type(node).__name__} is unknown.")

    def neurons(self, node, value: Value) -> Value:
        nir_node, gain = _neuron_node(self.nir, node, value, self.dt)
        name = self.add(node.name, nir_node, value.sources)
        return Value([name], value.index, gain)

    # --- Keras layers ----------------------------------------------------
    def layer(self, node, inputs: list) -> Value:
        layer = node.layer
        layers = keras.layers
        if isinstance(layer, OperationLayer):
            return self.operation(node, inputs)
        if isinstance(layer, layers.Dense):
            return self.dense(node, inputs[0])
        if isinstance(layer, CONVOLUTIONS):
            return self.convolution(node, inputs[0])
        if isinstance(layer, layers.AveragePooling2D | layers.GlobalAveragePooling2D):
            return self.pooling(node, inputs[0], _pool_window(node, inputs[0]))
        if isinstance(layer, MOVES):
            return self.move(node, inputs[0])
        if isinstance(layer, layers.Concatenate):
            return self.concatenate(node, inputs)
        if isinstance(layer, layers.Add | layers.Subtract | layers.Average):
            return self.merge(node, inputs, _merge_signs(layer, len(inputs)))
        if isinstance(layer, ELEMENTWISE_AFFINE):
            return self.affine(node, inputs[0])
        if isinstance(layer, DROPOUTS):
            return inputs[0]
        if isinstance(layer, keras.layers.ZeroPadding1D | keras.layers.ZeroPadding2D):
            return _zero_padded(node, inputs[0])
        if _max_pooling(layer):
            raise _unsupported(node, MAX_POOLING)
        raise _unsupported(
            node,
            "NIR export supports Dense, Conv1D, Conv2D, DepthwiseConv2D, "
            "AveragePooling2D, GlobalAveragePooling2D, Flatten, Reshape (to one "
            "axis), Permute, Add, Subtract, Average, Rescaling, Normalization, "
            "BatchNormalization, Dropout, noise and random augmentation layers.",
        )

    def affine(self, node, value: Value) -> Value:
        """``y = a x + b`` element by element; with a shift ``b``, folded back
        into the ``Dense`` or convolution before it where nothing else reads
        that layer (Conv2D -> BatchNormalization -> ReLU)."""
        folded = _elementwise(node, value)
        if folded.offset is not None and _sole_reader(node, self.converter.net):
            if _fold_back(self.nodes[value.sources[0]], folded.gain, folded.offset):
                return Value(value.sources, value.index, np.ones(value.shape))
        return folded

    def operation(self, node, inputs: list) -> Value:
        """``x + y``, ``x * 2.0``, ``keras.ops.reshape(x, ...)``... (not layers)."""
        kind = _operation_kind(node.layer)
        if kind == "merge" and len(inputs) == 2:
            sign = -1.0 if node.layer.operation_name == "Subtract" else 1.0
            if inputs[0].shape == inputs[1].shape:
                return self.merge(node, inputs, [1.0, sign])
        if kind in ("merge", "elementwise") and len(inputs) == 1:
            return _elementwise(node, inputs[0])
        if kind == "move":
            return self.move(node, inputs[0])
        if kind == "concatenate":
            return self.concatenate(node, inputs)
        if kind == "reduction" and _image_reduction(node.layer, node.parents[0].shape):
            window = (tuple(inputs[0].shape[1:]),) * 2
            average = node.layer.operation_name == "Mean"
            return self.pooling(node, inputs[0], window, average)
        raise _unsupported(
            node,
            f"NIR export supports the operations {', '.join(sorted(OPERATIONS))} "
            "(sums and differences of tensors of one shape, products and "
            "quotients by constants, reshapes, concatenations of channels, means "
            "and sums over the positions of an image). Received: "
            f"{node.layer.operation_name} of {len(inputs)} tensor(s).",
        )

    def dense(self, node, value: Value) -> Value:
        layer = node.layer
        if len(value.shape) != 1:
            raise _unsupported(
                node, "it acts on the last axis of a tensor of rank > 1; flatten first."
            )
        rows = _numpy(layer.kernel)[value.index]  # in the NIR value's order
        kernel = rows * value.gain[:, None]
        units = kernel.shape[1]
        bias = _numpy(layer.bias) if layer.use_bias else np.zeros(units)
        if value.offset is not None:
            bias = bias + value.offset @ rows
        nir_node = self.nir.Affine(
            weight=kernel.T.astype("float32"), bias=bias.astype("float32")
        )
        name = self.add(node.name, nir_node, value.sources)
        return Value([name], np.arange(units), np.ones(units))

    def convolution(self, node, value: Value) -> Value:
        layer = node.layer
        rank = len(layer.kernel_size)
        if rank not in (1, 2):
            raise _unsupported(node, "NIR has 1D and 2D convolutions only.")
        if value.padding is None:  # else checked by the ZeroPadding2D
            _check_layout(node, value)
        gain = _per_channel(node, value.gain)
        dense = np.moveaxis(_dense_kernel(layer), (-1, -2), (0, 1))  # (out, in, k...)
        kernel = dense * gain.reshape((1, -1) + (1,) * rank)
        spatial = value.shape[1:]
        strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
        padding = value.padding or ((0, 0),) * rank
        if layer.padding == "same":
            sizes = [n + a + b for n, (a, b) in zip(spatial, padding)]
            same = map(_same_padding, sizes, dense.shape[2:], strides, dilation)
            padding = [(a + c, b + d) for (a, b), (c, d) in zip(padding, same)]
        elif layer.padding != "valid":
            raise _unsupported(node, f"NIR has no {layer.padding!r} padding.")
        separable = isinstance(layer, SEPARABLE)  # the bias comes after
        bias = np.zeros(dense.shape[0])
        if layer.use_bias and not separable:
            bias = _numpy(layer.bias)
        if value.offset is not None:
            bias = bias + _shift_through(node, dense, value.offset, padding)
        kernel, padding = _symmetric(node, kernel, padding, dilation)
        nir_node = _conv_node(
            self.nir, spatial, kernel, bias, strides, padding, dilation
        )
        name = self.add(node.name, nir_node, value.sources)
        index = nir_layout(node.shape, _channels_last(layer))
        if separable:
            pointwise = _pointwise_node(self.nir, layer, index.shape[1:])
            name = self.add(f"{node.name}_pointwise", pointwise, [name])
        return Value([name], index, np.ones(index.shape))

    def pooling(self, node, value: Value, window, average: bool = True) -> Value:
        """A ``SumPool2d`` over ``window`` (kernel, strides); the gain divided
        by the kernel's size for an average."""
        kernel, strides = window
        if value.padding is not None:  # its layout checked by the ZeroPadding2D
            gain = _per_channel(node, value.gain) / np.prod(kernel)
            pool = _padded_pooling_node(self.nir, node, value, window, gain)
            name = self.add(node.name, pool, value.sources)
            index = nir_layout(node.shape, _channels_last(node.layer))
            return Value([name], index, np.ones(index.shape))
        _check_layout(node, value)
        gain = _per_channel(node, value.gain)
        pool = self.nir.SumPool2d(
            kernel_size=np.array(kernel),
            stride=np.array(strides),
            padding=np.array([0, 0]),
        )
        name = self.add(node.name, pool, value.sources)
        gain = gain / np.prod(kernel) if average else gain
        if len(node.shape) == 1:  # over the whole image, without keepdims
            flat = self.nir.Flatten(
                input_type={"input": np.array([gain.size, 1, 1])},
                start_dim=0,
                end_dim=-1,
            )
            name = self.add(f"{node.name}_flatten", flat, [name])
            return Value([name], np.arange(gain.size), gain)
        index = nir_layout(node.shape, _channels_last(node.layer))
        return Value([name], index, np.broadcast_to(gain[:, None, None], index.shape))

    def move(self, node, value: Value) -> Value:
        """Flatten, Reshape, Permute: computed on the indices themselves."""
        size = int(np.prod(node.shape))
        if size >= 2**24:
            raise _unsupported(node, "it has more than 2**24 elements.")
        probe = np.arange(size, dtype="float32").reshape((1, *node.parents[0].shape))
        source = np.rint(keras.ops.convert_to_numpy(node.call([probe])))
        position = np.empty(size, "int64")  # Keras input index -> output index
        position[source.reshape(-1).astype("int64")] = np.arange(size)
        index = position[value.index]
        if len(node.shape) != 1 or len(value.shape) == 1:
            # the NIR value does not move; its layout does
            return Value(value.sources, index, value.gain, value.offset)
        flatten = self.nir.Flatten(
            input_type={"input": np.array(value.shape)}, start_dim=0, end_dim=-1
        )
        name = self.add(node.name, flatten, value.sources)
        offset = None if value.offset is None else value.offset.reshape(-1)
        return Value([name], index.reshape(-1), value.gain.reshape(-1), offset)

    def merge(self, node, inputs: list, signs: list) -> Value:
        """Several edges into one node: NIR sums the inputs of a node."""
        index = inputs[0].index
        if any(not np.array_equal(v.index, index) for v in inputs):
            raise _unsupported(node, "its inputs are laid out differently.")
        gains = [v.gain * sign for v, sign in zip(inputs, signs)]
        sources = [s for v in inputs for s in v.sources]
        if len(set(sources)) < len(sources):
            raise _unsupported(node, "it adds a tensor to itself.")
        if all(np.array_equal(g, gains[0]) for g in gains):
            return Value(sources, index, gains[0])
        sources = []
        for value, gain in zip(inputs, gains):
            if np.all(gain == 1):
                sources += value.sources
            else:
                scaled = dataclasses.replace(value, gain=gain)
                embedding = _embedding(self.nir, node, scaled, value.shape[0])
                sources.append(self.add(f"{node.name}_scale", embedding, value.sources))
        return Value(sources, index, np.ones(index.shape))

    def concatenate(self, node, inputs: list) -> Value:
        """Each input put in its place by a linear node; NIR sums them."""
        rank = len(node.shape)
        axis = _concatenation_axis(node.layer, rank)
        if rank > 1 and axis != rank - 1:
            raise _unsupported(
                node, "NIR export concatenates channels (the last axis) only."
            )
        size, start, sources, indices = node.shape[-1], 0, [], []
        for k, (parent, value) in enumerate(zip(node.parents, inputs)):
            if rank > 1:
                _check_layout(node, value, parent.shape)
            embedding = _embedding(self.nir, node, value, size, start)
            sources.append(self.add(f"{node.name}_{k}", embedding, value.sources))
            indices.append(start + value.index)
            start += parent.shape[-1]
        index = np.concatenate(indices) if rank == 1 else nir_layout(node.shape)
        return Value(sources, index, np.ones(index.shape))


def _graph_metadata(dt: float, output_scales: dict) -> dict:
    """What NIR cannot state about the graph's neurons and outputs."""
    metadata = {
        "producer": "snnify",
        "snnify_version": _version(),
        "dt": dt,
        "reset": "subtract",
        "spikes_per_step": "several",
    }
    if output_scales:  # Keras output / NIR output, where not 1
        metadata["output_scales"] = output_scales
    return metadata


def _version() -> str:
    try:
        return importlib.metadata.version("snnify")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _remove_v_reset(path) -> None:
    """Drop the ``v_reset`` fields that nir >= 1.0.7 writes and nir 1.0.4 cannot read.

    The reset they state (to 0) is not snnify's anyway: the graph's metadata
    says ``reset="subtract"``.
    """
    import h5py

    with h5py.File(path, "r+") as file:
        for node in file["node/nodes"].values():
            if isinstance(node, h5py.Group) and "v_reset" in node:
                del node["v_reset"]


def export_nir(converter, path=None, dt: float = 0.001):
    """Export a converted spiking network to a NIR graph (and file).

    Args:
        converter: the :class:`~snnify.Converter` of the network (its neurons
            must be spiking: ``IntegrateAndFire``, ``SpikingRectifiedLinear`` or
            ``LIF``).
        path: if given, write the graph there (``nir.write``, HDF5). The file
            is written next to ``path`` and renamed, so a failed export leaves
            any previous file intact.
        dt: the time step the network will run with (s); it sets the
            thresholds, since one NIR step is one step of ``dt``.

    Returns:
        the ``nir.NIRGraph``.

    Raises:
        ValueError: naming the first layer or neuron that NIR cannot express.
    """
    if not dt > 0:
        raise ValueError(f"dt must be positive (seconds). Received: dt={dt!r}")
    graph = NIRExporter(converter, dt).graph()
    if path is not None:
        nir = import_nir_package()

        def write(temporary):
            nir.write(temporary, graph)
            _remove_v_reset(temporary)

        write_atomically(path, write)
    return graph


def _function_refusal(node) -> str:
    """Why an exact function cannot be exported, and what to do."""
    name = getattr(node.function, "__name__", "")
    fix = (
        "Remove the activation (e.g. a softmax on the output does not change "
        "the arg-max) or swap it for spiking neurons."
    )
    if name in CLIPPED_RELUS:
        fix = (
            "Make it spiking neurons that saturate: snnify.convert_for_steps("
            "model, data, n_steps), or swap_activations={"
            f"{name!r}: snnify.IntegrateAndFire(max_spikes_per_step=1)}} with "
            "calibration."
        )
    if name in ("leaky_relu", "prelu"):
        fix = (
            "Its negative part needs negative spikes, which NIR has not: "
            f"swap_activations={{{name!r}: snnify.IntegrateAndFire()}} with "
            "calibration drops it (the network then computes something else; "
            "fine-tune it through the simulator)."
        )
    return (
        f"Node {node.name!r} applies {name!r}, a function that NIR cannot "
        f"express. {fix}"
    )
