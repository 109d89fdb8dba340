"""What a user meets around the commands: interrupts, help, where outputs and messages go."""

import numpy as np
import pytest
from PIL import Image

from kmeans_imagery.cli import main
from kmeans_imagery.labeling import ClusterClassifier
from kmeans_imagery.model_io import save_model


def _model(path, k=3):
    images = np.random.default_rng(0).integers(0, 256, (60, 8, 8), dtype=np.uint8)
    model = ClusterClassifier(n_clusters=k, random_state=0).fit(images, np.arange(60) % 2)
    return save_model(model, path)


def _image_folder(root, n=12):
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"class-{i % 2}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
    return root


def test_interrupt_is_one_line_exit_130_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr("kmeans_imagery.cli.models.open_source", interrupted)
    out = tmp_path / "models" / "m.kmi"
    assert main(["fit", "digits", "--k", "3", "--out", str(out)]) == 130
    # Not click's blank line first: piped stderr gets this one line only.
    assert capsys.readouterr().err == "kmi: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_interrupted_convert_leaves_no_folder(tmp_path, capsys, monkeypatch):
    def interrupted(*_, **__):
        raise KeyboardInterrupt

    np.save(tmp_path / "images.npy", np.zeros((20, 8, 8), np.uint8))
    # Called once the store's folder is made and its temporary store begun.
    monkeypatch.setattr("kmeans_imagery.datasets.zarr.open_progress", interrupted)
    assert main(["convert", str(tmp_path / "images.npy"), str(tmp_path / "new" / "s.zarr")]) == 130
    assert capsys.readouterr().err == "kmi: interrupted\n"
    assert [p.name for p in tmp_path.iterdir()] == ["images.npy"]


def test_bare_kmi_shows_the_help(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "kmi: error" not in captured.err
    assert captured.err.startswith("Usage: kmi") and "\nCommands:\n" in captured.err


def test_paths_are_printed_as_given_not_as_markup(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    out = tmp_path / "runs[" / "b] :thumbs_up: [red]m.kmi"  # "[/b]" closes no tag: rich raised
    assert main(["fit", "digits", "--k", "3", "--out", str(out)]) == 0
    assert f"saved model to {out}\n" in capsys.readouterr().out
    assert out.is_file()


def test_file_outputs_get_their_folder_made(tmp_path, capsys):
    model = _model(tmp_path / "m.kmi")
    images = _image_folder(tmp_path / "imgs")
    assert main(["predict", str(model), str(images), "--out", str(tmp_path / "a" / "p.csv")]) == 0
    assert main(["show", str(model), "--out", str(tmp_path / "b" / "c.png")]) == 0
    for path in ("a/p.csv", "b/c.png"):
        assert (tmp_path / path).stat().st_size > 0, path
    # ... and removed again when the command fails.
    assert main(["predict", str(model), str(tmp_path / "none"), "--out",
                 str(tmp_path / "e" / "p.csv")]) == 2
    assert not (tmp_path / "e").exists()


def test_label_sheet_force_leaves_no_sheet_of_the_earlier_run(tmp_path, capsys):
    images = np.random.default_rng(1).integers(0, 256, (200, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    out = tmp_path / "sheet"
    out.mkdir()
    (out / "sheet-notes.png").write_bytes(b"")  # not a contact sheet: kept
    common = [str(tmp_path / "images.npy"), "--out", str(out), "--per-cluster", "1", "--force"]
    assert main(["label-sheet", str(_model(tmp_path / "big.kmi", k=40)), *common]) == 0
    assert (out / "sheet-002.png").is_file()
    assert main(["label-sheet", str(_model(tmp_path / "small.kmi", k=3)), *common]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["labels.csv", "sheet-001.png",
                                                      "sheet-notes.png"]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_skipped_files_are_reported_on_stderr(tmp_path, capsys, command):
    images = _image_folder(tmp_path / "imgs", n=20)
    (images / "class-0" / "broken.png").write_bytes(b"garbage")
    args = [command, str(images), "--ks", "2", "--stability-seeds", "0", "--skip-bad"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "skipped files in imgs: 1 bad" in captured.err
    assert "skipped files" not in captured.out


def test_size_help_mentions_onnx_only_where_there_are_features(capsys):
    assert main(["convert", "--help"]) == 0
    assert "onnx" not in capsys.readouterr().out
    assert main(["fit", "--help"]) == 0
    assert "with onnx features: the network's input size" in capsys.readouterr().out
