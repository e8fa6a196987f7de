"""Writing files so that nothing half-written ever appears: temporary name in the same folder, then rename.

Example:
    >>> import tempfile, pathlib
    >>> folder = prepare_outdir(pathlib.Path(tempfile.mkdtemp()) / "out")
    >>> write_atomic(folder / "a.txt", b"done").read_bytes(), sorted(p.name for p in folder.iterdir())
    (b'done', ['a.txt'])
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from edgecnn.errors import InputFileError, OutputError

# What each OS error means for a path edgecnn reads or writes, in the words of one line.
_REASONS = {
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file would be larger than the system allows",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "no such file or folder (an output's parent folder must exist)",
    errno.EEXIST: "something is already there",
    errno.ELOOP: "too many symbolic links",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EMFILE: "too many open files",
    errno.EIO: "an input/output error of the device",
}


def os_error_message(exc: OSError, path: Any = None) -> str:
    """One line for an OS error on ``path`` (default: the path the error names).

    >>> os_error_message(OSError(errno.ENOSPC, "No space left on device"), "out/a.tflite")
    'cannot write out/a.tflite: no space left on the device: Expected a writable location with free space. Received: [Errno 28] No space left on device'
    >>> os_error_message(FileNotFoundError(errno.ENOENT, "No such file or directory", "x/y.json"))  # doctest: +ELLIPSIS
    "cannot use x/y.json: no such file or folder (an output's parent folder must exist): Expected an existing file, or an output in an existing folder. Received: [Errno 2] No such file or directory"
    """
    where = path if path is not None else (exc.filename if exc.filename is not None else "a file")
    reason = _REASONS.get(exc.errno or -1, exc.strerror or type(exc).__name__)
    writing = exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or path is not None
    expected = {errno.ENOSPC: "a writable location with free space", errno.EDQUOT: "a writable location with free space",
                errno.ENOTDIR: "a path whose parents are folders", errno.EISDIR: "a file path",
                errno.ENOENT: "an existing file, or an output in an existing folder"}.get(exc.errno or -1,
                                                                                          "a path edgecnn can use")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        expected = "a writable location" if writing else "a path edgecnn may read and write"
    received = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None else str(exc).splitlines()[0][:200]
    return f"cannot {'write' if writing else 'use'} {where}: {reason}: Expected {expected}. Received: {received}"


def prepare_outdir(outdir: str | os.PathLike) -> Path:
    """Create ``outdir`` (and parents); a file in its place is an error."""
    path = Path(outdir)
    if path.exists() and not path.is_dir():
        raise InputFileError(f"output folder {path} is a file: Expected a folder (it will be created). Received: a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(os_error_message(exc, path)) from exc
    return path


def check_output_file(path: Optional[str | os.PathLike], *, flag: str, make_parents: bool = False) -> None:
    """Before heavy work: an output file's path must not be a folder, and its folder must exist (or, with
    ``make_parents``, be creatable: no file where a parent folder should be).

    >>> check_output_file("/nonexistent-folder/x.json", flag="--json")
    Traceback (most recent call last):
    ...
    edgecnn.errors.OutputError: cannot write /nonexistent-folder/x.json (--json): its folder does not exist: Expected an existing folder. Received: /nonexistent-folder
    """
    if path is None:
        return
    p = Path(path)
    parent = p.parent
    if p.is_dir():
        raise OutputError(f"cannot write {p} ({flag}): it is a folder: Expected a file path. Received: a folder")
    if make_parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.exists():
        raise OutputError(f"cannot write {p} ({flag}): its folder does not exist: Expected an existing folder. "
                          f"Received: {parent}")
    if not parent.is_dir():
        raise OutputError(f"cannot write {p} ({flag}): {parent} is a file: Expected a folder. Received: a file")


@contextlib.contextmanager
def guarded_outdir(outdir: str | os.PathLike, *, command: str) -> Iterator[Path]:
    """Create OUTDIR, hold its lock for the block, and if the block fails in any way (an exception of any kind,
    Ctrl-C included) remove what appeared in OUTDIR meanwhile and the folders it made.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "out"
    >>> try:
    ...     with guarded_outdir(out, command="edgecnn export") as folder:
    ...         _ = (folder / "half.tflite").write_bytes(b"x")
    ...         raise OSError(28, "No space left on device")
    ... except OSError:
    ...     pass
    >>> out.exists()
    False
    """
    from edgecnn.lock import LOCK_NAME, OutdirLock

    guard = OutputGuard(outdir)
    guard.mkdir()
    lock = OutdirLock(outdir, command=command)
    try:
        lock.acquire()
    except BaseException:
        guard.remove_made_dirs()
        raise
    try:
        yield guard.outdir
    except BaseException:
        guard.remove_new(keep=(LOCK_NAME,))
        lock.release()
        guard.remove_made_dirs()
        raise
    lock.release()


class OutputGuard:
    """What an output folder held before a run, so that a failed run removes exactly what it created.

    >>> import tempfile, pathlib
    >>> base = pathlib.Path(tempfile.mkdtemp())
    >>> guard = OutputGuard(base / "a" / "b")
    >>> _ = guard.mkdir(); _ = (base / "a" / "b" / "half.tflite").write_bytes(b"x")
    >>> guard.undo(); sorted(p.name for p in base.iterdir())
    []
    """

    def __init__(self, outdir: str | os.PathLike) -> None:
        self.outdir = Path(outdir)
        self.created: list[Path] = []  # folders this run makes, outermost first
        p = self.outdir
        while not os.path.lexists(p) and p != p.parent:
            self.created.insert(0, p)
            p = p.parent
        self.before = set(os.listdir(self.outdir)) if self.outdir.is_dir() else set()

    @property
    def made_outdir(self) -> bool:
        return bool(self.created)

    def mkdir(self) -> Path:
        return prepare_outdir(self.outdir)

    def remove_new(self, *, keep: Iterable[str] = ()) -> None:
        """Delete what appeared in OUTDIR since the guard was made (a link is removed itself, never followed)."""
        if not self.outdir.is_dir() or self.outdir.is_symlink():
            return
        keep = set(keep)
        for name in os.listdir(self.outdir):
            if name in self.before or name in keep:
                continue
            entry = self.outdir / name
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def remove_made_dirs(self) -> None:
        """Remove the folders this run made, innermost first, if they are empty."""
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                return

    def undo(self, *, keep: Iterable[str] = ()) -> None:
        self.remove_new(keep=keep)
        if not keep:
            self.remove_made_dirs()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds, else delete it."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(os_error_message(exc, path)) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the usual file mode
        os.replace(tmp, path)
    except OSError as exc:  # full disk, a folder in the way, ... : say which output, in one line
        raise OutputError(os_error_message(exc, path)) from exc
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


def check_outdir_path(outdir: Path) -> None:
    """OUTDIR may exist as a folder or be creatable: a file in its place or on its way is an error, before work."""
    if outdir.exists() and not outdir.is_dir():
        raise InputFileError(f"output folder {outdir} is a file: Expected a folder (it will be created). "
                             "Received: a file")
    parent = outdir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputFileError(f"output folder {outdir} cannot be created: Expected folders on its path. Received: "
                             f"{parent} is a file")


def read_labels(path: Optional[Path]) -> Optional[list[str]]:
    """A labels file: UTF-8 text within the size cap, one class name per line (blank lines skipped)."""
    if path is None:
        return None
    if not path.is_file():
        raise InputFileError(f"labels file not found: Expected a text file, one label per line. Received: {path}")
    from edgecnn.limits import check_text_size

    with open(path, "rb") as f:
        data = f.read(64 * 2**20 + 1)
    check_text_size(data, where=f"labels file {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"labels file {path} is not text: Expected UTF-8, one label per line. "
                             "Received: binary data") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
