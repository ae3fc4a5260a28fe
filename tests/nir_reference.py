"""A plain NumPy interpreter of NIR graphs, written from NIR's node definitions.

It never calls snnify: it runs an exported graph the way a NIR reader with
snnify's ``IF`` semantics would (several spikes per step, reset by
subtraction, the initial voltage of the node metadata), channels first, in
float64, so that tests compare snnify with an independent model of what the
exported file says.
"""

from __future__ import annotations

import nir
import numpy as np


def conv(x, node):
    """``nir.Conv1d`` / ``nir.Conv2d`` on ``x`` of shape ``(batch, C, *spatial)``."""
    weight = np.asarray(node.weight, "float64")
    rank = weight.ndim - 2
    stride = np.broadcast_to(node.stride, (rank,))
    padding = np.broadcast_to(node.padding, (rank,))
    dilation = np.broadcast_to(node.dilation, (rank,))
    x = np.pad(x, [(0, 0), (0, 0)] + [(int(p), int(p)) for p in padding])
    spans = [(k - 1) * d + 1 for k, d in zip(weight.shape[2:], dilation)]
    windows = np.lib.stride_tricks.sliding_window_view(
        x, spans, axis=tuple(range(2, 2 + rank))
    )
    index = (slice(None), slice(None))
    index += tuple(slice(None, None, int(s)) for s in stride)
    index += tuple(slice(None, None, int(d)) for d in dilation)
    windows = windows[index]  # (batch, C, *out, *kernel)
    kernel_axes = "".join("xyz"[a] for a in range(rank))
    out_axes = "".join("XYZ"[a] for a in range(rank))
    out = np.einsum(
        f"bc{out_axes}{kernel_axes},oc{kernel_axes}->bo{out_axes}", windows, weight
    )
    bias = np.asarray(node.bias, "float64").reshape((1, -1) + (1,) * rank)
    return out + bias


def sum_pool(x, node):
    kernel = [int(k) for k in node.kernel_size]
    stride = [int(s) for s in node.stride]
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(2, 3))
    return windows[:, :, :: stride[0], :: stride[1]].sum(axis=(-2, -1))


def run_graph(graph, x, n_steps: int) -> tuple[np.ndarray, dict]:
    """Run ``graph`` on ``x`` ``(batch, *input shape)`` held for ``n_steps``.

    Returns ``(output (batch, n_steps, ...), {IF node: spikes (batch,
    n_steps, ...)})``.
    """
    sources = {name: [] for name in graph.nodes}
    for source, target in graph.edges:
        sources[target].append(source)
    order = []
    while len(order) < len(sources):
        order += [
            n for n in sources if n not in order and all(s in order for s in sources[n])
        ]
    voltage = {}
    outputs, spikes = (
        [],
        {n: [] for n, v in graph.nodes.items() if isinstance(v, nir.IF)},
    )
    for _ in range(n_steps):
        values = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                values[name] = np.asarray(x, "float64")
                continue
            inputs = sum(values[s] for s in sources[name])
            if isinstance(node, nir.Affine):
                values[name] = inputs @ np.asarray(node.weight, "float64").T + node.bias
            elif isinstance(node, nir.Conv1d | nir.Conv2d):
                values[name] = conv(inputs, node)
            elif isinstance(node, nir.SumPool2d):
                values[name] = sum_pool(inputs, node)
            elif isinstance(node, nir.Flatten):
                values[name] = inputs.reshape(len(inputs), -1)
            elif isinstance(node, nir.IF):
                threshold = np.asarray(node.v_threshold, "float64")
                initial = float(node.metadata.get("initial_voltage", 0.0)) * threshold
                v = voltage.get(name, initial) + inputs
                count = np.maximum(np.floor(v / threshold), 0.0)
                voltage[name] = v - count * threshold
                values[name] = count
                spikes[name].append(count)
            elif isinstance(node, nir.Output):
                values[name] = inputs
                outputs.append(inputs)
            else:
                raise NotImplementedError(type(node).__name__)
    return (
        np.stack(outputs, axis=1),
        {name: np.stack(trains, axis=1) for name, trains in spikes.items()},
    )
