"""Does the latency gate cry wolf? A/A runs (a model against its own baseline) and a real slowdown.

Builds, from models/mnist_cnn.h5, a float32 LiteRT model, its int8 LiteRT model (calibrated on the digits
train split) and a float32 ONNX model. Then, with `edgecnn bench`'s default settings, each run a fresh
process as in CI:

- A/A: one baseline `edgecnn bench lite=fp32.tflite onnx=fp32.onnx --json`, then N gate runs of the same
  command with `--baseline --max-regression 10`; a run is a false alarm when it exits 1.
- slowdown: a baseline of `lite=int8.tflite` and N gate runs of `lite=fp32.tflite` against it (the fp32
  model is the int8 one made slower); a run catches it when it exits 1.

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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(folder: Path) -> dict[str, Path]:
    import edgecnn
    from edgecnn.data import load_data
    from edgecnn.latency import convert

    model = edgecnn.load(str(ROOT / "models" / "mnist_cnn.h5"))
    calibration = load_data("digits", input_shape=(28, 28, 1), split="train", limit=200).x
    out = {"fp32.tflite": convert(model, runtime="litert"),
           "int8.tflite": convert(model, runtime="litert", quantize="int8", calibration=calibration),
           "fp32.onnx": convert(model, runtime="onnxruntime")}
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


def changes(current: Path, baseline: Path) -> dict[str, float]:
    now = {f"{r['model']}/{r['runtime']}": r["ratio_to_reference"] for r in json.loads(current.read_text())["results"]}
    base = {f"{r['model']}/{r['runtime']}": r["ratio_to_reference"] for r in json.loads(baseline.read_text())["results"]}
    return {k: 100 * (now[k] / base[k] - 1) for k in now if k in base}


def series(name: str, baseline_args: list[str], gate_args: list[str], runs: int, folder: Path) -> dict:
    base = folder / f"{name}_baseline.json"
    edgecnn_bench([*baseline_args, "--json", str(base)])
    codes, seconds, per_key = [], [], {}
    for i in range(runs):
        cur = folder / f"{name}_{i}.json"
        code, took, line = edgecnn_bench([*gate_args, "--baseline", str(base), "--max-regression", "10",
                                          "--json", str(cur)])
        codes.append(code)
        seconds.append(took)
        for k, v in changes(cur, base).items():
            per_key.setdefault(k, []).append(v)
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
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = build(folder)
        aa_args = [f"lite={paths['fp32.tflite']}", f"onnx={paths['fp32.onnx']}"]
        aa = series("aa", aa_args, aa_args, args.runs, folder)
        slow = series("slowdown", [f"lite={paths['int8.tflite']}"], [f"lite={paths['fp32.tflite']}"], args.runs, folder)
        # How much slower the fp32 model really is: the two side by side in one run.
        side = folder / "side.json"
        edgecnn_bench([f"int8={paths['int8.tflite']}", f"fp32={paths['fp32.tflite']}", "--json", str(side)])
        rows = {r["model"]: r for r in json.loads(side.read_text())["results"]}
    total = time.perf_counter() - t0
    load_after = os.getloadavg()
    quiet_aa = sum(c == 0 for c in aa["codes"])
    caught = sum(c == 1 for c in slow["codes"])
    true_slow = 100 * (rows["fp32"]["ratio_to_reference"] / rows["int8"]["ratio_to_reference"] - 1)
    wall_slow = 100 * (rows["fp32"]["median_ms"] / rows["int8"]["median_ms"] - 1)

    def stats(v: list[float]) -> str:
        a = np.asarray(v)
        return f"{np.median(a):+.1f}% | {a.min():+.1f}% .. {a.max():+.1f}% | {a.std():.1f}%"

    lines = [
        "# Latency gate: false alarms and catches", "",
        f"Written by `python benchmarks/gate_false_alarms.py --runs {args.runs}` "
        f"(models/mnist_cnn.h5 converted to LiteRT fp32, LiteRT int8 and ONNX fp32). Every gate run is a fresh "
        "`edgecnn bench ... --baseline BASE.json --max-regression 10` process with the default settings "
        "(100 rounds after 10 warm-up, 3 sessions per artifact, samples of at least 2 ms, the shipped reference "
        "model on each runtime); the gate compares each model's CPU-time ratio to the reference model "
        "(see [ci-latency-gate.md](ci-latency-gate.md)).", "",
        f"Machine: {os.cpu_count()} cores, shared with other jobs: load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {total / 60:.1f} minutes in all "
        f"(median gate run {np.median(aa['seconds'] + slow['seconds']):.1f} s).", "",
        "| experiment | runs | exit 0 (no regression) | exit 1 (regression) | acceptance |",
        "|---|---|---|---|---|",
        f"| A/A: same LiteRT + ONNX artifacts as the baseline | {args.runs} | {quiet_aa} | {args.runs - quiet_aa} | "
        f"no regression in >= {args.runs - args.runs // 20}: {'met' if quiet_aa >= args.runs - args.runs // 20 else 'NOT met'} |",
        f"| slowdown: LiteRT fp32 against its int8 baseline | {args.runs} | {args.runs - caught} | {caught} | "
        f"caught in >= {args.runs - args.runs // 20}: {'met' if caught >= args.runs - args.runs // 20 else 'NOT met'} |",
        "", f"The real slowdown, fp32 vs int8 side by side in one run: {true_slow:+.1f}% in the gate's CPU-time "
        f"ratio, {wall_slow:+.1f}% in median wall time.", "",
        "Change of the gate's ratio against the baseline, per comparison:", "",
        "| comparison | median | min .. max | std |", "|---|---|---|---|",
    ]
    lines += [f"| A/A {k} | {stats(v)} |" for k, v in aa["changes"].items()]
    lines += [f"| slowdown {k} | {stats(v)} |" for k, v in slow["changes"].items()]
    text = "\n".join(lines) + "\n"
    from edgecnn.files import write_atomic

    write_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
