"""Tests for image files: folders (class-per-sub-folder and flat), iter_image_files, load_images."""

import os
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image, features

from kmeans_imagery.datasets import (
    ImageBatch,
    folders,
    iter_image_files,
    load_dataset,
    load_images,
    open_source,
)
from kmeans_imagery.datasets.convert import auto_size
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


needs_avif = pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")


@pytest.mark.parametrize("suffix", [
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
    ".ppm", ".pnm", ".tga", ".ico", pytest.param(".avif", marks=needs_avif)])
def test_every_format_reads_as_uint8_gray(tmp_path, suffix):
    array = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))
    params = {".webp": {"lossless": True}, ".avif": {"quality": 100}}.get(suffix, {})
    save(tmp_path / f"x{suffix.upper()}", array, **params)  # extensions match in any case
    assert suffix in folders.IMAGE_SUFFIXES
    batch = load_images([tmp_path / f"x{suffix.upper()}"])
    assert batch.images.dtype == np.uint8 and batch.images.shape == (1, 8, 8)
    tolerance = 8 if suffix in (".jpg", ".jpeg", ".jpe", ".jfif", ".avif") else 0
    assert np.abs(batch.images[0].astype(int) - array).max() <= tolerance


def test_a_folder_of_pgm_and_ppm_files_reads(tmp_path, rng):
    # The layout of the AT&T faces: one folder of .pgm files per person.
    faces = {"s1/1.pgm": noise(rng), "s1/2.pgm": noise(rng), "s2/1.pgm": noise(rng)}
    for name, array in faces.items():
        save(tmp_path / name, array)
    Image.fromarray(np.full((6, 5), 255, np.uint8)).convert("1").save(tmp_path / "s2" / "2.pbm")
    colour = save(tmp_path / "s3" / "1.ppm", noise(rng, (6, 5, 3)))
    dataset = load_dataset(tmp_path)
    assert dataset.train_labels.tolist() == ["s1", "s1", "s2", "s2", "s3"]
    np.testing.assert_array_equal(dataset.train_images[:3], np.stack(list(faces.values())))
    assert (dataset.train_images[3] == 255).all()
    with Image.open(colour) as image:
        np.testing.assert_array_equal(dataset.train_images[4], np.asarray(image.convert("L")))


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


