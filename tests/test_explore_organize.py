"""kmi organize: folders per cluster, manifest, dry run, and never a lost or overwritten file."""

import csv
import hashlib
import os
from pathlib import Path

import pytest

from explore_data import write_digits_folder
from kmeans_imagery import ClusterClassifier, KMIError, save_model
from kmeans_imagery.cli import main
from kmeans_imagery.datasets import load_images
from kmeans_imagery.explore import _organize, organize


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def setup(tmp_path):
    """60 digits in two sub-folders (two files share a name) and an unlabelled K=3 model."""
    data = tmp_path / "data"
    files = write_digits_folder(data / "a", 20, classes=(0, 1, 6), flat=True)
    (data / "b").mkdir()
    twin = data / "b" / files[0].name
    twin.write_bytes(files[5].read_bytes())  # same name, other content
    files = sorted([*files, twin])
    images = load_images(files, color="gray").images
    model = ClusterClassifier(3, random_state=0).fit(images, None)
    save_model(model, tmp_path / "m.kmi")
    return {"data": data, "files": files, "model": tmp_path / "m.kmi",
            "digests": sorted(_digest(f) for f in files), "into": tmp_path / "sorted"}


def _placed(into):
    return sorted(p for p in into.rglob("*") if p.is_file() and p.suffix == ".png")


