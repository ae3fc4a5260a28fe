"""Everything snnify needs to know about a Keras model's graph, in one place.

This is the only module that reads Keras internals (the attributes of
functional models, of their nodes and of symbolic tensors that Keras does not
document): walking a functional or Sequential model in order (with the models
nested in it flattened into its graph), the layer that produced a tensor, a
layer's activation by name, and calling a layer with the arguments the model
called it with.

Example:
    >>> import keras
    >>> inp = keras.Input((4,), name="pixels")
    >>> hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    >>> model = keras.Model(inp, keras.layers.Dense(2, name="output")(hidden))
    >>> [node.operation.name for node in nodes_in_order(functional_graph(model))]
    ['pixels', 'hidden', 'output']
    >>> layer_of(hidden).name, activation_name(layer_of(hidden).activation)
    ('hidden', 'relu')
"""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import keras


def functional_graph(model):
    """The functional graph of a functional, Sequential or subclassed model.

    A subclassed model (or layer) is traced: its ``call`` runs once on
    ``keras.Input`` tensors of the shapes it was built with, which records
    the graph of its own layers (:func:`traced_model`).

    Raises:
        TypeError: for a subclassed model that cannot be traced, or an
            object that is not a Keras model.
        ValueError: for a model with no known input shape.
    """
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no known input shape. Start it "
                "with keras.Input(shape) (or call model.build(input_shape)) before "
                "converting it."
            )
        return graph
    if _is_functional(model):
        return model
    if not isinstance(model, keras.Model) and not _is_subclassed(model):
        raise TypeError(_not_a_model(model))
    return traced_model(model)


def _is_functional(layer) -> bool:
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def _not_a_model(model) -> str:
    """The refusal of something that is not a Keras 3 model, with a fix."""
    module = type(model).__module__
    fix = ""
    if module.startswith("tf_keras") or ".engine." in f"{module}.":
        fix = (
            ", and this is a Keras 2 model (tf_keras, or tf.keras before "
            "TensorFlow 2.16): save it (model.save('model.h5')) and load the file "
            "with Keras 3 (keras.models.load_model('model.h5'))"
        )
    return (
        "The Converter needs a keras.Model (functional, Sequential or subclassed)"
        f"{fix}. Received: model={type(model).__name__} (from {module})"
    )


# subclassed layer -> its traced functional model, or the TypeError of its trace
_TRACES = weakref.WeakKeyDictionary()


def traced_model(layer):
    """A functional model that calls ``layer``'s own layers as its ``call`` does.

    ``layer`` is a subclassed ``keras.Model`` or ``keras.layers.Layer`` that
    has been called (or built) once: its ``call`` runs on ``keras.Input``
    tensors of the shapes of that first call, as ``model.export`` does. The
    functional model shares the layers, and so the weights, of ``layer``;
    the trace is made once per layer.

    Example:
        >>> import keras, numpy as np
        >>> class Net(keras.Model):
        ...     def __init__(self):
        ...         super().__init__(name="net")
        ...         self.hidden = keras.layers.Dense(3, activation="relu")
        ...         self.out = keras.layers.Dense(2)
        ...     def call(self, x):
        ...         return self.out(self.hidden(x))
        >>> net = Net()
        >>> _ = net(np.zeros((1, 4), "float32"))
        >>> [type(layer).__name__ for layer in traced_model(net).layers]
        ['InputLayer', 'Dense', 'Dense']
        >>> traced_model(net).layers[1] is net.hidden
        True

    Raises:
        TypeError: when ``call`` cannot run on symbolic tensors (it uses a
            backend's own functions, or branches on values), naming the cause.
        ValueError: when ``layer`` has never been called or built.
    """
    if layer not in _TRACES:
        try:
            _TRACES[layer] = _trace(layer)
        except TypeError as error:
            _TRACES[layer] = error
    traced = _TRACES[layer]
    if isinstance(traced, TypeError):
        raise TypeError(str(traced)) from traced
    return traced


