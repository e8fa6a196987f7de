"""The data-free proxy: how closely a .tflite follows the float model on the synthesized inputs.

Example:
    >>> import numpy as np, tf_keras
    >>> from edgecnn.exporting.tflite import to_tflite
    >>> from edgecnn.exporting.quantize import QuantMode
    >>> inp = tf_keras.Input((4, 4, 1))
    >>> m = tf_keras.Model(inp, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(inp)))
    >>> x = np.random.default_rng(0).random((8, 4, 4, 1), dtype=np.float32)
    >>> agreement, snr = proxy(to_tflite(m, mode=QuantMode.NONE, calibration=None), x, m.predict(x, verbose=0))
    >>> agreement, snr > 100
    (1.0, True)
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["proxy"]


def proxy(data: bytes, x: np.ndarray, reference: np.ndarray) -> tuple[Optional[float], float]:
    """(top-1 agreement, SNR dB) of a .tflite against the float outputs ``reference`` on ``x`` (LiteRT).

    Agreement counts the inputs whose top-1 margin the artifact's output step can resolve
    (:func:`edgecnn.data.checks.top1_agreement`): an untrained model scores every class alike, its int8 output
    rounds them to one level, and its "disagreement" would be ties; then agreement is None and SNR judges."""
    from edgecnn.data.checks import top1_agreement
    from edgecnn.exporting.validate import snr_db
    from edgecnn.runtimes.litert import LiteRTSession

    got = LiteRTSession(data).run(x)[0]
    agreement = top1_agreement(reference, got)[0] if reference.ndim == 2 and reference.shape[1] > 1 else None
    return agreement, float(snr_db(reference, got))
