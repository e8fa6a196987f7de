"""Channel pruning of keras.applications architectures (weights=None, 32x32x3): exact surgery, smaller model,
same output shape, and TFLite + ONNX exports that reproduce the pruned Keras model on LiteRT / ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest

from edgecnn.export.validate import compare, keras_outputs
from edgecnn.latency import convert
from edgecnn.prune import prune_channels
from edgecnn.prune.groups import ChannelGraph
from edgecnn.runtimes import RUNTIMES

from test_prune import _random_selection, zero_removed

APPS = {
    "MobileNetV2": dict(alpha=0.35),
    "ResNet50": {},
    "DenseNet121": {},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPS))
def test_application_prunes_exactly_and_exports(keras3, name):
    import edgecnn

    keras3.utils.set_random_seed(0)
    source = getattr(keras3.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10, **APPS[name])
    working = edgecnn.load(source)
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)

    # exactness: channels that feed nothing (their consumer rows zeroed) are cut without changing the outputs
    cg = ChannelGraph(working)
    assert len(cg.groups()) > 10
    selection = _random_selection(cg, 0)
    zero_removed(working, selection, cg)
    exact = edgecnn.prune.apply_selection(working, selection, cg=cg)
    np.testing.assert_allclose(exact(x).numpy(), working(x).numpy(), rtol=1e-4, atol=1e-6)

    pruned = prune_channels(working, ratios=0.5, round_to=8)
    assert pruned.output_shape == working.output_shape == (None, 10)
    assert pruned.count_params() < 0.45 * working.count_params()
    reference = keras_outputs(pruned, x)
    for runtime in ("litert", "onnxruntime"):
        session = RUNTIMES[runtime].load(convert(pruned, runtime=runtime, quantize="none"), threads=1)
        v = compare(reference, session.run(x), exact=True)
        assert v.passed, (runtime, v.problems)
