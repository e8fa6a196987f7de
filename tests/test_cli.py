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


def _piped(*args, columns=80):
    """The CLI in a real process with stdout piped (as in CI logs), the terminal width set by COLUMNS."""
    import os

    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edgecnn.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def long_names(tmp_path_factory, keras3):
    """A CNN whose layer names are long and differ only near their end (as in zoo models: s1u2_conv1_dw_bn; 27 characters),
    with a layer of more than a million MACs, so that a squeezed table would cut names or split numbers."""
    L = keras3.layers
    inp = keras3.Input((64, 64, 3), name="image")
    x = L.Conv2D(32, 3, padding="same", name="stage1_unit2_conv_expand")(inp)
    x = L.BatchNormalization(name="stage1_unit2_conv_expand_bn")(x)
    x = L.Conv2D(64, 3, padding="same", name="stage1_unit2_conv_reduce")(x)
    x = L.BatchNormalization(name="stage1_unit2_conv_reduce_bn")(x)
    x = L.GlobalAveragePooling2D(name="stage1_unit2_global_pool")(x)
    out = L.Dense(10, activation="softmax", name="predictions")(x)
    path = tmp_path_factory.mktemp("long") / "long_names.keras"
    keras3.Model(inp, out).save(path)
    return path


def test_inspect_table_at_80_columns_piped_keeps_names_and_numbers_whole(long_names):
    done = _piped("inspect", str(long_names))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    report = json.loads(_piped("inspect", str(long_names), "--json").stdout)
    layers_table = lines[:next(i for i, line in enumerate(lines) if line.startswith("share by layer type"))]
    for layer in report["layers"]:
        # one line holds the whole name and its whole figures: no name cut to "stage1_unit2_...", no number split
        row = [line for line in layers_table if line.split() and line.split()[0] == layer["name"]]
        assert len(row) == 1, (layer["name"], done.stdout)
        assert f"{layer['params']:,}" in row[0] and f"{layer['macs']:,}" in row[0], row[0]
    assert any(layer["macs"] >= 10**6 for layer in report["layers"])  # a wide number was in the table
    names = [line.split()[0] for line in layers_table if line.startswith("stage1_unit2_conv_")]
    assert len(names) == len(set(names)) == 4  # the four look-alike names stay apart, each on its row
    # the rewrite candidates table (9 columns): every figure whole on one line
    from edgecnn.report.tables import human

    for layer in (x for x in report["layers"] if "separable_macs" in x):
        figures = [human(layer[k]) for k in ("macs", "separable_macs", "bottleneck_macs", "params",
                                             "separable_params", "bottleneck_params")]
        figures.append(f"{layer['macs'] / layer['separable_macs']:.1f}x")
        assert any(all(f" {f} " in f" {line} " for f in figures) for line in lines), (figures, done.stdout)


def test_help_lists_the_choices_and_the_model_metavar():
    compress = _piped("compress", "--help", columns=200).stdout
    for value in ("litert-int8", "onnx-fp32", "mobile-1t", "mobile-4t", "mobile|tiny", "PATH.toml"):
        assert value in compress, value
    assert "MODEL" in compress
    prune = _piped("prune", "--help", columns=200).stdout
    assert "magnitude|m-by-n|channels" in prune and "l1|bn|activation" in prune
    rewrite = _piped("rewrite", "--help", columns=200).stdout
    assert "separable|bottleneck|gap-head|low-rank-dense" in rewrite and "default|mirrored|multiworker" in rewrite
    export = _piped("export", "--help", columns=200).stdout
    assert "none|fp16|dynamic|int8|int16x8" in export and "tflite|onnx|all" in export and "float|int8|uint8" in export


