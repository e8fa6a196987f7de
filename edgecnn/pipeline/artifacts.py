"""The base artifact of a compress run: the unchanged original converted for a runtime at the target's
quantization, converted once per run and reused by every plan measurement and by the benchmark stage.

It is kept in memory on the Context and in ``OUTDIR/.edgecnn/base/`` (so a resumed run does not convert it
again). The file's name is made here from the runtime and the quantization, never read from the checkpoint,
and its bytes are used only when their sha256 equals the one this run recorded in the state (which a
checkpoint records like every file under ``.edgecnn/``); anything else is converted afresh.

Example:
    >>> base_name("litert", "int8")
    'litert-int8.bin'
"""
from __future__ import annotations

import hashlib
import os
from typing import Optional

import numpy as np

from edgecnn.pipeline.context import Context

FOLDER = "base"


def base_name(runtime: str, quantize: str) -> str:
    return f"{runtime}-{quantize}.bin"


def calibration(ctx: Context) -> Optional[np.ndarray]:
    """The calibration inputs of the base artifact: the train split's first ``quantize.calibration_samples``
    (None without data: synthetic inputs, seeded, the same every time)."""
    if ctx.train is None:
        return None
    return ctx.train.x[: int(ctx.recipe["quantize"]["calibration_samples"])]


def base_artifact(ctx: Context, runtime: Optional[str] = None) -> bytes:
    """The original converted for ``runtime`` (default: the target's) at the target's quantization."""
    runtime = runtime or ctx.target.runtime
    name = base_name(runtime, ctx.target.quantize)
    cache = ctx.cache.setdefault("base_artifacts", {})
    if name in cache:
        return cache[name]
    recorded = ctx.state.setdefault("base_artifacts", {})
    path = ctx.outdir / ".edgecnn" / FOLDER / name
    data = _read(path, recorded.get(name))
    if data is None:
        from edgecnn.exporting.convert import convert

        data = convert(ctx.original, runtime=runtime, quantize=ctx.target.quantize, calibration=calibration(ctx),
                       seed=ctx.seed)
        _write(path, data)
        recorded[name] = hashlib.sha256(data).hexdigest()
    cache[name] = data
    return data


def _read(path: "os.PathLike[str]", sha: Optional[str]) -> Optional[bytes]:
    if not isinstance(sha, str):
        return None
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha else None


def _write(path: "os.PathLike[str]", data: bytes) -> None:
    """Best effort: a base artifact that cannot be written is converted again on resume."""
    from pathlib import Path

    from edgecnn.files import write_atomic

    folder = Path(path).parent
    try:
        if os.path.islink(folder.parent) or os.path.islink(folder):
            return
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except OSError:
        pass
