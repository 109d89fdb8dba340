"""Tests for kmeans_imagery.features: the steps, the spec parser and the pickle-free state."""

import importlib.util
import json
import re
import sys

import numpy as np
import pytest
from sklearn.base import clone

from kmeans_imagery.errors import KMIError
from kmeans_imagery.features import (
    FEATURE_PRESETS,
    HOG,
    PCA,
    UMAP,
    Deskew,
    FeaturePipeline,
    L2Normalize,
    make_features,
)

# find_spec, not import: importing umap-learn costs seconds of numba start-up at collection
HAVE_UMAP = importlib.util.find_spec("umap") is not None

needs_umap = pytest.mark.skipif(not HAVE_UMAP, reason="umap-learn is not installed (extra 'umap')")


def _round_trip(pipeline):
    """Rebuild a pipeline from its state after a JSON / npz-like round trip."""
    meta, arrays = pipeline.get_state()
    meta = json.loads(json.dumps(meta))
    arrays = {key: np.array(value) for key, value in arrays.items()}
    return FeaturePipeline.from_state(meta, arrays)


@pytest.fixture
def strokes(rng):
    """Forty 16x12 images of slanted bars, as float32 rows in [0, 1]."""
    images = np.zeros((40, 16, 12), dtype=np.float32)
    for i, img in enumerate(images):
        slant = (i % 5 - 2) * 0.3
        for r in range(2, 14):
            c = int(round(5 + slant * (r - 8)))
            img[r, max(c, 0) : c + 2] = 1.0
    images += rng.random(images.shape, dtype=np.float32) * 0.05
    return np.clip(images, 0, 1).reshape(40, -1)


# ---------------------------------------------------------------------------------------------
# Steps


