"""One run per output folder: an advisory lock on ``OUTDIR/.edgecnn.lock``, held for the whole run.

The lock is ``flock`` on a small file that names its holder (pid and command). A second run on the same
OUTDIR fails at once with :class:`~edgecnn.errors.LockedError` (exit 2) naming that process. The kernel
releases the lock of a killed process, so the file a ``kill -9`` leaves behind does not block ``--resume``.
The file is removed when the run ends, whatever the outcome.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> with OutdirLock(out, command="edgecnn compress a.h5"):
    ...     try:
    ...         OutdirLock(out).acquire()
    ...     except LockedError as e:
    ...         print(str(e).split(":")[0])  # doctest: +ELLIPSIS
    output folder ... is in use by another edgecnn run (pid ...
    >>> (out / LOCK_NAME).exists()
    False
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any, Optional

from edgecnn.errors import LockedError, OutputError

LOCK_NAME = ".edgecnn.lock"


class OutdirLock:
    """``with OutdirLock(outdir, command=...)``: hold the folder's lock; the folder must exist."""

    def __init__(self, outdir: str | os.PathLike, *, command: str = "edgecnn") -> None:
        self.outdir = Path(outdir)
        self.path = self.outdir / LOCK_NAME
        self.command = " ".join(command.split())[:200]
        self._fd: Optional[int] = None
        self._inode: Optional[tuple[int, int]] = None

    def acquire(self) -> "OutdirLock":
        """Take the lock or raise :class:`LockedError` naming the holder."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not a POSIX system: no advisory locks
            return self
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise OutputError(f"{self.path} is a symbolic link: Expected the lock file edgecnn makes. "
                                      "Received: a link; remove it") from None
                raise
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                os.close(fd)
                raise OutputError(f"{self.path} is not a lock file edgecnn made: Expected a plain file. Received: "
                                  f"{'a hard link' if stat.S_ISREG(info.st_mode) else 'a special file'}; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _holder(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise LockedError(
                    f"output folder {self.outdir} is in use by another edgecnn run ({holder}): Expected one run "
                    "per output folder. Received: a second run; wait for the first to finish, or pass another -o"
                ) from None
            try:
                now = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                os.close(fd)  # a finishing run removed the file between our open and our lock: take the new one
                continue
            self._fd, self._inode = fd, (info.st_dev, info.st_ino)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()}: {self.command}\n".encode("utf-8", "replace"))
            except OSError:  # a full disk: the lock holds, the file is removed again, the error says why
                self.release()
                raise
            return self
        raise LockedError(f"output folder {self.outdir} could not be locked: Expected a folder one run uses at a "
                          "time. Received: its lock file kept changing")

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and release the lock."""
        if self._fd is None:
            return
        try:
            now = os.stat(self.path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutdirLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _holder(fd: int) -> str:
    """What the lock file says about its holder, on one line."""
    try:
        text = os.pread(fd, 300, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    line = " ".join(text.split())
    return line or "a process that has not written its pid yet"
