"""open_source, the one dispatcher: every format as a source, batches equal to load_dataset."""

import gzip
import pickle

import numpy as np
import pytest
from PIL import Image

from kmeans_imagery.datasets import (
    ArraySource,
    ChainedSource,
    FolderSource,
    IdxSource,
    NpySource,
    ZarrSource,
    convert_to_zarr,
    load_dataset,
    open_source,
    write_idx,
)
from kmeans_imagery.errors import KMIError


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (53, 6, 5), dtype=np.uint8), rng.integers(0, 4, 53)


@pytest.fixture
def idx_folder(tmp_path, images):
    imgs, labels = images
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", imgs)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    write_idx(folder / "t10k-images-idx3-ubyte", imgs[:7])
    write_idx(folder / "t10k-labels-idx1-ubyte", labels[:7])
    return folder


@pytest.fixture
def class_folder(tmp_path, images):
    imgs, labels = images
    folder = tmp_path / "classes"
    for i, (image, label) in enumerate(zip(imgs[:20], labels[:20], strict=True)):
        sub = folder / f"class{label}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _all(source, batch_size=8):
    batches = list(source.iter_batches(batch_size))
    assert [b.start for b in batches] == list(range(0, source.n_images, batch_size))
    labels = None if batches[0].labels is None else np.concatenate([b.labels for b in batches])
    return np.concatenate([b.images for b in batches]), labels


def test_gzip_idx_streams_in_order(idx_folder, images):
    source = open_source(idx_folder)
    assert isinstance(source, IdxSource) and not source.random_access
    assert (source.n_images, source.image_shape) == (53, (6, 5))
    got, labels = _all(source)
    np.testing.assert_array_equal(got, images[0])
    np.testing.assert_array_equal(labels, images[1])
    idx = np.array([0, 9, 10, 52])
    np.testing.assert_array_equal(source.take(idx, batch_size=8).images, images[0][idx])


def test_raw_idx_reads_ranges_and_pickles_without_data(idx_folder, images):
    source = open_source(idx_folder, split="test")
    assert isinstance(source, IdxSource) and source.random_access
    np.testing.assert_array_equal(source.read(2, 5), images[0][2:5])
    np.testing.assert_array_equal(source.labels, images[1][:7])
    clone = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 2000
    np.testing.assert_array_equal(clone.read(0, 7), images[0][:7])


def test_npy_read_by_ranges_with_color_and_size(tmp_path, images):
    np.save(tmp_path / "x.npy", images[0])
    source = open_source(tmp_path / "x.npy")
    assert isinstance(source, NpySource) and source.labels is None
    got, _ = _all(source, 10)
    np.testing.assert_array_equal(got, images[0])
    rgb = open_source(tmp_path / "x.npy", color="rgb", size="4x3")
    assert rgb.image_shape == (4, 3, 3) and rgb.read(0, 2).shape == (2, 4, 3, 3)


def test_npy_of_floats_is_loaded_and_scaled(tmp_path):
    np.save(tmp_path / "f.npy", np.full((3, 4, 4), 0.5, np.float32))
    source = open_source(tmp_path / "f.npy")
    assert isinstance(source, ArraySource)
    assert (source.read(0, 3) == 128).all()
    np.save(tmp_path / "bad.npy", np.zeros((3, 4), np.uint8))
    with pytest.raises(KMIError, match="shape"):
        open_source(tmp_path / "bad.npy")


def test_npz_and_names_are_loaded(tmp_path, images):
    np.savez(tmp_path / "d.npz", x_train=images[0], y_train=images[1])
    source = open_source(tmp_path / "d.npz")
    assert isinstance(source, ArraySource)
    np.testing.assert_array_equal(source.labels, images[1])
    digits = open_source("digits", split="test")
    assert digits.image_shape == (8, 8) and digits.labels is not None


@pytest.mark.parametrize("batch_size", [5, 53, 100])
def test_split_all_reads_train_then_test_as_one_source(idx_folder, images, batch_size):
    imgs, labels = images
    source = open_source(idx_folder, split="all", size=(3, 4))
    assert isinstance(source, ChainedSource) and not source.random_access
    assert (source.display_name, source.n_images, source.image_shape) == ("idx", 60, (3, 4))
    batches = list(source.iter_batches(batch_size))
    whole = open_source(idx_folder, size=(3, 4)).read_all().images
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]),
                                  np.concatenate([whole, whole[:7]]))
    starts = [b.start for b in batches]
    assert starts == sorted(starts) and all(b.start + len(b.images) <= 60 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]),
                                  np.concatenate([labels, labels[:7]]))
    np.testing.assert_array_equal(source.take([1, 52, 53, 59]).images, whole[[1, 52, 0, 6]])
    origin = str(idx_folder)
    assert source.image_names([52, 53]) == [f"{origin}#train:52", f"{origin}#test:0"]
    # The train split is a gzip stream: read front to back, converted for anything else.
    # The command names the folder as it was given, from wherever it is run.
    with pytest.raises(KMIError, match=rf"`kmi convert {origin} DEST.zarr --split all` for random"):
        source.read(0, 5)
    with pytest.raises(KMIError, match=rf"`kmi convert {origin} DEST.zarr` for random"):
        open_source(idx_folder).read(0, 5)


