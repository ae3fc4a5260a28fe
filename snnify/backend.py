"""Compile a function of the network for the active Keras backend.

This is the only module that imports a backend: it turns a function that reads
Keras variables into a compiled one (``jax.jit``, ``tf.function``) that reads
their current values at every call. Without it the same function runs eagerly
(``compile_function(fn, variables, compiled=False)``). Under a
``keras.distribution`` (JAX) it splits a batch across the devices
(:func:`distribute_batch`) and brings results back (:func:`to_host`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

import keras


def import_unused_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up log muted, if it is installed but unused.

    Keras imports TensorFlow, when it is installed, the first time it
    serialises a layer's configuration (which converting a model does), even
    on the JAX or PyTorch backend; TensorFlow then prints CUDA and CPU notices
    from C++ that Python cannot filter. Importing it here first, with the
    process's standard error closed for the duration, keeps those notices off
    the terminal. Errors are not hidden: a TensorFlow that fails to import
    fails again, loudly, where Keras needs it.
    """
    if (
        keras.backend.backend() == "tensorflow"
        or "tensorflow" in sys.modules
        or importlib.util.find_spec("tensorflow") is None
    ):
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import tensorflow  # noqa: F401
    except Exception:  # Keras reports it when it needs TensorFlow
        pass
    finally:
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)


def compile_function(
    fn, variables, compiled: bool = True, donate_argnums=(), compile_steps=False
):
    """Compile ``fn(*args)``, which may read ``variables``.

    ``donate_argnums``: positions of arguments whose memory the compiled
    function may reuse for its outputs (JAX only; the caller must not use
    these arguments after the call). ``compile_steps``: on PyTorch, which
    runs ``fn`` eagerly, compile the step of every :func:`scan` it runs with
    ``torch.compile``.
    """
    backend = keras.backend.backend()
    if backend == "jax" and compiled:
        import jax

        def pure(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(*args)

        jitted = jax.jit(
            pure,
            donate_argnums=tuple(i + 1 for i in donate_argnums),
            **_jax_jit_options(),
        )
        return lambda *args: jitted([v.value for v in variables], *args)
    if backend == "tensorflow" and compiled:
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    if backend == "torch":
        import torch

        def no_grad(*args):
            _compiled_steps.append(compile_steps)
            try:
                with torch.no_grad():
                    return fn(*args)
            finally:
                _compiled_steps.pop()

        return no_grad
    return fn


# XLA:CPU options for the compiled functions (benchmarks/RESULTS.md, tutorial
# network, 2 cores; the tests' results are unchanged by them):
XLA_CPU_OPTIONS = {
    # With the default copy insertion XLA copies every neuron voltage carried by
    # the scan once per step (it is read by two fusions and updated in place);
    # region analysis orders the two fusions instead.
    "xla_cpu_copy_insertion_use_region_analysis": True,
    # Matrix products through YNNPACK, faster than XLA's own here; only the
    # products, as YNNPACK's convolutions run on one thread and XLA's on all.
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


def _jax_jit_options() -> dict:
    """``jax.jit`` keyword arguments: the XLA:CPU options this JAX accepts.

    Read at every compilation, so that a benchmark may change
    ``XLA_CPU_OPTIONS`` between two simulators.
    """
    import jax

    if jax.default_backend() != "cpu":
        return {}
    accepted = {k: v for k, v in XLA_CPU_OPTIONS.items() if _accepted(k, v)}
    return {"compiler_options": accepted} if accepted else {}


@functools.cache
def _accepted(name: str, value) -> bool:
    """Whether this JAX's XLA knows the compiler option (an older one may not)."""
    import jax

    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value})(0.0)
    except Exception:
        return False
    return True


# whether the scans of the running PyTorch function compile their step
_compiled_steps = [False]
# compiled versions of the step that PyTorch keeps (its default, 8, is used up
# by a few networks or step counts, after which it runs the step eagerly)
TORCH_RECOMPILE_LIMIT = 64


