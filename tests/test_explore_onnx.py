"""The onnx:PATH feature step, on tiny networks the tests build with onnx's helper API."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from kmeans_imagery import ClusterClassifier, KMIError, load_model, save_model  # noqa: E402
from kmeans_imagery.features import make_features  # noqa: E402


def _network(path, weight, *, channels=1, side=8, meta=None):
    """(batch, C, side, side) -> Flatten -> MatMul(weight) -> (batch, d), written to ``path``."""
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.fixture
def weight(rng):
    return rng.normal(size=(64, 5)).astype(np.float32)


def test_embedding_equals_the_network_with_the_files_normalisation(tmp_path, weight, digits_rows):
    rows = digits_rows[0][:200]
    path = _network(tmp_path / "net.onnx", weight, meta={"kmi.mean": "0.5", "kmi.std": "0.25"})
    pipeline = make_features(f"onnx:{path}", (8, 8))
    step = pipeline.steps[0]
    step.batch_size = 7  # several network calls, one result
    out = pipeline.fit_transform(rows)
    np.testing.assert_allclose(out, ((rows - 0.5) / 0.25) @ weight, rtol=1e-4, atol=1e-4)
    assert pipeline.n_features_out_ == 5


def test_normalisation_given_in_the_spec(tmp_path, rng):
    from kmeans_imagery.features._onnx import NORMALISATIONS

    weight = rng.normal(size=(3 * 8 * 8, 4)).astype(np.float32)
    path = _network(tmp_path / "rgb.onnx", weight, channels=3)
    images = rng.random((20, 8, 8, 3)).astype(np.float32)
    mean, std = (np.array(v.split(","), np.float32) for v in NORMALISATIONS["imagenet"])
    expected = ((images - mean) / std).transpose(0, 3, 1, 2).reshape(20, -1) @ weight
    rows = images.reshape(20, -1)
    for options in (":norm=imagenet", f":mean={NORMALISATIONS['imagenet'][0]}"
                                      f":std={NORMALISATIONS['imagenet'][1]}"):
        out = make_features(f"onnx:{path}{options}", (8, 8, 3)).fit_transform(rows)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    model = ClusterClassifier(2, features=f"onnx:{path}:norm=imagenet", random_state=0).fit(
        (images * 255).astype(np.uint8), None)
    save_model(model, tmp_path / "m.kmi")
    assert load_model(tmp_path / "m.kmi").features_.steps[0].std == NORMALISATIONS["imagenet"][1]
    for spec, message in ((f"onnx:{path}:scale=2", "option 'scale' is not one of"),
                          (f"onnx:{path}:norm=vgg", "norm='vgg' is not one of imagenet, clip"),
                          (f"onnx:{path}:norm=clip:std=1", "not both"),
                          (f"onnx:{path}:output=nope", "no output 'nope'")):
        with pytest.raises(KMIError, match=message):
            make_features(spec, (8, 8, 3)).fit(rows)


def test_images_are_resized_and_given_the_networks_channels(tmp_path, rng):
    weight = rng.normal(size=(3 * 4 * 4, 2)).astype(np.float32)
    path = _network(tmp_path / "rgb.onnx", weight, channels=3, side=4)
    levels = np.array([0.2, 0.6, 1.0], np.float32)
    gray = np.broadcast_to(levels[:, None, None], (3, 8, 8))  # flat images stay flat when resized
    out = make_features(f"onnx:{path}", (8, 8)).fit_transform(gray.reshape(3, -1))
    expected = np.broadcast_to(levels[:, None], (3, 3 * 4 * 4))
    np.testing.assert_allclose(out, expected @ weight, atol=1e-4)


def test_model_file_keeps_path_and_checksum_not_the_network(tmp_path, weight, digits_rows):
    X, y = digits_rows
    path = _network(tmp_path / "net.onnx", weight)
    images = X[:300].reshape(-1, 8, 8)
    model = ClusterClassifier(4, features=f"onnx:{path}", random_state=0).fit(images, y[:300])
    save_model(model, tmp_path / "m.kmi")
    loaded = load_model(tmp_path / "m.kmi")
    np.testing.assert_array_equal(loaded.predict(images), model.predict(images))
    state = loaded.features_.steps[0]
    assert state.path == str(path.resolve()) and len(state.sha256_) == 64
    # A different network under the same name is refused, not silently used.
    _network(path, weight * 2)
    with pytest.raises(KMIError, match="changed since the model was fitted"):
        load_model(tmp_path / "m.kmi").predict(images)


def test_a_network_is_hashed_and_loaded_once_while_unchanged(tmp_path, weight, digits_rows,
                                                            monkeypatch):
    from kmeans_imagery.features import _onnx, reading_size

    hashed = []
    monkeypatch.setattr(_onnx, "_sha256",
                        lambda path: (hashed.append(path) or f"{len(hashed)}", []))
    path = _network(tmp_path / "net.onnx", weight)
    assert reading_size("auto", f"onnx:{path}") == (8, 8)
    make_features(f"onnx:{path}", (8, 8)).fit(digits_rows[0][:10])
    assert len(hashed) == 1
    _network(path, np.concatenate([weight, weight], axis=1))  # another size: another file
    make_features(f"onnx:{path}", (8, 8)).fit(digits_rows[0][:10])
    assert len(hashed) == 2


def test_bad_networks_and_options_are_clear_errors(tmp_path, weight, digits_rows):
    rows = digits_rows[0][:10]
    with pytest.raises(KMIError, match="does not exist"):
        make_features(f"onnx:{tmp_path}/missing.onnx", (8, 8)).fit(rows)
    path = _network(tmp_path / "net.onnx", weight, meta={"kmi.std": "0"})
    with pytest.raises(KMIError, match="positive std"):
        make_features(f"onnx:{path}", (8, 8)).fit(rows)
    path = _network(tmp_path / "out.onnx", weight, meta={"kmi.output": "nope"})
    with pytest.raises(KMIError, match="no output 'nope'"):
        make_features(f"onnx:{path}", (8, 8)).fit(rows)


def test_auto_size_reads_images_at_the_networks_input_size(tmp_path, rng):
    from PIL import Image

    from kmeans_imagery.cli import main
    from kmeans_imagery.explore import explore
    from kmeans_imagery.features import reading_color, reading_size

    path = _network(tmp_path / "net.onnx", rng.normal(size=(3 * 16 * 16, 4)), channels=3, side=16)
    assert reading_size("auto", f"raw|onnx:{path}") == (16, 16)
    assert reading_size(None, f"onnx:{path}") is None and reading_size("auto", "l2") == "auto"
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (90 + i, 120, 3), dtype=np.uint8)).save(
            photos / f"{i:02d}.png")
    # A network that takes colour reads colour unless told otherwise.
    found = explore(photos, tmp_path / "out", k=2, features=f"onnx:{path}")
    assert found.results["image_shape"] == [16, 16, 3] and found.results["size"] == "16x16"
    assert main(["fit", str(photos), "--k", "2", "--features", f"onnx:{path}", "--size", "auto",
                 "--out", str(tmp_path / "m.kmi")]) == 0
    assert load_model(tmp_path / "m.kmi").features_.steps[0].image_shape == (16, 16, 3)
    assert main(["explore", str(photos), "--k", "2", "--features", f"onnx:{path}", "--color",
                 "gray", "--out", str(tmp_path / "gray")]) == 0
    assert json.loads((tmp_path / "gray" / "results.json").read_text())["image_shape"] == [16, 16]
    assert main(["explore", str(photos), "--k", "2", "--out", str(tmp_path / "pixels")]) == 0
    assert len(json.loads((tmp_path / "pixels" / "results.json").read_text())["image_shape"]) == 2
    gray_network = _network(tmp_path / "gray.onnx", rng.normal(size=(64, 4)))
    assert reading_color(None, f"onnx:{gray_network}") is None
    assert reading_color(None, f"l2|onnx:{gray_network}|onnx:{path}") == "rgb"


def _graph_network(path, nodes, inputs, outputs, *, initializers=(), meta=None, **save):
    """Any small graph: inputs and outputs as (name, element type, shape)."""
    graph = helper.make_graph(
        nodes, "variant", [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs], initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if meta:
        helper.set_model_props(model, meta)
    onnx.save(model, str(path), **save)
    return path


_MEAN_COLOUR = [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                helper.make_node("Flatten", ["p"], ["y"])]


@pytest.mark.parametrize("batch", [1, 8])
def test_a_network_exported_with_a_fixed_batch_size_runs_in_chunks_of_it(tmp_path, rng, batch):
    """torch.onnx.export without dynamic axes: (1, 3, H, W); 13 images are 13 or 2 calls."""
    images = rng.random((13, 8, 8, 3)).astype(np.float32)
    path = _graph_network(tmp_path / "fixed.onnx", _MEAN_COLOUR,
                          [("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                          [("y", TensorProto.FLOAT, [batch, 3])])
    out = make_features(f"onnx:{path}", (8, 8, 3)).fit_transform(images.reshape(13, -1))
    np.testing.assert_allclose(out, images.mean(axis=(1, 2)), rtol=1e-5)


@pytest.mark.parametrize("element", [TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.UINT8])
def test_inputs_of_other_element_types_get_their_type(tmp_path, rng, element):
    images = rng.random((6, 8, 8, 3)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("GlobalAveragePool", ["xf"], ["p"]),
             helper.make_node("Flatten", ["p"], ["y"])]
    path = _graph_network(tmp_path / "typed.onnx", nodes, [("x", element, ["n", 3, 8, 8])],
                          [("y", TensorProto.FLOAT, ["n", 3])])
    out = make_features(f"onnx:{path}", (8, 8, 3)).fit_transform(images.reshape(6, -1))
    # uint8: the 0-255 pixels as they are; else [0, 1].
    scale = 255 if element == TensorProto.UINT8 else 1
    np.testing.assert_allclose(out, images.mean(axis=(1, 2)) * scale, rtol=1e-2, atol=0.6)
    if element == TensorProto.UINT8:
        with pytest.raises(KMIError, match="takes uint8 pixels"):
            make_features(f"onnx:{path}:norm=imagenet", (8, 8, 3)).fit(images.reshape(6, -1))


def test_channels_last_inputs_and_any_size_inputs(tmp_path, rng):
    from kmeans_imagery.features import reading_size

    images = rng.random((5, 8, 8, 3)).astype(np.float32)
    nhwc = _graph_network(tmp_path / "nhwc.onnx",
                          [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1, 2], keepdims=0)],
                          [("x", TensorProto.FLOAT, ["n", 8, 8, 3])],
                          [("y", TensorProto.FLOAT, ["n", 3])])
    out = make_features(f"onnx:{nhwc}", (8, 8, 3)).fit_transform(images.reshape(5, -1))
    np.testing.assert_allclose(out, images.mean(axis=(1, 2)), rtol=1e-5)
    anysize = _graph_network(tmp_path / "any.onnx", _MEAN_COLOUR,
                             [("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                             [("y", TensorProto.FLOAT, ["n", 3])])
    assert reading_size("auto", f"onnx:{anysize}") == "auto"  # the images' own size
    out = make_features(f"onnx:{anysize}", (8, 8, 3)).fit_transform(images.reshape(5, -1))
    np.testing.assert_allclose(out, images.mean(axis=(1, 2)), rtol=1e-5)


def test_outputs_must_be_one_finite_row_per_image(tmp_path, rng):
    rows = rng.random((6, 8 * 8 * 3)).astype(np.float32)
    x = [("x", TensorProto.FLOAT, ["n", 3, 8, 8])]
    transposed = _graph_network(tmp_path / "t.onnx", [
        *_MEAN_COLOUR, helper.make_node("Transpose", ["y"], ["yt"], perm=[1, 0])], x,
        [("yt", TensorProto.FLOAT, [3, "n"])])
    pooled = _graph_network(tmp_path / "p.onnx", [
        helper.make_node("ReduceMean", ["x"], ["y"], axes=[0, 2, 3], keepdims=0)], x,
        [("y", TensorProto.FLOAT, [3])])
    for path in (transposed, pooled):
        with pytest.raises(KMIError, match="its first axis must be the batch"):
            make_features(f"onnx:{path}", (8, 8, 3)).fit_transform(rows)
    nan = _graph_network(tmp_path / "nan.onnx", [
        *_MEAN_COLOUR, helper.make_node("Div", ["y", "zero"], ["q"])], x,
        [("q", TensorProto.FLOAT, ["n", 3])],
        initializers=[numpy_helper.from_array(np.zeros(3, np.float32), "zero")])
    with pytest.raises(KMIError, match="is not finite"):
        make_features(f"onnx:{nan}", (8, 8, 3)).fit_transform(rows)
    for meta in ({"kmi.mean": "nan"}, {"kmi.std": "inf"}):
        path = _graph_network(tmp_path / "meta.onnx", _MEAN_COLOUR, x,
                              [("y", TensorProto.FLOAT, ["n", 3])], meta=meta)
        with pytest.raises(KMIError, match="kmi.(mean|std) metadata of .* must be finite"):
            make_features(f"onnx:{path}", (8, 8, 3)).fit(rows)


def test_external_weights_are_part_of_the_checksum(tmp_path, rng):
    rows = rng.random((10, 8 * 8 * 3)).astype(np.float32)
    weight = numpy_helper.from_array(rng.normal(size=(192, 4)).astype(np.float32), "w")
    path = _graph_network(
        tmp_path / "ext.onnx",
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        [("x", TensorProto.FLOAT, ["n", 3, 8, 8])], [("y", TensorProto.FLOAT, ["n", 4])],
        initializers=[weight], save_as_external_data=True, location="ext.onnx.data",
        size_threshold=0)
    model = ClusterClassifier(2, features=f"onnx:{path}", random_state=0).fit(
        (rows.reshape(10, 8, 8, 3) * 255).astype(np.uint8), None)
    save_model(model, tmp_path / "m.kmi")
    data = tmp_path / "ext.onnx.data"
    data.write_bytes(np.frombuffer(data.read_bytes(), np.float32)[::-1].tobytes())
    with pytest.raises(KMIError, match="changed since the model was fitted"):
        load_model(tmp_path / "m.kmi").predict((rows.reshape(10, 8, 8, 3) * 255).astype(np.uint8))


def test_output_names_with_colons_and_paths_with_any_letter(tmp_path, rng):
    folder = tmp_path / "réseaux @1"
    folder.mkdir()
    path = _graph_network(folder / "net#2.onnx", [
        *_MEAN_COLOUR, helper.make_node("Identity", ["y"], ["dense/BiasAdd:0"])],
        [("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [("y", TensorProto.FLOAT, ["n", 3]), ("dense/BiasAdd:0", TensorProto.FLOAT, ["n", 3])])
    rows = rng.random((4, 8 * 8 * 3)).astype(np.float32)
    with pytest.raises(KMIError, match="unexpected|bad feature spec"):
        make_features(f"onnx:{path}", (8, 8, 3))  # a space ends a word of the spec
    (tmp_path / "nets").symlink_to(folder)
    step = make_features(f"onnx:{tmp_path}/nets/net#2.onnx:output=dense/BiasAdd:0",
                         (8, 8, 3)).steps[0]
    assert step.output == "dense/BiasAdd:0" and step.fit_transform(rows).shape == (4, 3)


def test_a_network_of_several_inputs_is_refused(tmp_path):
    path = _graph_network(tmp_path / "two.onnx", [helper.make_node("Add", ["x", "z"], ["y"])],
                          [("x", TensorProto.FLOAT, ["n", 3]), ("z", TensorProto.FLOAT, ["n", 3])],
                          [("y", TensorProto.FLOAT, ["n", 3])])
    with pytest.raises(KMIError, match="has 2 inputs \\(x, z\\)"):
        make_features(f"onnx:{path}", (8, 8, 3)).fit(np.zeros((2, 192), np.float32))


@pytest.mark.parametrize("channels", [2, 4])
def test_images_neither_gray_nor_rgb_are_refused_by_a_colour_network(tmp_path, rng, channels):
    path = _graph_network(tmp_path / "rgb.onnx", _MEAN_COLOUR, [("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                          [("y", TensorProto.FLOAT, ["n", 3])])
    rows = rng.random((4, 8 * 8 * channels)).astype(np.float32)
    # they were repeated to 3 x channels and onnxruntime refused its input
    with pytest.raises(KMIError, match=f"takes RGB images; images of {channels} channels"):
        make_features(f"onnx:{path}", (8, 8, channels)).fit(rows)
    # a network of one channel sees their mean
    gray = _graph_network(tmp_path / "gray.onnx", _MEAN_COLOUR, [("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
                          [("y", TensorProto.FLOAT, ["n", 1])])
    out = make_features(f"onnx:{gray}", (8, 8, channels)).fit_transform(rows)
    np.testing.assert_allclose(out[:, 0], rows.mean(axis=1), rtol=1e-5)


def test_onnx_errors_name_the_features(tmp_path, rng):
    from kmeans_imagery.features import reading_color, reading_size

    missing = tmp_path / "missing.onnx"
    for ask in (lambda: reading_color(None, f"onnx:{missing}"),
                lambda: reading_size("auto", f"l2|onnx:{missing}")):
        with pytest.raises(KMIError, match=r"^features='.*missing.onnx': ONNX model .* does not exist"):
            ask()
    with pytest.raises(KMIError, match=r"^features='onnx:': 'onnx' needs a path"):
        make_features("onnx:", (8, 8))


def test_an_onnx_pipeline_embeds_no_images_and_survives_its_state(tmp_path, rng):
    from kmeans_imagery.features import FeaturePipeline

    path = _graph_network(tmp_path / "rgb.onnx", _MEAN_COLOUR, [("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                          [("y", TensorProto.FLOAT, ["n", 3])])
    rows = rng.random((6, 8 * 8 * 3)).astype(np.float32)
    pipeline = make_features(f"ONNX:{path}+std|l2", (8, 8, 3)).fit(rows)
    meta, arrays = pipeline.get_state()
    again = FeaturePipeline.from_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(again.transform(rows), pipeline.transform(rows))
    assert again.transform(rows[:0]).shape == (0, 3 + 192)