@pytest.mark.parametrize("suffix", [".gz", ""], ids=["streamed", "random access"])
def test_split_all_equals_the_splits_concatenated_for_any_range(tmp_path, suffix):
    rng = np.random.default_rng(0)
    train, test = (rng.integers(0, 256, (n, 4, 5), dtype=np.uint8) for n in (37, 11))
    for name, array in (("train-images-idx3-ubyte", train), ("train-labels-idx1-ubyte",
                        np.arange(37) % 3), ("t10k-images-idx3-ubyte", test),
                        ("t10k-labels-idx1-ubyte", np.arange(11) % 3)):
        write_idx(tmp_path / (name + suffix), array)
    source = open_source(tmp_path, split="all")
    images = np.concatenate([train, test])
    labels = np.concatenate([np.arange(37) % 3, np.arange(11) % 3])
    for _ in range(100):
        batch_size, start = int(rng.integers(1, 60)), int(rng.integers(0, 48))
        stop = int(rng.integers(start + 1, 49))
        batches = list(source.iter_batches(batch_size, start=start, stop=stop))
        np.testing.assert_array_equal(np.concatenate([b.images for b in batches]),
                                      images[start:stop])
        np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]),
                                      labels[start:stop])
        np.testing.assert_array_equal(np.concatenate([source.positions(b) for b in batches]),
                                      np.arange(start, stop))
        wanted = np.sort(rng.choice(48, int(rng.integers(1, 20)), replace=False))
        taken = source.take(wanted, batch_size=batch_size)
        np.testing.assert_array_equal(taken.images, images[wanted])
        np.testing.assert_array_equal(taken.labels, labels[wanted])


def test_split_all_reads_across_the_boundary_and_keeps_single_collections(tmp_path, images):
    imgs, labels = images
    np.savez(tmp_path / "two.npz", x_train=imgs, y_train=labels, x_test=imgs[:7])
    source = open_source(tmp_path / "two.npz", split="all")
    with pytest.warns(UserWarning, match="the test split .* has no labels"):
        assert source.random_access and source.labels is None
    np.testing.assert_array_equal(source.read(50, 56), np.concatenate([imgs[50:], imgs[:3]]))
    assert source.read(53, 53).shape == (0, 6, 5)
    np.save(tmp_path / "one.npy", imgs)
    assert isinstance(open_source(tmp_path / "one.npy", split="all"), NpySource)
    digits = open_source("digits", split="all")
    assert digits.n_images == 1797 and len(digits.labels) == 1797
    (tmp_path / "odd").mkdir()
    write_idx(tmp_path / "odd" / "train-images-idx3-ubyte", imgs)
    write_idx(tmp_path / "odd" / "t10k-images-idx3-ubyte", imgs[:7, :5])
    with pytest.raises(KMIError, match=r"differ in shape \(odd-train 6x5, odd-test 5x5\); give size=HxW"):
        open_source(tmp_path / "odd", split="all")
    assert open_source(tmp_path / "odd", split="all", size=4).image_shape == (4, 4)


def test_image_folder_labels_from_subfolders(class_folder, images):
    source = open_source(class_folder)
    assert isinstance(source, FolderSource) and source.n_images == 20
    got, labels = _all(source, 6)
    order = np.argsort([f"class{label}" for label in images[1][:20]], kind="stable")
    np.testing.assert_array_equal(got, images[0][:20][order])
    assert labels[0].startswith("class") and len(labels) == 20


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(KMIError, match="does not exist"):
        open_source(tmp_path / "nope")
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(KMIError, match="is not a dataset"):
        open_source(tmp_path / "a.csv")
    with pytest.raises(KMIError, match="split"):
        open_source(tmp_path / "a.csv", split="valid")


