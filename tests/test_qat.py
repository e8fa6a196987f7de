"""Quantization-aware training: fully and partially annotated models fine-tune and convert to int8 TFLite."""
from __future__ import annotations

import numpy as np
import pytest

from edgecnn.data import digits
from edgecnn.errors import EdgecnnError, UnsupportedLayerError, UnsupportedModelError
from edgecnn.data import top1_accuracy
from edgecnn.exporting.qat import calibrate_ranges, prepare_qat, quantize_aware
from edgecnn.runtimes.litert import LiteRTSession

from models.zoo import se_block

SHAPE = (16, 16, 1)


@pytest.fixture(scope="module")
def data():
    return digits(input_shape=SHAPE, split="train"), digits(input_shape=SHAPE, split="test")


def _trained_cnn(tf_keras, train, *, se: bool, softmax: bool):
    """Conv-BN-ReLU [-> SE] -> MaxPool -> SeparableConv -> Flatten -> Dense, 4 epochs on digits (~2 s)."""
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input(SHAPE)
    x = L.Conv2D(16, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    if se:
        x = se_block(x, ratio=4, keras_module=tf_keras, name="se1")  # ends in Multiply: tfmot has no config
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.SeparableConv2D(32, 3, activation="relu", name="sep2")(x)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(10, activation="softmax" if softmax else None, name="head")(x)
    model = tf_keras.Model(inp, out)
    model.compile(tf_keras.optimizers.Adam(3e-3),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax))
    model.fit(train.x, train.y, epochs=4, batch_size=32, verbose=0)
    return model


def _op_output_types(tflite: bytes) -> dict[str, set]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    dtypes = {t["index"]: t["dtype"] for t in interp.get_tensor_details()}
    types: dict[str, set] = {}
    for op in interp._get_ops_details():
        types.setdefault(op["op_name"], set()).add(np.dtype(dtypes[op["outputs"][0]]).name)
    return types


def test_qat_gives_an_int8_tflite_close_to_the_float_model(tf_keras, data):
    train, test = data
    model = _trained_cnn(tf_keras, train, se=False, softmax=True)
    weights = [w.copy() for w in model.get_weights()]
    result = quantize_aware(model, x=train.x, y=train.y, epochs=1, x_val=test.x, y_val=test.y, io="int8")

    assert result.skipped_layers == []
    assert result.annotated_layers == ["conv1", "bn1", "relu1", "pool1", "sep2", "flat", "head"]
    assert result.keras_accuracy_before == pytest.approx(top1_accuracy(model.predict(test.x, verbose=0), test.y))
    assert result.keras_accuracy_before > 0.75
    assert result.tflite_accuracy >= result.keras_accuracy_before - 0.03
    assert abs(result.tflite_accuracy - result.qat_keras_accuracy) <= 0.02
    session = LiteRTSession(result.tflite)
    assert session.input_dtype == np.int8
    assert result.tflite_accuracy == top1_accuracy(session.run(test.x)[0], test.y)
    types = _op_output_types(result.tflite)
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        assert types[op] == {"int8"}, (op, types)
    assert "float32" not in set().union(*types.values())
    assert len(result.history["loss"]) == 1
    # the input model is not touched
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_calibrated_ranges_make_the_qat_model_accurate_before_fine_tuning(tf_keras, data):
    train, test = data
    model = _trained_cnn(tf_keras, train, se=False, softmax=True)
    float_accuracy = top1_accuracy(model.predict(test.x, verbose=0), test.y)
    plan = prepare_qat(model)
    # tfmot's initial ranges ([-6, 6] for activations and weights) ruin the model until it has trained
    assert top1_accuracy(plan.model.predict(test.x, verbose=0), test.y) < float_accuracy - 0.3
    bn = [v.numpy().copy() for v in plan.model.get_layer("quant_bn1").non_trainable_weights if "moving" in v.name]
    assert calibrate_ranges(plan.model, train.x[:200]) > 0
    assert top1_accuracy(plan.model.predict(test.x, verbose=0), test.y) >= float_accuracy - 0.02
    after = [v.numpy() for v in plan.model.get_layer("quant_bn1").non_trainable_weights if "moving" in v.name]
    assert len(bn) == 2 and all(np.array_equal(a, b) for a, b in zip(bn, after))  # BN statistics kept


