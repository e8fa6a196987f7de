"""`edgecnn bench` medians next to LiteRT's own benchmark tool on the same files and thread count.

For each file (MNIST CNN fp32 and int8 conversions, the shipped reference model, a MiniModel int8 and fp32),
every round runs, in a fresh shuffled order, three separate processes per file:

- ``python -m ai_edge_litert.tools.benchmark_litert_model`` (the tool that ships in the ai-edge-litert wheel:
  CompiledModel API, back-to-back runs after warm-up). The tool rounds its figures to 0.01 ms, which is
  25% of a 0.04 ms model, so it is run through a two-line wrapper that imports the tool unchanged and
  shadows the module's ``round`` (its JSON keeps every digit);
- ``edgecnn bench FILE --runtime litert --threads T --json`` (3 instances and the reference model, shuffled
  slots, as a user runs it);
- a plain ``Interpreter.invoke()`` loop (the runtime edgecnn uses, without any harness).

An ``edgecnn bench`` run that flags its own result (repeated measurements disagree: the machine was busy
during part of it) is rerun, at most twice, as the warning advises; the table counts the reruns.

Medians over rounds of each process's median; the ratio is edgecnn bench / tool. The table goes into
docs/bench.md (the section between the markers is replaced).

    python benchmarks/bench_vs_litert_tool.py [--rounds 5] [--threads 1] [--workdir /tmp/bvt]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "bench.md"
BEGIN, END = "<!-- bench_vs_litert_tool: begin -->", "<!-- bench_vs_litert_tool: end -->"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}

TOOL = """
import contextlib, io, json, logging, sys
import ai_edge_litert.tools.benchmark_litert_model as tool
tool.round = lambda x, n=None: x  # the tool's own loop and statistics; only its output rounding is off
sys.argv = ["benchmark_litert_model", *sys.argv[1:]]
logging.basicConfig(level=logging.ERROR)
with contextlib.redirect_stdout(io.StringIO()):
    result = tool.run_benchmark(tool.parse_args())
print(json.dumps(result["latency"]))
"""
PLAIN = """
import json, statistics, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, threads, runs, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
d = it.get_input_details()[0]
x = np.random.default_rng(0).random(d["shape"], dtype=np.float32)
if d["dtype"] != np.float32:
    scale, zero = d["quantization"]
    x = np.clip(np.round(x / scale + zero), -128, 127).astype(d["dtype"])
it.set_tensor(d["index"], x)
for _ in range(warmup):
    it.invoke()
ts = []
for _ in range(runs):
    t0 = time.perf_counter()
    it.invoke()
    ts.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"median_ms": statistics.median(ts)}))
