"""The segmentation library: neighbourhood means, sampling, smoothing, scoring, and whole runs on small
rasters."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.metrics.cluster import contingency_matrix

from kmeans_imagery.datasets.rasters import open_raster
from kmeans_imagery.errors import KMIError
from kmeans_imagery.features import DEFAULT_BUDGET_FEATURES, DEFAULT_PIXEL_FEATURES
from kmeans_imagery.metrics import cohen_kappa, contingency_scores
from kmeans_imagery.segment import segment
from kmeans_imagery.segment._classify import (
    PIECE_PIXELS,
    SCORE_ELEMENTS,
    PixelModel,
    classify_strip,
    fit_pixel_model,
)
from kmeans_imagery.segment._model import load_pixel_model
from kmeans_imagery.segment._pixels import (
    Block,
    neighbourhood_mean,
    radius_columns,
    read_blocks,
    sample_pixels,
)
from kmeans_imagery.segment._plots import class_colours, plot_class_areas, plot_spectra
from kmeans_imagery.segment._smoothing import majority_filter, smooth_strips
from segment_data import RASTERS, planted_scene, write_geotiff

rasterio = pytest.importorskip("rasterio")


def _classes(folder):
    with rasterio.open(folder / "classes.tif") as dataset:
        return dataset.read(1)


@pytest.fixture
def small_strips(monkeypatch):
    """Strips of 16 rows, so that small rasters are processed in several blocks."""
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_ALIGN", 16)
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_PIXELS", 16)


@pytest.fixture
def scene(tmp_path):
    cube, truth = planted_scene(height=70)
    path = write_geotiff(tmp_path / "scene.tif", cube, tiled=True)
    np.save(tmp_path / "truth.npy", truth)
    return path, cube, truth


# -- pixels ------------------------------------------------------------------------------------

def _brute_mean(values, valid, radius):
    """The mean of each pixel's valid neighbours, pixel by pixel: (rows, cols, bands) values."""
    rows, cols = valid.shape
    mean = np.zeros(values.shape, dtype=np.float64)
    for r in range(rows):
        for c in range(cols):
            window = (slice(max(0, r - radius), r + radius + 1), slice(max(0, c - radius), c + radius + 1))
            if valid[window].any():
                mean[r, c] = values[window][valid[window]].mean(axis=0)
    return mean


@pytest.mark.parametrize("radius", [1, 2])
@pytest.mark.parametrize("nodata", ["none", "pixels", "rows"])
def test_neighbourhood_mean_counts_valid_pixels_only(radius, nodata, rng):
    values = rng.normal(100, 30, (13, 11, 3))
    valid = np.ones((13, 11), dtype=bool)
    if nodata == "pixels":
        valid[rng.random(valid.shape) < 0.3] = False
    elif nodata == "rows":  # whole rows: the count of valid neighbours is still per row x per column
        valid[[0, 5, 6]] = False
    values[~valid] = np.nan
    planes = np.where(valid, np.moveaxis(values, -1, 0), 0).astype(np.float32)
    # The first and last `radius` rows are the halo: the means are those of the rows between.
    mean = neighbourhood_mean(planes, valid, radius)
    expected = _brute_mean(values, valid, radius)[radius:-radius]
    np.testing.assert_allclose(np.moveaxis(mean, 0, -1), expected, rtol=1e-5)


@pytest.mark.parametrize("radii", [(0,), (0, 1), (0, 1, 2)])
def test_blocks_share_halo_rows_and_give_brute_force_planes(tmp_path, monkeypatch, radii, rng):
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_ALIGN", 8)
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_PIXELS", 8)
    cube = rng.normal(100, 30, (37, 9, 2)).astype(np.float32)
    cube[rng.random(cube.shape[:2]) < 0.1] = np.nan  # nodata anywhere, strip edges included
    cube[7:9, :, 1] = np.nan  # the last row of the first strip and the first of the second
    np.save(tmp_path / "cube.npy", cube)
    valid = np.isfinite(cube).all(axis=-1)
    with open_raster(tmp_path / "cube.npy") as raster:
        strips = raster.strips()
        assert len(strips) == 4
        # Every strip is read once; its halo rows are its neighbours' (strip 2 is not in the list).
        chosen = [strips[0], strips[1], strips[3]]
        for block, (start, stop) in zip(read_blocks(raster, chosen, radii), chosen, strict=True):
            alone = Block(raster, start, stop, radii)
            np.testing.assert_array_equal(block.planes, alone.planes)
            np.testing.assert_array_equal(block.valid, alone.valid)
            rows = block.rows(start + 1, stop)  # a chunk of the strip, not from its first row
            inside = valid[start + 1 : stop].ravel()
            for index, radius in enumerate(radii):
                expected = _brute_mean(cube, valid, radius)[start + 1 : stop].reshape(-1, 2)
                got = rows[inside, 2 * index : 2 * index + 2]
                np.testing.assert_allclose(got, expected[inside], rtol=1e-5)


