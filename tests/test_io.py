"""Loading every accepted format into the working representation, and refusing bad or hostile files."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import edgecnn
from edgecnn.errors import (
    EdgecnnError,
    InputFileError,
    ShapeMismatchError,
    UnsafeModelError,
    UnsupportedModelError,
)
from edgecnn.io import load_info, save
from edgecnn.io.savedmodel import GraphModel

from conftest import small_cnn, write_legacy_keras205_h5


def _digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _predict(model, x):
    return np.asarray(model(x, training=False))


@pytest.mark.parametrize(
    "name, written_by, translated",
    [
        ("k3.h5", "keras 3", True),
        ("k3.keras", "keras 3", True),
        ("tfk.h5", "keras 2", False),
        ("tfk.keras", "keras 2", False),
        ("tfk_savedmodel", "tf_keras savedmodel", False),
    ],
)
def test_every_keras_format_becomes_the_same_working_model(model_files, tf_keras, name, written_by, translated):
    path = model_files["dir"] / name
    before = _digest(path)
    working = edgecnn.load(path)
    assert isinstance(working, tf_keras.Model)
    info = load_info(working)
    assert info.written_by.startswith(written_by) and info.translated is translated
    assert info.max_rel_diff is not None and info.max_rel_diff <= 1e-5
    x = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
    reference = model_files["k3"] if name.startswith("k3") else model_files["tfk"]
    np.testing.assert_allclose(_predict(working, x), _predict(reference, x), atol=1e-6)
    assert _digest(path) == before, "the input file must never be modified"


def test_working_model_is_accepted_by_tfmot_tflite_and_tf2onnx(model_files):
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf2onnx

    working = edgecnn.load(model_files["dir"] / "k3.keras")
    pruned = tfmot.sparsity.keras.prune_low_magnitude(working)
    assert any("prune_low_magnitude" in layer.name for layer in pruned.layers)
    tflite = tf.lite.TFLiteConverter.from_keras_model(working).convert()
    assert len(tflite) > 1000
    spec = (tf.TensorSpec((None, 16, 16, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(working, input_signature=spec, opset=17)
    assert any(n.op_type == "Conv" for n in proto.graph.node)


def test_legacy_standalone_keras_205_h5(tmp_path, tf_keras):
    seq = tf_keras.Sequential(
        [tf_keras.Input((8, 8, 1)), tf_keras.layers.Conv2D(4, 3, activation="relu"), tf_keras.layers.Flatten(),
         tf_keras.layers.Dense(3)]
    )
    seq.save(tmp_path / "seq.h5", save_format="h5")
    write_legacy_keras205_h5(tmp_path / "seq.h5", tmp_path / "old.h5")
    working = edgecnn.load(tmp_path / "old.h5")
    assert load_info(working).written_by == "keras 2.0.5"
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(_predict(working, x), _predict(seq, x), atol=1e-6)


def test_graph_only_savedmodel_inspects_but_refuses_surgery(model_files):
    path = model_files["dir"] / "k3_export"
    graph = edgecnn.load(path)
    assert isinstance(graph, GraphModel)
    stats = edgecnn.inspect(path)
    keras_stats = edgecnn.inspect(model_files["dir"] / "k3.keras")
    assert stats.total_params == keras_stats.total_params == model_files["k3"].count_params()
    assert stats.total_macs == keras_stats.total_macs
    with pytest.raises(UnsupportedModelError, match="graph-only SavedModel"):
        edgecnn.load(path, input_shape=(32, 32, 3))


def test_live_models_of_both_kerases(keras3, tf_keras):
    for k in (keras3, tf_keras):
        model = small_cnn(k)
        working = edgecnn.load(model)
        assert isinstance(working, tf_keras.Model)
        assert working is not model
        assert working.count_params() == model.count_params()


def test_nested_base_model_is_flattened(keras3, tf_keras):
    for k in (keras3, tf_keras):
        base = k.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
        model = k.Sequential([k.Input((32, 32, 3)), base, k.layers.GlobalAveragePooling2D(), k.layers.Dense(4)])
        working = edgecnn.load(model)
        kinds = [type(layer).__name__ for layer in working.layers]
        assert "Functional" not in kinds and kinds.count("Conv2D") == 35
        assert working.count_params() == model.count_params()
        assert load_info(working).max_rel_diff <= 1e-5


def test_input_shape_fixes_unknown_dimensions(keras3):
    fcn = keras3.Sequential([keras3.Input((None, None, 3)), keras3.layers.Conv2D(4, 3, padding="same")])
    with pytest.raises(ShapeMismatchError, match="--input-shape"):
        edgecnn.inspect(fcn)
    stats = edgecnn.inspect(fcn, input_shape="20,24,3")
    assert stats.input_shape == [20, 24, 3] and stats.total_macs == 20 * 24 * 4 * 27


def test_input_shape_that_does_not_fit(keras3):
    with pytest.raises(ShapeMismatchError, match="cannot take --input-shape"):
        edgecnn.load(small_cnn(keras3, input_shape=(16, 16, 3)), input_shape=(16, 16, 1))
    with pytest.raises(ShapeMismatchError, match="H,W,C"):
        edgecnn.load(small_cnn(keras3), input_shape="16,16")


# ---- bad and hostile input: one line, a typed error, nothing modified ----------------------------------


@pytest.mark.parametrize(
    "case",
    ["empty", "random h5", "random keras", "truncated h5", "truncated keras", "keras 3 weights only",
     "tf_keras weights only", "folder", "missing", "wrong suffix", "no image input"],
)
def test_bad_input_raises_one_line_typed_error(bad_files, case):
    path, error, fragment = bad_files[case]
    before = _digest(path) if path.exists() else None
    with pytest.raises(error) as info:
        edgecnn.load(path)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert (_digest(path) if path.exists() else None) == before


@pytest.mark.parametrize("name", ["lambda_tfk.h5", "lambda_k3.keras", "evil.h5"])
def test_lambda_is_refused_by_default_and_no_code_runs(hostile, name):
    path = hostile["dir"] / name
    before = _digest(path)
    with pytest.raises(UnsafeModelError) as info:
        edgecnn.load(path)
    message = str(info.value)
    assert "Lambda" in message and "--trust-model" in message and "--custom-objects" in message
    assert ("'double'" in message) or ("'evil'" in message)
    assert not hostile["marker"].exists()
    assert _digest(path) == before


def test_trust_model_allows_lambda(hostile):
    working = edgecnn.load(hostile["dir"] / "lambda_tfk.h5", trust_model=True)
    x = np.ones((1, 8, 8, 1), np.float32)
    out = _predict(working, x)
    conv = working.get_layer("conv")
    np.testing.assert_allclose(out, 2.0 * np.asarray(conv(x)), rtol=1e-6)


def test_unknown_custom_class_is_refused_then_loaded_with_custom_objects(hostile, tf_keras):
    path = hostile["dir"] / "custom.keras"
    with pytest.raises(UnsafeModelError) as info:
        edgecnn.load(path)
    assert "'scale'" in str(info.value) and "--custom-objects" in str(info.value)
    working = edgecnn.load(path, custom_objects=str(hostile["module"]))
    assert type(working.get_layer("scale")).__name__ == "TfScale"
    assert isinstance(working.get_layer("scale"), tf_keras.layers.Layer)
    assert load_info(working).max_rel_diff <= 1e-5


def test_missing_custom_objects_module(hostile):
    with pytest.raises(InputFileError, match="custom-objects module not found"):
        edgecnn.load(hostile["dir"] / "custom.keras", custom_objects="/nonexistent/mod.py")


def test_every_error_is_an_edgecnn_error():
    for cls in (InputFileError, ShapeMismatchError, UnsafeModelError, UnsupportedModelError):
        assert issubclass(cls, EdgecnnError)


def test_save_is_atomic_and_loads_in_both_kerases(tmp_path, keras3, tf_keras):
    working = edgecnn.load(small_cnn(keras3))
    out = save(working, tmp_path / "out" / "model.h5")
    assert out.exists() and [p.name for p in out.parent.iterdir()] == ["model.h5"]
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    expected = _predict(working, x)
    np.testing.assert_allclose(_predict(keras3.models.load_model(out, compile=False), x), expected, atol=1e-6)
    np.testing.assert_allclose(_predict(tf_keras.models.load_model(out, compile=False), x), expected, atol=1e-6)
    with pytest.raises(InputFileError, match="Expected a .h5 or .keras"):
        save(working, tmp_path / "model.pb")
    assert not any(p.name.startswith(".") for p in (tmp_path / "out").iterdir())
    assert os.listdir(tmp_path / "out") == ["model.h5"]


def test_known_class_name_from_a_foreign_module_is_refused(tmp_path, keras3):
    import json
    import zipfile

    small_cnn(keras3).save(tmp_path / "ok.keras")
    with zipfile.ZipFile(tmp_path / "ok.keras") as z:
        parts = {n: z.read(n) for n in z.namelist()}
    config = json.loads(parts["config.json"])
    config["config"]["layers"][1]["module"] = "os"
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "forged.keras", "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    with pytest.raises(UnsafeModelError, match="'stem'"):
        edgecnn.load(tmp_path / "forged.keras")


def test_compiled_models_load(tmp_path, keras3, tf_keras):
    """Saved optimizer/loss/metric settings are not architecture: they must not trip the class scan."""
    for k, suffixes in ((keras3, (".keras", ".h5")), (tf_keras, (".keras", ".h5"))):
        model = small_cnn(k)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(np.zeros((4, 16, 16, 3), np.float32), np.zeros(4, np.int64), epochs=1, verbose=0)
        for suffix in suffixes:
            path = tmp_path / f"{k.__name__}{suffix}"
            model.save(path)
            working = edgecnn.load(path)
            assert load_info(working).max_rel_diff <= 1e-5