def test_truncated_gzip_idx_is_a_kmi_error(tmp_path, images):
    write_idx(tmp_path / "x-idx3-ubyte.gz", images[0])
    data = (tmp_path / "x-idx3-ubyte.gz").read_bytes()
    (tmp_path / "cut-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(data)[:-100]))
    source = open_source(tmp_path / "cut-idx3-ubyte.gz")
    with pytest.raises(KMIError, match="truncated"):
        _all(source)


def test_convert_round_trip_with_string_labels(tmp_path, class_folder):
    pytest.importorskip("zarr")
    folder = open_source(class_folder)
    store = convert_to_zarr(folder, tmp_path / "c.zarr", chunk_size=8)
    assert isinstance(store, ZarrSource) and store.chunk_size == 8
    again = open_source(tmp_path / "c.zarr")
    np.testing.assert_array_equal(_all(again)[0], _all(folder)[0])
    np.testing.assert_array_equal(again.labels, folder.labels)
    np.testing.assert_array_equal(_all(again)[1], folder.labels)
    assert again.name == "classes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr", "classes"]


def test_convert_keeps_file_paths_and_leaves_no_image_for_an_unreadable_file(tmp_path,
                                                                             class_folder):
    pytest.importorskip("zarr")
    bad = class_folder / "class1" / "000-broken.png"
    bad.write_bytes(b"not a png")
    folder = open_source(class_folder, skip_bad=True)
    store = convert_to_zarr(folder, tmp_path / "c.zarr", chunk_size=8)
    readable = open_source(class_folder, skip_bad=True).read_all()
    assert store.n_images == 20 and folder.skipped["bad"] == 1
    np.testing.assert_array_equal(store.read(0, 20), readable.images)
    np.testing.assert_array_equal(store.labels, readable.labels)
    assert store.paths == [path.absolute() for path in readable.paths] and bad not in store.paths
    assert store.read_batch(5, 9).paths == store.paths[5:9]
    assert store.take([1, 17]).paths == [store.paths[1], store.paths[17]]
    assert open_source(tmp_path / "c.zarr").paths == store.paths


def test_convert_idx_keeps_int_labels_and_to_dask(tmp_path, idx_folder, images):
    pytest.importorskip("zarr")
    pytest.importorskip("dask.array")
    store = convert_to_zarr(open_source(idx_folder), tmp_path / "m.zarr", chunk_size=16)
    assert store.labels.dtype == np.int64
    np.testing.assert_array_equal(store.labels, images[1])
    idx = np.array([1, 15, 16, 40])
    np.testing.assert_array_equal(store.take(idx, batch_size=16).images, images[0][idx])
    lazy = store.to_dask(30)
    assert lazy.chunks[0][0] == 32
    np.testing.assert_array_equal(lazy.compute(), images[0])
    mem = open_source(idx_folder, split="test").to_dask(3)
    np.testing.assert_array_equal(mem.compute(), images[0][:7])


@pytest.mark.parametrize(("stored", "read"), [("rgb", "gray"), ("gray", "rgb")])
def test_a_store_read_in_the_other_colour_mode_is_a_dask_array_of_that_mode(tmp_path, stored,
                                                                           read):
    pytest.importorskip("zarr")
    pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    shape = (20, 6, 6, 3) if stored == "rgb" else (20, 6, 6)
    np.save(tmp_path / "a.npy", rng.integers(0, 256, shape, dtype=np.uint8))
    convert_to_zarr(open_source(tmp_path / "a.npy", color=stored), tmp_path / "a.zarr")
    store = open_source(tmp_path / "a.zarr", color=read)
    lazy = store.to_dask(8)
    assert lazy.shape == (20, *store.image_shape)
    np.testing.assert_array_equal(lazy.compute(), store.read_all().images)


def test_convert_is_atomic(tmp_path, idx_folder):
    pytest.importorskip("zarr")
    dest = tmp_path / "m.zarr"
    convert_to_zarr(open_source(idx_folder), dest, chunk_size=16)
    with pytest.raises(KMIError, match="already exists"):
        convert_to_zarr(open_source(idx_folder), dest)

    class Broken(ArraySource):
        def _read(self, start, stop):
            if start >= 16:
                raise RuntimeError("disk gone")
            return super()._read(start, stop)

    broken = Broken(np.zeros((40, 3, 3), np.uint8))
    with pytest.raises(RuntimeError):
        convert_to_zarr(broken, dest, chunk_size=16, force=True)
    assert open_source(dest).n_images == 53  # the old store is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "m.zarr"]


def test_not_a_store(tmp_path):
    pytest.importorskip("zarr")
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(KMIError, match="kmi convert"):
        open_source(tmp_path / "x.zarr")