def _trace(layer):
    shapes = getattr(layer, "_build_shapes_dict", None)
    if not shapes:
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r} is subclassed and has never "
            "been called, so its input shape is unknown: call it once on a batch "
            "(model(x[:1])) or build it (model.build((None, *shape))) before "
            "converting it."
        )
    dtype = getattr(layer, "input_dtype", None)
    names = [key.removesuffix("_shape") if len(shapes) > 1 else None for key in shapes]
    inputs = [_symbolic(s, name, dtype) for s, name in zip(shapes.values(), names)]
    try:
        outputs = layer.call(*inputs)
    except Exception as error:
        raise TypeError(
            f"Cannot trace the call of the subclassed {type(layer).__name__} "
            f"{layer.name!r} on keras.Input tensors: {type(error).__name__}: "
            f"{error}. Take the inputs in the first argument of its call (a "
            "tensor, or a list or dict of tensors) and use only Keras layers and "
            "keras.ops there (no backend functions such as tf.nn.relu, no Python "
            "branches on values), or build the same layers on a keras.Input (outputs = "
            "layer(inputs)..., keras.Model(inputs, outputs)) and copy the "
            "weights over (model.set_weights)."
        ) from error
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs,
                       name=layer.name)  # fmt: skip


def _symbolic(shapes, name, dtype):
    """``keras.Input`` tensors in the structure of ``shapes`` (dicts name them)."""
    if isinstance(shapes, dict):
        return {key: _symbolic(s, key, dtype) for key, s in shapes.items()}
    if all(isinstance(d, int) or d is None for d in shapes):
        return keras.Input(batch_shape=(None, *shapes[1:]), dtype=dtype, name=name)
    return type(shapes)(_symbolic(s, None, dtype) for s in shapes)


def nodes_in_order(graph):
    """The Keras nodes of a functional graph, inputs first."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        yield from graph._nodes_by_depth[depth]


def layer_of(key):
    """The layer that produced ``key`` if it is a Keras tensor, else ``key``."""
    history = getattr(key, "_keras_history", None)
    return history.operation if history is not None else key


# names of the rectifiers clipped at a maximum: ReLU6 and ReLU(max_value=m);
# they saturate, as neurons limited in their spikes per step do
CLIPPED_RELUS = ("relu6", "clipped_relu")


def activation_name(activation) -> str | None:
    """``"relu"`` for ``"relu"``, ``keras.activations.relu``, ``tf.nn.relu``...

    None means "linear"; an object without a name (or a lambda) gives None.
    """
    if activation is None:
        return "linear"
    name = (
        activation
        if isinstance(activation, str)
        else getattr(activation, "__name__", None)
    )
    if not name or name == "<lambda>":
        return None
    return name.lower().rstrip("_")


def relu_form(layer) -> str | None:
    """What a ``keras.layers.ReLU`` layer computes, as an activation's name.

    ``"relu"``; ``"relu6"`` (``max_value=6``); ``"clipped_relu"`` (another
    positive ``max_value``); ``"leaky_relu"`` (a ``negative_slope`` alone);
    None for the other forms (clipped and leaky, or shifted by a
    ``threshold``).

    Example:
        >>> import keras
        >>> options = [{}, {"max_value": 6}, {"max_value": 1}, {"negative_slope": 0.1},
        ...            {"threshold": 1.0}]
        >>> [relu_form(keras.layers.ReLU(**kwargs)) for kwargs in options]
        ['relu', 'relu6', 'clipped_relu', 'leaky_relu', None]
    """
    max_value = None if layer.max_value is None else float(layer.max_value)
    if float(layer.threshold) != 0.0:
        return None
    if float(layer.negative_slope) != 0.0:
        return "leaky_relu" if max_value is None else None
    if max_value is None:
        return "relu"
    if max_value == 6.0:
        return "relu6"
    return "clipped_relu" if max_value > 0.0 else None


def negative_slope(activation):
    """The slope of a leaky ReLU's (or PReLU's) negative part, ``-f(-1)``.

    A float, an array of slopes for a PReLU (its ``alpha``), or None if
    ``activation`` is neither.

    Example:
        >>> import functools, keras
        >>> negative_slope(keras.activations.leaky_relu)  # Keras's default
        0.2
        >>> leaky = functools.partial(keras.activations.leaky_relu, negative_slope=0.01)
        >>> leaky.__name__ = "leaky_relu"
        >>> negative_slope(leaky), negative_slope(keras.activations.relu)
        (0.01, None)
    """
    if activation_name(activation) not in ("leaky_relu", "prelu"):
        return None
    value = -keras.ops.convert_to_numpy(activation(keras.ops.convert_to_tensor(-1.0)))
    if value.ndim > 0:
        return value.astype("float32") + 0.0  # -0 as 0
    return float(f"{float(value):.7g}")  # the float32 slope as it was written


class OperationLayer(keras.layers.Layer):
    """An operation of a functional model that is not a layer, as a layer.

    ``x + y``, ``x * 2.0`` or ``keras.ops.reshape(x, (-1, 8))`` on symbolic
    tensors record Keras operations, not layers, in a functional model. The
    layer applies the operation with the arguments of the model's call; it is
    called with the values of the call's tensors, in order.

    Example:
        >>> import keras, numpy as np
        >>> inp = keras.Input((2,))
        >>> model = keras.Model(inp, inp * 3.0)
        >>> layer = FlatGraph(model).calls[-1].layer
        >>> layer.operation_name, layer.tensors
        ('Multiply', 1)
        >>> keras.ops.convert_to_numpy(layer([np.ones((1, 2), "float32")]))
        array([[3., 3.]], dtype=float32)
    """

    def __init__(self, keras_node, **kwargs):
        super().__init__(name=keras_node.operation.name, **kwargs)
        self.operation = keras_node.operation
        self._arguments = keras_node.arguments
        self._tensor_ids = [id(t) for t in keras_node.input_tensors]

    @property
    def operation_name(self) -> str:
        """The class name of the operation, e.g. ``"Add"`` or ``"Reshape"``."""
        return type(self.operation).__name__

    @property
    def config(self) -> dict:
        """The operation's arguments, e.g. ``{"axis": 1, "keepdims": False}``."""
        return self.operation.get_config()

    @property
    def tensors(self) -> int:
        """How many tensor arguments it has (constants aside; ``x * x`` has 2)."""
        return len(self._tensor_ids)

    @property
    def tensor_first(self) -> bool:
        """Whether its first argument is a tensor (``x / 2``, not ``2 / x``)."""
        args = self._arguments.args
        return bool(args) and keras.backend.is_keras_tensor(args[0])

    def call(self, inputs):
        args, kwargs = self._arguments.fill_in(dict(zip(self._tensor_ids, inputs)))
        return self.operation(*args, **kwargs)


