"""``kmi convert``, ``kmi fit --stream`` / ``--dask`` and predictions from Zarr stores."""

import csv
import io
import json

import pytest

from kmeans_imagery.cli import main
from kmeans_imagery.model_io import load_model

pytest.importorskip("zarr", reason="Zarr stores need the scale extra")
pytest.importorskip("distributed", reason="dask fits need the scale extra")


def run_kmi(capsys, *args):
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def digits_zarr(tmp_path_factory):
    store = tmp_path_factory.mktemp("zarr") / "digits.zarr"
    assert main(["convert", "digits", str(store), "--chunk-size", "256"]) == 0
    return store


def test_convert_writes_a_store(digits_zarr, capsys):
    from kmeans_imagery.sources import open_source

    source = open_source(digits_zarr)
    assert (source.n_images, tuple(source.image_shape)) == (1437, (8, 8))
    code, _, err = run_kmi(capsys, "convert", "digits", digits_zarr)
    assert code == 2 and "exists" in err


def test_stream_fit_then_predict_and_evaluate_the_store(digits_zarr, tmp_path, capsys):
    model_path = tmp_path / "stream.kmi"
    code, out, err = run_kmi(capsys, "fit", digits_zarr, "--k", 30, "--stream", "--out", model_path)
    assert code == 0, err
    model = load_model(model_path)
    assert model.metadata_["training"]["n_samples"] == 1437
    code, out, err = run_kmi(capsys, "evaluate", model_path, digits_zarr, "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"] > 0.8
    code, out, err = run_kmi(capsys, "predict", model_path, digits_zarr, "--batch-size", 100)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1437 and rows[5]["path"].endswith("#5")


def test_dask_local_fit(digits_zarr, tmp_path, capsys):
    model_path = tmp_path / "dask.kmi"
    code, _, err = run_kmi(capsys, "fit", digits_zarr, "--k", 20, "--dask", "local",
                           "--out", model_path)
    assert code == 0, err
    assert load_model(model_path).cluster_centers_.shape == (20, 64)


def test_chunked_fits_refuse_what_they_cannot_do(digits_zarr, tmp_path, capsys):
    code, _, err = run_kmi(capsys, "fit", digits_zarr, "--k", 5, "--stream", "--features", "hog",
                           "--out", tmp_path / "m.kmi")
    assert code == 2 and "--features" in err
    code, _, err = run_kmi(capsys, "fit", digits_zarr, "--k", 5, "--dask",
                           "tcp://127.0.0.1:1", "--out", tmp_path / "m.kmi")
    assert code == 2 and err.count("\n") == 1
    assert not (tmp_path / "m.kmi").exists()