def test_deskew_straightens_a_slanted_bar():
    image = np.zeros((20, 20), dtype=np.float32)
    for r in range(3, 17):
        image[r, 4 + (r - 3) // 2 : 6 + (r - 3) // 2] = 1.0  # leans right going down
    out = Deskew((20, 20)).fit_transform(image.reshape(1, -1)).reshape(20, 20)
    cols = np.arange(20)

    def column_centres(img):
        rows = [r for r in range(20) if img[r].sum() > 0.5]
        return np.array([img[r] @ cols / img[r].sum() for r in rows])

    assert np.ptp(column_centres(image)) > 5
    assert np.ptp(column_centres(out)) < 1.5
    # the ink centroid ends up in the middle of the image
    assert abs(out.sum(axis=0) @ cols / out.sum() - 9.5) < 0.5
    assert abs(out.sum(axis=1) @ cols / out.sum() - 9.5) < 0.5


def test_deskew_matches_scipy_affine_transform(strokes):
    from scipy import ndimage

    out = Deskew((16, 12)).fit_transform(strokes)
    for row, got in zip(strokes[:5], out[:5], strict=True):
        img = row.reshape(16, 12).astype(np.float64)
        r, c = np.mgrid[:16, :12]
        total = img.sum()
        cy, cx = (r * img).sum() / total, (c * img).sum() / total
        alpha = ((r - cy) * (c - cx) * img).sum() / ((r - cy) ** 2 * img).sum()
        matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
        centre = np.array([7.5, 5.5])
        expected = ndimage.affine_transform(
            img, matrix, offset=np.array([cy, cx]) - matrix @ centre, order=1, mode="grid-constant"
        )
        np.testing.assert_allclose(got.reshape(16, 12), expected, atol=1e-5)


def test_deskew_keeps_blank_images_and_moves_colour_channels_together(rng):
    blank = np.zeros((2, 8 * 8), dtype=np.float32)
    np.testing.assert_array_equal(Deskew((8, 8)).fit_transform(blank), blank)
    grey = rng.random((3, 10, 9), dtype=np.float32)
    colour = np.repeat(grey[..., None], 3, axis=3)
    out_grey = Deskew((10, 9)).fit_transform(grey.reshape(3, -1)).reshape(3, 10, 9)
    out_colour = Deskew((10, 9, 3)).fit_transform(colour.reshape(3, -1)).reshape(3, 10, 9, 3)
    for ch in range(3):
        np.testing.assert_allclose(out_colour[..., ch], out_grey, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "cell", "block"), [((16, 12), 4, 3), ((16, 12), 3, 2), ((28, 28), 7, 3)]
)
def test_hog_equals_scikit_image(rng, shape, cell, block):
    skimage_feature = pytest.importorskip("skimage.feature")
    images = rng.random((6, *shape), dtype=np.float32)
    images[0] = 0  # no gradient at all
    got = HOG(shape, cell_size=cell, block_size=block).fit_transform(images.reshape(6, -1))
    expected = np.stack(
        [
            skimage_feature.hog(img, pixels_per_cell=(cell, cell), cells_per_block=(block, block))
            for img in images
        ]
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_hog_equals_scikit_image_on_colour(rng):
    skimage_feature = pytest.importorskip("skimage.feature")
    images = rng.random((4, 12, 10, 3), dtype=np.float32)
    got = HOG((12, 10, 3), cell_size=4, block_size=2).fit_transform(images.reshape(4, -1))
    expected = np.stack(
        [
            skimage_feature.hog(img, pixels_per_cell=(4, 4), cells_per_block=(2, 2), channel_axis=-1)
            for img in images
        ]
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_hog_shrinks_the_block_to_small_images(digits_rows):
    X, _ = digits_rows
    out = HOG((8, 8), cell_size=4).fit_transform(X)  # 2x2 cells, block of 3 cut to 2
    assert out.shape == (len(X), 2 * 2 * 9)
    with pytest.raises(KMIError, match="hog:8"):
        HOG((8, 8), cell_size=9).fit(X)


def test_l2_normalize_rows_and_keeps_zero_rows():
    X = np.array([[3, 4, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(L2Normalize().fit_transform(X), [[0.6, 0.8, 0], [0, 0, 0]])


def test_pca_matches_scikit_learn(digits_rows):
    from sklearn.decomposition import PCA as SkPCA

    X, _ = digits_rows
    ours = PCA(n_components=5, random_state=0).fit(X[:1000])
    theirs = SkPCA(n_components=5, random_state=0).fit(X[:1000])
    np.testing.assert_allclose(ours.transform(X[1000:]), theirs.transform(X[1000:]), atol=1e-4)
    white = PCA(n_components=5, whiten=True).fit_transform(X)
    np.testing.assert_allclose(white.std(axis=0), 1.0, rtol=1e-2)
    with pytest.raises(KMIError, match="n_components <= 50 .the rows"):
        PCA(n_components=60).fit(X[:50])


def test_pca_keeps_every_feature_of_narrower_rows(digits_rows):
    # The pixhog preset's PCA to 100 on 8 x 8 images: 73 features, all kept (a rotation).
    X, _ = digits_rows
    pipeline = make_features("pixhog", (8, 8), random_state=0).fit(X)
    assert pipeline.n_features_out_ == 73
    wide = PCA(n_components=100).fit(X[:, :30])
    assert wide.transform(X[:, :30]).shape == (len(X), 30)
    np.testing.assert_allclose(np.linalg.norm(wide.transform(X[:5, :30]), axis=1),
                               np.linalg.norm(X[:5, :30] - X[:, :30].mean(0), axis=1), rtol=1e-4)
    np.testing.assert_array_equal(_round_trip(pipeline).transform(X[:9]), pipeline.transform(X[:9]))


def test_steps_validate_widths_and_fitting(digits_rows):
    X, _ = digits_rows
    with pytest.raises(KMIError, match="64 values"):
        Deskew((8, 8)).fit(X[:, :10])
    step = L2Normalize().fit(X)
    with pytest.raises(KMIError, match="64 values"):
        step.transform(X[:, :10])
    with pytest.raises(KMIError, match="NaN"):
        step.transform(np.full_like(X[:2], np.nan))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PCA().transform(X)
    assert clone(HOG((8, 8), cell_size=4)).get_params()["cell_size"] == 4


# ---------------------------------------------------------------------------------------------
# Specs


def test_spec_syntax_builds_the_expected_steps():
    pipe = make_features("deskew+(l2|hog:4)+pca:20:whiten", (28, 28), random_state=3)
    assert pipe.spec == "deskew+(l2|hog:4)+pca:20:whiten"
    deskew, concat, pca = pipe.steps
    assert isinstance(deskew, Deskew)
    assert [type(s) for b in concat.branches for s in b.steps] == [L2Normalize, HOG]
    assert concat.branches[1].steps[0].cell_size == 4
    assert (pca.n_components, pca.whiten, pca.random_state) == (20, True, 3)
    assert make_features(" raw ", (8, 8)).spec == "raw"
    assert make_features("deskew+l2|deskew+hog", (28, 28)).spec == "deskew+l2|deskew+hog"


def test_a_lone_preset_name_expands_but_the_step_inside_a_spec_does_not():
    assert make_features("hog", (28, 28)).spec == FEATURE_PRESETS["hog"][0]
    assert make_features("hog+l2", (28, 28)).spec == "hog+l2"
    assert make_features("deskew", (28, 28)).spec == "deskew"  # a step, not a preset
    for name, (spec, help_text) in FEATURE_PRESETS.items():
        assert help_text and "\n" not in help_text
        if "umap" not in spec or HAVE_UMAP:
            assert make_features(name, (28, 28)).spec == spec


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "empty"),
        ("deskew+", "missing"),
        ("sift", "unknown step 'sift'"),
        ("deskew+(l2|hog", r"'\)' is missing"),
        ("pca:fifty", "fifty"),
        ("pca:0", "at least 1"),
        ("l2:3", "does not take"),
        ("pca:50:bright", "bright"),
        ("pca:20+hog", "needs image rows"),
        ("(l2|raw)+deskew", "needs image rows"),
        ("deskew;hog", "bad feature spec"),
    ],
)
def test_bad_specs_raise_kmierror(spec, match):
    with pytest.raises(KMIError, match=match):
        make_features(spec, (28, 28))


def test_bad_spec_message_lists_valid_names():
    with pytest.raises(KMIError) as info:
        make_features("sift", (28, 28))
    for name in ("deskew", "hog", "pca", "umap", "pixhog"):
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ("", "presets raw, l2"),
        ("deskew+", "presets raw, l2"),
        ("a||b", "presets raw, l2"),
        ("(l2|hog", r"a '\)' is missing; valid: steps .*hog\[:cell\]"),
        ("pca:0", r"pca\[:n\]\[:whiten\]"),
        ("pca:-1", r"at least 1 \(pca\[:n\]\[:whiten\]\)"),
        ("hog:abc", r"hog does not take 'abc' \(hog\[:cell\]\)"),
        ("l2:3", r"does not take '3' \(l2\)"),
        ("pca:20+hog", "needs image rows"),
        ("onnx", "needs a path"),
    ],
)
def test_spec_errors_name_the_features_parameter_and_what_is_valid(spec, valid):
    # "features=" is the parameter's name in the library; the CLI shows it as --features=
    with pytest.raises(KMIError, match=rf"^features={re.escape(repr(spec))}: .*{valid}"):
        make_features(spec, (28, 28))