def type_name(layer) -> str:
    """The class name of ``layer``, or of the operation an OperationLayer applies."""
    if isinstance(layer, OperationLayer):
        return layer.operation_name
    return type(layer).__name__


def operation_layer(keras_node) -> keras.layers.Layer:
    """A layer that computes what ``keras_node``'s operation (not a layer) does.

    An activation operation of one tensor (``keras.ops.relu(x)``,
    ``keras.ops.softmax(x)``: one of ``keras.activations`` with its default
    arguments) becomes an ``Activation`` layer, so that it can become neurons;
    any other operation an :class:`OperationLayer`. The same call gives the
    same layer each time (a calibration's layers are the converter's).
    """
    # kept on the node: one layer per call however often the model is walked,
    # and it lives as long as the model does
    layer = getattr(keras_node, "_snnify_layer", None)
    if layer is None:
        operation = keras_node.operation
        arguments = keras_node.arguments
        name = activation_of(operation)
        if name is not None and len(arguments.args) == 1 and not arguments.kwargs:
            layer = keras.layers.Activation(name, name=operation.name)
        else:
            layer = OperationLayer(keras_node)
        keras_node._snnify_layer = layer
    return layer


def activation_of(operation) -> str | None:
    """The name of the Keras activation that ``operation`` computes, or None.

    Example:
        >>> x = keras.Input((3,))
        >>> activation_of(layer_of(keras.ops.leaky_relu(x)))
        'leaky_relu'
        >>> activation_of(layer_of(keras.ops.gelu(x, approximate=True)))  # not the default
    """
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(operation).__name__).lower()
    function = getattr(keras.activations, name, None)
    if function is None:
        return None
    defaults = {
        key: parameter.default
        for key, parameter in inspect.signature(function).parameters.items()
    }
    config = {k: v for k, v in operation.get_config().items() if k != "name"}
    return name if all(defaults.get(k, None) == v for k, v in config.items()) else None


