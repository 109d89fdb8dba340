"""kmi similar: nearest images to queries, CSV and contact sheet."""

import csv

import numpy as np
import pytest
from PIL import Image

from explore_data import write_digits_folder
from kmeans_imagery import ClusterClassifier, KMIError, save_model
from kmeans_imagery.cli import main
from kmeans_imagery.datasets import load_images
from kmeans_imagery.explore import find_similar


def test_each_query_finds_itself_first_then_its_class(tmp_path):
    files = write_digits_folder(tmp_path / "data", 20, classes=(0, 1, 7))
    images = load_images(files, color="gray").images
    save_model(ClusterClassifier(3, random_state=0).fit(images, None), tmp_path / "m.kmi")
    queries = [files[3], files[25]]
    rows = find_similar(tmp_path / "m.kmi", tmp_path / "data", queries, top=4,
                        out=tmp_path / "s.csv", sheet=tmp_path / "s.png", batch_size=7)
    assert len(rows) == 8
    for query in queries:
        mine = [r for r in rows if r["query"] == str(query)]
        assert [r["rank"] for r in mine] == [1, 2, 3, 4]
        assert mine[0]["path"] == str(query) and mine[0]["distance"] == 0
        assert all(r["path"].split("/")[-2] == query.parent.name for r in mine)
        assert all(a["distance"] <= b["distance"] for a, b in zip(mine, mine[1:], strict=False))
    with open(tmp_path / "s.csv", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 8
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_loose_images_beside_sub_folders_are_searched_and_top_beyond_data_lists_all(tmp_path):
    """A loose photo that is also the query is found first; --top past DATA lists every image."""
    files = write_digits_folder(tmp_path / "data", 5, classes=(0, 1))
    loose = tmp_path / "data" / "loose.png"
    loose.write_bytes(files[7].read_bytes())
    images = load_images(files, color="gray").images
    save_model(ClusterClassifier(2, random_state=0).fit(images, None), tmp_path / "m.kmi")
    rows = find_similar(tmp_path / "m.kmi", tmp_path / "data", [loose], top=50)
    assert len(rows) == 11 and [r["rank"] for r in rows] == list(range(1, 12))
    assert {rows[0]["path"], rows[1]["path"]} == {str(loose), str(files[7])}
    assert rows[0]["distance"] == rows[1]["distance"] == 0


def test_cli_similar_prints_csv(tmp_path, capsys):
    files = write_digits_folder(tmp_path / "data", 10, classes=(2, 3))
    images = load_images(files, color="gray").images
    save_model(ClusterClassifier(2, random_state=0).fit(images, None), tmp_path / "m.kmi")
    assert main(["similar", str(tmp_path / "m.kmi"), str(tmp_path / "data"), str(files[0]),
                 "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].strip() == "query,rank,path,distance" and len(lines) == 3
    capsys.readouterr()
    assert main(["similar", str(tmp_path / "m.kmi"), str(tmp_path / "data"),
                 str(tmp_path / "missing.png")]) == 2
    assert capsys.readouterr().err == f"kmi: error: query image {tmp_path / 'missing.png'} does not exist\n"


def test_unreadable_files_are_skipped_without_shifting_the_matches(tmp_path, capsys):
    files = write_digits_folder(tmp_path / "data", 10, classes=(2, 3))
    images = load_images(files, color="gray").images
    save_model(ClusterClassifier(2, random_state=0).fit(images, None), tmp_path / "m.kmi")
    broken = files[0].parent / "000-broken.png"  # first in its batch: the rest would shift
    broken.write_bytes(b"not a PNG")
    queries = [files[1], files[15]]
    with pytest.warns(UserWarning, match="skipped 1 unreadable file"):
        rows = find_similar(tmp_path / "m.kmi", tmp_path / "data", queries, top=2,
                            skip_bad=True, sheet=tmp_path / "s.png", batch_size=4)
    assert [r["path"] for r in rows if r["rank"] == 1] == [str(q) for q in queries]
    assert all(r["path"] != str(broken) for r in rows)
    args = ["similar", str(tmp_path / "m.kmi"), str(tmp_path / "data"), str(files[1])]
    assert main(args) == 2 and "--skip-bad" in capsys.readouterr().err
    assert main([*args, "--skip-bad"]) == 0
    assert "kmi: warning: skipped 1 unreadable file(s)" in capsys.readouterr().err
    # --skip-bad is about DATA: an unreadable query is an error of its own, with no such advice.
    assert main([*args[:3], str(broken), "--skip-bad"]) == 2
    assert capsys.readouterr().err == f"kmi: error: query image {broken} cannot be read as an image\n"


def test_outputs_are_checked_before_anything_is_written(tmp_path, capsys):
    files = write_digits_folder(tmp_path / "data", 10, classes=(2, 3))
    images = load_images(files, color="gray").images
    save_model(ClusterClassifier(2, random_state=0).fit(images, None), tmp_path / "m.kmi")
    args = ["similar", str(tmp_path / "m.kmi"), str(tmp_path / "data"), str(files[0])]
    for extra, message in (
            (["--out", str(tmp_path / "x.png"), "--sheet", str(tmp_path / "x.png")],
             "are the same file"),
            (["--sheet", str(tmp_path / "s.jpg")], "must be a .png file")):
        assert main([*args, *extra]) == 2
        assert message in capsys.readouterr().err
    # A search that fails removes the folders it made for its outputs.
    outputs = ["--out", str(tmp_path / "new" / "s.csv"),
               "--sheet", str(tmp_path / "newer" / "deeper" / "s.png")]
    assert main([*args[:2], str(tmp_path / "no-such-data"), *args[3:], *outputs]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "m.kmi"]
    # Outputs into folders that do not exist yet: they are made, as kmi predict's.
    assert main([*args, "--out", str(tmp_path / "new" / "s.csv"), "--sheet",
                 str(tmp_path / "newer" / "s.png")]) == 0
    assert (tmp_path / "new" / "s.csv").is_file() and (tmp_path / "newer" / "s.png").is_file()


def test_a_query_folder_or_one_path(tmp_path):
    files = write_digits_folder(tmp_path / "data", 6, classes=(2, 3))
    images = load_images(files, color="gray").images
    model = ClusterClassifier(2, random_state=0).fit(images, None)
    with pytest.raises(KMIError, match="is a folder"):
        find_similar(model, tmp_path / "data", [files[0].parent])
    rows = find_similar(model, tmp_path / "data", str(files[0]), top=1)
    assert [(r["query"], r["path"]) for r in rows] == [(str(files[0]), str(files[0]))]


def test_images_of_another_size_need_resize_unless_the_model_was_fitted_resized(tmp_path,
                                                                               capsys):
    files = write_digits_folder(tmp_path / "data", 6, classes=(2, 3))  # 16 x 16
    small = load_images(files, color="gray", size=(8, 8)).images
    save_model(ClusterClassifier(2, random_state=0).fit(small, None), tmp_path / "m.kmi")
    args = ["similar", str(tmp_path / "m.kmi"), str(tmp_path / "data"), str(files[0])]
    assert main(args) == 2
    assert "is 16x16 but the model expects 8x8; pass --resize" in capsys.readouterr().err
    assert main([*args, "--resize"]) == 0
    organize_args = ["organize", str(tmp_path / "m.kmi"), str(tmp_path / "data"), "--into",
                     str(tmp_path / "sorted"), "--dry-run"]
    assert main(organize_args) == 2 and "pass --resize" in capsys.readouterr().err
    assert main([*organize_args, "--resize"]) == 0


def test_a_named_dataset_is_searched_in_its_data_dir(tmp_path, capsys):
    from kmeans_imagery.datasets import write_idx
    from kmeans_imagery.datasets.idx import IDX_FILES

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    (tmp_path / "idx").mkdir()
    for name, array in zip(IDX_FILES, (images[:20], np.zeros(20, np.uint8), images[20:],
                                       np.zeros(10, np.uint8)), strict=True):
        write_idx(tmp_path / "idx" / name, array)
    save_model(ClusterClassifier(2, random_state=0).fit(images, None), tmp_path / "m.kmi")
    Image.fromarray(images[25]).save(tmp_path / "query.png")
    assert main(["similar", str(tmp_path / "m.kmi"), "mnist", str(tmp_path / "query.png"),
                 "--top", "1", "--data-dir", str(tmp_path / "idx")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1].split(",")[2].endswith("#test:5")
