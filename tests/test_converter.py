"""edgecnn.exporting.converter: the TFLite converter from a SavedModel of the inference function alone must give
what ``from_keras_model`` gives (real Keras 3 training and saving, real TFLite converter and LiteRT)."""
from __future__ import annotations

import tempfile

import numpy as np
import pytest


def _described(data: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    sg = obj.subgraphs[0]
    return {"ops": [(obj.operatorCodes[op.opcodeIndex].builtinCode, list(op.inputs), list(op.outputs))
                    for op in sg.operators],
            "tensors": [(t.name, list(t.shape), t.type) for t in sg.tensors],
            # the weights; not the metadata buffers (the conversion metadata names the source type)
            "buffers": [None if b.data is None else bytes(np.asarray(b.data, np.uint8)) for i, b in
                        enumerate(obj.buffers) if i not in {m.buffer for m in obj.metadata or []}],
            "signatures": Interpreter(model_content=data).get_signature_list()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, keras3):
    """A residual BatchNorm CNN trained the ordinary way (model.fit) and saved by Keras 3, loaded as edgecnn does."""
    import edgecnn

    L = keras3.layers
    inp = keras3.Input((16, 16, 3), name="photo")
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    y = L.SeparableConv2D(8, 3, padding="same")(x)
    x = L.Add()([x, L.BatchNormalization()(y)])
    out = L.Dense(3, activation="softmax", name="label")(L.GlobalAveragePooling2D()(x))
    model = keras3.Model(inp, out)
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(0, 1, (64, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 64)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(xs, ys, epochs=2, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("conv") / "user.keras"
    model.save(path)
    return edgecnn.load(path), xs


def test_same_flatbuffer_as_from_keras_model_for_fp32_and_int8(trained):
    import tensorflow as tf

    from edgecnn.exporting.converter import keras_converter
    from edgecnn.exporting.quantize import QuantMode, configure_tflite
    from edgecnn.runtimes.litert import LiteRTSession

    model, xs = trained
    for mode in (QuantMode.NONE, QuantMode.INT8):
        made = []
        for how in ("ours", "keras"):
            converter = None
            with keras_converter(model) as ours:
                converter = ours if how == "ours" else tf.lite.TFLiteConverter.from_keras_model(model)
                configure_tflite(converter, mode=mode, calibration=xs[:16], io="float")
                made.append(bytes(converter.convert()))
        a, b = (_described(d) for d in made)
        assert a == b, mode  # ops, tensor names and shapes, weights, signature: identical
        assert a["signatures"]["serving_default"] == {"inputs": ["photo"], "outputs": ["label"]}
        np.testing.assert_array_equal(LiteRTSession(made[0]).run(xs[:8])[0], LiteRTSession(made[1]).run(xs[:8])[0])


def test_its_savedmodel_is_removed_and_other_models_get_from_keras_model(trained, tf_keras, tmp_path, monkeypatch):
    from edgecnn.exporting.converter import keras_converter

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model, _ = trained
    with keras_converter(model) as converter:
        assert list(tmp_path.iterdir()) and converter.saved_model_dir.startswith(str(tmp_path))
        converter.convert()
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    a, b = tf_keras.Input((4, 4, 1)), tf_keras.Input((4, 4, 1))
    two = tf_keras.Model([a, b], tf_keras.layers.Add()([a, b]))
    with keras_converter(two) as converter:  # two inputs: the Keras way
        assert not list(tmp_path.iterdir()) and type(converter).__name__ == "TFLiteKerasModelConverterV2"
        assert converter.convert()[4:8] == b"TFL3"
