"""Fit -> predict -> evaluate on image folders, through the library and the ``kmi`` command."""

import csv
import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from kmeans_imagery import KMIError
from kmeans_imagery.cli import main
from kmeans_imagery.datasets import load_dataset, open_source
from kmeans_imagery.labeling import ClusterClassifier
from kmeans_imagery.model_io import load_model
from kmeans_imagery.predict import evaluate, nearest_two, open_inputs, predict_source


def _digits_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images * (255 / 16)).round().astype(np.uint8), digits.target


def _write_class_folder(root, images, labels, suffix=".png", color=False):
    """One sub-folder per class, files named by their index so the loading order is known."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"digit-{label}"
        folder.mkdir(parents=True, exist_ok=True)
        if color:
            # Tint each digit: the red channel carries the image, green a class-dependent level.
            rgb = np.stack([image, np.full_like(image, 20 * label), 255 - image], axis=-1)
            Image.fromarray(rgb, "RGB").save(folder / f"{i:05d}{suffix}", quality=95)
        else:
            Image.fromarray(image, "L").save(folder / f"{i:05d}{suffix}")
    return root


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    """Digits as PNG files: 1,500 training images and 297 test images in class sub-folders."""
    images, labels = _digits_images()
    root = tmp_path_factory.mktemp("digit-folders")
    train = _write_class_folder(root / "train", images[:1500], labels[:1500])
    test = _write_class_folder(root / "test", images[1500:], labels[1500:])
    return train, test, images, labels


def _folder_order(images, labels, offset=0):
    """The order in which a class-per-folder tree is read: class folder name, then file name."""
    order = sorted(range(len(labels)), key=lambda i: (f"digit-{labels[i]}", i + offset))
    return images[order], np.array([f"digit-{label}" for label in labels[order]])


def run_kmi(capsys, *args):
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_folder_fit_predict_evaluate_matches_in_memory(digit_folders, tmp_path, capsys):
    train, test, images, labels = digit_folders
    model_path = tmp_path / "digits.kmi"
    code, _, err = run_kmi(capsys, "fit", train, "--k", 40, "--out", model_path, "--seed", 3)
    assert code == 0, err

    code, out, err = run_kmi(capsys, "evaluate", model_path, test, "--json")
    assert code == 0, err
    cli_results = json.loads(out)

    train_images, train_names = _folder_order(images[:1500], labels[:1500])
    test_images, test_names = _folder_order(images[1500:], labels[1500:], offset=1500)
    in_memory = ClusterClassifier(n_clusters=40, random_state=3).fit(train_images, train_names)
    assert cli_results["accuracy"] == pytest.approx(in_memory.score(test_images, test_names))
    assert cli_results["accuracy"] > 0.8
    assert cli_results["n_images"] == 297

    code, out, err = run_kmi(capsys, "predict", model_path, test)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 297
    assert set(rows[0]) == {"path", "cluster", "label", "distance", "margin"}
    predicted = np.array([row["label"] for row in rows])
    np.testing.assert_array_equal(predicted, in_memory.predict(test_images))
    assert all(float(row["margin"]) >= 0 for row in rows)
    assert "predicted 297 images" in err


def test_predict_streams_in_batches_and_writes_csv_file(digit_folders, tmp_path, capsys):
    train, test, _, _ = digit_folders
    model_path = tmp_path / "m.kmi"
    assert run_kmi(capsys, "fit", train, "--k", 20, "--out", model_path)[0] == 0
    out_csv = tmp_path / "pred.csv"
    code, stdout, _ = run_kmi(capsys, "predict", model_path, test, "--batch-size", 50,
                              "--out", out_csv)
    assert code == 0 and stdout == ""
    with out_csv.open() as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == 297
    assert not list(tmp_path.glob(".*.tmp"))


def test_predict_source_is_lazy_and_names_files(digit_folders):
    train, test, _, _ = digit_folders
    model = ClusterClassifier(n_clusters=10, random_state=0).fit(
        load_dataset(train).train_images, load_dataset(train).train_labels
    )
    source = open_source(test)
    rows = predict_source(model, source, batch_size=7)
    first = next(rows)
    assert first["path"] == str(source.paths[0]) and isinstance(first["cluster"], int)


def test_open_inputs_groups_loose_files_and_splits(digit_folders, tmp_path):
    train, test, images, _ = digit_folders
    files = sorted((test / "digit-3").glob("*.png"))[:3]
    np.savez(tmp_path / "a.npz", x_train=images[:5], x_test=images[5:8])
    sources = open_inputs([*files, tmp_path / "a.npz", test], color="gray")
    assert [s.n_images for s in sources] == [5, 3, 297, 3]
    assert [s.split for s in sources] == ["train", "test", None, None]
    assert sources[-1].paths == files


def test_nearest_two_margin(digit_folders):
    images, labels = _digits_images()
    model = ClusterClassifier(n_clusters=10, random_state=0).fit(images, labels)
    clusters, distance, margin = nearest_two(model, images[:100])
    full = model.cluster_distances(images[:100])
    np.testing.assert_array_equal(clusters, full.argmin(axis=1))
    np.testing.assert_allclose(distance + margin, np.sort(full, axis=1)[:, 1])


def test_rgb_jpeg_folder(tmp_path, capsys):
    images, labels = _digits_images()
    folder = _write_class_folder(tmp_path / "rgb", images[:600], labels[:600], ".jpg", color=True)
    model_path = tmp_path / "rgb.kmi"
    code, _, err = run_kmi(capsys, "fit", folder, "--k", 30, "--color", "rgb", "--out", model_path)
    assert code == 0, err
    model = load_model(model_path)
    assert model.image_shape_ == (8, 8, 3)
    assert model.metadata_["preprocessing"]["color"] == "rgb"
    assert evaluate(model, open_source(folder, color="rgb")).results["accuracy"] > 0.8
    code, out, _ = run_kmi(capsys, "predict", model_path, folder / "digit-3")
    assert code == 0 and out.count("\n") == 1 + (labels[:600] == 3).sum()


def test_show_draws_centroids_and_members(digit_folders, tmp_path, capsys):
    train, _, _, _ = digit_folders
    model_path = tmp_path / "m.kmi"
    assert run_kmi(capsys, "fit", train, "--k", 12, "--out", model_path)[0] == 0
    code, _, err = run_kmi(capsys, "show", model_path, "--out", tmp_path / "c.png")
    assert code == 0, err
    code, _, err = run_kmi(capsys, "show", model_path, train, "--per-cluster", 5,
                           "--out", tmp_path / "members.png")
    assert code == 0, err
    with Image.open(tmp_path / "c.png") as small, Image.open(tmp_path / "members.png") as big:
        assert big.size[1] > small.size[1]


def test_evaluate_writes_report(digit_folders, tmp_path, capsys):
    train, test, _, _ = digit_folders
    model_path = tmp_path / "m.kmi"
    assert run_kmi(capsys, "fit", train, "--k", 20, "--out", model_path)[0] == 0
    code, out, err = run_kmi(capsys, "evaluate", model_path, test, "--out", tmp_path / "ev")
    assert code == 0, err
    assert "confusion matrix" in out
    for name in ("confusion.png", "centroids.png", "samples.png", "results.json", "report.html"):
        assert (tmp_path / "ev" / name).is_file(), name


def test_unlabelled_flat_folder_fits_clusters_only(tmp_path, capsys):
    images, _ = _digits_images()
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, image in enumerate(images[:200]):
        Image.fromarray(image).save(flat / f"{i:04d}.png")
    model_path = tmp_path / "flat.kmi"
    code, _, err = run_kmi(capsys, "fit", flat, "--k", 8, "--out", model_path)
    assert code == 0, err
    model = load_model(model_path)
    assert model.metadata_["training"] == {"dataset": "flat", "n_samples": 200, "labelled": False,
                                           "resized": False}
    np.testing.assert_array_equal(model.cluster_labels_, np.arange(8))
    code, _, err = run_kmi(capsys, "evaluate", model_path, flat)
    assert code == 2 and "has no labels" in err


def test_evaluate_refuses_a_model_of_other_labels(digit_folders, tmp_path):
    _, test, images, labels = digit_folders
    model = ClusterClassifier(n_clusters=10, random_state=0).fit(images, labels)
    # Said in words, not as numpy reprs (np.str_('3'), 'U').
    with pytest.raises(KMIError, match=r"are text \(such as 'digit-0'\) but the model's names are "
                                       r"numbers \(such as '0'\)$"):
        evaluate(model, open_source(test))


def test_scores_against_labels_the_model_does_not_name_warn(digit_folders):
    from kmeans_imagery.predict import score_clusters

    _, _, images, labels = digit_folders
    labels = np.array([f"d{label}" for label in labels])
    named = ClusterClassifier(n_clusters=10, random_state=0).fit(images, labels)
    clusters = named.predict_cluster(images)
    other = np.char.replace(labels, "d", "digit ")  # the same classes, named otherwise
    with pytest.warns(UserWarning, match=r"no label of 'scans' is one of the model's names"):
        assert score_clusters(named, other, clusters, "scans")["accuracy"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert score_clusters(named, labels, clusters, "scans")["accuracy"] > 0.5
