"""Reading rasters strip by strip: GeoTIFF, MATLAB v5 and v7.3, .npy/.npz/Zarr, photos; bands; nodata."""

import numpy as np
import pytest
import scipy.io
from PIL import Image

from kmeans_imagery.datasets.rasters import open_raster, parse_bands
from kmeans_imagery.errors import KMIError
from segment_data import HSI, RASTERS, planted_scene, write_geotiff

rasterio = pytest.importorskip("rasterio")


def _read_all(raster):
    parts = [raster.read(start, stop) for start, stop in raster.strips(target_pixels=64)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_geotiff_strips_values_mask_and_georeferencing(tmp_path, monkeypatch):
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_ALIGN", 16)
    cube, truth = planted_scene(height=70)
    path = write_geotiff(tmp_path / "scene.tif", cube, tiled=True)
    with open_raster(path) as raster:
        assert (raster.height, raster.width, raster.n_bands) == (70, 48, 4)
        assert raster.crs.to_epsg() == 32618 and raster.transform.a == 30
        strips = raster.strips(target_pixels=64)
        # 16-row strips; the last 6 rows join the strip before them.
        assert strips == [(0, 16), (16, 32), (32, 48), (48, 70)]
        assert all(a[1] == b[0] for a, b in zip(strips, strips[1:], strict=False))
        values, valid = _read_all(raster)
    np.testing.assert_array_equal(values, cube)
    np.testing.assert_array_equal(valid, (cube != 0).all(axis=-1))


@pytest.mark.parametrize("suffix", [".tif", ".npy"])
def test_read_into_band_planes(tmp_path, suffix):
    cube, _ = planted_scene(height=20)
    path = tmp_path / f"scene{suffix}"
    write_geotiff(path, cube, tiled=True) if suffix == ".tif" else np.save(path, cube)
    with open_raster(path, bands=(3, 1)) as raster:
        expected, expected_valid = raster.read(5, 12)
        out = np.zeros((2, 9, raster.width), dtype=raster.dtype)  # rows 5:12 go to lines 1:8
        values, valid = raster.read(5, 12, out=out[:, 1:8])
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_array_equal(np.moveaxis(out[:, 1:8], 0, -1), cube[5:12][..., [2, 0]])
    assert np.shares_memory(values, out) and not out[:, [0, 8]].any()


def test_band_selection_and_nodata_override(tmp_path):
    cube, _ = planted_scene()
    cube[10, 10, 1] = 7
    path = write_geotiff(tmp_path / "scene.tif", cube, nodata=None)
    with open_raster(path, bands=(2, 4), nodata=7) as raster:
        values, valid = _read_all(raster)
    np.testing.assert_array_equal(values, cube[:, :, [1, 3]])
    assert not valid[10, 10] and valid[20, 20]
    assert valid[0, 0]  # without the file's nodata, 0 is a value


def test_partly_nodata_pixels_are_left_out(tmp_path):
    cube, _ = planted_scene()
    cube[20, 20, 2] = 0  # nodata in one band only
    with open_raster(write_geotiff(tmp_path / "scene.tif", cube)) as raster:
        _, valid = _read_all(raster)
    assert not valid[20, 20] and valid[20, 21]


def _envi(path, wavelengths, unit):
    with rasterio.open(path, "w", driver="ENVI", height=4, width=5, count=len(wavelengths),
                       dtype="float32") as dst:
        dst.write(np.ones((len(wavelengths), 4, 5), dtype=np.float32))
    header = path.with_suffix(".hdr")
    values = ", ".join(str(w) for w in wavelengths)
    header.write_text(header.read_text() + f"wavelength units = {unit}\nwavelength = {{{values}}}\n")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_band_wavelengths_from_the_file(tmp_path):
    _envi(tmp_path / "cube.img", [450.5, 550, 650], "Nanometers")
    with open_raster(tmp_path / "cube.img", bands=(3, 1)) as raster:
        assert raster.wavelengths == (650.0, 450.5) and raster.wavelength_unit == "nm"
    _envi(tmp_path / "index.img", [1, 2, 3], "Index")  # band indices are not wavelengths
    with open_raster(tmp_path / "index.img") as raster:
        assert raster.wavelengths is None and raster.wavelength_unit is None
    write_geotiff(tmp_path / "plain.tif", planted_scene()[0])
    with open_raster(tmp_path / "plain.tif") as raster:
        assert raster.wavelengths is None



@pytest.mark.parametrize("kind", ["npy", "npz", "mat", "mat73", "zarr"])
def test_array_files(tmp_path, kind):
    cube, truth = planted_scene()
    if kind == "npy":
        path = tmp_path / "cube.npy"
        np.save(path, cube)
    elif kind == "npz":
        path = tmp_path / "cube.npz"
        np.savez(path, cube=cube, truth=truth)
    elif kind == "mat":
        path = tmp_path / "cube.mat"
        scipy.io.savemat(path, {"cube": cube, "truth": truth})
    elif kind == "mat73":
        h5py = pytest.importorskip("h5py")
        path = tmp_path / "cube.mat"
        with h5py.File(path, "w", userblock_size=512) as handle:  # as MATLAB writes v7.3 files
            handle["cube"] = cube.transpose()  # column-major: dimensions reversed in HDF5
            handle["truth"] = truth.transpose()
        with open(path, "r+b") as handle:
            handle.write(b"MATLAB 7.3 MAT-file, written by a test")
    else:
        zarr = pytest.importorskip("zarr")
        path = tmp_path / "cube.zarr"
        zarr.create_array(str(path), data=cube, chunks=(8, 48, 4))
    with open_raster(path, nodata=0) as raster:
        values, valid = _read_all(raster)
    np.testing.assert_array_equal(values, cube)
    np.testing.assert_array_equal(valid, (cube != 0).all(axis=-1))
    if kind in ("npz", "mat", "mat73"):
        with open_raster(path, ndim=2) as raster:
            np.testing.assert_array_equal(_read_all(raster)[0][:, :, 0], truth)


def test_ambiguous_and_named_variables(tmp_path):
    cube, _ = planted_scene()
    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"a": cube, "b": cube[:, :, :2]})
    with pytest.raises(KMIError, match="several 3-D arrays.*--var"):
        open_raster(path)
    with open_raster(path, var="b") as raster:
        assert raster.n_bands == 2
    with pytest.raises(KMIError, match="--var: two.mat has no array 'c'"):
        open_raster(path, var="c")


