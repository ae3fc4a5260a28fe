"""Turning the data a user gives into what the simulator and Keras run.

Every input of a network is an array ``(batch, steps, *shape)``: flattened
``(batch, steps, size)`` arrays are reshaped, and an input of one step is held
for all steps. The simulator, calibration, statistics and sweeps all read
their arrays through :func:`standardize_inputs`.

Data pipelines (a ``keras.utils.PyDataset``, a Python generator, a
``tf.data.Dataset`` or a ``torch.utils.data.DataLoader``) yield batches
``x``, ``(x, y)`` or ``(x, y, sample_weight)`` in the same formats.
:func:`keras_pipeline` renames each batch for Keras's own data adapters
(``fit``, ``evaluate``); :func:`numpy_batches` reads them one by one
(``predict``).

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((2, 3), name="pixels")
    >>> net = snnify.Converter(keras.Model(inp, keras.layers.Flatten()(inp))).net
    >>> x = standardize_inputs(net, np.zeros((5, 1, 6)))
    >>> [(node.name, array.shape) for node, array in x.items()]
    [('pixels', (5, 1, 2, 3))]
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping

import keras
import numpy as np

from snnify.graph import InputNode, Probe
from snnify.validation import check_finite, positive_integer


def input_node(network, key) -> InputNode:
    """The input node of ``network`` that ``key`` (a node or its name) names."""
    for node in network.input_nodes:
        if key is node or key == node.name:
            return node
    names = ", ".join(repr(n.name) for n in network.input_nodes)
    raise KeyError(
        f"{key!r} is not an input of this network. Use converter.inputs[...] (the "
        f"network's inputs are {names}). Received: key={key!r}"
    )


def check_own_probes(network, keys, what: str, by_target: bool = False) -> None:
    """Refuse probes of another network among ``keys`` (names are not checked).

    ``by_target``: a probe need not be added to the network (``add_to_container
    =False``), but what it records must be one of the network's nodes.
    """
    for key in keys:
        if by_target:
            node = key.target
            while node.network is None and node.parents:  # a probe's own filter
                node = node.parents[0]
            foreign = node.network is not network
        else:
            foreign = isinstance(key, Probe) and key not in network.probes
        if foreign:
            raise ValueError(
                f"{what}: {key!r} is a probe of another network. Use "
                "the probes of this simulator's network (converter.outputs[...] of "
                f"the converter whose .net it simulates). Received: key={key!r}"
            )


def _one_array(x) -> bool:
    """Whether ``x`` is a list of one array (Keras's form for one input)."""
    return len(x) == 1 and hasattr(x[0], "shape")


def standardize_inputs(network, x, time_axis_optional: bool = False) -> dict:
    """``{input node: float32 array (batch, steps, *node.shape)}``.

    Args:
        network: the network whose inputs ``x`` feeds.
        x: ``{converter.inputs[inp] (or its name): array}``, or one array for
            a single-input network, or a list in the order of the inputs.
        time_axis_optional: also accept arrays in Keras's own format,
            ``(batch, *shape)`` or ``(batch, size)``, as one step, and data
            pipelines, read whole (:func:`whole_inputs`).
    """
    nodes = network.input_nodes
    if time_axis_optional:
        x = whole_inputs(x)
    if isinstance(x, (list, tuple)) and (len(nodes) > 1 or _one_array(x)):
        x = dict(zip(nodes, x))
    if not isinstance(x, Mapping):
        if len(nodes) != 1:
            raise ValueError(
                f"This network has {len(nodes)} inputs: pass a dict keyed by "
                "converter.inputs[...]."
            )
        x = {nodes[0]: x}
    arrays = {input_node(network, k): np.asarray(v) for k, v in x.items()}
    missing = [n.name for n in nodes if n not in arrays]
    if missing:
        raise ValueError(f"No data given for input(s) {missing}.")
    result = {}
    for node, value in arrays.items():
        value = _with_channel_axis(value, node.shape)
        if time_axis_optional and value.shape[1:] in (node.shape, (node.size,)):
            value = value[:, None]
        flat = value.ndim == 3 and value.shape[2] == node.size
        if value.ndim < 3 or not (flat or value.shape[2:] == node.shape):
            shaped = ", ".join(map(str, node.shape))
            also = f" or (batch, steps, {shaped})" if len(node.shape) > 1 else ""
            one_step = value.shape[1:] in (node.shape, (node.size,))
            raise ValueError(
                f"Input {node.name!r} expects arrays of shape (batch, steps, "
                f"{node.size}){also}. Received: shape={value.shape}"
                + (
                    ". Add the time axis of one step with x[:, None]."
                    if one_step
                    else ""
                )
            )
        if value.shape[0] == 0 or value.shape[1] == 0:
            raise ValueError(
                f"Input {node.name!r} has no examples or no steps: give at least one "
                "example of at least one step, (batch >= 1, steps >= 1, ...). "
                f"Received: shape={value.shape}"
            )
        value = value.reshape(value.shape[:2] + node.shape)
        result[node] = real_floats(value, f"Input {node.name!r}")
    if len({v.shape[0] for v in result.values()}) > 1:
        raise ValueError(
            "All inputs must have the same batch size. Received: "
            f"{ {n.name: v.shape[0] for n, v in result.items()} }"
        )
    return result


def _with_channel_axis(value: np.ndarray, shape: tuple) -> np.ndarray:
    """``value`` with the trailing axis of one that ``shape`` has and it lacks.

    Keras's models take ``(n, 28, 28)`` for an input of ``(28, 28, 1)``.
    """
    inner = shape[:-1]
    lacks = value.shape[value.ndim - len(shape) :] != shape
    if shape[-1:] == (1,) and inner and lacks and value.shape[-len(inner) :] == inner:
        return value[..., None]
    return value


def real_floats(value: np.ndarray, what: str) -> np.ndarray:
    """``value`` as float32, refusing complex, text or object arrays, NaN and inf."""
    if value.dtype.kind not in "biuf":
        raise TypeError(
            f"{what} must hold real numbers. Received: dtype={value.dtype}; convert "
            "it to floats first (e.g. np.asarray(x, 'float32'))."
        )
    value = value.astype("float32", copy=False)
    check_finite(value, what)
    return value


def resolve_steps(inputs: dict, n_steps) -> int:
    """The number of steps to run: ``n_steps``, or the inputs' steps."""
    lengths = {v.shape[1] for v in inputs.values()}
    n_steps = check_steps(max(lengths) if n_steps is None else n_steps)
    if lengths - {1, n_steps}:
        raise ValueError(
            f"Inputs must have 1 step (held for all steps) or n_steps={n_steps} "
            f"steps. Received steps: {sorted(lengths)}"
        )
    return n_steps


def check_steps(n_steps) -> int:
    """``n_steps`` as an int, after checking that it is an integer >= 1."""
    return positive_integer(n_steps, "n_steps")


# --- data pipelines -------------------------------------------------------
def pipeline_kind(data) -> str | None:
    """``"pydataset"``, ``"tf.data"``, ``"torch"``, ``"generator"`` or None (arrays)."""
    if isinstance(data, keras.utils.PyDataset):
        return "pydataset"
    for parent in type(data).__mro__:
        module = parent.__module__ or ""
        if parent.__name__ == "DatasetV2" and module.startswith("tensorflow"):
            return "tf.data"
        if parent.__name__ == "DataLoader" and module.startswith("torch.utils.data"):
            return "torch"
    if inspect.isgenerator(data) or (
        hasattr(data, "__next__") and not isinstance(data, (np.ndarray, Mapping))
    ):
        return "generator"
    return None


class BatchRenamer:
    """Renames one batch ``(x, y, sample_weight)`` for a network's Keras model.

    Inputs are keyed by ``converter.inputs[...]`` or an input's name (or given
    alone for a single input, or as a list in the order of the inputs);
    targets are keyed by probes or their names (or given alone when one probe
    is trained). Keras receives dicts keyed by names. It holds names only, so
    that it can be pickled to the workers of a data pipeline.
    """

    def __init__(self, network, trained_probes):
        self.inputs = [node.name for node in network.input_nodes]
        self.probes = [probe.name for probe in network.probes]
        self.trained = [probe.name for probe in trained_probes]

    def inputs_by_name(self, x) -> dict:
        if isinstance(x, Mapping):
            return {self.input_name(k): v for k, v in x.items()}
        if isinstance(x, (list, tuple)) and len(self.inputs) > 1:
            if len(x) != len(self.inputs):
                raise ValueError(
                    f"This network has {len(self.inputs)} inputs {self.inputs}. "
                    f"Received: {len(x)} arrays"
                )
            return dict(zip(self.inputs, x))
        if len(self.inputs) != 1:
            raise ValueError(
                f"This network has {len(self.inputs)} inputs: give a dict keyed by "
                "converter.inputs[...] (or the input names "
                f"{self.inputs}). Received: x of type {type(x).__name__}"
            )
        return {self.inputs[0]: x}

    def targets_by_name(self, y) -> dict:
        if isinstance(y, (list, tuple)) and (
            _one_array(y) or len(y) == len(self.trained) > 1
        ):
            y = dict(zip(self.trained, y))  # in the order of the trained probes
        if not isinstance(y, Mapping):
            if len(self.trained) != 1:
                raise ValueError(
                    f"This network trains {len(self.trained)} probes: pass y as a "
                    f"dict keyed by them. Received: y of type {type(y).__name__}"
                )
            y = {self.trained[0]: y}
        targets = {self.probe_name(k): v for k, v in y.items()}
        missing = [name for name in self.trained if name not in targets]
        if missing:
            raise ValueError(
                f"No targets given for the trained probe(s) {missing}. Give them in "
                "y, or leave them out of compile's loss."
            )
        return {name: targets[name] for name in self.trained}

    def input_name(self, key) -> str:
        """The name of the input that ``key`` (a node or a name) is."""
        name = key.name if isinstance(key, InputNode) else key
        if name not in self.inputs:
            raise KeyError(
                f"{key!r} is not an input of this network. Use converter.inputs[...] "
                f"(or the input names {self.inputs}). Received: key={key!r}"
            )
        return name

    def probe_name(self, key) -> str:
        """The name of the probe that ``key`` (a probe or a name) is."""
        name = key.name if isinstance(key, Probe) else key
        if name not in self.probes:
            raise KeyError(
                f"{key!r} is not a probe of this network. Use converter.outputs[...] "
                "or a snnify.Probe created inside `with converter.net:` (or the "
                f"probe names {self.probes}). Received: key={key!r}"
            )
        return name

    def __call__(self, *batch):
        x, y, weights = keras.utils.unpack_x_y_sample_weight(
            batch[0] if len(batch) == 1 else batch
        )
        x = self.inputs_by_name(x)
        if y is None:
            return (x,)
        y = self.targets_by_name(y)
        return (x, y) if weights is None else (x, y, weights)


class _RenamedPyDataset(keras.utils.PyDataset):
    """A PyDataset whose batches are renamed for Keras (workers kept)."""

    def __init__(self, dataset, rename: BatchRenamer):
        super().__init__(
            workers=dataset.workers,
            use_multiprocessing=dataset.use_multiprocessing,
            max_queue_size=dataset.max_queue_size,
        )
        self.dataset = dataset
        self.rename = rename

    def __getitem__(self, index):
        return self.rename(self.dataset[index])

    @property
    def num_batches(self):
        return self.dataset.num_batches

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


class _RenamedCollate:
    """A DataLoader's collate function followed by the renaming (picklable)."""

    def __init__(self, collate, rename: BatchRenamer):
        self.collate = collate
        self.rename = rename

    def __call__(self, samples):
        return self.rename(self.collate(samples))


def _renamed_loader(loader, rename: BatchRenamer):
    """A DataLoader like ``loader`` (same sampler, workers) with renamed batches."""
    data = sys.modules["torch.utils.data"]
    options = dict(
        num_workers=loader.num_workers,
        collate_fn=_RenamedCollate(loader.collate_fn, rename),
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
    )
    if isinstance(loader.dataset, data.IterableDataset):
        return data.DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            drop_last=loader.drop_last,
            **options,
        )
    return data.DataLoader(
        loader.dataset, batch_sampler=loader.batch_sampler, **options
    )


