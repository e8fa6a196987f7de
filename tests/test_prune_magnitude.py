"""Magnitude and 2:4 pruning with tensorflow-model-optimization: sparsity reached, gzip size, accuracy."""
from __future__ import annotations

import numpy as np
import pytest

from edgecnn.pruning import prune
from edgecnn.pruning.magnitude import layer_targets

from conftest import MODELS


def _tiny(tf_keras):
    inp = tf_keras.Input((8, 8, 8))
    x = tf_keras.layers.Conv2D(16, 3, padding="same", name="c1")(inp)
    x = tf_keras.layers.Conv2D(16, 3, padding="same", name="c2")(x)
    x = tf_keras.layers.Conv2D(16, 3, padding="same", name="c3")(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(4, name="head")(x))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_targets_skip_first_last_and_globs(tf_keras):
    model = _tiny(tf_keras)
    assert layer_targets(model, sparsity=0.5) == {"c2": 0.5, "c3": 0.5}
    assert layer_targets(model, sparsity=0.5, layer_sparsity={"c3": 0.9, "head": 0.2}) == {
        "c2": 0.5, "c3": 0.9, "head": 0.2}
    assert layer_targets(model, sparsity=0.5, skip_first_last=False) == {"c1": 0.5, "c2": 0.5, "c3": 0.5, "head": 0.5}


def test_one_shot_magnitude_keeps_the_largest_weights(tf_keras):
    model = _tiny(tf_keras)
    before = model.get_weights()
    r = prune(model, method="magnitude", sparsity=0.75, schedule="constant", progress=False)
    k_old = model.get_layer("c2").get_weights()[0]
    k_new = r.model.get_layer("c2").get_weights()[0]
    assert abs(float(np.mean(k_new == 0)) - 0.75) < 0.01
    kept = k_new != 0
    assert np.abs(k_old[kept]).min() >= np.abs(k_old[~kept]).max()  # the smallest |w| went
    np.testing.assert_array_equal(r.model.get_layer("c1").get_weights()[0], model.get_layer("c1").get_weights()[0])
    assert [type(l).__name__ for l in r.model.layers] == [type(l).__name__ for l in model.layers]  # stripped
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # input untouched
    assert {row["name"] for row in r.layers} == {"c2", "c3"}
    assert r.sizes["h5_pruned_gzip"] < r.sizes["h5_dense_gzip"]
    assert r.sizes["tflite_pruned"] == r.sizes["tflite_dense"]  # zeros are stored: same dense flatbuffer
    assert any("do not make dense runtimes faster" in n for n in r.notes)


def test_two_of_four(tf_keras):
    model = _tiny(tf_keras)
    r = prune(model, method="m-by-n", sparsity=0.0, skip_first_last=False, progress=False)
    kernel = r.model.get_layer("c2").get_weights()[0]  # (3, 3, 16 in, 16 out): blocks of 4 input channels
    blocks = kernel.transpose(0, 1, 3, 2).reshape(-1, 4)
    assert np.all(np.sum(blocks == 0, axis=1) >= 2)
    assert all(abs(row["sparsity"] - 0.5) < 1e-6 for row in r.layers if row["name"] != "head")


@pytest.mark.slow
def test_magnitude_80_on_mnist_cnn_with_fine_tuning():
    import edgecnn

    working = edgecnn.load(MODELS / "mnist_cnn.h5")
    r = prune(working, method="magnitude", sparsity=0.8, data="digits", epochs=2, progress=False)
    assert r.epochs_run == 2
    assert {row["name"] for row in r.layers} == {"conv2", "dense1"}
    assert all(abs(row["sparsity"] - 0.8) < 0.01 for row in r.layers)
    assert r.sizes["h5_pruned_gzip"] <= 0.35 * r.sizes["h5_dense_gzip"]
    assert r.accuracy_before > 0.95
    assert r.accuracy_before - r.accuracy_after <= 0.010