def _formats(tmp_path, images, idx_folder, class_folder):
    """One input of every format holding the same kind of images."""
    imgs, labels = images
    np.save(tmp_path / "x.npy", imgs)
    np.savez(tmp_path / "x.npz", x_train=imgs, y_train=labels, x_test=imgs[:5], y_test=labels[:5])
    inputs = {"idx-gzip": idx_folder, "npy": tmp_path / "x.npy", "npz": tmp_path / "x.npz",
              "folder": class_folder, "digits": "digits"}
    if pytest.importorskip("zarr"):
        inputs["zarr"] = tmp_path / "x.zarr"
        convert_to_zarr(ArraySource(imgs, labels), inputs["zarr"], chunk_size=8)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_idx(raw / "train-images-idx3-ubyte", imgs)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    inputs["idx-raw"] = raw
    return inputs


@pytest.mark.parametrize("fmt", ["idx-gzip", "idx-raw", "npy", "npz", "folder", "zarr", "digits"])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_batches_concatenate_to_load_dataset(tmp_path, images, idx_folder, class_folder, fmt,
                                             batch_size):
    data = _formats(tmp_path, images, idx_folder, class_folder)[fmt]
    whole = load_dataset(data)
    source = open_source(data, color="gray")
    batches = list(source.iter_batches(batch_size))
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]), whole.train_images)
    if whole.train_labels is None:
        assert all(b.labels is None for b in batches)
    else:
        np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]),
                                      whole.train_labels)
    if fmt == "folder":
        assert [p for b in batches for p in b.paths] == whole.train_paths == source.paths
    else:
        assert all(b.paths is None for b in batches) and whole.train_paths is None


def test_reading_a_large_file_maps_none_of_it(tmp_path, images):
    np.save(tmp_path / "x.npy", np.repeat(images[0], 20, axis=0))
    source = open_source(tmp_path / "x.npy")
    for _ in source.iter_batches(100):
        pass
    source.take(np.array([3, 500, 900]))
    maps = open("/proc/self/maps").read() if __import__("os").path.exists("/proc/self/maps") else ""
    assert str(tmp_path / "x.npy") not in maps


def test_skip_bad_drops_unreadable_files_in_batches_samples_and_load(tmp_path, class_folder):
    bad = class_folder / "class1" / "zz-broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(KMIError, match="cannot read image"):
        list(open_source(class_folder).iter_batches(6))
    source = open_source(class_folder, skip_bad=True)
    assert source.n_images == 21
    batches = list(source.iter_batches(6))
    paths = [p for b in batches for p in b.paths]
    assert bad not in paths and len(paths) == 20 and source.skipped["bad"] == 1
    assert sum(len(b.labels) for b in batches) == 20
    taken = source.take(np.arange(21))
    assert len(taken.images) == 20 and bad not in taken.paths
    whole = load_dataset(class_folder, skip_bad=True)
    assert len(whole.train_images) == 20 and whole.skipped["bad"] == 1
    positions = np.concatenate([source.positions(b) for b in batches])
    assert [source.paths[i] for i in positions] == paths


def test_folder_subset_and_loose_files(class_folder):
    source = open_source(class_folder)
    part = source.subset([0, 5, 6])
    assert part.n_images == 3 and part.paths == [source.paths[i] for i in (0, 5, 6)]
    np.testing.assert_array_equal(part.labels, source.labels[[0, 5, 6]])
    loose = FolderSource.of_files(source.paths[:4])
    assert loose.n_images == 4 and loose.labels is None
    np.testing.assert_array_equal(loose.read(0, 4), source.read(0, 4))


def test_a_file_or_store_of_no_images_is_refused(tmp_path, images):
    pytest.importorskip("zarr")
    write_idx(tmp_path / "empty-images-idx3-ubyte", images[0][:0])
    with pytest.raises(KMIError, match="empty-images-idx3-ubyte holds no images"):
        open_source(tmp_path / "empty-images-idx3-ubyte")
    with pytest.raises(KMIError, match="holds no images"):
        convert_to_zarr(open_source(tmp_path / "empty-images-idx3-ubyte"), tmp_path / "e.zarr")
    assert not (tmp_path / "e.zarr").exists()


def test_a_file_that_is_not_numpy_is_not_called_a_pickle(tmp_path):
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(KMIError, match=r"text\.npy is not a valid numpy \.npy or \.npz file"):
        open_source(tmp_path / "text.npy")


