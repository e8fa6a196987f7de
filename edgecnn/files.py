"""Writing files so that nothing half-written ever appears: temporary name in the same folder, then rename.

Example:
    >>> import tempfile, pathlib
    >>> folder = prepare_outdir(pathlib.Path(tempfile.mkdtemp()) / "out")
    >>> write_atomic(folder / "a.txt", b"done").read_bytes(), sorted(p.name for p in folder.iterdir())
    (b'done', ['a.txt'])
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from edgecnn.errors import InputFileError


def prepare_outdir(outdir: str | os.PathLike) -> Path:
    """Create ``outdir`` (and parents); a file in its place is an error."""
    path = Path(outdir)
    if path.exists() and not path.is_dir():
        raise InputFileError(f"output folder {path} is a file: Expected a folder (it will be created). Received: a file")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds, else delete it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8 with \\n line ends) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def strict_json(obj: object, *, indent: int = 2) -> str:
    """JSON that strict parsers accept: NaN and +-Infinity become null (``json.dumps`` would write bare
    ``NaN``), and objects JSON does not know are written as their ``str``.

    >>> strict_json({"a": float("nan"), "b": [1.0, float("inf")], "c": 2}, indent=0).replace("\\n", "")
    '{"a": null,"b": [1.0,null],"c": 2}'
    """
    import json
    import math

    def clean(value: object) -> object:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
            return clean(value.item())  # numpy scalars
        if value is None or isinstance(value, (str, int, bool)):
            return value
        return str(value)

    return json.dumps(clean(obj), indent=indent, allow_nan=False)
