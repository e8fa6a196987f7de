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
    edgecnn.errors.EdgecnnError: unknown recipe option 'prune.ratio': Expected one of prune.enabled, prune.method, prune.ratios, prune.importance, prune.round_to, prune.per_group, prune.group_ratio, prune.group_levels. Received: 'prune.ratio'
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
from edgecnn.runtimes import CONVERT_RUNTIMES, RUNTIMES


@dataclass(frozen=True)
class Target:
    """Where the compressed model runs: the runtime that measures it (a row of
    :data:`edgecnn.runtimes.RUNTIMES`), the quantization; the artifact format is the row's."""

    name: str
    runtime: str
    quantize: str

    @property
    def row(self) -> Any:
        from edgecnn.runtimes import RUNTIMES

        return RUNTIMES[self.runtime]

    @property
    def format(self) -> str:
        return self.row.format


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("litert-int8", "litert", "int8"),
        Target("litert-fp16", "litert", "fp16"),
        Target("litert-dynamic", "litert", "dynamic"),
        Target("litert-fp32", "litert", "none"),
        Target("onnx-int8", "onnxruntime", "int8"),
        Target("onnx-fp16", "onnxruntime", "fp16"),
        Target("onnx-fp32", "onnxruntime", "none"),
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
        elif isinstance(expected, list):
            item = expected[0] if expected else ""  # the empty lists of the schema (fixed, extra_formats) hold names
            bad = [v for v in value if not _same_kind(item, v)]
            if bad:
                raise EdgecnnError(f"recipe option {dotted!r}: Expected a list of {type(item).__name__}. "
                                   f"Received: {bad[0]!r}")


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
    if not isinstance(source, str):
        raise EdgecnnError(f"recipe: Expected a preset name, a .toml path or TOML text. Received: "
                           f"{type(source).__name__}")
    if "\n" in source or "=" in source:
        text, where = source, "recipe text"
    elif source in preset_names():
        text, where = (PRESETS_DIR / f"{source}.toml").read_text(), f"preset {source}"
    else:
        path = Path(source)
        if path.suffix != ".toml" or not path.is_file():
            raise EdgecnnError(f"unknown recipe {source!r}: Expected a preset ({', '.join(preset_names())}) or a "
                               f".toml file. Received: {source!r}")
        text, where = _read_file(path), str(path)
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as exc:
        raise EdgecnnError(f"recipe {where} is not valid TOML: {exc}") from None
    except RecursionError:
        raise EdgecnnError(f"recipe {where} is not valid TOML: Expected tables and values. Received: arrays "
                           "nested too deeply to read") from None


