"""The one object every compress stage reads and writes, and its checkpoints in OUTDIR.

After each finished stage the context's JSON state and the current working model are written under
``OUTDIR/.edgecnn/`` (temporary name, then rename). ``--resume`` reloads them and continues with the next
stage; the checkpoint is keyed on the input file's hash, the recipe's hash, the data spec, the seed and
the edgecnn version, so a run with anything different starts afresh instead of reusing stale results.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> ck = Checkpoint(out, key="abc")
    >>> ck.save({"finished": ["analyze"], "state": {"x": 1}}, model=None)
    >>> Checkpoint(out, key="abc").load()["finished"], Checkpoint(out, key="other").load()
    (['analyze'], None)
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgecnn.files import write_atomic
from edgecnn.pipeline.recipe import Target

CHECKPOINT_DIR = ".edgecnn"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file or of every file under a folder (SavedModel), in path order."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class StageRecord:
    """What one stage did: name, seconds, status (done, skipped, failed), the changes it made, details."""

    name: str
    seconds: float = 0.0
    status: str = "done"
    changes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    attempt: int = 0


@dataclass
class Context:
    """State of one compress run. Live objects (models, data) are rebuilt on resume; ``state`` is JSON."""

    source: str
    name: str
    outdir: Path
    recipe: dict
    target: Target
    data_spec: Optional[str]
    key: str
    quiet: bool = False
    original: Any = None
    model: Any = None
    heldout: Any = None  # edgecnn.data.HeldOut: built once, shared by every stage
    labels: Optional[list[str]] = None
    stages: list[StageRecord] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    current: str = ""
    progress: Callable[[str, int, int], None] = lambda text, done, total: None

    @property
    def train(self) -> Any:
        """The train split (fine-tuning, calibration, BatchNorm re-estimation), or None without data."""
        return None if self.heldout is None else self.heldout.train

    @property
    def test(self) -> Any:
        """The held-out test split (every accuracy), or None without data."""
        return None if self.heldout is None else self.heldout.test

    @property
    def labelled(self) -> bool:
        return self.test is not None and self.test.y is not None

    @property
    def seed(self) -> int:
        return int(self.recipe["seed"])

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def as_state(self) -> dict:
        from dataclasses import asdict

        return {"stages": [asdict(s) for s in self.stages], "state": self.state, "notes": self.notes}

    def restore(self, saved: dict) -> None:
        self.stages = [StageRecord(**s) for s in saved.get("stages", [])]
        self.state = dict(saved.get("state", {}))
        self.notes = list(saved.get("notes", []))


class Checkpoint:
    """``OUTDIR/.edgecnn/state.json`` + ``model.h5``, valid only for one key."""

    def __init__(self, outdir: Path, *, key: str) -> None:
        self.dir = Path(outdir) / CHECKPOINT_DIR
        self.key = key

    @property
    def model_path(self) -> Path:
        return self.dir / "model.h5"

    def load(self) -> Optional[dict]:
        """The saved state for this key, or None (no checkpoint, another key, or unreadable)."""
        try:
            saved = json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return saved if saved.get("key") == self.key else None

    def save(self, payload: dict, *, model: Any) -> None:
        """Write the model (if any) then the state, each atomically; the state names the key."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if model is not None:
            from edgecnn.io import save

            save(model, self.model_path)
        write_atomic(self.dir / "state.json", json.dumps({"key": self.key, **payload}, indent=1).encode())

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
