"""Pixel pipelines: the std and nbr steps, the spec language for pixels, state, and the linear form."""

import numpy as np
import pytest

from kmeans_imagery.errors import KMIError
from kmeans_imagery.features import (
    DEFAULT_PIXEL_FEATURES,
    FeaturePipeline,
    Neighbourhood,
    Standardize,
    make_features,
    make_pixel_features,
)
from kmeans_imagery.features._pixels import input_radii, linear_form


def test_pixel_steps(rng):
    rows = rng.normal(5, 3, (500, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
    std = make_pixel_features("std").fit_transform(rows)
    np.testing.assert_allclose(std.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(std.std(axis=0), 1, atol=1e-3)
    l2 = make_pixel_features("l2").fit_transform(rows)
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 1, atol=1e-5)
    pca = make_pixel_features("pca:2").fit_transform(rows)
    variance = np.linalg.eigvalsh(np.cov(rows.T))[::-1][:2]
    np.testing.assert_allclose(pca.var(axis=0, ddof=1), variance, rtol=1e-3)
    both = make_pixel_features("std|l2+pca:3").fit(rows)
    assert both.transform(rows).shape == (500, 9) and both.n_features_out_ == 9


def test_bare_pca_keeps_ten_components(rng):
    rows = rng.normal(size=(200, 12)).astype(np.float32)
    assert make_pixel_features("std+pca").fit(rows).n_features_out_ == 10
    # Fewer bands than components: all kept, rotated onto their principal axes.
    assert make_pixel_features("pca").fit(rows[:, :4]).n_features_out_ == 4


def test_constant_band_stays_zero(rng):
    rows = rng.normal(size=(200, 4)).astype(np.float32)
    rows[:, 2] = 7  # no information, and no division by 0
    out = Standardize().fit_transform(rows)
    assert np.isfinite(out).all() and (out[:, 2] == 0).all()


def test_spectral_shape_of_equal_bands_is_constant_not_rounding_noise(rng):
    grey = rng.integers(1, 255, 2000).astype(np.float32)
    rows = np.repeat(grey[:, None], 3, axis=1)  # a grey picture stored as RGB
    shape = make_pixel_features("l2").fit_transform(rows)
    assert np.ptp(shape) > 0  # float32 rounding: 1 / sqrt(3) is not the same for every grey level
    assert (make_pixel_features("l2+std").fit_transform(rows) == 0).all()
    varied = rows + rng.normal(0, 1, rows.shape).astype(np.float32)  # real colour noise stays
    assert make_pixel_features("l2+std").fit_transform(varied).std(axis=0) == pytest.approx(1, rel=1e-3)


def test_nbr_picks_its_part_of_the_rows(rng):
    rows = rng.normal(size=(50, 3 * 3)).astype(np.float32)  # bands, their r=1 mean, their r=2 mean
    pipeline = make_pixel_features("raw|nbr:2|nbr:1").fit(rows)
    assert input_radii(pipeline) == (0, 1, 2)
    np.testing.assert_array_equal(pipeline.transform(rows), rows[:, [0, 1, 2, 6, 7, 8, 3, 4, 5]])
    with pytest.raises(KMIError, match="do not hold"):
        Neighbourhood(1, (0, 1)).fit(rows[:, :3])


@pytest.mark.parametrize("spec", ["std+pca:3|nbr:1+l2+std+pca:3", DEFAULT_PIXEL_FEATURES, "(l2|nbr:1)+std",
                                  "raw"])
def test_state_round_trip(spec, rng):
    rows = rng.normal(100, 30, (300, 8)).astype(np.float32)
    pipeline = make_pixel_features(spec, random_state=0)
    features = pipeline.fit_transform(rows)
    again = FeaturePipeline.from_state(*pipeline.get_state())
    np.testing.assert_array_equal(again.transform(rows), features)
    assert again.spec == pipeline.spec


@pytest.mark.parametrize("spec, linear", [(DEFAULT_PIXEL_FEATURES, True), ("std+pca:3|nbr:1+l2+pca:2", True),
                                          ("raw", True), ("std+l2", False), ("(raw|nbr:1)+std", False)])
def test_linear_form_equals_the_transform(spec, linear, rng):
    rows = rng.normal(100, 30, (400, 8)).astype(np.float32)
    pipeline = make_pixel_features(spec, random_state=0)
    features = pipeline.fit_transform(rows)
    forms = linear_form(pipeline)
    assert (forms is not None) == linear
    if forms is None:
        return
    parts = []
    for columns, unit, A, b in forms:
        x = rows[:, columns].astype(np.float64)
        if unit:
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
        parts.append(x @ A + b)
    np.testing.assert_allclose(np.hstack(parts), features, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec, message", [("hog", "needs images"), ("pca:0", "at least 1"),
                                           ("std+nbr:1", "must come first"), ("nbr:1:2", "one radius"),
                                           ("std:2", "does not take"), ("sobel", "unknown step")])
def test_pixel_spec_errors(spec, message):
    with pytest.raises(KMIError, match=message):
        make_pixel_features(spec)


def test_pixel_spec_errors_name_the_features_and_the_pixel_steps():
    with pytest.raises(KMIError) as info:
        make_pixel_features("l2+sobel")
    message = str(info.value)
    assert message.startswith("features='l2+sobel': bad feature spec: unknown step 'sobel'")
    # the steps a pixel takes, not the image steps and presets
    assert "raw, std, l2, pca[:n][:whiten], umap[:n], nbr[:r]" in message
    assert "hog" not in message and "presets" not in message


def test_nbr_is_not_an_image_step():
    with pytest.raises(KMIError, match="pixels of a raster"):
        make_features("nbr:1", (8, 8))
    assert make_features("std", (8, 8)).spec == "std"  # std also standardises image rows
