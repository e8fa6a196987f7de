"""A corpus of bad and hostile inputs, generated in a temporary folder, and the way each is run and judged.

Every case is run through the command line (in this process with file-descriptor capture, or as a real
subprocess for the cheap cases that fail before TensorFlow is imported, for payloads that would import a
module from the working directory, and for measuring memory), then judged on: the exit code, exactly one
line on stderr (``edgecnn: error: ...``) with the expected words, no traceback, every input file's sha256
unchanged (and still in place), nothing left in the output location that was not there before, and no
marker file written by a payload. ``tests/test_security_corpus.py`` runs it; ``benchmarks/security_corpus.py``
turns the outcomes into the figures of ``docs/security.md``.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# The issue's classes of faults, as the corpus names them.
CLASSES = {
    "checkpoint": "1 untrusted checkpoint on --resume",
    "gate": "2 latency gate on garbage figures",
    "crash": "3 faults that ended in a traceback (output I/O, model headers, shapes, labels, images, recipes, "
             "options, baselines)",
    "concurrency": "4 two runs on one OUTDIR",
    "memory": "5 memory exhaustion from small files",
    "files-left": "6 files left by failed runs",
    "values": "7 bad values accepted",
    "scan": "8 pre-load scan (function references, type specs, registered names)",
    "small": "9 small ones (Ctrl-C, usage errors, LiteRT chatter, blamed layer)",
}


@dataclass
class Case:
    """One hostile input and the command it goes through."""

    id: str
    cls: str
    argv: list[str]
    needle: str  # words the one stderr line must contain
    code: int = 2
    process: bool = False  # a real subprocess (else: main() in this process, fd-level capture)
    inputs: list[Path] = field(default_factory=list)
    out: Optional[Path] = None  # nothing may be left here that was not there before
    allowed_left: tuple[str, ...] = ()
    wrap: list[str] = field(default_factory=list)  # a command prefix, e.g. setpriv dropping root's DAC override
    max_rss_mb: Optional[float] = None  # subprocess peak memory bound
    needs: Optional[str] = None  # a capability this machine may lack ("mount", "no-dac")
    cwd: Optional[Path] = None


@dataclass
class Outcome:
    """What running one case showed (the figures of docs/security.md are sums of these)."""

    id: str
    cls: str
    code: int
    expected_code: int
    stderr: list[str]
    traceback: bool
    inputs_modified: list[str]
    files_left: list[str]
    code_executed: bool
    needle_found: bool
    seconds: float
    max_rss_mb: Optional[float] = None
    over_memory: bool = False

    @property
    def clean(self) -> bool:
        return (self.code == self.expected_code and len(self.stderr) == 1 and self.stderr[0].startswith("edgecnn: ")
                and self.needle_found and not self.traceback and not self.inputs_modified and not self.files_left
                and not self.code_executed and not self.over_memory)

    def as_dict(self) -> dict:
        return {**asdict(self), "clean": self.clean}


def sha256(path: Path) -> Optional[str]:
    if not path.exists():
        return None
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.is_symlink():
                h.update(str(p.relative_to(path)).encode() + p.read_bytes())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Optional[Path]) -> Optional[set[str]]:
    if folder is None or not os.path.lexists(folder):
        return None
    if not folder.is_dir():
        return {"<file>"}
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# Runs the command line and, at exit, writes the process's peak resident memory (KiB) to argv[1]: VmHWM of this
# process's own memory map (ru_maxrss would also count the forked image of the test process before exec).
_RSS_WRAPPER = (
    "import atexit, resource, sys\n"
    "path = sys.argv.pop(1)\n"
    "def peak():\n"
    "    try:\n"
    "        for line in open('/proc/self/status'):\n"
    "            if line.startswith('VmHWM:'):\n"
    "                return int(line.split()[1])\n"
    "    except OSError:\n"
    "        pass\n"
    "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "atexit.register(lambda: open(path, 'w').write(str(peak())))\n"
    "from edgecnn.cli import main\n"
    "main(sys.argv[1:])\n"
)


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_case(case: Case, *, capfd: Any, marker: Path) -> Outcome:
    """Run one case and judge it."""
    before = {p: sha256(p) for p in case.inputs}
    out_before = snapshot(case.out)
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    rss = None
    if case.process:
        rss_file = Path(str(marker) + ".rss")
        rss_file.unlink(missing_ok=True)
        command = ["-m", "edgecnn.cli"] if case.max_rss_mb is None else ["-c", _RSS_WRAPPER, str(rss_file)]
        done = subprocess.run([*case.wrap, sys.executable, *command, *case.argv], cwd=case.cwd or ROOT, env=env(),
                              capture_output=True, text=True, timeout=600)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
        if case.max_rss_mb is not None and rss_file.exists():
            rss = int(rss_file.read_text()) / 1024
            rss_file.unlink()
    else:
        from edgecnn.cli import main

        capfd.readouterr()
        cwd = os.getcwd()
        try:
            if case.cwd is not None:
                os.chdir(case.cwd)
            try:
                main(list(case.argv))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # noqa: BLE001 - a case that escapes main() is a failure, recorded
                import traceback

                code = -1
                print("Traceback (escaped main)\n" + "".join(traceback.format_exception(exc)), file=sys.stderr)
        finally:
            os.chdir(cwd)
        stdout, stderr = capfd.readouterr()
    seconds = time.perf_counter() - t0
    lines = [line for line in stderr.splitlines() if line.strip()]
    over_memory = rss is not None and case.max_rss_mb is not None and rss > case.max_rss_mb
    after = snapshot(case.out)
    if out_before is None:
        left = sorted(after or ())
    else:
        left = sorted((after or set()) - out_before)
    left = [p for p in left if p.split("/")[0] not in case.allowed_left]
    return Outcome(
        id=case.id, cls=case.cls, code=code, expected_code=case.code, stderr=lines,
        traceback="Traceback" in stderr or "Traceback" in stdout,
        inputs_modified=[str(p) for p in case.inputs if sha256(p) != before[p]],
        files_left=left, code_executed=marker.exists(),
        needle_found=bool(lines) and case.needle.lower() in lines[-1].lower(), seconds=round(seconds, 2),
        over_memory=over_memory,
        max_rss_mb=None if rss is None else round(rss, 1),
    )


# ------------------------------------------------------------------------------------------- generated files


def _tiny(tf_keras: Any, *, shape=(16, 16, 1), classes=5, name="tiny") -> Any:
    L = tf_keras.layers
    inp = tf_keras.Input(shape, name="image")
    x = L.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, activation="softmax", name="head")(x)
    model = tf_keras.Model(inp, out, name=name)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _edit_h5(src: Path, dst: Path, **attrs: Any) -> Path:
    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for key, value in attrs.items():
            del f.attrs[key]
            f.attrs[key] = value
    return dst


def _edit_h5_config(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    import h5py

    with h5py.File(src, "r") as f:
        config = json.loads(f.attrs["model_config"])
    edit(config)
    return _edit_h5(src, dst, model_config=json.dumps(config).encode())


def _keras_zip(src: Path, dst: Path, replace: dict[str, Any]) -> Path:
    """Copy a .keras archive, replacing members (bytes, or a callable writing into an open member)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename in replace:
                continue
            zout.writestr(item, zin.read(item.filename))
        for name, content in replace.items():
            if callable(content):
                with zout.open(name, "w", force_zip64=True) as member:
                    content(member)
            else:
                zout.writestr(name, content)
    return dst