def test_unmixing_layout_bands_by_pixels_becomes_a_cube(tmp_path):
    # As Jasper Ridge and Urban store a scene: (bands, pixels), pixels column-major, nRow, nCol.
    cube, _ = planted_scene()
    rows, cols, bands = cube.shape
    matrix = cube.reshape(rows * cols, bands, order="F")
    path = tmp_path / "unmixing.mat"
    scipy.io.savemat(path, {"Y": matrix.T, "A": np.ones((3, rows * cols)), "nRow": rows,
                            "nCol": cols, "M": np.ones((bands, 3))})
    with pytest.raises(KMIError, match=r"several 3-D arrays \(Y \(\d+, \d+, \d+\), A [^)]*\)\); "
                                       r"name one with --var"):
        open_raster(path)
    with open_raster(path, var="Y") as raster:
        np.testing.assert_array_equal(_read_all(raster)[0], cube)
    scipy.io.savemat(path, {"Y": matrix, "nRow": rows, "nCol": cols})  # (pixels, bands)
    with open_raster(path) as raster:
        np.testing.assert_array_equal(_read_all(raster)[0], cube)


def test_shared_jasper_ridge_by_its_variable():
    path = HSI / "jasperRidge2_R198.mat"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open_raster(path, var="Y") as raster:
        assert (raster.height, raster.width, raster.n_bands) == (100, 100, 198)
        expected = scipy.io.loadmat(path)["Y"].T.reshape(100, 100, 198, order="F")
        np.testing.assert_array_equal(_read_all(raster)[0], expected)


def test_photo_is_rgb(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((9, 7), 200, dtype=np.uint8)).save(path)  # a gray photo reads as RGB
    with open_raster(path) as raster:
        values, valid = _read_all(raster)
    assert values.shape == (9, 7, 3) and valid.all() and raster.crs is None


def test_photos_read_as_image_folders_read_them(tmp_path):
    """Upright by their EXIF orientation, in any folder format but TIFF; a bad one is one line."""
    photo = np.zeros((6, 10, 3), np.uint8)
    photo[0, :, 0] = 255  # a red top row
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(photo, 1))).save(tmp_path / "turned.jpg",
                                                                   exif=exif, quality=95)
    Image.fromarray(photo).save(tmp_path / "photo.ppm")
    with open_raster(tmp_path / "turned.jpg") as turned, open_raster(tmp_path / "photo.ppm") as ppm:
        upright = _read_all(turned)[0]  # stored 10 x 6, shown 6 x 10 with the red row on top
        assert upright.shape == (6, 10, 3) and upright[0, :, 0].mean() > upright[-1, :, 0].mean() + 100
        np.testing.assert_array_equal(_read_all(ppm)[0], photo)
    (tmp_path / "bad.png").write_bytes(b"not a PNG")
    with pytest.raises(KMIError, match="bad.png is not a readable image$"):
        open_raster(tmp_path / "bad.png")