def _manifest(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_link_mode_makes_a_folder_per_cluster_and_a_manifest(setup):
    done = organize(setup["model"], setup["data"], setup["into"], mode="link")
    placed = _placed(setup["into"])
    assert len(placed) == 61 and done["done"] == 61
    assert {p.parent.name for p in placed} <= {"cluster-0", "cluster-1", "cluster-2"}
    assert sorted(_digest(p) for p in placed) == setup["digests"]
    assert all(f.exists() for f in setup["files"])  # links leave the originals
    rows = _manifest(done["manifest"])
    assert len(rows) == 61 and {r["new_path"] for r in rows} == {str(p) for p in placed}
    assert all(os.path.samefile(r["old_path"], r["new_path"]) for r in rows)
    assert not (setup["into"] / _organize.PLAN_NAME).exists()


def test_dry_run_touches_nothing(setup):
    done = organize(setup["model"], setup["data"], setup["into"], mode="move", dry_run=True)
    assert len(done["rows"]) == 61 and done["manifest"] is None
    assert not setup["into"].exists() and all(f.exists() for f in setup["files"])


def test_collisions_never_overwrite(setup):
    """An existing read-only file at a target name, and two sources with one name."""
    plan = organize(setup["model"], setup["data"], setup["into"], dry_run=True)["rows"]
    target = next(r["new_path"] for r in plan if r["old_path"] == str(setup["files"][0]))
    target = setup["into"] / os.path.relpath(target, setup["into"].resolve())
    target.parent.mkdir(parents=True)
    target.write_bytes(b"someone else's file")
    target.chmod(0o444)
    done = organize(setup["model"], setup["data"], setup["into"], mode="copy")
    assert target.read_bytes() == b"someone else's file"
    placed = _placed(setup["into"])
    assert len(placed) == 62  # 61 copies + the file that was there
    assert sorted(_digest(p) for p in placed if p != target) == setup["digests"]
    names = {r["new_path"].rsplit("/", 1)[-1] for r in _manifest(done["manifest"])}
    stem = setup["files"][0].stem
    assert f"{stem}-1.png" in names  # the taken name got a suffix
    assert all(f.exists() for f in setup["files"])  # copies leave the originals


@pytest.mark.parametrize("mode", ["link", "copy", "move"])
def test_running_again_changes_nothing(setup, mode):
    # Two sources share a file name: the second run finds each in its own place (x.png, x-1.png).
    first = organize(setup["model"], setup["data"], setup["into"], mode=mode)
    before = {p: _digest(p) for p in _placed(setup["into"])}
    # A move leaves nothing behind: run on INTO itself, it finds every file sorted.
    data = setup["into"] if mode == "move" else setup["data"]
    again = organize(setup["model"], data, setup["into"], mode=mode)
    assert first["done"] == 61 and again["done"] == 0
    assert {p: _digest(p) for p in _placed(setup["into"])} == before
    if mode == "move":
        assert again["rows"] == [] and again["sorted_before"] == 61
        return
    assert again["already"] == 61
    assert sorted(r["new_path"] for r in _manifest(again["manifest"])) == sorted(
        r["new_path"] for r in _manifest(first["manifest"]))


@pytest.mark.parametrize("mode", ["link", "copy", "move"])
def test_sorting_into_a_folder_inside_the_data_twice(setup, mode):
    """The second run finds the sorted files inside DATA: they stay, and nothing is doubled."""
    into = setup["data"] / "sorted"
    organize(setup["model"], setup["data"], into, mode=mode)
    placed = {p: _digest(p) for p in _placed(into)}
    again = organize(setup["model"], setup["data"], into, mode=mode)
    assert again["sorted_before"] == 61 and again["done"] == 0
    assert again["already"] == (0 if mode == "move" else 61)
    assert {p: _digest(p) for p in _placed(into)} == placed
    assert sorted(placed.values()) == setup["digests"]


def test_sorting_a_folder_into_itself(setup):
    """INTO = DATA: loose files go into the cluster folders; a second run leaves them there."""
    data = setup["data"] / "a"
    loose = sorted(data.glob("*.png"))
    first = organize(setup["model"], data, data, mode="move")
    assert first["done"] == len(loose) and not any(f.exists() for f in loose)
    again = organize(setup["model"], data, data, mode="move")
    assert again["sorted_before"] == len(loose) and again["rows"] == []

    # New photos dropped beside the cluster folders are sorted by the next run, not passed over.
    new = data / "new.png"
    new.write_bytes(_placed(data)[0].read_bytes())
    third = organize(setup["model"], data, data, mode="move")
    assert third["done"] == 1 and not new.exists()


def test_loose_images_beside_sub_folders_are_sorted_too(setup):
    """Albums and loose photos: explore clusters them all, so every one is sorted."""
    loose = setup["data"] / "loose.png"
    loose.write_bytes(setup["files"][0].read_bytes())
    done = organize(setup["model"], setup["data"], setup["into"], mode="move")
    assert done["done"] == 62 and not loose.exists()
    assert len(_placed(setup["into"])) == 62


def test_a_move_never_takes_a_lookalike_for_the_file(setup):
    """A same-named, same-content file already in INTO is another file: the move keeps both."""
    plan = organize(setup["model"], setup["data"], setup["into"], mode="move", dry_run=True)["rows"]
    target = Path(plan[0]["new_path"])
    target.parent.mkdir(parents=True)
    target.write_bytes(Path(plan[0]["old_path"]).read_bytes())
    done = organize(setup["model"], setup["data"], setup["into"], mode="move")
    assert done["done"] == 61 and target.exists()
    assert sorted(_digest(p) for p in _placed(setup["into"]) if p != target) == setup["digests"]
    assert all(Path(r["new_path"]).exists() for r in _manifest(done["manifest"]))


def test_moving_symbolic_links_moves_the_links(setup, tmp_path):
    """DATA of links to files elsewhere: the links move, the files they point to stay."""
    links = tmp_path / "links"
    links.mkdir()
    for i, f in enumerate(setup["files"]):
        (links / f"{i:02d}-{f.name}").symlink_to(f)
    done = organize(setup["model"], links, setup["into"], mode="move")
    assert done["done"] == 61 and not any(links.iterdir())
    assert all(f.exists() for f in setup["files"])
    moved = [Path(r["new_path"]) for r in _manifest(done["manifest"])]
    assert all(p.is_symlink() and p.resolve() in setup["files"] for p in moved)
    assert all(Path(r["old_path"]).parent == links for r in _manifest(done["manifest"]))


def test_broken_or_unreadable_entries_in_the_way_are_left_alone(setup):
    plan = organize(setup["model"], setup["data"], setup["into"], dry_run=True)["rows"]
    target = Path(plan[0]["new_path"])
    target.parent.mkdir(parents=True)
    target.symlink_to(setup["into"] / "nowhere.png")
    for mode in ("copy", "move"):
        rows = organize(setup["model"], setup["data"], setup["into"], mode=mode,
                        dry_run=True)["rows"]
        assert rows[0]["new_path"] != str(target)
    done = organize(setup["model"], setup["data"], setup["into"], mode="copy")
    assert done["done"] == 61 and target.is_symlink()


@pytest.mark.parametrize("label", [" ..", "..", ".", "a/b", "c:d", "tab\there", "x" * 300])
def test_any_label_gives_a_folder_inside_into(tmp_path, label):
    files = write_digits_folder(tmp_path / "data", 10, classes=(0, 1))
    images = load_images(files, color="gray").images
    labels = [label if f.parent.name == "0" else "a_b" for f in files]
    save_model(ClusterClassifier(2, random_state=0).fit(images, labels), tmp_path / "m.kmi")
    into = tmp_path / "out" / "into"
    organize(tmp_path / "m.kmi", tmp_path / "data", into, mode="copy")
    placed = [p for p in (tmp_path / "out").rglob("*.png")]
    assert len(placed) == 20 and all(p.parent.parent == into for p in placed)
    assert len({p.parent.name for p in placed}) == 2  # two labels, two folders
    assert all(len(p.parent.name.encode()) <= 120 for p in placed)



def test_labels_differing_only_in_case_get_two_folders(tmp_path):
    """Cat and cat would be one folder on macOS and Windows: the second is cat-2."""
    files = write_digits_folder(tmp_path / "data", 10, classes=(0, 1))
    images = load_images(files, color="gray").images
    labels = ["Cat" if f.parent.name == "0" else "cat" for f in files]
    save_model(ClusterClassifier(2, random_state=0).fit(images, labels), tmp_path / "m.kmi")
    done = organize(tmp_path / "m.kmi", tmp_path / "data", tmp_path / "out", dry_run=True)
    assert {Path(r["new_path"]).parent.name for r in done["rows"]} == {"Cat", "cat-2"}

def _interrupt_after(monkeypatch, n_files):
    real = _organize._apply
    calls = []

    def interrupted(old, new, mode):
        if len(calls) == n_files:
            raise KeyboardInterrupt
        calls.append(old)
        return real(old, new, mode)

    monkeypatch.setattr(_organize, "_apply", interrupted)


def test_interrupted_move_finishes_when_run_again(setup, monkeypatch):
    _interrupt_after(monkeypatch, 10)
    with pytest.raises(KeyboardInterrupt):
        organize(setup["model"], setup["data"], setup["into"], mode="move")
    assert (setup["into"] / _organize.PLAN_NAME).exists()
    monkeypatch.undo()
    with pytest.raises(KMIError, match="--mode move"):
        organize(setup["model"], setup["data"], setup["into"], mode="copy")
    done = organize(setup["model"], setup["data"], setup["into"], mode="move")
    assert done["resumed"] and done["already"] == 10 and done["done"] == 51
    assert sorted(_digest(p) for p in _placed(setup["into"])) == setup["digests"]
    assert not any(f.exists() for f in setup["files"])
    assert len(_manifest(done["manifest"])) == 61


def test_a_file_gone_since_the_plan_is_left_out_and_the_run_finishes(setup, monkeypatch):
    _interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        organize(setup["model"], setup["data"], setup["into"], mode="copy")
    monkeypatch.undo()
    setup["files"][-1].unlink()
    done = organize(setup["model"], setup["data"], setup["into"], mode="copy")
    assert done["resumed"] and done["missing"] == 1 and done["done"] + done["already"] == 60
    assert len(_manifest(done["manifest"])) == 60


def test_an_interrupted_run_is_finished_only_with_its_own_data_and_model(setup, tmp_path,
                                                                         monkeypatch):
    _interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        organize(setup["model"], setup["data"], setup["into"], mode="link")
    monkeypatch.undo()
    with pytest.raises(KMIError, match="another data.*remove .kmi-organize-plan.json"):
        organize(setup["model"], setup["data"] / "a", setup["into"], mode="link")
    other = tmp_path / "other.kmi"
    save_model(ClusterClassifier(2, random_state=0).fit(
        load_images(setup["files"], color="gray").images, None), other)
    with pytest.raises(KMIError, match="another model"):
        organize(other, setup["data"], setup["into"], mode="link")
    done = organize(setup["model"], setup["data"], setup["into"], mode="link")
    assert done["resumed"] and done["already"] == 5 and done["done"] == 56


@pytest.mark.parametrize("plan", ['{"mode": "link", "rows": [{}]}', '{"mode": "link", "rows": 5}',
                                  '[1, 2]', 'not json'])
def test_a_damaged_plan_is_one_clear_error(setup, plan):
    setup["into"].mkdir()
    (setup["into"] / _organize.PLAN_NAME).write_text(plan)
    with pytest.raises(KMIError, match="not a readable organize plan"):
        organize(setup["model"], setup["data"], setup["into"], mode="link")


def test_a_move_out_of_a_folder_that_refuses_it_stops_before_any_file_moves(setup, monkeypatch):
    locked = setup["data"] / "b"
    real_access = os.access
    monkeypatch.setattr(_organize.os, "access",
                        lambda path, how: Path(path) != locked and real_access(path, how))
    with pytest.raises(KMIError, match=f"cannot move files out of {locked}"):
        organize(setup["model"], setup["data"], setup["into"], mode="move")
    assert all(f.exists() for f in setup["files"]) and not _placed(setup["into"])


def test_a_removal_that_fails_leaves_the_file_in_both_places_and_finishes_later(setup,
                                                                               monkeypatch):
    real_unlink = Path.unlink

    def refuse(path, missing_ok=False):
        if path.suffix == ".png":
            raise PermissionError(13, "Permission denied")
        return real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(KMIError, match="in both places"):
        organize(setup["model"], setup["data"], setup["into"], mode="move")
    with pytest.raises(KMIError, match="in both places"):  # run again: still one line
        organize(setup["model"], setup["data"], setup["into"], mode="move")
    monkeypatch.undo()
    done = organize(setup["model"], setup["data"], setup["into"], mode="move")
    assert done["resumed"] and done["done"] + done["already"] == 61
    assert sorted(_digest(p) for p in _placed(setup["into"])) == setup["digests"]
    assert not any(f.exists() for f in setup["files"])


def test_a_failing_target_stops_without_losing_the_file(setup, monkeypatch):
    """A target that refuses writes (read-only folder, full disk): the file stays where it was."""
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_organize.os, "link", refuse)
    with pytest.raises(KMIError, match="Permission denied.*run again"):
        organize(setup["model"], setup["data"], setup["into"], mode="move")
    monkeypatch.undo()
    assert all(f.exists() for f in setup["files"])
    done = organize(setup["model"], setup["data"], setup["into"], mode="move")
    assert done["done"] == 61 and sorted(_digest(p) for p in _placed(setup["into"])) == \
        setup["digests"]


