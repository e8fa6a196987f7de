"""Run the hostile-input corpus (tests/test_security_corpus.py) and write its figures into docs/security.md.

    python benchmarks/security_corpus.py            # about a minute on 2 cores

The figures are measured, never typed: this script runs pytest on the corpus with EDGECNN_CORPUS_REPORT set,
reads every case's outcome, and replaces the part of docs/security.md between the ``corpus:begin`` and
``corpus:end`` markers. Run it as root to include the read-only, full-disk and permission cases (they mount a
small tmpfs, or drop root's permission override with setpriv); elsewhere they are left out and the table
says how many cases ran.
"""
from __future__ import annotations

import collections
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
BEGIN, END = "<!-- corpus:begin -->", "<!-- corpus:end -->"


def run_corpus() -> tuple[list[dict], int]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "corpus.json"
        env = {**os.environ, "EDGECNN_CORPUS_REPORT": str(report), "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "tests/test_security_corpus.py"], cwd=ROOT, env=env)
        return json.loads(report.read_text()), done.returncode


def render(rows: list[dict], pytest_code: int) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import CLASSES

    total = len(rows)
    figures = {
        "cases": total,
        "clean exits (documented code, one stderr line with the reason)": sum(r["clean"] for r in rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "inputs modified": sum(bool(r["inputs_modified"]) for r in rows),
        "code executed (payload marker written)": sum(r["code_executed"] for r in rows),
        "files left in the output location": sum(bool(r["files_left"]) for r in rows),
        "exit 1 (the code that means 'budget not met' / 'regression')": sum(r["code"] == 1 for r in rows),
    }
    lines = [BEGIN, "",
             f"Measured {datetime.date.today().isoformat()} on {platform.machine()} Linux, Python "
             f"{platform.python_version()}, as {'root' if os.geteuid() == 0 else 'a normal user'} "
             f"(`python benchmarks/security_corpus.py`; pytest exit code {pytest_code}).", "",
             "| figure | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in figures.items()]
    by_class = collections.defaultdict(list)
    for r in rows:
        by_class[r["cls"]].append(r)
    lines += ["", "| class | cases | clean | exit codes |", "|---|---|---|---|"]
    for cls, label in CLASSES.items():
        group = by_class.get(cls, [])
        codes = ", ".join(f"{c} x{n}" for c, n in sorted(collections.Counter(r["code"] for r in group).items()))
        lines.append(f"| {label} | {len(group)} | {sum(r['clean'] for r in group)} | {codes or '-'} |")
    lines += ["", "<details><summary>Every case: its exit code and the one line it printed</summary>", "",
              "| case | class | exit | seconds | stderr (cut at 140 characters) |", "|---|---|---|---|---|"]
    for r in rows:
        line = (r["stderr"][-1] if r["stderr"] else "").replace("|", "\\|")
        line = re.sub(r"/\S*?/pytest-\d+/corpus\d+", "$TMP", line)
        line = line if len(line) <= 140 else line[:137] + "..."
        mark = "" if r["clean"] else " **NOT CLEAN**"
        lines.append(f"| {r['id']}{mark} | {r['cls']} | {r['code']} | {r['seconds']} | `{line}` |")
    lines += ["", "</details>", "", END]
    return "\n".join(lines)


def main() -> int:
    rows, code = run_corpus()
    block = render(rows, code)
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + block + text[end:])
    clean = sum(r["clean"] for r in rows)
    print(f"{len(rows)} cases, {clean} clean; wrote {DOC.relative_to(ROOT)}")
    return 0 if clean == len(rows) and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
