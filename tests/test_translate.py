"""Keras 3 -> tf_keras translation: same layers, same weights, same outputs; refusals where it cannot be."""
from __future__ import annotations

import numpy as np
import pytest

from edgecnn.errors import TranslationError, UnsupportedLayerError
from edgecnn.graph import ModelGraph
from edgecnn.io.translate import check_same_outputs, to_working


@pytest.mark.parametrize("arch", ["MobileNetV2", "ResNet50", "DenseNet121", "EfficientNetB0", "MobileNetV3Small"])
def test_keras_applications_translate_exactly(keras3, tf_keras, arch):
    model = getattr(keras3.applications, arch)(weights=None, input_shape=(48, 48, 3), classes=7)
    working = to_working(model)
    assert isinstance(working, tf_keras.Model)
    assert working.count_params() == model.count_params()
    assert check_same_outputs(model, working) <= 1e-5


def test_keras3_only_activations_are_bridged(keras3):
    L = keras3.layers
    inp = keras3.Input((8, 8, 3))
    x = L.Conv2D(4, 3, activation="relu6", name="c1")(inp)
    x = L.Activation("hard_silu", name="hs")(x)
    x = L.Conv2D(4, 1, activation="hard_sigmoid", name="c2")(x)
    x = L.Dense(3, activation="leaky_relu", name="d")(x)
    x = L.Activation("silu")(x)
    model = keras3.Model(inp, x)
    model.set_weights([np.random.default_rng(0).normal(0, 2, w.shape) for w in model.get_weights()])
    working = to_working(model)
    assert check_same_outputs(model, working) <= 1e-5
    assert all(type(l).__module__.startswith("tf_keras") for l in working.layers)


def test_keras3_ops_in_functional_graphs(keras3):
    inp = keras3.Input((6, 6, 2))
    a = keras3.layers.Conv2D(2, 1, name="a")(inp)
    b = keras3.layers.Conv2D(2, 1, name="b")(inp)
    out = (a + 3.0) * 0.5 - b * b / 4.0
    model = keras3.Model(inp, 2.0 - out)
    working = to_working(model)
    assert check_same_outputs(model, working) <= 1e-5
    kinds = {type(l).__name__ for l in working.layers}
    assert kinds <= {"InputLayer", "Conv2D", "Rescaling", "Multiply", "Subtract"}


def test_shared_layer_stays_shared(keras3):
    inp = keras3.Input((8, 8, 2))
    conv = keras3.layers.Conv2D(2, 3, padding="same", name="shared")
    out = conv(conv(inp))
    working = to_working(keras3.Model(inp, out))
    assert [l.name for l in working.layers].count("shared") == 1
    assert working.count_params() == conv.count_params()


def test_multiple_inputs_and_outputs(keras3):
    a, b = keras3.Input((8, 8, 1), name="a"), keras3.Input((8, 8, 1), name="b")
    x = keras3.layers.Concatenate()([a, b])
    y1 = keras3.layers.Conv2D(2, 3, name="y1")(x)
    y2 = keras3.layers.GlobalMaxPooling2D(name="y2")(x)
    model = keras3.Model([a, b], [y1, y2])
    working = to_working(model)
    assert len(working.inputs) == 2 and len(working.outputs) == 2
    assert check_same_outputs(model, working) <= 1e-5


def test_unsupported_activation_is_refused(keras3):
    inp = keras3.Input((4, 4, 1))
    model = keras3.Model(inp, keras3.layers.Conv2D(2, 3, activation="sparse_plus", name="odd")(inp))
    with pytest.raises(UnsupportedLayerError, match="'odd' uses activation 'sparse_plus'"):
        to_working(model)


def test_keras3_only_option_is_refused(keras3):
    inp = keras3.Input((4, 4, 2))
    model = keras3.Model(inp, keras3.layers.BatchNormalization(renorm=True, name="bn")(inp))
    with pytest.raises(UnsupportedLayerError, match="renorm"):
        to_working(model)


def test_check_same_outputs_catches_a_changed_model(keras3):
    inp = keras3.Input((8, 8, 3))
    model = keras3.Model(inp, keras3.layers.Conv2D(4, 3, name="c")(inp))
    working = to_working(model)
    kernel, bias = working.get_layer("c").get_weights()
    working.get_layer("c").set_weights([kernel * (1 + 1e-3), bias])
    with pytest.raises(TranslationError, match="does not reproduce"):
        check_same_outputs(model, working)


def test_model_graph_producers_and_consumers(tf_keras):
    L = tf_keras.layers
    inp = tf_keras.Input((8, 8, 3), name="img")
    a = L.Conv2D(4, 3, padding="same", name="a")(inp)
    b = L.Conv2D(4, 3, padding="same", name="b")(a)
    s = L.Add(name="sum")([a, b])
    graph = ModelGraph(tf_keras.Model(inp, s))
    assert graph.producers("sum") == ["a", "b"]
    assert sorted(graph.consumers("a")) == ["b", "sum"]
    assert graph.producers("a") == ["img"]
