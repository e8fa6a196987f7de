"""The HTML reports (bench --html, compress's report.html) render their charts in a real headless browser
(Debian's chromium), inline plotly.js once, and stay small."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.benchmarking.results import BenchReport, BenchResult

ROOT = Path(__file__).resolve().parents[1]
MAX_REPORT_BYTES = 1.5e6

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _report() -> BenchReport:
    ops = [{"name": "conv", "type": "CONV_2D", "ms": 0.3, "share": 0.6},
           {"name": "fc", "type": "FULLY_CONNECTED", "ms": 0.2, "share": 0.4}]
    rows = []
    for model, acc, base in (("fp32", 0.975, 0.30), ("int8", 0.972, 0.12)):
        for runtime, k in (("litert", 1.0), ("onnxruntime", 1.4)):
            ms = base * k
            rows.append(BenchResult(model=model, artifact=f"{model}.x", runtime=runtime, threads=1, status="ok",
                                    median_ms=ms, p90_ms=ms * 1.1, p99_ms=ms * 1.3, min_ms=ms * 0.9, runs=50,
                                    size_bytes=1000, accuracy=acc, per_layer=ops if runtime == "litert" else None))
    rows.append(BenchResult(model="fp32", artifact="fp32.x", runtime="onnxruntime-cuda", threads=1,
                            status="unavailable", reason="no GPU"))
    return BenchReport(results=rows, environment={"label": "host measurement", "cpu": "test", "cores": 2},
                       settings={"batch_size": 1})


def test_html_is_self_contained(tmp_path):
    text = _report().to_html(tmp_path / "r.html").read_text()
    assert not re.search(r"<script[^>]+src=", text)  # plotly.js inlined, nothing fetched
    assert text.count("Plotly.newPlot") == 5  # scatter, latency bars, size bars, two per-layer charts
    assert text.count("Copyright 2012-") == 1  # plotly.js inlined once
    assert 'id="size-per-model"' in text and "Size per model" in text
    assert "unavailable: no GPU" in text
    assert len(text.encode()) < MAX_REPORT_BYTES


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI's .ci/run installs it): "
                                             "the report was not opened in a browser")
def _dom(page: Path, tmp_path: Path) -> str:
    """The page's DOM after chromium ran its scripts (offline: nothing outside the file is fetched)."""
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           "--virtual-time-budget=8000", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _rendered(dom: str, div: str) -> bool:
    """plotly turned the chart div into a plot: the div got its class and an SVG."""
    match = re.search(rf'<div id="{div}"[^>]*class="[^"]*js-plotly-plot.*?class="main-svg"', dom, re.S)
    return match is not None


def test_html_renders_charts_in_headless_chromium(tmp_path):
    dom = _dom(_report().to_html(tmp_path / "report.html"), tmp_path)
    # plotly turned each chart div into SVG: 5 charts, each with its main SVG and plotted traces.
    for div in ("latency-vs-accuracy", "latency-per-runtime", "size-per-model", "per-layer-0", "per-layer-1"):
        assert _rendered(dom, div), f"chart {div} did not render"
    assert dom.count('class="main-svg"') >= 10
    assert dom.count('class="point"') >= 4 + 8 + 2  # 4 scatter markers, 4 latency bars, 4 per-layer bars, 2 sizes
    assert "scatterlayer" in dom and "barlayer" in dom
    assert "fp32 (1t)" in dom  # a scatter label, drawn as SVG text


@pytest.fixture(scope="module")
def mnist_report(tmp_path_factory):
    """``edgecnn compress models/mnist_cnn.h5`` as a user runs it (data-free, the shipped MNIST CNN)."""
    out = tmp_path_factory.mktemp("mnist") / "out"
    done = subprocess.run([sys.executable, "-m", "edgecnn.cli", "compress", str(ROOT / "models" / "mnist_cnn.h5"),
                           "-o", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"})  # stdout piped, as in CI
    assert done.returncode == 0, done.stderr[-3000:]
    (out.parent / "stdout.txt").write_text(done.stdout)
    (out.parent / "stderr.txt").write_text(done.stderr)
    return out


def test_compress_terminal_output_at_80_columns(mnist_report):
    """The final table fits 80 columns with every figure whole, and says what the run changed."""
    stdout = (mnist_report.parent / "stdout.txt").read_text()
    stderr = (mnist_report.parent / "stderr.txt").read_text()
    report = json.loads((mnist_report / "report.json").read_text())
    lines = stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines if not line.startswith("wrote ")) <= 80, stdout  # (a path)
    o, c = report["original"], report["compressed"]
    for figure in (f"{o['params']:,}", f"{o['macs']:,}", f"{c['size_bytes'] / 1024:,.1f} KB"):
        assert any(figure in line for line in lines), (figure, stdout)
    latency = next(line for line in lines if "latency litert (median)" in line)
    assert latency.count(" us") == 2  # a 15 us model in microseconds, not "0.015 ms"
    chosen = [x["id"] for x in report["plan"]["candidates"] if x["chosen"]]
    assert f"plan chose: {', '.join(chosen)}" in stdout
    artifact = Path(report["artifacts"][0]["path"]).name
    assert f"quantize: wrote {artifact}" in stdout
    # the progress log (stderr is not a terminal here): one line per stage start and end, none cut short
    for stage in ("analyze", "plan", "rewrite", "prune", "finetune", "quantize", "validate", "benchmark"):
        assert re.search(rf"^\[\d/8\] {stage} (done|skipped) \(\d+\.\d s\)$", stderr, re.M), stage


def test_compress_report_html_is_small_complete_and_self_contained(mnist_report):
    page = mnist_report / "report.html"
    text = page.read_text()
    report = json.loads((mnist_report / "report.json").read_text())
    assert page.stat().st_size < MAX_REPORT_BYTES, page.stat().st_size  # plotly.js's basic bundle, once
    assert text.count("Copyright 2012-") == 1 and not re.search(r"<script[^>]+src=", text)
    assert 'id="size-per-model"' in text and 'id="latency-per-runtime"' in text and 'id="latency-vs-accuracy"' in text
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert "report.json" not in headings and "Accuracy budget" in headings
    for title in headings:  # no heading without content before the next one
        after = text.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]
        assert re.sub(r"<[^>]+>|\s", "", after), f"empty section {title!r}"
    # a microsecond-scale model: the plan's times are in us, with digits (never a column of 0.000)
    base = report["plan"]["base_ms"]
    assert base < 1.0
    assert "<th>latency us</th>" in text and "<th>gain us</th>" in text
    chosen = [c for c in report["plan"]["candidates"] if c["latency_ms"] is not None]
    assert chosen and f"<td>{chosen[0]['latency_ms'] * 1000:.2f}</td>" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI's .ci/run installs it): "
                                             "the report was not opened in a browser")
def test_compress_report_renders_offline_in_headless_chromium(mnist_report, tmp_path):
    dom = _dom(mnist_report / "report.html", tmp_path)
    for div in ("latency-vs-accuracy", "latency-per-runtime", "size-per-model"):
        assert _rendered(dom, div), f"chart {div} did not render"
    assert "barlayer" in dom and "KB" in dom
