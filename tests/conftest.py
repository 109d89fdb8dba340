"""Fixtures shared by the whole test suite."""

import shutil
import subprocess
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PageLoad:
    """What headless Chromium saw of a page: its DOM after the load event, and its console lines."""

    dom: str
    #: Chromium logs every console message of the page and of its frames (errors, uncaught
    #: exceptions) on stderr as ":CONSOLE" lines, with the source page.
    console: list


@pytest.fixture
def load_in_chromium(tmp_path):
    """``load(page)``: open an HTML file in headless Chromium (Debian's ``chromium``) -> PageLoad.

    Skips the test where Chromium is not installed. Pages may read the files beside them, and
    frames of other local files (``--allow-file-access-from-files``); nothing is fetched from
    the network.
    """
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")

    def load(page, timeout=60):
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--allow-file-access-from-files",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
            "--dump-dom", Path(page).resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-2000:]
        return PageLoad(done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line])

    return load


def pytest_report_header(config):
    return f"MNIST folder: {MNIST_DIR} ({'present' if MNIST_DIR.is_dir() else 'absent'})"

