"""A MobileNetV2 transfer model compressed with data (issue 15): `compress --data FIT --val VAL --recipe mobile`
against plain int8 post-training quantization of the same model, measured side by side.

The model is the seed notebook's pattern, built and trained here as a user does: Rescaling to [-1, 1], a
keras.applications MobileNetV2 base (alpha 1.0, weights=None: nothing can be downloaded here) as ONE nested layer,
global pooling, Dense(10); Keras 3, plain `model.fit` (Adam 1e-3 with a cosine decay to zero) on the bundled digits
resized to SIZE x SIZE x 3. The digits train split is cut once more, stratified and seeded, into what `model.fit`
trains on (fit.npz, 80%) and the validation data a user keeps beside it (val.npz, 20%: `validation_data`, never
trained on). keras.applications builds its BatchNorm layers with momentum 0.999, whose moving statistics never
settle on so few images (docs/data_free.md measured 10% held-out accuracy in inference mode after 3,600 steps); a
user who sees that sets the momentum to 0.99 before training, and so does this script. The model is used as
trained: nothing here re-estimates its statistics.

Then, in fresh processes:

    edgecnn compress MODEL.keras --data fit.npz --val val.npz --recipe mobile -o OUT

(without --val, compress would judge its budget on a split of fit.npz that the model memorized: docs/transfer.md's
first version measured the original at 100.00% there) and, independently of edgecnn's report, on the held-out
test split that nothing trained, calibrated or chose on (edgecnn's digits test split):
  - top-1 of the Keras model (Keras 3, as trained), of the plain int8 conversion (the TFLite converter calibrated
    on 200 training images, what a user gets without edgecnn) and of compress's artifact, both on LiteRT;
  - their LiteRT latency, 1 thread, interleaved in one run (edgecnn.benchmarking.core: medians and the ratio).

    python benchmarks/transfer.py [--size 96] [--epochs 30] [--cache /tmp/edgecnn_transfer] [--write-only]
    python benchmarks/transfer.py --size 224 --epochs 8 --init-size 96 --init-epochs 30

The second form trains the 96x96 model first and starts the 224x224 one from its weights (progressive resizing:
the low-resolution model plays the pretrained base that a user would download and nothing here can); trained
from scratch at 224 for 12 epochs, the same recipe stayed at chance (0.097 held-out) after 20 minutes.

Each size's result is kept in CACHE/transfer_SIZE.json; docs/transfer.md is written from all sizes measured
(--write-only: rewrite it from those files without measuring).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BN_MOMENTUM = 0.99
TARGET_ACCURACY, MAX_DROP, MIN_SPEEDUP = 0.95, 1.0, 1.3


VAL_FRACTION = 0.2  # of the train split: the validation data a user keeps beside model.fit


def split(size: int, which: str) -> tuple[np.ndarray, np.ndarray]:
    """``train`` / ``test``: edgecnn's digits splits; ``fit`` / ``val``: the train split cut once more,
    stratified and seeded, into what model.fit trains on and the validation data the user keeps beside it."""
    from edgecnn.data import digits
    from edgecnn.data.dataset import split_indices

    d = digits(input_shape=(size, size, 3), split="test" if which == "test" else "train")
    x, y = d.x.astype(np.float32), d.y.astype(np.int64)
    if which in ("fit", "val"):
        fit, val, _ = split_indices(y, len(y), seed=1, test_fraction=VAL_FRACTION)
        idx = fit if which == "fit" else val
        return x[idx], y[idx]
    return x, y


def train_model(size: int, epochs: int, cache: Path, log, *, init_from: Path | None = None) -> Path:
    """Train the transfer model at SIZE (cached). ``init_from``: a model of the same architecture trained at another
    size whose weights start this one (the network is fully convolutional up to global pooling, so every weight
    has the same shape at any size): the low-resolution model is the "pretrained" base a user would otherwise
    download, fine-tuned at SIZE with the same plain `model.fit`."""
    tag = f"_from{init_from.stem.split('_')[2]}" if init_from is not None else ""
    path = cache / f"mobilenetv2_transfer_{size}{tag}_fit_bn{BN_MOMENTUM:g}_e{epochs}.keras"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    init = "" if init_from is None else (
        f"model.set_weights(keras.saving.load_model({str(init_from)!r}, compile=False).get_weights())")
    code = f"""
import sys, time, numpy as np, keras
sys.path.insert(0, {str(ROOT)!r})
from benchmarks.transfer import split
x, y = split({size}, "fit")
xv, yv = split({size}, "val")
keras.utils.set_random_seed(0)
base = keras.applications.MobileNetV2(input_shape=({size}, {size}, 3), include_top=False, weights=None)
for layer in base.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = {BN_MOMENTUM}
inp = keras.Input(({size}, {size}, 3))
h = keras.layers.Rescaling(2.0, offset=-1.0)(inp)
h = keras.layers.GlobalAveragePooling2D()(base(h))
model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h), name="mobilenetv2_transfer")
{init}
steps = {epochs} * -(-len(x) // 32)
model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps)),
              "sparse_categorical_crossentropy", metrics=["accuracy"])
