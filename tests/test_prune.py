"""Structured channel pruning: dependency groups, exact graph surgery, importance, rounding, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError, UnsupportedLayerError, UnsupportedModelError
from edgecnn.pruning import apply_selection, channel_groups, prune, prune_channels, sensitivity
from edgecnn.pruning.groups import ChannelGraph

from conftest import small_cnn

MODELS = Path(__file__).resolve().parents[1] / "models"


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = ws
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                               rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 1.5, v.shape)])
        else:
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in ws])
    return model


def zoo_of_layers(tf_keras):
    """Every handler kind: residual Add with a 1x1 shortcut, Concatenate, Flatten -> Dense, DepthwiseConv2D
    (multiplier 1 and 2), SeparableConv2D, BN, SE-style Multiply with Reshape, Conv2DTranspose."""
    L = tf_keras.layers
    inp = tf_keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(16, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    y = L.Conv2D(16, 3, padding="same", name="res_conv")(x)
    y = L.BatchNormalization(name="res_bn")(y)
    x = L.Add(name="res_add")([x, y])
    s = L.Conv2D(24, 1, strides=2, name="shortcut")(x)
    y = L.Conv2D(24, 3, strides=2, padding="same", name="down")(x)
    x = L.Add(name="down_add")([s, L.Activation("relu", name="down_relu")(y)])
    a = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    b = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw2")(x)
    c = L.SeparableConv2D(16, 3, padding="same", name="sep")(x)
    x = L.Concatenate(name="cat")([a, b, c])
    se = L.GlobalAveragePooling2D(name="se_pool")(x)
    se = L.Dense(8, activation="relu", name="se_reduce")(se)
    se = L.Dense(88, activation="sigmoid", name="se_expand")(se)
    x = L.Multiply(name="se_scale")([x, L.Reshape((1, 1, 88), name="se_reshape")(se)])
    x = L.Conv2DTranspose(16, 2, strides=2, name="up")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", name="tail")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(32, activation="relu", name="fc")(x)
    x = L.Dropout(0.2, name="drop")(x)
    out = L.Dense(5, activation="softmax", name="out")(x)
    return _randomize(tf_keras.Model(inp, out, name="zoo_of_layers"))


def zero_removed(model, selection, cg):
    """Zero the input rows that read the removed channels, in every consumer: pruning them is then exact."""
    keep = cg.keep_indices(selection)
    for node in cg.graph.nodes:
        layer = node.layer
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Dense", "SeparableConv2D", "Conv2DTranspose"):
            continue
        k = keep[cg.space_of(node.inputs[0])]
        width = int(node.inputs[0].shape[-1])
        drop = np.setdiff1d(np.arange(width), k)
        ws = layer.get_weights()
        if kind == "Conv2D":
            ws[0][:, :, drop, :] = 0
        elif kind == "Dense":
            ws[0][drop, :] = 0
        elif kind == "Conv2DTranspose":
            ws[0][:, :, :, drop] = 0
        else:
            ws[0][:, :, drop, :] = 0
        layer.set_weights(ws)


def _random_selection(cg, seed=0):
    rng = np.random.default_rng(seed)
    return {g.id: np.sort(rng.choice(g.channels, size=max(1, g.channels // 2), replace=False))
            for g in cg.groups()}


def test_groups_tie_residual_adds_and_map_concat(tf_keras):
    model = zoo_of_layers(tf_keras)
    groups = {g.name: g for g in channel_groups(model)}
    assert sorted(groups["stem"].producers) == ["res_conv", "stem"]  # Add ties the residual branch
    assert sorted(groups["shortcut"].producers) == ["down", "shortcut"]  # 1x1 shortcut conv tied
    assert "stem_bn" in groups["stem"].passes and "res_bn" in groups["stem"].passes
    # the depthwise convs pass the shortcut group on; the Concatenate's consumer reads it
    assert {"dw", "dw2"} <= set(groups["shortcut"].passes)
    assert "up" in groups["shortcut"].consumers and "up" in groups["sep"].consumers
    assert "fc" in groups["tail"].consumers  # Flatten -> Dense rows
    assert "out" not in groups  # model outputs are never pruned
    assert "se_expand" not in groups  # the SE gate multiplies the Concatenate: it follows its channel mapping
    assert groups["se_reduce"].producers == ["se_reduce"]


def test_ratio_zero_reproduces_the_model(tf_keras):
    model = zoo_of_layers(tf_keras)
    same = prune_channels(model, ratios=0.0)
    x = np.random.default_rng(1).random((4, 12, 12, 3), dtype=np.float32)
    np.testing.assert_array_equal(same(x).numpy(), model(x).numpy())
    assert same.count_params() == model.count_params()


@pytest.mark.parametrize("seed", [0, 1])
def test_pruning_channels_that_feed_nothing_is_exact(tf_keras, seed):
    model = zoo_of_layers(tf_keras)
    cg = ChannelGraph(model)
    selection = _random_selection(cg, seed)
    zero_removed(model, selection, cg)
    pruned = apply_selection(model, selection, cg=cg)
    assert pruned.count_params() < 0.6 * model.count_params()
    assert pruned.get_layer("dw2").get_weights()[0].shape[2] == len(selection[cg.space_of(
        model.get_layer("shortcut").output)])
    x = np.random.default_rng(2).random((4, 12, 12, 3), dtype=np.float32)
    np.testing.assert_allclose(pruned(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_small_cnn_exact_and_smaller(tf_keras):
    model = small_cnn(tf_keras)
    cg = ChannelGraph(model)
    selection = _random_selection(cg, 3)
    zero_removed(model, selection, cg)
    pruned = apply_selection(model, selection, cg=cg)
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(pruned(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert pruned.get_layer("stem").filters == 4 and pruned.get_layer("conv_a").filters == 4


def test_round_to_and_l1_keeps_the_strongest_filters(tf_keras):
    model = zoo_of_layers(tf_keras)
    conv = model.get_layer("tail")
    k, b = conv.get_weights()
    k[..., :8] *= 100.0  # filters 0..7 dominate
    conv.set_weights([k, b])
    pruned = prune_channels(model, ratios={"tail": 0.5}, round_to=8)
    new_k = pruned.get_layer("tail").get_weights()[0]
    assert new_k.shape[-1] == 8
    np.testing.assert_array_equal(new_k, k[..., :8])
    pruned = prune_channels(model, ratios=0.4, round_to=8)
    for g in channel_groups(pruned):
        assert g.channels % 8 == 0 and g.channels > 0
    assert pruned.get_layer("out").units == 5


def test_bn_importance_uses_gamma(tf_keras):
    model = small_cnn(tf_keras)
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    gamma = np.arange(1, 9, dtype=np.float32)  # channels 4..7 have the largest |gamma|
    model.get_layer("bn").set_weights([gamma, beta, mean, var])
    pruned = prune_channels(model, ratios={"stem": 0.5}, importance="bn", round_to=1)
    np.testing.assert_array_equal(pruned.get_layer("bn").get_weights()[0], gamma[4:])


def test_activation_importance_needs_data_and_uses_it(tf_keras):
    model = small_cnn(tf_keras)
    with pytest.raises(EdgecnnError, match="Expected data"):
        prune_channels(model, ratios=0.5, importance="activation")
    x = np.random.default_rng(0).random((16, 16, 16, 3), dtype=np.float32)
    pruned = prune_channels(model, ratios=0.5, importance="activation", round_to=1, x=x)
    assert pruned.get_layer("stem").filters == 4


def test_unknown_layer_type_is_refused(tf_keras):
    class Scale(tf_keras.layers.Layer):
        def call(self, t):
            return t * 2.0

    inp = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(8, 3, name="c")(inp)
    x = Scale(name="scale")(x)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2)(tf_keras.layers.Flatten()(x)))
    with pytest.raises(UnsupportedLayerError, match="'scale' of type Scale"):
        channel_groups(model)


def test_nothing_prunable_and_bad_ratios(tf_keras):
    inp = tf_keras.Input((8, 8, 3))
    model = tf_keras.Model(inp, tf_keras.layers.Dense(4)(tf_keras.layers.GlobalAveragePooling2D()(inp)))
    with pytest.raises(UnsupportedModelError, match="nothing to prune"):
        prune_channels(model, ratios=0.5)
    with pytest.raises(UnsupportedModelError, match="nothing to prune"):
        prune(model, method="channels", sparsity=0.5)
    small = small_cnn(tf_keras)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(EdgecnnError, match=r"Expected a fraction in \[0, 1\)"):
            prune(small, method="channels", sparsity=bad)
    with pytest.raises(EdgecnnError, match="unknown pruning method 'lottery'"):
        prune(small, method="lottery", sparsity=0.5)


def test_sensitivity_rows(tf_keras):
    from edgecnn.data import Dataset

    model = small_cnn(tf_keras)
    rng = np.random.default_rng(0)
    ds = Dataset(rng.random((40, 16, 16, 3), dtype=np.float32), rng.integers(0, 5, 40), None, "random")
    rows = sensitivity(model, ds, ratios=(0.5, 0.75), round_to=1)
    assert [(r["group"], r["ratio"]) for r in rows] == [("stem", 0.5), ("stem", 0.75), ("sep", 0.5), ("sep", 0.75)]
    assert all(abs(r["drop"] - 100 * (r["baseline"] - r["accuracy"])) < 0.01 for r in rows)
    assert rows[1]["channels_after"] == 2


def test_edgecnn_prune_is_callable_after_the_subpackage_is_imported(tf_keras):
    import edgecnn
    import edgecnn.pruning.channels  # noqa: F401  (a plain package: the verb edgecnn.prune is not replaced)

    r = edgecnn.prune(small_cnn(tf_keras), method="channels", sparsity=0.5, round_to=4, progress=False)
    assert [(row["name"], row["channels_after"]) for row in r.layers] == [("stem", 4), ("sep", 8)]
    assert r.as_dict()["params_after"] == r.model.count_params() < r.params_before


def _inverted_residuals(tf_keras):
    """Two MobileNetV2-style inverted residual blocks (expand 1x1 -> depthwise 3x3 -> project 1x1, residual
    Add) on a 16-channel stream, trained briefly on digits: plain ``model.fit``, default layers."""
    from edgecnn.data import load_data

    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 1))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(inp)))
    for i in range(2):
        y = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(96, 1, use_bias=False, name=f"b{i}_expand")(x)))
        y = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(y)))
        y = L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False, name=f"b{i}_project")(y))
        x = L.Add()([x, y])
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    model = tf_keras.Model(inp, out)
    train = load_data("digits", input_shape=(16, 16, 1), split="train")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=3, batch_size=32, verbose=0)
    return model, train


def test_group_schedule_cuts_the_wide_expansions_cheapest_first(tf_keras):
    from edgecnn.pruning.schedule import group_schedule

    model, train = _inverted_residuals(tf_keras)
    x_val, y_val = train.x[-200:], train.y[-200:]
    s = group_schedule(model, x_val=x_val, y_val=y_val, ratio=0.5, levels=(0.2, 0.35, 0.5, 0.99),
                       bn_data=train.x[:256])
    names = [r["group"] for r in s.rows]
    # the expansions and the residual stream (stem + projections, tied by the Adds) are separate groups
    assert {"b0_expand", "b1_expand"} <= set(names) and "stem" in names
    stream = next(r for r in s.rows if r["group"] == "stem")
    assert stream["channels"] == 16 and stream["channels_after"] == 8
    expand = next(r for r in s.rows if r["group"] == "b0_expand")
    assert (expand["channels"], expand["channels_after"]) == (96, 48) and expand["saved_macs"] > 0
    # cheapest first: accuracy points per share of the MACs saved never decreases down the list
    cost = [(max(r["drop"], 0.0) + 0.1) / (r["saved_macs"] / s.total_macs) for r in s.rows]
    assert cost == sorted(cost)
    # each level adds groups in that order until its share of the MACs is saved; one nobody reaches is left out
    assert [lv["level"] for lv in s.levels] == sorted(lv["level"] for lv in s.levels) and 0.99 not in \
        [lv["level"] for lv in s.levels]
    for lv in s.levels:
        assert list(lv["ratios"]) == names[:len(lv["ratios"])] and lv["saved_share"] >= lv["level"]
    # the proposed ratios prune exactly those groups: the model really gets smaller there
    small = prune_channels(model, ratios=s.levels[0]["ratios"], bn_data=train.x[:256])
    first = s.levels[0]["ratios"]
    if "b0_expand" in first:
        assert small.get_layer("b0_expand").filters == 48
    assert small.count_params() < model.count_params()


def test_probe_fine_tune_predicts_recovery_that_the_drop_before_fine_tuning_hides(tf_keras):
    """A pruning candidate that loses many points before fine-tuning is fine-tuned briefly and re-measured
    (edgecnn.pipeline.probe); the planner then judges it by that drop, and a spent budget skips the rest."""
    from edgecnn.pipeline.candidates import Candidate, apply
    from edgecnn.pipeline.planner import predict_misses
    from edgecnn.pipeline.probe import probe
    from edgecnn.pipeline.recipe import load_recipe
    from edgecnn.runtimes.keras import keras_outputs

    import edgecnn
    from edgecnn.data import load_data

    model = edgecnn.load(str(MODELS / "mnist_cnn.h5"))  # no BatchNorm to re-estimate: pruning really hurts
    train = load_data("digits", input_shape=(28, 28, 1), split="train")
    x_val, y_val, x_rest, y_rest = train.x[-300:], train.y[-300:], train.x[:-300], train.y[:-300]
    base = float(np.mean(keras_outputs(model, x_val)[0].argmax(-1) == y_val))
    recipe = load_recipe("mobile")
    cands = []
    for ratio in (0.9, 0.75):
        c = Candidate(f"prune:{ratio}", kind="prune", ratio=ratio, removed=ratio, gain_ms=0.1, chosen=True)
        pruned = apply(model, c, recipe, bn_data=train.x[:256])
        c.accuracy_drop = 100 * (base - float(np.mean(keras_outputs(pruned, x_val)[0].argmax(-1) == y_val)))
        cands.append(c)
    assert cands[0].accuracy_drop > 10.0, cands[0].accuracy_drop  # the case the probe is for
    recipe["plan"].update(probe_epochs=2, probe_seconds=1e-6)  # the first probe spends the budget
    out = probe(model, cands, recipe, x_train=x_rest, y_train=y_rest, x_val=x_val, y_val=y_val,
                base_accuracy=base, bn_data=train.x[:256])
    first, second = cands
    assert out["probed"] == ["prune:0.9"] and out["skipped"] == (["prune:0.75"] if second.accuracy_drop > 10 else [])
    assert first.probe_drop is not None and first.probe_drop < first.accuracy_drop - 5.0, (first.accuracy_drop,
                                                                                            first.probe_drop)
    predict_misses(cands, max_drop=first.probe_drop + 0.5)  # judged by the probe, not by the drop before it
    assert first.chosen and not first.predicted_miss
    recipe["plan"]["probe_epochs"] = 0
    assert probe(model, cands, recipe, x_train=x_rest, y_train=y_rest, x_val=x_val, y_val=y_val,
                 base_accuracy=base, bn_data=None)["probed"] == []
