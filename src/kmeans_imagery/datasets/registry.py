"""Where the downloadable IDX datasets come from, and the cache they are downloaded into.

The cache folder is ``platformdirs.user_cache_dir("kmeans-imagery")``, or the folder named by the
``KMI_CACHE_DIR`` environment variable; each dataset gets a sub-folder (MNIST and Fashion-MNIST use
the same file names). Downloads go through :mod:`pooch`, which writes to a temporary file in the
cache folder and renames it only once its MD5 matches the published one, so a failed, corrupt or
interrupted download never leaves a partial file behind.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .idx import IDX_FILES

__all__ = ["CACHE_ENV", "DATA_ENV", "REMOTE_DATASETS", "DownloadError", "RemoteDataset", "cache_dir",
           "data_env_dir", "download"]

#: The environment variable naming the cache folder.
CACHE_ENV = "KMI_CACHE_DIR"
#: The environment variable naming a folder of dataset files, looked in after ``data_dir``.
DATA_ENV = "KMI_DATA_DIR"

@dataclass(frozen=True)
class RemoteDataset:
    """A dataset of four IDX files that can be downloaded.

    Attributes
    ----------
    md5 : tuple of str
        Published MD5 sums of the files in :data:`IDX_FILES` order.
    mirrors : tuple of str
        Base URLs (ending with ``/``), tried in order.
    label_names : tuple of str or None
        Display names of the integer labels 0..C-1.

    Examples
    --------
    >>> from kmeans_imagery.datasets.registry import REMOTE_DATASETS
    >>> fashion = REMOTE_DATASETS["fashion-mnist"]
    >>> len(fashion.md5), fashion.label_names[:3]
    (4, ('T-shirt/top', 'Trouser', 'Pullover'))
    """

    md5: tuple[str, str, str, str]
    mirrors: tuple[str, ...]
    label_names: tuple[str, ...] | None = None


#: The downloadable datasets by name.
REMOTE_DATASETS = {
    "mnist": RemoteDataset(
        md5=(
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
    "fashion-mnist": RemoteDataset(
        md5=(
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        label_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}

# The downloader pooch uses; tests substitute it (a callable ``(url, output_file, pooch)``). None:
# pooch's HTTP downloader, made on first use. pooch is imported only to download: importing it
# pulls in tqdm.auto, which warns in every notebook without ipywidgets.
default_downloader = None
_TIMEOUT = (10, 60)  # (connect, read) seconds


def cache_dir():
    """The folder downloads are cached in.

    Returns
    -------
    folder : Path
        ``$KMI_CACHE_DIR`` when set, else ``platformdirs.user_cache_dir("kmeans-imagery")``.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> from kmeans_imagery.datasets import cache_dir
    >>> with mock.patch.dict(os.environ, {"KMI_CACHE_DIR": "/data/kmi-cache"}):
    ...     print(cache_dir())
    /data/kmi-cache
    """
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("kmeans-imagery"))


def _registry():
    """A pooch registry of every downloadable file, keyed ``<dataset>/<file>``.

    Built on each call, not at import, so that a change of ``KMI_CACHE_DIR`` is honoured.
    """
    import pooch

    return pooch.create(
        path=cache_dir(),
        base_url=REMOTE_DATASETS["mnist"].mirrors[0],
        registry={
            f"{name}/{fname}": f"md5:{md5}"
            for name, spec in REMOTE_DATASETS.items()
            for fname, md5 in zip(IDX_FILES, spec.md5, strict=True)
        },
    )


def download(name):
    """Download the missing files of a dataset into the cache, trying each mirror in turn.

    Files already in the cache are kept as they are: they were checked when downloaded, and the
    loader validates their format.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
        The dataset. Files are fetched with :data:`default_downloader`.

    Returns
    -------
    folder : Path
        The cache sub-folder holding the four files.

    Raises
    ------
    DownloadError
        When a file cannot be fetched from any mirror (no network, a missing file on the server,
        an MD5 mismatch), with the last mirror's reason. The caller turns it into a KMIError.

    Examples
    --------
    Files already in the cache are not fetched again:

    >>> import os
    >>> import tempfile
    >>> from pathlib import Path
    >>> from unittest import mock
    >>> from kmeans_imagery.datasets.idx import IDX_FILES
    >>> from kmeans_imagery.datasets.registry import download
    >>> with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"KMI_CACHE_DIR": cache}):
    ...     (Path(cache) / "mnist").mkdir()
    ...     for fname in IDX_FILES:
    ...         (Path(cache) / "mnist" / fname).touch()
    ...     print(download("mnist") == Path(cache) / "mnist")
    True
    """
    import pooch

    spec = REMOTE_DATASETS[name]
    registry = _registry()
    downloader = default_downloader or pooch.HTTPDownloader(timeout=_TIMEOUT)
    # pooch logs every attempt on stderr; a failure is reported once, as one line, by the caller.
    pooch.get_logger().setLevel("WARNING")
    for fname in IDX_FILES:
        key = f"{name}/{fname}"
        if (registry.abspath / key).is_file():
            continue
        for i, mirror in enumerate(spec.mirrors):
            registry.urls[key] = mirror + fname
            try:
                registry.fetch(key, downloader=downloader)
                break
            except Exception as exc:
                # Network, HTTP and hash errors come in many types (requests, OSError, pooch's
                # ValueError); any of them means "try the next mirror".
                if i == len(spec.mirrors) - 1:
                    raise DownloadError(f"{mirror + fname}: {_reason(exc)}") from exc
    return registry.abspath / name


class DownloadError(OSError):
    """A file could not be downloaded from any mirror; the message is one short line.

    Examples
    --------
    >>> from kmeans_imagery.datasets.registry import DownloadError
    >>> try:
    ...     raise DownloadError("https://example.org/t10k-images-idx3-ubyte.gz: timed out")
    ... except OSError as error:
    ...     print(error)
    https://example.org/t10k-images-idx3-ubyte.gz: timed out
    """


def _reason(exc):
    """A short reason for a failed download, without the library's multi-line details."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectionError):
        return "no connection (offline?)"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "hash" in text and "does not match" in text:
        return "MD5 checksum mismatch, the download is corrupt or was tampered with"
    return text if len(text) <= 120 else text[:117] + "..."


def data_env_dir():
    """The folder named by ``KMI_DATA_DIR``, or None when unset or empty.

    Returns
    -------
    Path or None
        The folder, not checked.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> from kmeans_imagery.datasets.registry import data_env_dir
    >>> with mock.patch.dict(os.environ, {"KMI_DATA_DIR": "../shared/data/mnist"}):
    ...     print(data_env_dir())
    ../shared/data/mnist
    >>> with mock.patch.dict(os.environ, {"KMI_DATA_DIR": " "}):
    ...     print(data_env_dir())
    None
    """
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value) if value else None

