"""The Keras-to-SNN tutorial as a command: ``snnify demo``.

The package is not imported by ``import snnify``: it needs matplotlib and the
bundled MNIST data. Its modules: :mod:`~snnify.demo.configurations` (what the
tutorial runs), :mod:`~snnify.demo.tutorial` (its network and training),
:mod:`~snnify.demo.run` (running everything), :mod:`~snnify.demo.report`
(tables and the HTML page), :mod:`~snnify.demo.plots` (figures) and
:mod:`~snnify.demo.datasets` (MNIST offline).

Example:
    >>> from snnify.demo import TUTORIAL_CONFIGURATIONS
    >>> len(TUTORIAL_CONFIGURATIONS)
    12
"""

from snnify.demo.configurations import TUTORIAL_CONFIGURATIONS, Configuration
from snnify.demo.run import Result, run_configuration, run_demo

__all__ = [
    "TUTORIAL_CONFIGURATIONS",
    "Configuration",
    "Result",
    "run_configuration",
    "run_demo",
]