def test_spec_errors_on_the_command_line_name_the_option(capsys, tmp_path):
    from kmeans_imagery.cli import main

    out = str(tmp_path / "m.kmi")
    assert main(["fit", "digits", "--k", "3", "--out", out, "--features", "pca:0"]) == 2
    assert "kmi: error: --features='pca:0': " in capsys.readouterr().err


def test_step_names_are_read_in_any_case():
    assert make_features("PCA:5:Whiten", (8, 8)).spec == "pca:5:whiten"
    assert make_features(" Deskew+(L2|HOG:2) ", (8, 8)).spec == "deskew+(l2|hog:2)"
    assert make_features("PixHog", (8, 8)).spec == FEATURE_PRESETS["pixhog"][0]


def test_transform_of_other_images_names_the_features_and_their_size(digits_rows):
    pipeline = make_features("l2|hog:2", (8, 8)).fit(digits_rows[0])
    with pytest.raises(KMIError, match=r"^features='l2\|hog:2': expected rows \(8x8 images\) of 64 "
                                       r"values each, got 100"):
        pipeline.transform(np.zeros((3, 100), np.float32))


@pytest.mark.parametrize("spec", ["std", "raw", "deskew+(l2|hog:2)+pca:2"])
def test_fitting_on_no_rows_is_an_error(spec):
    # std learnt a NaN mean from no rows, and the raw pixels fitted nothing
    with pytest.raises(KMIError, match=rf"^features='{re.escape(spec)}': .*at least one row, got 0"):
        make_features(spec, (8, 8)).fit(np.zeros((0, 64), np.float32))


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 5), (5, 3), (1, 7), (2, 2, 3), (3, 5, 3),
                                   (4, 4, 1)])
@pytest.mark.parametrize("spec", ["raw", "deskew", "l2", "std", "hog:1", "pca:2:whiten",
                                  "deskew+(l2|hog:1)+std+pca:3"])
def test_every_step_on_tiny_gray_and_colour_images(rng, shape, spec):
    """Blank, constant and random images: finite float32 rows, equal after the state round trip."""
    width = int(np.prod(shape))
    rows = np.vstack([np.zeros((3, width)), np.full((3, width), 0.5), rng.random((6, width))])
    pipeline = make_features(spec, shape, random_state=0)
    fitted = pipeline.fit_transform(rows)  # float64 rows are read as float32
    assert fitted.dtype == np.float32 and np.isfinite(fitted).all()
    np.testing.assert_array_equal(pipeline.transform(rows.astype(np.float32)), fitted)
    np.testing.assert_array_equal(_round_trip(pipeline).transform(rows), fitted)


def test_umap_missing_names_the_extra(monkeypatch, digits_rows):
    # a None entry makes both find_spec and import report the module as absent
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(KMIError, match=r"pip install 'kmeans-imagery\[umap\]'"):
        make_features("umap", (28, 28))
    with pytest.raises(KMIError, match="kmeans-imagery"):
        UMAP().fit(digits_rows[0])


