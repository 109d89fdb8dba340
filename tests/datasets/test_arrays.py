"""Tests for .npy / .npz datasets: keys, pixel value conversion, labels, and bad files."""

import re

import numpy as np
import pytest

from kmeans_imagery.datasets import load_dataset
from kmeans_imagery.errors import KMIError


def images(rng, n=6, shape=(4, 5)):
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def test_npy_holds_unlabelled_images(tmp_path, rng):
    array = images(rng)
    np.save(tmp_path / "faces.npy", array)
    dataset = load_dataset(tmp_path / "faces.npy")
    np.testing.assert_array_equal(dataset.train_images, array)
    assert dataset.train_labels is None and dataset.test_images is None
    assert dataset.name == "faces.npy" and dataset.source == str(tmp_path / "faces.npy")


@pytest.mark.parametrize(
    "keys",
    [
        ("train_images", "train_labels", "test_images", "test_labels"),
        ("x_train", "y_train", "x_test", "y_test"),
    ],
)
def test_npz_with_train_and_test(tmp_path, rng, keys):
    arrays = (images(rng), rng.integers(0, 3, 6), images(rng, 2), rng.integers(0, 3, 2))
    np.savez(tmp_path / "d.npz", **dict(zip(keys, arrays, strict=True)))
    dataset = load_dataset(tmp_path / "d.npz")
    for got, expected in zip(
        (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels),
        arrays,
        strict=True,
    ):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("images_key", "labels_key"), [("images", "labels"), ("X", "y"), ("x", "y")])
def test_npz_images_and_labels(tmp_path, rng, images_key, labels_key):
    labels = np.array(["a", "b", "a", "c", "c", "b"])
    np.savez(tmp_path / "d.npz", **{images_key: images(rng), labels_key: labels})
    dataset = load_dataset(tmp_path / "d.npz")
    assert dataset.train_labels.tolist() == labels.tolist()
    assert dataset.test_images is None


def test_npz_with_one_unnamed_array(tmp_path, rng):
    np.savez(tmp_path / "d.npz", images(rng))
    assert load_dataset(tmp_path / "d.npz").train_images.shape == (6, 4, 5)


def test_npz_with_unknown_keys(tmp_path, rng):
    np.savez(tmp_path / "d.npz", pixels=images(rng), classes=np.arange(6))
    with pytest.raises(KMIError, match=r"d\.npz has arrays \['classes', 'pixels'\]"):
        load_dataset(tmp_path / "d.npz")


def test_rgb_arrays_and_single_channel(tmp_path, rng):
    rgb = images(rng, shape=(4, 5, 3))
    np.save(tmp_path / "rgb.npy", rgb)
    np.testing.assert_array_equal(load_dataset(tmp_path / "rgb.npy", color="rgb").train_images, rgb)
    assert load_dataset(tmp_path / "rgb.npy").train_images.shape == (6, 4, 5)  # gray by default
    np.save(tmp_path / "one.npy", images(rng)[..., None])
    assert load_dataset(tmp_path / "one.npy").image_shape == (4, 5)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[[0.0, 0.5, 1.0]]]), [[[0, 128, 255]]]),  # [0, 1] is scaled by 255
        (np.array([[[0.0, 2.4, 254.6]]], np.float32), [[[0, 2, 255]]]),  # [0, 255] is rounded
        (np.array([[[0, 7, 255]]], np.int64), [[[0, 7, 255]]]),
        (np.array([[[True, False]]]), [[[255, 0]]]),
    ],
)
def test_pixel_values_become_uint8(tmp_path, array, expected):
    np.save(tmp_path / "a.npy", array)
    got = load_dataset(tmp_path / "a.npy").train_images
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[[0.1, np.nan]]]), "1 pixel values are NaN or infinite"),
        (np.array([[[np.inf, 0.0]]]), "NaN or infinite"),
        (np.array([[[-0.5, 0.5]]]), r"\[0, 1\] or \[0, 255\]"),
        (np.array([[[1.0, 300.0]]]), r"\[0, 1\] or \[0, 255\]"),
        (np.array([[[-1, 3]]], np.int16), "0..255, found -1..3"),
        (np.array([[[1 + 1j]]]), "complex"),
        (np.zeros((6, 20), np.uint8), r"\(n, H, W\)"),
        (np.zeros((2, 3, 3, 2), np.uint8), r"\(n, H, W\)"),
        (np.zeros((0, 3, 3), np.uint8), "holds no images"),
    ],
)
def test_bad_pixel_arrays(tmp_path, array, message):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(KMIError, match=message) as info:
        load_dataset(tmp_path / "a.npy")
    assert "a.npy" in str(info.value)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.arange(5), "5 labels for 6 images"),
        (np.zeros((6, 2)), "one-dimensional"),
        (np.array([0, 1, 2, 0.5, 1, 1]), "whole numbers"),
        (np.array([0, 1, np.nan, 0, 1, 1]), "whole numbers"),
    ],
)
def test_bad_labels(tmp_path, rng, labels, message):
    np.savez(tmp_path / "d.npz", images=images(rng), labels=labels)
    with pytest.raises(KMIError, match=message) as info:
        load_dataset(tmp_path / "d.npz")
    assert "d.npz [labels]" in str(info.value)


