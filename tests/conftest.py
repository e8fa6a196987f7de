"""Tiny models and model files, built in-process with the real Keras 3 and tf_keras."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgecnn import errors
from edgecnn._tf import import_tensorflow

import_tensorflow()

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def small_cnn(k, *, input_shape=(16, 16, 3), name="small_cnn"):
    """A functional CNN with BN, residual Add, fused activation and a Dense head, in Keras module ``k``."""
    L = k.layers
    inp = k.Input(input_shape, name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    y = L.BatchNormalization(name="bn")(x)
    y = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv_a")(y)
    x = L.Add(name="add")([x, y])
    x = L.SeparableConv2D(16, 3, strides=2, name="sep")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(5, activation="softmax", name="head")(x)
    model = k.Model(inp, out, name=name)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    model.get_layer("bn").set_weights([gamma, beta, mean, np.abs(var) + 0.5])  # a variance is positive
    return model


@pytest.fixture(scope="session")
def keras3():
    import keras

    return keras


@pytest.fixture(scope="session")
def tf_keras():
    import tf_keras

    return tf_keras


@pytest.fixture(scope="session")
def model_files(tmp_path_factory, keras3, tf_keras):
    """Files of one architecture written by each Keras/format, plus SavedModels."""
    d = tmp_path_factory.mktemp("files")
    k3 = small_cnn(keras3)
    k2 = small_cnn(tf_keras)
    k3.save(d / "k3.h5")
    k3.save(d / "k3.keras")
    k2.save(d / "tfk.h5", save_format="h5")
    k2.save(d / "tfk.keras")
    k2.save(d / "tfk_savedmodel", save_format="tf")
    k3.export(d / "k3_export", verbose=False)
    return {"dir": d, "k3": k3, "tfk": k2}


def write_legacy_keras205_h5(src: Path, dst: Path) -> None:
    """Rewrite a tf_keras Sequential .h5 into the layout standalone Keras 2.0.5 wrote in 2017.

    Keras 2.0.x stored a Sequential config as a bare list of layers (no InputLayer; the first layer
    carries ``batch_input_shape``) and ``keras_version`` "2.0.5"; the weight groups are unchanged.
    """
    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        layers = [l for l in cfg["config"]["layers"] if l["class_name"] != "InputLayer"]
        first_input = cfg["config"]["layers"][0]["config"]["batch_input_shape"]
        for layer in layers:
            c = layer["config"]
            c.pop("dtype", None)
            for key in list(c):
                if isinstance(c[key], dict) and "module" in c[key]:
                    c[key].pop("module", None)
                    c[key].pop("registered_name", None)
        layers[0]["config"]["batch_input_shape"] = first_input
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers}).encode()
        f.attrs["keras_version"] = b"2.0.5"
        f.attrs["backend"] = b"tensorflow"
        if "training_config" in f.attrs:
            del f.attrs["training_config"]


def _bad_files(tmp: Path, keras3, tf_keras) -> dict[str, tuple[Path, type, str]]:
    rng = np.random.default_rng(0)
    files = {}
    (tmp / "empty.h5").write_bytes(b"")
    files["empty"] = (tmp / "empty.h5", errors.InputFileError, "empty")
    (tmp / "random.h5").write_bytes(rng.bytes(4096))
    files["random h5"] = (tmp / "random.h5", errors.InputFileError, "not a readable HDF5")
    (tmp / "random.keras").write_bytes(rng.bytes(4096))
    files["random keras"] = (tmp / "random.keras", errors.InputFileError, "not a valid .keras")
    model = small_cnn(keras3)
    model.save(tmp / "whole.h5")
    data = (tmp / "whole.h5").read_bytes()
    (tmp / "truncated.h5").write_bytes(data[: len(data) // 2])
    files["truncated h5"] = (tmp / "truncated.h5", errors.InputFileError, "truncated or corrupt")
    model.save(tmp / "whole.keras")
    data = (tmp / "whole.keras").read_bytes()
    (tmp / "truncated.keras").write_bytes(data[: len(data) // 2])
    files["truncated keras"] = (tmp / "truncated.keras", errors.InputFileError, "not a valid .keras")
    model.save_weights(tmp / "k3.weights.h5")
    files["keras 3 weights only"] = (tmp / "k3.weights.h5", errors.InputFileError, "weights only")
    small_cnn(tf_keras).save_weights(tmp / "tfk_weights.h5")
    files["tf_keras weights only"] = (tmp / "tfk_weights.h5", errors.InputFileError, "weights only")
    (tmp / "not_a_savedmodel").mkdir()
    (tmp / "not_a_savedmodel" / "notes.txt").write_text("hello")
    files["folder"] = (tmp / "not_a_savedmodel", errors.InputFileError, "not a SavedModel")
    files["missing"] = (tmp / "nope.h5", errors.InputFileError, "not found")
    (tmp / "model.onnx").write_bytes(b"123")
    files["wrong suffix"] = (tmp / "model.onnx", errors.InputFileError, "Expected .h5, .keras")
    mlp = keras3.Sequential([keras3.Input((64,)), keras3.layers.Dense(10)])
    mlp.save(tmp / "mlp.keras")
    files["no image input"] = (tmp / "mlp.keras", errors.ShapeMismatchError, "Expected an image input")
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, keras3, tf_keras):
    return _bad_files(tmp_path_factory.mktemp("bad"), keras3, tf_keras)



def _lambda_model(k):
    inp = k.Input((8, 8, 1))
    x = k.layers.Conv2D(2, 3, name="conv")(inp)
    x = k.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    return k.Model(inp, x)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, keras3, tf_keras):
    d = tmp_path_factory.mktemp("hostile")
    marker = d / "pwned"
    _lambda_model(tf_keras).save(d / "lambda_tfk.h5", save_format="h5")
    _lambda_model(keras3).save(d / "lambda_k3.keras")
    # a legacy .h5 whose Lambda bytecode would write a file if it ever ran
    target = str(marker)
    evil = tf_keras.Sequential(
        [tf_keras.Input((4, 4, 1)), tf_keras.layers.Lambda(lambda t: (open(target, "w").close(), t)[1], name="evil")]
    )
    evil.save(d / "evil.h5", save_format="h5")
    marker.unlink(missing_ok=True)

    class Scale(keras3.layers.Layer):
        def call(self, x):
            return x * 3.0

    inp = keras3.Input((8, 8, 1))
    custom = keras3.Model(inp, Scale(name="scale")(keras3.layers.Conv2D(2, 3)(inp)))
    custom.save(d / "custom.keras")
    module = d / "my_layers.py"
    module.write_text(textwrap.dedent(
        """
        import keras, tf_keras

        class Scale(keras.layers.Layer):
            def call(self, x):
                return x * 3.0

        class TfScale(tf_keras.layers.Layer):
            def call(self, x):
                return x * 3.0

        CUSTOM_OBJECTS = {"Scale": Scale}
        TF_KERAS_OBJECTS = {"Scale": TfScale}
        """
    ))
    return {"dir": d, "marker": marker, "module": module}