def bind_call(keras_node, layer):
    """``call(inputs, training)``: ``layer`` applied as ``keras_node`` applies its own.

    ``inputs`` are the values of the node's input tensors, in order; the other
    arguments of the model's call (e.g. ``mask``) are kept.
    """
    if isinstance(layer, OperationLayer):
        return lambda inputs, training=False: layer(list(inputs))
    tensor_ids = [id(t) for t in keras_node.input_tensors]
    arguments = keras_node.arguments
    takes_training = "training" in inspect.signature(layer.call).parameters

    def call(inputs, training=False):
        args, kwargs = arguments.fill_in(dict(zip(tensor_ids, inputs)))
        if takes_training:
            kwargs["training"] = training
        return layer(*args, **kwargs)

    return call


def build_like(layer, keras_node) -> None:
    """Build ``layer`` by calling it on ``keras_node``'s symbolic inputs."""
    if isinstance(layer, OperationLayer):
        layer(list(keras_node.input_tensors))
        return
    args, kwargs = keras_node.arguments.fill_in(
        {id(t): t for t in keras_node.input_tensors}
    )
    layer(*args, **kwargs)


def set_weights(layer, weights) -> None:
    """``layer.set_weights(weights)``, and the state its layers derive from them.

    An adapted ``Normalization`` layer normalises with a mean and variance
    computed from its weights when it is built or loaded (Keras's
    ``finalize_state``); ``set_weights`` alone leaves them as they were.
    """
    layer.set_weights(weights)
    for sublayer in layer._flatten_layers(include_self=True, recursive=True):
        if hasattr(sublayer, "finalize_state"):
            sublayer.finalize_state()


def functional_copy(model) -> keras.Model:
    """A functional copy of ``model``: new layers, the same configs and weights.

    Nested models, subclassed models and subclassed layers of layers
    (:func:`is_nested_model`) become nested functional models of the same
    names, so the copy saves to a ``.keras`` file without the classes that
    built ``model``.

    Raises:
        ValueError: where a subclassed model or layer applies weights of its
            own in its call (``x * self.gamma``) besides its layers': the
            traced operations hold them, and a saved copy could not.
    """
    own = _own_weights(model) if _is_subclassed(model) else []
    if own:
        raise ValueError(
            f"{type(model).__name__} {model.name!r} applies weights of its own in "
            f"its call ({', '.join(w.path for w in own)}), which a saved copy "
            "cannot hold. To save it, apply them in a layer of their own that "
            "holds no other layer (such a layer stays whole), called from this "
            "call."
        )
    originals = []  # (layer, its clone)

    def clone(layer):
        if is_nested_model(layer):
            return functional_copy(layer)
        copy = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.Layer):  # not an operation (x + y)
            originals.append((layer, copy))
        return copy

    copy = keras.models.clone_model(functional_graph(model), clone_function=clone)
    for layer, clone_of_layer in originals:
        set_weights(clone_of_layer, layer.get_weights())
    # named as the model (clone_model names a Sequential's copy as its graph)
    return keras.Model(copy.input, copy.output, name=model.name)


def is_nested_model(layer) -> bool:
    """Whether ``layer`` is a model (or a subclassed layer of layers) in a model.

    Functional and Sequential models, subclassed models, and subclassed layers
    that hold layers of their own and trace (:func:`traced_model`); the
    graph walks into them. Other subclassed layers stay whole.
    """
    if isinstance(layer, keras.Sequential):
        return getattr(layer, "_functional", None) is not None
    if _is_functional(layer):
        return True
    if not _is_subclassed(layer) or not layer._layers:
        return False
    try:
        traced_model(layer)
    except (TypeError, ValueError):
        return False
    return True


def _own_weights(layer) -> list:
    """The weights of ``layer`` that none of its layers holds."""
    inner = {id(w) for sublayer in layer._layers for w in sublayer.weights}
    return [w for w in layer.weights if id(w) not in inner]


def _is_subclassed(layer) -> bool:
    """Whether ``layer``'s ``call`` comes from outside Keras and snnify."""
    if not isinstance(layer, keras.layers.Layer):
        return False
    package = type(layer).call.__module__.split(".")[0]
    return package not in ("keras", "snnify")


