"""Training: what ``Simulator.compile``, ``fit`` and ``evaluate`` run.

Spiking neurons train through their rate functions (ReLU for the rectified
types, SoftLIF for LIF); Keras runs the training loop. Each simulator
compiles, fits and evaluates through a Keras model of its own
(:class:`SimulatorModel`: its optimizer, losses, ``dt`` and seed; the
network's weights); :class:`Training` gives :class:`~snnify.Simulator` its
``compile``, ``fit`` and ``evaluate``. :func:`regularize_firing_rates` adds a
loss on the firing rates of a layer, and :class:`StopOnNonFiniteLoss` undoes a
``fit`` whose loss stopped being finite.

Example:
    >>> import keras, snnify
    >>> inp = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, activation="relu")(inp)
    >>> converter = snnify.Converter(keras.Model(inp, keras.layers.Dense(2)(hidden)))
    >>> with converter.net:
    ...     regularizer = snnify.regularize_firing_rates(
    ...         converter.layers[hidden], target=(100, 250)
    ...     )
    >>> regularizer.low, regularizer.high
    (100.0, 250.0)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import keras
import numpy as np
from keras import ops

from snnify.graph import Node, Probe, current_network, needed_nodes
from snnify.inputs import (
    BatchRenamer,
    check_own_probes,
    check_steps,
    keras_pipeline,
    pipeline_kind,
    standardize_inputs,
)
from snnify.network import Network
from snnify.validation import check_targets, is_positive_number


class RateRegularizer:
    """A loss on the firing rates of a node, added while training.

    ``weight * mean((low - r)_+^2 + (r - high)_+^2)``: zero for rates inside
    ``[low, high]``, the mean squared error to ``target`` when
    ``low == high == target``.
    """

    def __init__(self, node: Node, low: float, high: float, weight: float):
        self.node = node
        self.low = float(low)
        self.high = float(high)
        self.weight = float(weight)

    def loss(self, rates):
        below = ops.relu(self.low - rates)
        above = ops.relu(rates - self.high)
        return self.weight * ops.mean(below * below + above * above)


def regularize_firing_rates(target_node, target=250.0, weight=1e-3) -> RateRegularizer:
    """Pull the firing rates of a layer towards ``target`` Hz while training.

    Call inside ``with converter.net:``. It is the one-line form of a probe on
    the layer with an MSE loss towards a constant target (and needs no target
    data in ``fit``).

    Args:
        target_node: ``converter.layers[layer]`` (or a Probe on it).
        target: a rate in Hz, or a range ``(low, high)`` of acceptable rates.
        weight: weight of this loss against the others.
    """
    network = current_network("regularize_firing_rates")
    node = target_node.target if isinstance(target_node, Probe) else target_node
    low, high = target if isinstance(target, (tuple, list)) else (target, target)
    for name, value in (("target", low), ("target", high), ("weight", weight)):
        if not (value == 0 or is_positive_number(value)):
            what = "a rate in Hz" if name == "target" else "the weight of the loss"
            raise ValueError(
                f"{name} must be finite and >= 0 ({what}). Received: {name}={value!r}"
            )
    if low > high:
        raise ValueError(
            f"The rate range must be (low, high) with low <= high. Received: target={target}"
        )
    regularizer = RateRegularizer(node, low, high, weight)
    network.rate_regularizers.append(regularizer)
    return regularizer


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training when the loss becomes NaN or infinite; keep the start's weights.

    ``Simulator.fit`` adds it. When a batch's loss is not finite, training
    stops (as ``keras.callbacks.TerminateOnNaN``), and at its end the
    network's weights and the optimizer's state are set back to what they
    were when this ``fit`` started, with a warning: a diverged run never
    leaves NaN weights behind.

    Attributes:
        stopped: ``(epoch, batch, loss)`` where training stopped, or None.
    """

    def __init__(self, variables):
        super().__init__()
        self.variables = list(variables)
        self.stopped = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped = None
        self._start = [ops.convert_to_numpy(v).copy() for v in self.variables]
        optimizer = self.model.optimizer
        built = optimizer is not None and optimizer.built
        self._optimizer_start = (
            [ops.convert_to_numpy(v).copy() for v in optimizer.variables]
            if built
            else None
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(float(loss)):
            return
        self.stopped = (self._epoch, batch, float(loss))
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped is None:
            return
        for variable, value in zip(self.variables, self._start):
            variable.assign(value)
        optimizer = self.model.optimizer
        start = self._optimizer_start
        for i, variable in enumerate(optimizer.variables if optimizer else []):
            fresh = start is None or i >= len(start)
            variable.assign(ops.zeros_like(variable) if fresh else start[i])
        epoch, batch, loss = self.stopped
        warnings.warn(
            f"Training stopped at epoch {epoch + 1}, batch {batch + 1}: the loss "
            f"became {loss}. The weights are back to those this fit started from. "
            "Lower the learning rate, check the targets and inputs, or clip "
            "gradients (compile(optimizer=keras.optimizers.Adam(clipnorm=1.0))).",
            RuntimeWarning,
            stacklevel=2,
        )


class SimulatorModel(keras.Model):
    """The ``keras.Model`` that one :class:`~snnify.Simulator` compiles and fits.

    Each simulator has its own: optimizer, losses and metrics, the probes it
    trains, ``dt`` and ``seed``. The weights are the network's, shared by
    every simulator of it.

    ``fit`` computes rates (time folded into the batch), or with the
    ``spike_aware_steps`` setting the mean of a spiking run (rate gradients
    backward). ``evaluate`` runs the spiking network as ``Simulator.predict``
    does, or computes rates if ``spiking`` is False.

    Attributes:
        network: the :class:`Network`.
        dt, seed: of the simulator's spiking runs.
        spiking: whether ``evaluate`` runs the spiking network.
        n_steps: steps of an evaluation whose inputs have one step.
    """

    def __init__(self, network: Network, dt: float, seed: int):
        super().__init__(name=f"{network.name}_model")
        self.network = network
        self.trained_probes: list = []
        self.dt = dt
        self.seed = seed
        self.spiking = True
        self.n_steps = None
        self.data_steps = None
        self._function_keys = {}
        self.built = True

    def call(self, inputs, training=None):
        net = self.network
        probes = self.trained_probes or net.probes
        steps = net.settings.spike_aware_steps
        if training and steps:
            outputs = net.run_spiking(
                inputs, probes, steps, self.dt, self.seed, training=True
            )
            return {k: ops.mean(v, axis=1, keepdims=True) for k, v in outputs.items()}
        if training or not self.spiking:
            return net.compute_rates(inputs, probes, training=bool(training))
        return net.run_spiking(inputs, probes, self.n_steps, self.dt, self.seed)

    def save(self, filepath, overwrite=True, **kwargs):
        """Save the network whole (``Network.save``), as ``ModelCheckpoint`` asks.

        The file loads with :func:`snnify.load_network`.
        """
        if kwargs:
            raise TypeError(
                "A simulator's model saves its network whole, with no other "
                f"options. Received: {', '.join(kwargs)}"
            )
        self.network.save(filepath, overwrite, n_steps=self.n_steps, dt=self.dt)

    def compile_probes(
        self, loss=None, metrics=None, loss_weights=None, weighted_metrics=None, **kw
    ):
        """``compile``, with losses, metrics and weights keyed by probes."""
        net = self.network
        names = BatchRenamer(net, net.probes)
        options = (loss, metrics, loss_weights, weighted_metrics)
        dicts = [d for d in options if isinstance(d, Mapping)]
        for d in dicts:
            check_own_probes(net, d, "compile's losses, metrics or weights")
        keyed = {names.probe_name(k) for d in dicts for k in d}
        if dicts:
            trained = [p for p in net.probes if p.name in keyed]
        else:
            trained = [p for p in net.probes if p.is_output] or net.probes
        self.trained_probes = trained

        def by_name(value):
            if isinstance(value, Mapping):
                return {names.probe_name(k): v for k, v in value.items()}
            if value is None or len(trained) == 1:
                return value
            return {p.name: value for p in trained}

        self.compile(
            loss=by_name(loss),
            metrics=by_name(metrics),
            loss_weights=by_name(loss_weights),
            weighted_metrics=by_name(weighted_metrics),
            **kw,
        )

    def keras_data(self, x, y, kwargs: dict, batch_size: int, n_steps=None):
        """``x``, ``y`` as Keras takes them: dicts keyed by names, or a pipeline.

        ``batch_size`` is the default for arrays (in ``kwargs``); arrays of
        targets are checked against the inputs (``n_steps``: of an evaluation).
        """
        if not self.compiled:
            raise RuntimeError("Call sim.compile(...) before sim.fit or sim.evaluate.")
        rename = BatchRenamer(self.network, self.trained_probes)
        if pipeline_kind(x) is not None:
            if y is not None:
                raise ValueError(
                    "With a data pipeline, give the targets in its batches, (x, y). "
                    f"Received: y of type {type(y).__name__}"
                )
            return keras_pipeline(x, rename), None
        kwargs.setdefault("batch_size", batch_size)
        x = {node.name: v for node, v in standardize_inputs(self.network, x).items()}
        if y is None:
            return x, None
        if isinstance(y, Mapping):
            check_own_probes(self.network, y, "y (the targets)")
        y = rename.targets_by_name(y)
        probes = {p.name: p for p in self.trained_probes}
        steps = {1, *(v.shape[1] for v in x.values()), n_steps or 1}
        batch = next(iter(x.values())).shape[0]
        return x, {
            name: check_targets(np.asarray(v), probes[name], batch, steps)
            for name, v in y.items()
        }

    def warn_one_step(self, x, n_steps) -> None:
        """Warn if evaluating arrays ``x`` runs a spiking network for one step."""
        if (
            not isinstance(x, dict)
            or (n_steps or max(v.shape[1] for v in x.values())) > 1
        ):
            return
        if any(node.stateful for node in needed_nodes(self.trained_probes)):
            warnings.warn(
                "Evaluating the spiking network for 1 step, which a network with "
                "spiking neurons or synapses cannot answer in. Give inputs with "
                "more steps or evaluate(..., n_steps=...), or evaluate the rates "
                "with spiking=False.",
                stacklevel=4,
            )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        y, sample_weight = _held(y, y_pred), _per_example(sample_weight)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, sample_weight = _held(y, y_pred), _per_example(sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def _stale(self, kind: str) -> bool:
        """Whether the compiled ``kind`` function read other options than now.

        Keras compiles ``call`` once and reuses it: a change of the options
        it reads (``dt``, ``seed``, settings, steps, probes, regularisers)
        must compile it again. So must other steps in the data: TensorFlow
        would trace again with an unknown number of steps, which the engine
        needs to plan its scan.
        """
        key = (
            self.dt,
            self.seed,
            self.spiking,
            self.n_steps,
            self.data_steps,
            tuple(p.name for p in self.trained_probes),
            tuple(sorted(self.network.settings.get_config().items())),
            tuple(id(r) for r in self.network.rate_regularizers),
        )
        stale = self._function_keys.get(kind, key) != key
        self._function_keys[kind] = key
        return stale

    def make_train_function(self, force=False):
        return super().make_train_function(force or self._stale("train"))

    def make_test_function(self, force=False):
        return super().make_test_function(force or self._stale("test"))


class Training:
    """``compile``, ``fit`` and ``evaluate`` of a :class:`~snnify.Simulator`.

    As Keras's ``Model`` takes them from its ``Trainer``: through the
    simulator's own ``keras_model``, with data keyed by snnify's inputs and
    probes. The simulator gives ``net``, ``keras_model``, ``minibatch_size``,
    ``progress_bar``, ``_check_open()`` (refuse a closed simulator) and
    ``_remember_weights()`` (keep the weights ``reset`` restores).
    """

    def compile(
        self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs
    ):
        """Configure training, as ``keras.Model.compile``.

        ``loss``, ``metrics`` and ``loss_weights`` are single values (for the
        network's outputs) or dicts keyed by probes (outputs or hidden layers).
        The probes named in them are the outputs that ``fit`` trains. The
        compiled state (optimizer, losses) is this simulator's own.
        """
        self._check_open()
        self.keras_model.compile_probes(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            loss_weights=loss_weights,
            **kwargs,
        )

    def _keras_data(self, x, y, kwargs: dict, n_steps=None):
        kwargs.setdefault("verbose", "auto" if self.progress_bar else 0)
        return self.keras_model.keras_data(
            x, y, kwargs, self.minibatch_size or 32, n_steps
        )

    def fit(self, x=None, y=None, validation_data=None, epochs=1, **kwargs):
        """Train the network, as ``keras.Model.fit`` (returns its History).

        ``x``: ``{converter.inputs[inp]: (n, steps, ...)}``; ``y``: ``{probe:
        (n, steps, ...)}`` (e.g. labels ``(n, 1, 1)``, target rates ``(n, 1,
        size)``); or ``x`` a data pipeline yielding ``(x, y)`` batches.
        Spiking neurons train through their rate functions; validation runs
        as :meth:`evaluate` does (spiking). If the loss becomes NaN or infinite,
        training stops and the weights go back to those it started from, with
        a warning (:class:`snnify.training.StopOnNonFiniteLoss`).
        ``class_weight`` weighs each example by the class of its target, as in
        Keras (:func:`class_sample_weights`).
        """
        self._check_open()
        x, y = self._keras_data(x, y, kwargs)
        if kwargs.get("class_weight") is not None:
            if kwargs.get("sample_weight") is not None:
                raise ValueError(
                    "Give class_weight or sample_weight, not both (multiply them "
                    "into one sample_weight)."
                )
            kwargs["sample_weight"] = class_sample_weights(
                y, kwargs.pop("class_weight")
            )
        kwargs["callbacks"] = [
            *(kwargs.get("callbacks") or []),
            StopOnNonFiniteLoss(self.net.weights),
        ]
        if isinstance(validation_data, (tuple, list)):
            validation_data = self._keras_data(*validation_data[:2], {})
            self.keras_model.warn_one_step(validation_data[0], None)
        elif validation_data is not None:
            validation_data = self._keras_data(validation_data, None, {})[0]
        self._remember_weights()
        return self.keras_model.fit(
            x, y, validation_data=validation_data, epochs=epochs, **kwargs
        )

    def evaluate(self, x=None, y=None, n_steps=None, spiking=True, **kwargs):
        """Loss and metrics of the network as it runs, as ``keras.Model.evaluate``.

        As NengoDL's: the spiking network runs as in :meth:`predict`, for
        ``n_steps`` (default: the inputs' steps), and the losses compare every
        step of the outputs with the targets (a target of one step is held for
        all steps). ``spiking=False`` evaluates the rates that ``fit`` trains
        instead. Returns a dict (``return_dict=True`` by default).
        """
        self._check_open()
        n_steps = None if n_steps is None else check_steps(n_steps)
        x, y = self._keras_data(x, y, kwargs, n_steps)
        model = self.keras_model
        if spiking:
            model.warn_one_step(x, n_steps)
        kwargs.setdefault("return_dict", True)
        model.spiking, model.n_steps = bool(spiking), n_steps
        if isinstance(x, dict):  # arrays; a pipeline's steps are not known here
            model.data_steps = tuple(sorted({v.shape[1] for v in x.values()}))
        try:
            return model.evaluate(x, y, **kwargs)
        finally:
            model.spiking, model.n_steps, model.data_steps = True, None, None


def class_sample_weights(y, class_weight: Mapping) -> np.ndarray:
    """``fit``'s ``class_weight`` as sample weights: one per example (and step).

    Keras reads the classes from the targets of a model's single output; here
    they are the targets of the one probe trained, ``(n, steps, k)``: the
    class is the arg-max of one-hot targets (``k > 1``) or the value of
    labels (``k = 1``), and classes missing from ``class_weight`` weigh 1.

    Example:
        >>> targets = {"out": np.array([[[0.0, 1.0]], [[1.0, 0.0]]])}
        >>> class_sample_weights(targets, {1: 3.0})
        array([3., 1.], dtype=float32)
    """
    if not isinstance(y, Mapping) or len(y) != 1:
        received = "a data pipeline" if y is None else f"targets for {sorted(y)}"
        raise ValueError(
            "class_weight reads the classes from the targets of one probe. "
            f"Received: {received}. Pass sample_weight (or weights in the "
            "pipeline's batches, (x, y, sample_weight)) instead."
        )
    target = np.asarray(next(iter(y.values())))
    labels = target.argmax(-1) if target.shape[-1] > 1 else target[..., 0].round()
    weight = np.vectorize(lambda c: class_weight.get(int(c), 1.0), otypes=["float32"])
    weights = weight(labels)  # (n, steps)
    return weights[:, 0] if weights.shape[1] == 1 else weights


def _held(targets, outputs):
    """Targets of one step held for all the steps of the outputs."""
    if not isinstance(targets, dict) or not isinstance(outputs, dict):
        return targets
    held = dict(targets)
    for name, target in targets.items():
        steps = outputs[name].shape[1]
        if len(target.shape) > 2 and target.shape[1] == 1 and steps not in (1, None):
            held[name] = ops.repeat(target, steps, axis=1)
    return held


def _per_example(sample_weight):
    """Weights of one per example, ``(n,)``, as ``(n, 1)``: for every step."""

    def held(weights):
        if weights is None or len(ops.shape(weights)) != 1:
            return weights
        return ops.expand_dims(weights, 1)

    return keras.tree.map_structure(held, sample_weight)
