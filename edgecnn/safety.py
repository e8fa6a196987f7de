"""A model file is untrusted input: find code and unknown classes in its config before anything loads it.

The scan reads only JSON (the architecture a Keras file stores); it never deserializes a layer.

Example:
    >>> cfg = {"class_name": "Sequential", "config": {"layers": [
    ...     {"class_name": "Lambda", "config": {"name": "scale", "function": "..."}}]}}
    >>> try:
    ...     scan_config(cfg, trust_model=False, custom_names=set())
    ... except UnsafeModelError as e:
    ...     print(str(e).split(":")[0])
    layer 'scale' is a Lambda layer
    >>> scan_config(cfg, trust_model=True, custom_names=set())
"""
from __future__ import annotations

import functools
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgecnn.errors import InputFileError, UnsafeModelError

# Serialized names that are data, not classes (tensors, tuples, functions named by string).
_STRUCTURAL = frozenset(
    "Functional Sequential Model InputLayer function __keras_tensor__ __tensor__ __numpy__ __bytes__ "
    "__typespec__ __tuple__ __ellipsis__ __slice__ TensorShape TypeSpec TensorSpec TFOpLambda SlicingOpLambda".split()
)
_CODE = frozenset({"Lambda", "__lambda__"})
_FRAMEWORK_MODULES = ("keras.src.ops", "keras.ops")
_TRUSTED_MODULES = ("keras", "tf_keras", "tensorflow", "builtins")


@functools.lru_cache(maxsize=1)
def known_class_names() -> frozenset[str]:
    """Every class name that Keras 3 and tf_keras ship for layers, initializers, regularizers, constraints."""
    import keras
    import tf_keras

    names: set[str] = set()
    for lib in (keras, tf_keras):
        for mod_name in ("layers", "initializers", "regularizers", "constraints", "activations"):
            mod = getattr(lib, mod_name)
            names.update(n for n in dir(mod) if not n.startswith("_"))
    names.update(n for n in dir(keras.dtype_policies) if not n.startswith("_"))
    names.update({"Policy", "DTypePolicy", "FloatDTypePolicy"})
    return frozenset(names - _CODE)


# Training set-up stored beside the architecture; edgecnn loads with compile=False, so it is never deserialized.
_NOT_LOADED = frozenset({"compile_config", "training_config"})


def _objects(config: Any, layer: str = "?") -> Iterator[tuple[str, str, dict]]:
    """Yield (class_name, enclosing layer name, object) for every serialized object in ``config``."""
    if isinstance(config, list):
        for item in config:
            yield from _objects(item, layer)
    elif isinstance(config, dict):
        if isinstance(config.get("class_name"), str):
            inner = config.get("config")
            if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                layer = inner["name"]
            yield config["class_name"], layer, config
        for key, value in config.items():
            if key not in _NOT_LOADED:
                yield from _objects(value, layer)


def scan_config(config: Any, *, trust_model: bool, custom_names: set[str]) -> None:
    """Refuse Lambda layers (unless ``trust_model``) and classes neither Keras nor the user defines.

    Raises:
        UnsafeModelError: naming the layer and the two ways forward.
    """
    known = known_class_names()
    for class_name, layer, obj in _objects(config):
        registered = obj.get("registered_name")
        if class_name in _CODE:
            if trust_model or class_name in custom_names:
                continue
            raise UnsafeModelError(
                f"layer '{layer}' is a Lambda layer: it holds Python code that would run when the model "
                "loads, so edgecnn refuses it by default. To go on: --trust-model (run the code stored in the "
                "file) or --custom-objects path/to/module.py (your own code for it)"
            )
        if class_name in _STRUCTURAL or str(obj.get("module", "")).startswith(_FRAMEWORK_MODULES):
            continue
        if class_name in custom_names or (isinstance(registered, str) and registered in custom_names):
            continue
        module = obj.get("module")
        foreign = isinstance(module, str) and module.split(".")[0] not in _TRUSTED_MODULES
        if class_name in known and not foreign and (registered in (None, class_name) or str(registered).startswith("keras")):
            continue
        qualified = f"{module}.{class_name}" if foreign else registered or class_name
        raise UnsafeModelError(
            f"layer '{layer}' uses class '{qualified}', which neither Keras nor your code "
            "defines; edgecnn does not import code named by a model file. To go on: --custom-objects "
            "path/to/module.py (a module that defines or registers it), or --trust-model for Lambda code"
        )


@dataclass(frozen=True)
class CustomObjects:
    """User classes by name: those Keras 3 needs to load a file, and tf_keras twins for the working model."""

    keras3: dict[str, Any] = field(default_factory=dict)
    tf_keras: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return set(self.keras3) | set(self.tf_keras)


def load_custom_objects(path: str | Path | None) -> CustomObjects:
    """Import the user's module and collect its custom classes/functions (runs user code: explicit flag).

    The module may define ``CUSTOM_OBJECTS = {"Name": cls}`` (what the file needs to load) and
    ``TF_KERAS_OBJECTS = {"Name": tf_keras_cls}`` (tf_keras twins of Keras 3 custom layers, used for the
    working model). Without them, every class and function defined in the module is taken, plus whatever
    it registered with ``keras.saving.register_keras_serializable``; tf_keras layer classes go to the
    twins, the rest to both.

    Raises:
        InputFileError: the path is missing or the module fails to import.
    """
    if path is None:
        return CustomObjects()
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"custom-objects module not found: Expected a .py file. Received: {path}")
    import keras
    import tf_keras

    before = dict(keras.saving.get_custom_objects())
    name = f"edgecnn_custom_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise InputFileError(f"custom-objects module {path} failed to import: {exc}".splitlines()[0]) from exc
    objects = getattr(module, "CUSTOM_OBJECTS", None)
    if objects is None:
        objects = {
            k: v
            for k, v in vars(module).items()
            if callable(v) and getattr(v, "__module__", None) == name and not k.startswith("_")
        }
    objects = dict(objects)
    for key, value in keras.saving.get_custom_objects().items():
        if key not in before:
            objects[key] = value
            objects.setdefault(key.split(">")[-1], value)
    twins = dict(getattr(module, "TF_KERAS_OBJECTS", {}) or {})
    k3 = {}
    for key, value in objects.items():
        if isinstance(value, type) and issubclass(value, tf_keras.layers.Layer):
            twins.setdefault(key, value)
        else:
            k3[key] = value
            if not isinstance(value, type):
                twins.setdefault(key, value)
    return CustomObjects(keras3=k3, tf_keras=twins)