def steps_fused() -> bool:
    """Whether the step of a :func:`scan` traced now is compiled as a whole.

    True on JAX and TensorFlow (XLA) and for PyTorch steps compiled with
    ``torch.compile``; False for eager PyTorch, which runs one operation at a
    time, so that work arranged for fusion (the engine's closed forms) costs
    more operations there than it saves memory traffic.
    """
    if keras.backend.backend() != "torch":
        return True
    return bool(_compiled_steps) and _compiled_steps[-1]


def _torch_scan(f, init, xs, length):
    """``keras.ops.scan`` on PyTorch, its step compiled where asked."""
    if not _compiled_steps[-1]:
        return keras.ops.scan(f, init, xs=xs, length=length)
    import torch
    import torch._dynamo

    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, TORCH_RECOMPILE_LIMIT)
    try:
        # compiled once per network, shapes and steps; cached with the code
        step = torch.compile(f, dynamic=False)
        return keras.ops.scan(step, init, xs=xs, length=length)
    except Exception as error:  # no compiler, or an operation it cannot compile
        import warnings

        warnings.warn(
            f"torch.compile failed ({type(error).__name__}: {error}); the step "
            "runs eagerly. Set configure_settings(torch_compile=False) to skip it.",
            stacklevel=2,
        )
        _compiled_steps[-1] = False
        return keras.ops.scan(f, init, xs=xs, length=length)


def data_distribution():
    """The active ``keras.distribution`` on JAX, or None (one device)."""
    if keras.backend.backend() != "jax":
        return None
    return keras.distribution.distribution()


def batch_shards() -> int:
    """Devices the active distribution splits a batch across (1 without one)."""
    distribution = data_distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    return mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)]


def distribute_batch(values, batch_axis: int = 0):
    """Arrays of ``values`` split along ``batch_axis`` across the devices.

    Uses the layout of the active ``keras.distribution`` (its batch axis of
    the device mesh); without one, ``values`` are returned as they are. The
    batch must be a multiple of :func:`batch_shards`.
    """
    distribution = data_distribution()
    if distribution is None:
        return values

    def put(x):
        axes = [None] * len(x.shape)
        axes[batch_axis] = distribution.batch_dim_name
        layout = keras.distribution.TensorLayout(axes, distribution.device_mesh)
        return keras.distribution.distribute_tensor(x, layout)

    return keras.tree.map_structure(put, values)


def to_host(x):
    """``x`` as a NumPy array; a JAX array on the CPU is viewed, not copied.

    An array split across processes (several hosts) is gathered first.
    """
    if keras.backend.backend() != "jax":
        return keras.ops.convert_to_numpy(x)
    import numpy as np

    if not getattr(x, "is_fully_addressable", True):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def scan(f, init, xs=None, length=None):
    """``keras.ops.scan``, also where the outputs differ from the carry.

    Keras's TensorFlow ``scan`` requires the per-step outputs to have the
    structure of the carry; this one runs the first step outside the loop to
    learn the outputs' structure and records them in TensorArrays.
    """
    if keras.backend.backend() == "torch":
        return _torch_scan(f, init, xs, length)
    if keras.backend.backend() != "tensorflow":
        return keras.ops.scan(f, init, xs=xs, length=length)
    import tensorflow as tf
    from keras import tree

    def inputs_at(i):
        return None if xs is None else tree.map_structure(lambda x: x[i], xs)

    carry, first = f(init, inputs_at(0))
    records = [
        tf.TensorArray(y.dtype, size=length, element_shape=y.shape).write(0, y)
        for y in tree.flatten(first)
    ]

    def body(i, carry, records):
        carry, y = f(carry, inputs_at(i))
        return i + 1, carry, [r.write(i, v) for r, v in zip(records, tree.flatten(y))]

    _, carry, records = tf.while_loop(
        lambda i, *_: i < length, body, (tf.constant(1), carry, records)
    )
    return carry, tree.pack_sequence_as(first, [r.stack() for r in records])
