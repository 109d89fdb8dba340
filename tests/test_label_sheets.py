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


TEN = ArraySource(np.zeros((10, 2, 2), np.uint8))


@pytest.mark.parametrize("data", [
    "\ufeffIndex;Path;Cluster;Distance;Label\r\n3;;0;1,5;cat\r\n1;;1;2,5;dog\r\n".encode(),
    b"sep=;\r\nindex;label\r\n3;cat\r\n1;dog\r\n",
    b"label,comment, INDEX ,,\r\ncat,the tabby,3,,\r\ndog,,1,,\r\n,,,,\r\n,,,,\r\n",
    "index\tpath\tlabel\r\n3\t\tcat\r\n1\t\tdog\r\n".encode("utf-16"),
    b'"index","label"\n"3","cat"\n"1","dog"\n',
], ids=["semicolons", "sep-line", "reordered", "utf-16-tabs", "quoted"])
def test_a_sheet_saved_by_a_spreadsheet_reads(tmp_path, data):
    path = tmp_path / "l.csv"
    path.write_bytes(data)
    indices, labels = read_label_sheet(path, TEN)
    assert indices.tolist() == [1, 3] and labels.tolist() == ["dog", "cat"]


def test_labels_are_tidied_and_question_marks_leave_an_image_unlabelled(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text('index,label\n1, golden \u00a0 retriever \n2,"a, b"\n3,?\n4, ??? \n5,Skip\n'
                    '6,cafe\u0301\n7,"two\nlines"\n8,caf\u00e9\n', encoding="utf-8")
    indices, labels = read_label_sheet(path, TEN)
    assert indices.tolist() == [1, 2, 6, 7, 8]
    assert labels.tolist() == ["golden retriever", "a, b", "caf\u00e9", "two lines", "caf\u00e9"]
    path.write_text("index,label\n1,?\n2,skip\n3,\n")
    with pytest.raises(KMIError, match="no filled-in label"):
        read_label_sheet(path, TEN)


@pytest.mark.parametrize(("cells", "expected"), [
    (("7", "12", "-3"), [7, 12, -3]),
    (("007", "12", "1"), ["007", "12", "1"]),
    (("+5", "3", "1"), ["+5", "3", "1"]),
    (("\u00b2", "--5", "1"), ["\u00b2", "--5", "1"]),
    (("99999999999999999999", "3", "1"), ["99999999999999999999", "3", "1"]),
])
def test_only_whole_numbers_written_as_such_read_as_integers(tmp_path, cells, expected):
    path = tmp_path / "l.csv"
    path.write_text("index,label\n" + "".join(f"{i},{cell}\n" for i, cell in enumerate(cells)),
                    encoding="utf-8")
    labels = read_label_sheet(path, TEN)[1]
    assert labels.tolist() == expected
    assert labels.dtype.kind == ("i" if isinstance(expected[0], int) else "U")


@pytest.mark.parametrize("index", ["\u00b2", "\u0661", "1.5", "-1"])
def test_an_index_that_is_not_a_position_is_a_clear_error(tmp_path, index):
    path = tmp_path / "l.csv"
    path.write_text(f"index,label\n{index},cat\n", encoding="utf-8")
    with pytest.raises(KMIError, match="is not an image of the 10 images"):
        read_label_sheet(path, TEN)


def test_a_sheet_with_two_label_columns_is_refused(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("index,Label,label\n1,cat,dog\n")
    with pytest.raises(KMIError, match="two 'label' columns"):
        read_label_sheet(path, TEN)


def test_each_row_is_matched_by_its_path_when_it_has_one(tmp_path):
    from PIL import Image

    from kmeans_imagery.datasets import open_source

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(4):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(data / f"{i}.png")
    source = open_source(data)
    sheet = tmp_path / "l.csv"
    # A path (with the spaces a spreadsheet left) wins over a stale index; a row without a
    # path is found by its index.
    sheet.write_text(f"index,path,label\n0, {data / '3.png'} ,cat\n1,,dog\n")
    indices, labels = read_label_sheet(sheet, source)
    assert indices.tolist() == [1, 3] and labels.tolist() == ["dog", "cat"]
    sheet.write_text(f"index,path,label\n1,{tmp_path / 'elsewhere.png'},cat\n2,,dog\n")
    with pytest.raises(KMIError, match="elsewhere.png is not an image of photos"):
        read_label_sheet(sheet, source)
    sheet.write_text("index,path,label\n,,cat\n")
    with pytest.raises(KMIError, match="neither an index nor a path"):
        read_label_sheet(sheet, source)


def test_a_sheet_of_files_whose_names_are_not_utf8_reads_back(tmp_path, capsys):
    import os

    from PIL import Image

    from kmeans_imagery.datasets import open_source

    data = tmp_path / "photos"
    data.mkdir()
    for name in (b"caf\xe9.png", b"b.png", b"c.png"):
        Image.fromarray(np.full((4, 4), len(name) * 20, np.uint8)).save(
            os.path.join(os.fsencode(data), name))
    assert main(["fit", str(data), "--k", "2", "--out", str(tmp_path / "m.kmi")]) == 0
    assert main(["label-sheet", str(tmp_path / "m.kmi"), str(data), "--per-cluster", "3",
                 "--out", str(tmp_path / "sheet")]) == 0
    sheet = tmp_path / "sheet" / "labels.csv"
    sheet.write_bytes(sheet.read_bytes().replace(b",\n", b",x\n"))
    indices, labels = read_label_sheet(sheet, open_source(data))
    assert indices.tolist() == [0, 1, 2] and labels.tolist() == ["x", "x", "x"]
    # A label typed into a sheet saved in a legacy encoding is refused, not misread.
    sheet.write_bytes("index,label\n1,caf\u00e9\n".encode("cp1252"))
    with pytest.raises(KMIError, match="not UTF-8 text; save the sheet as \"CSV UTF-8\""):
        read_label_sheet(sheet, open_source(data))


def test_a_sheet_of_a_dataset_with_two_splits_names_its_images(tmp_path):
    from kmeans_imagery import ClusterClassifier
    from kmeans_imagery.datasets import open_source
    from kmeans_imagery.label_sheets import name_from_sheet, write_label_sheet

    train, both = open_source("digits"), open_source("digits", split="all")
    model = ClusterClassifier(n_clusters=5, random_state=0).fit(both.read_all().images, None)
    written = write_label_sheet(model, both, tmp_path / "sheet", per_cluster=10)
    rows = list(csv.DictReader(written["csv"].open()))
    assert all(row["path"] == both.image_names([int(row["index"])])[0] for row in rows)
    assert any("#test:" in row["path"] for row in rows)
    sheet = tmp_path / "labels.csv"
    truth = both.labels
    sheet.write_text("path,label\n" + "".join(f"{row['path']},{truth[int(row['index'])]}\n"
                                              for row in rows))
    indices, labels = read_label_sheet(sheet, both)
    assert labels.tolist() == truth[indices].tolist()
    named, n_labelled = name_from_sheet(model, sheet, both)
    assert n_labelled == 50 and named.classes_.dtype.kind == "i"
    # The train split alone, or other data, lacks the test images: an error that names one.
    test_row = next(row["path"] for row in rows if "#test:" in row["path"])
    with pytest.raises(KMIError, match=f"{test_row} is not an image of digits-train"):
        read_label_sheet(sheet, train)
    with pytest.raises(KMIError, match="is not an image of other"):
        read_label_sheet(sheet, ArraySource(np.zeros((2000, 8, 8), np.uint8), name="other"))
    # A sheet of the train split reads on both splits: train comes first.
    sheet.write_text("path,label\nbundled#train:5,a\n")
    assert read_label_sheet(sheet, both)[0].tolist() == read_label_sheet(sheet, train)[0].tolist()


def test_a_shorter_sheet_leaves_no_contact_sheet_of_the_longer_one(tmp_path):
    from kmeans_imagery import ClusterClassifier
    from kmeans_imagery.datasets import open_source
    from kmeans_imagery.label_sheets import write_label_sheet

    source = open_source("digits")
    images = source.read_all().images
    out = tmp_path / "sheet"
    for k in (70, 10):  # three pages of 32 clusters, then one
        model = ClusterClassifier(n_clusters=k, random_state=0).fit(images, None)
        written = write_label_sheet(model, source, out, per_cluster=1)
    (out / "sheet-notes.png").write_bytes(b"kept: not a page")
    write_label_sheet(model, source, out, per_cluster=1)
    assert sorted(p.name for p in out.iterdir()) == ["labels.csv", "sheet-001.png",
                                                     "sheet-notes.png"]
    assert sorted(written) == ["csv", "sheet-001"]
