"""int8 accuracy budget: plain int8 when it is enough, selective float ops when it is not, an honest no."""
from __future__ import annotations

import numpy as np
import pytest

from edgecnn.data import digits
from edgecnn.errors import DataError, EdgecnnError, ShapeMismatchError
from edgecnn.data import top1_accuracy
from edgecnn.exporting.budget import int8_within_budget
from edgecnn.runtimes.litert import LiteRTSession

SHAPE = (16, 16, 1)
OUTLIER = 1e4


@pytest.fixture(scope="module")
def data():
    return digits(input_shape=SHAPE, split="train"), digits(input_shape=SHAPE, split="test")


@pytest.fixture(scope="module")
def trained(tf_keras, data):
    """A small CNN trained for 3 epochs on digits (about 3 s on 2 cores)."""
    train, _ = data
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input(SHAPE)
    x = L.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(10, activation="softmax", name="head")(x)
    model = tf_keras.Model(inp, out, name="budget_cnn")
    model.compile(tf_keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=3, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def outlier(tf_keras, trained):
    """The same function, hostile to per-tensor int8 activations.

    conv1's output channel 0 is scaled by OUTLIER and conv2's weights reading it by 1/OUTLIER; ReLU is
    positively homogeneous, so the float model is unchanged, but the calibrated int8 range of conv1's
    output is set by that one channel and the other seven round to zero.
    """
    model = tf_keras.models.clone_model(trained)
    model.set_weights(trained.get_weights())
    w, b = model.get_layer("conv1").get_weights()
    w[..., 0] *= OUTLIER
    b[0] *= OUTLIER
    model.get_layer("conv1").set_weights([w, b])
    w2, b2 = model.get_layer("conv2").get_weights()
    w2[:, :, 0, :] /= OUTLIER
    model.get_layer("conv2").set_weights([w2, b2])
    return model


def _float_ops(tflite: bytes) -> list[str]:
    """Compute ops (not QUANTIZE/DEQUANTIZE) whose output tensor is float32."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    dtypes = {t["index"]: t["dtype"] for t in interp.get_tensor_details()}
    return [
        op["op_name"] for op in interp._get_ops_details()
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE") and dtypes[op["outputs"][0]] == np.float32
    ]


def test_int8_within_budget_keeps_no_float_op(trained, data):
    train, test = data
    result = int8_within_budget(trained, calibration=train.x[:100], x_val=test.x, y_val=test.y,
                                max_accuracy_drop=2.0)
    assert result.met and result.float_layers == [] and result.float_tensors == []
    assert result.per_layer_error == []  # the debugger was not needed
    assert result.keras_accuracy == pytest.approx(top1_accuracy(trained.predict(test.x, verbose=0), test.y))
    assert result.keras_accuracy > 0.8
    assert result.final_accuracy == result.int8_accuracy
    assert result.keras_accuracy - result.final_accuracy <= 0.02
    assert result.final_accuracy == top1_accuracy(LiteRTSession(result.tflite).run(test.x)[0], test.y)
    assert _float_ops(result.tflite) == []
    assert "meets" in result.message


def test_outlier_model_is_the_same_function(trained, outlier, data):
    _, test = data
    np.testing.assert_allclose(outlier.predict(test.x[:64], verbose=0), trained.predict(test.x[:64], verbose=0),
                               atol=1e-4)


@pytest.mark.parametrize("io", ["float", "int8"])
def test_int8_over_budget_keeps_the_culprits_in_float(outlier, data, io):
    train, test = data
    result = int8_within_budget(outlier, calibration=train.x[:100], x_val=test.x, y_val=test.y,
                                max_accuracy_drop=1.0, io=io)
    assert result.int8_accuracy < result.keras_accuracy - 0.3  # plain int8 is ruined by the outlier channel
    assert result.met, result.message
    assert result.final_accuracy >= result.keras_accuracy - 0.01
    assert result.final_accuracy == top1_accuracy(LiteRTSession(result.tflite).run(test.x)[0], test.y)
    # the debugger ranks the outlier conv worst, and the fix keeps only a few ops in float
    assert result.per_layer_error[0]["layer"] == "conv1"
    assert {"tensor", "layer", "op", "rmse", "scale", "rmse_per_scale"} <= set(result.per_layer_error[0])
    assert "conv1" in result.float_layers and "head" not in result.float_layers
    assert 1 <= len(result.float_layers) <= 3 and len(result.float_tensors) == len(result.float_layers)
    assert "CONV_2D" in _float_ops(result.tflite)
    assert len(_float_ops(result.tflite)) == len(result.float_layers)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=result.tflite)
    assert interp.get_input_details()[0]["dtype"] == (np.int8 if io == "int8" else np.float32)


def test_over_budget_without_enough_float_ops_says_so(outlier, data):
    train, test = data
    result = int8_within_budget(outlier, calibration=train.x[:100], x_val=test.x, y_val=test.y,
                                max_accuracy_drop=1.0, max_float_layers=1)
    assert not result.met
    assert result.keras_accuracy - result.final_accuracy > 0.01
    assert result.final_accuracy >= result.int8_accuracy  # the most accurate model found
    assert result.final_accuracy == top1_accuracy(LiteRTSession(result.tflite).run(test.x)[0], test.y)
    assert len(result.float_layers) <= 1
    assert "misses" in result.message and "edgecnn quantize --qat" in result.message
    assert result.per_layer_error  # the debugger ran

    plain = int8_within_budget(outlier, calibration=train.x[:100], x_val=test.x, y_val=test.y,
                               max_accuracy_drop=1.0, max_float_layers=0)
    assert not plain.met and plain.float_layers == [] and plain.per_layer_error == []
    assert "--qat" in plain.message


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"max_accuracy_drop": -1.0}, EdgecnnError, "Expected a number in [0, 100]"),
    ({"max_accuracy_drop": True}, EdgecnnError, "Received: True"),
    ({"io": "uint8"}, EdgecnnError, "Received: 'uint8'"),
    ({"max_float_layers": -1}, EdgecnnError, "Expected an integer >= 0"),
    ({"x_val": np.zeros((4, 28, 28, 1), np.float32)}, ShapeMismatchError, "Expected shape (N>=1, 16, 16, 1)"),
    ({"calibration": np.full((4, 16, 16, 1), np.nan, np.float32)}, DataError, "Expected finite numbers"),
    ({"y_val": np.zeros(3, dtype=np.int64)}, DataError, "Expected 8 integer class indices"),
    ({"y_val": np.full(8, 10)}, DataError, "Expected class indices in [0, 9]"),
    ({"y_val": np.zeros(8, dtype=np.float32)}, DataError, "dtype float32"),
])
def test_bad_arguments(trained, kwargs, error, fragment):
    args = dict(calibration=np.zeros((4, *SHAPE), np.float32), x_val=np.zeros((8, *SHAPE), np.float32),
                y_val=np.zeros(8, dtype=np.int64), max_accuracy_drop=1.0)
    args.update(kwargs)
    with pytest.raises(error) as info:
        int8_within_budget(trained, **args)
    assert fragment in str(info.value) and "\n" not in str(info.value)
