"""Quantisation-aware fine-tuning with clip-floor-shift (QCFS) activations.

A ReLU network converted to integrate-and-fire neurons makes errors at few
steps because ``T`` steps can only count ``0, 1, ..., T`` spikes: the spiking
layer quantises its activation. Training the network with that quantisation
in place removes most of the mismatch. The clip-floor-shift activation (Bu et
al., ICLR 2022) of ``L`` levels and threshold ``lambda`` is

    ``QCFS(x) = lambda * clip(floor(x * L / lambda + 0.5) / L, 0, 1)``

and an integrate-and-fire neuron with threshold ``lambda`` (``scale = 1 /
(lambda * dt)``) and initial voltage half a threshold, driven by a constant
``x`` for ``T = L`` steps, emits ``floor(x * L / lambda + 0.5)`` spikes: its
mean output over the steps is ``QCFS(x)`` for every ``x < lambda * (1 + 1 /
(2 L))`` (above, the ANN saturates at ``lambda`` while the neuron keeps
firing). Deeper layers see spike trains instead of constants; there the
equality holds only on average for these neurons: input spikes that arrive
early make a neuron fire although its mean input rounds to zero. A
:class:`~snnify.SignedIntegrateAndFire` neuron takes such spikes back, so its
count after ``T = L`` steps is QCFS of its mean input whatever the timing;
with one net spike per step at most it saturates as QCFS does, and the
spiking network computes the quantised network exactly.
:func:`convert_quantized` uses it by default. Allowed ``K`` spikes per step,
each worth ``lambda / K``, the same neuron counts the same ``L`` levels in
``T = L / K`` steps (``convert_quantized(model, n_steps=T)``).

Gradients pass through the floor unchanged (straight-through estimator), so
``lambda`` is trained with the weights.

Example:
    >>> import keras, numpy as np, snnify
    >>> inp = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, activation="relu")(inp)
    >>> model = keras.Model(inp, keras.layers.Dense(2)(hidden))
    >>> quantized = snnify.quantize_model(model, levels=4, initial_threshold=2.0)
    >>> [type(layer).__name__ for layer in quantized.layers]
    ['InputLayer', 'Dense', 'QCFS', 'Dense']
    >>> converter = snnify.convert_quantized(quantized)
    >>> converter.layers[quantized.layers[2]].scale
    500.0
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import keras
import numpy as np

from snnify.calibrate import calibrate, layer_activations
from snnify.converter import Converter
from snnify.inputs import (
    check_readable_again,
    first_examples,
    input_batches,
    pipeline_kind,
    yields_targets,
)
from snnify.keras_graph import (
    FlatGraph,
    OperationLayer,
    activation_name,
    functional_graph,
    is_nested_model,
    nodes_in_order,
    operation_layer,
    relu_form,
    set_weights,
)
from snnify.layers import QCFS, clip_floor_shift
from snnify.neurons import IntegrateAndFire, NeuronType, SignedIntegrateAndFire
from snnify.validation import positive_integer, positive_number

THRESHOLD_INITS = ("percentile", "min_error")
# the thresholds "min_error" tries: percentiles of the positive activations,
# denser towards the maximum, and the 99.9th percentile of "percentile"
SEARCH_PERCENTILES = np.unique(
    np.concatenate([100 - np.geomspace(50, 0.01, 60), [99.9, 100]])
)
# most activation values the search of one threshold uses
MAX_SEARCH_VALUES = 2**20
# QCFS thresholds are trained in units of this many times their initial value
# (docs/low-latency.md: the thresholds do not move in the activations' units)
RELATIVE_THRESHOLD_UNIT = 100.0


def min_error_threshold(values, levels: int, seed: int = 0) -> float:
    """The QCFS threshold that quantises ``values`` with the least squared error.

    Among the :data:`SEARCH_PERCENTILES` of the positive ``values`` (50 to
    100), the ``lambda`` that minimises the mean of ``(QCFS_{L, lambda}(a) -
    relu(a))**2`` over ``values``. A high percentile wastes the ``L`` levels
    on the few largest activations and rounds most of the others to 0; a low
    one clips many. Returns 0.0 when no value is positive.

    Args:
        values: activations (any shape).
        levels: quantisation levels ``L``.
        seed: seed of the subsampling to ``MAX_SEARCH_VALUES`` values.

    Example:
        >>> import numpy as np
        >>> a = np.random.default_rng(0).exponential(1.0, 100_000)
        >>> round(float(np.percentile(a, 99.9)), 2)  # the percentile start
        7.01
        >>> round(min_error_threshold(a, levels=4), 2)  # the least-error start
        3.86
    """
    levels = positive_integer(levels, "levels")
    values = np.ravel(np.asarray(values, "float32"))
    positive = values[values > 0]
    if positive.size == 0:
        return 0.0
    if positive.size > MAX_SEARCH_VALUES:
        rng = np.random.default_rng(seed)
        positive = rng.choice(positive, MAX_SEARCH_VALUES, replace=False)
    candidates = np.unique(np.percentile(positive, SEARCH_PERCENTILES))
    candidates = candidates[candidates > 0]
    values = keras.ops.convert_to_tensor(positive)
    errors = []
    for threshold in candidates:
        quantized = clip_floor_shift(values, float(threshold), levels)
        errors.append(np.mean((keras.ops.convert_to_numpy(quantized) - positive) ** 2))
    return float(candidates[int(np.argmin(errors))])


# what ``replace="relu"`` replaces: ReLU, ReLU6 and ReLU(max_value=m) layers
RELU_FORMS = ("relu", "relu6", "clipped_relu")
# activations that are not one function of each value: never replaced
NOT_ELEMENTWISE = ("linear", "softmax", "log_softmax", "sparsemax", "glu")
# layers that are only an activation: QCFS takes their place
ACTIVATION_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
)


def activation_form(layer) -> str | None:
    """The name of the elementwise activation that ``layer`` applies, or None.

    Example:
        >>> import keras
        >>> [activation_form(layer) for layer in (keras.layers.Dense(2, "gelu"),
        ...     keras.layers.ReLU(6.0), keras.layers.PReLU(), keras.layers.Softmax())]
        ['gelu', 'relu6', 'prelu', None]
    """
    if isinstance(layer, keras.layers.TimeDistributed):  # at every position
        return activation_form(layer.layer)
    if isinstance(layer, keras.layers.RNN):  # inside the recurrence, not after
        return None
    if isinstance(layer, keras.layers.ReLU):
        return relu_form(layer) or "relu_variant"  # a threshold, or clipped and leaky
    for layer_type, name in (
        (keras.layers.LeakyReLU, "leaky_relu"),
        (keras.layers.PReLU, "prelu"),
        (keras.layers.ELU, "elu"),
    ):
        if isinstance(layer, layer_type):
            return name
    name = activation_name(getattr(layer, "activation", None))
    return None if name in NOT_ELEMENTWISE else name


def replaced_forms(replace) -> frozenset | None:
    """The activation names ``replace`` selects (None: every one).

    Example:
        >>> sorted(replaced_forms(["relu", "gelu"]))
        ['clipped_relu', 'gelu', 'relu', 'relu6']
    """
    if replace == "all":
        return None
    names = [replace] if isinstance(replace, str) else list(replace)

    def known(name):
        return name in ("prelu", "relu_variant") or (
            name not in NOT_ELEMENTWISE and hasattr(keras.activations, name)
        )

    unknown = [name for name in names if not isinstance(name, str) or not known(name)]
    if unknown or not names:
        raise ValueError(
            "replace must be 'relu', 'all' or a list of the names of elementwise "
            "activations (e.g. ['relu', 'gelu', 'silu', 'leaky_relu', 'prelu', "
            f"'elu', 'tanh']). Received: replace={replace!r}"
        )
    if "relu" in names:
        names += RELU_FORMS
    return frozenset(names)


def _clip(layer, form) -> float:
    """Where ``layer``'s activation clips (inf: nowhere)."""
    if isinstance(layer, keras.layers.TimeDistributed):
        return _clip(layer.layer, form)
    if isinstance(layer, keras.layers.ReLU) and layer.max_value is not None:
        return float(layer.max_value)
    return {"relu6": 6.0, "hard_sigmoid": 1.0, "sigmoid": 1.0}.get(form, math.inf)