def test_integral_float_labels_become_ints(tmp_path, rng):
    np.savez(tmp_path / "d.npz", images=images(rng), labels=np.array([0.0, 1, 2, 0, 1, 2]))
    labels = load_dataset(tmp_path / "d.npz").train_labels
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_object_array_is_refused_without_unpickling(tmp_path, rng):
    np.save(tmp_path / "obj.npy", np.array([images(rng), "x"], dtype=object), allow_pickle=True)
    with pytest.raises(KMIError, match=r"obj\.npy holds an object array.*pickle"):
        load_dataset(tmp_path / "obj.npy")
    np.savez(tmp_path / "obj.npz", images=images(rng), labels=np.array([1, None] * 3, dtype=object))
    with pytest.raises(KMIError, match=r"obj\.npz holds an object array"):
        load_dataset(tmp_path / "obj.npz")


def test_test_split_of_another_shape(tmp_path, rng):
    np.savez(tmp_path / "d.npz", x_train=images(rng), x_test=images(rng, 2, (3, 3)))
    with pytest.raises(KMIError, match="x_test images have shape"):
        load_dataset(tmp_path / "d.npz")


def test_test_labels_without_test_images(tmp_path, rng):
    np.savez(tmp_path / "d.npz", x_train=images(rng), y_test=np.arange(2))
    with pytest.raises(KMIError, match="has y_test but no x_test"):
        load_dataset(tmp_path / "d.npz")


@pytest.mark.parametrize("name", ["cut.npy", "cut.npz"])
def test_truncated_files(tmp_path, rng, name):
    saver = np.save if name.endswith(".npy") else np.savez
    saver(tmp_path / name, images(rng, 50))
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(KMIError, match=name):
        load_dataset(tmp_path / name)


def test_not_numpy_at_all(tmp_path):
    (tmp_path / "fake.npy").write_text("hello, I am text")
    with pytest.raises(KMIError, match="fake.npy"):
        load_dataset(tmp_path / "fake.npy")


def test_auto_size_keeps_small_arrays_and_scales_large_ones_down(tmp_path, rng):
    from kmeans_imagery.datasets import open_source

    np.save(tmp_path / "small.npy", images(rng))
    np.save(tmp_path / "large.npy", images(rng, 3, (100, 80)))
    assert open_source(tmp_path / "small.npy", size="auto").image_shape == (4, 5)
    large = open_source(tmp_path / "large.npy", size="auto")
    assert large.image_shape == (64, 51) and large.read(0, 3).shape == (3, 64, 51)


@pytest.mark.parametrize("size, shown", [("0", "size='0'"), ((8, 0), "size=(8, 0)"),
                                         ((8, 8, 3), "size=(8, 8, 3)"), ([None], "size=[None]")])
def test_a_bad_size_is_named_with_its_value(size, shown):
    from kmeans_imagery.datasets import parse_size

    with pytest.raises(KMIError, match=re.escape(shown)):
        parse_size(size)
