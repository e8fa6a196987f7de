"""What to benchmark: model files, artifacts and live models -> :class:`Target`; and one runnable per runtime.

A ``.h5``/``.keras`` file or SavedModel folder (or a live model) becomes a working model that runs on the
runtimes without an export format (``keras``) and is converted on the fly with plain fp32 settings for the
others; an artifact runs on the runtimes of its suffix's row (``.tflite``: ``litert``, ``.onnx``/``.ort``:
``onnxruntime``) and their GPU rows. Which is which comes from :data:`edgecnn.runtimes.RUNTIMES`.

Example:
    >>> ALL_RUNTIMES[:3], parse_list("keras, litert")
    (('keras', 'litert', 'onnxruntime'), ['keras', 'litert'])
    >>> split_name("fast=models/a.tflite"), split_name("models/a.tflite")
    (('fast', 'models/a.tflite'), (None, 'models/a.tflite'))
"""
from __future__ import annotations

import gzip
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np

from edgecnn.errors import EdgecnnError, InputFileError, first_line
from edgecnn.runtimes import RUNTIMES, artifact_runtime

ALL_RUNTIMES = tuple(RUNTIMES)


@dataclass
class Target:
    """One model to measure: a working model and/or ready artifacts."""

    name: str
    source: str
    keras: Any = None
    artifacts: dict[str, bytes] = field(default_factory=dict)  # base runtime -> bytes given by the user
    converted: dict[str, Any] = field(default_factory=dict)  # base runtime -> bytes or the conversion error
    keras_bytes: Optional[int] = None
    keras_gzip: Optional[int] = None
    path: Optional[str] = None  # the file it came from (absolute), None for live models
    sha256: Optional[str] = None  # of that file (a folder: None)

    def runs_on(self, runtime: str) -> bool:
        return RUNTIMES[runtime].base in self.artifacts or self.keras is not None

    def artifact_label(self, runtime: str) -> str:
        row = RUNTIMES[runtime]
        if row.format is None or row.base in self.artifacts:
            return self.source
        return f"{self.source} -> {RUNTIMES[row.base].suffixes[0]} (converted, fp32)"

    def artifact(self, runtime: str) -> bytes:
        """The artifact bytes for a runtime with an export format; converts once. Raises on failure."""
        base = RUNTIMES[runtime].base
        if base in self.artifacts:
            return self.artifacts[base]
        if base not in self.converted:
            from edgecnn.exporting.convert import convert

            try:
                self.converted[base] = convert(self.keras, runtime=base, quantize="none")
            except Exception as exc:  # noqa: BLE001 - kept as the result's reason
                self.converted[base] = exc
        data = self.converted[base]
        if isinstance(data, Exception):
            raise EdgecnnError(f"conversion for {base} failed: {first_line(data)}")
        return data

    def input_shape(self) -> Optional[tuple[int, ...]]:
        if self.keras is not None:
            return tuple(int(d) for d in self.keras.inputs[0].shape[1:])
        return None

    def sizes(self, runtime: str, *, with_gzip: bool = True) -> tuple[Optional[int], Optional[int]]:
        """(raw, gzip) bytes of what ``runtime`` runs (gzip None unless ``with_gzip``)."""
        if RUNTIMES[runtime].format is None:
            return self.keras_bytes, self.keras_gzip if with_gzip else None
        data = self.artifact(runtime)
        return len(data), len(gzip.compress(data, 9)) if with_gzip else None


def file_sha256(path: Path) -> Optional[str]:
    """SHA-256 of a file's bytes (None for a folder)."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def baseline_targets(baseline: dict, runtimes: list[str]) -> list[Target]:
    """Targets for the baseline's own files, when they are still on disk unchanged (same SHA-256).

    They are measured in the same rounds as the models, so the gate can compare each model with its
    baseline directly; rows whose file is gone or changed fall back to the reference-model ratio.
    """
    out, seen = [], set()
    for row in baseline.get("results", []):
        path, sha, model = row.get("source"), row.get("source_sha256"), row.get("model")
        if model in seen or not path or not sha or row.get("status", "ok") != "ok" or row.get("runtime") not in runtimes:
            continue
        p = Path(path)
        if not p.is_file() or file_sha256(p) != sha:
            continue
        seen.add(model)
        target = _target(f"{BASELINE_PREFIX}{model}", str(p))
        out.append(target)
    return out


BASELINE_PREFIX = "baseline:"


def parse_list(text: str | Iterable[Any]) -> list:
    """``"a,b"`` or an iterable -> a list of stripped, non-empty items."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return [i.strip() if isinstance(i, str) else i for i in items if not (isinstance(i, str) and not i.strip())]


def split_name(text: str) -> tuple[Optional[str], str]:
    """``NAME=PATH`` -> (NAME, PATH); a plain path -> (None, PATH)."""
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if name and "/" not in name:
            return name, path
    return None, text


