"""The one object every compress stage reads and writes, and its checkpoints in OUTDIR.

After each finished stage the context's JSON state and the current working model are written under
``OUTDIR/.edgecnn/`` (temporary name, then rename). ``--resume`` reloads them and continues with the next
stage; the checkpoint is keyed on the input file's hash, the recipe's hash, the data spec, the seed and
the edgecnn version, so a run with anything different starts afresh instead of reusing stale results.

The key is computable by anyone, so a checkpoint is untrusted input: ``state.json`` records the sha256 of
every file edgecnn wrote under ``.edgecnn/``, and :meth:`Checkpoint.load` accepts a state only when every
file it names lies inside ``.edgecnn/`` (no link on the way) and still has its recorded hash; anything
else is a :class:`~edgecnn.errors.CheckpointError` (exit 2), and no file is moved, read or deleted.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> ck = Checkpoint(out, key="abc")
    >>> ck.save({"finished": ["analyze"], "attempt": 0, "ctx": {"state": {"x": 1}}}, model=None)
    >>> Checkpoint(out, key="abc").load()["finished"], Checkpoint(out, key="other").load()
    (['analyze'], None)
    >>> import json
    >>> state = json.loads((out / ".edgecnn" / "state.json").read_text())
    >>> state["files"]["../../etc/passwd"] = "0" * 64  # a crafted checkpoint naming a file outside
    >>> _ = (out / ".edgecnn" / "state.json").write_text(json.dumps(state))
    >>> Checkpoint(out, key="abc").load()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgecnn.errors.CheckpointError: checkpoint .../state.json names a file outside it ('../../etc/passwd'): ...
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgecnn.errors import CheckpointError
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
    cache: dict = field(default_factory=dict)  # live objects of this process (base artifacts), never checkpointed

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

    @property
    def candidates(self) -> list:
        """The plan's candidates (:class:`edgecnn.pipeline.planner.Candidate`), read from the state."""
        from dataclasses import fields

        from edgecnn.pipeline.candidates import Candidate

        known = {f.name for f in fields(Candidate)}  # a checkpoint from an older layout may carry other keys
        return [Candidate(**{k: v for k, v in c.items() if k in known})
                for c in self.state.get("plan", {}).get("candidates", [])]

    @candidates.setter
    def candidates(self, cands: list) -> None:
        self.state.setdefault("plan", {})["candidates"] = [c.as_dict() for c in cands]

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
    """``OUTDIR/.edgecnn/state.json`` + the last structural stage's model, valid only for one key.

    ``state.json`` holds the key, the payload, the current model's file name and ``files``: the sha256 of
    every file under ``.edgecnn/`` when the state was written.
    """

    STATE = "state.json"

    def __init__(self, outdir: Path, *, key: str) -> None:
        self.dir = Path(outdir) / CHECKPOINT_DIR
        self.key = key
        self.model_file: Optional[str] = None  # relative to self.dir

    @property
    def model_path(self) -> Optional[Path]:
        """The model saved by the last structural stage, or None."""
        return None if self.model_file is None else self.dir / self.model_file

    def load(self) -> Optional[dict]:
        """The saved state for this key after checking every file it names, or None (no checkpoint, another
        key, or a state that is not JSON).

        Raises:
            CheckpointError: ``.edgecnn`` or ``state.json`` is a link, or the state names a file outside
                ``.edgecnn/``, a link, a missing file or one whose content changed since it was recorded.
        """
        state = self.dir / self.STATE
        if not os.path.lexists(self.dir):
            return None
        self._refuse_link(self.dir, "folder")
        if not os.path.lexists(state):
            return None
        self._refuse_link(state, "file")
        from edgecnn.limits import check_text_size, parse_json
        from edgecnn.errors import EdgecnnError

        try:
            with open(state, "rb") as f:
                data = f.read(64 * 2**20 + 1)
            check_text_size(data, where=str(state))
            saved = parse_json(data, where=str(state))
        except (OSError, EdgecnnError):
            return None
        if not isinstance(saved, dict) or saved.get("key") != self.key:
            return None
        self._verify(saved)
        self.model_file = saved.get("model")
        return saved

    def save(self, payload: dict, *, model: Any) -> None:
        """Write the model (if any, under a new name) then the state, each atomically; the state names the key,
        the model and the sha256 of every file under ``.edgecnn/``. Earlier models are deleted afterwards, so
        a process killed at any point leaves a state whose files are all there."""
        if os.path.islink(self.dir):
            raise CheckpointError(f"{self.dir} is a symbolic link: Expected a folder edgecnn made. Received: a link "
                                  f"to {os.readlink(self.dir)}; remove it")
        self.dir.mkdir(exist_ok=True)
        if model is not None:
            from edgecnn.io import save

            name = f"model-{secrets.token_hex(6)}.h5"
            save(model, self.dir / name)
            self.model_file = name
        files = self._record()
        write_atomic(self.dir / self.STATE, json.dumps(
            {"key": self.key, **payload, "model": self.model_file, "root": os.path.abspath(self.dir),
             "files": files}, indent=1).encode())
        for old in self.dir.glob("model-*.h5"):
            if old.name != self.model_file and not old.is_symlink():
                old.unlink()

    def clear(self) -> None:
        """Remove ``.edgecnn/`` (a link there is removed itself; nothing it points to is touched)."""
        if os.path.islink(self.dir):
            os.unlink(self.dir)
        elif self.dir.is_dir():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.model_file = None

    # ---- integrity ------------------------------------------------------------------------------------------

    def _record(self) -> dict[str, str]:
        files = {}
        for folder, dirs, names in os.walk(self.dir):  # never follows links
            for name in names:
                path = Path(folder) / name
                rel = path.relative_to(self.dir).as_posix()
                if rel == self.STATE or name.startswith(".") or not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                if name.startswith("model-") and name != self.model_file and folder == str(self.dir):
                    continue
                files[rel] = file_sha256(path)
        return dict(sorted(files.items()))

    def _refuse_link(self, path: Path, kind: str) -> None:
        if os.path.islink(path):
            raise CheckpointError(f"checkpoint {path} is a symbolic link: Expected the {kind} edgecnn wrote. "
                                  f"Received: a link to {os.readlink(path)}; delete {self.dir} to start afresh")

    def _bad(self, what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {self.dir / self.STATE} {what}: Expected only files edgecnn wrote in "
                               f"{self.dir} with the sha256 it recorded. Received: a checkpoint edgecnn cannot "
                               f"trust; nothing was moved; delete {self.dir} (or run without --resume) to start "
                               "afresh")

    def _verify(self, saved: dict) -> None:
        files = saved.get("files")
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise self._bad("has no valid record of its files")
        real = os.path.realpath(self.dir)
        for rel, sha in files.items():
            parts = rel.split("/")
            if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
                raise self._bad(f"names a file outside it ({rel!r})")
            path = self.dir.joinpath(*parts)
            if os.path.realpath(path) != os.path.join(real, *parts):
                raise self._bad(f"names {rel!r}, which goes through a symbolic link")
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                raise self._bad(f"names {rel!r}, which is missing") from None
            if not stat.S_ISREG(mode):
                raise self._bad(f"names {rel!r}, which is not a regular file")
            if file_sha256(path) != sha:
                raise self._bad(f"names {rel!r}, whose content changed since it was recorded")
        for folder, dirs, names in os.walk(self.dir):
            for name in dirs + names:
                if os.path.islink(Path(folder) / name):
                    raise self._bad(f"folder holds a symbolic link ({name})")
        model = saved.get("model")
        if model is not None and (not isinstance(model, str) or model not in files or "/" in model):
            raise self._bad(f"names a model file it did not record ({model!r})")
        self._verify_payload(saved, files)

    def _verify_payload(self, saved: dict, files: dict[str, str]) -> None:
        from edgecnn.pipeline import planner

        finished, attempt, ctx = saved.get("finished"), saved.get("attempt", 0), saved.get("ctx")
        if not isinstance(finished, list) or not all(isinstance(f, str) for f in finished):
            raise self._bad("has no valid list of finished stages")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise self._bad(f"has an invalid attempt number ({attempt!r})")
        if not isinstance(ctx, dict) or not isinstance(ctx.get("state", {}), dict):
            raise self._bad("has no valid run state")
        try:
            for s in ctx.get("stages", []):
                StageRecord(**s)
            for c in (ctx.get("state", {}).get("plan") or {}).get("candidates", []):
                planner.Candidate(**c)
        except (TypeError, ValueError, AttributeError):
            raise self._bad("has a malformed stage or plan record") from None
        root = saved.get("root")
        arts = (ctx["state"].get("export") or {}).get("artifacts", [])
        if not isinstance(arts, list):
            raise self._bad("has a malformed artifact list")
        for a in arts:
            path = a.get("path") if isinstance(a, dict) else None
            if not isinstance(path, str) or not isinstance(root, str):
                raise self._bad("has a malformed artifact record")
            rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
            if rel.startswith("..") or os.path.isabs(rel) or Path(rel).as_posix() not in files:
                raise self._bad(f"names an artifact outside it, or one it did not record ({path})")
            if a.get("sha256") != files[Path(rel).as_posix()]:
                raise self._bad(f"names an artifact whose sha256 does not match its record ({path})")
            a["path"] = str(self.dir / rel)  # the file as it is here, never the path the state spelled out
        if "quantize" in finished:
            staged = {f"staging/{p.name}" for p in (self.dir / "staging").glob("*")} if (self.dir / "staging").is_dir() \
                else set()
            unrecorded = sorted(p for p in staged if p not in files and not Path(p).name.startswith("."))
            if unrecorded:
                raise self._bad(f"folder holds files it did not record ({', '.join(unrecorded)[:100]})")
