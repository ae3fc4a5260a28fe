"""Leaving Python: NIR export and import, and whole networks saved as ``.keras``.

:mod:`~snnify.export.nir_export` writes a converted network as a NIR graph,
:mod:`~snnify.export.nir_import` builds a network from one,
:mod:`~snnify.export.saving` saves and loads whole converted networks, and
:mod:`~snnify.export.readers` runs NIR graphs in independent simulators
(Sinabs, snnTorch, Norse) to check an export; :mod:`~snnify.export.files`
writes files whole or not at all. docs/nir.md describes the mapping and the
readers.

Example:
    >>> import keras, snnify
    >>> inp = keras.Input((3,), name="pixels")
    >>> converter = snnify.Converter(
    ...     keras.Model(inp, keras.layers.Dense(2, activation="relu", name="d")(inp)),
    ...     swap_activations={"relu": snnify.IntegrateAndFire()},
    ... )
    >>> [type(node).__name__ for node in snnify.export_nir(converter).nodes.values()]
    ['Input', 'Affine', 'IF', 'Output']
"""

from snnify.export.nir_export import export_nir
from snnify.export.nir_import import import_nir
from snnify.export.saving import SavedNetwork, load_network, save_network

__all__ = [
    "SavedNetwork",
    "export_nir",
    "import_nir",
    "load_network",
    "save_network",
]