def keras_pipeline(data, rename: BatchRenamer):
    """The pipeline ``data`` with batches renamed by ``rename``, for Keras."""
    kind = pipeline_kind(data)
    if kind == "pydataset":
        return _RenamedPyDataset(data, rename)
    if kind == "tf.data":  # renaming is Python on the batch's structure only
        autograph = sys.modules["tensorflow"].autograph
        return data.map(autograph.experimental.do_not_convert(rename))
    if kind == "torch":
        return _renamed_loader(data, rename)
    if kind == "generator":
        return (rename(batch) for batch in data)
    raise TypeError(f"Not a data pipeline. Received: type={type(data).__name__}")


def _batches(data):
    """An iterator over a pipeline's batches (tf.data's as NumPy arrays)."""
    return data.as_numpy_iterator() if pipeline_kind(data) == "tf.data" else iter(data)


def _joined(batches: list):
    """Batches (arrays, or lists or dicts of them) as one."""
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *batches)


def numpy_batches(data, targets: bool = False):
    """The inputs ``x`` of every batch of a pipeline, as NumPy arrays (with
    ``targets``: ``(x, y)``, ``y`` None where the batches have none)."""
    kind = pipeline_kind(data)
    for batch in _batches(data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        x = keras.tree.map_structure(_to_numpy, x)
        if not targets:
            yield x
        elif y is None:
            yield x, None
        else:
            yield x, keras.tree.map_structure(_to_numpy, y)
    if kind == "pydataset":
        data.on_epoch_end()


def yields_targets(data) -> bool:
    """Whether a pipeline's batches hold targets, ``(x, y)`` (arrays: False).

    The first batch is read; a Python generator, which could not be read
    again, is not (True).
    """
    kind = pipeline_kind(data)
    if kind in (None, "generator"):
        return kind == "generator"
    batch = next(_batches(data), None)
    return (
        batch is not None and keras.utils.unpack_x_y_sample_weight(batch)[1] is not None
    )


def check_readable_again(data, fix: str) -> None:
    """Refuse a Python generator, which cannot be read more than once."""
    if pipeline_kind(data) == "generator":
        raise TypeError(
            f"A Python generator cannot be read more than once. {fix} "
            f"Received: type={type(data).__name__}"
        )


def input_batches(data, batch_size: int):
    """The inputs ``x`` of ``data``, batch after batch, as NumPy arrays.

    ``data`` is arrays (or a list or dict of them), cut into batches of
    ``batch_size``, or a data pipeline, read once in its own batches.

    Example:
        >>> [batch.shape for batch in input_batches(np.zeros((5, 3)), 2)]
        [(2, 3), (2, 3), (1, 3)]
    """
    if pipeline_kind(data) is not None:
        yield from numpy_batches(data)
        return
    data = keras.tree.map_structure(np.asarray, data)
    for start in range(0, len(keras.tree.flatten(data)[0]), batch_size):
        part = slice(start, start + batch_size)
        yield keras.tree.map_structure(lambda a, part=part: a[part], data)


def whole_inputs(data):
    """The inputs ``x`` of all of ``data``: arrays as they are, a pipeline read once.

    Calibration and statistics take all their examples at once: a data
    pipeline (batches ``x``, ``(x, y)`` or ``(x, y, sample_weight)``) is read
    whole into arrays, so give it the few hundred examples they need
    (``dataset.take(5)``).

    Example:
        >>> batches = iter([(np.zeros((2, 3)), [0, 1]), (np.ones((1, 3)), [2])])
        >>> whole_inputs(batches).shape
        (3, 3)
    """
    return whole_examples(data, targets=False)[0]


def whole_examples(data, targets: bool = True) -> tuple:
    """``(x, y)`` of all of ``data``, as :func:`whole_inputs` reads them.

    ``y`` is None for arrays, for a pipeline of ``x`` only, and where the
    batches' targets do not join into arrays (or ``targets`` is False).

    Example:
        >>> batches = iter([(np.zeros((2, 3)), np.array([0, 1])), (np.ones((1, 3)), np.array([2]))])
        >>> whole_examples(batches)[1]
        array([0, 1, 2])
    """
    if pipeline_kind(data) is None:
        return data, None
    if targets:
        batches = list(numpy_batches(data, targets=True))
    else:
        batches = [(x, None) for x in numpy_batches(data)]
    if not batches:
        raise ValueError(
            "The data pipeline gave no batches: calibration and statistics need "
            f"examples. Received: {type(data).__name__}"
        )
    x = _joined([x for x, _ in batches])
    if not targets or any(y is None for _, y in batches):
        return x, None
    try:
        return x, _joined([y for _, y in batches])
    except (ValueError, TypeError):  # e.g. targets of another structure per batch
        return x, None


def first_examples(data, n: int):
    """Up to ``n`` examples of the inputs ``x`` of ``data``, as NumPy arrays.

    ``data`` is what ``model.fit`` takes as ``x``: arrays (or a list or dict
    of them) or a data pipeline, read batch by batch until ``n`` examples are
    found. A Python generator cannot be read twice, so it is refused.

    Example:
        >>> first_examples(np.zeros((5, 3)), 2).shape
        (2, 3)
    """
    check_readable_again(
        data,
        "Pass the examples as well, e.g. calibration_data=x_train[:1000], or "
        "give a keras.utils.PyDataset.",
    )
    if pipeline_kind(data) is None:
        return keras.tree.map_structure(lambda a: np.asarray(a)[:n], data)
    batches, found = [], 0
    for batch in numpy_batches(data):
        batches.append(batch)
        found += len(keras.tree.flatten(batch)[0])
        if found >= n:
            break
    return keras.tree.map_structure(lambda a: a[:n], _joined(batches))


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
    return np.asarray(value)
