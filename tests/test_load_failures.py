"""Issue 9 items 8, 9, 10, 13: what a user sees when something a pipeline loads is broken.

* 8: a model file that is not ONNX, or a truncated one, in every model stage (style included): exit
  code 2 and one clean line naming the YAML position, the stage and the file (one loading path).
* 9: a plugin's stage/source/sink whose ``__init__`` raises: the plugin, the component, the YAML
  position and the exception; ``-v`` adds the traceback.
* 10: ``streamcnn models`` with a registry file of the wrong sha256: listed as present but refused,
  with what to do, exit code 0.
* 13: a plugin file with a syntax error: the message names that file and line (not the plugin manager).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from .conftest import assets_dir, need, run_cli, write
from .test_fuzz import run_forked

pytestmark = pytest.mark.lowest

MODEL_STAGES = {  # stage entry (MODEL: the broken file) -> the files it loads
    "yolo": "{yolo: {model: MODEL}}",
    "face_detect": "{face_detect: {model: MODEL}}",
    "landmarks": "face_detect, {landmarks: {model: MODEL}}",  # validate checks the chain: boxes first
    "face_recognize": "face_detect, {face_recognize: {model: MODEL, database: people.npz}}",
    "style": "{style: {model: MODEL}}",
    "style-pair": "{style: {model: [MODEL, MODEL], style_image: STYLE}}",
}
BROKEN = ("not-onnx", "truncated")


def _cli_many(tmp_path: Path, runs: list[tuple[str, list[str]]]) -> dict[str, tuple[int, str]]:
    """``{key: (exit code, stdout + stderr)}`` of ``streamcnn ARGS`` for each (key, args), run in ``tmp_path``."""
    specs = [{"cwd": str(tmp_path), "out": str(tmp_path / f"{key}.out"), "args": args} for key, args in runs]
    codes = run_forked(specs, tmp_path / "runs.json")
    return {key: (rc, Path(s["out"]).read_text()) for (key, _), rc, s in zip(runs, codes, specs, strict=True)}


@pytest.fixture(scope="module")
def model_results(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str]]]:
    assets = assets_dir()
    real = assets / "models" / "style_multistyle26.onnx"
    need(real, assets / "media" / "starry_night.jpg")
    tmp = tmp_path_factory.mktemp("models")
    (tmp / "not-onnx.onnx").write_text("this is a text file, not an ONNX model\n")
    (tmp / "truncated.onnx").write_bytes(real.read_bytes()[:200_000])
    runs = []
    for stage, entry in MODEL_STAGES.items():
        for broken in BROKEN:
            text = entry.replace("MODEL", f"{broken}.onnx").replace("STYLE", str(assets / "media" / "starry_night.jpg"))
            cfg = write(tmp / f"{stage}-{broken}.yaml", f"""
                pipelines:
                  p:
                    source: {{uri: pattern, size: 64x48, frames: 3}}
                    stages: [{text}]
                    sinks: [null]
                """)
            runs.append((f"{stage}-{broken}-validate", ["validate", cfg.name]))
            runs.append((f"{stage}-{broken}-run", ["-q", "run", "--max-frames", "3", cfg.name]))
    return tmp, _cli_many(tmp, runs)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("broken", BROKEN)
@pytest.mark.parametrize("stage", list(MODEL_STAGES))
def test_broken_model_file_is_one_clean_config_error(model_results, stage: str, broken: str, command: str) -> None:
    tmp, results = model_results
    rc, out = results[f"{stage}-{broken}-{command}"]
    name = stage.split("-")[0]
    index, col = (1, 27) if MODEL_STAGES[stage].startswith("face_detect, ") else (0, 14)
    path = tmp / f"{broken}.onnx"
    lines = [ln for ln in out.splitlines() if " INFO " not in ln]
    assert rc == 2, out
    assert "Traceback" not in out and "google.protobuf" not in out, out
    assert len(lines) == 1, out
    assert lines[0].startswith(
        f"{stage}-{broken}.yaml:4:{col}: pipelines.p.stages[{index}].{name}: stage '{name}': cannot load model {path}: "
        "InvalidProtobuf: "), out


# -- item 9: a plugin component whose __init__ raises --------------------------------------------------

BOOM = '''
import streamcnn


class BoomStage(streamcnn.Stage):
    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        raise RuntimeError("stage kaputt")

    def process(self, frame):
        return frame


class BoomSink(streamcnn.Sink):
    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        raise KeyError("sink kaputt")

    def write(self, frame):
        pass


class BoomSource(streamcnn.Source):
    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        raise ZeroDivisionError("source kaputt")


@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"boom": BoomStage}


@streamcnn.hookimpl
def streamcnn_sink_types():
    return {"boomsink": BoomSink}


@streamcnn.hookimpl
def streamcnn_source_types():
    return {"boomsrc": BoomSource}
'''

COMPONENTS = {  # kind -> (pipeline lines, YAML position, key path, type, exception, line in boom.py)
    "stage": ("source: {uri: pattern, frames: 3}\n    stages: [boom]\n    sinks: [null]", "5:14",
              "pipelines.p.stages[0]", "boom", "RuntimeError: stage kaputt", 7),
    "sink": ("source: {uri: pattern, frames: 3}\n    sinks: [boomsink]", "5:13",
             "pipelines.p.sinks[0]", "boomsink", "KeyError: 'sink kaputt'", 16),
    "source": ("source: {uri: x, type: boomsrc}\n    sinks: [null]", "4:13",
               "pipelines.p.source", "boomsrc", "ZeroDivisionError: source kaputt", 25),
}


@pytest.fixture(scope="module")
def boom_results(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str]]]:
    tmp = tmp_path_factory.mktemp("boom")
    write(tmp / "boom.py", BOOM)
    runs = []
    for kind, (body, *_rest) in COMPONENTS.items():
        cfg = tmp / f"{kind}.yaml"
        cfg.write_text(f"plugins: [./boom.py]\npipelines:\n  p:\n    {body}\n")
        runs += [(f"{kind}-validate", ["validate", cfg.name]), (f"{kind}-run", ["-q", "run", cfg.name]),
                 (f"{kind}-run-v", ["-v", "run", cfg.name])]
    return tmp, _cli_many(tmp, runs)


def _boom_message(tmp: Path, kind: str) -> str:
    _, pos, key, type_name, exc, line = COMPONENTS[kind]
    plugin = tmp / "boom.py"
    return (f"{kind}.yaml:{pos}: {key}: {kind} '{type_name}' of plugin '{plugin}' failed to start: {exc} at "
            f"{plugin}:{line} (-v shows the traceback)")


@pytest.mark.parametrize("kind", list(COMPONENTS))
def test_plugin_init_failure_names_plugin_component_position_and_exception(boom_results, kind: str) -> None:
    tmp, results = boom_results
    rc, out = results[f"{kind}-run"]
    assert "Traceback" not in out, out
    # a stage is built while the configuration is checked; a source or sink when its pipeline starts
    prefix = "" if kind == "stage" else "pipeline 'p' failed: "
    assert prefix + _boom_message(tmp, kind) in out.splitlines(), out


@pytest.mark.parametrize("kind", ["stage", "sink", "source"])
def test_plugin_init_failure_exits_2_from_run(boom_results, kind: str) -> None:
    rc, out = boom_results[1][f"{kind}-run"]
    assert rc == 2, out


def test_stage_init_failure_is_reported_by_validate(boom_results) -> None:
    """`validate` builds stages (not sources and sinks: those create files, bind ports and open cameras)."""
    tmp, results = boom_results
    rc, out = results["stage-validate"]
    assert (rc, out.splitlines()) == (2, [_boom_message(tmp, "stage")]), out


@pytest.mark.parametrize("kind", list(COMPONENTS))
def test_verbose_adds_the_plugins_traceback(boom_results, kind: str) -> None:
    tmp, results = boom_results
    _, out = results[f"{kind}-run-v"]
    line = COMPONENTS[kind][5]
    assert "Traceback (most recent call last):" in out, out
    assert f'File "{tmp / "boom.py"}", line {line}, in __init__' in out, out
    assert _boom_message(tmp, kind) in out, out


# -- item 10: `streamcnn models` with a registry file of the wrong sha256 ------------------------------

def test_models_lists_a_sha256_mismatch_with_what_to_do(tmp_path) -> None:
    bad = tmp_path / "models" / "yolox_nano_coco_416.onnx"
    bad.parent.mkdir()
    bad.write_bytes(b"not the registry's yolox file\n")
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    r = run_cli("models", env={"STREAMCNN_ASSETS": str(tmp_path), "STREAMCNN_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("yolox_nano_coco_416 "))
    assert f"{bad} (sha256 mismatch: see below)" in row
    assert row.split()[1:3] == ["model", "yolo"]
    problems = r.stdout.split("\nrefused local files:\n", 1)[1].splitlines()
    assert problems == [
        f"  yolox_nano_coco_416: {bad} is not the registry's yolox_nano_coco_416.onnx: sha256 {digest} != "
        "d39bee73564e338080378b0ad567fbb40e818b55bbfaf971de82a0267ed16b8a (a truncated or different file). "
        "Delete it (it is fetched again when downloads are possible), or name your own file by its path"
    ]


# -- item 13: a plugin file with a syntax error ---------------------------------------------------------

try:  # SyntaxError since Python 3.11.4 (3.12), ValueError before
    compile(b"\0", "nul", "exec")
except (SyntaxError, ValueError) as _exc:
    NUL_ERROR = type(_exc).__name__

SYNTAX = {  # file -> (bytes, the location the message must give, the error)
    "bad_syntax.py": (b"import streamcnn\n\ndef f(:\n    pass\n", "bad_syntax.py:3:7", "SyntaxError: invalid syntax"),
    "nul_byte.py": (b"x = 1\ny = 2 \x00\n", "nul_byte.py:2:7", f"{NUL_ERROR}: source code string cannot contain null bytes"),
    "bad_indent.py": (b"x = 1\n\tif True:\n  y = 2\n", "bad_indent.py:2:1", "IndentationError: unexpected indent"),
}


def test_plugin_syntax_error_names_the_plugin_file_and_line(tmp_path) -> None:
    runs = []
    for name, (data, _, _) in SYNTAX.items():
        (tmp_path / name).write_bytes(data)
        write(tmp_path / f"{name}.yaml", f"""
            plugins: [./{name}]
            pipelines:
              p:
                source: pattern
                sinks: [null]
            """)
        runs.append((name, ["validate", f"{name}.yaml"]))
    results = _cli_many(tmp_path, runs)
    for name, (_, where, error) in SYNTAX.items():
        rc, out = results[name]
        path = tmp_path / name
        assert (rc, out.splitlines()) == (2, [
            f"{name}.yaml:1:11: plugin file {path} failed to import: {error} at {tmp_path / where} "
            f"(while importing {path})"
        ]), out
        assert "pluginmanager.py" not in out


def test_syntax_error_in_a_module_the_plugin_imports_names_that_module(tmp_path) -> None:
    (tmp_path / "helper_mod.py").write_text("x = 1\ny = (\n")
    (tmp_path / "uses_helper.py").write_text("import helper_mod\n")
    write(tmp_path / "p.yaml", """
        plugins: [./uses_helper.py]
        pipelines:
          p:
            source: pattern
            sinks: [null]
        """)
    r = run_cli("validate", "p.yaml", cwd=tmp_path)
    assert (r.returncode, r.stderr.splitlines()) == (2, [
        f"p.yaml:1:11: plugin file {tmp_path / 'uses_helper.py'} failed to import: SyntaxError: '(' was never "
        f"closed at {tmp_path / 'helper_mod.py'}:2:5 (while importing {tmp_path / 'uses_helper.py'})"
    ]), r.stderr
