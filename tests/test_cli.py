"""The edgecnn command as a user runs it: exit codes, one-line errors, JSON, speed of --help."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def _subprocess(*args):
    return subprocess.run(
        [sys.executable, "-m", "edgecnn.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_version_and_help_do_not_import_tensorflow():
    code = (
        "import sys; from edgecnn.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "inspect" in result.stdout
    version = _subprocess("--version")
    assert version.returncode == 0 and version.stdout.strip() == "edgecnn 0.1.0"


def test_inspect_json_on_keras3_and_tf_keras_files(capsys, model_files):
    for name in ("k3.h5", "k3.keras", "tfk.h5", "tfk.keras"):
        code, out, err = _run(capsys, "inspect", str(model_files["dir"] / name), "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["total_params"] == model_files["k3"].count_params()
        assert report["input_shape"] == [16, 16, 3]
        assert report["source"]["max_rel_diff"] <= 1e-5
        names = [l["name"] for l in report["layers"]]
        assert names == ["stem", "bn", "conv_a", "add", "sep", "dw", "gap", "head"]
        assert "separable_macs" in report["layers"][0] and "separable_macs" not in report["layers"][4]


def test_inspect_table(capsys, model_files):
    code, out, _ = _run(capsys, "inspect", str(model_files["dir"] / "k3.keras"))
    assert code == 0
    assert "share by layer type" in out and "rewrite candidates" in out and "stem" in out


def test_input_shape_flag(capsys, keras3, tmp_path):
    fcn = keras3.Sequential([keras3.Input((None, None, 3)), keras3.layers.Conv2D(4, 3, padding="same")])
    fcn.save(tmp_path / "fcn.keras")
    code, out, err = _run(capsys, "inspect", str(tmp_path / "fcn.keras"), "--json", "--input-shape", "8,8,3")
    assert code == 0, err
    assert json.loads(out)["total_macs"] == 8 * 8 * 4 * 27
    code, _, err = _run(capsys, "inspect", str(tmp_path / "fcn.keras"))
    assert code == 2 and "--input-shape" in err and err.count("\n") == 1


@pytest.mark.parametrize("case", ["empty", "random h5", "truncated h5", "keras 3 weights only", "folder", "missing",
                                  "no image input"])
def test_bad_files_exit_2_with_one_line(capsys, bad_files, case):
    path = bad_files[case][0]
    code, out, err = _run(capsys, "inspect", str(path))
    assert code == 2
    assert err.startswith("edgecnn: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""


def test_hostile_file_in_a_real_process_prints_one_line(hostile):
    result = _subprocess("inspect", str(hostile["dir"] / "evil.h5"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Lambda" in lines[0] and "--trust-model" in lines[0], result.stderr
    assert not hostile["marker"].exists()


def test_debug_shows_the_traceback(capsys, bad_files):
    with pytest.raises(Exception) as info:
        main(["inspect", str(bad_files["empty"][0]), "--debug"])
    assert "empty" in str(info.value)


def test_usage_error_exits_2(capsys):
    code, _, err = _run(capsys, "inspect")
    assert code == 2 and "Missing argument" in err