def test_unsupported_layer_is_left_unannotated_and_the_model_still_converts(tf_keras, data):
    train, test = data
    model = _trained_cnn(tf_keras, train, se=True, softmax=False)  # logits: from_logits=True must be chosen
    result = quantize_aware(model, x=train.x, y=train.y, epochs=1, x_val=test.x, y_val=test.y)

    assert result.skipped_layers == ["se1_scale"]
    assert {"conv1", "bn1", "se1_reduce", "se1_expand", "sep2", "head"} <= set(result.annotated_layers)
    assert "se1_scale" not in result.annotated_layers
    assert type(result.model.get_layer("se1_scale")).__name__ == "Multiply"  # not wrapped
    assert type(result.model.get_layer("quant_head")).__name__ == "QuantizeWrapperV2"
    assert result.keras_accuracy_before > 0.75
    assert result.qat_keras_accuracy >= result.keras_accuracy_before - 0.03
    assert result.tflite_accuracy >= result.keras_accuracy_before - 0.03
    assert result.tflite_accuracy == top1_accuracy(LiteRTSession(result.tflite).run(test.x)[0], test.y)
    # a cross-entropy of logits taken as probabilities would read about 0.2 here; the right one about 0.05
    assert result.history["loss"][0] < 0.15
    types = _op_output_types(result.tflite)
    assert types["CONV_2D"] == {"int8"} and "MUL" in types


def test_prepare_qat_annotates_what_tfmot_knows(tf_keras):
    L = tf_keras.layers
    inp = tf_keras.Input((8, 8, 1))
    a = L.BatchNormalization(name="lone_bn")(inp)  # tfmot folds a BN only into the conv/dense before it
    a = L.BatchNormalization(name="folded_bn")(L.Conv2D(2, 3, name="conv")(a))
    b = L.PReLU(name="prelu")(a)
    out = L.Dense(3, name="dense")(L.Flatten(name="flat")(L.Multiply(name="mul")([a, b])))
    plan = prepare_qat(tf_keras.Model(inp, out))
    assert plan.annotated_layers == ["conv", "folded_bn", "flat", "dense"]
    assert plan.skipped_layers == ["lone_bn", "prelu", "mul"]
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    assert plan.model(x).shape == (2, 3)


def test_refusals(tf_keras, keras3):
    inp = tf_keras.Input((4, 4, 1))
    nothing = tf_keras.Model(inp, tf_keras.layers.Multiply(name="mul")([inp, inp]))
    with pytest.raises(UnsupportedLayerError, match="found nothing to quantize"):
        prepare_qat(nothing)
    with pytest.raises(UnsupportedModelError, match="Expected a tf_keras functional or Sequential model"):
        prepare_qat(keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)]))
    model = tf_keras.Sequential([tf_keras.Input((4, 4, 1)), tf_keras.layers.Flatten(),
                                 tf_keras.layers.Dense(3, activation="softmax")])
    x, y = np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, dtype=np.int64)
    for kwargs, fragment in [
        ({"epochs": 0}, "epochs: Expected an integer >= 1"),
        ({"epochs": 1, "learning_rate": 5.0}, "learning_rate: Expected a number in (0, 1)"),
        ({"epochs": 1, "x_val": x}, "Expected x_val and y_val together"),
        ({"epochs": 1, "io": "int4"}, "Received: 'int4'"),
        ({"epochs": 1, "y": np.array([0, 7])}, "Expected class indices in [0, 2]"),
        ({"epochs": 1, "batch_size": 4}, "Expected at least batch_size=4 samples. Received: 2"),
    ]:
        with pytest.raises(EdgecnnError) as info:
            quantize_aware(model, **{"x": x, "y": y, **kwargs})
        assert fragment in str(info.value) and "\n" not in str(info.value)
