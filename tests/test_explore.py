"""kmi explore: K choice, outputs, outliers, duplicates, the map and the page."""

import csv
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explore_data import write_digits_folder
from kmeans_imagery import KMIError, load_model
from kmeans_imagery.cli import main
from kmeans_imagery.explore import (
    choose_k,
    descriptors,
    explore,
    find_duplicates,
    pixel_hashes,
)
from kmeans_imagery.explore._explore import OUTPUTS
from kmeans_imagery.explore._neighbours import pairs_within, top_k

HOSTILE = "<img src=x onerror=alert(1)>.png"


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """300 digits in class folders, plus an exact copy, a JPEG copy, noise and a hostile name."""
    root = tmp_path_factory.mktemp("collection")
    files = write_digits_folder(root / "photos", 30)
    extra = root / "photos" / "9"
    shutil.copy(files[0], extra / "copy-of-first.png")
    Image.open(files[40]).save(extra / "jpeg-of-41st.jpg", quality=90)
    noise = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(noise).save(extra / "noise.png")
    shutil.copy(files[100], extra / HOSTILE)
    out = root / "out"
    found = explore(root / "photos", out, k_range=(2, 20), random_state=0)
    with open(out / "clusters.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {"root": root, "files": files, "out": out, "results": found.results, "rows": rows,
            "found": found}


def _row(collection, name):
    return next(r for r in collection["rows"] if r["path"].endswith(name))


def test_every_output_is_written_and_describes_every_image(collection):
    out, rows, results = collection["out"], collection["rows"], collection["results"]
    assert all((out / name).is_file() for name in OUTPUTS)
    assert len(rows) == results["n_images"] == 304
    assert list(rows[0]) == ["path", "cluster", "distance", "margin", "outlier_score",
                             "duplicate_group"]
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    choice = results["k_choice"]
    assert 2 <= results["k"] <= 20 and choice["k"] == results["k"] and choice["reason"]
    assert sum(results["cluster_sizes"]) == 304
    assert 0 < results["accuracy"]["hungarian"] <= results["accuracy"]["majority"] <= 1


def test_the_saved_model_predicts_the_clusters_in_the_csv(collection):
    from kmeans_imagery.datasets import load_images

    model = load_model(collection["out"] / "model.kmi")
    rows = collection["rows"][:50]
    images = load_images([r["path"] for r in rows], color="gray").images
    assert model.predict_cluster(images).tolist() == [int(r["cluster"]) for r in rows]


