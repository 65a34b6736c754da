"""Configuration errors: file, line, column, key path, what was expected, a close match."""

from __future__ import annotations

import pytest

from streamcnn.config import load_config
from streamcnn.errors import ConfigError

from .conftest import run_cli, write


def errors_of(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, check=True)
    return str(info.value)


GOOD = """
pipelines:
  demo:
    source: {uri: pattern, size: 64x48, frames: 3}
    stages:
      - edges: {kernel: sobel, padding: same, stride: 1}
    sinks:
      - null
"""


def test_valid_file_resolves(tmp_path):
    cfg = load_config(write(tmp_path / "p.yaml", GOOD))
    p = cfg.pipelines["demo"]
    assert p.source.type_name == "pattern"
    assert [s.type_name for s in p.stages] == ["edges"]
    assert p.stages[0].params.kernel == "sobel"
    assert [s.type_name for s in p.sinks] == ["null"]


def test_tab_at_line_start(tmp_path):
    path = write(tmp_path / "p.yaml", "pipelines:\n  demo:\n    source: pattern\n\tstages: []\n")
    assert errors_of(path) == (
        f"{path}:4:1: tab character in indentation: YAML does not allow tabs for indentation; use spaces"
    )


def test_options_not_indented_under_stage(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            stages:
              - edges:
                kernel: sobel
                stride: 2
        """)
    assert errors_of(path) == (
        f"{path}:5:9: pipelines.demo.stages[0].edges: stage 'edges' got no options, and the keys that "
        "follow it ('kernel', 'stride') look like its options: indent them under 'edges' "
        "(2 more spaces than 'edges')"
    )


def test_unknown_option_suggests_close_match(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            stages:
              - edges: {kernel: sobel, paddng: same}
        """)
    msg = errors_of(path)
    assert msg.startswith(f"{path}:5:32: pipelines.demo.stages[0].edges.paddng: unknown option 'paddng' "
                          "for stage 'edges' — did you mean 'padding'? (options: ")
    assert "kernel" in msg and "stride" in msg


def test_wrong_type_says_what_was_expected(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            stages:
              - edges:
                  kernel: sobel
                  stride: high
        """)
    assert errors_of(path) == (
        f"{path}:7:19: pipelines.demo.stages[0].edges.stride: expected an integer ≥ 1, got 'high'"
    )


def test_literal_value_suggests(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            stages: [{edges: {kernel: sobell}}]
        """)
    msg = errors_of(path)
    assert "pipelines.demo.stages[0].edges.kernel: expected one of 'vertical'" in msg
    assert "got 'sobell' — did you mean 'sobel'?" in msg
    assert msg.startswith(f"{path}:4:31:")


def test_unknown_stage_lists_installed(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            stages:
              - edgs: {kernel: sobel}
        """)
    msg = errors_of(path)
    assert msg.startswith(f"{path}:5:9: pipelines.demo.stages[0].edgs: unknown stage 'edgs' — did you mean "
                          "'edges'? Installed stages: ")
    assert "edges" in msg.split("Installed stages: ")[1]


def test_unknown_sink_and_pipeline_key(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            sinkz: []
            sinks: [{jsonn: {path: x.jsonl}}]
        """)
    lines = errors_of(path).splitlines()
    assert len(lines) == 2  # the schema error and the component error, in one run
    assert lines[0].startswith(f"{path}:4:5: pipelines.demo.sinkz: unknown key 'sinkz' for pipeline 'demo' — did you "
                               "mean 'sinks'?")
    assert lines[1].startswith(f"{path}:5:13: pipelines.demo.sinks[0].jsonn: unknown sink 'jsonn' — did you mean "
                               "'jsonl'?")


def test_several_errors_reported_together(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: pattern
            stages: [{edges: {kernel: nope}}]
          b:
            source: pattern
            stages: [{edges: {stride: 0}}]
        """)
    msg = errors_of(path)
    assert len(msg.splitlines()) == 2
    assert "pipelines.b.stages[0].edges.stride: expected an integer ≥ 1, got 0" in msg


def test_duplicate_key(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: pattern
            source: other
        """)
    assert errors_of(path) == f"{path}:4:5: pipelines.a.source: duplicate key 'source' (first written on line 3)"


def test_missing_plugin_file_names_resolved_path_and_line(tmp_path):
    path = write(tmp_path / "p.yaml", """
        plugins:
          - ./nope.py
        pipelines:
          a: {source: pattern}
        """)
    assert errors_of(path) == (
        f"{path}:2:5: plugin file './nope.py' not found (resolved to {tmp_path / 'nope.py'})"
    )


def test_source_without_uri(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: {url: x.mp4}
        """)
    assert "source mapping needs a 'uri'" in errors_of(path)
    assert "(got 'url' — did you mean 'uri'?)" in errors_of(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config("/nonexistent/p.yaml")


def test_cli_exit_code_2_and_no_traceback(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            stages:
              - edges: {kernel: sobel, paddng: same}
        """)
    for cmd in ("run", "validate"):
        res = run_cli(cmd, str(path))
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr
        assert "did you mean 'padding'?" in res.stderr


def test_cli_validate_ok(tmp_path):
    path = write(tmp_path / "p.yaml", GOOD)
    res = run_cli("validate", str(path))
    assert res.returncode == 0, res.stderr
    assert "demo: pattern → edges → null" in res.stdout


def test_device_errors_at_validation(tmp_path):
    import onnxruntime as ort

    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            stages: [{edges: {device: gpu}}]
        """)
    assert errors_of(path) == (f"{path}:4:31: pipelines.demo.stages[0].edges.device: device 'gpu' is not valid; "
                               "use auto, cpu, cuda, cuda:N (N = GPU index, e.g. cuda:1), tensorrt or tensorrt:N")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("the GPU build of ONNX Runtime is installed")
    path.write_text(path.read_text().replace("gpu", "cuda:1"))
    msg = errors_of(path)
    assert msg.startswith(f"{path}:4:31: pipelines.demo.stages[0].edges.device: device 'cuda:1' needs the GPU "
                          "build of ONNX Runtime, but the installed one has no CUDAExecutionProvider (onnxruntime). "
                          "To fix: install the GPU build of ONNX Runtime: pip uninstall -y onnxruntime onnxruntime-gpu")


def test_indentation_hint_and_error_order(tmp_path):
    path = write(tmp_path / "p.yaml", "pipelines:\n  demo:\n    source: pattern\n     stages: []\n")
    assert errors_of(path) == (f"{path}:4:12: invalid YAML: mapping values are not allowed here (usually wrong "
                               "indentation: compare this line with the one above)")
    path = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            source: pattern
            stages: [{edges: {stride: 0, kernel: nope}}]
        """)
    lines = errors_of(path).splitlines()
    assert [ln.split(": ")[0] for ln in lines] == [f"{path}:4:31", f"{path}:4:42"]


def test_plugins_options_lists_every_option_with_defaults():
    res = run_cli("plugins", "--options", "edges")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("stage edges — ")
    assert "    stride: an integer ≥ 1; default 1 — step in pixels between kernel positions" in lines
    assert any(ln.startswith("    weights: ") and "; optional" in ln for ln in lines)
    res = run_cli("plugins", "-o", "edgs")
    assert res.returncode == 2 and "no stage, source or sink named 'edgs' — did you mean 'edges'?" in res.stderr


def test_case_insensitive_suggestions():
    from streamcnn import suggest

    assert suggest("L2", ["cosine", "l2"]) == " — did you mean 'l2'?"
    assert suggest("Sobel", ["sobel", "scharr"]) == " — did you mean 'sobel'?"