def _selection(graph: FlatGraph, replace):
    """``selected(layer) -> clip or None``: the activations QCFS replaces.

    Activations other than ReLU's that give the model's outputs (a softmax or
    a sigmoid read as probabilities) are kept.
    """
    forms = replaced_forms(replace)
    output_keys = {key for _, key in graph.outputs}
    outputs = {id(c.layer) for c in graph.calls if output_keys & set(c.outputs)}

    def selected(layer):
        form = activation_form(layer)
        if form is None or (forms is not None and form not in forms):
            return None
        if form not in RELU_FORMS and id(layer) in outputs:
            return None
        return _clip(layer, form)

    return selected


def _replaced_neurons(model, layers, selected) -> Converter:
    """``model`` converted with the activations QCFS replaces as neurons.

    Calibrating it gives their activations (ReLU6's clipped at 6).
    """
    forms = {activation_form(layer) for layer in layers if selected(layer)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the conversion's, not quantisation's
        neuron = IntegrateAndFire()
        swaps = {name: neuron for name in forms - {"relu", "relu_variant"}}
        return Converter(model, swap_activations=swaps)


def quantize_model(
    model,
    levels: int = 4,
    calibration_data=None,
    percentile: float = 99.9,
    initial_threshold: float = 1.0,
    threshold_init: str = "percentile",
    relative_threshold_unit: float | None = RELATIVE_THRESHOLD_UNIT,
    replace="relu",
) -> keras.Model:
    """A copy of ``model`` whose ReLU and ReLU6 activations are :class:`QCFS` layers.

    Layers with ``activation="relu"`` (or ``"relu6"``) become the same layer
    with a linear activation followed by a ``QCFS`` layer (named
    ``<layer>_qcfs``); ``Activation("relu")``, plain ``ReLU`` and clipped
    ``ReLU(max_value=m)`` layers become ``QCFS`` layers. QCFS saturates at its
    threshold, which starts at ``m`` at most where it replaces a clipped ReLU
    (6 for ReLU6).
    Nested models (a ``keras.applications`` base inside a classifier) are
    copied the same way, under their own names. Weights are copied; the
    original model is not changed.

    Args:
        model: a functional or Sequential Keras model.
        levels: quantisation levels ``L`` (the steps the spiking network will
            run).
        calibration_data: if given, each threshold starts from its layer's
            activations on these inputs (see ``threshold_init``), else at
            ``initial_threshold``.
        percentile: the percentile of ``threshold_init="percentile"``.
        initial_threshold: the initial threshold without calibration data.
        threshold_init: how the activations set the thresholds:
            ``"percentile"``, the ``percentile`` of the layer's positive
            activations (see :func:`snnify.calibrate`), or ``"min_error"``,
            the threshold whose ``levels`` levels quantise them with the
            least squared error (:func:`min_error_threshold`).
        relative_threshold_unit: each QCFS layer stores and trains its
            threshold in units of this many times its initial value
            (:class:`~snnify.QCFS`'s ``threshold_unit``), so that Adam(1e-4)
            moves it by up to 1 % per update with the default 100. None:
            in the units of the activations, where Adam moves a threshold of
            100 by 1e-4 per update: hardly at all in a few epochs.
        replace: the activations that QCFS replaces: ``"relu"`` (ReLU and
            ReLU6), ``"all"`` (every elementwise activation: GELU, SiLU,
            ELU, leaky ReLU, PReLU, sigmoid, tanh...) or a list of names
            (``["relu", "gelu"]``). Fine-tuning teaches the network the new
            activation; the farther it is from a ReLU, the more epochs that
            takes (docs/low-latency.md, "Networks without ReLUs"). An
            activation other than ReLU's that gives a model output (a
            softmax, a sigmoid read as a probability) is kept.

    Returns:
        a new functional ``keras.Model`` (not compiled).
    """
    _check_thresholds(threshold_init, relative_threshold_unit)
    graph = FlatGraph(model)
    layers = list(graph.layers.values())
    selected = _selection(graph, replace)
    _check_selected(model, layers, selected, replace)
    thresholds = {}
    if calibration_data is not None:
        neurons = _replaced_neurons(model, layers, selected)
        thresholds = _initial_thresholds(
            neurons, calibration_data, levels, percentile, threshold_init
        )

    def quantized_clone(layer):
        if is_nested_model(layer):
            return _quantized_copy(layer, quantized_clone, layer.name), None
        threshold = thresholds.get(layer.name, initial_threshold)
        return _quantized_clone(
            layer, selected(layer), levels, threshold, relative_threshold_unit
        )

    return _quantized_copy(model, quantized_clone, f"{model.name}_qcfs")


def _check_selected(model, layers, selected, replace) -> None:
    """Refuse a model with nothing to quantise."""
    if any(selected(layer) or isinstance(layer, QCFS) for layer in layers):
        return
    if replace == "relu":
        raise ValueError(
            f"Model {model.name!r} has no ReLU to quantise: QCFS layers replace "
            "ReLU and ReLU6 (activation='relu' or 'relu6', ReLU(), "
            "ReLU(max_value=m) and Activation('relu') layers, keras.ops.relu). "
            "Pass replace='all' to replace its other activations too (GELU, "
            "SiLU, leaky ReLU...), or convert it without quantising: "
            "snnify.convert_for_steps(model, data, n_steps) (leaky ReLUs "
            "become neurons with negative spikes), or snnify.Converter with "
            "swap_activations (docs/layers.md)."
        )
    fix = "" if replace == "all" else " Pass replace='all' or their names."
    raise ValueError(
        f"Model {model.name!r} has no activation that replace={replace!r} "
        "selects (activations other than ReLU's that give its outputs are "
        f"kept).{fix}"
    )


def _quantized_copy(model, quantized_clone, name) -> keras.Model:
    """A copy of ``model`` built from ``quantized_clone(layer)`` of its layers.

    ``quantized_clone`` returns ``(clone or None, QCFS or None)``; a nested
    model's clone is its own quantised copy, so its ReLUs become QCFS too.
    """
    graph = functional_graph(model)
    new_tensors = {}  # id(old tensor) -> new tensor
    clones = {}  # id(old layer) -> (clone or None, QCFS or None)
    for keras_node in nodes_in_order(graph):
        layer = keras_node.operation
        if keras_node.is_input:
            tensor = keras_node.outputs[0]
            new_tensors[id(tensor)] = keras.Input(
                shape=tensor.shape[1:], dtype=tensor.dtype, name=layer.name
            )
            continue
        args, kwargs = keras_node.arguments.fill_in(
            {id(t): new_tensors[id(t)] for t in keras_node.input_tensors}
        )
        if not isinstance(layer, keras.layers.Layer):  # x + y, keras.ops.relu(x)
            layer = operation_layer(keras_node)
            if isinstance(layer, OperationLayer):
                new_tensors[id(keras_node.outputs[0])] = layer.operation(
                    *args, **kwargs
                )
                continue
        if id(layer) not in clones:
            clones[id(layer)] = quantized_clone(layer)
        clone, qcfs = clones[id(layer)]
        if clone is None:  # an Activation or ReLU layer: only the QCFS remains
            outputs = qcfs(args[0])
        else:
            first_call = not clone.built
            outputs = clone(*args, **kwargs)
            if first_call and not is_nested_model(layer):
                set_weights(clone, layer.get_weights())
            if qcfs is not None:
                outputs = qcfs(outputs)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for old, new in zip(keras_node.outputs, outputs):
            new_tensors[id(old)] = new

    def copied(structure):  # one tensor, a list or a dict, as the model has
        return keras.tree.map_structure(lambda t: new_tensors[id(t)], structure)

    return keras.Model(copied(graph.input), copied(graph.output), name=name)


def _check_thresholds(threshold_init, relative_threshold_unit) -> None:
    """The errors of :func:`quantize_model`'s threshold arguments."""
    if threshold_init not in THRESHOLD_INITS:
        raise ValueError(
            f"threshold_init must be one of {THRESHOLD_INITS}. Received: "
            f"threshold_init={threshold_init!r}"
        )
    if relative_threshold_unit is not None:
        positive_number(
            relative_threshold_unit, "relative_threshold_unit", " (or None)"
        )


def _initial_thresholds(neurons, data, levels, percentile, threshold_init) -> dict:
    """``{layer name: threshold}`` of the replaced activations active on ``data``.

    ``neurons``: the model converted with those activations as neurons.
    """
    if threshold_init == "percentile":
        report = calibrate(neurons, data, percentile=percentile)
        found = {c.layer.name: float(c.reference) for c in report.layers}
    else:
        found = {
            name: min_error_threshold(values, levels)
            for name, values in layer_activations(neurons, data).items()
        }
    return {key: value for key, value in found.items() if value > 0}


def _quantized_clone(layer, clip, levels, threshold, relative_unit):
    """``(clone without its activation or None, QCFS or None)`` for one layer.

    ``clip``: where the replaced activation clips, or None to keep it.
    """
    if clip is None:
        return type(layer).from_config(layer.get_config()), None
    threshold = min(threshold, clip)
    unit = None if relative_unit is None else relative_unit * threshold
    qcfs = QCFS(levels, threshold, threshold_unit=unit, name=f"{layer.name}_qcfs")
    if isinstance(layer, ACTIVATION_LAYERS):
        return None, qcfs
    config = layer.get_config()
    if isinstance(layer, keras.layers.TimeDistributed):
        if isinstance(layer.layer, ACTIVATION_LAYERS):
            return None, qcfs  # QCFS acts on every position as it is
        config["layer"]["config"]["activation"] = "linear"
    else:
        config["activation"] = "linear"
    return type(layer).from_config(config), qcfs


def recompute_batch_statistics(model, data, batch_size: int = 100) -> list[str]:
    """Set the moving statistics of ``model``'s batch normalisation to ``data``'s.

    Training leaves a ``BatchNormalization`` layer's moving mean and
    variance as an exponential average of the statistics of recent batches,
    taken while the weights before it were still changing. After a short
    fine-tuning they can differ from the statistics of the final weights, and
    quantised activations magnify the difference: a residual network
    fine-tuned with 8-level QCFS classified 64.6 % of 2,000 test images
    right in inference mode and 96.2 % with batch statistics. This re-estimates
    them, one layer after the other in the order of the model: each layer's
    input over ``data`` is computed with the layers before it already
    updated, and its per-channel mean and (biased) variance become the
    moving statistics.

    Args:
        model: a Keras functional or sequential model; its
            ``BatchNormalization`` layers, nested models' included, must
            each be called once.
        data: inputs, e.g. a thousand training examples: arrays (or a
            list or dict of them) or a data pipeline as ``model.predict``
            takes, not a Python generator (it is read once per layer).
        batch_size: examples per batch (arrays only; a pipeline keeps its
            own batches).

    The layers before each batch normalisation run again for it, eagerly and
    one batch at a time, so memory stays that of one batch and the time grows
    with the square of the depth: 18-22 s for ResNet50's 53 layers on 64
    images of 32x32 on a 2-core CPU (48-52 s compiled, model by model).

    Returns:
        the names of the layers updated.

    Example:
        >>> import keras, numpy as np
        >>> inp = keras.Input((3,))
        >>> model = keras.Model(inp, keras.layers.BatchNormalization(name="bn")(inp))
        >>> x = np.arange(12, dtype="float32").reshape(4, 3)
        >>> recompute_batch_statistics(model, x)
        ['bn']
        >>> keras.ops.convert_to_numpy(model.layers[1].moving_mean)
        array([4.5, 5.5, 6.5], dtype=float32)
    """
    _check_called_once(model)
    check_readable_again(data, "Pass arrays, e.g. x_train[:1000], or a PyDataset.")
    return _recompute_batch_statistics(model, data, batch_size)


def _check_called_once(model) -> None:
    """Refuse batch normalisation layers called more than once."""
    calls = Counter(
        call.layer
        for call in FlatGraph(model).calls
        if isinstance(call.layer, keras.layers.BatchNormalization)
    )
    shared = {layer.name for layer, count in calls.items() if count > 1}
    if shared:
        raise ValueError(
            "Batch normalisation layers called more than once have no single "
            f"input to take statistics from. Received: layers={sorted(shared)}. "
            "Pass batch_statistics=False to fine_tune, or give each call its own "
            "layer."
        )


def _recompute_batch_statistics(model, data, batch_size) -> list[str]:
    """:func:`recompute_batch_statistics`, nested models entered in turn."""
    graph = functional_graph(model)
    updated = []
    for node in nodes_in_order(graph):
        layer = node.operation
        nested = is_nested_model(layer)
        if not (nested or isinstance(layer, keras.layers.BatchNormalization)):
            continue
        inputs = list(node.input_tensors)
        before = keras.Model(_one_or_list(graph.inputs), _one_or_list(inputs))
        if nested:
            values = before.predict(data, batch_size=batch_size, verbose=0)
            updated += _recompute_batch_statistics(layer, values, batch_size)
            continue
        mean, variance = _channel_moments(before, data, layer.axis, batch_size)
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)
        updated.append(layer.name)
    return updated


