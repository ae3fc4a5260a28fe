"""Everything snnify needs to know about a Keras model's graph, in one place.

This is the only module that reads Keras internals (the attributes of
functional models, of their nodes and of symbolic tensors that Keras does not
document): walking a functional or Sequential model in order, the layer that
produced a tensor, a layer's activation by name, and calling a layer with the
arguments the model called it with.

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
from collections.abc import Mapping

import keras


def functional_graph(model):
    """The functional graph of a functional or Sequential model.

    Raises:
        TypeError: for a subclassed model (no graph to walk).
        ValueError: for a Sequential model with no known input shape.
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
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise TypeError(
            "The Converter needs a functional or Sequential keras.Model (subclassed "
            "models have no graph to walk). Received: "
            f"model={type(model).__name__}"
        )
    return model


def nodes_in_order(graph):
    """The Keras nodes of a functional graph, inputs first."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        yield from graph._nodes_by_depth[depth]


def layer_of(key):
    """The layer that produced ``key`` if it is a Keras tensor, else ``key``."""
    history = getattr(key, "_keras_history", None)
    return history.operation if history is not None else key


def activation_name(activation) -> str | None:
    """``"relu"`` for ``"relu"``, ``keras.activations.relu``, ``tf.nn.relu``...

    None means "linear"; an object without a name gives None.
    """
    if activation is None:
        return "linear"
    name = (
        activation
        if isinstance(activation, str)
        else getattr(activation, "__name__", None)
    )
    return name.lower().rstrip("_") if name else None


def bind_call(keras_node, layer):
    """``call(inputs, training)``: ``layer`` applied as ``keras_node`` applies its own.

    ``inputs`` are the values of the node's input tensors, in order; the other
    arguments of the model's call (e.g. ``mask``) are kept.
    """
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
    args, kwargs = keras_node.arguments.fill_in(
        {id(t): t for t in keras_node.input_tensors}
    )
    layer(*args, **kwargs)


class KerasMap(Mapping):
    """A read-only dict keyed by the Keras tensors of a model, or by their layers.

    A layer that produced several tensors (called more than once) is an
    ambiguous key: use the tensor of the call you mean.
    """

    def __init__(self, what: str):
        self._what = what
        self._tensors = {}  # id(tensor) -> tensor
        self._values = {}  # id(tensor) -> value
        self._by_layer = {}  # id(layer) -> [id(tensor), ...]

    def set(self, tensor, value) -> None:
        self._tensors[id(tensor)] = tensor
        self._values[id(tensor)] = value
        self._by_layer.setdefault(id(layer_of(tensor)), []).append(id(tensor))

    def __getitem__(self, key):
        if id(key) in self._values:
            return self._values[id(key)]
        tensors = self._by_layer.get(id(key), [])
        if len(tensors) == 1:
            return self._values[tensors[0]]
        name = getattr(key, "name", repr(key))
        if len(tensors) > 1:
            raise KeyError(
                f"Layer {name!r} is called {len(tensors)} times in the model, so it "
                f"does not name one of the {self._what}. Use the output tensor of "
                "the call you mean (y = layer(x); converter.layers[y]). "
                f"Received: key={key!r}"
            )
        raise KeyError(
            f"{name!r} is not among the {self._what} of the converted model. Use a "
            "Keras tensor or layer of the model given to the Converter. "
            f"Received: key={key!r}"
        )

    def __iter__(self):
        return iter(self._tensors[i] for i in self._values)

    def __len__(self):
        return len(self._values)

    def __contains__(self, key):
        return id(key) in self._values or len(self._by_layer.get(id(key), [])) == 1
