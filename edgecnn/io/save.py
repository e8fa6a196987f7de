"""Save working models atomically as files both Keras versions load (see :mod:`edgecnn.io`)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgecnn.errors import InputFileError
from edgecnn.io.load import _MODEL_SUFFIXES, _is_tf_keras


def _make_h5_portable(path: Path) -> None:
    import h5py

    from edgecnn.io.translate import portable_layer_configs

    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        f.attrs["model_config"] = json.dumps(portable_layer_configs(config)).encode()


def _save_keras3(model: Any, dst: Path) -> None:
    """A tf_keras working model as a Keras 3 ``.keras`` file at ``dst`` (via a portable legacy ``.h5``)."""
    import tempfile

    import keras

    with tempfile.TemporaryDirectory(prefix="edgecnn-save-") as tmp:
        h5 = Path(tmp) / "model.h5"
        model.save(str(h5), save_format="h5", include_optimizer=False)
        _make_h5_portable(h5)
        keras.models.load_model(str(h5), compile=False).save(str(dst))


def _without_optimizer(model: Any) -> Any:
    """``model``, or an uncompiled copy with the same weights when it carries an optimizer (.keras files
    cannot leave it out otherwise)."""
    if getattr(model, "optimizer", None) is None or not _is_tf_keras(model):
        return model
    import tf_keras

    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def save(model: Any, path: str | os.PathLike) -> Path:
    """Save a working model atomically (temporary name in the same folder, then rename).

    ``.h5`` is written in the legacy HDF5 format, which both tf_keras and Keras 3 load. ``.keras`` is written
    by Keras 3 (the format Keras 3 users ask for; tf_keras cannot read it): the working model goes through a
    portable ``.h5`` that Keras 3 loads exactly, then Keras 3 saves it. No optimizer state
    or training config is written: the file holds the architecture and weights only, so the same weights
    always give the same bytes (a resumed run and an uninterrupted one ship identical files).

    Raises:
        InputFileError: an unknown suffix.
    """
    path = Path(path)
    if path.suffix.lower() not in _MODEL_SUFFIXES:
        raise InputFileError(f"cannot save as {path.name}: Expected a .h5 or .keras path. Received: {path}")
    from edgecnn.files import OutputGuard, atomic_path

    guard = OutputGuard(path.parent)
    guard.mkdir()
    try:
        with atomic_path(path) as tmp:
            if _is_tf_keras(model) and path.suffix.lower() != ".keras":
                model.save(str(tmp), save_format="h5", include_optimizer=False)
                _make_h5_portable(tmp)
            elif _is_tf_keras(model):
                _save_keras3(model, tmp)
            else:
                _without_optimizer(model).save(str(tmp))
    except BaseException:
        guard.remove_made_dirs()  # the folders this save made, if it failed (they are empty)
        raise
    return path

