"""Progress of a compress run on stderr: an overall bar over the stages and one for the current stage.

The pipeline reports events as ``on_stage(stage, status)`` with status ``start``, ``done``, ``skipped``,
``failed``, ``failed: why`` (a back-off: what was undone) or ``progress K/N text`` (candidates measured,
epochs trained). In a log (not a TTY) each event is one plain line. On a terminal the same lines for started
and finished stages stay on screen and two rich bars (all stages, the current one) show below them, labels
whole (wrapped, never cut); the bars are removed when the run ends, stops or fails, so nothing stale is left
above the final table or the error line.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> with StageProgress(["analyze", "plan"], stream=out) as show:
    ...     show("analyze", "start"); show("analyze", "done"); show("plan", "progress 1/2 gap-head")
    ...     show("plan", "failed: accuracy 45.8% below budget; undid gap-head")
    >>> print(out.getvalue().strip())
    [1/2] analyze ...
    [1/2] analyze done (0.0 s)
          plan 1/2 gap-head
    [2/2] plan failed: accuracy 45.8% below budget; undid gap-head (0.0 s)
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO


def parse_progress(status: str) -> Optional[tuple[int, int, str]]:
    """``"progress 3/8 text"`` -> (3, 8, "text"); other statuses -> None."""
    if not status.startswith("progress "):
        return None
    head, _, text = status[len("progress "):].partition(" ")
    done, _, total = head.partition("/")
    try:
        return int(done), int(total), text
    except ValueError:
        return None


class StageProgress:
    """Context manager yielding the ``on_stage`` callback for :func:`edgecnn.pipeline.compress`."""

    def __init__(self, stages: list[str], *, stream: Optional[TextIO] = None) -> None:
        self.stages = list(stages)
        self.stream = stream if stream is not None else sys.stderr
        self.rich = stream is None and self.stream.isatty()
        self.started: dict[str, float] = {}
        self._progress: Any = None

    def __enter__(self) -> Any:
        if self.rich:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.table import Column

            label = TextColumn("{task.description}", table_column=Column(ratio=1, overflow="fold"))
            self._progress = Progress(label, BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(file=self.stream), transient=True, expand=True)
            self._progress.start()
            self._overall = self._progress.add_task("compress", total=len(self.stages))
            self._stage = self._progress.add_task("", total=None)
        return self.show

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()  # transient: the bars go; the stage lines printed above them stay
            self._progress = None

    def _index(self, stage: str) -> int:
        return self.stages.index(stage) + 1 if stage in self.stages else 0

    def _line(self, stage: str, status: str) -> str:
        if status == "start":
            self.started[stage] = time.perf_counter()
            return f"[{self._index(stage)}/{len(self.stages)}] {stage} ..."
        now = time.perf_counter()
        took = now - self.started.get(stage, now)
        return f"[{self._index(stage)}/{len(self.stages)}] {stage} {status} ({took:.1f} s)"

    def show(self, stage: str, status: str) -> None:
        step = parse_progress(status)
        if self._progress is not None:
            self._rich(stage, status, step)
            return
        if step is not None:
            print(f"      {stage} {step[0]}/{step[1]} {step[2]}", file=self.stream, flush=True)
        else:
            print(self._line(stage, status), file=self.stream, flush=True)

    def _rich(self, stage: str, status: str, step: Optional[tuple[int, int, str]]) -> None:
        p = self._progress
        if step is not None:
            p.update(self._stage, description=f"{stage}: {step[2]}", completed=step[0], total=step[1])
            return
        line = self._line(stage, status)
        if status == "start":
            p.update(self._stage, description=stage, completed=0, total=None)
            return
        p.console.print(line, markup=False, highlight=False)  # stays above the bars
        failed = status.startswith("failed")
        p.update(self._overall, completed=self._index(stage) - (1 if failed else 0))
        p.update(self._stage, description=f"{stage} {status}")
