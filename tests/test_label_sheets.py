"""Label sheets: written from a model and a source, read back by index or by path."""

import csv

import numpy as np
import pytest

from kmeans_imagery import KMIError
from kmeans_imagery.cli import main
from kmeans_imagery.datasets import ArraySource, load_dataset
from kmeans_imagery.label_sheets import read_label_sheet
from kmeans_imagery.model_io import load_model


def test_label_sheet_round_trip(tmp_path, capsys):
    data = load_dataset("digits")
    assert main(["fit", "digits", "--k", "30", "--out", str(tmp_path / "m.kmi")]) == 0
    assert main(["label-sheet", str(tmp_path / "m.kmi"), "digits", "--per-cluster", "2",
                 "--out", str(tmp_path / "sheet")]) == 0
    sheet = tmp_path / "sheet" / "labels.csv"
    with sheet.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60 and {row["label"] for row in rows} == {""}
    assert (tmp_path / "sheet" / "sheet-001.png").is_file()
    # The person labels the first image of each cluster (here: the true label).
    named = set()
    for row in rows:
        if row["cluster"] not in named:
            row["label"] = f"digit {data.train_labels[int(row['index'])]}"
            named.add(row["cluster"])
    with sheet.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert main(["fit", "digits", "--k", "30", "--labels", str(sheet),
                 "--out", str(tmp_path / "named.kmi")]) == 0
    model = load_model(tmp_path / "named.kmi")
    assert set(model.classes_) <= {f"digit {d}" for d in range(10)}
    assert model.metadata_["fit_metrics"]["labels_used"] == 30
    predicted = model.predict(data.test_images)
    truth = np.array([f"digit {d}" for d in data.test_labels])
    assert (predicted == truth).mean() > 0.8


def test_read_label_sheet_errors(tmp_path):
    ten = ArraySource(np.zeros((10, 2, 2), np.uint8))
    path = tmp_path / "l.csv"
    path.write_text("index,label\n3,cat\n5,\n")
    indices, labels = read_label_sheet(path, ten)
    assert indices.tolist() == [3] and labels.tolist() == ["cat"]
    path.write_text("index,label\n1,7\n2,3\n")
    assert read_label_sheet(path, ten)[1].dtype.kind == "i"
    for text, message in [("index,label\n11,a\n", "not an image"), ("index,label\n1,\n", "no filled"),
                          ("idx,lab\n1,a\n", "columns"), ("index,label\nx,a\n", "not an image")]:
        path.write_text(text)
        with pytest.raises(KMIError, match=message):
            read_label_sheet(path, ten)
    with pytest.raises(KMIError, match="does not exist"):
        read_label_sheet(tmp_path / "none.csv", ten)


def test_an_explored_model_is_named_from_its_sheet_without_fitting_again(tmp_path, capsys):
    from explore_data import write_digits_folder
    from kmeans_imagery.datasets import load_images

    files = write_digits_folder(tmp_path / "scans", 12, classes=(0, 1, 6), flat=True)
    assert main(["explore", str(tmp_path / "scans"), "--k", "3", "--out",
                 str(tmp_path / "explored")]) == 0
    model_path = tmp_path / "explored" / "model.kmi"
    assert main(["label-sheet", str(model_path), str(tmp_path / "scans"), "--per-cluster", "1",
                 "--out", str(tmp_path / "sheet")]) == 0
    sheet = tmp_path / "sheet" / "labels.csv"
    rows = list(csv.DictReader(sheet.open()))
    for row in rows:  # the file names hold the digit: d6-0013.png
        row["label"] = {"0": "zero", "1": "one", "6": "six"}[row["path"].split("/d")[-1][0]]
    with sheet.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    named_path = tmp_path / "named.kmi"
    args = ["name", str(model_path), str(tmp_path / "scans"), "--labels", str(sheet), "--out",
            str(named_path)]
    assert main(args) == 0
    assert "named 3 clusters as 3 classes from 3 labelled images" in capsys.readouterr().out
    before, named = load_model(model_path), load_model(named_path)
    images = load_images(files, color="gray").images
    np.testing.assert_array_equal(named.predict_cluster(images), before.predict_cluster(images))
    truth = np.array([{"0": "zero", "1": "one", "6": "six"}[f.name[1]] for f in files])
    assert (named.predict(images) == truth).mean() > 0.9
    assert named.metadata_["fit_metrics"] == {"labels_used": 3}
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert main(["organize", str(named_path), str(tmp_path / "scans"), "--into",
                 str(tmp_path / "sorted")]) == 0
    assert sorted(p.name for p in (tmp_path / "sorted").iterdir() if p.is_dir()) == [
        "one", "six", "zero"]


def test_sheet_paths_match_the_same_files_however_they_are_written(tmp_path, monkeypatch):
    from PIL import Image

    from kmeans_imagery.datasets import open_source

    data = tmp_path / "photos"
    for name in ("d/a.png", "b/a.png", "b/c.png"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), len(name), np.uint8)).save(data / name)
    source = open_source(data)  # paths as given: absolute here
    sheet = tmp_path / "sheets" / "l.csv"
    sheet.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    for written in (str(data / "b" / "c.png"), "photos/b/c.png", "./photos/b/c.png",
                    "../photos/b/c.png", "b/c.png", "c.png"):
        sheet.write_text(f"path,label\n{written},cat\n")
        found = read_label_sheet(sheet, source)[0].tolist()
        assert found == [source.paths.index(data / "b" / "c.png")], written
    sheet.write_text("path,label\na.png,cat\n")  # two images end with a.png
    with pytest.raises(KMIError, match="a.png is not an image of"):
        read_label_sheet(sheet, source)


def test_a_spreadsheet_csv_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("\ufeffindex,label\r\n3,cat\r\n".encode())
    indices, labels = read_label_sheet(path, ArraySource(np.zeros((10, 2, 2), np.uint8)))
    assert indices.tolist() == [3] and labels.tolist() == ["cat"]


def test_an_image_labelled_twice(tmp_path):
    ten = ArraySource(np.zeros((10, 2, 2), np.uint8))
    path = tmp_path / "l.csv"
    path.write_text("index,label\n3,cat\n1,dog\n3,cat\n")
    indices, labels = read_label_sheet(path, ten)
    assert indices.tolist() == [1, 3] and labels.tolist() == ["dog", "cat"]
    path.write_text("index,label\n3,cat\n3,dog\n")
    with pytest.raises(KMIError, match="index 3 is labelled both 'cat' and 'dog'"):
        read_label_sheet(path, ten)
    path.write_text("path,label\nx.png,cat\n")
    with pytest.raises(KMIError, match="x.png has no index.*has no image files"):
        read_label_sheet(path, ten)
