"""Does the latency gate cry wolf? A/A runs (a model against its own baseline) and a real slowdown.

Artifacts: models/mnist_cnn.h5 as LiteRT fp32 and ONNX fp32 (the A/A pair), and for the slowdown
`models.zoo.mnist_cnn` (dense 256, seeded random weights) against an artificially heavier twin (dense 352),
both LiteRT fp32, the heavier one measured at least 25% slower. Each gate run is a fresh
`edgecnn bench ... --baseline BASE.json --max-regression 10` process with the default settings, as in CI:

- A/A: one baseline `edgecnn bench lite=fp32.tflite onnx=fp32.onnx --json`, then N gate runs of the same
  command; a run is a false alarm when it exits 1.
- slowdown: a baseline of `m=dense256.tflite`, then N gate runs of `m=dense352.tflite`; caught when exit 1.

Each twice: with the baseline's files on disk (the gate measures them in the same rounds, its default), and
with a baseline JSON that names no files (as from another machine: the reference-model ratio alone).
Writes docs/bench_gate_false_alarms.md (the numbers of this run, with the machine's load average).

    python benchmarks/gate_false_alarms.py [--runs 20] [--out docs/bench_gate_false_alarms.md]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(folder: Path) -> dict[str, Path]:
    import edgecnn
    import tf_keras

    from edgecnn.exporting.convert import convert
    from models.zoo import mnist_cnn

    model = edgecnn.load(str(ROOT / "models" / "mnist_cnn.h5"))
    out = {"fp32.tflite": convert(model, runtime="litert"), "fp32.onnx": convert(model, runtime="onnxruntime")}
    for units in (256, 352):
        tf_keras.utils.set_random_seed(0)
        out[f"dense{units}.tflite"] = convert(mnist_cnn(dense_units=units, keras_module=tf_keras), runtime="litert")
    paths = {}
    for name, data in out.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def edgecnn_bench(args: list[str]) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgecnn.cli", "bench", "--quiet", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "latency" in ln]
    if proc.returncode not in (0, 1):
        raise SystemExit(f"edgecnn bench failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.returncode, time.perf_counter() - t0, lines[-1] if lines else ""


def series(name: str, baseline_args: list[str], gate_args: list[str], runs: int, folder: Path, *,
           files: bool) -> dict:
    base = folder / f"{name}_baseline.json"
    edgecnn_bench([*baseline_args, "--json", str(base)])
    if not files:  # a baseline from elsewhere: no files to measure beside the models
        data = json.loads(base.read_text())
        for row in data["results"]:
            row["source"] = row["source_sha256"] = None
        base.write_text(json.dumps(data))
    codes, seconds, per_key = [], [], {}
    for i in range(runs):
        code, took, line = edgecnn_bench([*gate_args, "--baseline", str(base), "--max-regression", "10",
                                          "--junit", str(folder / "gate.xml")])
        codes.append(code)
        seconds.append(took)
        for case in ET.parse(folder / "gate.xml").getroot():
            text = (case.findtext("system-out") or case.find("failure").get("message"))
            per_key.setdefault(case.get("name"), []).append(float(text.split(": ", 1)[1].split("%")[0]))
        print(f"{name} {i + 1}/{runs}: exit {code} in {took:.1f} s; "
              + ", ".join(f"{k} {v[-1]:+.1f}%" for k, v in per_key.items()), flush=True)
    return {"codes": codes, "seconds": seconds, "changes": per_key}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_gate_false_alarms.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = build(folder)
        aa = [f"lite={paths['fp32.tflite']}", f"onnx={paths['fp32.onnx']}"]
        slow_base, slow = [f"m={paths['dense256.tflite']}"], [f"m={paths['dense352.tflite']}"]
        for files in (True, False):
            tag = "same run" if files else "reference only"
            results[("A/A", tag)] = series("aa", aa, aa, args.runs, folder, files=files)
            results[("slowdown", tag)] = series("slow", slow_base, slow, args.runs, folder, files=files)
        # How much slower the heavier model really is: the two side by side in one run.
        side = folder / "side.json"
        edgecnn_bench([f"base={paths['dense256.tflite']}", f"heavy={paths['dense352.tflite']}", "--json", str(side)])
        rows = {r["model"]: r for r in json.loads(side.read_text())["results"]}
    total = time.perf_counter() - t0
    load_after = os.getloadavg()
    true_slow = 100 * (rows["heavy"]["ratio_to_reference"] / rows["base"]["ratio_to_reference"] - 1)
    wall_slow = 100 * (rows["heavy"]["median_ms"] / rows["base"]["median_ms"] - 1)
    need = args.runs - args.runs // 20
    seconds = [t for r in results.values() for t in r["seconds"]]

    def stats(v: list[float]) -> str:
        a = np.asarray(v)
        return f"{np.median(a):+.1f}% | {a.min():+.1f}% .. {a.max():+.1f}% | {a.std():.1f}%"

    lines = [
        "# Latency gate: false alarms and catches", "",
        f"Written by `python benchmarks/gate_false_alarms.py --runs {args.runs}`. Every gate run is a fresh "
        "`edgecnn bench ... --baseline BASE.json --max-regression 10` process with the default settings "
        "(100 shuffled rounds after 10 warm-up, 3 sessions per artifact, samples of at least 2 ms, the shipped "
        "reference model on each runtime). \"same run\": the baseline's files are on disk, so the gate measures "
        "them beside the models (the default when they exist); \"reference only\": the baseline JSON names no "
        "files, so only each model's CPU-time ratio to the reference model is compared "
        "(see [ci-latency-gate.md](ci-latency-gate.md)).", "",
        f"Machine: {os.cpu_count()} cores, shared with other jobs: load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {total / 60:.1f} minutes in all (median gate run {np.median(seconds):.1f} s).",
        "",
        "| experiment | baseline | runs | exit 0 (no regression) | exit 1 (regression) | acceptance |",
        "|---|---|---|---|---|---|",
    ]
    for (kind, tag), r in results.items():
        quiet, alarms = sum(c == 0 for c in r["codes"]), sum(c == 1 for c in r["codes"])
        good = quiet if kind == "A/A" else alarms
        what = "no regression" if kind == "A/A" else "caught"
        label = ("A/A: mnist_cnn LiteRT fp32 + ONNX fp32 against themselves" if kind == "A/A"
                 else "slowdown: dense 352 against its dense 256 baseline")
        lines.append(f"| {label} | {tag} | {args.runs} | {quiet} | {alarms} | {what} in >= {need}: "
                     f"{'met' if good >= need else 'NOT met'} |")
    lines += ["", f"The real slowdown, dense 352 vs dense 256 side by side in one run: {true_slow:+.1f}% in the "
              f"gate's CPU-time statistic, {wall_slow:+.1f}% in median wall time.", "",
              "Change the gate saw against the baseline, per comparison:", "",
              "| experiment | baseline | comparison | median | min .. max | std |", "|---|---|---|---|---|---|"]
    for (kind, tag), r in results.items():
        lines += [f"| {kind} | {tag} | {k} | {stats(v)} |" for k, v in r["changes"].items()]
    text = "\n".join(lines) + "\n"
    from edgecnn.files import write_atomic

    write_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
