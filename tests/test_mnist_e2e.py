"""The tutorial on real MNIST, fitted on train and scored on the held-out test images."""

import json

import pytest

from kmeans_imagery.cli import main

pytestmark = pytest.mark.mnist


def test_kmi_run_on_mnist(mnist_dir, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["run", "--data-dir", str(mnist_dir), "--ks", "10,256", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert (results["n_train"], results["n_test"]) == (60000, 10000)
    assert results["image_shape"] == [28, 28]
    by_k = {row["k"]: row for row in results["sweep"]}
    # The train-fitted K=256 model on the 10,000 held-out test images (the tutorial's ~0.90 was
    # measured on the set it was fitted on).
    assert by_k[256]["test_accuracy"] >= 0.90
    assert 0.4 < by_k[10]["test_hungarian_accuracy"] < 0.75
    assert (out / "report.html").stat().st_size > 50_000
