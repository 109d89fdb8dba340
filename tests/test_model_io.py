import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmeans_imagery import KMIError
from kmeans_imagery.labeling import ClusterClassifier
from kmeans_imagery.model_io import FORMAT_VERSION, load_model, read_model_file, save_model


@pytest.fixture(scope="module")
def images_and_labels():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 16).clip(0, 255).astype(np.uint8)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])[digits.target]
    return images, names


@pytest.fixture(scope="module")
def fitted(images_and_labels):
    images, names = images_and_labels
    return ClusterClassifier(n_clusters=30, random_state=0).fit(images, names)


def test_round_trip_predicts_the_same_on_raw_images(fitted, images_and_labels, tmp_path):
    images, _ = images_and_labels
    path = save_model(fitted, tmp_path / "m.kmi", fit_metrics={"accuracy": 0.9},
                      training={"dataset": "digits", "n_samples": len(images)})
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(images), fitted.predict(images))
    np.testing.assert_array_equal(loaded.cluster_centers_, fitted.cluster_centers_)
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.image_shape_ == (8, 8)
    assert loaded.metadata_["preprocessing"] == {"image_shape": [8, 8], "color": "gray",
                                                 "scale": 255.0}
    assert loaded.metadata_["fit_metrics"] == {"accuracy": 0.9}
    assert loaded.get_params()["n_clusters"] == 30


