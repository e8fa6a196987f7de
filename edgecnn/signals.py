"""Ctrl-C that is never lost: remember that SIGINT arrived, even when library code swallows the interrupt.

Python turns SIGINT into KeyboardInterrupt at the next bytecode. When that bytecode runs inside TensorFlow's
converter or a C++ callback, the library may catch it and go on, or fail with an unrelated error (measured
here: "'SymbolicTensor' object has no attribute '_type_spec'" from a conversion interrupted mid-trace, and a
compress run that ignored the signal and finished). While :func:`catching_interrupts` is active, the signal
also sets a flag (a second Ctrl-C is ignored while cleanup runs, a third stops at once): :func:`check` raises KeyboardInterrupt at the next safe point (compress checks before it
checkpoints a stage, so a stage whose work was cut short is never recorded), and the CLI boundary reports
an error that follows an interrupt as the interrupt (exit 130).

Example:
    >>> import os, signal
    >>> with catching_interrupts():
    ...     try:
    ...         os.kill(os.getpid(), signal.SIGINT)
    ...         for _ in range(10**6):
    ...             pass
    ...     except KeyboardInterrupt:
    ...         print("interrupted:", interrupted())
    interrupted: True
    >>> interrupted()
    False
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

_hit = threading.Event()
_count = [0]


def interrupted() -> bool:
    """Whether SIGINT arrived while :func:`catching_interrupts` was active."""
    return _hit.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if SIGINT arrived, even if the KeyboardInterrupt itself was swallowed."""
    if _hit.is_set():
        raise KeyboardInterrupt


def _handler(signum: int, frame: Any) -> None:
    _count[0] += 1
    if _count[0] == 1:
        _hit.set()
        raise KeyboardInterrupt
    if _count[0] >= 3:  # a third Ctrl-C while cleaning up: stop now, the way an unhandled SIGINT does
        import os

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    # the second is ignored, so that the cleanup the first started can finish


@contextlib.contextmanager
def catching_interrupts() -> Iterator[None]:
    """Install the remembering SIGINT handler for the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _hit.clear()
    _count[0] = 0
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _hit.clear()
        _count[0] = 0
