"""Recipes: which compress stages run and with which options; TOML presets, overrides, a stable hash.

A recipe is a TOML file of the shape of ``edgecnn/recipes/mobile.toml``: top-level keys (``target``,
``max_accuracy_drop``, ``seed`` ...) and one table per stage. Every key is checked against the schema
(the mobile preset), so a misspelt option is an error, not a silent default. Command-line flags override
the recipe; the recipe actually run is written to ``OUTDIR/recipe.toml`` and reproduces the run.

Example:
    >>> r = load_recipe("mobile", overrides={"target": "onnx-int8", "finetune.epochs": 3})
    >>> r["target"], r["finetune"]["epochs"], TARGETS[r["target"]].runtime
    ('onnx-int8', 3, 'onnxruntime')
    >>> load_recipe(dumps(r)) == r
    True
    >>> load_recipe("mobile", overrides={"prune.ratio": 0.5})
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: unknown recipe option 'prune.ratio': Expected one of prune.enabled, prune.method, prune.ratios, prune.importance, prune.round_to. Received: 'prune.ratio'
"""
from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from edgecnn.errors import EdgecnnError
from edgecnn.recipes import PRESETS_DIR, preset_names


@dataclass(frozen=True)
class Target:
    """Where the compressed model runs: the runtime that measures it, the artifact format, the quantization."""

    name: str
    runtime: str
    format: str
    quantize: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("litert-int8", "litert", "tflite", "int8"),
        Target("litert-fp16", "litert", "tflite", "fp16"),
        Target("litert-dynamic", "litert", "tflite", "dynamic"),
        Target("litert-fp32", "litert", "tflite", "none"),
        Target("onnx-int8", "onnxruntime", "onnx", "int8"),
        Target("onnx-fp16", "onnxruntime", "onnx", "fp16"),
        Target("onnx-fp32", "onnxruntime", "onnx", "none"),
    )
}


def _schema() -> dict:
    return tomllib.loads((PRESETS_DIR / "mobile.toml").read_text())


_OPTIONAL_TOP = {"io": "float"}


def _check(recipe: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = "") -> None:
    for key, value in recipe.items():
        dotted = f"{prefix}{key}"
        if key not in schema and not (not prefix and key in _OPTIONAL_TOP):
            names = ", ".join(f"{prefix}{k}" for k in list(schema) + ([] if prefix else list(_OPTIONAL_TOP)))
            raise EdgecnnError(f"unknown recipe option {dotted!r}: Expected one of {names}. Received: {dotted!r}")
        expected = schema.get(key, _OPTIONAL_TOP.get(key))
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise EdgecnnError(f"recipe option {dotted!r} is a table: Expected [{dotted}]. Received: {value!r}")
            _check(value, expected, prefix=f"{dotted}.")
        elif not _same_kind(expected, value):
            raise EdgecnnError(f"recipe option {dotted!r}: Expected a {type(expected).__name__}. "
                               f"Received: {value!r}")


def _same_kind(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(expected))


def _merge(base: dict, extra: Mapping[str, Any]) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(source: str) -> tuple[dict, str]:
    if "\n" in source or "=" in source:
        text, where = source, "recipe text"
    elif source in preset_names():
        text, where = (PRESETS_DIR / f"{source}.toml").read_text(), f"preset {source}"
    else:
        path = Path(source)
        if path.suffix != ".toml" or not path.is_file():
            raise EdgecnnError(f"unknown recipe {source!r}: Expected a preset ({', '.join(preset_names())}) or a "
                               f".toml file. Received: {source!r}")
        text, where = path.read_text(), str(path)
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as exc:
        raise EdgecnnError(f"recipe {where} is not valid TOML: {exc}") from None


def load_recipe(source: str = "mobile", *, overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """The full recipe: the mobile schema's defaults, then ``source`` (preset name, .toml path or TOML text),
    then ``overrides`` (dotted keys, e.g. ``{"finetune.epochs": 3}``; None values are ignored).

    Raises:
        EdgecnnError: unknown preset or file, invalid TOML, unknown option, wrong value type or target.
    """
    schema = _schema()
    given, _ = _read(source)
    _check(given, schema)
    recipe = _merge(_merge(schema, {"io": "float"}), given)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *tables, key = dotted.split(".")
        nested: dict = {key: value}
        for t in reversed(tables):
            nested = {t: nested}
        _check(nested, schema)
        recipe = _merge(recipe, nested)
    if recipe["target"] not in TARGETS:
        raise EdgecnnError(f"unknown target {recipe['target']!r}: Expected one of {', '.join(TARGETS)}. "
                           f"Received: {recipe['target']!r}")
    if not 0 <= float(recipe["max_accuracy_drop"]) <= 100:
        raise EdgecnnError(f"max_accuracy_drop is in points: Expected 0..100. Received: {recipe['max_accuracy_drop']}")
    return recipe


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"recipe values are scalars or lists: Received {type(v).__name__}")


def dumps(recipe: Mapping[str, Any]) -> str:
    """TOML text of a recipe (top-level keys, then one table per stage)."""
    lines = [f"{k} = {_value(v)}" for k, v in recipe.items() if not isinstance(v, dict)]
    for table, values in recipe.items():
        if isinstance(values, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def recipe_hash(recipe: Mapping[str, Any]) -> str:
    """A stable hash of the recipe's content (key order does not matter)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
