"""inspect's arithmetic against hand-computed cases."""
from __future__ import annotations

import pytest

import edgecnn
from edgecnn.analysis import analyze, bottleneck_macs, conv_macs, depthwise_macs, separable_macs, separable_params
from models import zoo


def _conv_model(tf_keras, *, input_shape, filters, kernel, strides=1, padding="valid", use_bias=True, pad=0):
    L = tf_keras.layers
    inp = tf_keras.Input(input_shape)
    x = L.ZeroPadding2D(pad)(inp) if pad else inp
    out = L.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias, name="conv")(x)
    return tf_keras.Model(inp, out)


def _row(stats, name):
    return next(r for r in stats.layers if r.name == name)


def test_3x3_conv_32_to_32_at_112(tf_keras):
    stats = analyze(_conv_model(tf_keras, input_shape=(112, 112, 32), filters=32, kernel=3, padding="same"))
    row = _row(stats, "conv")
    assert row.macs == 115_605_504
    assert depthwise_macs(out_hw=(112, 112), kernel=(3, 3), c_in=32) == 3_612_672
    assert row.separable_macs == 3_612_672 + 12_845_056 == 16_457_728
    assert row.bottleneck_macs == 6_422_528 + 57_802_752 == 64_225_280
    assert row.output_shape == [None, 112, 112, 32]
    assert row.activation_bytes == 112 * 112 * 32 * 4


def test_4x4_stride_2_padding_1_on_222(tf_keras):
    stats = analyze(_conv_model(tf_keras, input_shape=(222, 222, 64), filters=64, kernel=4, strides=2, pad=1))
    row = _row(stats, "conv")
    assert row.output_shape == [None, 111, 111, 64]
    assert row.macs == 807_469_056


def test_3x3_conv_3_to_64_valid_on_224_counts_input_channels(tf_keras):
    stats = analyze(_conv_model(tf_keras, input_shape=(224, 224, 3), filters=64, kernel=3))
    assert _row(stats, "conv").macs == 85_162_752 != 28_387_584


def test_5x5_3_to_256_weights(tf_keras):
    stats = analyze(_conv_model(tf_keras, input_shape=(32, 32, 3), filters=256, kernel=5, use_bias=False))
    row = _row(stats, "conv")
    assert row.params == 19_200 and row.separable_params == 843
    assert separable_params(kernel=(5, 5), c_in=3, c_out=256, use_bias=True) == 843 + 256


@pytest.mark.parametrize("gmp, total", [(False, 703_594), (True, 179_306)])
def test_seed_cifar_cnn(keras3, gmp, total):
    model = (zoo.cifar_cnn_gmp if gmp else zoo.cifar_cnn)(keras_module=keras3)
    stats = edgecnn.inspect(model)
    assert stats.total_params == total == model.count_params()
    dense = [r for r in stats.layers if r.type == "Dense"][0]
    if not gmp:
        assert dense.params == 590_848
        assert round(100 * dense.params / stats.total_params) == 84
        assert stats.by_type["Dense"]["params_share"] > 0.84
        assert list(stats.by_type)[0] == "Dense"  # the head dominates: listed first


def test_other_layer_kinds(tf_keras):
    L = tf_keras.layers
    inp = tf_keras.Input((10, 10, 4))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(inp)
    x = L.SeparableConv2D(6, 3, name="sep")(x)
    x = L.Conv2DTranspose(5, 2, strides=2, name="up")(x)
    x = L.Conv2D(4, 3, groups=1, name="plain")(x)
    shared = L.Conv2D(4, 1, name="shared")
    x = shared(shared(x))
    x = L.Reshape((14 * 14, 4))(x)
    x = L.Dense(3, name="dense")(x)
    model = tf_keras.Model(inp, x)
    stats = analyze(model)
    assert _row(stats, "dw").macs == depthwise_macs(out_hw=(10, 10), kernel=(3, 3), c_in=4, multiplier=2) == 7200
    assert _row(stats, "sep").macs == separable_macs(out_hw=(8, 8), kernel=(3, 3), c_in=8, c_out=6)
    assert _row(stats, "up").macs == 8 * 8 * 6 * 4 * 5
    assert _row(stats, "plain").macs == conv_macs(out_hw=(14, 14), kernel=(3, 3), c_in=5, c_out=4)
    assert _row(stats, "plain").separable_macs is not None
    assert _row(stats, "dw").separable_macs is None and _row(stats, "sep").separable_macs is None
    shared_rows = [r for r in stats.layers if r.name == "shared"]
    assert len(shared_rows) == 2 and [r.params for r in shared_rows] == [20, 0]
    assert _row(stats, "dense").macs == 14 * 14 * 4 * 3
    assert stats.total_params == model.count_params()
    assert stats.total_macs == sum(r.macs for r in stats.layers)


def test_bottleneck_at_input_resolution_for_strided_convs():
    assert bottleneck_macs(in_hw=(8, 8), out_hw=(4, 4), kernel=(3, 3), c_in=16, c_out=32) == 8 * 8 * 16 * 8 + 4 * 4 * 9 * 8 * 32


def test_json_report_keys(keras3):
    report = edgecnn.inspect(zoo.mnist_cnn(keras_module=keras3)).as_dict()
    assert {"total_params", "total_macs", "input_shape", "layers"} <= set(report)
    conv = [l for l in report["layers"] if l["type"] == "Conv2D"]
    assert conv and all({"name", "type", "output_shape", "params", "macs", "separable_macs", "bottleneck_macs"} <= set(l) for l in conv)
    dense = [l for l in report["layers"] if l["type"] == "Dense"][0]
    assert "separable_macs" not in dense
