"""The one fit path: every mode, every data option, the same model file."""

import numpy as np
import pytest
from PIL import Image

from kmeans_imagery.datasets import ArraySource, FolderSource, open_source, write_idx
from kmeans_imagery.errors import KMIError
from kmeans_imagery.fit import FitSpec, fit
from kmeans_imagery.preprocessing import flatten_scale

MODES = ["memory", "stream", "dask"]


def _needs(mode):
    if mode == "dask":
        pytest.importorskip("dask.array", reason="needs dask[array]")


@pytest.fixture(scope="module")
def blobs():
    """3000 8x8 images around 6 prototypes (labels 0..5), in a shuffled order."""
    rng = np.random.default_rng(1)
    prototypes = rng.integers(0, 256, (6, 8, 8))
    labels = rng.integers(0, 6, 3000)
    noise = rng.normal(0, 25, (3000, 8, 8))
    images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture
def folder(tmp_path, blobs):
    """The first 300 blobs as PNG files in one sub-folder per class, plus one broken file."""
    images, labels = blobs
    root = tmp_path / "classes"
    for i in range(300):
        sub = root / f"c{labels[i]}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(sub / f"{i:04d}.png")
    (root / "c0" / "0000-broken.png").write_bytes(b"not a png")
    return root


def _matched(a, b):
    """The rows of ``b`` nearest each row of ``a`` (centres in another order)."""
    return b[((a[:, None] - b[None]) ** 2).sum(-1).argmin(axis=1)]


def _inertia(images, centers):
    rows = flatten_scale(images).astype(np.float64)
    d = ((rows[:, None, :] - centers[None].astype(np.float64)) ** 2).sum(-1)
    return d.min(axis=1).sum()


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_names_clusters_with_exact_inertia(blobs, mode):
    _needs(mode)
    images, labels = blobs
    result = fit(ArraySource(images, labels), FitSpec(6, random_state=0), mode=mode)
    model = result.model
    assert model.cluster_centers_.shape == (6, 64)
    assert model.image_shape_ == (8, 8) and model.n_features_in_ == 64
    assert model.inertia_ == pytest.approx(_inertia(images, model.cluster_centers_), rel=1e-4)
    assert (model.predict(images) == labels).mean() > 0.99
    assert sorted(model.cluster_labels_.tolist()) == list(range(6))
    assert result.metrics["mode"] == mode and result.training["n_samples"] == 3000


def test_modes_agree(blobs):
    pytest.importorskip("dask.array")
    images, labels = blobs
    models = [fit(ArraySource(images, labels), FitSpec(6, random_state=0), mode=m).model
              for m in MODES]
    first = models[0].cluster_centers_
    for other in models[1:]:
        np.testing.assert_allclose(first, _matched(first, other.cluster_centers_), atol=2e-3)


def test_same_seed_same_model_and_formats_agree(tmp_path, blobs):
    images, _ = blobs
    write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    np.save(tmp_path / "x.npy", images)
    spec = FitSpec(6, random_state=3)
    a = fit(open_source(tmp_path / "x.npy"), spec, mode="stream").model
    b = fit(open_source(tmp_path / "x.npy"), spec, mode="stream").model
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    gz = fit(open_source(tmp_path / "x-idx3-ubyte.gz"), spec, mode="stream").model
    assert gz.inertia_ == pytest.approx(a.inertia_, rel=1e-3)
    assert gz.classes_.tolist() == list(range(6))  # no labels: each cluster its own class


@pytest.mark.parametrize("mode", ["stream", "dask"])
def test_string_labels_from_a_sorted_source(blobs, mode):
    _needs(mode)
    images, labels = blobs
    order = np.argsort(labels, kind="stable")  # class by class, as a folder of classes is
    names = np.array([f"c{label}" for label in labels[order]])
    model = fit(ArraySource(images[order], names), FitSpec(6, random_state=0), mode=mode).model
    assert model.classes_.tolist() == [f"c{i}" for i in range(6)]
    assert (model.predict(images[order]) == names).mean() > 0.99


@pytest.mark.parametrize("mode", MODES)
def test_features_in_every_mode(blobs, mode):
    _needs(mode)
    images, labels = blobs
    model = fit(ArraySource(images, labels), FitSpec(6, features="l2+pca:8", random_state=0),
                mode=mode).model
    assert model.features_ is not None and model.cluster_centers_.shape == (6, 8)
    assert model.cluster_images_.shape == (6, 64)
    assert (model.predict(images) == labels).mean() > 0.98
    # The cluster images are the pixel means of each cluster's members.
    clusters = model.predict_cluster(images)
    np.testing.assert_allclose(model.cluster_images_[0], flatten_scale(images[clusters == 0]).mean(0),
                               atol=1e-3)


