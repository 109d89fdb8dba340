"""Tests for image files: folders (class-per-sub-folder and flat), iter_image_files, load_images."""

import os

import numpy as np
import pytest
from PIL import Image

from kmeans_imagery.datasets import ImageBatch, folders, iter_image_files, load_dataset, load_images
from kmeans_imagery.errors import KMIError


def save(path, array, **params):
    """Save a uint8 array (H, W) or (H, W, 3) as an image file, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, **params)
    return path


def noise(rng, shape=(6, 5)):
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def class_folder(tmp_path, rng):
    """cat/ (3 images, one in a nested folder), dog/ (2), plus files that must be skipped."""
    root = tmp_path / "pets"
    images = {
        "cat/a.png": noise(rng),
        "cat/b.png": noise(rng),
        "cat/more/c.png": noise(rng),
        "dog/a.png": noise(rng),
        "dog/z.png": noise(rng),
    }
    for name, array in images.items():
        save(root / name, array)
    save(root / "cat" / ".hidden.png", noise(rng))
    save(root / ".thumbnails" / "t.png", noise(rng))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "empty-class").mkdir()
    return root, images


def test_class_per_sub_folder(class_folder):
    root, images = class_folder
    dataset = load_dataset(root)
    assert dataset.name == "pets" and dataset.source == str(root)
    assert dataset.train_labels.tolist() == ["cat", "cat", "cat", "dog", "dog"]
    expected = np.stack([images[k] for k in sorted(images)])
    np.testing.assert_array_equal(dataset.train_images, expected)
    assert dataset.test_images is None and dataset.test_labels is None
    assert dataset.skipped == {"hidden": 3, "non_image": 1, "bad": 0, "unlabelled": 0}


def test_images_beside_class_folders_are_counted_as_unlabelled(class_folder, rng):
    root, _ = class_folder
    save(root / "stray.png", noise(rng))
    dataset = load_dataset(root)
    assert len(dataset.train_images) == 5
    assert dataset.skipped["unlabelled"] == 1


def test_flat_folder_is_unlabelled(tmp_path, rng):
    arrays = [noise(rng) for _ in range(3)]
    for i, array in enumerate(arrays):
        save(tmp_path / f"img{i}.png", array)
    (tmp_path / "readme.md").write_text("hi")
    dataset = load_dataset(tmp_path)
    assert dataset.train_labels is None and dataset.test_images is None
    np.testing.assert_array_equal(dataset.train_images, np.stack(arrays))
    assert dataset.skipped["non_image"] == 1


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"])
def test_every_format_reads_as_uint8_gray(tmp_path, suffix):
    array = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))
    params = {"lossless": True} if suffix == ".webp" else {}
    save(tmp_path / f"x{suffix.upper()}", array, **params)  # extensions match in any case
    batch = load_images([tmp_path / f"x{suffix.upper()}"])
    assert batch.images.dtype == np.uint8 and batch.images.shape == (1, 8, 8)
    tolerance = 8 if suffix in (".jpg", ".jpeg") else 0
    assert np.abs(batch.images[0].astype(int) - array).max() <= tolerance


def test_gif_gives_its_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert load_images([tmp_path / "anim.gif"]).images[0, 0, 0] == 10


def test_color_rgb_and_gray(tmp_path, rng):
    rgb = noise(rng, (4, 5, 3))
    save(tmp_path / "c.png", rgb)
    kept = load_dataset(tmp_path, color="rgb")
    np.testing.assert_array_equal(kept.train_images[0], rgb)
    assert kept.image_shape == (4, 5, 3)
    gray = load_dataset(tmp_path).train_images[0]
    np.testing.assert_array_equal(gray, np.asarray(Image.fromarray(rgb).convert("L")))
    # The same colour pixels as an array file become the same gray levels.
    np.save(tmp_path / "c.npy", rgb[None])
    np.testing.assert_array_equal(load_dataset(tmp_path / "c.npy").train_images[0], gray)


def test_gray_image_as_rgb_and_alpha_dropped(tmp_path, rng):
    save(tmp_path / "g.png", noise(rng))
    rgba = noise(rng, (6, 5, 4))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "h.png")
    batch = load_images(sorted(tmp_path.iterdir()), color="rgb")
    assert batch.images.shape == (2, 6, 5, 3)
    np.testing.assert_array_equal(batch.images[1], rgba[..., :3])
    assert (batch.images[0, ..., 0] == batch.images[0, ..., 2]).all()


def test_sixteen_bit_images_keep_their_high_bits(tmp_path):
    values = np.array([[0, 256, 4096, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(load_images([tmp_path / "deep.png"]).images[0], [[0, 1, 16, 255]])


def test_float_tiff_is_clipped(tmp_path):
    Image.fromarray(np.array([[-5.0, 12.4, 300.0]], np.float32)).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_images([tmp_path / "f.tif"]).images[0], [[0, 12, 255]])


def test_different_sizes_name_both_files(tmp_path, rng):
    save(tmp_path / "a.png", noise(rng, (6, 5)))
    save(tmp_path / "b.png", noise(rng, (7, 5)))
    with pytest.raises(KMIError, match=r"a\.png is 6x5 but .*b\.png is 7x5; pass size=HxW"):
        load_dataset(tmp_path)


def test_different_sizes_are_not_skipped_as_bad_files(tmp_path, rng):
    # --skip-bad skips unreadable files only: a readable image of another size still needs --size
    save(tmp_path / "a.png", noise(rng, (6, 5)))
    (tmp_path / "b.png").write_bytes(rng.bytes(100))
    save(tmp_path / "c.png", noise(rng, (7, 5)))
    with pytest.raises(KMIError, match=r"a\.png is 6x5 but .*c\.png is 7x5; pass size=HxW"):
        load_dataset(tmp_path, skip_bad=True)


def test_size_resizes_every_image(tmp_path, rng):
    save(tmp_path / "a.png", noise(rng, (6, 5)))
    save(tmp_path / "b.png", np.full((30, 20), 77, np.uint8))
    dataset = load_dataset(tmp_path, size="10x8")
    assert dataset.train_images.shape == (2, 10, 8)
    assert (dataset.train_images[1] == 77).all()


def test_auto_size_takes_the_first_image_size_and_resizes_the_others(tmp_path, rng):
    save(tmp_path / "a.png", noise(rng, (6, 5)))
    save(tmp_path / "b.png", np.full((30, 20), 77, np.uint8))
    save(tmp_path / "c.jpg", np.full((12, 12, 3), 200, np.uint8))
    source = folders.FolderSource(tmp_path, size="auto")
    assert source.image_shape == (6, 5)
    images = source.read_all().images
    assert images.shape == (3, 6, 5)
    assert (images[1] == 77).all() and (abs(images[2].astype(int) - 200) <= 2).all()


def test_auto_size_scales_a_large_first_image_down_keeping_its_aspect(tmp_path, rng):
    # The first readable file sets the size: the unreadable one before it is passed over.
    (tmp_path / "0-bad.png").write_bytes(rng.bytes(50))
    save(tmp_path / "a.png", noise(rng, (300, 400)))
    save(tmp_path / "b.png", noise(rng, (20, 10)))
    source = folders.FolderSource(tmp_path, size="auto", color="rgb", skip_bad=True)
    assert source.image_shape == (48, 64, 3)
    assert source.read_all().images.shape == (2, 48, 64, 3)
    assert load_images([tmp_path / "b.png", tmp_path / "a.png"], size="auto").images.shape == (
        2, 20, 10)


def test_a_jpeg_decoded_at_a_reduced_scale_matches_a_full_decode(tmp_path):
    # Large JPEG photos are decoded at 1/2..1/8 scale when resized down (draft mode).
    y, x = np.mgrid[0:400, 0:600]
    photo = np.stack([x * 255 // 600, y * 255 // 400, (x + y) * 255 // 1000], -1).astype(np.uint8)
    path = save(tmp_path / "photo.jpg", photo, quality=95)
    small = load_images([path], size=(40, 60), color="rgb").images[0].astype(int)
    with Image.open(path) as image:
        full = np.asarray(image.convert("RGB").resize((60, 40), Image.Resampling.LANCZOS), int)
    assert np.abs(small - full).max() <= 6


def test_loose_images_beside_class_folders_are_skipped_or_read(tmp_path, rng):
    for name in ("b/1.png", "a.png", "c/d/2.png", "e.png"):
        save(tmp_path / name, noise(rng))
    classes = folders.FolderSource(tmp_path)
    assert [p.name for p in classes.paths] == ["1.png", "2.png"]
    assert classes.labels.tolist() == ["b", "c"] and classes.skipped["unlabelled"] == 2
    everything = folders.FolderSource(tmp_path, loose_images="read")
    assert [p.relative_to(tmp_path).as_posix() for p in everything.paths] == [
        "a.png", "b/1.png", "c/d/2.png", "e.png"]
    assert everything.labels is None and everything.skipped["unlabelled"] == 0
    with pytest.raises(KMIError, match="loose_images must be one of skip, read"):
        folders.FolderSource(tmp_path, loose_images="keep")


def test_skipped_summary():
    assert folders.skipped_summary({"hidden": 2, "non_image": 0, "bad": 1200}) == "2 hidden, 1,200 bad"
    assert folders.skipped_summary({"hidden": 0}) == ""


def corrupt_files(folder, rng):
    """A good image, a file of random bytes, and a truncated PNG."""
    save(folder / "cls" / "0-good.png", noise(rng))
    (folder / "cls" / "1-random.png").write_bytes(rng.bytes(300))
    data = save(folder / "cls" / "2-cut.png", noise(rng, (40, 40))).read_bytes()
    (folder / "cls" / "2-cut.png").write_bytes(data[: len(data) // 2])
    save(folder / "other" / "3-good.png", noise(rng))


@pytest.mark.parametrize("bad", ["1-random.png", "2-cut.png"])
def test_bad_image_is_named(tmp_path, rng, bad):
    corrupt_files(tmp_path, rng)
    other = {"1-random.png", "2-cut.png"} - {bad}
    (tmp_path / "cls" / other.pop()).unlink()
    with pytest.raises(KMIError, match=f"cannot read image .*{bad}.*--skip-bad"):
        load_dataset(tmp_path)


def test_skip_bad_counts_and_keeps_labels_aligned(tmp_path, rng):
    corrupt_files(tmp_path, rng)
    dataset = load_dataset(tmp_path, skip_bad=True)
    assert dataset.skipped["bad"] == 2
    assert dataset.train_labels.tolist() == ["cls", "other"]
    assert dataset.train_images.shape == (2, 6, 5)


def test_only_bad_images(tmp_path, rng):
    (tmp_path / "x.png").write_bytes(rng.bytes(100))
    with pytest.raises(KMIError, match="none of the 1 image files .*could be read"):
        load_dataset(tmp_path, skip_bad=True)


def test_empty_folder(tmp_path):
    with pytest.raises(KMIError, match="is empty"):
        load_dataset(tmp_path)


def test_folder_without_images(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text("x")
    with pytest.raises(KMIError, match="no image files .* 2 other and 1 hidden files skipped"):
        load_dataset(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(KMIError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_iter_image_files_order_and_counts(class_folder):
    root, images = class_folder
    skipped = {}
    files = list(iter_image_files(root, skipped))
    assert [p.relative_to(root).as_posix() for p in files] == sorted(images)
    assert skipped == {"hidden": 3, "non_image": 1}


def test_iter_image_files_mixes_files_and_folders(class_folder, tmp_path):
    root, _ = class_folder
    readme = tmp_path / "README"
    readme.write_text("x")
    skipped = {}
    files = list(iter_image_files([root / "dog" / "z.png", readme, root / "dog"], skipped))
    assert [p.name for p in files] == ["z.png", "a.png", "z.png"]
    assert skipped["non_image"] == 2
    with pytest.raises(KMIError, match="ghost.png does not exist"):
        list(iter_image_files(tmp_path / "ghost.png"))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_iter_image_files_survives_a_symlink_loop(tmp_path, rng):
    save(tmp_path / "a" / "x.png", noise(rng))
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    assert [p.name for p in iter_image_files(tmp_path)] == ["x.png"]


def test_load_images_keeps_order_across_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "_THREADED_BYTES", 0)  # small files too
    paths = [save(tmp_path / f"{i:03d}.png", np.full((3, 3), i, np.uint8)) for i in range(120)]
    batch = load_images(paths)
    assert isinstance(batch, ImageBatch)
    assert batch.images[:, 0, 0].tolist() == list(range(120))
    assert batch.paths == paths and batch.skipped == {"bad": 0}


@pytest.mark.parametrize("threads", [True, False])
def test_bad_files_across_decoding_runs_keep_order_and_the_first_is_named(tmp_path, monkeypatch,
                                                                          threads):
    monkeypatch.setattr(folders, "_THREADED_BYTES", 0 if threads else float("inf"))
    # 300 files are decoded in several runs of files on the thread pool; the bad ones sit in
    # different runs, and a later run may finish first.
    paths = [save(tmp_path / f"{i:03d}.png", np.full((3, 3), i % 256, np.uint8)) for i in range(300)]
    bad = [7, 150, 299]
    for i in bad:
        paths[i].write_bytes(b"not a PNG")
    batch = load_images(paths, skip_bad=True)
    good = [i for i in range(300) if i not in bad]
    assert batch.images[:, 0, 0].tolist() == [i % 256 for i in good]
    assert batch.paths == [paths[i] for i in good] and batch.skipped == {"bad": 3}
    with pytest.raises(KMIError, match="cannot read image .*007.png"):
        load_images(paths)


def test_load_images_in_batches_with_a_shared_size(tmp_path, rng):
    paths = [save(tmp_path / f"{i}.png", noise(rng, (6 + i, 5))) for i in range(4)]
    first = load_images(paths[:2], size="6x5", skip_bad=True)
    later = load_images(paths[2:], size=first.images.shape[1:3])
    assert first.images.shape == later.images.shape == (2, 6, 5)


def test_load_images_of_nothing():
    with pytest.raises(KMIError, match="no image files"):
        load_images([])


def test_progress_counts_every_file(class_folder):
    root, _ = class_folder
    seen = []

    class Bar:
        def __init__(self, total, description):
            seen.append(total)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def advance(self, n=1):
            seen.append(n)

    load_dataset(root, progress=Bar)
    assert seen == [5, 5]


def test_photos_are_read_upright_by_their_exif_orientation(tmp_path):
    # Stored landscape, tagged "rotate 90 clockwise to show" (orientation 6): read as portrait.
    stored = np.zeros((20, 40), np.uint8)
    stored[:, :10] = 255  # the stored left edge becomes the top once upright
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "a.jpg", exif=exif, quality=95)
    save(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    upright = load_images([tmp_path / "a.jpg"]).images[0]
    assert upright.shape == (40, 20)
    assert upright[:8].mean() > 200 and upright[12:].mean() < 50
    auto = load_images([tmp_path / "a.jpg", tmp_path / "b.png"], size="auto").images
    assert auto.shape == (2, 40, 20)
