"""Channel pruning of keras.applications architectures (weights=None, 32x32x3): exact surgery, smaller model,
same output shape; MobileNetV2's pruned model exported to TFLite and ONNX reproduces Keras on LiteRT / ONNX
Runtime. (The TFLite converter takes minutes on ResNet50/DenseNet121 on this host: their exports are checked
by benchmarks/prune_apps.py, written to docs/prune_apps.md.)"""
from __future__ import annotations

import numpy as np
import pytest

from edgecnn.exporting.validate import compare
from edgecnn.runtimes.keras import keras_outputs
from edgecnn.exporting.convert import convert
from edgecnn.pruning import apply_selection, prune_channels
from edgecnn.pruning.groups import ChannelGraph
from edgecnn.runtimes import RUNTIMES

from test_prune import _random_selection, zero_removed

APPS = {
    "MobileNetV2": dict(alpha=0.35),
    "ResNet50": {},
    "DenseNet121": {},
}
X = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)


def _working(keras3, name):
    import edgecnn

    keras3.utils.set_random_seed(0)
    return edgecnn.load(getattr(keras3.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10,
                                                           **APPS[name]))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPS))
def test_application_prunes_exactly(keras3, name):
    working = _working(keras3, name)
    pruned = prune_channels(working, ratios=0.5, round_to=8)
    assert pruned.output_shape == working.output_shape == (None, 10)
    assert pruned.count_params() < 0.45 * working.count_params()
    # exactness: channels that feed nothing (their consumer rows zeroed) are cut without changing the outputs
    cg = ChannelGraph(working)
    assert len(cg.groups()) > 10
    selection = _random_selection(cg, 0)
    zero_removed(working, selection, cg)
    exact = apply_selection(working, selection, cg=cg)
    assert exact.count_params() < 0.6 * working.count_params()
    np.testing.assert_allclose(exact(X).numpy(), working(X).numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_pruned_mobilenet_v2_exports_to_tflite_and_onnx(keras3):
    pruned = prune_channels(_working(keras3, "MobileNetV2"), ratios=0.5, round_to=8)
    reference = keras_outputs(pruned, X)
    for runtime in ("litert", "onnxruntime"):
        session = RUNTIMES[runtime].load(convert(pruned, runtime=runtime, quantize="none"), threads=1)
        v = compare(reference, session.run(X), exact=True)
        assert v.passed, (runtime, v.problems)