def _one_or_list(tensors: list):
    """One tensor alone, as a model of one input is called; else the list."""
    return tensors[0] if len(tensors) == 1 else tensors


def _channel_moments(model, data, axis: int, batch_size: int):
    """Mean and biased variance over ``data`` of each channel of ``model``'s output.

    The model runs eagerly, batch after batch: compiling one model per batch
    normalisation layer cost more than running it, and only one batch's
    output is held at a time. The batches' moments are pooled in float64
    (Chan et al.'s parallel algorithm).
    """
    count, mean, sum_squares = 0, 0.0, 0.0
    for batch in input_batches(data, batch_size):
        values = keras.ops.convert_to_numpy(model(batch, training=False))
        values = np.moveaxis(values, axis, -1).astype("float64")
        values = values.reshape(-1, values.shape[-1])
        n, batch_mean = len(values), values.mean(axis=0)
        delta = batch_mean - mean
        sum_squares += ((values - batch_mean) ** 2).sum(axis=0)
        sum_squares += delta**2 * count * n / (count + n)
        mean += delta * n / (count + n)
        count += n
    return mean, sum_squares / count


def fine_tune(
    model,
    x,
    y=None,
    levels: int = 4,
    epochs: int = 2,
    calibration_data=None,
    optimizer=None,
    loss=None,
    metrics=None,
    threshold_init: str = "percentile",
    relative_threshold_unit: float | None = RELATIVE_THRESHOLD_UNIT,
    batch_statistics: bool = True,
    replace="relu",
    **fit_kwargs,
):
    """Quantise ``model``'s ReLU and ReLU6 (:func:`quantize_model`) and train it.

    Args:
        model: a trained Keras model.
        x, y: training data, as for ``model.fit``: arrays or a data pipeline
            (``keras.utils.PyDataset``, ``tf.data.Dataset``...; ``y=None``).
        levels: quantisation levels (the spiking network's steps).
        epochs: epochs of fine-tuning. On a small training set give it
            about as many as the model's own training: 2 epochs on 1,200
            images are 76 updates, too few to recover from the quantisation
            (docs/low-latency.md, "How long to fine-tune").
        calibration_data: inputs that set the initial thresholds and, after
            training, the batch statistics (default: the first 1000 examples
            of ``x``; pass them when ``x`` is a Python generator).
        optimizer: default ``keras.optimizers.Adam(1e-4)``.
        loss, metrics: default: those ``model`` was compiled with (the
            metrics: accuracy if it has none and one output).
        threshold_init: how the calibration data sets the initial thresholds
            (see :func:`quantize_model`).
        relative_threshold_unit: the unit of the trained thresholds, in
            initial thresholds (see :func:`quantize_model`).
        batch_statistics: after training, re-estimate the moving statistics
            of the batch normalisation layers on ``calibration_data``
            (:func:`recompute_batch_statistics`), which a short fine-tuning
            leaves behind the weights.
        replace: the activations QCFS replaces: ``"relu"``, ``"all"`` or a
            list of names (see :func:`quantize_model`).
        **fit_kwargs: passed on to ``model.fit`` (``batch_size``,
            ``validation_data``...).

    Returns:
        ``(quantized_model, history)``.
    """
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError(
            f"Model {model.name!r} was not compiled: pass the loss to fine_tune, "
            "e.g. loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)."
        )
    if y is None and not yields_targets(x):
        raise ValueError(
            "fine_tune trains the quantised network on targets, and none were "
            "given: pass them, fine_tune(model, x, y), or a data pipeline of "
            "(x, y) batches. Received: y=None"
            + (", a pipeline of x only" if pipeline_kind(x) else "")
        )
    if batch_statistics:
        _check_called_once(model)  # before training, which the error would lose
    if calibration_data is None:
        calibration_data = first_examples(x, 1000)
    quantized = quantize_model(
        model,
        levels,
        calibration_data=calibration_data,
        threshold_init=threshold_init,
        relative_threshold_unit=relative_threshold_unit,
        replace=replace,
    )
    if metrics is None:
        metrics = _compiled_metrics(model)
    quantized.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-4), loss=loss, metrics=metrics
    )
    history = quantized.fit(x, y, epochs=epochs, **fit_kwargs)
    if batch_statistics:  # layers called once: checked before training
        _recompute_batch_statistics(quantized, calibration_data, batch_size=100)
    return quantized, history


