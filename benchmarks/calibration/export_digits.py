"""Export scikit-learn's bundled 8x8 digits (1797 images) to data/digits8x8.npz.

Run with the venv that has scikit-learn (venv-sj), not the main venv:

    venv-sj/bin/python export_digits.py
"""

from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
(HERE / "data").mkdir(exist_ok=True)
digits = load_digits()  # bundled with scikit-learn, no download
np.savez_compressed(
    HERE / "data" / "digits8x8.npz",
    images=digits.images.astype("uint8"),  # values 0..16
    target=digits.target.astype("uint8"),
    sklearn_version=np.array(sklearn.__version__),
)
print(digits.images.shape, digits.images.max(), np.bincount(digits.target))
