"""Import TensorFlow and both Kerases once, without the C++ start-up chatter on stderr.

TensorFlow prints absl/oneDNN/CUDA notices straight to file descriptor 2 while it loads, before any
log level applies; a CLI that promises one clear line on stderr mutes that descriptor during the import.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TF 2.21's oneDNN filter-gradient kernel of a stride-2 1x1 conv with <= 8 input channels corrupts the heap on
# odd batch sizes (measured here: segfault / double free while fine-tuning). Training must not meet it.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@contextlib.contextmanager
def muted(*fds: int) -> Iterator[None]:
    """Silence file descriptors (default: stdout and stderr) while native code prints its chatter."""
    fds = fds or (1, 2)
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = {fd: os.dup(fd) for fd in fds}
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def import_tensorflow() -> None:
    """Import tensorflow, keras and tf_keras with stderr muted at the descriptor level (idempotent)."""
    if "tf_keras" in sys.modules and "keras" in sys.modules:
        return
    with muted(2):
        import tensorflow as tf
        import keras  # noqa: F401
        import tf_keras  # noqa: F401

        tf.get_logger().setLevel("ERROR")
        tf.zeros((1,)) + 1  # the first op prints device notices; let it print now, muted
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with tensorflow
        pass
