"""Every bad input a user can give ``kmi``: one line on stderr, exit code 2, no traceback."""

import gzip
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from kmeans_imagery.cli import main
from kmeans_imagery.datasets import write_idx
from kmeans_imagery.errors import KMIError
from kmeans_imagery.labeling import ClusterClassifier
from kmeans_imagery.model_io import save_model


def _png(path, size=(8, 8), value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def _class_folder(root, n=12, size=(8, 8)):
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"class-{i % 2}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(path)
    return root


def _idx_folder(root, n_images=20, n_labels=20):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n_images, 6, 6), dtype=np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz",
                  rng.integers(0, 3, n_labels, dtype=np.uint8))
    return root


def _model(tmp_path, shape=(8, 8)):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, *shape), dtype=np.uint8)
    model = ClusterClassifier(n_clusters=3, random_state=0).fit(images, np.arange(30) % 2)
    return save_model(model, tmp_path / "model.kmi")


def missing_path(tmp_path):
    return ["fit", tmp_path / "nowhere", "--k", 2, "--out", tmp_path / "m.kmi"], "does not exist"


def empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return ["fit", tmp_path / "empty", "--k", 2, "--out", tmp_path / "m.kmi"], "empty"


def folder_without_images(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("hello")
    return ["fit", tmp_path / "docs", "--k", 2, "--out", tmp_path / "m.kmi"], "no image"


def corrupt_image(tmp_path):
    root = _class_folder(tmp_path / "imgs")
    (root / "class-0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return ["fit", root, "--k", 2, "--out", tmp_path / "m.kmi"], "broken.png"


def truncated_image(tmp_path):
    root = _class_folder(tmp_path / "imgs")
    good = (root / "class-1" / "001.png").read_bytes()
    (root / "class-1" / "cut.png").write_bytes(good[: len(good) // 2])
    return ["fit", root, "--k", 2, "--out", tmp_path / "m.kmi"], "cut.png"


def mixed_sizes(tmp_path):
    root = _class_folder(tmp_path / "imgs")
    _png(root / "class-0" / "zzz-big.png", size=(10, 12))
    return ["fit", root, "--k", 2, "--out", tmp_path / "m.kmi"], "zzz-big.png is 10x12; pass --size=HxW"


def idx_truncated(tmp_path):
    root = _idx_folder(tmp_path / "idx")
    path = root / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-50]))
    return ["fit", root, "--k", 2, "--out", tmp_path / "m.kmi"], "train-images-idx3-ubyte.gz"


def idx_wrong_magic(tmp_path):
    root = _idx_folder(tmp_path / "idx")
    path = root / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[0:2] = b"\x12\x34"
    path.write_bytes(gzip.compress(bytes(raw)))
    return ["fit", root, "--k", 2, "--out", tmp_path / "m.kmi"], "train-labels-idx1-ubyte.gz"


def idx_label_count(tmp_path):
    root = _idx_folder(tmp_path / "idx", n_images=20, n_labels=19)
    return ["fit", root, "--k", 2, "--out", tmp_path / "m.kmi"], "19"


def npy_with_nan(tmp_path):
    data = np.random.default_rng(0).random((10, 4, 4))
    data[3, 1, 1] = np.nan
    np.save(tmp_path / "x.npy", data)
    return ["fit", tmp_path / "x.npy", "--k", 2, "--out", tmp_path / "m.kmi"], "NaN"


def npy_with_inf(tmp_path):
    data = np.random.default_rng(0).random((10, 4, 4))
    data[0, 0, 0] = np.inf
    np.save(tmp_path / "x.npy", data)
    return ["fit", tmp_path / "x.npy", "--k", 2, "--out", tmp_path / "m.kmi"], "inf"


def labels_wrong_length(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 4, 4), np.uint8), labels=np.arange(9))
    return ["fit", tmp_path / "d.npz", "--k", 2, "--out", tmp_path / "m.kmi"], "9"


def k_zero(tmp_path):
    return ["fit", "digits", "--k", 0, "--out", tmp_path / "m.kmi"], "--k must be a positive integer"


def k_too_large(tmp_path):
    return ["fit", "digits", "--k", 100000, "--out", tmp_path / "m.kmi"], "more than the 1437 images"


def ks_junk(tmp_path):
    return ["sweep", "--dataset", "digits", "--ks", "ten"], "'ten' is not a positive integer"


def unwritable_output(tmp_path):
    (tmp_path / "file").write_text("x")
    return ["run", "--dataset", "digits", "--out", tmp_path / "file" / "sub"], "cannot write"


def unwritable_model(tmp_path):
    (tmp_path / "file").write_text("x")
    return ["fit", "digits", "--k", 3, "--out", tmp_path / "file" / "m.kmi"], "cannot write"


