"""Saving and loading the parameters of a spiking network.

Parameters are the weights of the converted Keras layers, stored in a ``.npz``
file under ``"<original layer name>/<weight name>"``. They do not include
``scale_firing_rates`` or synapses, so parameters trained with one setting load
into a network converted with another.

:func:`load_params` also reads files whose names differ from the network's
(a model rebuilt as ``dense_1`` instead of ``dense``: matched by position and
shape, with a warning) and files saved by NengoDL's ``Simulator.save_params``
(``arr_0``, ``arr_1``... in NengoDL's order: matched by shape).

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

import collections
import os
import re
import warnings
import zipfile
import zlib

import keras
import numpy as np

from snnify.validation import check_file_path, write_atomically


def _npz_path(path) -> str:
    """``path`` with ``.npz`` added if missing; a folder is refused."""
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.fsdecode(path)
    if isinstance(path, str) and os.path.basename(path) and not path.endswith(".npz"):
        path += ".npz"  # "runs" names runs.npz, even beside a folder "runs"
    return check_file_path(path, "parameter file")


def named_weights(network) -> dict:
    """``{"<layer>/<weight>": keras.Variable}`` for every converted layer."""
    return {key: variable for key, _, variable in _weights(network)}


def _weights(network) -> list:
    """``[(key, layer, variable)]`` in the network's order."""
    weights, keys = [], set()
    for layer_name, layer in network.converted_layers:
        for variable in layer.weights:
            key = f"{layer_name}/{variable.name}"
            i = 1
            while key in keys:
                i += 1
                key = f"{layer_name}/{variable.name}_{i}"
            keys.add(key)
            weights.append((key, layer, variable))
    return weights


def save_params(network, path) -> None:
    """Write the network's parameters to ``path`` (``.npz`` added if missing).

    The file is written next to its destination and then renamed over it, so
    an interrupted save leaves any previous file intact (see
    :func:`snnify.validation.write_atomically`: a symbolic link is written
    through, an existing file keeps its permissions). A folder is refused.
    """
    path = _npz_path(path)
    arrays = {
        k: keras.ops.convert_to_numpy(v) for k, v in named_weights(network).items()
    }
    diverged = [k for k, v in arrays.items() if not np.isfinite(v).all()]
    if diverged:
        raise ValueError(
            f"The weights {diverged} hold NaN or infinite values (training "
            f"diverged); they were not saved and {path!r} is unchanged. Restore "
            "good weights (sim.reset() or sim.load_params) first."
        )

    def write(temporary):
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)

    write_atomically(path, write)


def load_params(network, path) -> None:
    """Load parameters saved by :func:`save_params` (or by NengoDL) into ``network``.

    snnify's files load by name; when the names differ but the weights have
    the same shapes in the same order (the same model built again, with other
    automatic names), by position, with a warning. NengoDL's files load by
    shape (see :func:`nengo_dl_params`). Everything is checked before any
    weight changes: a missing, empty, truncated or foreign file, a missing or
    extra parameter, a wrong shape, an array that is not of floats (integers,
    booleans, complex numbers, strings) or that holds NaN or infinity raises
    and changes nothing.
    """
    path = _npz_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No parameter file at {path!r}. Save one with sim.save_params(path) "
            f"first. Received: path={path!r}"
        )
    weights = named_weights(network)
    arrays = read_arrays(path)
    if arrays and all(re.fullmatch(r"arr_\d+", k) for k in arrays):
        arrays = nengo_dl_params(network, arrays, path)
    elif set(arrays) != set(weights):
        arrays = _by_position(weights, arrays, path)
    for key, variable in weights.items():
        if tuple(arrays[key].shape) != tuple(variable.shape):
            raise ValueError(
                f"Parameter {key!r} in {path!r} has shape {arrays[key].shape}; the "
                f"network expects {tuple(variable.shape)}."
            )
    values = {k: arrays[k].astype(v.dtype) for k, v in weights.items()}
    for key, variable in weights.items():
        variable.assign(values[key])


def read_arrays(path: str) -> dict:
    """``{name: float array}`` of an ``.npz`` file, in the order they were saved.

    Raises:
        ValueError: naming ``path``, if it is not an ``.npz`` file (empty,
            truncated, another format, pickled objects) or an array is not
            of real floats or holds NaN or infinity.
    """
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as file:
            arrays = {k: file[k] for k in file.files}
    # TypeError, AttributeError: a .npy file (one array, no names)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError,
            TypeError, AttributeError) as e:  # fmt: skip
        raise _unreadable(path, e) from None
    for key, array in arrays.items():
        if array.dtype.kind != "f":
            raise ValueError(
                f"Parameter {key!r} in {path!r} holds {array.dtype} values; weights "
                "are real floating-point numbers. The file was not saved by "
                f"sim.save_params. Received: dtype={array.dtype}"
            )
        if not np.isfinite(array).all():
            raise ValueError(
                f"Parameter {key!r} in {path!r} holds "
                f"{int(array.size - np.isfinite(array).sum())} NaN or infinite "
                "values; loading it would make every output NaN. Save parameters "
                f"from a network that trained without diverging. Received: path={path!r}"
            )
    return arrays