def check_runtimes(runtimes: str | Iterable[str]) -> list[str]:
    """Validate runtime names (``all`` = every CPU and GPU runtime). Raises EdgecnnError for unknown names."""
    names = parse_list(runtimes)
    if names == ["all"]:
        return list(ALL_RUNTIMES)
    unknown = [n for n in names if n not in ALL_RUNTIMES]
    if unknown or not names:
        raise EdgecnnError(f"unknown runtime {', '.join(map(repr, unknown)) or '(none)'}: Expected one or more of "
                           f"{', '.join(ALL_RUNTIMES)} or all. Received: {','.join(map(str, names))}")
    return list(dict.fromkeys(names))


def resolve(models: Any) -> list[Target]:
    """Paths, live models, or ``{name: path_or_model}`` -> targets with unique names.

    Raises:
        InputFileError: a path that is missing, empty, or of a kind no runtime runs.
    """
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = [(None, m) for m in ([models] if isinstance(models, (str, Path)) or hasattr(models, "inputs")
                                     else list(models))]
    if not items:
        raise EdgecnnError("nothing to benchmark: Expected at least one model. Received: none")
    targets: list[Target] = []
    for name, model in items:
        if isinstance(model, str) and name is None:
            name, model = split_name(model)
        target = _target(name, model)
        taken = {t.name for t in targets}
        if target.name in taken:
            target.name = Path(target.source).name if Path(target.source).name not in taken else f"{target.name}#{len(targets)}"
        targets.append(target)
    return targets


def _target(name: Optional[str], model: Any) -> Target:
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise InputFileError(f"model not found: Expected an existing model file or artifact. Received: {path}")
        if path.is_file() and path.stat().st_size == 0:
            raise InputFileError(f"empty file: Expected a model file or artifact. Received: {path} (0 bytes)")
        suffix = path.suffix.lower()
        where = {"path": str(path), "sha256": file_sha256(path)}
        runtime = artifact_runtime(suffix)
        if runtime is not None:
            return Target(name or path.stem, str(path), artifacts={runtime: path.read_bytes()}, **where)
        if not path.is_dir() and suffix not in RUNTIMES["keras"].suffixes:
            raise InputFileError(f"cannot benchmark {path.name}: Expected .h5, .keras, a SavedModel folder, .tflite, "
                                 f".onnx or .ort. Received: {suffix or 'no suffix'}")
        import edgecnn.io as edgecnn_io

        working = edgecnn_io.load(str(path))
        raw = path.read_bytes() if path.is_file() else None
        return Target(name or path.stem, str(path), keras=working, keras_bytes=len(raw) if raw else None,
                      keras_gzip=len(gzip.compress(raw, 9)) if raw else None, **where)
    if isinstance(model, (bytes, bytearray)):
        raise EdgecnnError("artifact bytes are ambiguous: Expected a path (its suffix names the runtime) or a model. "
                           "Received: bytes")
    import edgecnn.io as edgecnn_io

    working = edgecnn_io.load(model)
    with tempfile.TemporaryDirectory() as tmp:
        saved = edgecnn_io.save(working, Path(tmp) / "model.h5")
        raw = Path(saved).read_bytes()
    label = name or getattr(model, "name", "model")
    return Target(label, f"{label} (live model)", keras=working, keras_bytes=len(raw),
                  keras_gzip=len(gzip.compress(raw, 9)))


@dataclass
class Runnable:
    """A loaded model on one runtime: ``invoke()`` times one call; ``predict(x)`` gives float outputs."""

    invoke: Callable[[], Any]
    predict: Callable[[np.ndarray], np.ndarray]
    threads: int
    note: str = ""


def load_runnable(target: Target, runtime: str, *, threads: int, batch_size: int, seed: int = 0) -> Runnable:
    """Load ``target`` on ``runtime`` ready to time (raises on failure; the caller records the reason).

    The timed session is its own; ``predict`` loads a second one on first use (the timed one's input is resized
    to ``batch_size`` and set once), and a graph with a fixed batch of 1 is run one sample at a time.
    """
    row = RUNTIMES[runtime]
    source = target.keras if row.format is None else target.artifact(runtime)
    session = row.load(source, threads=threads)
    holder: dict = {}

    def predict(x: np.ndarray) -> np.ndarray:
        s = holder.setdefault("s", row.load(source, threads=threads))
        try:
            return s.run(x)[0]
        except EdgecnnError:
            raise
        except Exception:  # noqa: BLE001 - a fixed batch-1 graph: one sample at a time
            return np.concatenate([s.run(x[i:i + 1])[0] for i in range(len(x))])

    return Runnable(session.invoker(batch_size=batch_size, seed=seed), predict, session.threads, session.note)
