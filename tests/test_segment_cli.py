"""``kmi segment`` from the command line: a run, and every bad input (one line, exit 2, nothing written)."""

import json

import numpy as np
import pytest

from kmeans_imagery.cli import main
from segment_data import planted_scene, write_geotiff

pytest.importorskip("rasterio")


def _fails(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmi: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err


def test_segment_command_writes_and_scores(tmp_path, capsys):
    cube, truth = planted_scene()
    path = write_geotiff(tmp_path / "scene.tif", cube)
    np.save(tmp_path / "truth.npy", truth)
    out = tmp_path / "seg"
    assert main(["segment", str(path), "--k", "3", "--out", str(out), "--truth", str(tmp_path / "truth.npy"),
                 "--label-budget", "6", "--features", "std", "--smooth", "1", "--sample", "500",
                 "--bands", "1,2,3,4", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "hungarian_accuracy" in printed and "wrote 6 files" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["parameters"] == {"k": 3, "features": "std", "sample": 500, "smooth": 1, "seed": 3,
                                     "n_init": 10, "dask": None, "truth": str(tmp_path / "truth.npy"),
                                     "model": None}
    assert results["test"]["hungarian_accuracy"] == 1.0
    again = ["segment", str(path), "--model", str(out / "model.kmi"), "--out", str(tmp_path / "again")]
    assert main(again) == 0


def test_not_a_raster(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    _fails(capsys, ["segment", str(tmp_path / "notes.txt"), "--k", "3", "--out", str(tmp_path / "o")],
           "is not a raster")
    assert not (tmp_path / "o").exists()


def test_band_out_of_range(tmp_path, capsys):
    path = write_geotiff(tmp_path / "s.tif", planted_scene()[0])
    _fails(capsys, ["segment", str(path), "--k", "3", "--bands", "2,9", "--out", str(tmp_path / "o")],
           "--bands: band 9 is out of range: s.tif has 4 band(s)")
    assert not (tmp_path / "o").exists()


def test_all_nodata(tmp_path, capsys):
    path = write_geotiff(tmp_path / "empty.tif", np.zeros((20, 20, 2), dtype=np.uint8))
    _fails(capsys, ["segment", str(path), "--k", "3", "--out", str(tmp_path / "o")],
           "empty.tif has no valid pixel: every pixel is nodata")
    assert not (tmp_path / "o").exists()


def test_truth_of_another_size(tmp_path, capsys):
    path = write_geotiff(tmp_path / "s.tif", planted_scene()[0])
    np.save(tmp_path / "truth.npy", np.ones((10, 10), dtype=np.uint8))
    _fails(capsys, ["segment", str(path), "--k", "3", "--truth", str(tmp_path / "truth.npy"),
                    "--out", str(tmp_path / "o")],
           "--truth: truth.npy is 10 x 10 pixels, the raster 40 x 48")
    assert not (tmp_path / "o").exists()


def test_more_clusters_than_valid_pixels(tmp_path, capsys):
    cube = np.zeros((6, 6, 2), dtype=np.uint8)
    cube[2:4, 2:4] = 9  # 4 valid pixels
    path = write_geotiff(tmp_path / "tiny.tif", cube)
    _fails(capsys, ["segment", str(path), "--k", "5", "--out", str(tmp_path / "o")],
           "5 clusters but only 4 valid pixels")
    assert not (tmp_path / "o").exists()


def test_existing_output_without_force(tmp_path, capsys):
    path = write_geotiff(tmp_path / "s.tif", planted_scene()[0])
    out = tmp_path / "o"
    out.mkdir()
    (out / "classes.tif").write_bytes(b"earlier")
    _fails(capsys, ["segment", str(path), "--k", "3", "--out", str(out)],
           "already holds classes.tif; use --force to replace")
    assert [p.name for p in out.iterdir()] == ["classes.tif"]
    assert (out / "classes.tif").read_bytes() == b"earlier"


def test_model_with_k_is_refused(tmp_path, capsys):
    _fails(capsys, ["segment", "x.tif", "--model", "m.kmi", "--k", "3", "--out", str(tmp_path / "o")],
           "--model sets K and the features")


def test_errors_name_the_option(tmp_path, capsys):
    path = write_geotiff(tmp_path / "s.tif", planted_scene()[0])
    out = ["--out", str(tmp_path / "o")]
    scene = ["segment", str(path), *out]
    _fails(capsys, [*scene, "--k", "3", "--truth", str(tmp_path / "missing.npy")], "kmi: error: --truth: ")
    _fails(capsys, [*scene, "--model", str(tmp_path / "missing.kmi")], "kmi: error: --model: ")
    _fails(capsys, [*scene, "--k", "3", "--features", "bogus"], "kmi: error: --features='bogus': ")
    _fails(capsys, [*scene, "--k", "3", "--var", "x"], "kmi: error: --var: s.tif has no array")
    assert not (tmp_path / "o").exists()


def test_complex_raster_is_one_line(tmp_path, capsys):
    cube = np.ones((6, 5, 2), dtype=np.complex64)
    path = write_geotiff(tmp_path / "slc.tif", cube, nodata=None)
    _fails(capsys, ["segment", str(path), "--k", "2", "--out", str(tmp_path / "o")], "complex values")
