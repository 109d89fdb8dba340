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
    from kmeans_imagery.datasets import open_source

    source = open_source(digits_zarr)
    assert (source.n_images, tuple(source.image_shape)) == (1437, (8, 8))
    code, _, err = run_kmi(capsys, "convert", "digits", digits_zarr)
    assert code == 2 and "exists" in err
    both = digits_zarr.with_name("both.zarr")
    code, out, _ = run_kmi(capsys, "convert", "digits", both, "--split", "all")
    assert code == 0 and out == f"wrote 1797 images of 8x8 to {both}\n"
    assert open_source(both).labels.shape == (1797,)


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


@pytest.mark.parametrize("mode", [["--stream"], ["--dask", "local"], []])
def test_every_fit_option_in_every_mode(tmp_path, capsys, mode):
    """--features, --labels, --n-init and --skip-bad on an image folder, whatever the mode."""
    import numpy as np
    from PIL import Image

    from kmeans_imagery.datasets import load_dataset

    digits = load_dataset("digits")
    root = tmp_path / "digits"
    for i, (image, label) in enumerate(zip(digits.train_images[:400], digits.train_labels[:400],
                                           strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:04d}.png")
    (root / "3" / "broken.png").write_bytes(b"no")
    sheet = tmp_path / "labels.csv"
    firsts = {}
    for path in sorted(root.glob("*/*.png")):
        if path.name != "broken.png":
            firsts.setdefault(path.parent.name, path)
    sheet.write_text("index,path,label\n" + "".join(f"0,{p},digit {d}\n" for d, p in firsts.items()))
    model_path = tmp_path / "m.kmi"
    code, out, err = run_kmi(capsys, "fit", root, "--k", 10, *mode, "--features", "l2",
                             "--labels", sheet, "--n-init", 2, "--skip-bad", "--out", model_path)
    assert code == 0, err
    model = load_model(model_path)
    assert model.metadata_["features"]["spec"] == "deskew+l2"
    assert set(model.classes_) <= {f"digit {d}" for d in range(10)}
    truth = np.array([f"digit {d}" for d in digits.train_labels[:400]])
    assert (model.predict(digits.train_images[:400]) == truth).mean() > 0.6


def test_dask_fit_that_cannot_reach_its_cluster(digits_zarr, tmp_path, capsys):
    code, _, err = run_kmi(capsys, "fit", digits_zarr, "--k", 5, "--dask",
                           "tcp://127.0.0.1:1", "--out", tmp_path / "m.kmi")
    assert code == 2 and err.count("\n") == 1
    assert not (tmp_path / "m.kmi").exists()
