"""One process against two MultiWorkerMirroredStrategy workers on this host: wall time and held-out accuracy.

Runs the real CLI, ``edgecnn rewrite models/mnist_cnn.h5 --to separable --data digits --epochs E --json``, as

- ``one process``: ``--strategy default``;
- ``1 worker``: ``--strategy multiworker`` with a TF_CONFIG of one worker (the strategy's own overhead);
- ``2 workers``: ``--strategy multiworker``, two processes on 127.0.0.1 (free ports), same global batch and seed;

interleaved round by round (so that the host's load falls on every variant alike), and writes the table of
medians into docs/distributed.md between its ``bench:distributed`` markers. Wall time is the whole command
(start to the last process's exit: imports, cluster start-up, data, fine-tuning, evaluation, saving);
fine-tuning time is distillation's own (``distill.seconds`` in the JSON report of worker 0).

    python benchmarks/distributed.py [--rounds 3] [--epochs 5]     # ~3 minutes on 2 shared cores
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "distributed.md"
BEGIN, END = "<!-- bench:distributed:begin -->", "<!-- bench:distributed:end -->"
MODEL = ROOT / "models" / "mnist_cnn.h5"


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run(workers: int, epochs: int, out: Path) -> dict:
    """One run of the variant; returns wall seconds and worker 0's JSON report."""
    base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    base["PYTHONPATH"] = str(ROOT)
    args = [sys.executable, "-m", "edgecnn.cli", "rewrite", str(MODEL), "--to", "separable", "--data", "digits",
            "--epochs", str(epochs), "--max-accuracy-drop", "100", "--json", "-o", str(out)]
    envs = [base]
    if workers:
        cluster = {"worker": [f"127.0.0.1:{p}" for p in _ports(workers)]}
        envs = [{**base, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
                for i in range(workers)]
        args += ["--strategy", "multiworker"]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(args, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for e in envs]
    outs = [p.communicate(timeout=900) for p in procs]
    wall = time.perf_counter() - t0
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit(f"run failed (exit {p.returncode}): {err.strip().splitlines()[-1:]}")
    report = json.loads(outs[0][0])
    return {"wall_s": wall, "finetune_s": report["distill"]["seconds"], "accuracy": report["accuracy_after"],
            "epochs_run": report["distill"]["epochs_run"], "before": report["accuracy_before"]}


VARIANTS = [("one process (--strategy default)", 0), ("1 worker (multiworker, TF_CONFIG of one)", 1),
            ("2 workers on 127.0.0.1 (multiworker)", 2)]


def table(results: dict, *, rounds: int, epochs: int, load: tuple) -> str:
    base_wall = statistics.median(r["wall_s"] for r in results[VARIANTS[0][0]])
    base_ft = statistics.median(r["finetune_s"] for r in results[VARIANTS[0][0]])
    before = results[VARIANTS[0][0]][0]["before"]
    lines = [f"`edgecnn rewrite models/mnist_cnn.h5 --to separable --data digits --epochs {epochs}` (global batch 32, "
             f"seed 0; held-out accuracy before the rewrite {100 * before:.2f}%), {rounds} interleaved rounds, "
             f"medians; host: {os.cpu_count()} cores shared with other work (load average "
             f"{load[0]:.2f} at the start), no GPU. Written by `python benchmarks/distributed.py`.", "",
             "| variant | wall time, s | vs one process | fine-tuning, s | vs one process | epochs run | "
             "held-out accuracy after, each round |",
             "|---|---|---|---|---|---|---|"]
    for name, _ in VARIANTS:
        rows = results[name]
        wall = statistics.median(r["wall_s"] for r in rows)
        ft = statistics.median(r["finetune_s"] for r in rows)
        accs = ", ".join(f"{100 * r['accuracy']:.2f}%" for r in rows)
        epochs_run = "/".join(str(r["epochs_run"]) for r in rows)
        lines.append(f"| {name} | {wall:.1f} | {wall / base_wall:.2f}x | {ft:.1f} | {ft / base_ft:.2f}x | "
                     f"{epochs_run} | {accs} |")
    return "\n".join(lines) + "\n"


def write(text: str) -> None:
    doc = DOC.read_text()
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest:
        raise SystemExit(f"{DOC} has no {BEGIN} marker")
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    results: dict = {name: [] for name, _ in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, workers in VARIANTS:
                res = _run(workers, args.epochs, Path(tmp) / f"{r}-{workers}.keras")
                results[name].append(res)
                print(f"round {r + 1}: {name}: {res['wall_s']:.1f} s, fine-tuning {res['finetune_s']:.1f} s, "
                      f"accuracy {100 * res['accuracy']:.2f}%", flush=True)
    text = table(results, rounds=args.rounds, epochs=args.epochs, load=load)
    write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