def test_sklearn_style_npz_keys_and_test_arrays_beside_images(tmp_path, images):
    imgs, labels = images
    np.savez(tmp_path / "a.npz", X_train=imgs, y_train=labels, X_test=imgs[:5], y_test=labels[:5])
    np.savez(tmp_path / "b.npz", images=imgs, labels=labels, test_images=imgs[:5])
    for name in ("a.npz", "b.npz"):
        assert open_source(tmp_path / name, split="test").n_images == 5
        assert open_source(tmp_path / name, split="all").n_images == len(imgs) + 5


def test_a_damaged_store_is_one_clear_error(tmp_path, images):
    zarr = pytest.importorskip("zarr")
    imgs, labels = images
    store = tmp_path / "s.zarr"
    convert_to_zarr(ArraySource(imgs, labels), store, chunk_size=16)
    chunk = next(p for p in (store / "images").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(KMIError, match="s.zarr: the store is damaged .*convert it again"):
        open_source(store).read_all()
    group = zarr.open_group(str(store), mode="a")
    group["labels"].resize((5,))
    with pytest.raises(KMIError, match="damaged: its labels array has 5 entries for"):
        open_source(store)


def test_data_that_is_not_a_path_or_name_is_named(images):
    with pytest.raises(KMIError, match="data must be a path or a dataset name, got ndarray"):
        open_source(images[0])


def test_two_splits_of_which_one_has_labels_are_read_without_them_and_said(tmp_path, images):
    imgs, labels = images
    np.savez(tmp_path / "half.npz", x_train=imgs, y_train=labels, x_test=imgs[:5])
    with pytest.warns(UserWarning, match=r"the test split of .*half\.npz has no labels, so it is"):
        assert open_source(tmp_path / "half.npz", split="all").labels is None


def test_convert_force_replaces_only_a_store(tmp_path, class_folder):
    # force used to delete whatever stood at dest: the source's own images, any folder.
    pytest.importorskip("zarr")
    files = sorted(class_folder.rglob("*"))
    with pytest.raises(KMIError, match="force=True replaces only a store"):
        convert_to_zarr(open_source(class_folder), class_folder, force=True)
    assert sorted(class_folder.rglob("*")) == files
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(KMIError, match="is not a Zarr store"):
        convert_to_zarr(open_source(tmp_path / "x.npy"), tmp_path / "x.npy", force=True)
    assert open_source(tmp_path / "x.npy").n_images == 3
    (tmp_path / "empty").mkdir()  # an empty folder holds nothing to lose: no force needed
    assert convert_to_zarr(open_source(class_folder), tmp_path / "empty").n_images == 20
    store = convert_to_zarr(open_source(tmp_path / "x.npy"), tmp_path / "empty", force=True)
    assert store.n_images == 3


@pytest.mark.parametrize("images, expected", [
    (np.full((2, 3, 3), 0.5), 128),  # floats in [0, 1]: scaled, not cast to 0
    (np.full((2, 3, 3), 200.0), 200),
    (np.ones((2, 3, 3), bool), 255),
    (np.full((2, 3, 3, 1), 7, np.int16), 7),
])
def test_array_source_converts_images_as_array_files_do(images, expected):
    read = ArraySource(images).read_all().images
    assert read.dtype == np.uint8 and read.shape == (2, 3, 3)
    assert (read == expected).all()


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((4, 9), np.uint8), None, r"images must have shape \(n, H, W\)"),
    (np.full((4, 3, 3), 300, np.int16), None, "0..255"),
    (np.full((4, 3, 3), np.nan), None, "NaN"),
    (np.zeros((4, 3, 3), np.uint8), np.arange(3), "3 labels for 4 images"),
    (np.zeros((4, 3, 3), np.uint8), np.arange(4).reshape(4, 1), "one-dimensional"),
])
def test_array_source_refuses_bad_images_and_labels(images, labels, message):
    with pytest.raises(KMIError, match=message):
        ArraySource(images, labels, name="scans")


def test_a_folder_above_idx_files_names_where_they_lie(idx_folder, tmp_path):
    # torchvision keeps MNIST in ROOT/MNIST/raw: ROOT and ROOT/MNIST are no image folders.
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.parent.mkdir(parents=True)
    idx_folder.rename(raw)
    for given in (tmp_path / "root", tmp_path / "root" / "MNIST"):
        with pytest.raises(KMIError, match=f"no image files .*; IDX files of a dataset lie in "
                                           f"{raw}: pass that folder$"):
            open_source(given)
    assert open_source(raw).n_images == 53
    (tmp_path / "photos" / "empty").mkdir(parents=True)
    with pytest.raises(KMIError, match="no image files") as error:
        open_source(tmp_path / "photos")
    assert "IDX" not in str(error.value)