def test_float_nan_is_nodata(tmp_path):
    cube = np.ones((5, 6, 2), dtype=np.float32)
    cube[1, 2, 0] = np.nan
    np.save(tmp_path / "c.npy", cube)
    with open_raster(tmp_path / "c.npy") as raster:
        _, valid = _read_all(raster)
    assert valid.sum() == 29 and not valid[1, 2]


@pytest.mark.parametrize("text, message", [("1,x", "comma-separated"), ("1,1", "repeat")])
def test_parse_bands_errors(text, message):
    with pytest.raises(KMIError, match=message):
        parse_bands(text)
    assert parse_bands("3,1") == (3, 1) and parse_bands(None) is None


def test_bad_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not a raster")
    with pytest.raises(KMIError, match="not a raster that GDAL can read"):
        open_raster(tmp_path / "notes.txt")
    with pytest.raises(KMIError, match="does not exist"):
        open_raster(tmp_path / "missing.tif")
    with pytest.raises(KMIError, match="band 4 is out of range"):
        open_raster(write_geotiff(tmp_path / "s.tif", planted_scene()[0][:, :, :3]), bands=(4,))


def test_shared_landsat_scene_mask():
    path = RASTERS / "RGB.byte.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open_raster(path) as raster, rasterio.open(path) as dataset:
        _, valid = _read_all(raster)
        np.testing.assert_array_equal(valid, dataset.read_masks().all(axis=0) > 0)
        assert raster.crs == dataset.crs and raster.transform == dataset.transform


def test_shared_salinas_mat():
    path = HSI / "SalinasA_corrected.mat"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open_raster(path) as raster:
        assert (raster.height, raster.width, raster.n_bands) == (83, 86, 204)


def _write(path, bands, **profile):
    """A GeoTIFF of (bands, rows, cols) values with the given profile entries."""
    from affine import Affine

    profile = {"driver": "GTiff", "height": bands.shape[1], "width": bands.shape[2], "count": len(bands),
               "dtype": bands.dtype, "crs": "EPSG:32618", "transform": Affine(30, 0, 0, 0, -30, 0), **profile}
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(bands)
    return path


def test_strips_of_an_odd_block_height_stay_near_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr("kmeans_imagery.datasets.rasters.STRIP_ALIGN", 16)
    cube, _ = planted_scene(height=100, width=20)
    path = _write(tmp_path / "striped.tif", np.moveaxis(cube, -1, 0), blockysize=13)
    with open_raster(path) as raster:
        assert raster.block_height == 13
        # Whole 13-row blocks in 16-row multiples would be 208-row strips: the whole scene at once.
        assert raster.strips(target_pixels=64) == [(0, 16), (16, 32), (32, 48), (48, 64), (64, 80), (80, 100)]
        values, valid = _read_all(raster)
    np.testing.assert_array_equal(values, cube)


def test_nodata_given_that_the_values_type_cannot_hold_matches_nothing(tmp_path):
    values = np.array([[[241, 1, 44, 7]]], dtype=np.uint8)
    path = _write(tmp_path / "bytes.tif", values)
    for nodata in (-9999, 1.5, 300, np.nan):  # cast to uint8, they would be 241, 1, 44, 0
        with open_raster(path, nodata=nodata) as raster:
            assert raster.read(0, 1)[1].all(), nodata
    with open_raster(path, nodata=7.0) as raster:
        assert raster.read(0, 1)[1].tolist() == [[True, True, True, False]]
    lowest = np.finfo(np.float32).min  # the nodata of many float rasters, as rasterio prints it
    floats = _write(tmp_path / "floats.tif", np.array([[[lowest, 2.5]]], dtype=np.float32))
    with open_raster(floats, nodata=-3.4028235e38) as raster:
        assert raster.read(0, 1)[1].tolist() == [[False, True]]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_file_without_geotransform_has_no_transform(tmp_path):
    path = _write(tmp_path / "plain.tif", np.ones((1, 3, 4), np.uint8), crs=None, transform=None)
    with open_raster(path) as raster:
        assert raster.transform is None and raster.crs is None and raster.gcps is None