# -- sampling, smoothing, scoring -----------------------------------------------------------------

def test_sample_is_valid_deterministic_and_spread(scene, small_strips):
    path, cube, _ = scene
    with open_raster(path) as raster:
        first = sample_pixels(raster, 300, random_state=1)
        again = sample_pixels(raster, 300, random_state=1)
        other = sample_pixels(raster, 300, random_state=2)
    assert len(first.rows) == 300 and first.n_valid == int((cube != 0).all(axis=-1).sum())
    np.testing.assert_array_equal(first.positions, again.positions)
    assert not np.array_equal(first.positions, other.positions)
    rows, cols = np.divmod(first.positions, cube.shape[1])
    assert (cube[rows, cols] != 0).all()
    np.testing.assert_array_equal(first.rows, cube[rows, cols])
    assert rows.min() < 15 and rows.max() > 55  # across all strips


def test_majority_filter_removes_specks_keeps_nodata():
    labels = np.zeros((7, 7), dtype=np.int32)
    labels[3, 3] = 1
    labels[0, :] = -1
    smoothed = majority_filter(labels, 1, 2)
    assert smoothed[3, 3] == 0 and (smoothed[0] == -1).all() and (smoothed[1:] == 0).all()


def test_smooth_strips_equals_whole_map(rng):
    labels = rng.integers(-1, 4, (50, 13)).astype(np.int32)
    whole = majority_filter(labels, 2, 4)
    bounds = [(0, 16), (16, 32), (32, 50)]
    strips = list(smooth_strips(((a, labels[a:b]) for a, b in bounds), 2, 4))
    assert [start for start, _ in strips] == [0, 16, 32]
    np.testing.assert_array_equal(np.concatenate([s for _, s in strips]), whole)


def test_contingency_scores_match_scikit_learn(rng):
    y = rng.integers(1, 5, 2000)
    clusters = np.where(rng.random(2000) < 0.7, y - 1, rng.integers(0, 6, 2000))
    scores = contingency_scores(contingency_matrix(y, clusters))
    assert scores["nmi"] == pytest.approx(skm.normalized_mutual_info_score(y, clusters))
    assert scores["ari"] == pytest.approx(skm.adjusted_rand_score(y, clusters))
    assert scores["hungarian_accuracy"] == pytest.approx(np.mean(y - 1 == clusters), abs=0.05)
    assert len(scores["confusion_matrix"][0]) == 5  # 4 classes + the unmatched clusters
    assert scores["majority_accuracy"] >= scores["hungarian_accuracy"]


def test_kappa_matches_scikit_learn(rng):
    y, p = rng.integers(0, 3, 500), rng.integers(0, 3, 500)
    p[:300] = y[:300]
    assert cohen_kappa(skm.confusion_matrix(y, p)) == pytest.approx(skm.cohen_kappa_score(y, p))


# -- whole runs ----------------------------------------------------------------------------------