def existing_model(tmp_path):
    path = _model(tmp_path)
    return ["fit", "digits", "--k", 3, "--out", path], "already exists; use --force"


def predict_other_size(tmp_path):
    path = _model(tmp_path, shape=(8, 8))
    _png(tmp_path / "new" / "a.png", size=(10, 10))
    return ["predict", path, tmp_path / "new"], "model expects 8x8; pass --resize to resize them"


def predict_mixed_sizes(tmp_path):
    path = _model(tmp_path, shape=(8, 8))
    _png(tmp_path / "new" / "a.png", size=(8, 8))
    _png(tmp_path / "new" / "b.png", size=(10, 10))
    return ["predict", path, tmp_path / "new"], "b.png is 10x10; pass --resize to resize them all"


def label_sheet_other_size(tmp_path):
    path = _model(tmp_path, shape=(8, 8))
    _png(tmp_path / "new" / "a.png", size=(10, 10))
    return ["label-sheet", path, tmp_path / "new", "--out", tmp_path / "sheet"], "10x10"


def name_sheet_of_other_images(tmp_path):
    path = _model(tmp_path, shape=(8, 8))
    _png(tmp_path / "new" / "a.png")
    (tmp_path / "labels.csv").write_text("index,path,label\n0,/elsewhere/b.png,cat\n")
    return (["name", path, tmp_path / "new", "--labels", tmp_path / "labels.csv", "--out",
             tmp_path / "named.kmi"], "/elsewhere/b.png is not an image of new")


def predict_missing_file(tmp_path):
    return ["predict", _model(tmp_path), tmp_path / "none.png"], "does not exist"


