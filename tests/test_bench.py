"""edgecnn.bench and `edgecnn bench`: real runtimes (keras tf.function, LiteRT, ONNX Runtime), tiny models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import small_cnn

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("median_ms", "p90_ms", "p99_ms", "runs", "size_bytes")


@pytest.fixture(scope="module")
def tiny(tf_keras):
    """Two tiny working models, "a" and "b" (same architecture and weights, different names)."""
    import edgecnn

    a = edgecnn.load(small_cnn(tf_keras, name="a"))
    b = edgecnn.load(small_cnn(tf_keras, name="b", input_shape=(16, 16, 3)))
    return a, b


@pytest.fixture(scope="module")
def artifacts(tiny, tmp_path_factory):
    """A .tflite, a .onnx and a corrupt .tflite of model 'a'."""
    from edgecnn.exporting.convert import convert

    folder = tmp_path_factory.mktemp("artifacts")
    paths = {"tflite": folder / "a.tflite", "onnx": folder / "a.onnx", "bad": folder / "bad.tflite"}
    paths["tflite"].write_bytes(convert(tiny[0], runtime="litert"))
    paths["onnx"].write_bytes(convert(tiny[0], runtime="onnxruntime"))
    paths["bad"].write_bytes(b"TFL3" + os.urandom(2000))
    return paths


@pytest.fixture(scope="module")
def heavy(tf_keras, tmp_path_factory):
    """Model 'a' at 4x the input area (about 4x the work) as a .tflite."""
    import edgecnn
    from edgecnn.exporting.convert import convert

    path = tmp_path_factory.mktemp("heavy") / "heavy.tflite"
    path.write_bytes(convert(edgecnn.load(small_cnn(tf_keras, name="a", input_shape=(32, 32, 3))), runtime="litert"))
    return path


@pytest.fixture(scope="module")
def labelled(tiny):
    from edgecnn.data import Dataset

    rng = np.random.default_rng(0)
    x = rng.random((24, 16, 16, 3), dtype=np.float32)
    y = np.argmax(tiny[0].predict(x, verbose=0), axis=-1)  # labels the Keras model gets right by construction
    return Dataset(x=x, y=y, class_names=None, source="test arrays")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn.cli", "bench", "--quiet", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_every_model_runtime_has_the_statistics_and_accuracy(tiny, labelled):
    import edgecnn.benchmarking

    a, b = tiny
    report = edgecnn.bench({"a": a, "b": b}, threads=(1, 2), data=labelled, runs=8, warmup=1, progress=False)
    ok = {(r.model, r.runtime, r.threads): r for r in report.results if r.status == "ok"}
    tf_threads = next(r.threads for r in report.results if r.runtime == "keras")
    expected = {(m, rt, t) for m in "ab" for rt in ("litert", "onnxruntime") for t in (1, 2)}
    expected |= {(m, "keras", tf_threads) for m in "ab"}
    assert set(ok) == expected
    for r in ok.values():
        assert all(getattr(r, f) is not None for f in FIELDS), r
        assert r.runs == 8 and r.min_ms <= r.median_ms <= r.p90_ms <= r.p99_ms
        assert r.size_bytes > 0 and 0 < r.gzip_bytes and r.load_ms > 0 and r.peak_mem_mb is not None
        assert r.ratio_to_reference > 0 and r.throughput_ips == pytest.approx(1e3 / r.median_ms)
    # The converted fp32 artifacts agree with Keras on every label, which Keras gets right by construction.
    assert ok[("a", "keras", tf_threads)].accuracy == 1.0
    assert ok[("a", "litert", 1)].top1_agreement == 1.0 and ok[("a", "onnxruntime", 2)].accuracy == 1.0
    data = report.as_dict()
    assert data["reference"] and {f"{rt}|1" for rt in ("litert", "onnxruntime")} <= set(data["reference"])
    assert json.loads(json.dumps(data))["results"][0]["model"] == "a"


def test_artifacts_run_on_their_runtime_and_files_are_untouched(artifacts, tmp_path):
    import edgecnn.benchmarking

    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (artifacts["tflite"], artifacts["onnx"])}
    report = edgecnn.bench([str(artifacts["tflite"]), str(artifacts["onnx"])], runs=5, warmup=1, progress=False,
                           batch_size=3)
    got = sorted((r.model, r.runtime, r.status) for r in report.results)
    assert got == [("a", "litert", "ok"), ("a.onnx", "onnxruntime", "ok")]
    assert all(r.batch_size == 3 and r.throughput_ips == pytest.approx(3e3 / r.median_ms) for r in report.results)
    assert report.results[0].size_bytes == artifacts["tflite"].stat().st_size
    assert all(p.read_bytes() == data and p.stat().st_mtime_ns == mtime for p, (data, mtime) in before.items())
    out = report.to_markdown(tmp_path / "b.md").read_text()
    assert "| a | litert | 1 | ok |" in out


def test_gpu_runtimes_are_listed_with_a_reason_never_skipped(tiny):
    import edgecnn.benchmarking
    from edgecnn.runtimes import GPU_RUNTIMES

    report = edgecnn.bench({"a": tiny[0]}, runtimes="all", runs=3, warmup=0, progress=False)
    rows = {r.runtime: r for r in report.results}
    assert set(GPU_RUNTIMES) <= set(rows) and {g["runtime"] for g in report.gpu} == set(GPU_RUNTIMES)
    for name in GPU_RUNTIMES:
        r = rows[name]
        assert r.status in ("ok", "unavailable", "load failed", "run failed")
        if r.status != "ok":
            assert r.reason, name
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        assert rows["onnxruntime-cuda"].status == "unavailable" and rows["tensorflow-gpu"].status == "unavailable"
        assert "device" in rows["tensorflow-gpu"].reason or "CUDA" in rows["tensorflow-gpu"].reason


def test_mobile_profile_pins_one_core_and_restores(artifacts):
    import edgecnn.benchmarking

    before = os.sched_getaffinity(0)
    report = edgecnn.bench(str(artifacts["tflite"]), profile="mobile-1t", runs=3, warmup=0, progress=False)
    assert os.sched_getaffinity(0) == before
    assert len(report.environment["pinned_cores"]) == 1 and report.settings["profile"]["name"] == "mobile-1t"
    assert "host" in report.environment["label"]
    assert [(r.runtime, r.threads, r.status) for r in report.results] == [("litert", 1, "ok")]


def test_per_layer_top_ops_on_litert_and_onnxruntime(artifacts):
    import edgecnn.benchmarking

    report = edgecnn.bench([str(artifacts["tflite"]), str(artifacts["onnx"])], per_layer=True, runs=3, warmup=0,
                           progress=False)
    for r in report.results:
        assert r.per_layer, r.runtime
        types = {o["type"] for o in r.per_layer}
        assert types & {"CONV_2D", "Conv", "FusedConv", "DELEGATE"}, (r.runtime, types)
        assert all(o["ms"] >= 0 and 0 <= o["share"] <= 1 for o in r.per_layer)
        assert [o["ms"] for o in r.per_layer] == sorted((o["ms"] for o in r.per_layer), reverse=True)


def test_litert_per_op_profile_with_bounded_cuts_covers_every_op_once(artifacts):
    from ai_edge_litert.tools import flatbuffer_utils

    from edgecnn.benchmarking.perlayer import top_ops

    data = artifacts["tflite"].read_bytes()
    n_ops = len(flatbuffer_utils.convert_bytearray_to_object(bytearray(data)).subgraphs[0].operators)
    assert n_ops >= 3
    ops = top_ops(data, runtime="litert", runs=3, top=100, max_cuts=2, budget_s=0.5)
    # two cuts: the first op alone, then one entry for the rest, which says how many ops it covers
    assert len(ops) == 2 and sum(o.get("ops", 1) for o in ops) == n_ops
    grouped = next(o for o in ops if o.get("ops"))
    assert " .. " in grouped["name"] and grouped["ops"] == n_ops - 1
    assert abs(sum(o["share"] for o in ops) - 1) < 1e-6 and all(o["ms"] >= 0 for o in ops)


def test_keras_runtime_is_a_compiled_function_matching_predict(tiny):
    from edgecnn.runtimes.keras import KerasSession

    x = np.random.default_rng(1).random((5, 16, 16, 3), dtype=np.float32)
    session = KerasSession(tiny[1])
    assert session._fn.__class__.__name__ == "Function"  # a tf.function, traced once to a graph
    np.testing.assert_allclose(session.run(x, batch_size=2)[0], tiny[1].predict(x, verbose=0), atol=1e-5)


def test_cli_json_gate_pass_regression_and_junit(artifacts, tmp_path):
    base = tmp_path / "base.json"
    done = _cli(f"m={artifacts['tflite']}", "--runs", "10", "--json", str(base))
    assert done.returncode == 0, done.stderr
    data = json.loads(base.read_text())
    row = data["results"][0]
    assert (row["model"], row["runtime"], row["threads"]) == ("m", "litert", 1)
    assert all(row[f] is not None for f in FIELDS) and row["ratio_to_reference"] > 0
    # A baseline (from elsewhere: no files to re-measure) twice as slow passes; twice as fast is a regression.
    for factor, code in ((2.0, 0), (0.5, 1)):
        edited = dict(data, results=[dict(row, ratio_to_reference=row["ratio_to_reference"] * factor, source=None)])
        path = tmp_path / f"base_{factor}.json"
        path.write_text(json.dumps(edited))
        junit = tmp_path / f"gate_{factor}.xml"
        done = _cli(f"m={artifacts['tflite']}", "--runs", "10", "--baseline", str(path), "--max-regression", "10",
                    "--junit", str(junit))
        assert done.returncode == code, done.stdout + done.stderr
        xml = junit.read_text()
        assert 'name="m[litert,threads=1]"' in xml and ("<failure" in xml) == (code == 1)
        if code == 1:
            assert "m on litert (1 thread(s))" in done.stderr and "vs baseline" in done.stderr
            assert "reference model)" in done.stderr


def test_gate_measures_the_baseline_file_in_the_same_run(artifacts, heavy, tmp_path):
    base = tmp_path / "base.json"
    assert _cli(f"m={artifacts['tflite']}", "--runs", "10", "--json", str(base)).returncode == 0
    same = _cli(f"m={artifacts['tflite']}", "--runs", "10", "--baseline", str(base), "--max-regression", "50",
                "--json", str(tmp_path / "now.json"))
    assert same.returncode == 0 and "same run" in same.stdout, same.stdout + same.stderr
    now = json.loads((tmp_path / "now.json").read_text())
    assert [r["model"] for r in now["baseline_results"]] == ["baseline:m"]
    slower = _cli(f"m={heavy}", "--runs", "10", "--baseline", str(base), "--max-regression", "50")
    assert slower.returncode == 1 and "same run" in slower.stderr, slower.stdout + slower.stderr


def test_cli_bad_input_exits_2_with_one_line(artifacts, tmp_path):
    base = tmp_path / "base.json"
    assert _cli(f"m={artifacts['tflite']}", "--runs", "3", "--json", str(base)).returncode == 0
    other = json.loads(base.read_text())
    other["results"][0]["model"] = "someone_else"
    (tmp_path / "other.json").write_text(json.dumps(other))
    (tmp_path / "broken.json").write_text('{"results": [1, 2')
    (tmp_path / "wrong.json").write_text('{"models": []}')
    out = tmp_path / "never.json"
    cases = {
        "artifact that does not load": ([str(artifacts["bad"]), "--json", str(out)], "bad"),
        "unknown runtime": ([str(artifacts["tflite"]), "--runtime", "litert,tpu"], "tpu"),
        "baseline from another model set": ([f"m={artifacts['tflite']}", "--baseline", str(tmp_path / "other.json")],
                                            "another model set"),
        "baseline not JSON": ([f"m={artifacts['tflite']}", "--baseline", str(tmp_path / "broken.json")], "not JSON"),
        "baseline without results": ([f"m={artifacts['tflite']}", "--baseline", str(tmp_path / "wrong.json")],
                                     "malformed"),
    }
    for name, (args, needle) in cases.items():
        done = _cli("--runs", "3", *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (name, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("edgecnn: error:") and needle in lines[0], (name, lines)
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_python_api_errors_are_typed(tiny):
    import edgecnn.benchmarking
    from edgecnn.errors import EdgecnnError

    for kwargs in ({"runtimes": "litert,nope"}, {"threads": "0"}, {"batch_size": 0}, {"profile": "mobile-9t"}):
        with pytest.raises(EdgecnnError):
            edgecnn.bench({"a": tiny[0]}, runs=2, progress=False, **kwargs)
    with pytest.raises(EdgecnnError, match="not found"):
        edgecnn.bench("missing_model.tflite", progress=False)


def test_runtime_table_drives_suffixes_availability_and_targets(artifacts, tmp_path):
    from edgecnn.benchmarking.targets import ALL_RUNTIMES, check_runtimes, resolve
    from edgecnn.errors import EdgecnnError
    from edgecnn.runtimes import CPU_RUNTIMES, GPU_RUNTIMES, RUNTIMES, artifact_runtime, runtime_for

    assert tuple(check_runtimes("all")) == ALL_RUNTIMES == tuple(RUNTIMES) == CPU_RUNTIMES + GPU_RUNTIMES
    for row in RUNTIMES.values():
        assert RUNTIMES[row.base].device == "cpu" and RUNTIMES[row.base].format == row.format
        for suffix in row.suffixes:  # only CPU rows own suffixes; a file's runtime is the row that lists it
            assert runtime_for(f"model{suffix.upper()}") == row.name
            assert artifact_runtime(suffix) == (row.name if row.format else None)
        if row.device == "cpu":
            assert row.available and row.reason() is None
    with pytest.raises(EdgecnnError, match="no runtime runs"):
        runtime_for("model.pt")
    # A .ort copy of the .onnx runs where its row says (onnxruntime and its GPU rows), never on litert or keras.
    ort = tmp_path / "a.ort"
    ort.write_bytes(artifacts["onnx"].read_bytes())
    [target] = resolve([str(ort)])
    assert [rt for rt in RUNTIMES if target.runs_on(rt)] == ["onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt"]
    assert target.artifact("onnxruntime-cuda") == ort.read_bytes()


def test_a_gpu_row_is_unavailable_with_its_reason_here(artifacts):
    from edgecnn.benchmarking.core import time_artifacts
    from edgecnn.runtimes import GPU_RUNTIMES, RUNTIMES

    if any(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this machine has an NVIDIA GPU")
    for name in GPU_RUNTIMES:
        row = RUNTIMES[name]
        reason = row.reason()
        assert row.available is False and isinstance(reason, str) and len(reason) > 10, name
    row = RUNTIMES["onnxruntime-cuda"]
    r = time_artifacts({"a": artifacts["onnx"].read_bytes()}, runtime="onnxruntime-cuda", runs=3)["a"]
    assert (r.status, r.reason, r.median_ms) == ("unavailable", row.reason(), None)
    assert "CUDAExecutionProvider" in r.reason


def _dense_tflite(tf_keras, path: Path, units: int) -> Path:
    """A 32x32x3 -> Dense(units) model as a .tflite: its weights take 3072 * units * 4 bytes."""
    from edgecnn.exporting.convert import convert

    inp = tf_keras.Input((32, 32, 3))
    model = tf_keras.Model(inp, tf_keras.layers.Dense(units)(tf_keras.layers.Flatten()(inp)))
    path.write_bytes(convert(model, runtime="litert"))
    return path


def test_load_time_and_memory_do_not_depend_on_the_load_order(tf_keras, tmp_path):
    import edgecnn.benchmarking

    small = _dense_tflite(tf_keras, tmp_path / "small.tflite", 4)  # 48 KB of weights
    big = _dense_tflite(tf_keras, tmp_path / "big.tflite", 1024)  # 12 MB of weights
    runs = {}
    for order in (("small", "big"), ("big", "small")):
        files = {"small": str(small), "big": str(big)}
        report = edgecnn.bench({n: files[n] for n in order}, runtimes="litert", runs=3, warmup=0, progress=False,
                               reference=False, instances=1)
        runs[order] = {r.model: r for r in report.results}
    for order, rows in runs.items():
        # In one process the first load paid the runtime's set-up and the second reused freed memory, so the
        # small model could show more than the big one; each load in its own process cannot.
        assert rows["big"].peak_mem_mb > rows["small"].peak_mem_mb + 8, order
        assert rows["big"].load_ms > rows["small"].load_ms, order
    for model in ("small", "big"):
        a, b = (runs[o][model].peak_mem_mb for o in runs)
        assert abs(a - b) <= 0.25 * max(a, b) + 1.0, (model, a, b)  # the same model, either order


def _spin(ms: float) -> None:
    import time

    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass


def test_disagreement_flag_fires_on_a_busy_stretch_not_on_a_clean_series():
    from edgecnn.benchmarking import core
    from edgecnn.benchmarking.results import BenchResult

    rng = np.random.default_rng(0)
    clean = list(3.05 + 0.05 * rng.standard_normal(100))
    assert core.disagreement({"first half": clean[:50], "second half": clean[50:]}) is None
    assert core.disagreement({"instance 1": clean, "instance 2": [v * 1.02 for v in clean]}) is None
    outlier = clean[:60] + [7.31] * 40  # one report's 7.31 ms where every other measurement said 3.05 ms
    assert "disagree" in core.disagreement({"first half": outlier[:50], "second half": outlier[50:]})
    tiny = list(0.0020 + 0.00002 * rng.standard_normal(50))  # a 2 us model: 25% is half a microsecond of jitter
    assert core.disagreement({"instance 1": tiny, "instance 2": [v * 1.25 for v in tiny]}) is None

    # Wired into the loop: a callable that turns 3x slower halfway through the rounds gets a warning.
    calls = {"n": 0}
    halfway = 3 + 10 * (core.WARM_CALLS + 2)  # 3 calls size the slot (2 timed calls of 1 ms), 10 of 20 rounds

    def slows_down() -> None:
        calls["n"] += 1
        _spin(1.0 if calls["n"] <= halfway else 3.0)

    for fn, flagged in ((lambda: _spin(1.0), False), (slows_down, True)):
        results = [BenchResult(model="m", artifact="m", runtime="litert", threads=1, status="ok")]
        timings, cpu, parts = core._time_all({("m", "litert", 1): [fn]}, runs=20, warmup=0, budget_s=None,
                                             min_runs=5, results=results)
        core._fill(results, timings, cpu, parts)
        assert bool(results[0].warning) == flagged, results[0].warning


def test_in_process_timings_record_the_size_without_gzip(tiny):
    """A plan's timings and the per-op profiles (16 prefixes of each model) do not gzip what they time (level 9:
    about a second per 24 MB file); edgecnn bench does (the test above)."""
    from edgecnn.benchmarking.core import time_artifacts
    from edgecnn.exporting.convert import convert

    data = convert(tiny[0], runtime="litert")
    r = time_artifacts({"a": data}, runtime="litert", runs=5, warmup=1)["a"]
    assert r.status == "ok" and r.size_bytes == len(data) and r.gzip_bytes is None and r.median_ms > 0
