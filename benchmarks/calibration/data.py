"""Data sets of the calibration benchmark (numpy only, so every venv can use it).

Images are returned channels-last ``(n, H, W, 1)`` float32, labels ``(n,)``
int64. Each data set has a training set, a test set and the 500 calibration
images (the first 500 training images, as in benchmarks/bench_latency.py).

- ``mnist255``: the bundled MNIST subset (10,000 training images, the full
  10,000-image test set), pixel values kept in 0..255 -- the tutorial's
  recipe ("Pixel values are used as they are (0 to 255), as in the tutorial").
- ``mnist01``: the same images scaled to [0, 1].
- ``taskB``: "shifted noisy MNIST" of benchmarks/bench_latency.py (training
  images with seed 1, test images with seed 2): shift by up to 3 px, contrast
  0.5-1, uniform noise in [0, 0.5), clipped to [0, 1].
- ``digits16``: scikit-learn's bundled 8x8 digits (1,797 images, values 0..16,
  exported by export_digits.py), scaled to [0, 1] and upsampled bilinearly to
  16x16; fixed split: a permutation with numpy seed 0, the first 597 images
  are the test set, the other 1,200 the training set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# the MNIST subset bundled with snnify (read directly: the SpikingJelly venv
# has no snnify)
MNIST = HERE.parents[1] / "snnify" / "demo" / "data" / "mnist-subset.npz"
DIGITS = HERE / "data" / "digits8x8.npz"
N_CALIBRATION = 500
DATASETS = ("mnist255", "mnist01", "taskB", "digits16")


def _mnist():
    with np.load(MNIST) as d:
        return (
            (d["x_train"].astype("float32"), d["y_train"].astype("int64")),
            (d["x_test"].astype("float32"), d["y_test"].astype("int64")),
        )


def shifted_noisy(images: np.ndarray, seed: int) -> np.ndarray:
    """Task B's images from MNIST images in [0, 1], ``(n, 28, 28)``.

    Copied from benchmarks/bench_latency.py (same random stream).
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    padded = np.pad(images, ((0, 0), (3, 3), (3, 3)))
    dy, dx = rng.integers(0, 7, (2, n))
    rows = dy[:, None] + np.arange(28)
    cols = dx[:, None] + np.arange(28)
    shifted = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    contrast = rng.uniform(0.5, 1.0, (n, 1, 1))
    noise = rng.uniform(0.0, 0.5, images.shape)
    return np.clip(shifted * contrast + noise, 0, 1).astype("float32")


def _interpolation(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` bilinear (half-pixel centres) resampling matrix."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = src - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - w
    m[np.arange(n_out), hi] += w
    return m


def load(name: str):
    """``((x_train, y_train), (x_test, y_test))``, channels-last float32."""
    if name in ("mnist255", "mnist01", "taskB"):
        (x_train, y_train), (x_test, y_test) = _mnist()
        if name != "mnist255":
            x_train, x_test = x_train / 255, x_test / 255
        if name == "taskB":
            x_train = shifted_noisy(x_train, 1)
            x_test = shifted_noisy(x_test, 2)
    elif name == "digits16":
        with np.load(DIGITS) as d:
            images = d["images"].astype("float64") / 16
            labels = d["target"].astype("int64")
        u = _interpolation(16, 8)
        images = np.einsum("ij,njk,lk->nil", u, images, u)
        order = np.random.default_rng(0).permutation(len(images))
        test, train = order[:597], order[597:]
        x_train, y_train = images[train], labels[train]
        x_test, y_test = images[test], labels[test]
    else:
        raise ValueError(f"unknown data set {name!r}; known: {DATASETS}")
    return (
        (x_train[..., None].astype("float32"), y_train),
        (x_test[..., None].astype("float32"), y_test),
    )


def evaluation_arrays(name: str):
    """``(x_calibration, x_test, y_test)`` as saved for the baselines."""
    (x_train, _), (x_test, y_test) = load(name)
    return x_train[:N_CALIBRATION], x_test, y_test
