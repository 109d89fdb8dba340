"""Fixtures shared by the whole test suite."""

from pathlib import Path

import numpy as np
import pytest

# The MNIST IDX files live beside the repository, never inside it (see ../shared/data/mnist/README.md).
MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session")
def mnist_dir():
    """The shared MNIST folder; tests that need it skip with a reason where it is absent."""
    if not all((MNIST_DIR / name).is_file() for name in MNIST_FILES):
        pytest.skip(f"MNIST IDX files not found in {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(scope="session")
def digits_rows():
    """scikit-learn's bundled 8x8 digits as float32 rows in [0, 1] and int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_report_header(config):
    return f"MNIST folder: {MNIST_DIR} ({'present' if MNIST_DIR.is_dir() else 'absent'})"

