"""Sources opened the way users do, on variants of each format."""

import numpy as np
import pytest
import zarr

from kmeans_imagery.datasets import (
    ArraySource,
    convert_to_zarr,
    open_source,
    parse_size,
    write_idx,
)
from kmeans_imagery.errors import KMIError


@pytest.fixture
def images():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (11, 4, 3), dtype=np.uint8), rng.integers(0, 3, 11)


@pytest.fixture
def sources(tmp_path, images):
    """One source of the same images and labels in each format, random access or streamed."""
    imgs, labels = images
    write_idx(tmp_path / "raw-images-idx3-ubyte", imgs)
    write_idx(tmp_path / "gz-images-idx3-ubyte.gz", imgs)
    np.save(tmp_path / "images.npy", imgs)
    np.savez(tmp_path / "images.npz", images=imgs, labels=labels)
    convert_to_zarr(ArraySource(imgs, labels), tmp_path / "images.zarr", chunk_size=3)
    return {name: open_source(tmp_path / name) for name in (
        "raw-images-idx3-ubyte", "gz-images-idx3-ubyte.gz", "images.npy", "images.npz",
        "images.zarr")}


@pytest.mark.parametrize("name", ["raw-images-idx3-ubyte", "gz-images-idx3-ubyte.gz",
                                  "images.npy", "images.npz", "images.zarr"])
@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_take_keeps_the_order_and_repeats_of_its_indices(sources, images, name, batch_size):
    source = sources[name]
    indices = [7, 2, 2, 10, 0, 7]
    batch = source.take(indices, batch_size=batch_size)
    assert np.array_equal(batch.images, images[0][indices])
    if source.labels is not None:
        assert np.array_equal(batch.labels, images[1][indices])


@pytest.mark.parametrize("indices", [[0, 11], [-1, 3], [[1, 2]], [0.5]])
def test_take_refuses_indices_outside_the_source(sources, indices):
    with pytest.raises(KMIError, match="indices must"):
        sources["images.npy"].take(indices)


@pytest.mark.parametrize("name", ["raw-images-idx3-ubyte", "gz-images-idx3-ubyte.gz",
                                  "images.npy", "images.npz", "images.zarr"])
def test_batches_take_and_read_all_agree_for_batch_sizes_1_to_more_than_n(sources, name):
    source = sources[name]
    whole = source.read_all()
    for batch_size in (1, 4, 1000):
        batches = list(source.iter_batches(batch_size))
        assert np.array_equal(np.concatenate([b.images for b in batches]), whole.images)
        assert np.array_equal(source.take(np.arange(source.n_images), batch_size=batch_size).images,
                              whole.images)


def test_a_npy_file_has_no_test_split(tmp_path, images):
    np.save(tmp_path / "images.npy", images[0])
    with pytest.raises(KMIError, match="images.npy has no test split"):
        open_source(tmp_path / "images.npy", split="test")


def test_a_truncated_npy_file_is_refused_when_opened(tmp_path, images):
    np.save(tmp_path / "cut.npy", images[0])
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-5])
    with pytest.raises(KMIError, match="cut.npy has .* bytes but its header"):
        open_source(tmp_path / "cut.npy")


@pytest.mark.parametrize("images_key, labels_key", [
    ("train_images", "labels"), ("images", "y"), ("X", "Y"), ("x_train", "target"),
])
def test_npz_labels_under_another_convention_are_kept(tmp_path, images, images_key, labels_key):
    imgs, labels = images
    np.savez(tmp_path / "d.npz", **{images_key: imgs, labels_key: labels})
    assert np.array_equal(open_source(tmp_path / "d.npz").labels, labels)


def test_npz_with_labels_under_two_other_names_is_refused(tmp_path, images):
    imgs, labels = images
    np.savez(tmp_path / "d.npz", images=imgs, y=labels, target=labels)
    with pytest.raises(KMIError, match=r"labels under several keys \(y, target\)"):
        open_source(tmp_path / "d.npz")


def test_npz_of_one_array_under_any_name_holds_the_images(tmp_path, images):
    np.savez(tmp_path / "d.npz", pixels=images[0])
    assert np.array_equal(open_source(tmp_path / "d.npz").read_all().images, images[0])


@pytest.mark.parametrize("size", [True, False, np.bool_(True)])
def test_a_bool_size_is_refused(size):
    with pytest.raises(KMIError, match="size="):
        parse_size(size)


def test_idx_images_of_zero_pixels_are_refused(tmp_path):
    write_idx(tmp_path / "flat-idx3-ubyte", np.zeros((2, 0, 3), np.uint8))
    with pytest.raises(KMIError, match="at least 1x1 pixels"):
        open_source(tmp_path / "flat-idx3-ubyte")


def _store(tmp_path, images):
    imgs, _ = images
    path = tmp_path / "s.zarr"
    convert_to_zarr(ArraySource(imgs, np.array(list("ab") * 5 + ["a"])), path, chunk_size=4)
    return path, zarr.open_group(str(path), mode="a")


def test_a_store_with_label_codes_outside_its_classes_is_damaged(tmp_path, images):
    path, group = _store(tmp_path, images)
    group["labels"][:] = 5
    with pytest.raises(KMIError, match="damaged: its labels hold codes outside its 2 classes"):
        open_source(path).read_all()


def test_a_store_with_2d_labels_is_damaged(tmp_path, images):
    path, group = _store(tmp_path, images)
    del group["labels"]
    group.create_array("labels", shape=(11, 2), dtype="int64", chunks=(4, 2))
    with pytest.raises(KMIError, match=r"damaged: its labels array has shape \(11, 2\)"):
        open_source(path)


def test_a_store_of_four_channel_images_is_refused(tmp_path, images):
    path, group = _store(tmp_path, images)
    del group["images"]
    group.create_array("images", shape=(11, 4, 3, 4), dtype="uint8", chunks=(4, 4, 3, 4))
    with pytest.raises(KMIError, match=r"images must be uint8 \(n, H, W\[, 3\]\)"):
        open_source(path)


def test_a_store_appended_to_consistently_reads_every_image(tmp_path, images):
    path, group = _store(tmp_path, images)
    group["images"].resize((13, 4, 3))
    group["images"][11:] = 9
    group["labels"].resize((13,))
    group["labels"][11:] = [0, 1]
    source = open_source(path)
    assert source.n_images == 13 and list(source.labels[-2:]) == ["a", "b"]
    assert np.array_equal(source.take([12, 0]).images[0], np.full((4, 3), 9, np.uint8))
