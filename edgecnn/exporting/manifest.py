"""What an export leaves in OUTDIR besides the artifacts: ``export.json``, ``labels.txt``, ``MODEL_CARD.md``.

Artifacts are written first, then the manifest and the bundle; when any write fails (a full disk), every file
this call created is removed, so no artifact is left without its export.json. ``export.json`` merges earlier
runs' artifacts by path; its paths are relative to OUTDIR and must name files that exist there.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from edgecnn.files import write_atomic


def write_all(outdir: Path, pending: list[tuple[Path, bytes]], then: Callable[[], Any]) -> None:
    """Write the artifacts, then export.json and the bundle; if any write fails (a full disk), remove the
    files this call created, so no artifact is left without its export.json."""
    names = ("export.json", "labels.txt", "MODEL_CARD.md")
    new = [p for p, _ in pending if not p.exists()] + [outdir / n for n in names if not (outdir / n).exists()]
    try:
        for path, data in pending:
            write_atomic(path, data)
        then()
    except BaseException:
        for path in new:
            path.unlink(missing_ok=True)
        raise


def write_bundle(outdir: Path, report: Any, *, stem: str, shape: tuple, mean: list, std: list,
                 labels: list[str] | None, source: str, command: str) -> None:
    """labels.txt (when labels are known) and MODEL_CARD.md over every artifact listed in export.json."""
    from edgecnn.exporting.bundle import write_labels, write_model_card

    if labels:
        write_labels(outdir, labels)
    artifacts = [{**a, "path": Path(a["path"]).name} for a in report.as_dict()["artifacts"]]
    accuracies = [a["validation"].get("reference_accuracy") for a in artifacts]
    accuracy = next((a for a in accuracies if a is not None), None)
    write_model_card(outdir, name=stem, artifacts=artifacts, input_shape=shape, input_mean=mean, input_std=std,
                     labels=labels, accuracy=accuracy, source=source, command=command or "edgecnn.export(...)")


def write_manifest(outdir: Path, report: Any) -> None:
    """Merge this run's artifacts into OUTDIR/export.json (by path), atomically."""
    path = outdir / "export.json"
    previous: list[dict] = []
    if path.is_file():
        try:
            previous = json.loads(path.read_text()).get("artifacts", [])
        except (ValueError, AttributeError):
            previous = []
    from edgecnn.files import strict_json

    mine = [{**a, "path": Path(a["path"]).name} for a in report.as_dict()["artifacts"]]  # relative to OUTDIR
    current = {a["path"] for a in mine}
    merged = [a for a in previous if isinstance(a, dict) and isinstance(a.get("path"), str)
              and a["path"] not in current and "/" not in a["path"] and a["path"] not in ("", ".", "..")
              and (outdir / a["path"]).is_file()]
    doc = report.as_dict()
    doc["outdir"] = "."
    doc["artifacts"] = merged + mine
    write_atomic(path, strict_json(doc) + "\n")



def write_outputs(outdir: Path, pending: list[tuple[Path, bytes]], report: Any, *, meta: Any, shape: tuple,
                  source: str, command: str) -> None:
    """The artifacts ``pending``, then export.json, labels.txt and MODEL_CARD.md (all or none)."""
    write_all(outdir, pending, lambda: (write_manifest(outdir, report), write_bundle(
        outdir, report, stem=meta.name, shape=shape, mean=meta.mean, std=meta.std, labels=meta.labels,
        source=source, command=command)))