def model_truncated(tmp_path):
    path = _model(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    return ["predict", path, tmp_path], "model.kmi"


def model_newer(tmp_path):
    path = _model(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    metadata = json.loads(members["kmi-model.json"])
    metadata["format_version"] = 99
    members["kmi-model.json"] = json.dumps(metadata).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return ["show", path, "--out", tmp_path / "c.png"], "newer kmeans-imagery"


def model_pickled(tmp_path):
    path = _model(tmp_path)
    buffer = io.BytesIO()
    np.save(buffer, np.array([print], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("arrays/cluster_centers.npy", buffer.getvalue())
    return ["show", path, "--out", tmp_path / "c.png"], "pickled objects"


def not_a_model(tmp_path):
    (tmp_path / "x.kmi").write_text("hello")
    return ["show", tmp_path / "x.kmi"], "not a readable model file"


def unknown_dataset(tmp_path):
    return ["run", "--dataset", "imagenet-22k", "--out", tmp_path], "imagenet-22k"


def explore_k_range_too_wide(tmp_path):
    _class_folder(tmp_path / "three", n=3)
    return ["explore", tmp_path / "three", "--out", tmp_path / "out"], "--k-range"


def explore_k_too_large(tmp_path):
    _class_folder(tmp_path / "imgs")
    return ["explore", tmp_path / "imgs", "--k", 20, "--out", tmp_path / "out"], "--k=20"


def run_missing_data(tmp_path):
    return ["run", tmp_path / "nowhere", "--out", tmp_path / "runs" / "out"], "does not exist"


def evaluate_missing_model(tmp_path):
    _class_folder(tmp_path / "imgs")
    return ["evaluate", tmp_path / "none.kmi", tmp_path / "imgs", "--out", tmp_path / "report"], "none.kmi"


def bad_size(tmp_path):
    _class_folder(tmp_path / "imgs")
    return ["fit", tmp_path / "imgs", "--k", 2, "--size", "big", "--out", tmp_path / "m.kmi"], "--size='big'"


def model_malformed_metadata(tmp_path):
    path = _model(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    metadata = json.loads(members["kmi-model.json"])
    metadata["preprocessing"]["image_shape"] = ["eight", 8]
    members["kmi-model.json"] = json.dumps(metadata).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return ["predict", path, tmp_path], "model metadata field 'image_shape' is malformed"


def model_is_a_folder(tmp_path):
    (tmp_path / "model.kmi").mkdir()
    _png(tmp_path / "new" / "a.png")
    return ["predict", tmp_path / "model.kmi", tmp_path / "new"], "is a folder, not a model file"


def size_zero(tmp_path):
    _class_folder(tmp_path / "imgs")
    return ["fit", tmp_path / "imgs", "--k", 2, "--size", "0", "--out", tmp_path / "m.kmi"], "--size='0'"


def convert_force_onto_the_images(tmp_path):
    root = _class_folder(tmp_path / "imgs")
    return ["convert", root, root, "--force"], "--force replaces only a store"


def convert_force_onto_a_file(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 4, 4), np.uint8))
    return ["convert", tmp_path / "x.npy", tmp_path / "x.npy", "--force"], "is not a Zarr store"


def run_ks_too_large(tmp_path):
    return (["run", "digits", "--ks", "10,5000", "--stability-seeds", 0, "--out", tmp_path / "r"],
            "--ks: K=5000 is larger than the 1437 images")


def run_label_budget_too_large(tmp_path):
    return (["run", "digits", "--ks", "10", "--label-budget", "5000", "--stability-seeds", 0,
             "--out", tmp_path / "r"], "--label-budget: K=5000")


def evaluate_split_test_without_one(tmp_path):
    _class_folder(tmp_path / "imgs")
    return (["evaluate", _model(tmp_path), tmp_path / "imgs", "--split", "test"],
            "--split test: ")


# A name longer than file systems allow (255 bytes) fails every call on the path, even exists().
def out_name_too_long(tmp_path):
    return ["fit", "digits", "--k", 3, "--out", tmp_path / ("m" * 300 + ".kmi")], "--out: cannot use"


def out_folder_name_too_long(tmp_path):
    return ["run", "digits", f"--out={tmp_path / ('r' * 300)}"], "--out: cannot use"


def data_name_too_long(tmp_path):
    return ["predict", _model(tmp_path), tmp_path / ("d" * 300)], "error: cannot use"


CASES = [
    missing_path, empty_folder, folder_without_images, corrupt_image, truncated_image, mixed_sizes,
    predict_mixed_sizes, label_sheet_other_size, name_sheet_of_other_images, idx_truncated,
    idx_wrong_magic, idx_label_count,
    npy_with_nan, npy_with_inf,
    labels_wrong_length, k_zero, k_too_large, ks_junk, unwritable_output, unwritable_model,
    existing_model, predict_other_size, predict_missing_file, model_truncated, model_newer,
    model_pickled, not_a_model, unknown_dataset, bad_size,
    explore_k_range_too_wide, explore_k_too_large, run_missing_data, evaluate_missing_model,
    model_malformed_metadata, model_is_a_folder, size_zero, convert_force_onto_the_images,
    convert_force_onto_a_file, run_ks_too_large, run_label_budget_too_large,
    evaluate_split_test_without_one, out_name_too_long, out_folder_name_too_long,
    data_name_too_long,
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    args, expected = case(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main([str(arg) for arg in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("kmi: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err
    # nothing half-written is left behind
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_skip_bad_counts_the_skipped_files(tmp_path, capsys):
    root = _class_folder(tmp_path / "imgs")
    (root / "class-0" / "broken.png").write_bytes(b"garbage")
    (root / "class-0" / ".hidden.png").write_bytes(b"garbage")
    (root / "class-1" / "readme.txt").write_text("not an image")
    code = main(["fit", str(root), "--k", "2", "--out", str(tmp_path / "m.kmi"), "--skip-bad"])
    err = capsys.readouterr().err
    assert code == 0
    assert "1 hidden" in err and "1 non-image" in err and "1 bad" in err


def test_predict_resizes_only_when_asked(tmp_path, capsys):
    path = _model(tmp_path, shape=(8, 8))
    _png(tmp_path / "new" / "a.png", size=(10, 10))
    assert main(["predict", str(path), str(tmp_path / "new")]) == 2
    assert main(["predict", str(path), str(tmp_path / "new"), "--resize"]) == 0
    assert capsys.readouterr().out.count("\n") == 2


def test_force_replaces_an_existing_model(tmp_path, capsys):
    path = _model(tmp_path)
    assert main(["fit", "digits", "--k", "3", "--out", str(path), "--force"]) == 0


def test_debug_after_the_command_shows_the_error_traceback(tmp_path):
    # --debug is kmi's own option; typed after the command it used to fail as an unknown option.
    path = _model(tmp_path, shape=(8, 8))
    _png(tmp_path / "new" / "a.png", size=(10, 10))
    with pytest.raises(KMIError, match="the model expects 8x8"):
        main(["predict", str(path), str(tmp_path / "new"), "--debug"])


def test_fit_finds_an_unwritable_output_before_fitting(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(["fit", "digits", "--k", "3", "--out", str(tmp_path / "file" / "m.kmi")])
    out, err = capsys.readouterr()
    assert code == 2 and "cannot write" in err
    assert "fitting" not in out


def test_fit_makes_the_model_folder(tmp_path, capsys):
    assert main(["fit", "digits", "--k", "3", "--out", str(tmp_path / "a" / "b" / "m.kmi")]) == 0
    assert (tmp_path / "a" / "b" / "m.kmi").is_file()


def test_fit_error_leaves_no_model_folder(tmp_path, capsys):
    assert main(["fit", "digits", "--k", "0", "--out", str(tmp_path / "a" / "b" / "m.kmi")]) == 2
    assert list(tmp_path.iterdir()) == []
