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

# Serialized names that are data, not classes (tensors, tuples, shapes).
_DATA = frozenset("__keras_tensor__ __tensor__ __numpy__ __bytes__ __tuple__ __ellipsis__ __slice__ TensorShape".split())
# Keras' own model and op classes: allowed by name when their module, if any, is Keras' or TensorFlow's.
_STRUCTURAL = frozenset("Functional Sequential Model InputLayer TypeSpec TensorSpec TFOpLambda SlicingOpLambda".split())
_CODE = frozenset({"Lambda", "__lambda__"})
_FRAMEWORK_MODULES = ("keras.src.ops", "keras.ops")
_KERAS_MODULES = ("keras", "tf_keras")
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


@functools.lru_cache(maxsize=1)
def known_function_names() -> frozenset[str]:
    """Functions a Keras file may name (``class_name: "function"``): Keras' activations, losses, metrics, ops."""
    import keras
    import tf_keras

    names: set[str] = set()
    for mod in (keras.activations, keras.losses, keras.metrics, keras.ops, tf_keras.activations, tf_keras.losses,
                tf_keras.metrics):
        names.update(n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n, None))
                     and not isinstance(getattr(mod, n, None), type))
    return frozenset(names - _CODE - {"deserialize", "get", "serialize"})


# Training set-up stored beside the architecture; edgecnn loads with compile=False, so it is never deserialized.
_NOT_LOADED = frozenset({"compile_config", "training_config"})


def _name_of(obj: dict) -> str | None:
    inner = obj.get("config")
    for candidate in ((inner.get("name") if isinstance(inner, dict) else None), obj.get("name")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def _objects(config: Any, layer: str = "?") -> Iterator[tuple[str, str, dict]]:
    """Yield (class_name, enclosing layer name, object) for every serialized object in ``config``."""
    if isinstance(config, list):
        for item in config:
            yield from _objects(item, layer)
    elif isinstance(config, dict):
        if isinstance(config.get("class_name"), str):
            layer = _name_of(config) or layer
            yield config["class_name"], layer, config
        for key, value in config.items():
            if key in _NOT_LOADED:
                continue
            if key == "layers" and isinstance(value, list):  # an unnamed layer is named by its place
                for i, item in enumerate(value):
                    yield from _objects(item, f"#{i} of {layer}" if layer != "?" else f"#{i}")
            else:
                yield from _objects(value, layer)


def _root(module: Any) -> str | None:
    return module.split(".")[0] if isinstance(module, str) and module else None


def _refuse(layer: str, what: str) -> UnsafeModelError:
    return UnsafeModelError(
        f"layer '{layer}' uses {what}, which neither Keras nor your code defines; edgecnn does not import code "
        "named by a model file. To go on: --custom-objects path/to/module.py (a module that defines or registers "
        "it), or --trust-model for Lambda code"
    )


def _check_function(obj: dict, layer: str, custom_names: set[str]) -> None:
    """A function reference: a Keras function named from Keras' own modules (or ``builtins``), or the user's."""
    name, module = obj.get("config"), obj.get("module")
    if not isinstance(name, str):
        raise _refuse(layer, f"a function reference of type {type(name).__name__}")
    if name in custom_names or name.split(">")[-1] in custom_names:
        return
    short = name.split(">")[-1]
    keras_owned = module is None or module == "builtins" or _root(module) in _KERAS_MODULES
    if keras_owned and ">" not in name and short in known_function_names():
        return
    raise _refuse(layer, f"function '{module + '.' if isinstance(module, str) else ''}{name}'")


def scan_config(config: Any, *, trust_model: bool, custom_names: set[str]) -> None:
    """Refuse Lambda layers (unless ``trust_model``), classes and functions neither Keras nor the user defines,
    modules outside Keras and TensorFlow, and registered names Keras does not know.

    Raises:
        UnsafeModelError: naming the layer and the two ways forward.

    Example:
        >>> evil = {"class_name": "Dense", "config": {"name": "d", "activation": {
        ...     "module": "os", "class_name": "function", "config": "system", "registered_name": "function"}}}
        >>> scan_config(evil, trust_model=False, custom_names=set())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edgecnn.errors.UnsafeModelError: layer 'd' uses function 'os.system', which neither Keras nor your code ...
    """
    known = known_class_names()
    for class_name, layer, obj in _objects(config):
        registered = obj.get("registered_name")
        module = obj.get("module")
        if class_name in _CODE:
            if trust_model or class_name in custom_names:
                continue
            raise UnsafeModelError(
                f"layer '{layer}' is a Lambda layer: it holds Python code that would run when the model "
                "loads, so edgecnn refuses it by default. To go on: --trust-model (run the code stored in the "
                "file) or --custom-objects path/to/module.py (your own code for it)"
            )
        if class_name in _DATA:
            continue
        if class_name == "function":
            _check_function(obj, layer, custom_names)
            continue
        if class_name == "__typespec__":
            spec = obj.get("spec_name")
            if _root(module) in ("tensorflow", *_KERAS_MODULES) and isinstance(spec, str) and spec.isidentifier():
                continue
            raise _refuse(layer, f"type spec '{module}.{spec}'")
        if class_name in custom_names or (isinstance(registered, str) and registered in custom_names):
            continue
        if module is not None and not isinstance(module, str):
            raise _refuse(layer, f"class '{class_name}' from a module of type {type(module).__name__}")
        if isinstance(module, str) and module.startswith(_FRAMEWORK_MODULES) and registered in (None, class_name):
            continue
        foreign = module is not None and _root(module) not in _TRUSTED_MODULES
        if foreign:
            raise _refuse(layer, f"class '{module}.{class_name}'")
        if registered not in (None, class_name):
            raise _refuse(layer, f"class '{class_name}' registered as {registered!r}")
        if class_name in known or class_name in _STRUCTURAL:
            continue
        raise _refuse(layer, f"class '{class_name}'")


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
