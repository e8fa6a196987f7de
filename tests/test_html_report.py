"""The HTML benchmark report renders its charts in a real headless browser (Debian's chromium)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from edgecnn.bench.results import BenchReport, BenchResult

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
    assert text.count("Plotly.newPlot") == 4  # scatter, bars, two per-layer charts
    assert "unavailable: no GPU" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI's .ci/run installs it): "
                                             "the report was not opened in a browser")
def test_html_renders_charts_in_headless_chromium(tmp_path):
    page = _report().to_html(tmp_path / "report.html")
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           "--virtual-time-budget=8000", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    # plotly turned each chart div into SVG: 4 charts, each with its main SVG and plotted traces.
    for div in ("latency-vs-accuracy", "latency-per-runtime", "per-layer-0", "per-layer-1"):
        match = re.search(rf'<div id="{div}"[^>]*class="[^"]*js-plotly-plot', dom)
        assert match, f"chart {div} did not render"
    assert dom.count('class="main-svg"') >= 8
    assert dom.count('class="point"') >= 4 + 8  # 4 scatter markers, 4 bars, 4 per-layer bars
    assert "scatterlayer" in dom and "barlayer" in dom
    assert "fp32 (1t)" in dom  # a scatter label, drawn as SVG text
