"""Load any Keras model file, SavedModel or live model into the working representation (see :mod:`edgecnn.io`)."""
from __future__ import annotations

import json
import os
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import (
    EdgecnnError,
    InputFileError,
    ShapeMismatchError,
    TranslationError,
    UnsupportedModelError,
    first_line,
)

_MODEL_SUFFIXES = (".h5", ".hdf5", ".keras")


@dataclass(frozen=True)
class LoadInfo:
    """Where a working model came from and how faithfully it was brought over."""

    source: str
    format: str  # "h5", "keras", "savedmodel", "live"
    written_by: str  # e.g. "keras 3.15.1", "keras 2.15.0", "tf_keras (live)"
    translated: bool  # True when a Keras 3 model was rebuilt in tf_keras
    max_rel_diff: float | None  # output difference working vs original, relative to output scale


_INFO: "weakref.WeakKeyDictionary[Any, LoadInfo]" = weakref.WeakKeyDictionary()


def load_info(model: Any) -> LoadInfo | None:
    """The :class:`LoadInfo` of a model returned by :func:`load`, else None."""
    return _INFO.get(model)


def _parse_shape(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    if isinstance(shape, str):
        try:
            shape = tuple(int(s) for s in shape.replace("x", ",").split(","))
        except ValueError:
            raise ShapeMismatchError(f"--input-shape must be H,W,C: Expected e.g. 32,32,3. Received: {shape!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ShapeMismatchError(f"--input-shape must be H,W,C: Expected 3 positive ints. Received: {shape}")
    return shape


def _config_object(config: Any, where: str) -> dict:
    """A stored architecture must be a JSON object naming its class (Keras 2.0 Sequential: ``config`` a list)."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        got = f"a JSON {type(config).__name__}" if not isinstance(config, dict) else \
            f"an object with keys {', '.join(sorted(map(str, config))[:5]) or 'none'}"
        raise InputFileError(f"{where} is not a Keras model architecture: Expected a JSON object with a "
                             f"'class_name'. Received: {got}")
    return config


def _text(value: Any, where: str) -> bytes:
    import numpy as np

    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "SUO":
        value = value.item()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value)
    raise InputFileError(f"{where} is not text: Expected a JSON string. Received: {type(value).__name__}")


def _read_h5_header(path: Path) -> tuple[dict, str]:
    import h5py

    from edgecnn.limits import parse_json

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", b"")
            weights_only = "layer_names" in f.attrs or len(f.keys()) > 0
    except OSError as exc:
        raise InputFileError(
            f"{path} is not a readable HDF5 model (truncated or corrupt): {exc}".splitlines()[0]
        ) from exc
    if raw is None:
        if weights_only:
            raise InputFileError(
                f"{path} holds weights only, no architecture: Expected a full model saved with model.save(). "
                "Received: a weights file (build the model in code, call load_weights, then pass the model)"
            )
        raise InputFileError(f"{path} is an HDF5 file but not a Keras model: it has no 'model_config'")
    where = f"{path} model_config"
    config = _config_object(parse_json(_text(raw, where), where=where), where)
    try:
        version = _text(version, f"{path} keras_version").decode("utf-8", "replace")
    except InputFileError:
        version = ""
    return config, version


def _read_keras_header(path: Path) -> tuple[dict, str]:
    from edgecnn.limits import parse_json, read_zip_member

    where = str(path)
    try:
        with zipfile.ZipFile(path) as z:
            config = parse_json(read_zip_member(z, "config.json", where=where), where=f"{path} config.json")
            meta = {}
            if "metadata.json" in z.namelist():
                meta = parse_json(read_zip_member(z, "metadata.json", where=where), where=f"{path} metadata.json")
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise InputFileError(
            f"{path} is not a valid .keras archive (truncated, corrupt or not a model): {exc}".splitlines()[0]
        ) from exc
    config = _config_object(config, f"{path} config.json")
    return config, str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputFileError(f"model not found: Expected an existing file or SavedModel folder. Received: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise InputFileError(
                f"{path} is a folder but not a SavedModel: Expected saved_model.pb inside. Received: a folder "
                f"with {len(list(path.iterdir()))} entries"
            )
        return
    if path.stat().st_size == 0:
        raise InputFileError(f"{path} is empty: Expected a Keras model file. Received: 0 bytes")
    if path.suffix.lower() not in _MODEL_SUFFIXES:
        raise InputFileError(
            f"unknown model format: Expected .h5, .keras or a SavedModel folder. Received: {path.name}"
        )


def _load_keras3(path: Path, *, trust_model: bool, custom: dict) -> Any:
    import keras

    kwargs: dict[str, Any] = {"compile": False, "custom_objects": custom or None}
    kwargs["safe_mode"] = not trust_model
    return keras.models.load_model(path, **kwargs)


def _load_tf_keras(path: Path, *, trust_model: bool, custom: dict) -> Any:
    import tf_keras

    kwargs: dict[str, Any] = {"compile": False, "custom_objects": custom or None}
    if path.suffix.lower() == ".keras":
        kwargs["safe_mode"] = not trust_model
    return tf_keras.models.load_model(str(path), **kwargs)


def _load_file(path: Path, *, trust_model: bool, custom_objects: str | None) -> tuple[Any, LoadInfo, dict]:
    """Load a Keras file with the Keras that wrote it. Returns (source model, info, tf_keras custom objects)."""
    from edgecnn.io.safety import load_custom_objects, scan_config

    suffix = path.suffix.lower()
    fmt = "keras" if suffix == ".keras" else "h5"
    config, version = _read_keras_header(path) if fmt == "keras" else _read_h5_header(path)
    objects = load_custom_objects(custom_objects)
    scan_config(config, trust_model=trust_model, custom_names=objects.names)
    k3_custom, tfk_custom = objects.keras3, objects.tf_keras
    keras2 = version.startswith(("1.", "2."))
    attempts = [("tf_keras", _load_tf_keras, tfk_custom), ("keras 3", _load_keras3, k3_custom)]
    if not keras2:
        attempts.reverse()
    errors = []
    for label, loader, custom in attempts:
        try:
            model = loader(path, trust_model=trust_model, custom=custom)
        except EdgecnnError:
            raise
        except Exception as exc:  # each Keras raises its own types; report both attempts in one line
            errors.append(f"{label}: {first_line(exc, 240)}")
            continue
        written = f"keras {version}" if version else "keras (unknown version)"
        return model, LoadInfo(str(path), fmt, written, label == "keras 3", None), tfk_custom
    raise InputFileError(f"{path} could not be loaded as a Keras model ({'; '.join(errors)})")


def _load_savedmodel(path: Path, *, trust_model: bool, custom_objects: str | None) -> tuple[Any, LoadInfo, dict]:
    from edgecnn.io.safety import load_custom_objects, scan_config

    meta = path / "keras_metadata.pb"
    if meta.is_file():
        from tf_keras.protobuf import saved_metadata_pb2

        proto = saved_metadata_pb2.SavedMetadata()
        try:
            proto.ParseFromString(meta.read_bytes())
        except Exception as exc:
            raise InputFileError(f"{path}: keras_metadata.pb is corrupt: {first_line(exc, 240)}") from exc
        objects = load_custom_objects(custom_objects)
        from edgecnn.limits import parse_json

        for node in proto.nodes:
            scan_config(parse_json(node.metadata or "{}", where=f"{meta} node {node.node_id}"),
                        trust_model=trust_model, custom_names=objects.names)
        tfk_custom = objects.tf_keras
        try:
            model = _load_tf_keras(path, trust_model=trust_model, custom=tfk_custom)
        except Exception as exc:
            raise InputFileError(f"{path} could not be loaded as a Keras SavedModel: {first_line(exc, 240)}") from exc
        return model, LoadInfo(str(path), "savedmodel", "tf_keras savedmodel", False, None), tfk_custom
    from edgecnn.io.savedmodel import GraphModel

    graph = GraphModel.load(path)
    return graph, LoadInfo(str(path), "savedmodel", "tensorflow savedmodel (graph only)", False, None), {}


def _is_tf_keras(model: Any) -> bool:
    return type(model).__module__.startswith("tf_keras") or any(
        c.__module__.startswith("tf_keras") for c in type(model).__mro__
    )


def load(
    source: Any,
    *,
    input_shape: Any = None,
    custom_objects: str | None = None,
    trust_model: bool = False,
    require_image_input: bool = True,
) -> Any:
    """Bring a model file or live model into the working representation.

    Args:
        source: path to ``.h5``/``.keras``/SavedModel folder, or a live Keras 3 / tf_keras model.
        input_shape: ``(H, W, C)`` or ``"H,W,C"`` to fix an input with unknown dimensions.
        custom_objects: path to a Python module that defines the model's custom classes (runs that code).
        trust_model: allow Lambda layers, whose stored bytecode runs on load.
        require_image_input: refuse models without a 4-D (batch, H, W, C) input.

    Returns:
        A flat ``tf_keras.Model`` (or a :class:`~edgecnn.io.savedmodel.GraphModel` for a graph-only SavedModel).

    Raises:
        InputFileError, UnsafeModelError, UnsupportedLayerError, TranslationError, ShapeMismatchError.

    Example:
        >>> import tf_keras
        >>> m = tf_keras.Sequential([tf_keras.Input((16, 16, 3)), tf_keras.layers.Conv2D(4, 3)])
        >>> load(m).output_shape
        (None, 14, 14, 4)
    """
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    from edgecnn.io.translate import check_same_outputs, to_working

    shape = _parse_shape(input_shape)
    tfk_custom: dict = {}
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        _check_path(path)
        loader = _load_savedmodel if path.is_dir() else _load_file
        model, info, tfk_custom = loader(path, trust_model=trust_model, custom_objects=custom_objects)
    else:
        import keras
        import tf_keras

        if not isinstance(source, (keras.Model, tf_keras.Model)):
            raise InputFileError(
                "load() takes a path or a Keras model: Expected str, Path, keras.Model or tf_keras.Model. "
                f"Received: {type(source).__name__}"
            )
        tfk = isinstance(source, tf_keras.Model)
        model = source
        info = LoadInfo("<live model>", "live", "tf_keras (live)" if tfk else "keras 3 (live)", not tfk, None)
    from edgecnn.io.savedmodel import GraphModel

    if isinstance(model, GraphModel):
        working = model.with_input_shape(shape) if shape else model
        diff = None
    else:
        try:
            working = to_working(model, tf_custom_objects=tfk_custom, input_shape=shape)
        except TranslationError as exc:
            if shape is None:
                raise
            raise ShapeMismatchError(f"the model cannot take --input-shape {shape}: {exc}") from exc
        _check_probe(working)  # before anything runs the model on a probe input
        diff = check_same_outputs(model, working) if shape is None else None
    if require_image_input:
        _require_image_input(working)
    _INFO[working] = LoadInfo(info.source, info.format, info.written_by, info.translated, diff)
    return working


def _check_probe(model: Any) -> None:
    """Refuse, from the static shapes alone, a model whose probe input or largest activation (one sample) is
    over the ``probe_elements`` cap: running it would allocate that much memory."""
    from edgecnn.graph import largest_tensor
    from edgecnn.limits import check

    name, elements = largest_tensor(model)
    check("probe_elements", elements, where=f"model '{model.name}'", what=f"tensor '{name}' (one sample): elements")


def _require_image_input(model: Any) -> None:
    shapes = [tuple(t.shape) for t in model.inputs]
    if not any(len(s) == 4 for s in shapes):
        raise ShapeMismatchError(
            "edgecnn works on CNNs: Expected an image input of shape (batch, H, W, C). "
            f"Received: input shapes {shapes}"
        )
