"""Load time and peak memory of one artifact on one runtime, measured in a fresh process.

In one process, whichever model loads first pays the runtime's one-time set-up (thread pools, XNNPACK, the
allocator's arenas) and later loads reuse memory freed before them, so ``load_ms`` and ``peak_mem_mb`` would
depend on the load order. Here each (model, runtime, threads) is loaded in its own child process: the runtime
is first set up by loading the shipped reference model (kept loaded), then the resident-memory high-water
mark is reset and the model is loaded and run once.

``python -m edgecnn.benchmarking.loadprobe`` reads one JSON request on stdin and prints one JSON answer.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TIMEOUT_S = 600


def load_stats(result: Any, target: Any, *, threads: int, batch_size: int, seed: int = 0) -> None:
    """Fill ``result.load_ms`` and ``result.peak_mem_mb`` from a child process; on failure they stay None and
    the result's reason says why (the timing is kept)."""
    from edgecnn.runtimes import RUNTIMES

    row = RUNTIMES[result.runtime]
    with tempfile.TemporaryDirectory(prefix="edgecnn-load-") as tmp:
        if row.format is None:
            import warnings

            import edgecnn.io as edgecnn_io

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf_keras calls .h5 legacy; edgecnn writes .h5 on purpose
                path = str(edgecnn_io.save(target.keras, Path(tmp) / "model.h5"))
        else:
            path = str(Path(tmp) / f"model{RUNTIMES[row.base].suffixes[0]}")
            Path(path).write_bytes(target.artifact(result.runtime))
        request = {"runtime": result.runtime, "threads": threads, "batch_size": batch_size, "seed": seed, "path": path}
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        try:
            done = subprocess.run([sys.executable, "-m", "edgecnn.benchmarking.loadprobe"], input=json.dumps(request),
                                  capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
            answer = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {
                "error": (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]}
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
    if "error" in answer:
        note = f"load time and memory not measured: {answer['error']}"
        result.reason = f"{result.reason}; {note}" if result.reason else note
        return
    result.load_ms, result.peak_mem_mb = answer["load_ms"], answer["peak_mem_mb"]


def _warm_up(row: Any, threads: int) -> Any:
    """Set the runtime up with the reference model (returned, so it stays loaded)."""
    from edgecnn.benchmarking.reference import reference_artifact, reference_model

    source = reference_model() if row.format is None else reference_artifact(row.base)
    session = row.load(source, threads=threads)
    session.invoker()()
    return session


def main() -> None:
    from edgecnn._tf import muted
    from edgecnn.benchmarking.host import hwm_reset, hwm_rise
    from edgecnn.runtimes import RUNTIMES

    req = json.loads(sys.stdin.read())
    row = RUNTIMES[req["runtime"]]
    try:
        with muted(1, 2):
            if row.format is None:
                import edgecnn.io as edgecnn_io

                source: Any = edgecnn_io.load(req["path"])
            else:
                source = Path(req["path"]).read_bytes()
            keep = _warm_up(row, int(req["threads"]))
            mark = hwm_reset()
            t0 = time.perf_counter()
            session = row.load(source, threads=int(req["threads"]))
            session.invoker(batch_size=int(req["batch_size"]), seed=int(req["seed"]))()
            load_ms = (time.perf_counter() - t0) * 1e3
            peak = hwm_rise(mark)
        del keep, session
        print(json.dumps({"load_ms": load_ms, "peak_mem_mb": peak}))
    except Exception as exc:  # noqa: BLE001 - the parent records the reason
        from edgecnn.errors import first_line

        print(json.dumps({"error": first_line(exc)}))


if __name__ == "__main__":
    main()