def _compiled_metrics(model):
    """The metrics ``model`` was compiled with (accuracy if none, one output)."""
    config = model.get_compile_config() if model.compiled else None
    metrics = (config or {}).get("metrics")
    if metrics:
        return keras.saving.deserialize_keras_object(metrics)
    return ["accuracy"] if len(functional_graph(model).outputs) == 1 else None


def has_qcfs_layers(model) -> bool:
    """Whether ``model`` has :class:`QCFS` layers, nested models' included.

    Example:
        >>> import keras
        >>> inp = keras.Input((4,))
        >>> inner = keras.Model(inp, QCFS(levels=4)(inp))
        >>> outer_input = keras.Input((4,))
        >>> has_qcfs_layers(keras.Model(outer_input, inner(outer_input)))
        True
    """
    return any(isinstance(layer, QCFS) for layer in FlatGraph(model).layers.values())


def qcfs_neuron(spikes_per_step: int = 1) -> NeuronType:
    """The default neuron of QCFS layers: exact at ``T = levels / spikes_per_step``."""
    return SignedIntegrateAndFire(max_spikes_per_step=spikes_per_step)


def quantization_levels(report) -> int:
    """The levels ``L`` shared by the QCFS layers of a calibration report.

    ``report`` is :func:`snnify.calibrate`'s, which finds the QCFS layers
    wherever the converter does (nested models included).

    Example:
        >>> import keras, snnify
        >>> inp = keras.Input((4,))
        >>> model = keras.Model(inp, QCFS(levels=8)(inp))
        >>> quantization_levels(snnify.calibrate(model))
        8
    """
    levels = {c.layer.levels for c in report.layers if c.source == "qcfs"}
    if not levels:
        raise ValueError(
            "The model has no QCFS layers. Quantise it first with "
            "snnify.fine_tune(model, x, y, levels=...) or snnify.quantize_model."
        )
    if len(levels) != 1:
        raise ValueError(
            "The model needs QCFS layers that share one number of levels. "
            f"Received: levels={sorted(levels)}. Quantise it with "
            "snnify.quantize_model(model, levels=...) or snnify.fine_tune."
        )
    return levels.pop()