t0 = time.perf_counter()
model.fit(x, y, batch_size=32, epochs={epochs}, validation_data=(xv, yv), verbose=0)
xt, yt = split({size}, "test")
acc = float(np.mean(np.argmax(model.predict(xt, verbose=0), -1) == yt))
print(f"trained {{time.perf_counter() - t0:.0f}} s, held-out {{acc:.4f}}")
model.save(sys.argv[1])
"""
    tmp = path.with_name("tmp_" + path.name)
    out = subprocess.run([sys.executable, "-c", code, str(tmp)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"training failed: {out.stderr.strip().splitlines()[-1:]}")
    log(out.stdout.strip().splitlines()[-1])
    tmp.rename(path)
    return path


def litert_top1(data: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 on LiteRT, one input at a time, through the interpreter's own quantization parameters."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    hits = 0
    for xi, yi in zip(x, y):
        v = xi[None]
        if i["dtype"] != np.float32:
            s, z = i["quantization"]
            v = np.clip(np.round(v / s + z), np.iinfo(i["dtype"]).min, np.iinfo(i["dtype"]).max).astype(i["dtype"])
        it.set_tensor(i["index"], v)
        it.invoke()
        out = it.get_tensor(o["index"])
        hits += int(np.argmax(out) == yi)
    return hits / len(y)


def plain_int8(model_path: Path, x_cal: np.ndarray) -> bytes:
    """What a user gets without edgecnn: the TFLite converter, full int8 calibrated on training images (float I/O)."""
    code = f"""
