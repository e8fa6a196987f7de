"""Tests for models/zoo.py (reference definitions) and the trained files shipped in models/."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgecnn.data import digits  # noqa: E402
from models import zoo  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"

# name -> (input shape, exact parameter count at the default arguments)
EXPECTED = {
    "mnist_cnn": ((28, 28, 1), 431_242),
    "mnist_separable": ((28, 28, 1), 414_899),
    "cifar_cnn": ((32, 32, 3), 703_594),
    "cifar_cnn_gmp": ((32, 32, 3), 179_306),
    "minimodel": ((32, 32, 3), 4_374_538),
    "minimodel_mobile": ((32, 32, 3), 577_866),
    "minimodel_bottleneck": ((32, 32, 3), 2_453_498),
    "se_cnn": ((32, 32, 3), 27_062),
}


def test_docstring_examples():
    import doctest

    result = doctest.testmod(zoo, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0


def test_every_builder_is_listed():
    assert set(zoo.REFERENCE_MODELS) == set(EXPECTED)
    for builder in zoo.REFERENCE_MODELS.values():
        assert builder.__doc__ and len(builder.__doc__.strip()) > 40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builder_params_and_output_shape(name):
    shape, params = EXPECTED[name]
    model = zoo.REFERENCE_MODELS[name]()
    assert model.count_params() == params
    assert tuple(model.input_shape) == (None, *shape)
    assert tuple(model.output_shape) == (None, 10)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert model.layers[-1].get_config()["activation"] == "softmax"


def test_cifar_cnn_head_dominates():
    model = zoo.cifar_cnn()
    assert model.count_params() == 703_594
    assert model.get_layer("dense1").count_params() == 590_848
    assert zoo.cifar_cnn_gmp().count_params() == 179_306


def test_mnist_cnn_matches_the_tutorial_layer_sequence():
    model = zoo.mnist_cnn()
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dense"]
    separable = [type(layer).__name__ for layer in zoo.mnist_separable().layers[1:]]
    assert separable == ["SeparableConv2D" if k == "Conv2D" else k for k in kinds]
    assert model.get_layer("dense1").units == 256


def _count(model, kind):
    return sum(type(layer).__name__ == kind for layer in model.layers)


def test_minimodel_structure():
    model = zoo.minimodel(width=8)
    assert _count(model, "Add") == 12  # 4 stages x 3 units
    assert _count(model, "MaxPooling2D") == 3  # first unit of stages 2-4
    shortcuts = [layer for layer in model.layers if layer.name.endswith("_shortcut")]
    assert [(s.filters, s.kernel_size, s.strides) for s in shortcuts] == [
        (16, (1, 1), (2, 2)), (32, (1, 1), (2, 2)), (64, (1, 1), (2, 2))
    ]
    # Pre-activation: every 3x3 conv of a unit is fed by BN -> ReLU.
    relu = model.get_layer("s1u1_relu1")
    assert model.get_layer("s1u1_conv1").input is relu.output
    assert model.get_layer("head_avgpool").output.shape[1:] == (1, 1, 64)
    assert _count(zoo.minimodel(), "Conv2D") == 1 + 24 + 3


def test_minimodel_mobile_and_bottleneck_units():
    mobile = zoo.minimodel_mobile(width=8)
    assert _count(mobile, "DepthwiseConv2D") == 24
    assert all(layer.kernel_size == (1, 1) for layer in mobile.layers
               if type(layer).__name__ == "Conv2D" and layer.name.endswith("_pw"))
    bottleneck = zoo.minimodel_bottleneck(width=8)
    # Stage 2, unit 1: input has 8 channels -> reduce to 4; second conv's input has 16 -> 8.
    assert bottleneck.get_layer("s2u1_conv1_reduce").filters == 4
    assert bottleneck.get_layer("s2u1_conv2_reduce").filters == 8
    assert bottleneck.get_layer("s2u1_conv2").kernel_size == (3, 3)


def test_se_block_reweights_channels():
    inputs = keras.Input(shape=(6, 6, 32))
    outputs = zoo.se_block(inputs, ratio=16, name="blk")
    model = keras.Model(inputs, outputs)
    assert model.get_layer("blk_reduce").units == 2
    assert tuple(model.output_shape) == (None, 6, 6, 32)
    x = np.random.default_rng(0).random((2, 6, 6, 32)).astype(np.float32)
    y = model.predict(x, verbose=0)
    scale = y / x  # one sigmoid gate per sample and channel, constant over space
    np.testing.assert_allclose(scale, scale[:, :1, :1, :] * np.ones_like(scale), rtol=1e-4)
    assert np.all((scale > 0) & (scale < 1))


def test_se_cnn_gray_input_and_width():
    model = zoo.se_cnn(input_shape=(28, 28, 1), width=8, num_classes=4)
    assert tuple(model.output_shape) == (None, 4)
    assert _count(model, "Multiply") == 3


@pytest.mark.parametrize("name", ["mnist_cnn", "cifar_cnn", "cifar_cnn_gmp", "minimodel"])
def test_tf_keras_builds_the_same_architecture(name):
    tf_keras = pytest.importorskip("tf_keras")
    kwargs = {"width": 8} if name == "minimodel" else {}
    ours = zoo.REFERENCE_MODELS[name](keras_module=tf_keras, **kwargs)
    reference = zoo.REFERENCE_MODELS[name](**kwargs)
    assert isinstance(ours, tf_keras.Model)
    assert ours.count_params() == reference.count_params()
    assert [layer.name for layer in ours.layers] == [layer.name for layer in reference.layers]


# ---------------------------------------------------------------------------------- shipped files


def _readme_rows() -> dict[str, float]:
    """file -> held-out accuracy (fraction), parsed from the generated README table."""
    text = (MODELS_DIR / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w.]+\.(?:h5|keras))` \|.*?\| ([\d.]+)% \|", text, flags=re.M)
    return {file: float(acc) / 100 for file, acc in rows}


def _manifest() -> list[dict]:
    return json.loads((MODELS_DIR / "manifest.json").read_text(encoding="utf-8"))["models"]


def test_readme_lists_every_shipped_file():
    rows = _readme_rows()
    required = {"mnist_cnn.h5", "mnist_separable.keras", "cifar_cnn_gmp.keras", "minimodel_w8.h5", "se_cnn.keras"}
    assert required <= set(rows)
    shipped = {p.name for p in MODELS_DIR.iterdir() if p.suffix in (".h5", ".keras")}
    assert shipped == set(rows)
    for record in _manifest():
        assert rows[record["file"]] == pytest.approx(record["test_accuracy"], abs=5e-5)


@pytest.mark.parametrize("record", _manifest() if (MODELS_DIR / "manifest.json").exists() else [],
                         ids=lambda r: r["file"])
def test_shipped_file_loads_and_keeps_its_accuracy(record):
    path = MODELS_DIR / record["file"]
    assert path.stat().st_size <= 2 * 1024 * 1024
    model = keras.models.load_model(path, compile=False)
    builder = zoo.REFERENCE_MODELS[record["builder"]]
    assert model.count_params() == builder(**record["kwargs"]).count_params() == record["params"]
    shape = tuple(model.input_shape[1:])
    test = digits(input_shape=shape, split="test")
    accuracy = float(np.mean(np.argmax(model.predict(test.x, batch_size=360, verbose=0), axis=1) == test.y))
    assert accuracy >= _readme_rows()[record["file"]] - 0.005
