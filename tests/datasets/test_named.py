"""Tests for load_dataset: named IDX datasets, their look-up order and download, digits, paths."""

import dataclasses
import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kmeans_imagery.datasets import Dataset, cache_dir, load_dataset, parse_size, registry, write_idx
from kmeans_imagery.errors import KMIError

FILES = registry.IDX_FILES


class OfflineError(OSError):
    pass


def offline(url, output_file, pooch):
    raise OfflineError(f"no network in tests: {url}")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any download a test does not arrange itself fails as if offline."""
    monkeypatch.setattr(registry, "default_downloader", offline)


def make_idx_folder(folder, n_train=12, n_test=5, shape=(28, 28), n_classes=10, seed=0):
    """Write a small dataset of four IDX gzip files; return its arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        rng.integers(0, n_classes, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        rng.integers(0, n_classes, n_test, dtype=np.uint8),
    )
    for fname, array in zip(FILES, arrays, strict=True):
        write_idx(folder / fname, array)
    return arrays


def assert_matches(dataset, arrays):
    train_images, train_labels, test_images, test_labels = arrays
    np.testing.assert_array_equal(dataset.train_images, train_images)
    np.testing.assert_array_equal(dataset.train_labels, train_labels)
    np.testing.assert_array_equal(dataset.test_images, test_images)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.dtype.kind == "i"


# --- where the IDX files are found -------------------------------------------------------------


@pytest.mark.parametrize("sub_folder", [False, True])
def test_data_dir_holds_files_directly_or_per_dataset(tmp_path, sub_folder):
    arrays = make_idx_folder(tmp_path / "mnist" if sub_folder else tmp_path)
    dataset = load_dataset("mnist", tmp_path)
    assert_matches(dataset, arrays)
    assert dataset.name == "mnist" and dataset.label_names is None
    assert dataset.source == str(tmp_path / "mnist" if sub_folder else tmp_path)
    assert dataset.image_shape == (28, 28)


@pytest.mark.parametrize(("name", "layout"), [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"),
                                             ("mnist", "raw")])
def test_data_dir_as_torchvision_leaves_it(tmp_path, name, layout):
    # torchvision.datasets.MNIST(root) keeps the files in ROOT/MNIST/raw: its root or its
    # dataset folder is the data_dir.
    arrays = make_idx_folder(tmp_path / layout)
    dataset = load_dataset(name, tmp_path)
    assert_matches(dataset, arrays)
    assert dataset.source == str(tmp_path / layout)


@pytest.mark.parametrize("sub_folder", [False, True])
def test_environment_variable(tmp_path, monkeypatch, sub_folder):
    arrays = make_idx_folder(tmp_path / "fashion-mnist" if sub_folder else tmp_path)
    monkeypatch.setenv("KMI_DATA_DIR", str(tmp_path))
    assert_matches(load_dataset("fashion-mnist"), arrays)


def test_data_dir_wins_over_environment_and_cache(tmp_path, monkeypatch):
    given = make_idx_folder(tmp_path / "given", seed=1)
    make_idx_folder(tmp_path / "env", seed=2)
    make_idx_folder(cache_dir() / "mnist", seed=3)
    monkeypatch.setenv("KMI_DATA_DIR", str(tmp_path / "env"))
    assert_matches(load_dataset("mnist", tmp_path / "given"), given)


def test_environment_wins_over_cache(tmp_path, monkeypatch):
    from_env = make_idx_folder(tmp_path / "env", seed=2)
    make_idx_folder(cache_dir() / "mnist", seed=3)
    monkeypatch.setenv("KMI_DATA_DIR", str(tmp_path / "env"))
    assert_matches(load_dataset("mnist"), from_env)


def test_cache_is_used_before_downloading(monkeypatch, tmp_path):
    monkeypatch.setenv("KMI_CACHE_DIR", str(tmp_path / "my-cache"))
    assert cache_dir() == tmp_path / "my-cache"
    cached = make_idx_folder(tmp_path / "my-cache" / "mnist")
    dataset = load_dataset("MNIST")  # names are case-insensitive
    assert_matches(dataset, cached)
    assert dataset.source == str(tmp_path / "my-cache" / "mnist")


