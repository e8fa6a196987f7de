"""Bring any Keras model into the working representation: a flat tf_keras functional model.

Keras 3 models are translated layer by layer (same layers, same weights, never retrained) and nested
models (a base model used as one layer) are inlined, so that every Conv2D is a top-level layer. The
result is checked numerically against the source with :func:`check_same_outputs`.

Example:
    >>> import keras, numpy as np
    >>> inp = keras.Input((8, 8, 3))
    >>> out = keras.layers.Conv2D(4, 3, activation="relu6")(inp)
    >>> working = to_working(keras.Model(inp, out))
    >>> type(working).__module__.split(".")[0], [type(l).__name__ for l in working.layers]
    ('tf_keras', ['InputLayer', 'Conv2D', 'ReLU'])
    >>> check_same_outputs(keras.Model(inp, out), working) <= 1e-5
    True
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from edgecnn.errors import TranslationError, UnsupportedLayerError
from edgecnn.graph import fill_in, is_model, iter_nodes, model_inputs, model_outputs, producer

# Keyword arguments every tf_keras layer accepts on top of its own __init__ parameters.
_BASE_LAYER_KWARGS = frozenset(
    "input_dim input_shape batch_input_shape batch_size weights activity_regularizer autocast "
    "implementation trainable name dtype dynamic".split()
)
# Activations whose name means the same function in Keras 3 and tf_keras.
_SAME_ACTIVATIONS = frozenset(
    "linear relu sigmoid softmax tanh elu selu softplus softsign exponential gelu swish mish".split()
)
_POLICY_CLASSES = frozenset({"DTypePolicy", "FloatDTypePolicy", "Policy", "DTypePolicyMap"})
_CALL_KWARGS_DROPPED = frozenset({"training", "mask"})


def _hard_sigmoid(x: Any, name: Callable[[str], str]) -> Any:
    import tf_keras

    L = tf_keras.layers
    scaled = L.Rescaling(1.0 / 6.0, offset=0.5, name=name("hard_sigmoid_scale"))(x)
    return L.ReLU(max_value=1.0, name=name("hard_sigmoid_clip"))(scaled)


def _hard_silu(x: Any, name: Callable[[str], str]) -> Any:
    import tf_keras

    return tf_keras.layers.Multiply(name=name("hard_silu"))([x, _hard_sigmoid(x, name)])


def _activation_bridges() -> dict[str, Callable[[Any, Callable[[str], str]], Any]]:
    """Keras 3 activations that tf_keras lacks or defines differently -> standard tf_keras layers.

    Each bridge takes the tensor and a function that makes a unique layer name from a suffix.
    """
    import tf_keras

    L = tf_keras.layers
    return {
        "relu6": lambda x, name: L.ReLU(max_value=6.0, name=name("relu6"))(x),
        "silu": lambda x, name: L.Activation("swish", name=name("silu"))(x),
        "leaky_relu": lambda x, name: L.LeakyReLU(alpha=0.2, name=name("leaky_relu"))(x),
        "hard_sigmoid": _hard_sigmoid,
        "hard_silu": _hard_silu,
        "hard_swish": _hard_silu,
    }


def _activation_name(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class_name") == "function":
        return value.get("config")
    return value


def _accepted_kwargs(cls: type) -> set[str] | None:
    """Parameter names of ``cls.__init__``; None when it takes arbitrary keywords we cannot list."""
    params = inspect.signature(cls.__init__).parameters
    names = {p for p in params if p not in ("self", "args", "kwargs")}
    return names


def _tf_keras_object_class(class_name: str) -> type | None:
    import tf_keras

    for mod in (tf_keras.initializers, tf_keras.regularizers, tf_keras.constraints):
        cls = getattr(mod, class_name, None)
        if isinstance(cls, type):
            return cls
    return None


def _translate_value(value: Any) -> Any:
    """Keras 3 serialized values -> tf_keras ones (objects lose module/registered_name, policies -> names)."""
    if isinstance(value, list):
        return [_translate_value(v) for v in value]
    if isinstance(value, dict):
        if "class_name" in value and "config" in value:
            name = value["class_name"]
            if name in _POLICY_CLASSES:
                return value["config"].get("name", "float32")
            if name == "function":
                return value["config"]
            inner = value["config"]
            if isinstance(inner, dict):
                inner = {k: _translate_value(v) for k, v in inner.items()}
                cls = _tf_keras_object_class(name)
                if cls is not None:
                    keep = _accepted_kwargs(cls)
                    inner = {k: v for k, v in inner.items() if k in keep}
            return {"class_name": name, "config": inner}
        return {k: _translate_value(v) for k, v in value.items()}
    return value


def _trivial(value: Any) -> bool:
    return value in (None, False, 0, "", [], {}, ())


def _keras3_layer_to_tf_keras(layer: Any, name: str, tf_custom: dict[str, type]) -> tuple[Any, Any]:
    """Make the tf_keras twin of a Keras 3 layer. Returns (tf_keras layer, activation bridge or None)."""
    import tf_keras

    class_name = type(layer).__name__
    cls = tf_custom.get(class_name) or getattr(tf_keras.layers, class_name, None)
    if class_name == "Lambda" and cls is not None:
        return tf_keras.layers.Lambda(layer.function, name=name), None
    if not isinstance(cls, type):
        raise UnsupportedLayerError(
            f"layer '{layer.name}' ({class_name}) has no tf_keras equivalent, so it cannot enter the working "
            "representation: Expected a standard Keras layer, or a tf_keras class of the same name in "
            "--custom-objects. Received: " + type(layer).__module__ + "." + class_name
        )
    config = {k: _translate_value(v) for k, v in layer.get_config().items()}
    config["name"] = name
    bridge = None
    if "activation" in config:
        act = _activation_name(config["activation"])
        if act not in _SAME_ACTIVATIONS:
            bridges = _activation_bridges()
            if act not in bridges:
                raise UnsupportedLayerError(
                    f"layer '{layer.name}' uses activation {act!r}, which tf_keras does not have: Expected one "
                    f"of {sorted(_SAME_ACTIVATIONS | set(bridges))}. Received: {act!r}"
                )
            bridge = bridges[act]
            act = "linear"
        config["activation"] = act
    if class_name not in tf_custom:
        keep = _accepted_kwargs(cls) | _BASE_LAYER_KWARGS
        defaults = inspect.signature(type(layer).__init__).parameters
        for key in sorted(set(config) - keep):
            default = defaults[key].default if key in defaults else None
            if not (_trivial(config[key]) or config[key] == default):
                raise UnsupportedLayerError(
                    f"layer '{layer.name}' ({class_name}) sets Keras-3-only option {key}={config[key]!r}, which "
                    "tf_keras cannot reproduce: Expected it unset. Received: " + repr(config[key])
                )
            del config[key]
    try:
        new = cls.from_config(config)
    except Exception as exc:  # the message names the layer; the cause is kept for --debug
        raise UnsupportedLayerError(
            f"layer '{layer.name}' ({class_name}) could not be rebuilt in tf_keras: {exc}".splitlines()[0]
        ) from exc
    if class_name == "Activation" and bridge is not None:
        return None, bridge
    return new, bridge


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) or (isinstance(v, np.ndarray) and v.ndim == 0)


def _op_to_tf_keras(op: Any, args: tuple, name: str) -> Any:
    """Keras 3 operations used in functional models (``x + 3.0``, ``a * b``) -> standard tf_keras layers.

    Only layers both Keras versions know are emitted, so the working model saves and reloads anywhere.
    """
    import tf_keras

    L = tf_keras.layers
    kind = type(op).__name__
    if len(args) == 2:
        a, b = args
        tensors = not _is_scalar(a) and not _is_scalar(b)
        if tensors and kind in ("Add", "Subtract", "Multiply"):
            return getattr(L, kind)(name=name)([a, b])
        if kind in ("Add", "Subtract", "Multiply", "Divide", "TrueDivide") and _is_scalar(a) != _is_scalar(b):
            c = float(a if _is_scalar(a) else b)
            x = b if _is_scalar(a) else a
            scale, offset = {
                "Add": (1.0, c),
                "Subtract": (-1.0, c) if _is_scalar(a) else (1.0, -c),
                "Multiply": (c, 0.0),
            }.get(kind, (None, 0.0))
            if kind in ("Divide", "TrueDivide") and not _is_scalar(a):
                scale = 1.0 / c
            if scale is not None:
                return L.Rescaling(scale, offset=offset, name=name)(x)
    raise UnsupportedLayerError(
        f"operation '{op.name}' ({kind}) has no tf_keras layer equivalent: Expected a Keras layer, or a scalar "
        f"or element-wise add/subtract/multiply/divide. Received: {kind} with {len(args)} arguments"
    )


def _tf_keras_clone(layer: Any, name: str) -> Any:
    config = layer.get_config()
    config["name"] = name
    return type(layer).from_config(config)


class _Emitter:
    """Rebuilds a (possibly nested) source graph as one flat tf_keras graph, copying weights."""

    def __init__(self, *, tf_custom: dict[str, type]) -> None:
        self.tf_custom = tf_custom
        self.made: dict[int, tuple[Any, Any]] = {}
        self.names: set[str] = set()

    def _unique(self, name: str, prefix: str) -> str:
        candidate = name if name not in self.names else f"{prefix}_{name}" if prefix else name
        i = 1
        base = candidate
        while candidate in self.names:
            candidate, i = f"{base}_{i}", i + 1
        self.names.add(candidate)
        return candidate

    def _call_layer(self, layer: Any, args: tuple, kwargs: dict, prefix: str) -> list:
        import tf_keras

        import keras

        if not isinstance(layer, (keras.layers.Layer, tf_keras.layers.Layer)):
            out = _op_to_tf_keras(layer, args, self._unique(layer.name, prefix))
            return [out]
        key = id(layer)
        first = key not in self.made
        if first:
            name = self._unique(layer.name, prefix)
            if isinstance(layer, tf_keras.layers.Layer):
                self.made[key] = (_tf_keras_clone(layer, name), None)
            else:
                self.made[key] = _keras3_layer_to_tf_keras(layer, name, self.tf_custom)
        new, bridge = self.made[key]
        kwargs = {k: v for k, v in kwargs.items() if k not in _CALL_KWARGS_DROPPED}
        out = new(*args, **kwargs) if new is not None else args[0]
        if first and new is not None:
            _copy_weights(layer, new)
        if bridge is not None:
            base = new.name if new is not None else self._unique(layer.name, prefix)
            out = bridge(out, lambda suffix: self._unique(f"{base}_{suffix}", ""))
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def emit(self, model: Any, values: list, prefix: str = "") -> list:
        tensors = {id(t): v for t, v in zip(model_inputs(model), values)}
        for node in iter_nodes(model):
            args = fill_in(node.args, tensors)
            kwargs = fill_in(node.kwargs, tensors)
            if is_model(node.layer):
                flat = [tensors[id(t)] for t in node.inputs]
                outs = self.emit(node.layer, flat, prefix=node.layer.name)
            else:
                outs = self._call_layer(node.layer, args, kwargs, prefix)
            if len(outs) != len(node.outputs):
                raise TranslationError(
                    f"layer '{node.layer.name}' produced {len(outs)} outputs in tf_keras: Expected "
                    f"{len(node.outputs)}. Received: {len(outs)}"
                )
            for t, v in zip(node.outputs, outs):
                tensors[id(t)] = v
        return [tensors[id(t)] for t in model_outputs(model)]


def _copy_weights(src: Any, dst: Any) -> None:
    weights = src.get_weights()
    expected = [tuple(w.shape) for w in dst.get_weights()]
    received = [tuple(w.shape) for w in weights]
    if expected != received:
        raise TranslationError(
            f"layer '{src.name}': weights do not fit its tf_keras twin: Expected shapes {expected}. "
            f"Received: {received}"
        )
    dst.set_weights(weights)


def _input_spec(t: Any, shape: tuple | None) -> tuple[tuple, str, str]:
    full = tuple(t.shape)
    if shape is not None:
        full = (full[0],) + tuple(shape)
    dtype = getattr(t.dtype, "name", t.dtype)
    layer = producer(t)
    name = layer.name if layer is not None else getattr(t, "name", "input")
    return full, str(dtype), name


def to_working(
    model: Any,
    *,
    tf_custom_objects: dict[str, type] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Any:
    """Return a flat tf_keras functional model that computes what ``model`` computes.

    Args:
        model: a Keras 3 or tf_keras Functional/Sequential model; nested models are inlined.
        tf_custom_objects: tf_keras classes for custom layers, by class name.
        input_shape: replace the (single) input's shape, without batch, e.g. ``(64, 64, 3)``.

    Returns:
        A new ``tf_keras.Model`` with copies of the layers and their weights.

    Raises:
        UnsupportedLayerError: a layer or activation that tf_keras cannot reproduce.
        TranslationError: weights that do not fit the rebuilt layer.
    """
    import tf_keras

    sources = model_inputs(model)
    if input_shape is not None and len(sources) != 1:
        raise UnsupportedLayerError(
            f"--input-shape applies to single-input models: Expected 1 input. Received: {len(sources)}"
        )
    emitter = _Emitter(tf_custom=dict(tf_custom_objects or {}))
    inputs = []
    for t in sources:
        shape, dtype, name = _input_spec(t, input_shape)
        name = emitter._unique(name, "")
        inputs.append(tf_keras.Input(shape=shape[1:], batch_size=shape[0], dtype=dtype, name=name))
    outputs = emitter.emit(model, inputs)
    return tf_keras.Model(
        inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0], name=model.name
    )


def sample_inputs(model: Any, *, seed: int = 0, batch: int = 2, fill: int = 32) -> list[np.ndarray]:
    """Random inputs in [0, 1) for every model input; unknown dimensions become ``fill``."""
    rng = np.random.default_rng(seed)
    arrays = []
    for t in model_inputs(model):
        shape = [batch] + [fill if d is None else int(d) for d in tuple(t.shape)[1:]]
        dtype = str(getattr(t.dtype, "name", t.dtype))
        if "int" in dtype:
            arrays.append(rng.integers(0, 10, size=shape).astype(dtype))
        else:
            arrays.append(rng.random(shape, dtype=np.float32).astype(dtype))
    return arrays


def _predict(model: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    out = model(arrays if len(arrays) > 1 else arrays[0], training=False)
    if isinstance(out, dict):
        out = list(out.values())
    if not isinstance(out, (list, tuple)):
        out = [out]
    return [np.asarray(o, dtype=np.float64) for o in out]


def check_same_outputs(reference: Any, candidate: Any, *, seed: int = 0, rtol: float = 1e-5) -> float:
    """Run both models on the same random input; return max |diff| / output scale.

    Raises:
        TranslationError: the relative difference exceeds ``rtol`` or the outputs differ in shape.
    """
    arrays = sample_inputs(candidate, seed=seed)
    ref, got = _predict(reference, arrays), _predict(candidate, arrays)
    if [r.shape for r in ref] != [g.shape for g in got]:
        raise TranslationError(
            f"working model output shapes differ from the original: Expected {[r.shape for r in ref]}. "
            f"Received: {[g.shape for g in got]}"
        )
    worst = 0.0
    for r, g in zip(ref, got):
        scale = max(float(np.max(np.abs(r))) if r.size else 0.0, 1e-6)
        worst = max(worst, float(np.max(np.abs(r - g))) / scale if r.size else 0.0)
    if not worst <= rtol:
        raise TranslationError(
            f"the working model does not reproduce '{reference.name}': Expected max |diff| <= {rtol:g} of the "
            f"output scale. Received: {worst:.3g}; the model is refused rather than silently changed"
        )
    return worst


_KERAS3_BASE_KWARGS = frozenset("activity_regularizer trainable dtype autocast input_dim input_shape "
                                "batch_input_shape batch_size name weights".split())


def _mro_default(cls: type, key: str) -> Any:
    """The default of ``key`` in the first ``__init__`` along the MRO that names it."""
    for klass in cls.__mro__:
        params = inspect.signature(klass.__init__).parameters if "__init__" in vars(klass) else {}
        if key in params:
            return params[key].default
    return inspect.Parameter.empty


def portable_layer_configs(config: Any) -> Any:
    """Drop, from a tf_keras model config, layer keys that Keras 3 rejects and that are at their defaults.

    tf_keras writes a few inherited keys that Keras 3's legacy-h5 loader refuses (e.g. SeparableConv2D's
    ``groups`` and ``kernel_initializer``). A key is dropped only when its value is the tf_keras default,
    so tf_keras reads the file back unchanged, and Keras 3 can read it too.
    """
    import keras
    import tf_keras

    def fix(layer_cfg: dict) -> None:
        name = layer_cfg.get("class_name")
        inner = layer_cfg.get("config")
        if name in ("Functional", "Sequential", "Model") and isinstance(inner, dict):
            for sub in inner.get("layers", []):
                fix(sub)
            return
        k3_cls = getattr(keras.layers, str(name), None)
        tfk_cls = getattr(tf_keras.layers, str(name), None)
        if not (isinstance(k3_cls, type) and isinstance(tfk_cls, type) and isinstance(inner, dict)):
            return
        accepted = _accepted_kwargs(k3_cls) | _KERAS3_BASE_KWARGS
        for key in [k for k in inner if k not in accepted]:
            default = _mro_default(tfk_cls, key)
            value = inner[key]
            if isinstance(value, dict) and isinstance(default, str):
                value = value.get("class_name", "").lower()
                default = default.replace("_", "")
            if _trivial(inner[key]) or value == default or str(value).lower() == str(default).lower():
                del inner[key]

    fix(config)
    return config