import sys, numpy as np, tensorflow as tf, keras
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
conv = tf.lite.TFLiteConverter.from_keras_model(model)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
open(sys.argv[3], "wb").write(conv.convert())
"""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "cal.npy", x_cal)
        out = subprocess.run([sys.executable, "-c", code, str(model_path), str(Path(tmp) / "cal.npy"),
                              str(Path(tmp) / "plain.tflite")], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"plain conversion failed: {out.stderr.strip().splitlines()[-1:]}")
        return (Path(tmp) / "plain.tflite").read_bytes()


def keras_top1(model_path: Path, x: np.ndarray, y: np.ndarray) -> float:
    code = ("import sys, numpy as np, keras\n"
            "m = keras.saving.load_model(sys.argv[1]); x = np.load(sys.argv[2]); y = np.load(sys.argv[3])\n"
            "print(float(np.mean(np.argmax(m.predict(x, verbose=0), -1) == y)))\n")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        np.save(Path(tmp) / "y.npy", y)
        out = subprocess.run([sys.executable, "-c", code, str(model_path), str(Path(tmp) / "x.npy"),
                              str(Path(tmp) / "y.npy")], capture_output=True, text=True)
        return float(out.stdout.strip().splitlines()[-1])


def measure(size: int, epochs: int, cache: Path, timeout: int, log, *, init: tuple[int, int] | None = None) -> dict:
    """Train (cached), compress, and measure one size; the result is kept in CACHE/transfer_SIZE.json.
    ``init``: (size, epochs) of the model whose weights start this one (trained first, cached)."""
    t_all = time.perf_counter()
    t_train = time.perf_counter()
    start = None if init is None else train_model(init[0], init[1], cache, log)
    model = train_model(size, epochs, cache, log, init_from=start)
    train_minutes = (time.perf_counter() - t_train) / 60
    x_train, y_train = split(size, "fit")
    x_val, y_val = split(size, "val")
    x_test, y_test = split(size, "test")
    data, val = cache / f"digits{size}_fit.npz", cache / f"digits{size}_val.npz"
    if not data.exists():
        np.savez(data, x=x_train, y=y_train)
    if not val.exists():
        np.savez(val, x=x_val, y=y_val)
    out = cache / f"out_{size}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgecnn.cli", "compress", str(model), "--data", str(data),
                           "--val", str(val), "--recipe", "mobile", "-o", str(out), "--quiet"], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak_mb = after.ru_maxrss / 1024
    log(f"compress exit {proc.returncode} in {wall:.0f} s wall, {cpu:.0f} s CPU")
    if proc.returncode not in (0, 1):
        raise SystemExit(f"compress failed: {proc.stderr.strip().splitlines()[-3:]}")
    report = json.loads((out / "report.json").read_text())
    shipped = Path(report["artifacts"][0]["path"]).read_bytes()
    plain = plain_int8(model, x_train[:200])
    from edgecnn.benchmarking.core import time_artifacts

    timed = time_artifacts({"plain int8": plain, "edgecnn": shipped}, runtime="litert", threads=1, runs=100_000,
                           min_runs=50, warmup=3, budget_s=20.0)
    acc = {"keras": keras_top1(model, x_test, y_test), "plain int8": litert_top1(plain, x_test, y_test),
           "edgecnn": litert_top1(shipped, x_test, y_test)}
    seconds: dict = {}
    for st in report["stages"]:  # a stage runs again after each back-off: its seconds add up
        seconds[st["name"]] = seconds.get(st["name"], 0.0) + float(st.get("seconds") or 0.0)
    plan = report.get("plan", {})
    result = {"size": size, "epochs": epochs, "init": None if init is None else {"size": init[0], "epochs": init[1]},
              "train_minutes": train_minutes, "test_samples": int(len(y_test)), "fit_samples": int(len(y_train)),
              "val_samples": int(len(y_val)), "acc": acc, "bytes": {"plain int8": len(plain), "edgecnn": len(shipped)},
              "median_ms": {k: timed[k].median_ms for k in timed}, "wall": wall, "cpu": cpu,
              "peak_rss_mb_children": peak_mb, "exit": proc.returncode, "stage_seconds": seconds,
              "whole_minutes": (time.perf_counter() - t_all) / 60,
              "chosen": [c["id"] for c in plan.get("candidates", []) if c.get("chosen")],
              "own": {"speedup": (report.get("speedup") or {}).get("litert"),
                      "original": report["original"].get("accuracy"),
                      "compressed": report["compressed"].get("accuracy")},
              "backoffs": report.get("budget", {}).get("backoffs") or [],
              "probes": plan.get("probes"), "group_schedule": plan.get("group_schedule"),
              "candidates": [c for c in plan.get("candidates", []) if c.get("kind") == "prune"],
              "notes": report.get("notes") or []}
    (cache / f"transfer_{size}.json").write_text(json.dumps(result, indent=1))
    return result


def section(r: dict) -> list[str]:
    """docs/transfer.md's part for one size."""
    acc, ms = r["acc"], r["median_ms"]
    speed = ms["plain int8"] / ms["edgecnn"]
    drop = 100 * (acc["keras"] - acc["edgecnn"])
    met = r["exit"] == 0 and drop <= MAX_DROP and speed >= MIN_SPEEDUP and acc["keras"] >= TARGET_ACCURACY
    sec = r["stage_seconds"]
    init = r.get("init")
    started = "" if not init else (
        f", starting from the weights of the {init['size']}x{init['size']} model ({init['epochs']} epochs; the base is "
        "fully convolutional, so the low-resolution model is the pretrained base a user would otherwise download)")
    trained = "" if r.get("train_minutes") is None else (
        f" (training {r['train_minutes']:.1f} min of it, 0 when the model was cached from an earlier run)")
    rows = [f"## {r['size']}x{r['size']}", "",
            f"Trained {r['epochs']} epochs{started} on {r['fit_samples']} images (fit.npz), {r['val_samples']} kept as "
            f"val.npz; measured on the {r['test_samples']} test digits. Whole run {r['whole_minutes']:.1f} min"
            f"{trained}.", "",
            "| | size bytes | top-1 held-out (test) | LiteRT 1t median ms | speed vs plain int8 |",
            "|---|---|---|---|---|",
            f"| Keras original | - | {acc['keras']:.4f} | - | - |",
            f"| plain int8 | {r['bytes']['plain int8']:,} | {acc['plain int8']:.4f} | {ms['plain int8']:.3f} | 1.00x |",
            f"| edgecnn compress | {r['bytes']['edgecnn']:,} | {acc['edgecnn']:.4f} | {ms['edgecnn']:.3f} | "
            f"{speed:.2f}x |", "",
            f"compress: exit {r['exit']}, {r['wall']:.0f} s wall / {r['cpu']:.0f} s CPU (plan {sec.get('plan', 0):.0f} s, "
            f"of which probes {(r.get('probes') or {}).get('seconds', 0):.0f} s; fine-tune {sec.get('finetune', 0):.0f} s, "
            f"every attempt); chose {', '.join(r['chosen']) or 'nothing'}; its own report on val.npz: speedup "
            f"{r['own']['speedup']}, accuracy {r['own']['original']:.4f} -> {r['own']['compressed']:.4f}.", "",
            ("Target (issue 15)" if r["size"] == 96 else "The 96x96 targets, for comparison (at this size the issue "
             "asks for the run and its time)") +
            f": original >= {TARGET_ACCURACY:.0%}, exit 0, within {MAX_DROP:g} point of the original "
            f"on the test split, >= {MIN_SPEEDUP}x plain int8: **{'met' if met else 'NOT met'}** (drop {drop:.2f} "
            f"points, {speed:.2f}x)."]
    if r["backoffs"]:
        rows += ["", "Back-offs (judged by compress on val.npz):", ""] + [f"- {b}" for b in r["backoffs"]]
    cands = r["candidates"]
    if cands:
        rows += ["", "Pruning candidates as the plan measured them (drops on the plan's slice of fit.npz, which the "
                 "original was trained on; *after probe*: after the short fine-tune of edgecnn.pipeline.probe):", "",
                 "| candidate | MACs removed | latency ms (base) | drop before fine-tuning | after probe | chosen | "
                 "reason |", "|---|---|---|---|---|---|---|"]
        for c in cands:
            lat = "-" if c.get("latency_ms") is None else f"{c['latency_ms']:.3f} ({c['base_ms']:.3f})"
            pd = "-" if c.get("probe_drop") is None else f"{c['probe_drop']:.1f}"
            ad = "-" if c.get("accuracy_drop") is None else f"{c['accuracy_drop']:.1f}"
            rows.append(f"| {c['id']} | {c.get('removed')} | {lat} | {ad} | {pd} | {c.get('chosen')} | "
                        f"{(c.get('reason') or '').replace('|', '/')} |")
    schedule = r.get("group_schedule")
    if schedule:
        rows += ["", "Per-group schedule (each group pruned alone at the group ratio, BatchNorm re-estimated, "
                 "before fine-tuning; cheapest first):", "",
                 "| group | channels | after | MACs saved | drop (points) |", "|---|---|---|---|---|"]
        rows += [f"| {g['group']} | {g['channels']} | {g['channels_after']} | {g['saved_macs']:,} | {g['drop']:.1f} |"
                 for g in schedule["groups"]]
        rows += ["", "Levels: " + "; ".join(f"{lv['level']:g} of the MACs: {len(lv['ratios'])} groups, predicted drop "
                                            f"{lv['predicted_drop']:.1f} points" for lv in schedule["levels"])]
    return rows