def test_sixteen_and_thirty_two_bit_images_keep_their_high_bits(tmp_path):
    values = np.array([[0, 256, 4096, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(load_images([tmp_path / "deep.png"]).images[0], [[0, 1, 16, 255]])
    # 32-bit integers scale from 0..65535 too (Pillow holds 16-bit PGM data as 32-bit).
    tifffile.imwrite(tmp_path / "i32.tif", np.array([[-7, 4096, 65535, 70000]], np.int32))
    np.testing.assert_array_equal(load_images([tmp_path / "i32.tif"]).images[0], [[0, 16, 255, 255]])


def faint_warnings(caught):
    return [str(w.message) for w in caught if "nearly black" in str(w.message)]


@pytest.mark.parametrize("threads", [True, False])
def test_sixteen_bit_images_that_read_nearly_black_are_warned_of_once(tmp_path, monkeypatch,
                                                                      threads):
    monkeypatch.setattr(folders, "_THREADED_BYTES", 0 if threads else float("inf"))
    paths = [tmp_path / name for name in ("0.png", "1.png", "2.png", "3.tif")]
    for path, largest in zip(paths, [255, 4095, 4096], strict=False):  # 8-, 12- and 13-bit values
        Image.fromarray(np.array([[0, 1], [2, largest]], np.uint16)).save(path)
    tifffile.imwrite(paths[3], np.array([[0, 9]], np.int32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = load_images(paths, size=2)
    assert faint_warnings(caught) == [
        "3 images of the 4 decoded are nearly black: their 16- or 32-bit values, at most 4,095, "
        "are scaled from 0..65535 to 0..255; convert them to 8-bit first, stretched to their own "
        "range"]
    assert batch.images[[0, 3]].max() == 0 and batch.images[1].max() == 15
    with pytest.warns(UserWarning, match="^1 image of the 1 decoded is nearly black: its 16-.* it "):
        load_images(paths[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_images(paths[2:3])  # values up to 4096 read up to 16: dark, not black


def test_a_folder_of_faint_images_is_warned_of_once_per_source(tmp_path):
    for i in range(5):
        Image.fromarray(np.full((2, 2), 200 + i, np.uint16)).save(tmp_path / f"{i}.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = folders.FolderSource(tmp_path)
        source.read_batch(0, 2)
        source.read_batch(2, 5)
        source.read_all()
    assert len(faint_warnings(caught)) == 1
    assert faint_warnings(caught)[0].startswith(f"5 images of the first 5 decoded from {tmp_path} ")


def test_float_tiff_is_clipped(tmp_path):
    Image.fromarray(np.array([[-5.0, 12.4, 300.0]], np.float32)).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_images([tmp_path / "f.tif"]).images[0], [[0, 12, 255]])


def test_float_tiff_of_zero_to_one_is_scaled_to_255(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.array([[0.0, 0.25, 0.5, 1.0, np.nan]], np.float32))
    np.testing.assert_array_equal(load_images([tmp_path / "f.tif"]).images[0],
                                  [[0, 64, 128, 255, 0]])


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


def test_auto_size_takes_the_median_size_and_resizes_every_image(tmp_path, rng):
    save(tmp_path / "a.png", noise(rng, (6, 5)))
    save(tmp_path / "b.png", np.full((30, 20), 77, np.uint8))
    save(tmp_path / "c.jpg", np.full((12, 12, 3), 200, np.uint8))
    source = folders.FolderSource(tmp_path, size="auto")
    assert source.image_shape == (12, 12)  # median height of 6, 30, 12; median width of 5, 20, 12
    images = source.read_all().images
    assert images.shape == (3, 12, 12)
    assert (images[1] == 77).all() and (abs(images[2].astype(int) - 200) <= 2).all()


def test_auto_size_scales_large_images_down_keeping_their_aspect(tmp_path, rng):
    # Unreadable files are passed over; of two sizes, the smaller median is taken.
    (tmp_path / "0-bad.png").write_bytes(rng.bytes(50))
    save(tmp_path / "a.png", noise(rng, (300, 400)))
    save(tmp_path / "b.png", noise(rng, (20, 10)))
    save(tmp_path / "c.png", noise(rng, (300, 400)))
    source = folders.FolderSource(tmp_path, size="auto", color="rgb", skip_bad=True)
    assert source.image_shape == (48, 64, 3)
    assert source.read_all().images.shape == (3, 48, 64, 3)
    assert load_images([tmp_path / "b.png", tmp_path / "a.png"], size="auto").images.shape == (
        2, 20, 10)


def test_auto_size_is_not_set_by_an_odd_first_image(tmp_path, rng):
    # A 1 x 1000 banner sorting first used to squash every image to 1 x 64.
    save(tmp_path / "0-banner.png", noise(rng, (1, 1000)))
    for i in range(4):
        save(tmp_path / f"{i + 1}.png", noise(rng, (30, 40)))
    assert folders.FolderSource(tmp_path, size="auto").image_shape == (30, 40)
    assert load_images(sorted(tmp_path.iterdir()), size="auto").images.shape == (5, 30, 40)


def test_auto_size_reads_the_headers_of_files_spread_over_the_list(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(folders, "_AUTO_SAMPLE", 4)
    read = []
    upright_hw = folders._upright_hw
    monkeypatch.setattr(folders, "_upright_hw", lambda path: read.append(path.name) or
                        upright_hw(path))
    paths = [save(tmp_path / f"{i}.png", noise(rng, (8 + i, 8))) for i in range(10)]
    # The lower median height of 8, 11, 14 and 17: one of the sizes, not a blend.
    assert load_images(paths, size="auto").images.shape == (10, 11, 8)
    assert read == ["0.png", "3.png", "6.png", "9.png"]


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
    with pytest.raises(KMIError, match="the image file in .* could not be read"):
        load_dataset(tmp_path, skip_bad=True)
    (tmp_path / "y.png").write_bytes(rng.bytes(100))
    with pytest.raises(KMIError, match="none of the 2 image files in .* could be read"):
        load_dataset(tmp_path, skip_bad=True)
    with pytest.raises(KMIError, match=r"^the image file could not be read \(1 bad, skipped\)$"):
        load_images([tmp_path / "x.png"], skip_bad=True)


def test_empty_folder(tmp_path):
    with pytest.raises(KMIError, match="is empty"):
        load_dataset(tmp_path)


def test_folder_without_images(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text("x")
    with pytest.raises(KMIError, match="no image files .* 2 other files and 1 hidden file skipped"):
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


#: How a file tagged with each EXIF orientation stores an upright picture.
STORED = {3: lambda up: np.rot90(up, 2), 6: lambda up: np.rot90(up, 1),
          8: lambda up: np.rot90(up, -1)}


def upright_picture():
    """96 x 48, no two sides alike: a bright top band, a mid-gray left one."""
    up = np.zeros((96, 48), np.uint8)
    up[:24] = 255
    up[:, :12] = 128
    return up


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiffs_are_read_upright_by_their_orientation_once(tmp_path, orientation, compression):
    # Pillow turns a TIFF itself, and reports its upright size before decoding it.
    up = upright_picture()
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, np.ascontiguousarray(STORED[orientation](up)), compression=compression,
                     extratags=[(0x0112, "H", 1, orientation, True)])
    np.testing.assert_array_equal(load_images([path]).images[0], up)
    auto = load_images([path], size="auto").images[0]
    assert auto.shape == auto_size(up.shape) == (64, 32)
    assert auto[:10].min() > 100 and auto[-10:, -10:].max() < 20


@pytest.mark.parametrize("orientation", [6, 8])
@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".png", ".tif",
                                    pytest.param(".avif", marks=needs_avif)])
def test_photos_are_read_upright_by_their_exif_orientation(tmp_path, suffix, orientation):
    up = upright_picture()
    image = Image.fromarray(np.ascontiguousarray(STORED[orientation](up)))
    exif = image.getexif()
    exif[0x0112] = orientation
    params = {".jpg": {"quality": 95}, ".webp": {"lossless": True}, ".avif": {"quality": 100}}
    image.save(tmp_path / f"x{suffix}", exif=exif, **params.get(suffix, {}))
    upright = load_images([tmp_path / f"x{suffix}"]).images[0]
    assert upright.shape == up.shape
    assert np.abs(upright.astype(int) - up).mean() < 4
    auto = load_images([tmp_path / f"x{suffix}"], size="auto").images[0]
    assert auto.shape == (64, 32) and auto[:10].min() > 100 and auto[-10:, -10:].max() < 20


def test_a_png_exif_chunk_after_the_pixels_turns_the_image_but_not_the_auto_size(tmp_path):
    # Only headers set size="auto": an eXIf chunk after the pixels is found when decoding.
    up = upright_picture()
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = 6
    path = tmp_path / "x.png"
    Image.fromarray(np.ascontiguousarray(STORED[6](up))).save(path, exif=exif)
    data = path.read_bytes()
    start = data.index(b"eXIf") - 4
    chunk = data[start:start + 12 + int.from_bytes(data[start:start + 4], "big")]
    data = data.replace(chunk, b"")
    path.write_bytes(data.replace(b"\0\0\0\0IEND", chunk + b"\0\0\0\0IEND"))
    assert load_images([path]).images[0].shape == up.shape
    assert load_images([path], size="auto").images[0].shape == (32, 64)


def link(path, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path, target_is_directory=True)


needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")


@needs_symlinks
def test_a_link_to_the_folder_itself_reads_no_image_twice(tmp_path, rng):
    root = tmp_path / "loop"
    paths = [save(root / f"{i:02d}.png", noise(rng)) for i in range(20)]
    link(root / "again", root.resolve())
    for loose_images in ("skip", "read"):
        source = folders.FolderSource(root, loose_images=loose_images)
        assert source.paths == paths and source.labels is None
    assert list(iter_image_files(root)) == paths


@needs_symlinks
def test_links_inside_class_folders_read_each_class_once_under_its_own_label(tmp_path, rng):
    root = tmp_path / "classes"
    for c in range(3):
        for i in range(2):
            save(root / f"class{c}" / f"{i}.png", noise(rng))
    link(root / "class0" / "up", "..")
    link(root / "class0" / "more", "../class1")
    link(root / "class2" / "deep" / "top", "../../..")
    source = folders.FolderSource(root)
    assert [p.relative_to(root).as_posix() for p in source.paths] == [
        f"class{c}/{i}.png" for c in range(3) for i in range(2)]
    assert source.labels.tolist() == ["class0"] * 2 + ["class1"] * 2 + ["class2"] * 2


@needs_symlinks
def test_links_to_folders_outside_are_followed_once(tmp_path, rng):
    outside = tmp_path / "shared"
    save(outside / "a.png", noise(rng))
    save(outside / "sub" / "b.png", noise(rng))
    link(outside / "sub" / "up", "..")  # back up to the linked folder
    link(outside / "home", tmp_path / "data")  # holds the listed folder
    root = tmp_path / "data" / "classes"
    save(root / "own" / "c.png", noise(rng))
    link(root / "linked", outside)
    link(root / "same", outside)  # the same folder again: nothing new
    link(root / "zsub", outside / "sub")  # inside a folder already read
    source = folders.FolderSource(root)
    assert [p.relative_to(root).as_posix() for p in source.paths] == [
        "linked/a.png", "linked/sub/b.png", "own/c.png"]
    assert source.labels.tolist() == ["linked", "linked", "own"]
    # Listed on its own, the shared folder reads the folder that holds its link, once.
    assert [p.relative_to(outside).as_posix() for p in iter_image_files(outside)] == [
        "a.png", "home/classes/own/c.png", "sub/b.png"]


def test_an_excluded_folder_is_neither_read_nor_counted(tmp_path):
    for name in ("cats/1.png", "dogs/1.png", "out/figure.png", "cats/out/2.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4)).save(tmp_path / name)
    (tmp_path / "out" / "results.json").write_text("{}")
    source = open_source(tmp_path, exclude=[tmp_path / "out"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in source.paths) == [
        "cats/1.png", "cats/out/2.png", "dogs/1.png"]
    assert sorted(source.labels.tolist()) == ["cats", "cats", "dogs"]
    assert not any(source.skipped.values())
