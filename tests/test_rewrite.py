"""edgecnn.rewrite: structure (Add, Concatenate, several inputs/outputs, BN, strides, dilation, padding, bias,
Sequential), exact full-rank factorizations, SVD init vs random init on a trained model, measured selection,
distillation, and keras.applications exports."""
from __future__ import annotations

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.rewriting import REWRITES, measure_rewrites, rewrite
from tests.conftest import MODELS


def zoo_graph(tf_keras):
    """Two inputs, two outputs; dilation, stride, valid/same padding, no bias, fused activation, BN, Add, Concat."""
    L = tf_keras.layers
    a = tf_keras.Input((12, 12, 3), name="a")
    b = tf_keras.Input((12, 12, 3), name="b")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(a)
    y = L.Conv2D(8, 3, padding="same", dilation_rate=2, use_bias=False, name="dil")(x)
    y = L.BatchNormalization(name="bn")(y)
    x = L.Add(name="add")([x, y])
    z = L.Conv2D(8, 3, padding="same", name="side")(b)
    x = L.Concatenate(name="cat")([x, z])
    x = L.Conv2D(16, 3, strides=2, padding="valid", activation="relu", name="down")(x)
    x = L.Conv2D(12, (3, 1), padding="same", name="tall")(x)
    x = L.Conv2D(12, 1, name="point")(x)
    head = L.Dense(6, activation="softmax", name="head")(L.Flatten(name="flat")(x))
    aux = L.GlobalAveragePooling2D(name="gap")(x)
    model = tf_keras.Model([a, b], [head, aux])
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    bn = model.get_layer("bn")
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma, beta, mean, np.abs(var) + 0.5])
    return model


def outputs(model, xs):
    out = model(xs, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]