def test_planted_copies_are_grouped_with_their_originals(collection):
    files = collection["files"]
    first, copy = _row(collection, files[0].name), _row(collection, "copy-of-first.png")
    original, near = _row(collection, files[40].name), _row(collection, "jpeg-of-41st.jpg")
    assert first["duplicate_group"] == copy["duplicate_group"] != ""
    assert original["duplicate_group"] == near["duplicate_group"] != ""
    assert first["duplicate_group"] != original["duplicate_group"]
    with open(collection["out"] / "duplicates.csv", encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    exact = {r["path"].rsplit("/", 1)[-1]: r["exact"] for r in listed}
    assert exact["copy-of-first.png"] == "1" and exact["jpeg-of-41st.jpg"] == "0"
    assert len({r["group"] for r in listed}) == collection["results"]["duplicates"]["n_groups"]


def test_noise_is_the_top_outlier(collection):
    with open(collection["out"] / "outliers.csv", encoding="utf-8") as handle:
        first = next(csv.DictReader(handle))
    assert first["path"].endswith("noise.png")
    scores = np.array([float(r["outlier_score"]) for r in collection["rows"]])
    assert np.median(scores) == pytest.approx(1, abs=0.05)


def test_page_is_self_contained_escaped_and_bounded(collection):
    page = (collection["out"] / "index.html").read_text("utf-8")
    assert HOSTILE not in page and "&lt;img src=x" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # One sprite per gallery, not one image per thumbnail.
    k = collection["results"]["k"]
    assert page.count("data:image/png") == 3 + k + 2
    assert page.count('class="t"') <= 36 * k + 100 + 12 * 100


def test_result_object_shows_its_table_and_figures(collection):
    found = collection["found"]
    assert found.k == found.results["k"] and found.out_dir == collection["out"]
    assert set(found.files) == set(OUTPUTS) and all(p.is_file() for p in found.files.values())
    assert found.results["fit"]["mode"] == "memory"
    assert repr(found).startswith(f"Exploration(n_images=304, k={found.k}, features='l2'")
    page = found._repr_html_()
    assert "<table>" in page and page.count("<img") == 3 and "why this K" in page
    assert "noise.png" in page


def test_existing_outputs_need_force(collection, tmp_path):
    with pytest.raises(KMIError, match="--force"):
        explore(collection["root"] / "photos", collection["out"], k=3)


def test_a_failed_run_leaves_the_earlier_outputs_and_force_leaves_no_stale_one(tmp_path,
                                                                             monkeypatch):
    from kmeans_imagery.explore import _explore

    folder = tmp_path / "scans"
    write_digits_folder(folder, 8, classes=(0, 1, 7), flat=True)
    out = tmp_path / "out"
    explore(folder, out, k_range=(2, 8), features="raw")
    before = {name: (out / name).read_bytes() for name in OUTPUTS}

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_explore, "_write_csvs", fail)  # after the figures are drawn
    with pytest.raises(OSError):
        explore(folder, out, k=2, force=True)
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # no stage left behind
    monkeypatch.undo()
    explore(folder, out, k=2, features="raw", force=True)  # K given: no K-selection figure
    assert sorted(p.name for p in out.iterdir()) == sorted(set(OUTPUTS) - {"k_choice.png"})


def test_an_output_folder_inside_the_collection_is_not_read_as_images(tmp_path):
    folder = tmp_path / "scans"
    write_digits_folder(folder, 8, classes=(0, 1, 7))
    first = explore(folder, folder / "explored", k=3, features="raw")
    again = explore(folder, folder / "explored", k=3, features="raw", force=True)
    assert first.results["n_images"] == again.results["n_images"] == 24
    assert again.results["skipped"] == {}  # its outputs are neither read nor counted
    assert sorted(again.results["cluster_labels"]) == ["0", "1", "7"]


def test_names_that_are_not_utf8_are_written_as_the_file_system_has_them(tmp_path):
    folder = tmp_path / "scans"
    files = write_digits_folder(folder, 6, classes=(0, 1), flat=True)
    latin1 = os.fsencode(folder) + b"/caf\xe9.png"
    os.rename(files[0], latin1)
    explore(folder, tmp_path / "out", k=2, features="raw")
    for name in ("clusters.csv", "index.html"):
        assert b"caf\xe9.png" in (tmp_path / "out" / name).read_bytes()
    assert any(r["path"].endswith("caf\udce9.png") for r in csv.DictReader(
        open(tmp_path / "out" / "clusters.csv", encoding="utf-8", errors="surrogateescape")))


@pytest.mark.parametrize(("option", "value", "message"), [
    ("random_state", -1, "random_state must be an integer in"),
    ("random_state", 2**32, "random_state must be an integer in"),
    ("duplicate_threshold", None, "duplicate_threshold must be a finite number"),
    ("duplicate_threshold", float("inf"), "duplicate_threshold must be a finite number"),
    ("k", True, "must be 'auto' or a positive integer"),
    # Checked before the collection is read; a fraction is not silently cut to an integer.
    ("k_range", (2.7, 10), r"k_range must be two integers \(min, max\), got \(2.7, 10\)"),
    ("k_range", (50, 2), "k_range must span at least 3 values of K >= 2, got 50-2"),
    ("k_range", (5, 5), "k_range must span at least 3 values of K >= 2, got 5-5"),
    ("k_range", "2-50", "k_range must be two integers"),
])
def test_bad_parameters_are_named(tmp_path, option, value, message):
    with pytest.raises(KMIError, match=message):
        explore("digits", tmp_path / "o", **{option: value})
    assert not (tmp_path / "o").exists()