"""


def build(workdir: Path) -> dict[str, Path]:
    """The files: name -> .tflite path (converted once into ``workdir``)."""
    files = {"reference model (shipped)": ROOT / "edgecnn" / "benchmarking" / "reference.tflite"}
    wanted = {"MNIST CNN fp32": ("mnist_cnn", "none"), "MNIST CNN int8": ("mnist_cnn", "int8"),
              "CIFAR CNN (w=32) fp32": ("cifar_cnn", "none"),
              "MiniModel (w=32) int8": ("minimodel", "int8"), "MiniModel (w=32) fp32": ("minimodel", "none")}
    paths = {name: workdir / f"{model}_{quant}.tflite" for name, (model, quant) in wanted.items()}
    if not all(p.is_file() for p in paths.values()):
        from edgecnn._tf import import_tensorflow

        import_tensorflow()  # muted, before models/zoo.py imports Keras
        import tf_keras

        import edgecnn
        from edgecnn.data import load_data
        from edgecnn.exporting.convert import convert

        sys.path.insert(0, str(ROOT / "models"))
        from zoo import cifar_cnn, minimodel

        tf_keras.utils.set_random_seed(0)  # untrained, seeded: latency does not depend on the weights' values
        models = {"mnist_cnn": edgecnn.load(str(ROOT / "models" / "mnist_cnn.h5")),
                  "cifar_cnn": edgecnn.load(cifar_cnn(keras_module=tf_keras)),
                  "minimodel": edgecnn.load(minimodel(width=32, keras_module=tf_keras))}
        for name, (model, quant) in wanted.items():
            m = models[model]
            shape = tuple(int(d) for d in m.inputs[0].shape[1:])
            cal = load_data("digits", input_shape=shape, split="train").x[:200] if quant == "int8" else None
            paths[name].write_bytes(convert(m, runtime="litert", quantize=quant, calibration=cal))
    files.update(paths)
    return files


def _json(cmd: list[str]) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}...: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tool(path: Path, threads: int, runs: int) -> float:
    return _json([sys.executable, "-c", TOOL, f"--model={path}", f"--num_threads={threads}", f"--num_runs={runs}",
                  "--warmup_runs=20"])["median_ms"]


def plain(path: Path, threads: int, runs: int) -> float:
    return _json([sys.executable, "-c", PLAIN, str(path), str(threads), str(runs), "20"])["median_ms"]


def bench(path: Path, threads: int, out: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "edgecnn.cli", "bench", str(path), "--runtime", "litert",
                           "--threads", str(threads), "--quiet", "--json", str(out)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"edgecnn bench {path.name}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    return json.loads(out.read_text())["results"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tool-runs", type=int, default=500, help="--num_runs of the tool and the plain loop")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/bench.md alone")
    args = parser.parse_args()
    import numpy as np

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-vs-tool-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = build(workdir)
    got: dict[str, dict[str, list]] = {n: {"tool": [], "bench": [], "plain": [], "load": [], "mem": [], "warn": [], "reruns": 0}
                                       for n in files}
    rng = np.random.default_rng(0)
    jobs = [(n, kind) for n in files for kind in ("tool", "bench", "plain")]
    for r in range(args.rounds):
        for i in rng.permutation(len(jobs)):
            name, kind = jobs[i]
            path = files[name]
            if kind == "tool":
                got[name]["tool"].append(tool(path, args.threads, args.tool_runs))
            elif kind == "plain":
                got[name]["plain"].append(plain(path, args.threads, args.tool_runs))
            else:  # a run edgecnn flags (repeated measurements disagree: a busy stretch) is rerun, as it advises
                row = bench(path, args.threads, workdir / "bench.json")
                for _ in range(2):
                    if not row.get("warning"):
                        break
                    got[name]["reruns"] += 1
                    row = bench(path, args.threads, workdir / "bench.json")
                got[name]["bench"].append(row["median_ms"])
                got[name]["load"].append(row["load_ms"])
                got[name]["mem"].append(row["peak_mem_mb"])
                got[name]["warn"].append(bool(row.get("warning")))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    med = statistics.median
    lines = [BEGIN, "## `edgecnn bench` vs LiteRT's own benchmark tool", "",
             f"`python {Path(__file__).relative_to(ROOT)} --rounds {args.rounds} --threads {args.threads}` "
             f"(host measurement, {os.cpu_count()} cores shared with other jobs). Each round ran, in a fresh shuffled "
             "order, one process per file and method: LiteRT's `benchmark_litert_model` tool "
             f"(`--num_runs={args.tool_runs} --warmup_runs=20`, its output rounding off), `edgecnn bench FILE --runtime "
             f"litert --threads {args.threads}` (defaults: 100 rounds, 3 instances and the reference model), and a "
             "plain `Interpreter.invoke()` loop. Figures are medians over the rounds of each process's median "
             "(ms per inference, batch 1).", "",
             "| file | size | tool median ms | edgecnn bench median ms | bench / tool | within 3% | plain loop ms "
             "| bench / plain | tool - plain, us | bench load ms (min-max) | bench peak MB (min-max) | flagged, rerun "
             "| still flagged |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, g in got.items():
        t, b, p = med(g["tool"]), med(g["bench"]), med(g["plain"])
        ratio = b / t
        lines.append(f"| {name} | {files[name].stat().st_size / 1024:,.0f} KB | {t:.4f} | {b:.4f} | {ratio:.3f} | "
                     f"{'yes' if abs(ratio - 1) <= 0.03 else 'no'} | {p:.4f} | {b / p:.3f} | {1e3 * (t - p):+.1f} | "
                     f"{min(g['load']):.1f}-{max(g['load']):.1f} | {min(g['mem']):.2f}-{max(g['mem']):.2f} | "
                     f"{g['reruns']} | {sum(g['warn'])}/{len(g['warn'])} |")
    stats = {n: (med(g["tool"]), med(g["bench"]), med(g["plain"])) for n, g in got.items()}
    over = [n for n, (t, b, p) in stats.items() if abs(b / t - 1) > 0.03]
    gap = [1e3 * (t - p) for t, b, p in stats.values() if p < 0.2]  # above that, noise hides a fixed cost
    worst_plain = max(abs(b / p - 1) for t, b, p in stats.values())
    near_plain = sum(abs(b / p - 1) <= 0.03 for t, b, p in stats.values())
    lines += ["", f"Within 3% of the tool: {len(stats) - len(over)} of {len(stats)} files"
              + (f" (not: {', '.join(over)})" if over else "") + f". edgecnn bench times `Interpreter.invoke()`; "
              f"it is within 3% of the plain `Interpreter` loop on {near_plain} of {len(stats)} files (at most "
              f"{100 * worst_plain:.1f}% apart). The tool calls "
              f"LiteRT's `CompiledModel.run_by_name` with dicts of buffers, which costs {min(gap):+.1f} to "
              f"{max(gap):+.1f} us per inference more than `invoke()` on the models under 0.2 ms (column tool - "
              "plain): within the noise of larger models, but 5-13% of a 0.01-0.04 ms model, where the tool's "
              "median measures its own call overhead as much as the model."]
    lines += ["", "Per round (tool / bench / plain, ms):", ""]
    for name, g in got.items():
        rows = ", ".join(f"{a:.4f}/{b:.4f}/{c:.4f}" for a, b, c in zip(g["tool"], g["bench"], g["plain"]))
        lines.append(f"- {name}: {rows}")
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    if args.no_write:
        return
    from edgecnn.files import write_atomic

    text = DOC.read_text()
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section.rstrip("\n") + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_atomic(DOC, text)
    print(f"wrote {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
