"""Tiny models and model files, built in-process with the real Keras 3 and tf_keras."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

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
