"""``compress`` across machines (recipe ``finetune.strategy = "multiworker"``): what every worker must agree on.

With MultiWorkerMirroredStrategy every worker runs the same command, and every collective op (each training
step's all-reduce) must be issued by all of them in the same order, with variables of the same shapes. So
every decision before and during fine-tuning must come out the same on every worker:

- The plan must be fixed (recipe ``plan.fixed``, e.g. the ``recipe.toml`` an earlier single-machine run wrote):
  a plan chosen from latency measured on each worker would differ between workers (timings are noise, and
  the workers need not be alike), and the models they fine-tune would not match. The target's latency is a
  property of the target device, not of the training cluster, so it is measured once, on one machine.
- Back-off is off (``plan.max_backoff = 0``): it would follow the chief's validation of its artifacts alone
  and send only the chief back to fine-tuning. A missed budget is reported (exit 1) as on one machine.
- ``--resume`` is refused: only the chief has a checkpoint, so the workers would resume at different stages.

The other stages are deterministic (same data split, same seed, same arithmetic) and run on every worker.
The chief alone goes on after fine-tuning: it quantizes, validates, benchmarks and writes OUTDIR. The others
stop after the fine-tuning stage and write nothing into OUTDIR (their checkpoints go to a private temporary
folder, removed when they end).

Example:
    >>> from edgecnn.pipeline.recipe import load_recipe
    >>> check(load_recipe("mobile", overrides={"finetune.strategy": "multiworker"}), data="digits", resume=False)
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: --strategy multiworker fine-tunes a fixed plan: Expected recipe plan.fixed (an earlier run's OUTDIR/recipe.toml, with --recipe). Received: plan.fixed = [] (a plan chosen from latency measured on each worker would differ between workers)
"""
from __future__ import annotations

from typing import Any, Optional

from edgecnn.errors import EdgecnnError

NOTE = ("fine-tuned with --strategy multiworker ({where}): the plan was fixed by the recipe and back-off was off "
        "(plan.max_backoff = 0), so that every worker ran the same steps; the chief wrote the outputs")
LAST_SHARED_STAGE = "finetune"


def check(rec: dict, *, data: Any, resume: bool) -> None:
    """Refuse what multiworker compress cannot do (before anything heavy runs); set ``plan.max_backoff = 0``."""
    if rec["finetune"]["strategy"] != "multiworker":
        return
    if data is None:
        raise EdgecnnError("--strategy multiworker distributes fine-tuning: Expected labelled --data. Received: no "
                           "--data (the data-free path does not fine-tune)")
    if not rec["plan"]["fixed"]:
        raise EdgecnnError("--strategy multiworker fine-tunes a fixed plan: Expected recipe plan.fixed (an earlier "
                           "run's OUTDIR/recipe.toml, with --recipe). Received: plan.fixed = [] (a plan chosen from "
                           "latency measured on each worker would differ between workers)")
    if resume:
        raise EdgecnnError("--resume with --strategy multiworker: Expected a fresh run. Received: --resume (only the "
                           "chief keeps a checkpoint, so the workers would resume at different stages)")
    rec["plan"]["max_backoff"] = 0


def start(rec: dict) -> None:
    """Create the recipe's strategy now: after the options are checked, before the model is loaded."""
    from edgecnn import distribute

    distribute.start(rec["finetune"]["strategy"])


def stops_before(stage: str, names: list[str]) -> bool:
    """Whether this process ends its run before ``stage``: a non-chief worker stops after the fine-tuning."""
    from edgecnn import distribute

    return not distribute.is_chief() and names.index(stage) > names.index(LAST_SHARED_STAGE)


def note(ctx: Any) -> None:
    """The report's note of a multiworker run."""
    from edgecnn import distribute

    where = distribute.cluster()
    if where is not None:
        ctx.note(NOTE.format(where=f"{where.workers} workers"))


def report(ctx: Any) -> dict:
    """What a non-chief worker returns: no artifacts (the chief writes them), the fine-tuning's record."""
    from edgecnn import distribute

    stages = [{"name": r.name, "status": r.status, "seconds": r.seconds, "changes": list(r.changes)}
              for r in ctx.stages]
    return {"worker": distribute.worker_line(), "budget": {"met": None}, "stages": stages, "outdir": None}


def worker_line(report: dict) -> Optional[str]:
    """The line a non-chief worker prints instead of the results table (None on the chief)."""
    return report.get("worker")