def test_an_alpha_band_masks_and_is_not_read_as_a_band(tmp_path):
    from rasterio.enums import ColorInterp

    rgb = np.full((3, 4, 5), 90, np.uint8)
    alpha = np.full((4, 5), 255, np.uint8)
    alpha[0] = 0
    path = _write(tmp_path / "rgba.tif", np.concatenate([rgb, alpha[None]]), photometric="RGB")
    with rasterio.open(path, "r+") as dataset:
        dataset.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    with open_raster(path) as raster:
        assert raster.bands == (1, 2, 3)
        values, valid = _read_all(raster)
    assert valid.tolist() == (alpha > 0).tolist() and (values == 90).all()
    with open_raster(path, bands=(1, 4)) as raster:  # asked for, it is read
        assert raster.n_bands == 2


def test_nodata_values_per_band_are_recorded_per_band(tmp_path):
    cube = np.full((2, 3, 4), 9, np.uint16)
    cube[0, 0, 0], cube[1, 2, 3] = 5, 7
    _write(tmp_path / "bands.tif", cube)
    sources = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><NoDataValue>{nodata}</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">bands.tif</SourceFilename><SourceBand>{b}</SourceBand>'
        f"</SimpleSource></VRTRasterBand>" for b, nodata in ((1, 5), (2, 7)))
    (tmp_path / "bands.vrt").write_text(f'<VRTDataset rasterXSize="4" rasterYSize="3"><SRS>EPSG:32618</SRS>'
                                        f"<GeoTransform>0,30,0,0,0,-30</GeoTransform>{sources}</VRTDataset>")
    with open_raster(tmp_path / "bands.vrt") as raster:
        assert raster.file_nodata == (5.0, 7.0)
        assert (~_read_all(raster)[1]).sum() == 2
    with open_raster(tmp_path / "bands.vrt", bands=(2,)) as raster:
        assert raster.file_nodata == 7.0


def test_complex_bands_are_refused(tmp_path):
    path = _write(tmp_path / "slc.tif", np.ones((1, 3, 4), np.complex64))
    with pytest.raises(KMIError, match="slc.tif: the bands hold complex values"):
        open_raster(path)


def test_rasters_of_a_container_are_chosen_with_var(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "scene.h5", "w") as handle:
        handle["reflectance"] = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        handle["quality"] = np.zeros((3, 4), np.uint8)
    with pytest.raises(KMIError, match=r"scene.h5 holds several rasters \(quality, reflectance\); name one "
                                       r"with --var"):
        open_raster(tmp_path / "scene.h5")
    with pytest.raises(KMIError, match="--var: scene.h5 has no array 'cloud'; it has quality, reflectance"):
        open_raster(tmp_path / "scene.h5", var="cloud")
    with open_raster(tmp_path / "scene.h5", var="reflectance") as raster:
        assert (raster.height, raster.width, raster.n_bands) == (3, 4, 2)
        assert _read_all(raster)[0][2, 3].tolist() == [11, 23]


def test_var_is_refused_for_a_single_raster(tmp_path):
    path = write_geotiff(tmp_path / "s.tif", planted_scene()[0])
    with pytest.raises(KMIError, match="--var: s.tif has no array 'x'; it is a single raster"):
        open_raster(path, var="x")
    Image.new("RGB", (4, 3)).save(tmp_path / "p.png")
    with pytest.raises(KMIError, match="--var: p.png is a single image"):
        open_raster(tmp_path / "p.png", var="x")
    np.save(tmp_path / "cube.npy", np.zeros((3, 4, 2), np.uint8))
    with pytest.raises(KMIError, match="--var: cube.npy holds a single array"):
        open_raster(tmp_path / "cube.npy", var="x")


def test_transparent_pixels_of_a_photo_are_nodata(tmp_path):
    rgba = np.full((4, 6, 4), 200, np.uint8)
    rgba[1, 2:5, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut-out.png")
    with open_raster(tmp_path / "cut-out.png") as raster:
        assert raster.n_bands == 3
        _, valid = _read_all(raster)
    assert valid.tolist() == (rgba[..., 3] > 0).tolist()
    Image.fromarray(rgba[..., :3]).save(tmp_path / "opaque.png")
    with open_raster(tmp_path / "opaque.png") as raster:
        assert _read_all(raster)[1].all()