# ---------------------------------------------------------------------------------------------
# Pipelines and state


@pytest.mark.parametrize(
    "spec", ["raw", "deskew", "l2", "hog:4", "pca:7", "pca:5:whiten", "deskew+(l2|hog:4)+pca:9"]
)
def test_state_round_trip_reproduces_transform(digits_rows, spec):
    X, _ = digits_rows
    pipe = make_features(spec, (8, 8), random_state=0)
    train = pipe.fit_transform(X[:1200])
    assert train.dtype == np.float32 and train.shape == (1200, pipe.n_features_out_)
    rebuilt = _round_trip(pipe)
    assert rebuilt.spec == pipe.spec
    np.testing.assert_array_equal(rebuilt.transform(X[1200:]), pipe.transform(X[1200:]))


def test_state_is_json_and_plain_arrays(digits_rows):
    X, _ = digits_rows
    meta, arrays = make_features("deskew+(l2|pca:4)", (8, 8), random_state=0).fit(X).get_state()
    json.dumps(meta)
    assert set(arrays) == {"1.1.0.mean_", "1.1.0.components_", "1.1.0.scale_"}
    assert all(a.dtype != object for a in arrays.values())


def test_from_state_rejects_corrupt_state(digits_rows):
    X, _ = digits_rows
    meta, arrays = make_features("pca:4", (8, 8)).fit(X).get_state()
    with pytest.raises(KMIError, match="format"):
        FeaturePipeline.from_state({**meta, "format": 99}, arrays)
    with pytest.raises(KMIError, match="unknown step"):
        FeaturePipeline.from_state({**meta, "steps": [{"name": "sift"}]}, arrays)
    with pytest.raises(KMIError, match="corrupt"):
        FeaturePipeline.from_state(meta, {})
    with pytest.raises(KMIError, match=r"components_ has shape \(4, 63\)"):
        FeaturePipeline.from_state(meta, {**arrays, "0.components_": arrays["0.components_"][:, 1:]})


def test_fit_on_train_only_and_reproducible(digits_rows):
    X, _ = digits_rows
    a = make_features("pca:6", (8, 8), random_state=1).fit(X[:1000])
    b = make_features("pca:6", (8, 8), random_state=1).fit(X[:1000])
    np.testing.assert_array_equal(a.transform(X[1000:]), b.transform(X[1000:]))
    # the test rows do not move the fitted mean
    np.testing.assert_allclose(a.steps[0].mean_, X[:1000].mean(axis=0), atol=1e-5)


@needs_umap
def test_umap_step_round_trip_out_of_sample_and_seed(digits_rows):
    # one test for umap-learn: its first fit spends most of its time compiling (numba)
    X, y = digits_rows
    X, y = X[:900], y[:900]
    pipe = make_features("pca:20+umap:3", (8, 8), random_state=0)
    train = pipe.fit_transform(X[:600])
    step = pipe.steps[-1]
    np.testing.assert_array_equal(train, step.embedding_)
    assert step.train_X_.shape == (600, 20)
    test = pipe.transform(X[600:])
    assert test.shape == (300, 3) and test.dtype == np.float32
    rebuilt = _round_trip(pipe)
    assert not hasattr(rebuilt.steps[-1], "umap_")
    np.testing.assert_array_equal(rebuilt.transform(X[600:]), test)
    # out-of-sample points land near training points of their own digit (chance is 0.1; the
    # rule scored 0.84 here, and matches umap-learn's transform on MNIST in the benchmark)
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(5).fit(train, y[:600])
    assert knn.score(test, y[600:]) > 0.75
    again = make_features("pca:20+umap:3", (8, 8), random_state=0).fit_transform(X[:600])
    np.testing.assert_array_equal(again, train)


def test_a_step_that_cannot_fit_names_the_features_it_belongs_to():
    rows = np.random.default_rng(0).random((30, 784), dtype=np.float32)
    with pytest.raises(KMIError, match=r"^features='deskew\+\(l2\|hog:7\)\+pca:100': pca needs"):
        make_features("pixhog", (28, 28), 0).fit(rows)


@needs_umap
def test_umap_on_a_tiny_set(rng):
    rows = rng.random((20, 64), dtype=np.float32)
    # umap-learn's spectral start failed with a TypeError from scipy at 19 dimensions of 20 rows
    with pytest.raises(KMIError, match=r"^features='umap:19': umap:19 needs at least 21 training "
                                       r"rows, got 20; use at most umap:18"):
        make_features("umap:19", (8, 8), random_state=0).fit(rows)
    pipeline = make_features("umap:18", (8, 8), random_state=0)
    assert pipeline.fit_transform(rows).shape == (20, 18)
    # no rows to embed: no rows out, not scikit-learn's error for an empty search
    assert pipeline.transform(rows[:0]).shape == (0, 18)
