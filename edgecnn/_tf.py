"""Import TensorFlow and both Kerases once, without the C++ start-up chatter on stderr.

TensorFlow prints absl/oneDNN/CUDA notices straight to file descriptor 2 while it loads, before any
log level applies; a CLI that promises one clear line on stderr mutes that descriptor during the import.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def import_tensorflow() -> None:
    """Import tensorflow, keras and tf_keras with stderr muted at the descriptor level (idempotent)."""
    if "tf_keras" in sys.modules and "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
        import keras  # noqa: F401
        import tf_keras  # noqa: F401

        tf.get_logger().setLevel("ERROR")
        tf.zeros((1,)) + 1  # the first op prints device notices; let it print now, muted
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with tensorflow
        pass