def _layers(config: dict) -> list:
    return config["config"]["layers"]


def build_files(tmp: Path, tf_keras: Any, keras3: Any) -> dict[str, Path]:
    """Every hostile file the corpus uses, generated here (nothing is shipped as a binary)."""
    from PIL import Image

    f: dict[str, Path] = {}
    tmp.mkdir(parents=True, exist_ok=True)
    marker = tmp / "pwned"
    f["marker"] = marker
    good = tmp / "good.h5"
    _tiny(tf_keras).save(good, save_format="h5")
    f["good"] = good
    k3 = keras3.Sequential([keras3.Input((16, 16, 1)), keras3.layers.Conv2D(4, 3), keras3.layers.GlobalAveragePooling2D(),
                            keras3.layers.Dense(5, activation="softmax")])
    k3.save(tmp / "good.keras")
    f["good_keras"] = tmp / "good.keras"
    # a module that writes the marker if anything ever imports it (it sits in the subprocess's working folder)
    (tmp / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef run(x):\n    return x\n")
    # model headers
    f["config_not_json"] = _edit_h5(good, tmp / "config_not_json.h5", model_config=b"{'class_name': nope")
    f["config_list"] = _edit_h5(good, tmp / "config_list.h5", model_config=b"[1, 2, 3]")
    f["config_int"] = _edit_h5(good, tmp / "config_int.h5", model_config=np.int64(7))
    f["config_deep"] = _edit_h5(good, tmp / "config_deep.h5", model_config=b"[" * 200000 + b"]" * 200000)
    f["keras_not_json"] = _keras_zip(f["good_keras"], tmp / "keras_not_json.keras", {"config.json": b"\x00\x01{"})
    f["keras_string"] = _keras_zip(f["good_keras"], tmp / "keras_string.keras", {"config.json": b'"a model"'})
    f["keras_deep_meta"] = _keras_zip(f["good_keras"], tmp / "keras_deep_meta.keras",
                                      {"metadata.json": b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"})

    def gigabyte(member: Any) -> None:
        chunk = b" " * (1 << 20)
        member.write(b'{"class_name": "Sequential", "config": {"pad": "')
        for _ in range(1024):
            member.write(chunk)
        member.write(b'"}}')

    f["keras_1gib"] = _keras_zip(f["good_keras"], tmp / "keras_1gib.keras", {"config.json": gigabyte})
    # shapes
    fcn = tf_keras.Sequential([tf_keras.Input((None, None, 1)), tf_keras.layers.Conv2D(4, 3),
                               tf_keras.layers.GlobalAveragePooling2D(), tf_keras.layers.Dense(5, activation="softmax")])
    fcn.save(tmp / "fcn.h5", save_format="h5")
    f["fcn"] = tmp / "fcn.h5"
    nan = _tiny(tf_keras, name="nan_weights")  # loads, converts, and cannot validate: its outputs are NaN
    nan.set_weights([np.full(w.shape, np.nan, "float32") for w in nan.get_weights()])
    nan.save(tmp / "nan_weights.h5", save_format="h5")
    f["nan_weights"] = tmp / "nan_weights.h5"
    huge = tf_keras.Sequential([tf_keras.Input((60000, 60000, 1)), tf_keras.layers.Conv2D(2, 3),
                                tf_keras.layers.GlobalAveragePooling2D(), tf_keras.layers.Dense(2)])
    huge.save(tmp / "huge_input.h5", save_format="h5")
    f["huge_input"] = tmp / "huge_input.h5"
    # scan: references to code outside Keras, edited by hand into an otherwise good file
    head = lambda c: _layers(c)[-1]["config"]  # noqa: E731

    def function_ref(c: dict) -> None:
        head(c)["activation"] = {"module": "evilmod", "class_name": "function", "config": "run",
                                 "registered_name": "function"}

    def os_system(c: dict) -> None:
        head(c)["activation"] = {"module": "os", "class_name": "function", "config": "system",
                                 "registered_name": "function"}

    def typespec(c: dict) -> None:
        head(c)["kernel_initializer"] = {"class_name": "__typespec__", "spec_name": "Run", "module": "evilmod",
                                         "config": [], "registered_name": None}

    def registered(c: dict) -> None:
        _layers(c)[1]["registered_name"] = "evilmod>Conv2D"

    def foreign_functional(c: dict) -> None:
        c["module"] = "evilmod"

    def edited(c: dict) -> None:
        layer = _layers(c)[2]
        layer["class_name"] = "Run"
        layer["config"] = {"units": 1}  # the red team's edit took the name out of the config

    for name, edit in (("function_ref", function_ref), ("os_system", os_system), ("typespec", typespec),
                       ("registered", registered), ("foreign_functional", foreign_functional), ("edited", edited)):
        f[name] = _edit_h5_config(good, tmp / f"{name}.h5", edit)
    # a legacy .h5 whose Lambda bytecode writes the marker if it ever runs
    target = str(marker)
    evil = tf_keras.Sequential([tf_keras.Input((16, 16, 1)),
                                tf_keras.layers.Lambda(lambda t: (open(target, "w").close(), t)[1], name="evil")])
    evil.save(tmp / "lambda.h5", save_format="h5")
    f["lambda"] = tmp / "lambda.h5"
    marker.unlink(missing_ok=True)
    # data
    rng = np.random.default_rng(0)
    x = rng.random((40, 16, 16, 1), dtype=np.float32)
    y = np.arange(40) % 5
    np.savez(tmp / "labels_huge.npz", x=x, y=np.where(y == 4, 10**12, y))
    f["labels_huge"] = tmp / "labels_huge.npz"
    np.savez(tmp / "labels_out_of_range.npz", x=x, y=np.where(y == 4, 7, y))
    f["labels_out_of_range"] = tmp / "labels_out_of_range.npz"
    for name, side in (("bomb", 9000), ("bomb2x", 12000)):  # 81 Mpx (over the 64 Mpx cap), 144 Mpx (over Pillow's 2x)
        folder = tmp / name
        for cls in ("a", "b"):
            (folder / cls).mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8)).save(folder / cls / "small.png")
        Image.new("1", (side, side)).save(folder / "a" / "big.png")
        f[name] = folder
    # recipes
    recipes = {
        "recipe_wrong_type": "[finetune]\nepochs = 'many'\n",
        "recipe_zero_runs": "[bench]\nruns = 0\n",
        "recipe_ratios": "[prune]\nratios = [1.5, -0.5]\n",
        "recipe_kinds": "[rewrite]\nkinds = ['evil']\n",
        "recipe_nested": "x = " + "[" * 3000 + "]" * 3000 + "\n",
        "recipe_nan": "max_accuracy_drop = nan\n",
    }
    for name, text in recipes.items():
        (tmp / f"{name}.toml").write_text(text)
        f[name] = tmp / f"{name}.toml"
    (tmp / "recipe_binary.toml").write_bytes(rng.bytes(2048))
    f["recipe_binary"] = tmp / "recipe_binary.toml"
    (tmp / "labels_binary.txt").write_bytes(b"\xff\xfe\x00" + rng.bytes(64))
    f["labels_binary"] = tmp / "labels_binary.txt"
    # baselines
    row = {"model": "m", "runtime": "litert", "threads": 1, "status": "ok", "median_ms": 1.0, "ratio_to_reference": 1.0}
    baselines = {
        "base_nan": {"ratio_to_reference": float("nan")},
        "base_inf": {"ratio_to_reference": float("inf")},
        "base_negative": {"ratio_to_reference": -1.0},
        "base_zero": {"median_ms": 0.0},
        "base_string": {"ratio_to_reference": "fast"},
        "base_threads": {"threads": "one"},
        "base_status": {"status": 5},
    }
    for name, change in baselines.items():
        (tmp / f"{name}.json").write_text(json.dumps({"settings": {"reference": "edgecnn-reference"},
                                                      "results": [{**row, **change}]}))
        f[name] = tmp / f"{name}.json"
    (tmp / "a_file").write_text("not a folder")
    f["a_file"] = tmp / "a_file"
    (tmp / "a_folder.json").mkdir()
    f["a_folder"] = tmp / "a_folder.json"
    return f


# ------------------------------------------------------------------------------------------- the cases


def crafted_checkpoints(tmp: Path, good: Path) -> dict[str, tuple[Path, Path, list[Path]]]:
    """Default OUTDIRs next to copies of the model, each with a crafted ``.edgecnn/`` a repository could ship.

    Returns {case: (model, outdir, victim files)}. The key is computed as anyone can: sha256 of the model,
    the recipe's hash, the data, the seed and the version.
    """
    import edgecnn
    from edgecnn.pipeline.context import Checkpoint, file_sha256
    from edgecnn.pipeline.recipe import load_recipe, recipe_hash

    victim = tmp / "victim"
    victim.mkdir(exist_ok=True)
    secret = victim / "secret.txt"
    secret.write_text("the user's secret\n")
    stages = ["analyze", "plan", "rewrite", "prune", "finetune", "quantize", "validate", "benchmark"]
    out: dict[str, tuple[Path, Path, list[Path]]] = {}

    def art(path: Path, sha: str) -> dict:
        return {"path": str(path), "format": "tflite", "quantization": "int8", "size_bytes": 1, "sha256": sha,
                "io": "float", "validation": {}}

    for name in ("ck_no_record", "ck_outside", "ck_artifact_outside", "ck_symlink", "ck_dir_symlink", "ck_changed",
                 "ck_model"):
        model = tmp / f"{name}.h5"
        shutil.copy(good, model)
        outdir = tmp / f"{name}_edgecnn"
        key = "-".join([file_sha256(model)[:16], recipe_hash(load_recipe("mobile")), "None", "0", edgecnn.__version__])
        ck_dir = outdir / ".edgecnn"
        ck_dir.mkdir(parents=True)
        state: dict = {"key": key, "finished": stages, "attempt": 0,
                       "ctx": {"stages": [], "state": {"export": {"artifacts": [art(secret, sha256(secret))]}}}}
        if name == "ck_outside":
            state["files"] = {"../../victim/secret.txt": sha256(secret)}
        elif name == "ck_artifact_outside":
            state["files"], state["root"] = {}, str(ck_dir)
        elif name == "ck_symlink":
            (ck_dir / "staging").mkdir()
            os.symlink(secret, ck_dir / "staging" / "secret.txt")
            state["files"], state["root"] = {"staging/secret.txt": sha256(secret)}, str(ck_dir)
            state["ctx"]["state"]["export"]["artifacts"] = [art(ck_dir / "staging" / "secret.txt", sha256(secret))]
        elif name == "ck_dir_symlink":
            shutil.rmtree(ck_dir)
            target = tmp / "victim_folder"
            target.mkdir()
            (target / "keep.txt").write_text("keep me\n")
            os.symlink(target, ck_dir)
            out[name] = (model, outdir, [secret, target / "keep.txt"])
            continue
        elif name in ("ck_changed", "ck_model"):
            ck = Checkpoint(outdir, key=key)
            staged = ck_dir / "staging" / "ck_int8.tflite"
            staged.parent.mkdir()
            staged.write_bytes(b"TFL3 staged artifact")
            ck.save({"finished": stages, "attempt": 0,
                     "ctx": {"stages": [], "state": {"export": {"artifacts": [art(staged, sha256(staged))]}}}},
                    model=None)
            if name == "ck_changed":
                staged.write_bytes(b"TFL3 swapped after it was recorded")
            else:
                saved = json.loads((ck_dir / "state.json").read_text())
                saved["model"] = "../../victim/secret.txt"
                (ck_dir / "state.json").write_text(json.dumps(saved))
            out[name] = (model, outdir, [secret])
            continue
        (ck_dir / "state.json").write_text(json.dumps(state))
        out[name] = (model, outdir, [secret])
    return out


def build_cases(tmp: Path, f: dict[str, Path], *, can_mount: bool, no_dac: Optional[list[str]]) -> list[Case]:
    """The corpus: one Case per hostile input and command."""
    cases: list[Case] = []
    good = f["good"]

    def add(id: str, cls: str, argv: list[str], needle: str, **kw: Any) -> None:
        kw.setdefault("inputs", [p for p in map(Path, argv) if p.is_absolute() and p.exists()])
        kw.setdefault("cwd", tmp)
        cases.append(Case(id, cls, argv, needle, **kw))

    # 1. the checkpoint is untrusted
    for name, (model, outdir, victims) in crafted_checkpoints(tmp, good).items():
        needle = {"ck_no_record": "no valid record", "ck_outside": "outside", "ck_artifact_outside": "outside",
                  "ck_symlink": "symbolic link", "ck_dir_symlink": "symbolic link", "ck_changed": "changed since",
                  "ck_model": "did not record"}[name]
        add(name, "checkpoint", ["compress", str(model), "--resume", "--quiet"], needle,
            inputs=[model, *victims, *([outdir / ".edgecnn"] if name != "ck_dir_symlink" else [])], out=outdir)
    lock_out = tmp / "lock_link_out"  # an OUTDIR shipped with its lock file linked to a file of the user's
    lock_out.mkdir()
    (tmp / "victim_lock_target.txt").write_text("do not truncate me\n")
    os.symlink(tmp / "victim_lock_target.txt", lock_out / ".edgecnn.lock")
    add("lock_file_symlink", "checkpoint", ["compress", str(good), "-o", str(lock_out), "--quiet"], "symbolic link",
        inputs=[good, tmp / "victim_lock_target.txt"], out=lock_out)
    # 2. the gate fails closed
    for name in ("base_nan", "base_inf", "base_negative", "base_zero", "base_string", "base_threads", "base_status"):
        add(name, "gate", ["bench", "m=/nonexistent/m.tflite", "--baseline", str(f[name])], "malformed baseline",
            process=True)
    add("max_regression_nan", "gate", ["bench", "m=/nonexistent/m.tflite", "--max-regression", "nan"],
        "--max-regression", process=True)
    # 3. faults that crashed: output I/O
    add("export_parent_is_file", "crash", ["export", str(good), "-o", str(f["a_file"] / "out")], "is a file",
        process=True, out=f["a_file"])
    add("compress_parent_is_file", "crash", ["compress", str(good), "-o", str(f["a_file"] / "out"), "--quiet"],
        "a part of the path is a file", process=True, out=f["a_file"])
    add("bench_json_is_folder", "crash", ["bench", str(good), "--json", str(f["a_folder"])], "it is a folder",
        process=True, out=f["a_folder"])
    add("bench_junit_missing_folder", "crash", ["bench", str(good), "--junit", str(tmp / "missing" / "gate.xml")],
        "folder does not exist", process=True, out=tmp / "missing")
    if can_mount:
        add("export_read_only_fs", "crash", ["export", str(good), "-o", str(tmp / "ro" / "out")], "read-only",
            process=True, out=tmp / "ro", needs="mount")
        add("compress_read_only_fs", "crash", ["compress", str(good), "-o", str(tmp / "ro" / "out"), "--quiet"],
            "read-only", process=True, out=tmp / "ro", needs="mount")
        add("export_disk_full", "crash", ["export", str(good), "-o", str(tmp / "full" / "out")], "no space",
            out=tmp / "full", needs="mount")
    if no_dac is not None:
        locked = tmp / "locked"
        add("compress_permission_denied", "crash", ["compress", str(good), "-o", str(locked / "out"), "--quiet"],
            "permission denied", process=True, out=locked, wrap=no_dac, needs="no-dac")
        add("export_permission_denied", "crash", ["export", str(good), "-o", str(locked / "out")],
            "permission denied", process=True, out=locked, wrap=no_dac, needs="no-dac")
    # 3. malformed model headers
    for name, needle in (("config_not_json", "not valid JSON"), ("config_list", "Expected a JSON object"),
                         ("config_int", "not text"), ("config_deep", "EDGECNN_MAX_CONFIG_DEPTH"),
                         ("keras_not_json", "not valid JSON"), ("keras_string", "Expected a JSON object"),
                         ("keras_deep_meta", "EDGECNN_MAX_CONFIG_DEPTH")):
        add(name, "crash", ["inspect", str(f[name])], needle)
    add("compress_config_deep", "crash", ["compress", str(f["config_deep"]), "-o", str(tmp / "o_deep"), "--quiet"],
        "EDGECNN_MAX_CONFIG_DEPTH", out=tmp / "o_deep")
    # 3. shapes, labels, images
    add("compress_input_shape_none", "crash", ["compress", str(f["fcn"]), "-o", str(tmp / "o_fcn"), "--quiet"],
        "--input-shape", out=tmp / "o_fcn")
    add("inspect_absurd_input", "crash", ["inspect", str(f["huge_input"])], "EDGECNN_MAX_PROBE_ELEMENTS")
    add("input_shape_flag_absurd", "crash", ["inspect", str(f["fcn"]), "--input-shape", "50000,50000,1"],
        "EDGECNN_MAX_PROBE_ELEMENTS")
    add("compress_labels_huge", "crash", ["compress", str(good), "-o", str(tmp / "o_labels"), "--data",
                                          str(f["labels_huge"]), "--quiet"], "EDGECNN_MAX_LABEL", out=tmp / "o_labels")
    add("export_image_bomb", "crash", ["export", str(good), "-o", str(tmp / "o_bomb"), "--data", str(f["bomb"])],
        "EDGECNN_MAX_IMAGE_PIXELS", out=tmp / "o_bomb", inputs=[good, f["bomb"]])
    add("export_image_bomb_2x", "crash", ["export", str(good), "-o", str(tmp / "o_bomb2"), "--data", str(f["bomb2x"])],
        "EDGECNN_MAX_IMAGE_PIXELS", out=tmp / "o_bomb2", inputs=[good, f["bomb2x"]])
    # 3. recipes, options, baselines of the wrong kind
    for name, needle in (("recipe_wrong_type", "Expected a int"), ("recipe_zero_runs", "bench.runs"),
                         ("recipe_binary", "binary"), ("recipe_nested", "nested too deeply"),
                         ("recipe_nan", "max_accuracy_drop")):
        add(name, "crash", ["compress", str(good), "-o", str(tmp / f"o_{name}"), "--recipe", str(f[name])], needle,
            process=True, out=tmp / f"o_{name}")
    add("calibration_samples_negative", "crash", ["export", str(good), "-o", str(tmp / "o_calib"),
                                                  "--calibration-samples", "-1"], "--calibration-samples",
        process=True, out=tmp / "o_calib")
    add("labels_file_binary", "crash", ["compress", str(good), "-o", str(tmp / "o_lbl"), "--labels",
                                        str(f["labels_binary"])], "not text", process=True, out=tmp / "o_lbl")
    # 5. memory from small files
    add("keras_config_1gib", "memory", ["inspect", str(f["keras_1gib"])], "EDGECNN_MAX_CONFIG_BYTES", process=True,
        max_rss_mb=1500)
    add("huge_input_memory", "memory", ["inspect", str(f["huge_input"])], "EDGECNN_MAX_PROBE_ELEMENTS", process=True,
        max_rss_mb=1500)
    # 6. failed runs leave nothing
    add("export_labels_out_of_range", "values", ["export", str(good), "-o", str(tmp / "o_range"), "--data",
                                                 str(f["labels_out_of_range"])], "do not fit the model output",
        out=tmp / "o_range")
    add("compress_labels_out_of_range", "files-left", ["compress", str(good), "-o", str(tmp / "o_range2"), "--data",
                                                       str(f["labels_out_of_range"]), "--quiet"],
        "do not fit the model output", out=tmp / "o_range2")
    add("export_validation_fails", "files-left", ["export", str(f["nan_weights"]), "-o", str(tmp / "o_nan")],
        "not finite", out=tmp / "o_nan")
    add("export_max_drop_without_int8", "files-left", ["export", str(good), "-o", str(tmp / "o_drop"),
                                                       "--max-accuracy-drop", "1"], "--quantize int8",
        out=tmp / "o_drop")
    # 7. bad values
    add("compress_epochs_negative", "values", ["compress", str(good), "-o", str(tmp / "o_ep"), "--epochs", "-5"],
        "--epochs", process=True, out=tmp / "o_ep")
    add("recipe_ratios_out_of_range", "values", ["compress", str(good), "-o", str(tmp / "o_ratios"), "--recipe",
                                                 str(f["recipe_ratios"])], "prune.ratios", process=True,
        out=tmp / "o_ratios")
    add("recipe_unknown_kind", "values", ["compress", str(good), "-o", str(tmp / "o_kinds"), "--recipe",
                                          str(f["recipe_kinds"])], "rewrite.kinds", process=True, out=tmp / "o_kinds")
    add("bench_runs_zero", "values", ["bench", str(good), "--runs", "0"], "--runs", process=True)
    add("prune_sparsity_nan", "values", ["prune", str(good), "-o", str(tmp / "o_p.keras"), "--sparsity", "nan"],
        "sparsity out of range", process=True, out=tmp / "o_p.keras")
    # 8. the scan refuses code named outside Keras (run where evilmod.py could be imported)
    for name, needle in (("function_ref", "function 'evilmod.run'"), ("os_system", "function 'os.system'"),
                         ("typespec", "type spec 'evilmod.Run'"), ("registered", "registered as 'evilmod>Conv2D'"),
                         ("foreign_functional", "evilmod.Functional"), ("lambda", "Lambda")):
        add(f"scan_{name}", "scan", ["inspect", str(f[name])], needle, process=name in ("function_ref", "typespec"))
    add("compress_lambda", "scan", ["compress", str(f["lambda"]), "-o", str(tmp / "o_lambda"), "--quiet"], "Lambda",
        out=tmp / "o_lambda")
    # 9. small ones
    add("usage_error", "small", ["inspect"], "Missing argument", process=True)
    add("usage_unknown_option", "small", ["compress", str(good), "--epoch", "3"], "No such option", process=True)
    add("edited_layer_named", "small", ["inspect", str(f["edited"])], "layer 'gap'")
    add("bench_corrupt_after_good", "small", ["bench", str(good), str(tmp / "corrupt.tflite"), "--runtime",
                                              "litert", "--runs", "3", "--quiet"], "load failed")
    (tmp / "corrupt.tflite").write_bytes(b"TFL3" + np.random.default_rng(1).bytes(3000))
    return cases