@pytest.mark.parametrize("args, option", [
    (["compress", "m.h5", "--target", "litert-int4"], "--target"),
    (["compress", "m.h5", "--runtime-profile", "phone"], "--runtime-profile"),
    (["prune", "m.h5", "-o", "p.h5", "--method", "lottery"], "--method"),
    (["rewrite", "m.h5", "-o", "r.h5", "--to", "winograd"], "--to"),
    (["export", "m.h5", "-o", "out", "--quantize", "int4"], "--quantize"),
    (["bench", "m.tflite", "--profile", "phone"], "--profile"),
])
def test_a_value_outside_the_choices_exits_2_in_one_line(capsys, args, option):
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith(f"edgecnn: error: Invalid value for '{option}': '{args[-1]}' is not one of ")
    assert err.count("\n") == 1 and "Value error" not in err


def test_choices_equal_their_tables():
    from edgecnn.cli import choices
    from edgecnn.exporting import FORMATS
    from edgecnn.exporting.convert import QUANT_MODES
    from edgecnn.pipeline.recipe import TARGETS
    from edgecnn.runtimes import CONVERT_RUNTIMES
    from edgecnn.runtimes.profiles import PROFILES
    from edgecnn.pruning import METHODS
    from edgecnn.pruning.importance import IMPORTANCES
    from edgecnn.pruning.magnitude import SCHEDULES
    from edgecnn.exporting.quantize import IO_TYPES, QuantMode
    from edgecnn.rewriting import POOLINGS, REWRITES, SELECTS
    from edgecnn.training import STRATEGIES

    n = choices.names
    assert n(choices.Target) == tuple(TARGETS) and n(choices.Profile) == tuple(PROFILES)
    assert n(choices.ExportFormat) == (*FORMATS, "all") and n(choices.Quantize) == tuple(m.value for m in QuantMode)
    assert n(choices.LatencyQuantize) == QUANT_MODES and n(choices.LatencyRuntime) == CONVERT_RUNTIMES
    assert n(choices.IOType) == IO_TYPES and n(choices.PruneMethod) == tuple(METHODS)
    assert n(choices.Importance) == IMPORTANCES and n(choices.Schedule) == SCHEDULES
    assert n(choices.RewriteTo) == tuple(REWRITES) and n(choices.Select) == SELECTS
    assert n(choices.Pooling) == POOLINGS and n(choices.Strategy) == STRATEGIES


def test_shell_completion_offers_the_choices(tmp_path):
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT), "_EDGECNN_COMPLETE": "complete_bash",
           "COMP_WORDS": "edgecnn compress m.h5 --target litert-", "COMP_CWORD": "4"}
    done = subprocess.run([sys.executable, "-m", "edgecnn.cli"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["litert-int8", "litert-fp16", "litert-dynamic", "litert-fp32"]
    (tmp_path / "mine.toml").write_text("")
    env.update(COMP_WORDS="edgecnn compress m.h5 --recipe ", COMP_CWORD="4")
    done = subprocess.run([sys.executable, "-m", "edgecnn.cli"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, env=env)
    assert done.stdout.split() == ["gpu", "mobile", "tiny", "mine.toml"]


def test_bench_table_at_80_columns_piped_keeps_names_and_numbers_whole(tmp_path):
    bench = ROOT / "edgecnn" / "benchmarking"
    # Share a prefix; 20 characters fit at 80 columns next to a 6-digit img/s (the reference model runs at
    # about 0.01 ms: over 100,000 images per second now that bench's medians match LiteRT's own tool).
    names = ("digits_cnn_int8_v", "digits_cnn_int8_v_ox")
    done = _piped("bench", f"{names[0]}={bench / 'reference.tflite'}", f"{names[1]}={bench / 'reference.onnx'}",
                  "--runtime", "litert,onnxruntime", "--runs", "5", "--warmup", "1", "--quiet",
                  "--json", str(tmp_path / "b.json"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines if not line.startswith("wrote ")) <= 80, done.stdout
    results = json.loads((tmp_path / "b.json").read_text())["results"]
    for r in (r for r in results if r["model"] in names and r["status"] == "ok"):
        rows = [line for line in lines if line.split() and line.split()[0] == r["model"]]
        assert len(rows) == 2, (r["model"], done.stdout)  # its latency row and its size row, name whole
        assert f"{r['median_ms']:.3f}" in rows[0] and f"{r['runs']}" in rows[0].split(), rows[0]