@dataclass
class LayerCall:
    """One call of a layer in a model whose nested models are flattened.

    Tensors are named by keys: ``(scope, id(tensor))``, where ``scope`` holds
    the calls of the nested models the tensor lies in, so that a nested model
    called twice gives two sets of keys.

    Attributes:
        keras_node: Keras's record of the call (``bind_call``, ``build_like``).
        inputs: the keys of its input tensors, in the order of the call.
        outputs: the keys of its output tensors.
        path: the names of the nested models it lies in, outermost first.
        layer: the layer called; for an operation that is not a layer (``x +
            y``), the layer that computes it (:func:`operation_layer`).
    """

    keras_node: object
    inputs: list
    outputs: list
    path: tuple = ()
    layer: object = None

    def __post_init__(self):
        if self.layer is None:
            self.layer = self.keras_node.operation

    @property
    def is_input(self) -> bool:
        return self.keras_node.is_input

    @property
    def name(self) -> str:
        """The layer's name, after those of the nested models it lies in."""
        return "/".join((*self.path, self.layer.name))

    @property
    def output_tensors(self) -> list:
        return list(self.keras_node.outputs)


class FlatGraph:
    """A functional or Sequential model with its nested models flattened.

    Attributes:
        calls: every layer call (:class:`LayerCall`), inputs first, parents
            before children; nested models do not appear, their layers do.
        inputs, outputs: ``[(tensor, key)]`` of the model's own inputs and
            outputs.
        tensors: ``[(tensor, key)]`` for the output of every layer call
            (a tensor of a nested model called twice appears twice, with two
            keys).
        aliases: ``[(tensor, key)]`` for the tensors that name the value of
            another: a nested model's inputs (their caller's tensors) and the
            outputs of its calls (its own outputs).
        layers: ``{id(layer): layer}`` for every layer called, nested models
            included; an operation that is not a layer maps to the layer that
            computes it.
    """

    def __init__(self, model):
        graph = functional_graph(model)
        self.calls: list[LayerCall] = []
        self.tensors: list = []
        self.aliases: list = []
        self.layers: dict = {}
        self._alias: dict = {}
        self._walk(graph, (), ())
        self.inputs = [(t, self.key(t)) for t in graph.inputs]
        self.outputs = [(t, self.key(t)) for t in graph.outputs]

    def key(self, tensor, scope=()) -> tuple:
        """The key of the value that ``tensor`` holds in ``scope``."""
        key = (scope, id(tensor))
        return self._alias.get(key, key)

    def consumers(self, key) -> list[LayerCall]:
        """The calls that read the value of ``key``."""
        return [call for call in self.calls if key in call.inputs]

    def _walk(self, graph, scope, path):
        for node in nodes_in_order(graph):
            layer = node.operation
            if node.is_input and scope:
                continue  # a nested model's input: its key is the caller's tensor
            if not node.is_input and not isinstance(layer, keras.layers.Layer):
                operation, layer = layer, operation_layer(node)
                self.layers[id(operation)] = layer
            self.layers[id(layer)] = layer
            if is_nested_model(layer):
                self._walk_nested(node, scope, path)
                continue
            inputs = [self.key(t, scope) for t in node.input_tensors]
            outputs = [self.key(t, scope) for t in node.outputs]
            self.calls.append(LayerCall(node, inputs, outputs, path, layer))
            self.tensors += list(zip(node.outputs, outputs))

    def _walk_nested(self, node, scope, path):
        """Walk the graph of the nested model that ``node`` calls."""
        model = node.operation
        inner = functional_graph(model)
        inner_scope = (*scope, id(node))
        outer_inputs = list(node.input_tensors)
        if len(outer_inputs) != len(inner.inputs):
            raise ValueError(
                f"Nested model {model.name!r} has {len(inner.inputs)} inputs but is "
                f"called with {len(outer_inputs)} tensors; call it with one tensor "
                "per input."
            )
        for outer, inner_input in zip(outer_inputs, inner.inputs):
            key = self.key(outer, scope)
            self._alias[(inner_scope, id(inner_input))] = key
            self.aliases.append((inner_input, key))
        self._walk(inner, inner_scope, (*path, model.name))
        for outer, inner_output in zip(node.outputs, inner.outputs):
            key = self.key(inner_output, inner_scope)
            self._alias[(scope, id(outer))] = key
            self.aliases.append((outer, key))


