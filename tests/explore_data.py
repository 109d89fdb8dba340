"""Small image folders for the explore tests (imported by tests/test_explore*.py)."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_digits_folder(folder, n_per_class=30, *, classes=range(10), flat=False):
    """scikit-learn's 8x8 digits as 16x16 PNG files, one sub-folder per class (or flat).

    Returns
    -------
    list of Path
        The files written, in the order the folder source lists them.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = Path(folder)
    written = []
    for label in classes:
        target = folder if flat else folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        picks = np.flatnonzero(digits.target == label)[:n_per_class]
        for i in picks:
            image = Image.fromarray(np.round(digits.images[i] * 255 / 16).astype(np.uint8))
            path = target / f"d{label}-{i:04d}.png"
            image.resize((16, 16), Image.NEAREST).save(path)
            written.append(path)
    return sorted(written)
