"""The command line's one boundary: every failure becomes one line on stderr and an exit code.

EdgecnnError (bad input), usage errors, OS errors on a path (read-only, full disk, permission, a file where a
folder should be, ...) and memory exhaustion exit 2; Ctrl-C exits 130 with a line that says so; anything
else is a bug: one line and exit 3, never 1 (which means "accuracy budget not met" for compress and
"latency regression" for bench). ``--debug`` anywhere on the command line re-raises, so the traceback shows.

Example:
    >>> import typer
    >>> app = typer.Typer()
    >>> @app.command()
    ... def write(path: str) -> None:
    ...     raise OSError(28, "No space left on device", path)
    >>> run(typer.main.get_command(app), ["out/a.json"])  # prints the one line on stderr
    2
    >>> sorted(EXIT_CODES)
    [0, 1, 2, 3, 130]
"""
from __future__ import annotations

import sys
from typing import Any

from edgecnn.errors import EdgecnnError

EXIT_CODES = {0: "done", 1: "compress: accuracy budget not met / bench: latency regression", 2: "bad input",
              3: "internal error (a bug: rerun with --debug and report the traceback)", 130: "interrupted"}


def run(command: Any, args: list[str]) -> int:
    """Run a click/typer command on ``args``; return the exit code, having printed at most one error line."""
    import typer
    from typer._click import exceptions as click  # typer 0.29 parses with its own copy of click

    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if not debug:
        import warnings

        warnings.filterwarnings("ignore")
    from edgecnn.signals import catching_interrupts, interrupted

    with catching_interrupts():
        try:
            with command.make_context("edgecnn", args) as ctx:
                command.invoke(ctx)
            return 0
        except typer.Exit as exc:
            return int(getattr(exc, "exit_code", 0) or 0)
        except click.NoArgsIsHelpError as exc:
            exc.show()
            return 2
        except click.UsageError as exc:
            if debug:
                raise
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            message = exc.format_message().replace("Value error, ", "")  # typer's wording of a refused choice
            return fail(f"{message}{where}", 2)
        except BaseException as exc:  # noqa: BLE001 - the boundary: each kind becomes its one line
            if debug:
                raise
            if isinstance(exc, (KeyboardInterrupt, typer.Abort)) or interrupted():
                # (a library that caught the interrupt may have failed with an unrelated error: it was Ctrl-C)
                resume = " rerun the same command with --resume to continue from the last finished stage" \
                    if args[:1] == ["compress"] else " no output was left half-written"
                _handled_keyboard_interrupt()
                return fail(f"interrupted (Ctrl-C);{resume}", 130)
            if isinstance(exc, (SystemExit, GeneratorExit)):
                raise
            return fail(*_describe(exc))


def _handled_keyboard_interrupt() -> None:
    """Tell CPython the KeyboardInterrupt was handled. When it passed through code that a library ran with the C
    API (PyRun_*), CPython marked it "unhandled" there, and ``python -m edgecnn.cli`` would then end by killing
    itself with SIGINT (exit -2) after printing our line (measured: 1 run in 3 interrupted at the plan stage)."""
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, ValueError, AttributeError, OSError):  # another Python implementation: nothing to reset
        pass


def _describe(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) of a failure that was not an interrupt."""
    if isinstance(exc, EdgecnnError):
        return str(exc), 2
    if isinstance(exc, OSError):
        from edgecnn.files import os_error_message

        return os_error_message(exc), 2
    if isinstance(exc, MemoryError):
        return ("ran out of memory: Expected an input that fits in this machine's memory. Received: an input too "
                "large to process (see the caps in docs/security.md)"), 2
    from edgecnn.errors import first_line

    # a bug: say so in one line; exit 1 means "budget not met" / "regression"
    return (f"internal error ({type(exc).__name__}: {first_line(exc, 200)}); rerun with --debug for the traceback "
            "and please report it"), 3


def fail(message: str, code: int) -> int:
    r"""Print ``edgecnn: error: MESSAGE`` as one line on stderr; return ``code``.

    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     fail("two\nlines", 2)
    2
    >>> err.getvalue()
    'edgecnn: error: two lines\n'
    """
    line = " ".join(str(message).split()) or "failed"
    sys.stdout.flush()
    print(f"edgecnn: error: {line}", file=sys.stderr, flush=True)
    return code
