"""Fail closed: a generated corpus of bad and hostile inputs through the command line (see tests/corpus.py),
a tampered checkpoint, two runs on one OUTDIR, Ctrl-C, and the rules behind them.

Set ``EDGECNN_CORPUS_REPORT=path.json`` to keep every outcome (benchmarks/security_corpus.py does, to write
the figures of docs/security.md).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus import ROOT, Outcome, build_cases, build_files, env, run_case, sha256

OUTCOMES: list[Outcome] = []


def _mount(path: Path, options: str) -> bool:
    """A small tmpfs (root only); False where this machine does not allow it."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _no_dac(locked: Path) -> list[str] | None:
    """A command prefix under which writing into ``locked`` (mode 0o500) is denied: nothing for a normal user;
    for root, setpriv without the capabilities that override file permissions."""
    locked.mkdir(exist_ok=True)
    locked.chmod(0o500)
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    caps = "-dac_override,-dac_read_search"
    prefix = ["setpriv", "--bounding-set", caps, "--inh-caps", caps]
    probe = subprocess.run([*prefix, sys.executable, "-c", f"import os; os.mkdir({str(locked / 'probe')!r})"],
                           capture_output=True)
    return prefix if probe.returncode != 0 else None


def _fill(folder: Path, *, leave: int) -> None:
    """Fill a tmpfs until only ``leave`` bytes (rounded to pages) are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    (folder / "filler.bin").write_bytes(b"\0" * max(0, free - leave))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tf_keras, keras3):
    tmp = tmp_path_factory.mktemp("corpus")
    mounts = []
    try:
        can_mount = _mount(tmp / "ro", "ro,size=64k")
        if can_mount:
            mounts.append(tmp / "ro")
            if _mount(tmp / "full", "size=2m"):
                mounts.append(tmp / "full")
            else:
                can_mount = False
        files = build_files(tmp, tf_keras, keras3)
        if can_mount:  # room for the lock file and one artifact, not for export.json: a disk that fills up mid-run
            import edgecnn
            from edgecnn.exporting import export

            probe = export(edgecnn.load(str(files["good"])), outdir=tmp / "probe_export", formats="tflite")
            size = probe.artifacts[0].size_bytes
            _fill(tmp / "full", leave=4096 * (1 + math.ceil(size / 4096)))
            shutil.rmtree(tmp / "probe_export")
        cases = build_cases(tmp, files, can_mount=can_mount, no_dac=_no_dac(tmp / "locked"))
        yield {"tmp": tmp, "files": files, "cases": cases, "mounted": can_mount}
    finally:
        for m in mounts:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        if (tmp / "locked").exists():
            (tmp / "locked").chmod(0o700)
        report = os.environ.get("EDGECNN_CORPUS_REPORT")
        if report:
            Path(report).write_text(json.dumps([o.as_dict() for o in OUTCOMES], indent=1))


def test_corpus_every_case_fails_closed(corpus, capfd):
    """Each case: the documented exit code, one stderr line with the reason, no traceback, inputs unchanged,
    nothing left in the output location, no payload ran."""
    cases = corpus["cases"]
    assert len(cases) >= 40
    bad = []
    for case in cases:
        outcome = run_case(case, capfd=capfd, marker=corpus["files"]["marker"])
        OUTCOMES.append(outcome)
        if not outcome.clean:
            bad.append(f"{case.id}: {json.dumps(outcome.as_dict())}")
    covered = {c.cls for c in cases}
    assert covered >= {"checkpoint", "gate", "crash", "memory", "files-left", "values", "scan", "small"}
    assert not bad, "\n".join(bad)


def _recipe(tmp: Path) -> Path:
    from edgecnn.pipeline.recipe import dumps, load_recipe

    path = tmp / "fast.toml"
    path.write_text(dumps(load_recipe("mobile", overrides={
        "plan.seconds": 0.5, "plan.latency_runs": 10, "bench.seconds": 0.3, "bench.runs": 10,
        "rewrite.enabled": False, "prune.enabled": False})))
    return path


def _compress(model: Path, out: Path, recipe: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgecnn.cli", "compress", str(model), "-o", str(out), "--recipe",
                             str(recipe), "--quiet"], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float = 120) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_two_runs_on_one_outdir_and_a_stale_lock(corpus):
    """A lock left by a killed run (its pid gone, the kernel released the flock) does not block; a second run
    while the first holds the lock exits 2 at once naming the first; the first finishes and leaves no state."""
    tmp, good = corpus["tmp"], corpus["files"]["good"]
    out = tmp / "shared_out"
    out.mkdir()
    (out / ".edgecnn.lock").write_text("pid 999999999: edgecnn compress (killed with -9)\n")
    before = sha256(good)
    recipe = _recipe(tmp)
    first = _compress(good, out, recipe)
    lock = out / ".edgecnn.lock"
    assert _wait_for(lambda: lock.exists() and f"pid {first.pid}" in lock.read_text(errors="replace")), \
        first.communicate()
    t0 = time.perf_counter()
    second = _compress(good, out, recipe)
    _, err2 = second.communicate(timeout=300)
    seconds = time.perf_counter() - t0
    _, err1 = first.communicate(timeout=600)
    lines = err2.strip().splitlines()
    outcome = Outcome(id="two_compress_runs_one_outdir", cls="concurrency", code=second.returncode, expected_code=2,
                      stderr=lines, traceback="Traceback" in err1 + err2, inputs_modified=[] if sha256(good) == before
                      else [str(good)], files_left=sorted(p.name for p in out.iterdir() if p.name.startswith(".")),
                      code_executed=False, needle_found=bool(lines) and f"pid {first.pid}" in lines[-1],
                      seconds=round(seconds, 2))
    OUTCOMES.append(outcome)
    assert first.returncode == 0, err1
    assert err1.strip() == "", err1  # a quiet run that succeeds prints nothing on stderr (no LiteRT INFO line)
    assert outcome.clean, outcome.as_dict()
    assert "in use by another edgecnn run" in lines[0]
    assert (out / "report.json").is_file() and not (out / ".edgecnn").exists()


def test_ctrl_c_says_so_and_resume_is_possible(corpus):
    """SIGINT mid-run: exit 130, one line that says it was interrupted and that --resume continues; the
    checkpoint stays, the lock goes, no artifact appears."""
    tmp, good = corpus["tmp"], corpus["files"]["good"]
    out = tmp / "interrupted"
    before = sha256(good)
    proc = _compress(good, out, _recipe(tmp))
    assert _wait_for(lambda: (out / ".edgecnn" / "state.json").exists()), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    outcome = Outcome(id="ctrl_c_compress", cls="small", code=proc.returncode, expected_code=130, stderr=lines,
                      traceback="Traceback" in err, inputs_modified=[] if sha256(good) == before else [str(good)],
                      files_left=[n for n in left if n != ".edgecnn"], code_executed=False,
                      needle_found=bool(lines) and "interrupted" in lines[-1] and "--resume" in lines[-1],
                      seconds=0.0)
    OUTCOMES.append(outcome)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert outcome.clean, (outcome.as_dict(), err)  # the whole stderr, to see where a traceback came from
    assert (out / ".edgecnn" / "state.json").is_file()


# ---- the rules behind the corpus, through the Python API --------------------------------------------------


def test_python_api_meets_the_same_range_rules(tmp_path, corpus):
    import edgecnn
    from edgecnn.errors import EdgecnnError
    from edgecnn.exporting import export

    good = corpus["files"]["good"]
    for kwargs, needle in (({"epochs": -5}, "--epochs"), ({"seed": -1}, "--seed"),
                           ({"max_accuracy_drop": float("nan")}, "max_accuracy_drop"),
                           ({"recipe": "[prune]\nratios = [1.5, -0.5]\n"}, "prune.ratios")):
        with pytest.raises(EdgecnnError, match=needle):
            edgecnn.compress(str(good), outdir=tmp_path / "api", quiet=True, **kwargs)
    assert not (tmp_path / "api").exists()
    with pytest.raises(EdgecnnError, match="calibration_samples"):
        export(edgecnn.load(str(good)), outdir=tmp_path / "exp", quantize="int8", calibration_samples=-1)


def test_checkpoint_clear_removes_a_link_not_its_target(tmp_path):
    from edgecnn.pipeline.context import Checkpoint

    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(target, out / ".edgecnn")
    Checkpoint(out, key="k").clear()
    assert not os.path.lexists(out / ".edgecnn") and (target / "keep.txt").read_text() == "keep"
    ck = Checkpoint(out, key="k")
    ck.save({"finished": [], "attempt": 0, "ctx": {"state": {}}}, model=None)
    assert (out / ".edgecnn").is_dir() and not (out / ".edgecnn").is_symlink()
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]


def test_gate_fails_closed_on_a_non_finite_measurement():
    from edgecnn.benchmarking.gate import compare_to_baseline
    from edgecnn.benchmarking.results import BenchReport, BenchResult
    from edgecnn.errors import InputFileError

    def rep(ratio):
        r = BenchResult(model="m", artifact="m.tflite", runtime="litert", threads=1, status="ok", median_ms=1.0,
                        ratio_to_reference=ratio)
        return BenchReport(results=[r], settings={"reference": "ref"})

    assert compare_to_baseline(rep(1.0), rep(1.0).as_dict()).ok
    with pytest.raises(InputFileError, match="finite"):
        compare_to_baseline(rep(float("nan")), rep(1.0).as_dict())
    with pytest.raises(InputFileError, match="max-regression"):
        compare_to_baseline(rep(1.0), rep(1.0).as_dict(), max_regression_pct=float("inf"))


def test_caps_are_raised_by_their_variables(monkeypatch, corpus):
    import edgecnn
    from edgecnn.errors import LimitError

    path = corpus["files"]["config_deep"]
    with pytest.raises(LimitError, match="EDGECNN_MAX_CONFIG_DEPTH"):
        edgecnn.load(str(path))
    monkeypatch.setenv("EDGECNN_MAX_PROBE_ELEMENTS", "10")
    with pytest.raises(LimitError, match="EDGECNN_MAX_PROBE_ELEMENTS=784"):  # what this model needs
        edgecnn.load(str(corpus["files"]["good"]))
    monkeypatch.setenv("EDGECNN_MAX_PROBE_ELEMENTS", "784")
    assert edgecnn.load(str(corpus["files"]["good"])).name == "tiny"
    monkeypatch.setenv("EDGECNN_MAX_PROBE_ELEMENTS", "lots")
    with pytest.raises(LimitError, match="positive integer"):
        edgecnn.load(str(corpus["files"]["good"]))