def _read_file(path: Path) -> str:
    """A recipe file's text: bounded in size, UTF-8, no NUL bytes (a binary file is not a recipe)."""
    from edgecnn.limits import check_text_size

    try:
        with open(path, "rb") as f:
            data = f.read(_RECIPE_READ)
    except OSError as exc:
        raise EdgecnnError(f"recipe {path} cannot be read: {exc.strerror or exc}") from None
    check_text_size(data, where=f"recipe {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise EdgecnnError(f"recipe {path} is not a TOML text file: Expected UTF-8 text. Received: binary data")
    return text


_RECIPE_READ = 64 * 2**20 + 1


_FORMATS = tuple(RUNTIMES[n].format for n in CONVERT_RUNTIMES)
# Names a recipe may use, by dotted key (checked before any model is loaded).
CHOICES: dict[str, tuple[str, ...]] = {
    "io": ("float", "int8", "uint8"),
    "rewrite.kinds": ("gap-head", "low-rank-dense", "separable", "bottleneck"),
    "prune.method": ("channels",),
    "prune.importance": ("l1", "bn", "activation"),
    "export.formats": _FORMATS,
    "export.extra_formats": _FORMATS,
    "bench.runtimes": CONVERT_RUNTIMES,
    "finetune.strategy": ("default", "mirrored", "multiworker"),
}
# The range rule (edgecnn.checks.RULES) of every numeric option; lists are checked element by element.
NUMBERS: dict[str, str] = {
    "max_accuracy_drop": "points", "latency_budget_ms": "non_negative", "seed": "seed",
    "rewrite.dense_energy": "energy", "rewrite.min_dense_params": "non_negative_int",
    "prune.ratios": "ratio", "prune.round_to": "count", "prune.group_ratio": "ratio", "prune.group_levels": "ratio",
    "finetune.epochs": "epochs", "finetune.batch_size": "count", "finetune.learning_rate": "positive",
    "finetune.temperature": "positive", "finetune.alpha": "fraction", "finetune.patience": "non_negative_int",
    "quantize.calibration_samples": "count",
    "bench.threads": "count", "bench.runs": "count", "bench.seconds": "positive",
    "plan.latency_runs": "count", "plan.seconds": "positive", "plan.min_gain": "non_negative",
    "plan.max_backoff": "non_negative_int", "plan.max_candidates": "count", "plan.max_seconds": "non_negative",
    "plan.max_drop_before_finetune": "points", "plan.probe_epochs": "non_negative_int",
    "plan.probe_seconds": "non_negative",
    "datafree.min_agreement": "fraction", "datafree.min_snr_db": "non_negative", "datafree.samples": "count",
    "datafree.steps": "non_negative_int", "datafree.max_synthesis_seconds": "non_negative",
    "datafree.synthesis_memory_mb": "positive", "datafree.batchnorm_sigmas": "non_negative",
}
# The command-line flag that sets an option, named in its error.
FLAGS = {"max_accuracy_drop": "--max-accuracy-drop", "latency_budget_ms": "--latency-budget-ms", "seed": "--seed",
         "finetune.epochs": "--epochs", "target": "--target", "runtime_profile": "--runtime-profile",
         "finetune.strategy": "--strategy"}


def _get(recipe: Mapping[str, Any], dotted: str) -> Any:
    value: Any = recipe
    for part in dotted.split("."):
        value = value[part]
    return value


def check_values(recipe: Mapping[str, Any]) -> None:
    """Range-check every numeric option and every name (see :data:`NUMBERS`, :data:`CHOICES`).

    Raises:
        EdgecnnError: naming the option (and its flag), the rule and the value.
    """
    from edgecnn.checks import check_number
    from edgecnn.runtimes.profiles import PROFILES

    for dotted, rule in NUMBERS.items():
        value = _get(recipe, dotted)
        label = f"recipe option {dotted!r}" + (f" ({FLAGS[dotted]})" if dotted in FLAGS else "")
        for v in value if isinstance(value, list) else [value]:
            check_number(v, rule=rule, name=label)
    for dotted, allowed in CHOICES.items():
        value = _get(recipe, dotted)
        for v in value if isinstance(value, list) else [value]:
            if v not in allowed:
                label = f"recipe option {dotted!r}" + (f" ({FLAGS[dotted]})" if dotted in FLAGS else "")
                raise EdgecnnError(f"{label}: Expected one of {', '.join(allowed)}. Received: {v!r}")
    if recipe["target"] not in TARGETS:
        raise EdgecnnError(f"unknown target {recipe['target']!r}: Expected one of {', '.join(TARGETS)}. "
                           f"Received: {recipe['target']!r}")
    if recipe["runtime_profile"] and recipe["runtime_profile"] not in PROFILES:
        raise EdgecnnError(f"unknown runtime profile {recipe['runtime_profile']!r}: Expected one of "
                           f"{', '.join(PROFILES)}. Received: {recipe['runtime_profile']!r}")


def load_recipe(source: str = "mobile", *, overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """The full recipe: the mobile schema's defaults, then ``source`` (preset name, .toml path or TOML text),
    then ``overrides`` (dotted keys, e.g. ``{"finetune.epochs": 3}``; None values are ignored).

    Raises:
        EdgecnnError: unknown preset or file, invalid TOML, unknown option, wrong value type or target, a
            number out of range (the same rule as the command line's flags and the Python API's keywords).
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
    check_values(recipe)
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