@pytest.mark.parametrize("to, options, rewritten", [
    ("separable", dict(depth_multiplier=8), ["dil", "side"]),  # rank min(3*3, 8 filters) = 8: exact
    ("bottleneck", dict(ratio=1.0), ["dil", "side", "down", "tall"]),
    ("low-rank-dense", dict(rank=6), ["head"]),
])
def test_full_rank_rewrites_reproduce_the_model(tf_keras, to, options, rewritten):
    model = zoo_graph(tf_keras)
    before = [w.copy() for w in model.get_weights()]
    xs = [np.random.default_rng(1).random((4, 12, 12, 3), dtype=np.float32) for _ in range(2)]
    r = rewrite(model, to=to, select="all", layers=rewritten, **options)
    assert [row.name for row in r.rewritten] == rewritten
    assert r.model.output_shape == model.output_shape and r.model.output_names == model.output_names
    for row in r.rewritten:
        assert row.weight_error < 1e-5 and row.output_error < 1e-4
    for got, want in zip(outputs(r.model, xs), outputs(model, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # input model untouched
    new_vars = {id(v) for v in r.model.weights}
    assert not any(id(v) in new_vars for v in model.weights)


def test_default_selection_skips_what_cannot_gain(tf_keras):
    r = rewrite(zoo_graph(tf_keras), to="separable")
    reasons = {row.name: (row.kept, row.reason) for row in r.layers}
    assert reasons["stem"] == (False, "fewer than 4 input channels")
    assert reasons["side"] == (False, "fewer than 4 input channels")
    assert reasons["point"] == (False, "1x1 kernel")
    assert reasons["dil"][0] and reasons["down"][0]
    for row in r.rewritten:
        assert row.macs_after < row.macs_before and 0 < row.weight_error < 1
    excluded = rewrite(zoo_graph(tf_keras), to="separable", exclude=["down"])
    assert {row.name: row.reason for row in excluded.layers}["down"] == "excluded"


def test_gap_head_on_the_notebook_cnn_cuts_params_as_the_seed_notebook(tf_keras):
    from models.zoo import cifar_cnn

    model = cifar_cnn(keras_module=tf_keras)
    r = rewrite(model, to="gap-head")
    assert model.count_params() == 703_594 and r.model.count_params() == 179_306
    [row] = r.rewritten
    assert row.name == "dense1" and row.params_before // row.params_after >= 3
    assert "GlobalAveragePooling2D" in [type(l).__name__ for l in r.model.layers]
    assert r.model.output_shape == model.output_shape
    # spatially constant features: the position-summed kernel gives exactly the old head
    flat = model.get_layer("flatten").input
    x = np.full((2, *flat.shape[1:]), 0.3, dtype=np.float32)
    x[1] *= np.arange(flat.shape[-1], dtype=np.float32) / flat.shape[-1]
    old = model.get_layer("dense1")(model.get_layer("flatten")(x))
    new = r.model.get_layer("dense1")(tf_keras.layers.GlobalAveragePooling2D()(x))
    np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=1e-4, atol=1e-4)


def test_sequential_model_and_max_pool_head(tf_keras):
    L = tf_keras.layers
    model = tf_keras.Sequential([tf_keras.Input((10, 10, 4)), L.Conv2D(8, 3, name="c1"), L.Conv2D(8, 3, name="c2"),
                                 L.Flatten(name="f"), L.Dropout(0.2, name="drop"), L.Dense(3, name="d")])
    sep = rewrite(model, to="separable")
    assert [row.name for row in sep.rewritten] == ["c1", "c2"]
    head = rewrite(model, to="gap-head", pooling="max")
    assert [type(l).__name__ for l in head.model.layers][-3:] == ["GlobalMaxPooling2D", "Dropout", "Dense"]
    assert head.rewritten[0].weight_error is None


def test_svd_initialization_beats_random_initialization_on_a_trained_model():
    import edgecnn

    model = edgecnn.load(MODELS / "mnist_cnn.h5")
    svd = rewrite(model, to="separable", data="digits")
    fresh = rewrite(model, to="separable", data="digits", init="random")
    [row_svd], [row_fresh] = svd.rewritten, fresh.rewritten
    assert row_svd.name == "conv2" and row_svd.macs_before / row_svd.macs_after >= 5
    assert row_svd.output_error < row_fresh.output_error
    assert svd.accuracy_before == fresh.accuracy_before > 0.95
    assert svd.accuracy_after > fresh.accuracy_after + 0.2
    assert svd.distill is None and any("not recovered" in n for n in svd.notes)


def test_distillation_recovers_accuracy_through_rewrite():
    import edgecnn

    model = edgecnn.load(MODELS / "mnist_cnn.h5")
    r = rewrite(model, to="separable", data="digits", epochs=2, progress=False)
    assert r.distill is not None and r.distill.epochs_run == 2
    assert r.accuracy_after >= r.accuracy_before - 0.03
    assert r.as_dict()["distill"]["epochs_run"] == 2


def test_measured_selection_keeps_only_faster_rewrites(tf_keras):
    L = tf_keras.layers
    inp = tf_keras.Input((24, 24, 32))
    x = L.Conv2D(64, 3, padding="same", name="wide")(inp)
    model = tf_keras.Model(inp, L.Conv2D(64, 3, padding="same", name="wide2")(x))
    r = rewrite(model, to="separable", select="measured", runs=15)
    assert {row.name for row in r.layers} == {"wide", "wide2"}
    for row in r.layers:
        assert row.latency_delta_ms is not None and row.latency_spread_ms >= 0
        assert row.kept == (-row.latency_delta_ms > row.latency_spread_ms)
    assert [l.name for l in r.model.layers if l.name.endswith("_dw")] == [f"{row.name}_dw" for row in r.rewritten]
    [delta] = measure_rewrites(model, {"same": model}, runs=5)
    assert delta.name == "same" and delta.base_ms > 0 and delta.faster == (-delta.delta_ms > delta.spread_ms)


@pytest.mark.parametrize("options, text", [
    (dict(to="winograd"), "rewrite kind"),
    (dict(to="bottleneck", ratio=0), "ratio"),
    (dict(to="bottleneck", ratio=1.5), "ratio"),
    (dict(to="bottleneck", rank=99), "Expected 1 to 8"),
    (dict(to="low-rank-dense", rank=7), "Expected 1 to 6"),
    (dict(to="separable", layers=["nope*"]), "matches no layer"),
    (dict(to="separable", depth_multiplier=10), "depth multiplier"),
    (dict(to="separable", data=(np.zeros((8, 5, 5, 3)), None)), "does not match the model input"),
])
def test_bad_options_are_one_line_errors(tf_keras, options, text):
    with pytest.raises(EdgecnnError, match=text) as info:
        rewrite(_single(tf_keras), **options)
    assert "\n" not in str(info.value)


def _single(tf_keras):
    L = tf_keras.layers
    inp = tf_keras.Input((12, 12, 8))
    x = L.Conv2D(16, 3, name="conv")(inp)
    return tf_keras.Model(inp, L.Dense(6, name="head")(L.GlobalAveragePooling2D()(x)))


def test_rewrites_table():
    assert list(REWRITES) == ["separable", "bottleneck", "gap-head", "low-rank-dense"]


@pytest.mark.slow
def test_keras_application_rewrite_exports_to_tflite_and_onnx_and_matches():
    """MobileNetV2 (alpha 0.35, 32x32): the stem as a bottleneck; the full 96x96 list is benchmarks/rewrite_apps.py."""
    import keras

    import edgecnn
    from edgecnn.exporting.validate import compare
    from edgecnn.runtimes.keras import keras_outputs
    from edgecnn.exporting.convert import convert
    from edgecnn.runtimes import RUNTIMES

    app = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10,
                                         classifier_activation=None)
    model = edgecnn.load(app)
    assert rewrite(model, to="separable").rewritten == []  # only 1x1 and depthwise convs besides the RGB stem
    r = rewrite(model, to="bottleneck", layers=["Conv1"], select="all", ratio=1.0)
    [row] = r.rewritten
    assert row.name == "Conv1" and row.weight_error < 1e-5
    assert r.model.output_shape == model.output_shape == (None, 10)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    reference = keras_outputs(r.model, x)
    np.testing.assert_allclose(reference[0], keras_outputs(model, x)[0], rtol=1e-4, atol=1e-4 * np.abs(reference[0]).max())
    for runtime in ("litert", "onnxruntime"):
        got = RUNTIMES[runtime].load(convert(r.model, runtime=runtime)).run(x)
        v = compare(reference, got, exact=True)
        assert v.passed, (runtime, v.problems)
