"""The ``kmi`` command end to end on the bundled digits data."""

import json

import numpy as np
import pytest

from kmeans_imagery.cli import main

FIGURES = ("samples.png", "inertia.png", "scores.png", "centroids.png", "confusion.png")


def run_kmi(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One full ``kmi run`` on digits with the default K list, shared by the tests below."""
    out = tmp_path_factory.mktemp("digits-run")
    code = main(["run", "--dataset", "digits", "--out", str(out), "--seed", "0"])
    assert code == 0
    return out


def test_run_writes_every_output(digits_run):
    for name in (*FIGURES, "results.json", "report.html"):
        assert (digits_run / name).stat().st_size > 0, name
    assert not list(digits_run.glob(".*tmp"))


def test_results_json_has_the_documented_fields(digits_run):
    results = json.loads((digits_run / "results.json").read_text())
    assert results["dataset"] == "digits"
    assert results["n_train"] + results["n_test"] == 1797
    assert {"python", "numpy", "scikit-learn"} <= set(results["versions"])
    assert [row["k"] for row in results["sweep"]] == [10, 16, 36, 64, 144, 256]
    for row in results["sweep"]:
        assert {"k", "inertia", "homogeneity", "accuracy", "test_accuracy", "fit_seconds"} <= set(row)
        assert ("hungarian_accuracy" in row) == (row["k"] == 10)
        assert ("test_hungarian_accuracy" in row) == (row["k"] == 10)
    inertias = [row["inertia"] for row in results["sweep"]]
    assert inertias == sorted(inertias, reverse=True)
    assert results["sweep"][-1]["test_accuracy"] > 0.9
    assert len(results["first_predictions"]["predicted"]) == 20


def test_run_prints_versions_shapes_table_and_first_predictions(capsys, tmp_path):
    code, out, err = run_kmi(
        capsys, "run", "--dataset", "digits", "--ks", "10,36", "--out", str(tmp_path)
    )
    assert code == 0, err
    assert "scikit-learn" in out and "(1437, 8, 8)" in out
    assert "first 20 predicted" in out and "first 20 true" in out
    assert "test accuracy at K=36" in out


def test_json_mode_prints_only_json_on_stdout(capsys, tmp_path):
    code, out, _ = run_kmi(
        capsys, "run", "--dataset", "digits", "--ks", "10", "--out", str(tmp_path), "--json"
    )
    assert code == 0
    assert json.loads(out)["sweep"][0]["k"] == 10


def test_sweep_only(capsys, tmp_path):
    code, out, _ = run_kmi(
        capsys, "sweep", "--dataset", "digits", "--ks", "10,16", "--out", str(tmp_path / "s.json")
    )
    assert code == 0
    assert [row["k"] for row in json.loads((tmp_path / "s.json").read_text())["sweep"]] == [10, 16]
    assert "K sweep" in out


def test_transductive_fits_on_the_test_set(capsys, tmp_path):
    code, out, _ = run_kmi(
        capsys, "sweep", "--dataset", "digits", "--ks", "64", "--transductive", "--json"
    )
    assert code == 0
    row = json.loads(out)["sweep"][0]
    assert json.loads(out)["transductive"] is True
    assert row["accuracy"] == pytest.approx(row["test_accuracy"])


def test_same_seed_same_results(capsys):
    def sweep_json():
        code, out, _ = run_kmi(capsys, "sweep", "--dataset", "digits", "--ks", "16", "--json")
        assert code == 0
        return json.loads(out)["sweep"][0]

    first, second = sweep_json(), sweep_json()
    assert first["inertia"] == second["inertia"] and first["accuracy"] == second["accuracy"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--dataset", "digits", "--ks", "10,abc"], "'abc' is not a positive integer"),
        (["sweep", "--dataset", "digits", "--ks", "0"], "'0' is not a positive integer"),
        (["sweep", "--dataset", "digits", "--ks", "5000"], "K=5000 is larger than the 1437"),
        (["sweep", "--dataset", "digits", "--algorithm", "magic"], "magic"),
        (["sweep", "--dataset", "/no/such/folder"], "/no/such/folder"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_user_errors_are_one_line_exit_2(capsys, args, message):
    code, out, err = run_kmi(capsys, *args)
    assert code == 2
    assert err.startswith("kmi: error:") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_kmi(capsys, "run", "--dataset", "digits", "--out", str(blocker / "out"))
    assert code == 2 and "cannot write to output folder" in err


def test_debug_shows_the_traceback():
    with pytest.raises(Exception, match="K=5000"):
        main(["--debug", "sweep", "--dataset", "digits", "--ks", "5000"])


def test_warnings_are_one_line_naming_flags(capsys, tmp_path):
    # Fifty identical images have one distinct cluster, fewer than --k 2 asks for.
    np.save(tmp_path / "alike.npy", np.zeros((50, 8, 8), np.uint8))
    args = ["explore", str(tmp_path / "alike.npy"), "--k", "2"]
    code, _, err = run_kmi(capsys, *args, "--out", str(tmp_path / "one-line"))
    assert code == 0
    assert err == ("kmi: warning: Number of distinct clusters (1) found smaller than --k (2). "
                   "Possibly due to duplicate points in X.\n")
    with pytest.warns(UserWarning, match=r"n_clusters \(2\)"):
        assert main(["--debug", *args, "--out", str(tmp_path / "debug")]) == 0


def test_version(capsys):
    code, out, _ = run_kmi(capsys, "--version")
    assert code == 0 and out.startswith("kmi, version")


def test_python_api_matches_the_cli(capsys):
    from kmeans_imagery.datasets import load_dataset
    from kmeans_imagery.experiment import run_experiment

    experiment = run_experiment(load_dataset("digits"), ks=(16,), random_state=0)
    code, out, _ = run_kmi(capsys, "sweep", "--dataset", "digits", "--ks", "16", "--json")
    assert code == 0
    assert json.loads(out)["sweep"][0]["inertia"] == pytest.approx(
        experiment.results["sweep"][0]["inertia"]
    )
    assert np.isfinite(experiment.results["test"]["accuracy"])


def test_run_on_an_image_folder_holds_out_a_test_split(capsys, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images[:400], digits.target[:400], strict=True)):
        folder = tmp_path / "imgs" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 15).astype(np.uint8)).save(folder / f"{i}.png")
    code, out, err = run_kmi(capsys, "run", "--dataset", str(tmp_path / "imgs"), "--ks", "10,30",
                             "--out", str(tmp_path / "out"), "--json")
    assert code == 0, err
    results = json.loads(out)
    assert (results["n_train"], results["n_test"]) == (320, 80)
    assert "held out" in err
    assert results["sweep"][-1]["test_accuracy"] > 0.7


def test_run_on_another_idx_folder_of_the_same_format(capsys, tmp_path):
    """Other 28x28 images with other labels, under the MNIST file names: nothing else is assumed."""
    from sklearn.datasets import load_digits

    from kmeans_imagery.datasets import write_idx

    digits = load_digits()
    images = np.zeros((len(digits.images), 28, 28), dtype=np.uint8)
    images[:, 6:22, 6:22] = np.kron(digits.images * 15, np.ones((2, 2))).astype(np.uint8)
    labels = (digits.target % 4 + 40).astype(np.uint8)  # four classes named 40..43
    for prefix, part in (("train", slice(0, 1400)), ("t10k", slice(1400, None))):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images[part])
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels[part])
    code, out, err = run_kmi(capsys, "run", "--data-dir", str(tmp_path), "--ks", "4,16",
                             "--out", str(tmp_path / "out"), "--json")
    assert code == 0, err
    results = json.loads(out)
    assert results["classes"] == [40, 41, 42, 43]
    assert (results["n_train"], results["n_test"], results["image_shape"]) == (1400, 397, [28, 28])
    assert "test_hungarian_accuracy" in results["sweep"][0]
    assert (tmp_path / "out" / "report.html").is_file()


def test_failed_sweep_leaves_no_folder_for_its_out_file(capsys, tmp_path):
    # the folder of --out used to be made before the run, and stayed when the run failed
    code, _, err = run_kmi(capsys, "sweep", "digits", "--ks", "5000",
                           "--out", str(tmp_path / "runs" / "sweep.json"))
    assert code == 2 and "K=5000" in err
    assert list(tmp_path.iterdir()) == []


def test_rerun_needs_force_and_then_replaces_the_whole_run(capsys, tmp_path):
    out = tmp_path / "run"
    base = ["run", "digits", "--ks", "10", "--stability-seeds", "0", "--out", str(out)]
    assert run_kmi(capsys, *base, "--label-budget", "10")[0] == 0
    before = (out / "results.json").read_bytes()
    code, _, err = run_kmi(capsys, *base)
    assert code == 2 and "use --force to replace it" in err
    assert (out / "results.json").read_bytes() == before
    code, out_text, _ = run_kmi(capsys, *base, "--force", "--json")
    assert code == 0
    results = json.loads(out_text, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))
    assert results == json.loads((out / "results.json").read_text())
    assert not (out / "label_budget.png").exists()  # the first run's figure is gone
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [*FIGURES, "results.json", "report.html"])