def test_memory_fit_hands_back_the_rows_it_clustered(blobs):
    images, labels = blobs
    spec = FitSpec(6, features="deskew+l2", random_state=0)
    kept = fit(ArraySource(images, labels), spec, keep_rows=True)
    assert kept.rows.shape == (3000, 64) and kept.rows.dtype == np.float32
    np.testing.assert_array_equal(kept.rows, kept.model.features_.transform(flatten_scale(images)))
    np.testing.assert_array_equal(kept.model.cluster_centers_,
                                  fit(ArraySource(images, labels), spec).model.cluster_centers_)
    assert fit(ArraySource(images, labels), spec).rows is None
    assert fit(ArraySource(images, labels), spec, mode="stream", keep_rows=True).rows is None


@pytest.mark.parametrize("mode", MODES)
def test_label_sheet_and_n_init_in_every_mode(tmp_path, blobs, mode):
    _needs(mode)
    images, labels = blobs
    first = [int(np.flatnonzero(labels == c)[0]) for c in range(6)]
    sheet = tmp_path / "labels.csv"
    sheet.write_text("index,cluster,distance,label\n" +
                     "".join(f"{i},0,0,L{labels[i]}\n" for i in first))
    result = fit(ArraySource(images, labels), FitSpec(6, n_init=3, labels=sheet, random_state=0),
                 mode=mode)
    assert result.metrics["labels_used"] == 6
    assert (result.model.predict(images) == np.char.add("L", labels.astype(str))).mean() > 0.99


@pytest.mark.parametrize("mode", MODES)
def test_skip_bad_in_every_mode(folder, mode):
    _needs(mode)
    with pytest.raises(KMIError, match="cannot read image"):
        fit(open_source(folder), FitSpec(6, random_state=0), mode=mode)
    source = open_source(folder, skip_bad=True)
    model = fit(source, FitSpec(6, random_state=0), mode=mode).model
    assert source.skipped["bad"] == 1 or mode == "dask"
    assert sorted(set(model.cluster_labels_.tolist())) == [f"c{i}" for i in range(6)]


def test_label_sheet_matched_by_path(tmp_path, folder):
    source = open_source(folder, skip_bad=True)
    paths = [p for p in source.paths if "broken" not in p.name]
    sheet = tmp_path / "labels.csv"
    sheet.write_text("index,path,label\n" + "".join(
        f"999,{p},{p.parent.name.upper()}\n" for p in paths[::10]))
    model = fit(source, FitSpec(6, labels=sheet, random_state=0), mode="stream").model
    assert set(model.cluster_labels_.tolist()) <= {f"C{i}" for i in range(6)}
    (tmp_path / "other.csv").write_text(f"index,path,label\n0,{folder}/nope.png,x\n")
    with pytest.raises(KMIError, match="nope.png is not an image"):
        fit(source, FitSpec(6, labels=tmp_path / "other.csv"), mode="memory")


def test_fitted_model_saves_and_loads(tmp_path, blobs):
    from kmeans_imagery.model_io import load_model, save_model

    images, labels = blobs
    model = fit(ArraySource(images, labels), FitSpec(6, features="l2", random_state=0),
                mode="stream").model
    save_model(model, tmp_path / "m.kmi")
    loaded = load_model(tmp_path / "m.kmi")
    np.testing.assert_array_equal(loaded.predict(images), model.predict(images))
    assert loaded.inertia_ == pytest.approx(model.inertia_)


def test_test_source_is_scored(blobs):
    images, labels = blobs
    result = fit(ArraySource(images[:2000], labels[:2000]), FitSpec(6, random_state=0),
                 test=ArraySource(images[2000:], labels[2000:]))
    assert result.metrics["test_accuracy"] > 0.99 and result.metrics["accuracy"] > 0.99


def test_bad_specifications(blobs):
    images, _ = blobs
    source = ArraySource(images[:10])
    with pytest.raises(KMIError, match="n_clusters=20 is more than the 10 images"):
        fit(source, FitSpec(20))
    with pytest.raises(KMIError, match="n_clusters must be a positive integer"):
        fit(source, FitSpec(0))
    with pytest.raises(KMIError, match="mode must be one of"):
        fit(source, FitSpec(2), mode="gpu")
    with pytest.raises(KMIError, match="fits in memory only"):
        fit(source, FitSpec(2, engine="sklearn"), mode="stream")


