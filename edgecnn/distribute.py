"""Fine-tuning across devices and machines: the ``--strategy`` of compress, prune and rewrite.

``default`` trains on one device; ``mirrored`` (``tf.distribute.MirroredStrategy``) over every visible GPU of
this machine, else over its logical CPU devices; ``multiworker`` (``MultiWorkerMirroredStrategy``) over the
machines named in each worker's ``TF_CONFIG``. Every worker runs the same command; each trains on its share
of every global batch and the gradients are all-reduced, so the model is the same on every worker.

Three rules make that work, and this module keeps them:

- MultiWorkerMirroredStrategy must exist before TensorFlow initializes its runtime (before any op, device
  listing or model load in the process: "Collective ops must be configured at program startup"). The
  command line therefore calls :func:`start` after checking its options and before loading the model;
  ``make_strategy("multiworker")`` later returns that strategy.
- ``TF_CONFIG`` is checked before TensorFlow is imported: missing or malformed, it is one line and exit 2.
- Only the chief writes outputs. :func:`output_path` / :func:`output_dir` give every other worker a private
  temporary folder instead (removed when the command ends), so that it runs exactly the same steps (the
  collective ops must line up) and writes nothing where the chief writes.

Example:
    >>> c = parse_tf_config('{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, '
    ...                     '"task": {"type": "worker", "index": 1}}')
    >>> c.is_chief, c.workers, c.describe()
    (False, 2, 'worker 1 of 2')
    >>> parse_tf_config(None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: --strategy multiworker needs TF_CONFIG: Expected ... Received: no TF_CONFIG
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from edgecnn.errors import EdgecnnError, first_line

__all__ = ["STRATEGIES", "Cluster", "check_strategy", "make_strategy", "parse_tf_config", "start", "started", "cluster", "is_chief",
           "output_path", "output_dir", "collectives_done", "worker_line"]

STRATEGIES = ("default", "mirrored", "multiworker")
_JOBS = ("chief", "worker")  # the training tasks of MultiWorkerMirroredStrategy
_SHAPE = ('JSON {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}} on every worker '
          '(docs/distributed.md)')
_STATE: dict[str, Any] = {}  # the multiworker strategy this process started: name, strategy, cluster


@dataclass(frozen=True)
class Cluster:
    """This process's place in the cluster ``TF_CONFIG`` describes.

    Attributes:
        task_type: ``chief`` or ``worker``.
        task_index: the index within its job.
        workers: training tasks in the cluster (chief and workers).
        is_chief: ``task_type == "chief"``, or worker 0 when the cluster has no chief job (TensorFlow's rule).
    """

    task_type: str
    task_index: int
    workers: int
    is_chief: bool

    def describe(self) -> str:
        return f"{self.task_type} {self.task_index} of {self.workers}"


def check_strategy(strategy: Any, *, flag: str = "--strategy") -> str:
    """The strategy's name, checked (before anything heavy runs).

    >>> check_strategy("ring")
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: unknown strategy 'ring' (--strategy): Expected one of default, mirrored, multiworker. Received: 'ring'
    """
    name = "default" if strategy is None else strategy
    if not isinstance(name, str) or name not in STRATEGIES:
        raise EdgecnnError(f"unknown strategy {name!r} ({flag}): Expected one of {', '.join(STRATEGIES)}. "
                           f"Received: {name!r}")
    return name


def _bad(received: str) -> EdgecnnError:
    return EdgecnnError(f"TF_CONFIG (--strategy multiworker): Expected {_SHAPE}. Received: {received}")


def parse_tf_config(text: Optional[str]) -> Cluster:
    """Check ``TF_CONFIG``'s text and say where this process stands (no TensorFlow needed).

    Raises:
        EdgecnnError: missing, not JSON, no ``chief``/``worker`` job, an address that is not ``host:port``, or a
            task that the cluster does not list (one line each).

    >>> parse_tf_config('{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}}')
    Cluster(task_type='chief', task_index=0, workers=2, is_chief=True)
    >>> parse_tf_config('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: TF_CONFIG (--strategy multiworker): Expected ... Received: task worker 3, but the cluster lists 1 worker task(s)
    """
    if text is None or not text.strip():
        raise EdgecnnError(f"--strategy multiworker needs TF_CONFIG: Expected the environment variable TF_CONFIG = "
                           f"{_SHAPE}. Received: no TF_CONFIG")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise _bad(f"text that is not JSON ({first_line(exc, 80)})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise _bad("no \"cluster\" object")
    jobs = config["cluster"]
    unknown = sorted(set(jobs) - set(_JOBS) - {"evaluator"})
    if unknown:
        raise _bad(f"job(s) {', '.join(map(repr, unknown))} (MultiWorkerMirroredStrategy trains with chief and "
                   "worker tasks only)")
    for job, addresses in jobs.items():
        if not isinstance(addresses, list) or not addresses:
            raise _bad(f"cluster job {job!r} is not a non-empty list of addresses")
        for address in addresses:
            host, _, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise _bad(f"address {address!r} in job {job!r} (expected host:port)")
    if not any(job in jobs for job in _JOBS):
        raise _bad("a cluster without a chief or worker job")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in _JOBS:
        kind = task.get("type") if isinstance(task, dict) else task
        raise _bad(f"task type {kind!r} (this process must be a chief or worker task)")
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _bad(f"task index {index!r}")
    kind = task["type"]
    listed = len(jobs.get(kind, []))
    if index >= listed:
        raise _bad(f"task {kind} {index}, but the cluster lists {listed} {kind} task(s)")
    chief = kind == "chief" or ("chief" not in jobs and index == 0)
    return Cluster(task_type=kind, task_index=index, workers=sum(len(jobs.get(j, [])) for j in _JOBS), is_chief=chief)


def start(strategy: Any) -> Any:
    """Create the process's strategy now, before TensorFlow initializes its runtime; return it (None: default).

    Call it once, from the program's entry, after the options are checked and before any model is loaded.
    ``multiworker`` checks ``TF_CONFIG`` first (no TensorFlow import when it is wrong) and then waits until
    every worker of the cluster has started; calling it again returns the same strategy. ``mirrored`` (one
    machine) is made on each call and could also be made later; ``default`` is None.

    Raises:
        EdgecnnError: an unknown name, a bad ``TF_CONFIG``, or TensorFlow refusing the strategy (e.g.
            ``multiworker`` after TensorFlow was initialized in this process).

    >>> start("default") is None
    True
    """
    name = check_strategy(strategy)
    if name == "default":
        return None
    if name == "mirrored":  # one machine: MirroredStrategy may be created at any time
        return make_strategy("mirrored")
    if _STATE:
        return _STATE["strategy"]
    where = parse_tf_config(os.environ.get("TF_CONFIG"))
    from edgecnn._tf import import_tensorflow, muted

    with muted(2):  # TensorFlow's import and gRPC chatter: the command line promises one line on stderr
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        try:
            made = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError, tf.errors.OpError) as exc:
            error = exc
        else:
            error = None
    if error is not None:
        hint = (" (it must be created before TensorFlow initializes: call edgecnn.distribute.start('multiworker') "
                "first in the process)") if "startup" in str(error) else ""
        raise EdgecnnError(f"cannot create the multiworker strategy: {first_line(error)}{hint}") from error
    import_tensorflow()  # keras, tf_keras and the first op, after the strategy
    _STATE.update(name=name, strategy=made, cluster=where)
    return made


def started(name: str) -> Any:
    """The multiworker strategy :func:`start` created (``name == "multiworker"``), else None."""
    return _STATE.get("strategy") if _STATE.get("name") == name else None


def cluster() -> Optional[Cluster]:
    """This process's place in a started multiworker cluster (None: one process)."""
    return _STATE.get("cluster")


def is_chief() -> bool:
    """Whether this process writes the outputs: True unless it is a non-chief worker of a multiworker run."""
    where = cluster()
    return where is None or where.is_chief


@contextlib.contextmanager
def _private(kind: str) -> Iterator[Path]:
    where = cluster()
    folder = Path(tempfile.mkdtemp(prefix=f"edgecnn-{where.task_type}{where.task_index}-{kind}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def output_path(path: Path) -> Iterator[Path]:
    """``path`` on the chief; on any other worker the same file name in a private temporary folder that is
    removed when the block ends (the worker runs the same steps and writes nothing where the chief writes).

    >>> with output_path(Path("out/m.keras")) as p:  # one process: the chief
    ...     str(p)
    'out/m.keras'
    """
    if is_chief():
        yield Path(path)
        return
    with _private("output") as folder:
        yield folder / Path(path).name


@contextlib.contextmanager
def output_dir(outdir: Optional[Path]) -> Iterator[Optional[Path]]:
    """``outdir`` on the chief; a private temporary folder (removed at the end) on any other worker."""
    if is_chief():
        yield outdir
        return
    with _private("outdir") as folder:
        yield folder / "out"


def collectives_done() -> None:
    """Say that this process runs no more collective ops (the fine-tuning is over): the strategy's peer health
    check stops, so a worker that finished first does not make the others log "cluster check alive failed"."""
    made = _STATE.get("strategy")
    stop = getattr(getattr(made, "extended", None), "_stop_check_health_thread", None)
    if _STATE.get("name") == "multiworker" and callable(stop):
        with contextlib.suppress(Exception):
            stop()


def worker_line() -> Optional[str]:
    """What a non-chief worker prints instead of the outputs it did not write (None on the chief)."""
    where = cluster()
    if where is None or where.is_chief:
        return None
    return f"{where.describe()} (not the chief): fine-tuned with the cluster; the chief writes the outputs"


def make_strategy(strategy: Any = None) -> Any:
    """A ``tf.distribute.Strategy`` for a name (or the object itself).

    Args:
        strategy: None or ``"default"`` (one device), ``"mirrored"`` (MirroredStrategy over every visible
            GPU, else over every logical CPU device), ``"multiworker"`` (the MultiWorkerMirroredStrategy that
            :func:`edgecnn.distribute.start` created at program start; the cluster comes from each worker's
            ``TF_CONFIG``), or a ``tf.distribute.Strategy``.

    Raises:
        EdgecnnError: an unknown name, or TensorFlow refuses to create the strategy (``multiworker`` in a
            process where TensorFlow was initialized before :func:`edgecnn.distribute.start`).

    Example:
        >>> make_strategy("ring")
        Traceback (most recent call last):
        ...
        edgecnn.errors.EdgecnnError: unknown strategy 'ring': Expected one of default, mirrored, multiworker. Received: 'ring'
    """
    if strategy is not None and not isinstance(strategy, str):
        return strategy
    name = strategy or "default"
    if name not in STRATEGIES:
        raise EdgecnnError(f"unknown strategy {name!r}: Expected one of {', '.join(STRATEGIES)}. Received: {name!r}")
    made = started(name)  # the strategy the program started with
    if made is not None:
        return made
    if name == "multiworker":  # created now, which works only before TensorFlow initializes
        return start("multiworker")
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    try:
        if name == "default":
            return tf.distribute.get_strategy()
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    except (RuntimeError, ValueError) as exc:
        raise EdgecnnError(f"cannot create the {name} strategy: {first_line(exc)}") from exc
