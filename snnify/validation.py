"""Checks of user input at the API boundary, and files written whole or not at all.

Every check raises an error in Keras's style: what is wrong, ``Received:
name=value``, and what to do. docs/reliability.md lists the inputs they
refuse.

Example:
    >>> positive_number(20, "scale_firing_rates")
    20.0
    >>> positive_number(0, "scale_firing_rates")
    Traceback (most recent call last):
    ...
    ValueError: scale_firing_rates must be positive and finite. Received: scale_firing_rates=0
"""

from __future__ import annotations

import numbers
import os
import stat
import tempfile

import numpy as np

# Histories of a simulation may take at most this fraction of the memory
# available when it starts (see check_memory); raise it to allow more.
MEMORY_FRACTION = 0.5


def received(value) -> str:
    """``repr(value)`` for an error message, an array by its shape and dtype only.

    Example:
        >>> received(np.zeros((64, 28, 28)))
        'an array of shape (64, 28, 28) and dtype float64'
    """
    if np.ndim(value) > 0 and hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def class_labels(y, n_examples: int) -> np.ndarray:
    """Integer class labels, one per example, from labels or one-hot targets.

    ``y``: labels ``(n,)``, ``(n, 1)`` or ``(n, 1, 1)``, or one-hot (or
    probability) rows ``(n, k)`` or ``(n, 1, k)``, whose arg-max is the class.

    Example:
        >>> class_labels(np.array([[0.0, 1.0], [1.0, 0.0]]), 2)
        array([1, 0])
    """
    y = np.asarray(y)
    rows = y.reshape(len(y), -1) if y.ndim else y.reshape(1, 1)
    if (
        y.ndim == 0
        or len(y) != n_examples
        or (y.ndim > 1 and y.shape[-1] != rows.shape[1])
    ):
        raise ValueError(
            f"Labels must be one per example, for {n_examples} examples: integers "
            "(n,), (n, 1) or (n, 1, 1), or one-hot rows (n, k) or (n, 1, k). "
            f"Received: shape={y.shape}"
        )
    if rows.shape[1] > 1:
        return rows.argmax(axis=1)
    labels = rows[:, 0]
    if not (
        np.issubdtype(labels.dtype, np.number) and np.all(labels == np.round(labels))
    ):
        raise ValueError(
            "Labels must be integer classes (or one-hot rows). Received: "
            f"dtype={labels.dtype}, e.g. {labels[:3].tolist()!r}"
        )
    return labels.astype("int64")


def are_class_labels(y, n_classes: int) -> bool:
    """Whether targets ``y`` are surely class labels: integers ``(n,)`` or
    ``(n, 1)``, or one-hot rows of ``n_classes`` (not regression targets).

    Example:
        >>> are_class_labels(np.array([3, 1]), 10), are_class_labels(np.eye(2), 2)
        (True, True)
        >>> are_class_labels(np.array([[0.5], [1.5]]), 10)
        False
    """
    if not isinstance(y, np.ndarray) or y.ndim == 0 or len(y) == 0:
        return False
    rows = y.reshape(len(y), -1)
    if rows.shape[1] == 1:
        return np.issubdtype(y.dtype, np.integer)
    return (
        rows.shape[1] == n_classes
        and bool(np.isin(rows, (0, 1)).all())
        and bool((rows.sum(axis=1) == 1).all())
    )