def write(results: list[dict]) -> None:
    rows = ["# A MobileNetV2 transfer model compressed with data (issue 15)", "",
            "Written by `python benchmarks/transfer.py` (this machine: 2 cores). The model: Rescaling to [-1, 1] + "
            "keras.applications MobileNetV2 (alpha 1.0, weights=None) as one nested layer + global pooling + "
            "Dense(10), Keras 3, trained here with plain `model.fit` (batch 32, Adam 1e-3 cosine decay, "
            "`validation_data` = val.npz; BatchNorm momentum 0.99 set before training, see the script) on digits "
            "resized to SIZExSIZEx3. `edgecnn compress MODEL --data fit.npz --val val.npz --recipe mobile`: all of "
            "fit.npz trains and calibrates, val.npz (never trained on) judges the accuracy budget. Every accuracy in "
            "the first table is measured by this script on LiteRT (Keras for the original) on the held-out test "
            "digits that nothing trained, calibrated or chose on. *plain int8*: the TFLite converter alone, full "
            "int8 calibrated on 200 training images. Latency: LiteRT 1 thread, both files interleaved in one run, "
            "medians.", ""]
    kept = kept_sections({r["size"] for r in results})
    for size, lines in sorted([(r["size"], section(r)) for r in results] + kept):
        rows += lines + [""]
    (ROOT / "docs" / "transfer.md").write_text("\n".join(rows).rstrip("\n") + "\n")


def kept_sections(measured: set[int]) -> list[tuple[int, list[str]]]:
    """The sections of today's docs/transfer.md for sizes with no result in the cache (measured in an earlier run,
    on another machine), kept as they are so that measuring one size does not erase another."""
    doc = ROOT / "docs" / "transfer.md"
    if not doc.exists():
        return []
    out: list[tuple[int, list[str]]] = []
    for part in doc.read_text().split("\n## ")[1:]:
        head = part.split("\n", 1)[0]
        size = int(head.split("x", 1)[0])
        if size not in measured:
            out.append((size, ("## " + part).rstrip("\n").split("\n")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--cache", default="/tmp/edgecnn_transfer")
    ap.add_argument("--timeout", type=int, default=7200)
    ap.add_argument("--write-only", action="store_true")
    ap.add_argument("--init-size", type=int, default=None,
                    help="start from the weights of the model trained at this size (trained first, cached)")
    ap.add_argument("--init-epochs", type=int, default=30)
    args = ap.parse_args()
    cache = Path(args.cache)

    def log(text: str) -> None:
        print(text, flush=True)

    if not args.write_only:
        init = None if args.init_size is None else (args.init_size, args.init_epochs)
        measure(args.size, args.epochs, cache, args.timeout, log, init=init)
    results = [json.loads(p.read_text()) for p in sorted(cache.glob("transfer_*.json"))]
    write([r for r in results if "median_ms" in r])
    log("wrote docs/transfer.md")


if __name__ == "__main__":
    main()
