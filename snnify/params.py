"""Saving and loading the parameters of a spiking network.

Parameters are the weights of the converted Keras layers, stored in a ``.npz``
file under ``"<original layer name>/<weight name>"``. They do not include
``scale_firing_rates`` or synapses, so parameters trained with one setting load
into a network converted with another.

Example:
    >>> import keras, numpy as np, os, tempfile, snnify
    >>> inp = keras.Input((3,))
    >>> model = keras.Model(inp, keras.layers.Dense(2, name="dense")(inp))
    >>> net = snnify.Converter(model).net
    >>> path = os.path.join(tempfile.mkdtemp(), "params")
    >>> save_params(net, path)
    >>> sorted(np.load(path + ".npz", allow_pickle=False).files)
    ['dense/bias', 'dense/kernel']
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np


def _npz_path(path) -> str:
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def named_weights(network) -> dict:
    """``{"<layer>/<weight>": keras.Variable}`` for every converted layer."""
    weights = {}
    for layer_name, layer in network.converted_layers:
        for variable in layer.weights:
            key = f"{layer_name}/{variable.name}"
            i = 1
            while key in weights:
                i += 1
                key = f"{layer_name}/{variable.name}_{i}"
            weights[key] = variable
    return weights


def save_params(network, path) -> None:
    """Write the network's parameters to ``path`` (``.npz`` added if missing).

    The file is written next to its destination and then renamed over it, so
    an interrupted save leaves any previous file intact.
    """
    path = _npz_path(path)
    arrays = {
        k: keras.ops.convert_to_numpy(v) for k, v in named_weights(network).items()
    }
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load_params(network, path) -> None:
    """Load parameters saved by :func:`save_params` into ``network``.

    Every name and shape is checked before any weight changes: a missing file,
    a missing or extra parameter or a wrong shape raises and changes nothing.
    """
    path = _npz_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No parameter file at {path!r}. Save one with sim.save_params(path) "
            f"first. Received: path={path!r}"
        )
    weights = named_weights(network)
    with np.load(path, allow_pickle=False) as file:
        arrays = {k: file[k] for k in file.files}
    missing = sorted(set(weights) - set(arrays))
    extra = sorted(set(arrays) - set(weights))
    if missing or extra:
        raise ValueError(
            f"The parameters in {path!r} do not match this network: missing "
            f"{missing}, unexpected {extra}. Load a file saved from a network "
            "converted from the same Keras model."
        )
    for key, variable in weights.items():
        if tuple(arrays[key].shape) != tuple(variable.shape):
            raise ValueError(
                f"Parameter {key!r} in {path!r} has shape {arrays[key].shape}; the "
                f"network expects {tuple(variable.shape)}."
            )
    for key, variable in weights.items():
        variable.assign(arrays[key])