def is_positive_number(value) -> bool:
    """Whether ``value`` is a real number (not a bool), finite and > 0."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
        and value > 0
    )


def positive_number(value, name: str, what: str = "") -> float:
    """``value`` as a float, after checking it is a finite number > 0."""
    if not is_positive_number(value):
        raise ValueError(
            f"{name} must be positive and finite{what}. "
            f"Received: {name}={received(value)}"
        )
    return float(value)


def positive_integer(value, name: str, what: str = "") -> int:
    """``value`` as an int, after checking it is an integer >= 1.

    Python and NumPy integers pass, and floats with an integral value (``4.0``);
    bools do not.

    Example:
        >>> positive_integer(4.0, "n_steps")
        4
    """
    if not (is_positive_number(value) and int(value) == value):  # > 0: >= 1
        raise ValueError(
            f"{name} must be an integer >= 1{what}. Received: {name}={received(value)}"
        )
    return int(value)


def positive_array(value, name: str, what: str = "") -> np.ndarray | float:
    """A number or array whose elements are all finite and > 0 (as float)."""
    if np.ndim(value) == 0:
        number = value.item() if isinstance(value, np.ndarray) else value
        return positive_number(number, name, what)
    array = np.asarray(value)
    good = np.zeros(array.shape, bool)
    if array.dtype.kind in "fiu":
        good = np.isfinite(array) & (array > 0)
    if not good.all():
        raise ValueError(
            f"Every element of {name} must be positive and finite{what}. Received: "
            f"{name} with {int((~good).sum())} of {array.size} elements not, e.g. "
            f"{array[~good][0].tolist()!r}"
        )
    return array


def check_finite(array: np.ndarray, what: str) -> None:
    """Raise if a float array holds NaN or infinity (integer arrays pass)."""
    if array.dtype.kind not in "fc" or array.size == 0:
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    index = np.unravel_index(int(np.argmin(finite)), array.shape)
    raise ValueError(
        f"{what} holds {int(array.size - finite.sum())} NaN or infinite values "
        f"(the first at index {tuple(int(i) for i in index)}), which would make "
        "every output and weight they reach NaN. Remove those examples or replace "
        f"the values (np.nan_to_num). Received: {what} of shape {array.shape}"
    )


def check_seed(seed) -> int:
    """``seed`` as an int, after checking it is an integer >= 0."""
    if (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or not 0 <= seed < 2**63
    ):
        raise ValueError(
            f"seed must be an integer >= 0 (or None for a random one). "
            f"Received: seed={seed!r}"
        )
    return int(seed)


def check_targets(target: np.ndarray, probe, batch: int, steps: set) -> np.ndarray:
    """``target`` after checking its shape against ``probe``'s output, and values.

    A probe's output is ``(batch, steps, size_in)``; a target is that, with
    one step (held for all steps) or one value per step (labels).
    """
    shape = target.shape
    if (
        target.ndim != 3
        or shape[0] != batch
        or shape[1] not in steps
        or shape[2] not in (1, probe.size_in)
    ):
        steps_text = " or ".join(str(s) for s in sorted(steps))
        raise ValueError(
            f"The targets of probe {probe.name!r} must have the shape of its output, "
            f"(batch={batch}, steps={steps_text}, {probe.size_in}), or (batch, "
            f"steps, 1) for labels. Received: shape={shape}. Add the time axis of "
            "one step with y[:, None] (e.g. (n, 2) -> (n, 1, 2))."
        )
    if target.dtype.kind not in "biuf":
        raise TypeError(
            f"The targets of probe {probe.name!r} must hold real numbers. "
            f"Received: dtype={target.dtype}"
        )
    check_finite(target, f"The target array of probe {probe.name!r}")
    return target


# --- memory ---------------------------------------------------------------
def available_memory() -> int | None:
    """Bytes of memory available now (None where it cannot be told)."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_bytes: int, what: str, fix: str) -> None:
    """Refuse to allocate ``n_bytes`` beyond ``MEMORY_FRACTION`` of free memory.

    ``what`` describes the allocation, ``fix`` the ways to need less.
    """
    available = available_memory()
    if available is None or n_bytes <= MEMORY_FRACTION * available:
        return
    raise MemoryError(
        f"{what} would need {_gib(n_bytes)}, more than "
        f"snnify.validation.MEMORY_FRACTION={MEMORY_FRACTION} of the "
        f"{_gib(available)} of memory available. {fix} (To allow it anyway, raise "
        "snnify.validation.MEMORY_FRACTION.)"
    )


def check_history_memory(recorded: dict, n_examples: int, n_steps: int) -> None:
    """Refuse histories ``{probe: steps between samples}`` that memory cannot hold.

    Each probe records ``size_in`` float32 values per example and sample.
    """
    n_bytes = sum(
        4 * n_examples * (n_steps // every) * probe.size_in
        for probe, every in recorded.items()
    )
    names = ", ".join(repr(p.name) for p in recorded)
    check_memory(
        n_bytes,
        f"Recording {n_examples} examples x {n_steps} steps of the probes {names}",
        "Keep less: Probe(..., keep='last') or keep='stats' need memory independent "
        "of n_steps, sample_every=... records every k-th step; or simulate fewer "
        "examples or steps per call (a stateful run continues where one stopped).",
    )


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


# --- files ----------------------------------------------------------------
def check_file_path(path, what: str = "file") -> str:
    """``path`` as a string, refusing a folder or a name that is only a suffix."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"The {what} path must be a string or os.PathLike. Received: path={path!r}"
        ) from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not os.path.basename(text):
        raise ValueError(
            f"The {what} path must name a file, not a folder. Received: "
            f"path={text!r}; give a file name, e.g. "
            f"{os.path.join(text or '.', 'params')!r}"
        )
    if os.path.isdir(text):
        raise IsADirectoryError(
            f"The {what} path is a folder. Received: path={text!r}; give a file "
            f"name inside it, e.g. {os.path.join(text, 'params')!r}"
        )
    return text


def write_atomically(path, write) -> None:
    """Call ``write(temporary)`` on a file next to ``path``, then rename it.

    ``path`` is either the complete new file or what it was before: the
    temporary file is removed if anything fails. A symbolic link is written
    through (its target replaced), an existing file keeps its permissions,
    and a new one gets those of a new file. Errors name ``path``.
    """
    path = check_file_path(path)
    target = os.path.realpath(path)  # through symbolic links
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"The folder of {path!r} does not exist. Create it first. "
            f"Received: path={path!r}"
        )
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    suffix = os.path.splitext(target)[1]
    name = "." + os.path.basename(target) + ".snnify-"
    try:
        fd, temporary = tempfile.mkstemp(suffix=suffix, prefix=name, dir=folder)
    except OSError as error:
        raise _named(error, path) from error
    os.close(fd)
    try:
        write(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError):
            raise _named(error, path) from error
        raise


def _named(error: OSError, path: str) -> OSError:
    """``error`` naming the user's path instead of a temporary file."""
    reason = error.strerror or str(error)
    return type(error)(
        error.errno,
        f"Could not write {path!r}: {reason}. Check that its folder is writable "
        "and has space.",
    )