def test_given_k_skips_the_choice(collection, tmp_path):
    found = explore(collection["root"] / "photos", tmp_path / "out", k=4, duplicate_threshold=0,
                    fit_size=120)
    results = found.results
    assert results["k"] == 4 and results["k_choice"] is None
    # More images than fit_size: the fit streams, and every image is still assigned.
    assert results["fit"]["mode"] == "stream" and sum(results["cluster_sizes"]) == 304
    assert not (tmp_path / "out" / "k_choice.png").exists() and "k_choice.png" not in found.files
    assert found._repr_html_().count("<img") == 2
    # Threshold 0: only the exact copy (and the hostile-named copy) form groups.
    assert results["duplicates"]["n_groups"] == 2


def test_fit_on_a_dask_cluster(collection, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    photos = collection["root"] / "photos"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        found = explore(photos, tmp_path / "dask", k=4, client=client)
        address = cluster.scheduler_address
        assert main(["explore", str(photos), "--out", str(tmp_path / "cli"), "--k", "4",
                     "--dask", address]) == 0
    streamed = explore(photos, tmp_path / "stream", k=4, fit_size=120)
    assert found.results["fit"]["mode"] == "dask" and sum(found.results["cluster_sizes"]) == 304
    # The same passes from the same start, on the cluster or here.
    assert found.results["cluster_sizes"] == streamed.results["cluster_sizes"]
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert cli["fit"] == found.results["fit"] and "K=4" in capsys.readouterr().out


@pytest.mark.parametrize("fit_size", [1000, 120], ids=["in memory", "streamed"])
def test_unreadable_files_are_skipped_without_shifting_the_others(tmp_path, fit_size):
    files = write_digits_folder(tmp_path / "photos", 15)
    (files[7].parent / "0-broken.png").write_bytes(b"not a PNG")  # early in the first batch
    found = explore(tmp_path / "photos", tmp_path / "out", k=3, skip_bad=True, fit_size=fit_size,
                    batch_size=64)
    assert found.results["fit"]["mode"] == ("memory" if fit_size == 1000 else "stream")
    with open(tmp_path / "out" / "clusters.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == found.results["n_images"] == len(files)
    assert not any(r["path"].endswith("0-broken.png") for r in rows)
    from kmeans_imagery.datasets import load_images

    model = load_model(tmp_path / "out" / "model.kmi")
    images = load_images([r["path"] for r in rows], color="gray").images
    assert model.predict_cluster(images).tolist() == [int(r["cluster"]) for r in rows]


def test_umap_map(collection, tmp_path):
    pytest.importorskip("umap")
    results = explore(collection["root"] / "photos", tmp_path / "out", k=3, map_method="umap").results
    assert results["map"] == "umap" and (tmp_path / "out" / "map.png").stat().st_size > 0
    with pytest.raises(KMIError, match="map_method must be one of pca, umap"):
        explore(collection["root"] / "photos", tmp_path / "other", k=3, map_method="tsne")


def test_outlier_score_finds_blank_and_textured_frames_among_digits():
    from sklearn.datasets import load_digits

    from kmeans_imagery.explore import OutlierScorer

    images = np.round(load_digits().images[:400] * 255 / 16).astype(np.uint8)
    yy, xx = np.mgrid[:8, :8]
    # A mid-gray blank (one vector for any gray level once L2-normalised) and stripes.
    foreign = np.stack([np.full((8, 8), 96, np.uint8), ((xx % 2) * 255).astype(np.uint8)])
    images = np.concatenate([images, foreign])
    reference = np.arange(0, len(images), 2)
    scorer = OutlierScorer(images[reference], reference)
    raw = np.concatenate([scorer.raw_scores(images[s:s + 128], s) for s in range(0, 402, 128)])
    scores = OutlierScorer.scale(raw)
    assert raw.shape == (402, 2) and np.median(scores) >= 1
    assert set(np.argsort(-scores)[:2].tolist()) == {400, 401}


def test_outlier_scores_do_not_depend_on_how_images_are_batched():
    from sklearn.datasets import load_digits

    from kmeans_imagery.explore import OutlierScorer

    # 1,797 images: one call scores them in chunks on threads, the other 100 at a time; the
    # reference holds some of the images, which must never count themselves.
    images = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    reference = np.arange(0, len(images), 3)
    scorer = OutlierScorer(images[reference], reference)
    whole = scorer.raw_scores(images, 0)
    pieces = np.concatenate([scorer.raw_scores(images[s:s + 100], s)
                             for s in range(0, len(images), 100)])
    np.testing.assert_array_equal(whole, pieces)
    assert (whole > 0).all()


def test_choose_k_finds_separated_blobs(rng):
    centres = rng.normal(scale=10, size=(6, 20))
    rows = np.concatenate([c + rng.normal(size=(150, 20)) for c in centres])
    choice = choose_k(rows, (2, 30), random_state=0)
    assert choice.k == 6
    assert choice.wss[0] > choice.wss[-1] and len(choice.ks) == 29
    with pytest.raises(KMIError, match="k_range"):
        choose_k(rows, (5, 6))


def test_choose_k_can_pick_the_smallest_k_of_the_range(rng):
    """Two obvious groups give K=2: the curve starts one K below the range (else K=2 would lie
    on the chord and never be the elbow)."""
    centres = rng.normal(scale=10, size=(2, 20))
    rows = np.concatenate([c + rng.normal(size=(150, 20)) for c in centres])
    choice = choose_k(rows, (2, 30), random_state=0)
    assert choice.k == 2 and choice.start_k == 1 and choice.start_wss > choice.wss[0]
    assert "from K=1 to K=2" in choice.reason
    assert 3 <= choose_k(rows, (3, 30), random_state=0).k <= 30  # the range is kept


def test_choose_k_on_images_all_alike_takes_their_number_of_distinct_rows(tmp_path):
    from kmeans_imagery.explore import plot_k_choice

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        choice = choose_k(np.zeros((40, 16)), (2, 10))
        assert choice.k == 1 and "only 1 distinct feature vector" in choice.reason
        two = choose_k(np.repeat(np.eye(16)[:2], 20, axis=0), (5, 10))
        assert two.k == 2 and "2 distinct feature vectors" in two.reason
        plot_k_choice(choice), plot_k_choice(two)  # picks outside the range are drawn too
        np.save(tmp_path / "same.npy", np.full((10, 8, 8), 90, np.uint8))
        found = explore(tmp_path / "same.npy", tmp_path / "out")
    assert found.k == 1 and (tmp_path / "out" / "k_choice.png").exists()


def test_too_few_images_to_choose_k_ask_for_k(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "four.npy", rng.random((4, 8, 8)).astype(np.float32))
    argv = ["explore", str(tmp_path / "four.npy"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "kmi: error: 4 images are too few to choose K over --k-range 2-50: that takes at least 5 "
        "(three values of K below their number); give --k=N instead\n")
    assert main([*argv, "--k", "2"]) == 0


def test_duplicates_exact_and_near(rng):
    images = rng.integers(0, 256, (50, 20, 20), dtype=np.uint8)
    images[10] = images[3]
    images[20] = np.clip(images[7].astype(int) + 2, 0, 255)  # a slight change
    groups = find_duplicates(pixel_hashes(images), descriptors(images))
    assert groups.n_groups == 2
    assert groups.group[3] == groups.group[10] and groups.exact[10] and groups.distance[10] == 0
    assert groups.group[7] == groups.group[20] and not groups.exact[20]
    assert 0 < groups.distance[20] < 0.025
    assert (groups.group >= 0).sum() == 4
    assert find_duplicates(pixel_hashes(images), descriptors(images), threshold=0).n_groups == 1



def test_thousands_of_identical_frames_are_one_group_found_in_linear_pairs(rng):
    """Blank frames of a camera trap: each copy pairs with the first, not with every other
    (6,000 of them were 18 million pairs, 80 s and 2 GB); a near copy of one joins too."""
    images = np.repeat(rng.integers(0, 256, (1, 16, 16), dtype=np.uint8), 6000, axis=0)
    images[10] = np.clip(images[0].astype(int) + 2, 0, 255)
    images[20] = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    start = time.perf_counter()
    groups = find_duplicates(pixel_hashes(images), descriptors(images))
    assert time.perf_counter() - start < 10
    assert groups.n_groups == 1 and (groups.group >= 0).sum() == 5999 and groups.group[20] == -1
    assert len(groups.pairs) == 5997 + 1 and groups.exact.sum() == 5998

def test_dark_images_are_told_apart_by_what_they_show(rng):
    """Thirty distinct frames of gray levels 0-15 are not one group; their JPEG copies are
    found, and blank frames of different levels stay apart."""
    import io

    smooth = [np.asarray(Image.fromarray((rng.random((6, 8)) * 255).astype(np.uint8)).resize(
        (64, 48), Image.BICUBIC)) for _ in range(30)]
    dark = np.stack([np.round(s / 255 * 15).astype(np.uint8) for s in smooth])

    def jpeg(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=75)
        return np.asarray(Image.open(buffer))

    blank = np.stack([np.full((48, 64), v, np.uint8) for v in (0, 8, 64)])
    images = np.concatenate([dark, np.stack([jpeg(a) for a in dark[:5]]), blank])
    groups = find_duplicates(pixel_hashes(images), descriptors(images))
    assert groups.n_groups == 5
    assert all(groups.members(g).tolist() == [g, 30 + g] for g in range(5))


def test_a_chain_of_near_pairs_is_not_one_group():
    """Frames of a bar moving a pixel at a time: each is near the next, not near the tenth."""
    frames = np.zeros((40, 32, 64), np.uint8)
    for i, frame in enumerate(frames):
        frame[:, i:i + 8] = 255
    groups = find_duplicates(pixel_hashes(frames), descriptors(frames), threshold=0.1)
    linked = groups.group >= 0
    assert groups.n_groups > 1 and np.nanmax(groups.distance) <= 0.1
    for g in range(groups.n_groups):
        members = groups.members(g)
        assert members[0] == members.min() and not groups.exact[members[1:]].any()
    assert linked.sum() >= len(frames) - 1  # every frame near another is in a group


def test_tiled_searches_equal_brute_force(rng):
    rows = rng.random((300, 8)).astype(np.float32)
    full = np.sqrt(((rows[:, None] - rows[None]) ** 2).sum(-1))
    i, j, d = pairs_within(rows, 0.5, tile=64)
    expected = np.argwhere(np.triu(full <= 0.5, 1))
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [tuple(p) for p in expected.tolist()]
    np.testing.assert_allclose(d, full[i, j], atol=1e-5)
    # One coordinate far wider than the radius: the sweep compares each tile with a band only.
    wide = rows * np.array([1, 1, 20, 1, 1, 1, 1, 1], np.float32)
    apart = np.sqrt(((wide[:, None] - wide[None]) ** 2).sum(-1))
    seen = []
    i, j, d = pairs_within(wide, 0.5, tile=16, keep=lambda a, b: seen.append((a, b)) or a % 2 == 0)
    expected = [tuple(p) for p in np.argwhere(np.triu(apart <= 0.5, 1)).tolist() if p[0] % 2 == 0]
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected and len(expected) > 5
    assert all((a < b).all() for a, b in seen)
    np.testing.assert_allclose(d, apart[i, j], atol=1e-4)  # float32 norms of ~100 cancel
    best = None
    for s in range(0, 300, 70):
        best = top_k(rows[:5], rows[s:s + 70], 4, offset=s, best=best)
    np.testing.assert_array_equal(best[1], np.argsort(full[:5], axis=1)[:, :4])


def test_cli_explore_and_its_errors(collection, tmp_path, capsys):
    assert main(["explore", str(collection["root"] / "photos"), "--out", str(tmp_path / "o"),
                 "--k", "3", "--map", "pca"]) == 0
    assert "K=3" in capsys.readouterr().out
    assert main(["explore", "x", "--out", str(tmp_path / "o"), "--k-range", "2to9"]) == 2
    assert "MIN-MAX" in capsys.readouterr().err
    assert main(["explore", "digits", "--out", str(tmp_path / "o"), "--k", "0"]) == 2
    assert capsys.readouterr().err == "kmi: error: --k=0 must be 'auto' or a positive integer\n"
    for seed in ("-1", str(2**32)):
        assert main(["explore", "digits", "--out", str(tmp_path / "o"), "--seed", seed]) == 2
        assert "Invalid value for '--seed'" in capsys.readouterr().err


def test_photos_of_mixed_sizes_are_read_at_their_median_size_scaled_down(tmp_path, capsys):
    # Photos of many sizes, larger than AUTO_SIDE: read at their median size, scaled down.
    from statistics import median_low

    from kmeans_imagery.datasets.convert import auto_size

    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    sizes = []
    for i in range(24):
        height, width = rng.integers(70, 200, 2)
        sizes.append((int(height), int(width)))
        photo = np.zeros((height, width, 3), np.uint8)
        photo[..., i % 3] = 220
        Image.fromarray(photo).save(folder / f"{i:02d}.jpg", quality=90)
    found = explore(folder, tmp_path / "out", k=3, features="raw", color="rgb")
    expected = auto_size((median_low(h for h, _ in sizes), median_low(w for _, w in sizes)))
    assert found.results["image_shape"] == [*expected, 3] and max(expected) == 64
    assert found.results["n_images"] == 24 and found.results["skipped"] == {}
    assert found.results["size"] == "auto"
    assert "(size=auto)" in (tmp_path / "out" / "index.html").read_text("utf-8")
    assert sorted(found.results["cluster_sizes"]) == [8, 8, 8]
    with pytest.raises(KMIError, match="differ in size.*size=auto"):
        explore(folder, tmp_path / "own", k=3, size=None)


def test_a_collection_of_one_image(tmp_path, capsys):
    (tmp_path / "one").mkdir()
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(tmp_path / "one" / "only.png")
    assert main(["explore", str(tmp_path / "one"), "--out", str(tmp_path / "o"), "--k", "1"]) == 0
    assert capsys.readouterr().out.startswith("1 image, K=1,")
    rows = list(csv.DictReader(open(tmp_path / "o" / "clusters.csv", encoding="utf-8")))
    assert [(r["cluster"], float(r["distance"]), r["margin"]) for r in rows] == [("0", 0.0, "")]
    assert "borderline" not in (tmp_path / "o" / "index.html").read_text("utf-8")


def test_a_dataset_with_a_test_split_is_explored_whole(tmp_path):
    found = explore("digits", tmp_path / "out", k=10, features="raw")
    rows = list(csv.DictReader(open(tmp_path / "out" / "clusters.csv", encoding="utf-8")))
    assert found.results["n_images"] == len(rows) == 1797
    assert (rows[0]["path"], rows[1437]["path"]) == ("bundled#train:0", "bundled#test:0")
    assert found.results["accuracy"]["majority"] > 0.7


def test_files_passed_over_are_counted_and_reported(collection, tmp_path, capsys):
    folder = tmp_path / "classes"
    shutil.copytree(collection["root"] / "photos", folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "3" / ".hidden.png").write_bytes(b"")
    assert main(["explore", str(folder), "--out", str(tmp_path / "o"), "--k", "3"]) == 0
    assert "skipped files in classes: 1 hidden, 1 non-image" in capsys.readouterr().err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["skipped"] == {"hidden": 1, "non_image": 1}
    assert results["n_images"] == collection["results"]["n_images"] and "accuracy" in results
    assert "1 hidden, 1 non-image" in (tmp_path / "o" / "index.html").read_text("utf-8")


def test_images_beside_class_folders_make_one_unlabelled_collection(collection, tmp_path):
    # Explored, a folder of albums and loose photos is every image in it; fit keeps
    # torchvision's rule (sub-folders are classes, the loose images are skipped).
    folder = tmp_path / "pictures"
    shutil.copytree(collection["root"] / "photos", folder)
    shutil.copy(collection["files"][0], folder / "loose.png")
    results = explore(folder, tmp_path / "o", k=3).results
    assert results["n_images"] == collection["results"]["n_images"] + 1
    assert results["skipped"] == {} and "accuracy" not in results
    with open(tmp_path / "o" / "clusters.csv", encoding="utf-8") as handle:
        assert str(folder / "loose.png") in {row["path"] for row in csv.DictReader(handle)}



@pytest.mark.parametrize("fit_size", [1000, 20], ids=["in memory", "streamed"])
def test_a_folder_of_one_sub_folder_is_an_unlabelled_album(tmp_path, fit_size):
    """One sub-folder is no class: the clusters keep their own names, so organize keeps them
    apart instead of putting every cluster into one folder named after the album."""
    from kmeans_imagery.explore import organize

    write_digits_folder(tmp_path / "pictures" / "holiday", 8, classes=(0, 1, 7), flat=True)
    found = explore(tmp_path / "pictures", tmp_path / "o", k=3, fit_size=fit_size)
    assert found.results["fit"]["mode"] == ("memory" if fit_size == 1000 else "stream")
    assert found.results["cluster_labels"] is None and "accuracy" not in found.results
    assert "labels:" not in (tmp_path / "o" / "index.html").read_text("utf-8")
    done = organize(tmp_path / "o" / "model.kmi", tmp_path / "pictures", tmp_path / "sorted",
                    dry_run=True)
    assert {Path(r["new_path"]).parent.name for r in done["rows"]} == {
        "cluster-0", "cluster-1", "cluster-2"}

@pytest.mark.browser
def test_page_loads_in_chromium_without_errors(collection, tmp_path, load_in_chromium):
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', function () {"
              "var broken = Array.prototype.filter.call(document.images, function (i) {"
              "return !(i.complete && i.naturalWidth > 0); });"
              "document.body.dataset.broken = String(broken.length);"
              "document.body.dataset.images = String(document.images.length);"
              "document.body.dataset.loadMs = String(performance.now()); });</script>")
    page = (collection["out"] / "index.html").read_text("utf-8")
    probe.write_text(page.replace("</body>", script + "</body>"), "utf-8")
    # Open every gallery so that its sprite is decoded too.
    probe.write_text(probe.read_text("utf-8").replace("<details ", "<details open "), "utf-8")
    start = time.perf_counter()
    done = load_in_chromium(probe)
    assert time.perf_counter() - start < 30
    assert 'data-broken="0"' in done.dom and 'data-images="3"' in done.dom
    assert done.console == []


def test_kmi_predict_reads_new_photos_at_the_explored_model_size(tmp_path):
    """Photos explored at size=auto: the model predicts them again without --resize."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(18):
        photo = np.zeros((*rng.integers(70, 160, 2), 3), np.uint8)
        photo[..., i % 3] = 220
        Image.fromarray(photo).save(folder / f"{i:02d}.jpg", quality=90)
    explore(folder, tmp_path / "out", k=3, features="raw", color="rgb")
    assert load_model(tmp_path / "out" / "model.kmi").metadata_["training"]["resized"]
    assert main(["predict", str(tmp_path / "out" / "model.kmi"), str(folder), "--out",
                 str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv", encoding="utf-8") as handle:
        predicted = {r["path"]: r["cluster"] for r in csv.DictReader(handle)}
    with open(tmp_path / "out" / "clusters.csv", encoding="utf-8") as handle:
        explored = {r["path"]: r["cluster"] for r in csv.DictReader(handle)}
    assert predicted == explored


def test_a_model_explored_from_arrays_reads_new_images_at_its_size(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "xy.npz", x_train=rng.integers(0, 256, (30, 12, 12), dtype=np.uint8),
             x_test=rng.integers(0, 256, (10, 12, 12), dtype=np.uint8))
    explore(tmp_path / "xy.npz", tmp_path / "out", k=2, features="raw")
    assert load_model(tmp_path / "out" / "model.kmi").metadata_["training"]["resized"]
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(tmp_path / "big.png")
    assert main(["predict", str(tmp_path / "out" / "model.kmi"), str(tmp_path / "big.png")]) == 0