def test_segment_geotiff_outputs(scene, tmp_path, small_strips):
    path, cube, truth = scene
    out = tmp_path / "seg"
    result = segment(path, out, n_clusters=3, truth=tmp_path / "truth.npy", label_budgets=(6,))
    results = result.results
    assert sorted(p.name for p in out.iterdir()) == sorted(results["outputs"])
    with rasterio.open(path) as src, rasterio.open(out / "classes.tif") as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        assert dst.nodata == 0 and dst.dtypes[0] == "uint8" and dst.block_shapes[0] == (256, 256)
        assert dst.compression.name.lower() == "deflate" and dst.colormap(1)[1][3] == 255
        classes = dst.read(1)
    invalid = ~(cube != 0).all(axis=-1)
    np.testing.assert_array_equal(classes == 0, invalid)
    assert results["test"]["hungarian_accuracy"] == 1.0 and results["test"]["kappa"] == 1.0
    assert results["label_budget"][0]["accuracy"] == 1.0
    saved = json.loads((out / "results.json").read_text())
    assert saved["input"]["crs"] == "EPSG:32618" and saved["test"]["nmi"] == pytest.approx(1.0)
    lines = (out / "signatures.csv").read_text().splitlines()
    assert lines[0] == "class,pixels,area_m2,mean_band1,mean_band2,mean_band3,mean_band4"
    counts = [int(line.split(",")[1]) for line in lines[1:]]
    assert sum(counts) == (~invalid).sum()
    assert float(lines[1].split(",")[2]) == pytest.approx(counts[0] * 900)
    assert (out / "preview.png").read_bytes().startswith(b"\x89PNG")
    report = (out / "report.html").read_text()
    assert "data:image/png;base64" in report and "<th>Features</th>" in report
    means = np.array([[float(v) for v in line.split(",")[3:]] for line in lines[1:]])
    np.testing.assert_allclose(result.signatures, means, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_spectra_over_wavelengths_when_the_file_has_them(tmp_path):
    cube, _ = planted_scene(collar=0)
    with rasterio.open(tmp_path / "cube.img", "w", driver="ENVI", height=cube.shape[0], width=cube.shape[1],
                       count=cube.shape[2], dtype=cube.dtype) as dst:
        dst.write(np.moveaxis(cube, -1, 0))
    header = tmp_path / "cube.hdr"
    header.write_text(header.read_text() + "wavelength units = Micrometers\n"
                      "wavelength = {0.4, 0.5, 0.6, 0.7}\n")
    results = segment(tmp_path / "cube.img", tmp_path / "seg", n_clusters=3, bands=(2, 4)).results
    assert results["input"]["wavelengths"] == [0.5, 0.7] and results["input"]["wavelength_unit"] == "µm"
    ax = plot_spectra(np.ones((2, 2)), class_colours(2), wavelengths=[0.5, 0.7], wavelength_unit="µm")
    assert ax.get_xlabel() == "wavelength (µm)"
    ax = plot_spectra(np.ones((2, 2)), class_colours(2), bands=(2, 4))
    assert ax.get_xlabel() == "band" and list(ax.lines[0].get_xdata()) == [2, 4]
    assert all(tick == int(tick) for tick in ax.get_xticks())


@pytest.mark.parametrize("pixel_area, unit, label, largest", [
    (None, None, "pixels", 4000), (900, "m", "area (km²)", 3.6), (1, "m", "area (m²)", 4000),
    (25, "m", "area (ha)", 10), (4, "US survey foot", "area (US survey foot²)", 16000)])
def test_class_areas_in_readable_units(pixel_area, unit, label, largest):
    ax = plot_class_areas(np.array([4000, 10]), class_colours(2), pixel_area=pixel_area, area_unit=unit)
    assert ax.get_xlabel() == label
    assert max(patch.get_width() for patch in ax.patches) == pytest.approx(largest)


def test_segmentation_result_displays(scene, tmp_path):
    path, _, _ = scene
    result = segment(path, tmp_path / "seg", n_clusters=3, truth=tmp_path / "truth.npy", label_budgets=(6,))
    assert result.paths["classes.tif"] == tmp_path / "seg" / "classes.tif" and result.accuracy == 1.0
    pixels = result.results["input"]["valid_pixels"]
    assert repr(result) == (f"Segmentation(dataset='scene.tif', n_clusters=3, pixels={pixels}, accuracy=1, "
                            f"out='{tmp_path / 'seg'}')")
    html = result._repr_html_()
    assert "<table>" in html and html.count("<img") == 2 and "6 labels" in html and "classify_write s" in html


def test_strips_do_not_change_the_result(scene, tmp_path, monkeypatch):
    path, _, _ = scene
    whole = segment(path, tmp_path / "a", n_clusters=3, features="nbr:1+std|l2", smooth=1).results
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_ALIGN", 16)
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_PIXELS", 16)
    monkeypatch.setattr("kmeans_imagery.segment._classify.CHUNK_PIXELS", 100)
    blocks = segment(path, tmp_path / "b", n_clusters=3, features="nbr:1+std|l2", smooth=1).results
    assert whole["inertia"] == blocks["inertia"]
    np.testing.assert_array_equal(_classes(tmp_path / "a"), _classes(tmp_path / "b"))


def test_label_budget_models_have_their_own_default_features(scene, tmp_path, small_strips, monkeypatch):
    path, _, _ = scene
    monkeypatch.setattr("kmeans_imagery.segment._classify.CHUNK_PIXELS", 100)  # chunks of two rows
    truth = tmp_path / "truth.npy"
    defaults = segment(path, tmp_path / "a", n_clusters=3, truth=truth, label_budgets=(6, 9)).results
    assert defaults["features"] == DEFAULT_PIXEL_FEATURES
    assert [row["features"] for row in defaults["label_budget"]] == [DEFAULT_BUDGET_FEATURES] * 2
    assert [row["accuracy"] for row in defaults["label_budget"]] == [1.0, 1.0]
    given = segment(path, tmp_path / "b", n_clusters=3, truth=truth, label_budgets=(6,),
                    features="nbr:1+std").results
    assert given["label_budget"][0]["features"] == "nbr:1+std" and given["label_budget"][0]["accuracy"] == 1.0
    reused = segment(path, tmp_path / "c", model=tmp_path / "b" / "model.kmi", truth=truth,
                     label_budgets=(6,)).results
    assert reused["label_budget"][0]["features"] == "nbr:1+std"


def test_label_budget_default_separates_classes_of_one_spectral_shape(tmp_path):
    """Three classes that differ in brightness only: the budget default's brightness feature keeps
    them apart, where the spectral shape alone cannot."""
    truth = np.repeat(np.arange(48) * 3 // 48, 40).reshape(48, 40).T + 1
    cube = np.array([0.5, 1.0, 2.0])[truth - 1][..., None] * np.array([300, 500, 800, 400.0])
    cube += np.random.default_rng(0).normal(0, 15, cube.shape)
    np.save(tmp_path / "cube.npy", cube.astype(np.float32))
    np.save(tmp_path / "truth.npy", truth.astype(np.uint8))
    accuracy = {}
    for features in (None, "l2+std"):
        results = segment(tmp_path / "cube.npy", tmp_path / "seg", n_clusters=3, truth=tmp_path / "truth.npy",
                          label_budgets=(12,), features=features, force=True).results
        accuracy[features] = results["label_budget"][0]["accuracy"]
    assert accuracy[None] > 0.8 and accuracy["l2+std"] < 0.6


def test_radius_columns_pick_each_radius_bands():
    np.testing.assert_array_equal(radius_columns((0, 1), (0,), 3), [0, 1, 2])
    np.testing.assert_array_equal(radius_columns((1, 0, 2), (0, 2), 2), [2, 3, 4, 5])


def test_model_reuse_and_its_guards(scene, tmp_path):
    path, cube, _ = scene
    segment(path, tmp_path / "a", n_clusters=3, random_state=4)
    segment(path, tmp_path / "b", model=tmp_path / "a" / "model.kmi")
    np.testing.assert_array_equal(_classes(tmp_path / "a"), _classes(tmp_path / "b"))
    model, metadata = load_pixel_model(tmp_path / "a" / "model.kmi")
    assert metadata["kind"] == "pixels" and model.n_clusters == 3 and model.n_bands == 4
    with pytest.raises(KMIError, match="fitted on 4 bands"):
        segment(path, tmp_path / "c", model=tmp_path / "a" / "model.kmi", bands=(1, 2))
    from kmeans_imagery.model_io import load_model

    with pytest.raises(KMIError, match="is a pixel model"):
        load_model(tmp_path / "a" / "model.kmi")


def test_npy_cube_and_photo(tmp_path):
    cube, _ = planted_scene(collar=0)
    np.save(tmp_path / "cube.npy", cube)
    results = segment(tmp_path / "cube.npy", tmp_path / "seg", n_clusters=3).results
    assert results["input"]["crs"] is None
    assert sum(c["pixels"] for c in results["classes"]) == cube[..., 0].size
    from PIL import Image

    Image.fromarray((cube[..., :3] // 5).astype(np.uint8)).save(tmp_path / "photo.jpg")
    results = segment(tmp_path / "photo.jpg", tmp_path / "photo", n_clusters=3).results
    assert len(results["classes"]) == 3 and "area" not in results["classes"][0]


def test_nan_pixels_are_nodata_with_a_neighbourhood_step(tmp_path):
    cube, _ = planted_scene(collar=0)
    cube = cube.astype(np.float32)
    cube[:4] = np.nan  # NaN is a float raster's nodata; the rows below have it as neighbours
    cube[10, 10, 1] = np.nan  # nodata in one band only
    np.save(tmp_path / "nan.npy", cube)
    segment(tmp_path / "nan.npy", tmp_path / "seg", n_clusters=3, features="l2+std|nbr:1+std")
    with open_raster(tmp_path / "seg" / "classes.tif") as classes:
        labels = classes.read(0, classes.height)[0][..., 0]
    nodata = np.isnan(cube).any(axis=-1)
    assert (labels[nodata] == 0).all() and (labels[~nodata] > 0).all()


def test_errors_before_anything_is_written(scene, tmp_path):
    path, cube, _ = scene
    out = tmp_path / "seg"
    with pytest.raises(KMIError, match="--label-budget needs --truth"):
        segment(path, out, n_clusters=3, label_budgets=(4,))
    with pytest.raises(KMIError, match="--k"):
        segment(path, out)
    wrong = np.zeros(cube.shape[:2], dtype=np.uint8)
    np.save(tmp_path / "float.npy", wrong.astype(np.float32))
    with pytest.raises(KMIError, match="expected integer class numbers"):
        segment(path, out, n_clusters=3, truth=tmp_path / "float.npy")
    assert not out.exists()


def test_dask_local_classifies_like_this_process(scene, tmp_path, small_strips):
    pytest.importorskip("distributed")
    path, _, _ = scene
    options = dict(n_clusters=3, truth=tmp_path / "truth.npy", label_budgets=(6,))
    here = segment(path, tmp_path / "a", **options).results
    there = segment(path, tmp_path / "b", dask="local", **options).results
    np.testing.assert_array_equal(_classes(tmp_path / "a"), _classes(tmp_path / "b"))
    assert here["test"]["confusion_matrix"] == there["test"]["confusion_matrix"]
    assert here["label_budget"] == there["label_budget"]


def test_shared_landsat_scene(tmp_path):
    path = RASTERS / "RGB.byte.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    segment(path, tmp_path / "seg", n_clusters=6, sample=20_000, n_init=2)
    with rasterio.open(path) as src, rasterio.open(tmp_path / "seg" / "classes.tif") as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        # Nodata exactly where any band is masked (partly-nodata pixels are left out).
        np.testing.assert_array_equal(dst.read(1) == 0, ~(src.read_masks().all(axis=0) > 0))


def test_large_scene_sampled_from_a_subset_of_strips(tmp_path, monkeypatch):
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_ALIGN", 1)
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_PIXELS", 1)
    cube, _ = planted_scene(height=40, collar=0)
    cube[:, :] = np.where(np.arange(40)[:, None, None] < 39, 0, cube)  # only the last row is valid
    np.save(tmp_path / "cube.npy", cube)
    with open_raster(tmp_path / "cube.npy", nodata=0) as raster:
        sample = sample_pixels(raster, 10, random_state=0)  # 16 of the 40 one-row strips
        rows = np.unique(sample.positions // raster.width)
        assert len(sample.rows) <= 10 and set(rows) <= {39}
        everywhere = sample_pixels(raster, 10, random_state=0, min_valid=48)
    assert everywhere.n_valid == 48 and len(everywhere.rows) == 10
    assert (everywhere.positions // 48 == 39).all()


@pytest.mark.parametrize("spec", ["std+pca:3|l2+std+pca:3", "raw", "nbr:1+l2", "std+l2"])
def test_scores_from_band_values_equal_nearest_centroids(spec, rng):
    rows = rng.normal(100, 30, (3000, 8)).astype(np.float32)  # 4 bands, and their neighbourhood mean
    model, _ = fit_pixel_model(rows, 7, features=spec, n_init=1)
    features = model.features.transform(rows)
    np.testing.assert_array_equal(model.labels(rows), model.assign(features)[0])
    assert (model._linear is None) == (spec == "std+l2")


def test_scores_break_exact_ties_towards_the_lowest_class(rng):
    rows = rng.normal(100, 30, (9000, 8)).astype(np.float32)  # more than one part of 4,096 pixels
    fitted, _ = fit_pixel_model(rows, 5, features="l2+std|nbr:1+std", n_init=1)
    centers = np.concatenate([fitted.centers, fitted.centers[[1, 3]]])  # classes 5 and 6 repeat 1 and 3
    model = PixelModel(fitted.features, centers)
    labels = model.labels(rows)
    np.testing.assert_array_equal(labels, model.assign(model.features.transform(rows))[0])
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("spec", ["l2+std|nbr:2+std", "nbr:1+std+l2"])  # linear, and not
def test_classify_strip_equals_nearest_centroids_of_the_pixel_rows(tmp_path, spec, rng, monkeypatch):
    monkeypatch.setattr("kmeans_imagery.segment._classify.CHUNK_PIXELS", 50)  # chunks of 3 rows
    cube = rng.normal(100, 30, (30, 17, 3)).astype(np.float32)
    cube[rng.random(cube.shape[:2]) < 0.1, rng.integers(0, 3)] = np.nan  # partly nodata pixels
    cube[12] = np.nan  # a whole row, at a chunk's edge
    np.save(tmp_path / "cube.npy", cube)
    valid = np.isfinite(cube).all(axis=-1)
    with open_raster(tmp_path / "cube.npy") as raster:
        radii = (0, 2) if "nbr:2" in spec else (0, 1)
        rows = np.concatenate([_brute_mean(cube, valid, r) for r in radii], axis=-1)[5:25].reshape(-1, 6)
        inside = valid[5:25].ravel()
        model, _ = fit_pixel_model(rows[inside].astype(np.float32), 4, features=spec, n_init=1)
        assert (model._linear is None) == (spec == "nbr:1+std+l2")
        block = Block(raster, 5, 25, radii)
        got = classify_strip(raster, 5, 25, model, block=block, thumb_step=4, thumb_bands=(2, 0))
    # Nothing returned is a view of the block, whose buffers the next strip is read into.
    assert not any(np.shares_memory(value, buffer) for value in got.values() if isinstance(value, np.ndarray)
                   for buffer in block._buffers)
    np.testing.assert_array_equal(got["thumb"], cube[8:25:4, ::4][..., [2, 0]])
    np.testing.assert_array_equal(got["thumb_valid"], valid[8:25:4, ::4])  # rows that are multiples of 4
    expected = np.full(len(rows), -1)
    expected[inside] = model.assign(model.features.transform(rows[inside].astype(np.float32)))[0]
    np.testing.assert_array_equal(got["labels"].ravel(), expected)
    np.testing.assert_array_equal(got["counts"], np.bincount(expected[inside], minlength=4))
    sums = [cube[5:25].reshape(-1, 3)[inside][expected[inside] == c].sum(axis=0) for c in range(4)]
    np.testing.assert_allclose(got["sums"], sums, rtol=1e-5)


def test_many_classes_are_scored_in_smaller_pieces(rng):
    rows = rng.normal(100, 30, (20_000, 3)).astype(np.float32)
    model, _ = fit_pixel_model(rows, 300, features="l2+std|std", n_init=1)
    assert model._linear.piece * 300 <= SCORE_ELEMENTS < PIECE_PIXELS * 300  # the scores stay bounded
    nearest = model.assign(model.features.transform(rows))[0]
    assert np.mean(model.labels(rows) == nearest) > 0.999  # float32 rounding may flip a near tie


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_more_than_255_classes_are_uint16(tmp_path, rng):
    cube = rng.integers(0, 60000, (30, 40, 2), dtype=np.uint16)
    np.save(tmp_path / "cube.npy", cube)
    segment(tmp_path / "cube.npy", tmp_path / "seg", n_clusters=300, features="raw", n_init=1)
    with rasterio.open(tmp_path / "seg" / "classes.tif") as dataset:
        classes = dataset.read(1)
        assert dataset.dtypes[0] == "uint16" and dataset.colormap(1)[300][3] == 255
    assert classes.min() >= 1 and classes.max() <= 300


# -- inputs and outputs as GIS users have them ----------------------------------------------------

def test_an_interrupted_run_leaves_earlier_outputs_whole(scene, tmp_path, monkeypatch):
    path, _, _ = scene
    out = tmp_path / "seg"
    segment(path, out, n_clusters=3, n_init=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):  # Ctrl-C once classes.tif, signatures.csv, ... are written
        raise KeyboardInterrupt

    monkeypatch.setattr("kmeans_imagery.segment._api.write_report_page", interrupted)
    with pytest.raises(KeyboardInterrupt):
        segment(path, out, n_clusters=2, n_init=1, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staging folder either
    with pytest.raises(KeyboardInterrupt):
        segment(path, tmp_path / "new", n_clusters=2, n_init=1)
    assert not (tmp_path / "new").exists()


def test_nan_nodata_is_recorded_as_valid_json(tmp_path):
    cube = planted_scene(collar=0)[0].astype(np.float32)
    cube[:3] = np.nan
    path = write_geotiff(tmp_path / "floats.tif", cube, nodata=np.nan)
    segment(path, tmp_path / "seg", n_clusters=3, n_init=1)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    results = json.loads((tmp_path / "seg" / "results.json").read_text(), parse_constant=refuse)
    assert results["input"]["nodata"] == "NaN"
    assert results["input"]["valid_pixels"] == cube[3:, :, 0].size


def test_class_map_is_georeferenced_as_the_input_or_not_at_all(tmp_path):
    from affine import Affine
    from rasterio.control import GroundControlPoint

    bands = np.moveaxis(planted_scene(collar=0)[0], -1, 0)
    profile = {"driver": "GTiff", "height": bands.shape[1], "width": bands.shape[2], "count": 4,
               "dtype": bands.dtype}
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), \
            rasterio.open(tmp_path / "plain.tif", "w", **profile) as dataset:
        dataset.write(bands)
    results = segment(tmp_path / "plain.tif", tmp_path / "plain", n_clusters=3, n_init=1).results
    assert results["input"]["transform"] is None and results["input"]["crs"] is None
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):  # no invented identity geotransform
        rasterio.open(tmp_path / "plain" / "classes.tif").close()

    gcps = [GroundControlPoint(row, col, 500000 + 30 * col, 4000000 - 30 * row)
            for row, col in [(0, 0), (0, 48), (40, 0), (40, 48)]]
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), \
            rasterio.open(tmp_path / "gcps.tif", "w", **profile) as dataset:
        dataset.write(bands)
        dataset.gcps = (gcps, rasterio.crs.CRS.from_epsg(32618))
    segment(tmp_path / "gcps.tif", tmp_path / "gcps", n_clusters=3, n_init=1)
    with rasterio.open(tmp_path / "gcps" / "classes.tif") as classes:
        assert classes.gcps[1].to_epsg() == 32618
        assert [(p.row, p.col, p.x, p.y) for p in classes.gcps[0]] == [(p.row, p.col, p.x, p.y) for p in gcps]

    skewed = Affine(30, 5, 500000, 3, -30, 4000000)
    with rasterio.open(tmp_path / "skewed.tif", "w", crs="EPSG:32618", transform=skewed,
                       **profile) as dataset:
        dataset.write(bands)
    results = segment(tmp_path / "skewed.tif", tmp_path / "skewed", n_clusters=3, n_init=1).results
    with rasterio.open(tmp_path / "skewed" / "classes.tif") as classes:
        assert classes.transform == skewed
    assert results["classes"][0]["area"] == pytest.approx(results["classes"][0]["pixels"] * (900 + 15))


def test_truth_nodata_is_unlabelled(scene, tmp_path):
    path, _, truth = scene
    marked = truth.copy()
    marked[:10] = 255  # the truth's nodata: not a class
    write_geotiff(tmp_path / "truth.tif", marked[..., None], nodata=255)
    results = segment(path, tmp_path / "seg", n_clusters=3, truth=tmp_path / "truth.tif", n_init=1).results
    assert results["test"]["classes"] == [1, 2, 3]
    assert results["test"]["n_labelled"] == ((marked > 0) & (marked < 255)).sum()
    assert results["test"]["hungarian_accuracy"] == 1.0


def test_truth_on_another_grid_is_refused(scene, tmp_path):
    from affine import Affine

    path, _, truth = scene
    write_geotiff(tmp_path / "wgs84.tif", truth[..., None], crs="EPSG:4326")
    with pytest.raises(KMIError, match="--truth: wgs84.tif is in EPSG:4326, the raster in EPSG:32618"):
        segment(path, tmp_path / "seg", n_clusters=3, truth=tmp_path / "wgs84.tif")
    with rasterio.open(tmp_path / "coarse.tif", "w", driver="GTiff", height=truth.shape[0],
                       width=truth.shape[1], count=1, dtype="uint8", crs="EPSG:32618",
                       transform=Affine(60, 0, 500000, 0, -60, 4000000)) as dataset:
        dataset.write(truth, 1)
    with pytest.raises(KMIError, match="--truth: coarse.tif is not on the raster's grid"):
        segment(path, tmp_path / "seg", n_clusters=3, truth=tmp_path / "coarse.tif")
    assert not (tmp_path / "seg").exists()


def test_model_reuse_reads_the_bands_it_was_fitted_on_and_notes_differences(scene, tmp_path):
    from affine import Affine

    path, cube, _ = scene
    segment(path, tmp_path / "a", n_clusters=3, bands=(3, 1), features="l2+std|nbr:1+std", n_init=1)
    # Another scene: the same values as int32, at 60 m.
    with rasterio.open(tmp_path / "other.tif", "w", driver="GTiff", height=cube.shape[0], width=cube.shape[1],
                       count=4, dtype="int32", nodata=0, crs="EPSG:32618",
                       transform=Affine(60, 0, 500000, 0, -60, 4000000)) as dataset:
        dataset.write(np.moveaxis(cube, -1, 0).astype(np.int32))
    lines = []
    results = segment(tmp_path / "other.tif", tmp_path / "b", model=tmp_path / "a" / "model.kmi",
                      log=lines.append).results
    assert results["input"]["bands"] == [3, 1]
    np.testing.assert_array_equal(_classes(tmp_path / "a"), _classes(tmp_path / "b"))
    text = "\n".join(lines)
    assert "bands 3,1 of other.tif" in text and "fitted on uint16 values, other.tif holds int32" in text
    assert "pixels of [30.0, 30.0], other.tif has [60.0, 60.0]" in text
    with pytest.raises(KMIError, match="fitted on 2 bands; other.tif has 3"):
        segment(tmp_path / "other.tif", tmp_path / "c", model=tmp_path / "a" / "model.kmi", bands=(1, 2, 3))
    # A model of the first bands (here all 4) is not applied to the first 4 of 5 bands unasked.
    segment(path, tmp_path / "all", n_clusters=3, n_init=1)
    write_geotiff(tmp_path / "five.tif", np.concatenate([cube, cube[..., :1]], axis=-1))
    with pytest.raises(KMIError, match="fitted on 4 bands; five.tif has 5"):
        segment(tmp_path / "five.tif", tmp_path / "c", model=tmp_path / "all" / "model.kmi")


def test_library_errors_name_the_option(scene, tmp_path):
    path, _, _ = scene
    out = tmp_path / "seg"
    with pytest.raises(KMIError, match="--model sets K and the features"):
        segment(path, out, n_clusters=3, model=tmp_path / "m.kmi")
    with pytest.raises(KMIError, match="^--smooth: "):
        segment(path, out, n_clusters=3, smooth=-1)
    with pytest.raises(KMIError, match="^--label-budget: "):
        segment(path, out, n_clusters=3, truth=tmp_path / "truth.npy", label_budgets=(0,))
    with pytest.raises(KMIError, match="^--truth: .*missing.npy does not exist"):
        segment(path, out, n_clusters=3, truth=tmp_path / "missing.npy")
    with pytest.raises(KMIError, match="^--model: .*m.kmi does not exist"):
        segment(path, out, model=tmp_path / "m.kmi")
    # Named once, as the parameter (the command line maps it to --features=).
    with pytest.raises(KMIError, match="^features='nbr:0': "):
        segment(path, out, n_clusters=3, features="nbr:0")
    assert not out.exists()