def test_unwritable_destination_is_refused_before_any_file_moves(setup):
    setup["into"].write_text("a file, not a folder")
    with pytest.raises(KMIError, match="cannot write"):
        organize(setup["model"], setup["data"], setup["into"] / "x", mode="move")
    assert all(f.exists() for f in setup["files"])


def test_labelled_model_names_the_folders(tmp_path):
    files = write_digits_folder(tmp_path / "data", 15, classes=(0, 1))
    images = load_images(files, color="gray").images
    labels = [f.parent.name for f in files]
    save_model(ClusterClassifier(2, random_state=0).fit(images, labels), tmp_path / "m.kmi")
    organize(tmp_path / "m.kmi", tmp_path / "data", tmp_path / "out", mode="copy")
    assert {p.parent.name for p in _placed(tmp_path / "out")} == {"0", "1"}


def test_cli_organize(setup, capsys):
    assert main(["organize", str(setup["model"]), str(setup["data"]), "--into",
                 str(setup["into"]), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("\n") == 62
    assert main(["organize", str(setup["model"]), str(setup["data"]), "--into",
                 str(setup["into"]), "--mode", "copy"]) == 0
    assert "copy: 61 files" in capsys.readouterr().out


def test_unreadable_files_stay_where_they_are(setup, capsys):
    broken = setup["data"] / "a" / "broken.png"
    broken.write_bytes(b"not a PNG")
    with pytest.raises(KMIError, match="--skip-bad"):
        organize(setup["model"], setup["data"], setup["into"], mode="move")
    assert main(["organize", str(setup["model"]), str(setup["data"]), "--into",
                 str(setup["into"] / "copies"), "--mode", "copy", "--skip-bad"]) == 0
    assert "left 1 unreadable file(s)" in capsys.readouterr().err
    done = organize(setup["model"], setup["data"], setup["into"] / "moved", mode="move", skip_bad=True)
    assert done["done"] == 61 and done["unreadable"] == 1 and broken.exists()
    assert sorted(_digest(p) for p in _placed(setup["into"] / "moved")) == setup["digests"]


def test_a_store_converted_from_the_folder_sorts_its_files(setup, tmp_path):
    pytest.importorskip("zarr")
    from kmeans_imagery.datasets import convert_to_zarr, open_source

    convert_to_zarr(open_source(setup["data"]), tmp_path / "data.zarr")
    from_store = organize(setup["model"], tmp_path / "data.zarr", setup["into"], mode="link")
    assert sorted(_digest(p) for p in _placed(setup["into"])) == setup["digests"]
    from_folder = organize(setup["model"], setup["data"], setup["into"], mode="link",
                           dry_run=True)
    assert [int(r["cluster"]) for r in _manifest(from_store["manifest"])] == [
        r["cluster"] for r in from_folder["rows"]]
    # Files deleted since the store was made are left out, counted, and sort nothing.
    gone = [Path(r["old_path"]) for r in from_folder["rows"][:2]]
    for path in gone:
        path.unlink()
    again = organize(setup["model"], tmp_path / "data.zarr", tmp_path / "again", mode="copy")
    assert again["missing"] == 2 and again["done"] == 59 and len(_manifest(again["manifest"])) == 59
    for path in setup["files"][2:]:  # every file gone: an empty manifest in a new INTO
        path.unlink(missing_ok=True)
    none = organize(setup["model"], tmp_path / "data.zarr", tmp_path / "new" / "into")
    assert none["missing"] == 61 and _manifest(none["manifest"]) == []
    digits = convert_to_zarr(open_source("digits"), tmp_path / "digits.zarr")
    with pytest.raises(KMIError, match="has no image files"):
        organize(setup["model"], digits.path, tmp_path / "no", mode="link")