def spikes_per_step_for(levels: int, n_steps: int) -> int:
    """The spikes per step that count ``levels`` levels in ``n_steps`` steps.

    Example:
        >>> spikes_per_step_for(8, 4)
        2
    """
    n_steps = positive_integer(n_steps, "n_steps")
    if levels % n_steps:
        divisors = [t for t in range(1, levels + 1) if levels % t == 0]
        raise ValueError(
            f"A QCFS network of {levels} levels runs exactly in a number of steps "
            f"that divides {levels}: one of {divisors}. Received: n_steps={n_steps}. "
            f"Fine-tune with levels a multiple of {n_steps}, or run {levels} steps."
        )
    return levels // n_steps


def convert_quantized(
    model,
    neuron_type: NeuronType | None = None,
    calibration_data=None,
    dt: float = 0.001,
    n_steps: int | None = None,
    **converter_kwargs,
):
    """Convert a model with :class:`QCFS` layers into integrate-and-fire neurons.

    Every QCFS layer of ``L`` levels becomes ``neuron_type`` with threshold
    ``lambda / K`` (``scale = K / (lambda * dt)``), where ``K = L / n_steps``
    is the number of spikes a neuron may emit per step. Remaining ReLU layers,
    if any, are calibrated from ``calibration_data`` (see
    :func:`snnify.calibrate`). Run the result for ``n_steps`` steps and decode
    the mean over steps: with the default neurons its output is then the QCFS
    network's (up to float rounding). The net spike count of a neuron is the
    same whatever ``n_steps``: fewer steps send the same spikes in bursts.

    Args:
        model: a model with QCFS layers (e.g. from :func:`fine_tune`).
        neuron_type: the spiking neuron of the QCFS layers. Default:
            ``SignedIntegrateAndFire(max_spikes_per_step=K)`` (initial voltage
            0.5), exact at ``n_steps``, with negative spikes.
            ``IntegrateAndFire(initial_voltage=0.5)`` sends positive spikes
            only, as chips and NIR need, and is exact for a constant input
            only. The neurons of remaining ReLU layers are ``neuron_type``
            too, or by default ``SignedIntegrateAndFire()``: their threshold
            is a percentile, not a trained clip, so no bound clips the
            activations above it.
        calibration_data: inputs for the ReLU layers that are not QCFS.
        dt: the simulator's time step (s).
        n_steps: the steps the network will run, a divisor of the QCFS
            layers' levels ``L`` (e.g. 1, 2 or 4 for ``L = 4``). Default
            ``L``: one spike per step at most.
        **converter_kwargs: passed on to :class:`~snnify.Converter`
            (``synapse``...).

    Returns:
        the :class:`~snnify.Converter` (its ``calibration`` holds the scales).

    Example:
        >>> import keras, numpy as np, snnify
        >>> inp = keras.Input((3,))
        >>> model = keras.Model(inp, QCFS(levels=4, initial_threshold=2.0)(inp))
        >>> converter = snnify.convert_quantized(model, n_steps=2)
        >>> converter.layers[model.layers[1]].neuron_type.max_spikes_per_step
        2
        >>> x = np.array([[[0.3, 1.2, 2.0]]], "float32")
        >>> with snnify.Simulator(converter.net, progress_bar=False) as sim:
        ...     out = sim.predict(x, n_steps=2)[converter.outputs[model.outputs[0]]]
        >>> out.mean(axis=1), model.predict(x[:, 0], verbose=0)
        (array([[0.5, 1. , 2. ]], dtype=float32), array([[0.5, 1. , 2. ]], dtype=float32))
    """
    report = calibrate(model, calibration_data, dt=dt, n_steps=n_steps)
    spikes_per_step = 1
    if n_steps is not None:
        spikes_per_step = spikes_per_step_for(quantization_levels(report), n_steps)
        for c in report.layers:
            if c.source == "qcfs":
                c.scale *= spikes_per_step
    relu_neuron = neuron_type or SignedIntegrateAndFire()
    swaps = {"qcfs": neuron_type or qcfs_neuron(spikes_per_step)}
    if any(c.source == "percentile" for c in report.layers):
        swaps["relu"] = relu_neuron
    converter = Converter(
        model, swap_activations=swaps, scale_firing_rates=report, **converter_kwargs
    )
    converter.calibration = report
    return converter