@pytest.mark.parametrize("mode", ["memory", "stream"])
@pytest.mark.parametrize("spec, message", [
    (FitSpec(True), "n_clusters must be a positive integer, got True"),
    (FitSpec(2, algorithm="lloyd"), "unknown algorithm 'lloyd'"),
    (FitSpec(2, n_init=0), "n_init must be a positive integer, got 0"),
    (FitSpec(2, max_iter=1.5), "max_iter must be a positive integer, got 1.5"),
    (FitSpec(2, random_state=-1), "random_state must be None or an integer"),
])
def test_every_mode_checks_the_spec_up_front(blobs, spec, mode, message):
    # Streamed fits ignored a bad algorithm or n_init, and crashed on a negative seed.
    images, _ = blobs
    with pytest.raises(KMIError, match=message):
        fit(ArraySource(images[:50]), spec, mode=mode)


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_test_images_of_another_shape_are_refused_before_fitting(blobs, mode, monkeypatch):
    images, labels = blobs
    monkeypatch.setattr("kmeans_imagery.fit._fit_memory", None)  # no fit may start
    monkeypatch.setattr("kmeans_imagery.fit._fit_passes", None)
    test = ArraySource(np.zeros((5, 9, 9), np.uint8), np.arange(5))
    with pytest.raises(KMIError, match="test images are 9x9 but the training images 8x8"):
        fit(ArraySource(images[:50], labels[:50]), FitSpec(2), mode=mode, test=test)


def test_folder_source_is_the_one_for_loose_files(folder):
    loose = FolderSource.of_files(sorted((folder / "c1").glob("*.png"))[:12])
    model = fit(loose, FitSpec(3, random_state=0), mode="stream").model
    assert model.classes_.tolist() == [0, 1, 2]


@pytest.mark.parametrize("mode", MODES)
def test_color_and_size_are_honoured_in_every_mode(folder, mode):
    _needs(mode)
    source = open_source(folder, color="rgb", size=(6, 5), skip_bad=True)
    model = fit(source, FitSpec(4, random_state=0), mode=mode).model
    assert model.image_shape_ == (6, 5, 3) and model.cluster_centers_.shape == (4, 90)


@pytest.mark.parametrize("mode", MODES)
def test_sample_weights_in_every_mode(blobs, mode):
    """Weight 3 on one class's images counts them three times: in the means and the votes."""
    _needs(mode)
    images, labels = blobs
    weights = np.where(labels == 2, 3.0, 1.0)
    weighted = fit(ArraySource(images, labels), FitSpec(6, random_state=0), mode=mode,
                   sample_weight=weights).model
    assert (weighted.predict(images) == labels).mean() > 0.99
    expected = _inertia(images, weighted.cluster_centers_)
    clusters = weighted.predict_cluster(images)
    rows = flatten_scale(images).astype(np.float64)
    own = ((rows - weighted.cluster_centers_[clusters]) ** 2).sum(1)
    assert weighted.inertia_ == pytest.approx((own * weights).sum(), rel=1e-4)
    assert weighted.inertia_ > expected
    with pytest.raises(KMIError, match="one weight per image"):
        fit(ArraySource(images, labels), FitSpec(6), mode=mode, sample_weight=weights[:10])
    with pytest.raises(KMIError, match="finite and >= 0"):
        fit(ArraySource(images, labels), FitSpec(6), mode=mode, sample_weight=-weights)


def test_streamed_start_weighs_the_sample_of_a_store_with_file_paths(tmp_path, folder,
                                                                     monkeypatch):
    pytest.importorskip("zarr")
    from kmeans_imagery.datasets import convert_to_zarr
    from kmeans_imagery.engine.kmeans import KMeans

    store = convert_to_zarr(open_source(folder, skip_bad=True), tmp_path / "s.zarr")
    assert store.paths is not None
    weights = np.arange(1.0, store.n_images + 1)
    seen = []
    start = KMeans.fit
    monkeypatch.setattr(KMeans, "fit", lambda self, X, y=None, sample_weight=None: (
        seen.append(sample_weight), start(self, X, y, sample_weight=sample_weight))[1])
    fit(store, FitSpec(3, random_state=0), mode="stream", sample_weight=weights)
    # Fewer images than the sample: the start is fitted on all of them, each with its weight.
    np.testing.assert_array_equal(seen[0], weights)