class KerasMap(Mapping):
    """A read-only dict keyed by the Keras tensors of a model, or by their layers.

    A key is ambiguous when it names more than one value: a layer called more
    than once or with several outputs, or a tensor inside a nested model that
    is called more than once. Looking it up raises ``KeyError`` naming the
    lookup to use instead (the output tensor of the call you mean).
    """

    def __init__(self, what: str):
        self._what = what
        self._tensors = {}  # id(tensor) -> tensor
        self._values = {}  # id(tensor) -> [value, ...]
        self._by_layer = {}  # id(layer) -> [id(tensor), ...]
        self._aliases = set()  # ids of tensors that iteration leaves out

    def set(self, tensor, value, alias: bool = False) -> None:
        """Map ``tensor`` (and its layer) to ``value``.

        An ``alias`` names a value that another tensor also names (a nested
        model's output): it is found, but not iterated over.
        """
        values = self._values.setdefault(id(tensor), [])
        if all(v is not value for v in values):
            values.append(value)
        if id(tensor) not in self._tensors:
            self._tensors[id(tensor)] = tensor
            self._by_layer.setdefault(id(layer_of(tensor)), []).append(id(tensor))
        if alias:
            self._aliases.add(id(tensor))

    def _found(self, key) -> list:
        if id(key) in self._values:
            return self._values[id(key)]
        return [v for t in self._by_layer.get(id(key), []) for v in self._values[t]]

    def __getitem__(self, key):
        found = self._found(key)
        if len(found) == 1:
            return found[0]
        if id(key) in self._values:
            layer = getattr(layer_of(key), "name", "?")
            raise KeyError(
                f"A tensor of layer {layer!r} names {len(found)} of the {self._what}: "
                "it lies in a nested model that is called more than once. Use the "
                "output tensor of the nested model's call you mean (y = "
                f"nested(x); converter.{self._what}[y]). Received: key={key!r}"
            )
        name = getattr(key, "name", repr(key))
        if found:
            nested = len(found) > len(self._by_layer[id(key)])
            raise KeyError(
                f"Layer {name!r} gives {len(found)} of the {self._what} "
                f"({self._why_several(key, nested)}), so it does not name one of them. "
                "Use the output tensor of the call you mean (y = layer(x); "
                f"converter.{self._what}[y])"
                + (
                    "; inside a nested model called more than once, only the nested "
                    "model's outputs can be named (y = nested(x))"
                    if nested
                    else ""
                )
                + f". Received: key={key!r}"
            )
        raise KeyError(
            f"{name!r} is not among the {self._what} of the converted model. Use a "
            "Keras tensor or layer of the model given to the Converter. "
            f"Received: key={key!r}"
        )

    def _why_several(self, layer, nested: bool) -> str:
        tensors = [self._tensors[i] for i in self._by_layer[id(layer)]]
        history = [t._keras_history for t in tensors]
        calls = len({h.node_index for h in history})
        outputs = len({h.tensor_index for h in history})
        reasons = [f"it is called {calls} times in the model"] if calls > 1 else []
        reasons += [f"it has {outputs} outputs"] if outputs > 1 else []
        if nested:
            reasons.append("it lies in a nested model called more than once")
        return " and ".join(reasons)

    def all(self, key) -> list:
        """Every value that ``key`` names, in the order of the calls.

        Unlike ``self[key]``, a layer called more than once (or inside a
        nested model called more than once) is not ambiguous here: it names
        one value per call.
        """
        found = []
        for value in self._found(key):
            if all(value is not seen for seen in found):
                found.append(value)
        if not found:
            self[key]  # raises the KeyError that names the problem
        return found

    def by_layer(self) -> list[tuple]:
        """``[(layer, [value per call])]`` for every layer, in the order of calls.

        Nested models (whose outputs are their last layers' values) and their
        inputs are left out.
        """
        result = {}
        for i, tensor in self._tensors.items():
            if i not in self._aliases:
                layer = layer_of(tensor)
                result.setdefault(id(layer), (layer, []))
        return [(layer, self.all(layer)) for layer, _ in result.values()]

    def get(self, key, default=None):
        """``self[key]``, or ``default`` if absent; an ambiguous key raises."""
        return self[key] if self._found(key) else default

    def _iterated(self) -> list:
        return [
            i
            for i, values in self._values.items()
            if len(values) == 1 and i not in self._aliases
        ]

    def __iter__(self):
        """The tensors that name one value each (not the aliases)."""
        return iter([self._tensors[i] for i in self._iterated()])

    def __len__(self):
        return len(self._iterated())

    def __contains__(self, key):
        return len(self._found(key)) == 1