def _unreadable(path: str, error: Exception) -> ValueError:
    return ValueError(
        f"{path!r} is not a parameter file that snnify can read (an .npz file "
        "saved by sim.save_params or NengoDL): it is empty, truncated or of "
        f"another format ({type(error).__name__}: {error}). Received: path={path!r}"
    )


def _by_position(weights: dict, arrays: dict, path) -> dict:
    """``arrays`` keyed by the network's names, if only the names differ."""
    shapes = [tuple(v.shape) for v in weights.values()]
    if [a.shape for a in arrays.values()] != shapes:
        missing = sorted(set(weights) - set(arrays))
        extra = sorted(set(arrays) - set(weights))
        raise ValueError(
            f"The parameters in {path!r} do not match this network: missing "
            f"{missing}, unexpected {extra}, and the shapes differ. Load a file "
            "saved from a network converted from the same Keras model."
        )
    renamed = [f"{a} -> {w}" for a, w in zip(arrays, weights) if a != w]
    warnings.warn(
        f"The names in {path!r} differ from this network's; they were loaded by "
        f"position (the shapes match): {', '.join(renamed)}.",
        stacklevel=3,
    )
    return dict(zip(weights, arrays.values()))


def nengo_dl_params(network, arrays: dict, path="the file") -> dict:
    """The weights of ``network`` in a parameter file saved by NengoDL.

    NengoDL (``Converter(model)`` then ``Simulator.save_params``) saves the
    kernels and biases of Dense and convolution layers as ``arr_0``,
    ``arr_1``... in the order of its internal signals. Each weight is found
    by its shape in NengoDL's form: a Dense kernel is stored transposed,
    ``(units, inputs)``; a bias as ``(units, 1)`` (or ``(units,)`` for a Dense
    layer whose neurons held it); a convolution kernel as in Keras. Arrays of
    ±1 only are the encoders of NengoDL's ensembles, which a converted network
    does not use; they are skipped.

    NengoDL multiplies the biases that neurons hold by its
    ``scale_firing_rates``: load files saved from a network converted without
    it (as the tutorial trains).

    Raises:
        ValueError: if a weight has no array, an array fits no weight, or
            several weights have the same shape (NengoDL's order cannot be
            told from shapes); nothing is loaded then.
    """
    candidates = {}  # weight key -> [(array name, array in the network's form)]
    for key, layer, variable in _weights(network):
        candidates[key] = [
            (name, converted)
            for name, array in arrays.items()
            if (converted := _from_nengo_dl(layer, variable, array)) is not None
        ]
    chosen = _assign({k: [name for name, _ in o] for k, o in candidates.items()})
    unresolved = [k for k in candidates if k not in chosen]
    if unresolved:
        weights = named_weights(network)
        shapes = {k: tuple(weights[k].shape) for k in unresolved}
        raise ValueError(
            f"Cannot tell which arrays of NengoDL's file {path!r} are the weights "
            f"{shapes} (shapes in snnify's form): either no array has their shape "
            "in NengoDL's form, or several do and NengoDL's order cannot be told "
            "from shapes. Was the file saved from a network of this structure? "
            "Else load those weights one by one with "
            "converter.net.get_layer(name).set_weights(...)."
        )
    unused = [
        n for n in arrays if n not in chosen.values() and not _encoders(arrays[n])
    ]
    if unused:
        raise ValueError(
            f"NengoDL's file {path!r} has arrays that no weight of this network "
            f"takes: { {n: arrays[n].shape for n in unused} }. Was it saved from a "
            "network of another structure?"
        )
    return {key: dict(candidates[key])[name] for key, name in chosen.items()}


def _assign(candidates: dict) -> dict:
    """``{weight: array name}``, as far as ``{weight: [possible arrays]}`` forces it.

    A weight with one possible array left takes it, unless another weight has
    only that one too (then neither is decided); repeated until nothing changes.
    """
    chosen = {}
    while True:
        taken = set(chosen.values())
        left = {
            k: [n for n in names if n not in taken]
            for k, names in candidates.items()
            if k not in chosen
        }
        forced = {k: names[0] for k, names in left.items() if len(names) == 1}
        claims = collections.Counter(forced.values())
        new = {k: name for k, name in forced.items() if claims[name] == 1}
        if not new:
            return chosen
        chosen.update(new)


def _from_nengo_dl(layer, variable, array: np.ndarray):
    """``array`` in snnify's form if it can be ``variable`` in NengoDL's form."""
    shape = tuple(variable.shape)
    if variable is getattr(layer, "bias", None):
        if array.shape in (shape + (1,), shape):
            return array.reshape(shape)
    elif variable is getattr(layer, "kernel", None):
        if isinstance(layer, keras.layers.Dense) and array.shape == shape[::-1]:
            return array.T
        if isinstance(layer, _CONVOLUTIONS) and array.shape == shape:
            return array
    return None


_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def _encoders(array: np.ndarray) -> bool:
    return array.size > 0 and bool(np.all(np.abs(array) == 1))