def test_folders_without_the_files_are_passed_over(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    cached = make_idx_folder(cache_dir() / "mnist")
    monkeypatch.setenv("KMI_DATA_DIR", str(tmp_path / "empty"))
    assert_matches(load_dataset("mnist", tmp_path / "empty"), cached)


def test_cache_folder_defaults_to_platformdirs(monkeypatch):
    import platformdirs

    monkeypatch.delenv("KMI_CACHE_DIR")
    assert str(cache_dir()) == platformdirs.user_cache_dir("kmeans-imagery")


def test_a_folder_with_part_of_the_files_names_the_missing_ones(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / FILES[3]).unlink()
    with pytest.raises(KMIError, match=f"lacks {FILES[3]}"):
        load_dataset("mnist", tmp_path)


def test_data_dir_that_is_not_a_folder(tmp_path):
    with pytest.raises(KMIError, match="--data-dir .*absent is not a folder"):
        load_dataset("mnist", tmp_path / "absent")


def test_fashion_mnist_has_label_names(tmp_path):
    make_idx_folder(tmp_path)
    dataset = load_dataset("fashion-mnist", tmp_path)
    assert dataset.label_names[0] == "T-shirt/top" and dataset.label_names[9] == "Ankle boot"
    assert len(dataset.label_names) == 10


# --- downloading (with substitute downloaders: there is no network in tests) ----------------


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Files a fake server serves, registered under their true MD5 as the mnist dataset."""
    arrays = make_idx_folder(tmp_path / "server")
    contents = {fname: (tmp_path / "server" / fname).read_bytes() for fname in FILES}
    md5 = tuple(hashlib.md5(contents[f]).hexdigest() for f in FILES)
    spec = registry.RemoteDataset(md5=md5, mirrors=("https://first.example/", "https://second.example/"))
    monkeypatch.setitem(registry.REMOTE_DATASETS, "mnist", spec)
    return arrays, contents


def server(contents, fail_hosts=(), calls=None):
    def download(url, output_file, pooch):
        if calls is not None:
            calls.append(url)
        if any(host in url for host in fail_hosts):
            raise OfflineError(f"cannot reach {url}")
        with open(output_file, "wb") as out:
            out.write(contents[url.rsplit("/", 1)[1]])

    return download


def test_download_checks_and_caches(served, monkeypatch):
    arrays, contents = served
    calls = []
    monkeypatch.setattr(registry, "default_downloader", server(contents, calls=calls))
    dataset = load_dataset("mnist")
    assert_matches(dataset, arrays)
    assert dataset.source == "downloaded"
    assert calls == [f"https://first.example/{f}" for f in FILES]
    assert sorted(p.name for p in (cache_dir() / "mnist").iterdir()) == sorted(FILES)
    # The second load comes from the cache, without any download.
    monkeypatch.setattr(registry, "default_downloader", offline)
    assert load_dataset("mnist").source == str(cache_dir() / "mnist")


def test_download_falls_back_to_the_next_mirror(served, monkeypatch):
    arrays, contents = served
    calls = []
    downloader = server(contents, fail_hosts=("first.example",), calls=calls)
    monkeypatch.setattr(registry, "default_downloader", downloader)
    assert_matches(load_dataset("mnist"), arrays)
    assert calls[:2] == [f"https://first.example/{FILES[0]}", f"https://second.example/{FILES[0]}"]


def test_download_fetches_only_missing_files(served, monkeypatch):
    _, contents = served
    (cache_dir() / "mnist").mkdir(parents=True)
    (cache_dir() / "mnist" / FILES[0]).write_bytes(contents[FILES[0]])
    calls = []
    monkeypatch.setattr(registry, "default_downloader", server(contents, calls=calls))
    load_dataset("mnist")
    assert [c.rsplit("/", 1)[1] for c in calls] == list(FILES[1:])


def test_hash_mismatch_leaves_no_file(served, monkeypatch):
    _, contents = served
    tampered = dict(contents, **{FILES[1]: contents[FILES[1]] + b"extra"})
    monkeypatch.setattr(registry, "default_downloader", server(tampered))
    with pytest.raises(KMIError, match=r"downloading them failed \(.*MD5 checksum mismatch") as info:
        load_dataset("mnist")
    assert "\n" not in str(info.value)
    left = sorted(p.name for p in (cache_dir() / "mnist").iterdir())
    assert left == [FILES[0]]  # the good first file stays; no trace of the bad one


def test_interrupted_download_leaves_no_partial_file(served, monkeypatch):
    _, contents = served

    def interrupted(url, output_file, pooch):
        with open(output_file, "wb") as out:
            out.write(contents[FILES[0]][:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "default_downloader", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("mnist")
    assert list((cache_dir() / "mnist").iterdir()) == []


def test_offline_without_files_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KMI_DATA_DIR", str(tmp_path))
    with pytest.raises(KMIError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert "\n" not in message
    for needle in (*FILES, "--data-dir (not set)", str(tmp_path), str(cache_dir()), "digits"):
        assert needle in message
    assert f"fashion-mnist.s3-website.eu-central-1.amazonaws.com/{FILES[0]}: no network" in message
    assert not (cache_dir() / "fashion-mnist").exists() or not any(
        (cache_dir() / "fashion-mnist").iterdir()
    )


def test_registry_holds_the_published_md5_sums():
    hashes = registry._registry().registry
    assert hashes["mnist/train-images-idx3-ubyte.gz"] == "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert hashes["mnist/t10k-labels-idx1-ubyte.gz"] == "md5:ec29112dd5afa0611ce80d1b7f02629c"
    assert hashes["fashion-mnist/train-images-idx3-ubyte.gz"] == (
        "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    )
    assert hashes["fashion-mnist/t10k-labels-idx1-ubyte.gz"] == (
        "md5:bb300cfdad3c16e7a12a480ee83cd310"
    )


@pytest.mark.mnist
def test_published_hashes_accept_the_real_files_and_reject_rebuilt_ones(mnist_dir, monkeypatch):
    """The shared labels are byte-identical to the published ones; the train images are not."""

    def copy_shared(url, output_file, pooch):
        shutil.copyfile(mnist_dir / url.rsplit("/", 1)[1], output_file)

    monkeypatch.setattr(registry, "default_downloader", copy_shared)
    with pytest.raises(KMIError, match="downloading them failed"):
        load_dataset("mnist")
    assert not (cache_dir() / "mnist" / FILES[0]).exists()
    registry._registry().fetch("mnist/t10k-labels-idx1-ubyte.gz", downloader=copy_shared)
    assert (cache_dir() / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


# --- IDX folders given as a path, and their validation ------------------------------------------


def test_any_idx_folder_of_the_same_format(tmp_path):
    arrays = make_idx_folder(tmp_path / "letters", shape=(10, 12), n_classes=4)
    dataset = load_dataset(tmp_path / "letters")
    assert_matches(dataset, arrays)
    assert dataset.name == "letters" and dataset.image_shape == (10, 12)
    assert dataset.source == str(tmp_path / "letters")


def test_uncompressed_and_dotted_file_names(tmp_path):
    arrays = make_idx_folder(tmp_path / "gz")
    (tmp_path / "raw").mkdir()
    for fname, array in zip(FILES, arrays, strict=True):
        raw_name = fname.removesuffix(".gz").replace("-idx", ".idx")
        write_idx(tmp_path / "raw" / raw_name, array)
    assert_matches(load_dataset("mnist", tmp_path / "raw"), arrays)


def test_idx_folder_without_test_split(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / FILES[2]).unlink()
    (tmp_path / FILES[3]).unlink()
    dataset = load_dataset(tmp_path)
    assert dataset.test_images is None and dataset.test_labels is None
    assert len(dataset.train_images) == 12


def test_label_count_mismatch_names_both_files(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / FILES[3], np.zeros(4, np.uint8))
    with pytest.raises(KMIError) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert FILES[3] in message and FILES[2] in message
    assert "4 labels" in message and "5 images" in message


def test_truncated_file_in_a_local_folder(tmp_path):
    make_idx_folder(tmp_path)
    data = (tmp_path / FILES[0]).read_bytes()
    (tmp_path / FILES[0]).write_bytes(data[: len(data) // 2])
    with pytest.raises(KMIError, match=f"{FILES[0]}.*(truncated|corrupt)"):
        load_dataset("mnist", tmp_path)


def test_wrong_magic_in_a_local_folder(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / FILES[1]).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    with pytest.raises(KMIError, match=FILES[1]):
        load_dataset("mnist", tmp_path)


def test_labels_file_with_images_inside(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / FILES[1], np.zeros((12, 2), np.uint8))
    with pytest.raises(KMIError, match=f"{FILES[1]} is not a labels file"):
        load_dataset("mnist", tmp_path)


def test_train_and_test_image_shapes_must_agree(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / FILES[2], np.zeros((5, 14, 14), np.uint8))
    with pytest.raises(KMIError, match="shape"):
        load_dataset("mnist", tmp_path)


@pytest.mark.mnist
def test_real_mnist(mnist_dir):
    dataset = load_dataset("mnist", mnist_dir)
    assert dataset.train_images.shape == (60000, 28, 28)
    assert dataset.test_images.shape == (10000, 28, 28)
    assert dataset.train_images.dtype == np.uint8
    assert np.bincount(dataset.train_labels).tolist()[:2] == [5923, 6742]
    assert dataset.train_labels[:5].tolist() == [5, 0, 4, 1, 9]


# --- digits, options, and the Dataset itself ----------------------------------------------------


def test_digits_is_bundled_and_reproducible():
    first, second = load_dataset("digits"), load_dataset("digits")
    assert first.source == "bundled" and first.name == "digits"
    assert first.train_images.shape == (1437, 8, 8) and first.test_images.shape == (360, 8, 8)
    assert first.train_images.dtype == np.uint8 and first.train_images.max() == 255
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)
    # Stratified: every digit is in both splits in about the same proportion.
    assert np.bincount(first.test_labels).min() >= 35


def test_color_and_size_options(tmp_path):
    make_idx_folder(tmp_path)
    rgb = load_dataset("mnist", tmp_path, color="rgb")
    assert rgb.train_images.shape == (12, 28, 28, 3) and rgb.image_shape == (28, 28, 3)
    np.testing.assert_array_equal(rgb.train_images[..., 1], load_dataset(tmp_path).train_images)
    small = load_dataset("digits", size="4x6")
    assert small.train_images.shape == (1437, 4, 6) and small.test_images.shape == (360, 4, 6)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(None, None), ("28x28", (28, 28)), (" 10X20 ", (10, 20)), (7, (7, 7)), ("32", (32, 32)),
     ((3, 4), (3, 4)), ("auto", "auto"), (" Auto ", "auto")],
)
def test_parse_size(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["28x", "0x5", "axb", (1, 2, 3), 0, object()])
def test_parse_size_rejects(size):
    with pytest.raises(KMIError, match="size"):
        parse_size(size)


def test_bad_color():
    with pytest.raises(KMIError, match="color"):
        load_dataset("digits", color="cmyk")


def test_progress_is_reported(tmp_path):
    make_idx_folder(tmp_path)
    events = []

    class Bar:
        def __init__(self, total, description):
            events.append(("open", total, description))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append(("close",))

        def advance(self, n=1):
            events.append(("advance", n))

    load_dataset("mnist", tmp_path, progress=Bar)
    opened = [e for e in events if e[0] == "open"]
    assert [e[2] for e in opened] == ["reading mnist-train", "reading mnist-test"]
    assert events[-1] == ("close",)
    assert sum(e[1] for e in events if e[0] == "advance") == sum(e[1] for e in opened)


def test_missing_path():
    with pytest.raises(KMIError, match="no-such-thing does not exist"):
        load_dataset("no-such-thing")


def test_unsupported_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(KMIError, match="notes.txt is not a dataset"):
        load_dataset(tmp_path / "notes.txt")


def test_dataset_is_frozen():
    dataset = load_dataset("digits")
    assert isinstance(dataset, Dataset)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.name = "other"
    assert dataset.skipped == {} and dataset.label_names is None


@pytest.mark.parametrize(
    ("shape", "size"),
    [((30, 28, 28), (14, 14)), ((30, 28, 28), (40, 33)), ((20, 6, 9, 3), (9, 4)), ((5, 8, 8), (8, 3))],
)
def test_resize_matches_pillow_image_by_image(rng, shape, size):
    from PIL import Image

    from kmeans_imagery.datasets.convert import RESAMPLE, resize_images

    images = rng.integers(0, 256, shape, dtype=np.uint8)
    expected = [Image.fromarray(im).resize(size[::-1], RESAMPLE) for im in images]
    np.testing.assert_array_equal(resize_images(images, size), np.stack(expected))


def test_download_reasons_are_short():
    import requests

    response = requests.Response()
    response.status_code = 404
    assert registry._reason(requests.HTTPError(response=response)) == "HTTP 404"
    assert registry._reason(requests.ConnectionError("long\nstory")) == "no connection (offline?)"
    assert registry._reason(requests.Timeout()) == "timed out"
    assert len(registry._reason(OSError("x" * 500))) == 120


def test_reading_a_bundled_dataset_imports_no_downloader():
    # pooch pulls in tqdm.auto, which warns in every notebook without ipywidgets: only a download
    # may import it.
    code = ("import sys; from kmeans_imagery.datasets import load_dataset, cache_dir; load_dataset('digits');"
            " cache_dir(); print('pooch' in sys.modules, 'tqdm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_offline_without_the_files_points_to_data_dir_and_digits(monkeypatch, capsys):
    from kmeans_imagery.cli import main

    monkeypatch.setattr(registry, "default_downloader", offline)
    with pytest.raises(KMIError, match="pass data_dir=FOLDER .* use the digits dataset"):
        load_dataset("fashion-mnist")
    assert main(["explore", "fashion-mnist", "--out", "unused"]) == 2
    assert "pass --data-dir FOLDER (or set KMI_DATA_DIR)" in capsys.readouterr().err