def test_integer_labels_keep_their_type(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((40, 6), dtype=np.float32)
    model = ClusterClassifier(n_clusters=4, random_state=0).fit(X, np.arange(40) % 3)
    loaded = load_model(save_model(model, tmp_path / "m.kmi"))
    assert loaded.classes_.dtype.kind == "i"
    assert loaded.image_shape_ is None
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_no_paths_of_the_fitting_machine_inside(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.kmi")
    raw = path.read_bytes()
    assert str(tmp_path).encode() not in raw
    with zipfile.ZipFile(path) as archive:
        assert all(not name.startswith("/") and ".." not in name for name in archive.namelist())


def test_existing_model_needs_force(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.kmi")
    before = path.read_bytes()
    with pytest.raises(KMIError, match="already exists; use force=True"):
        save_model(fitted, path)
    assert path.read_bytes() == before
    save_model(fitted, path, force=True)


def test_interrupted_save_leaves_nothing(fitted, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        save_model(fitted, tmp_path / "m.kmi")
    assert list(tmp_path.iterdir()) == []


def test_truncated_model_is_a_clear_error(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.kmi")
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        broken = tmp_path / f"cut{cut}.kmi"
        broken.write_bytes(data[:cut])
        with pytest.raises(KMIError, match=str(broken)):
            load_model(broken)


def _rewrite(path, out, *, metadata=None, arrays=None):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if metadata is not None:
        members["kmi-model.json"] = json.dumps(metadata).encode()
    for name, payload in (arrays or {}).items():
        members[name] = payload
    with zipfile.ZipFile(out, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return out


def test_newer_format_version_is_refused(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.kmi")
    metadata, _ = read_model_file(path)
    metadata["format_version"] = FORMAT_VERSION + 1
    newer = _rewrite(path, tmp_path / "newer.kmi", metadata=metadata)
    with pytest.raises(KMIError, match="newer kmeans-imagery"):
        load_model(newer)


def test_pickled_objects_are_never_loaded(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.kmi")
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    crafted = _rewrite(path, tmp_path / "crafted.kmi",
                       arrays={"arrays/classes.npy": buffer.getvalue()})
    with pytest.raises(KMIError, match="pickled objects"):
        load_model(crafted)


def test_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.kmi"
    text.write_text("hello")
    with pytest.raises(KMIError, match="not a readable model file"):
        load_model(text)
    other_zip = tmp_path / "other.kmi"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "x")
    with pytest.raises(KMIError, match="not a kmeans-imagery model"):
        load_model(other_zip)
    with pytest.raises(KMIError, match="does not exist"):
        load_model(tmp_path / "missing.kmi")


def test_inconsistent_arrays(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.kmi")
    buffer = io.BytesIO()
    np.save(buffer, np.array([0, 99]))
    bad = _rewrite(path, tmp_path / "bad.kmi",
                   arrays={"arrays/cluster_label_codes.npy": buffer.getvalue()})
    with pytest.raises(KMIError, match="inconsistent"):
        load_model(bad)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=2048))
def test_random_bytes_raise_only_kmi_error(tmp_path, payload):
    path = tmp_path / "random.kmi"
    path.write_bytes(payload)
    with pytest.raises(KMIError):
        load_model(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_real_model_raises_only_kmi_error(fitted, tmp_path, data):
    path = tmp_path / "base.kmi"
    if not path.exists():
        save_model(fitted, path)
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    corrupted = tmp_path / "corrupted.kmi"
    corrupted.write_bytes(bytes(raw))
    try:
        load_model(corrupted)
    except KMIError:
        pass


def test_feature_pipeline_travels_in_the_model_file(images_and_labels, tmp_path):
    images, names = images_and_labels
    model = ClusterClassifier(n_clusters=20, features="hog", random_state=0).fit(images, names)
    loaded = load_model(save_model(model, tmp_path / "hog.kmi"))
    assert loaded.metadata_["features"]["spec"] == model.features_.spec
    np.testing.assert_array_equal(loaded.predict(images), model.predict(images))
    np.testing.assert_array_equal(loaded.cluster_images_, model.cluster_images_)
    with zipfile.ZipFile(tmp_path / "hog.kmi") as archive:
        assert all(name.endswith((".json", ".npy")) for name in archive.namelist())


@pytest.mark.parametrize("field, value", [
    ("preprocessing", {"image_shape": "abc"}),
    ("preprocessing", {"image_shape": [8, -8]}),
    ("preprocessing", [8, 8]),
    ("params", [1]),
    ("params", {"n_clusters": 7}),
    ("label_names", "digits"),
    ("inertia", "large"),
    ("training", ["mnist"]),
    ("fit_metrics", 0.9),
])
def test_malformed_metadata_is_a_clear_error(fitted, tmp_path, field, value):
    # A hand-edited file: each of these crashed while the model was built.
    path = save_model(fitted, tmp_path / "m.kmi")
    metadata, _ = read_model_file(path)
    metadata[field] = value
    edited = _rewrite(path, tmp_path / "edited.kmi", metadata=metadata)
    with pytest.raises(KMIError, match="malformed"):
        load_model(edited)


def test_a_folder_is_not_a_model(tmp_path):
    (tmp_path / "model.kmi").mkdir()
    with pytest.raises(KMIError, match="is a folder"):
        load_model(tmp_path / "model.kmi")


def test_numpy_scalars_in_metrics_are_saved(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.kmi",
                      fit_metrics={"accuracy": np.float32(0.5), "sizes": np.arange(2)},
                      training={"n_samples": np.int64(1437)})
    metadata = load_model(path).metadata_
    assert metadata["fit_metrics"] == {"accuracy": 0.5, "sizes": [0, 1]}
    assert metadata["training"] == {"n_samples": 1437}


def test_metrics_json_cannot_store_leave_nothing(fitted, tmp_path):
    with pytest.raises(KMIError, match="fit_metrics and training must be JSON-able"):
        save_model(fitted, tmp_path / "m.kmi", fit_metrics={"classes": {1, 2}})
    assert list(tmp_path.iterdir()) == []


def test_saving_over_a_folder_is_a_clear_error(fitted, tmp_path):
    (tmp_path / "m.kmi").mkdir()
    with pytest.raises(KMIError, match="cannot write"):
        save_model(fitted, tmp_path / "m.kmi", force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.kmi"]


def test_the_same_model_is_the_same_file(fitted, tmp_path, monkeypatch):
    import time as time_module

    first = save_model(fitted, tmp_path / "a.kmi")
    # A later save (the zip members would carry its time) writes the same bytes.
    later = time_module.time() + 3 * 86400
    monkeypatch.setattr(time_module, "time", lambda: later)
    monkeypatch.setattr(time_module, "localtime", lambda *args: time_module.gmtime(later))
    second = save_model(fitted, tmp_path / "b.kmi")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(second) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
