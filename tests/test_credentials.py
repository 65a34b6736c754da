"""A password in a source ``uri`` never shows: every error path of every source type, validate and
run, with and without ``-v``; stdout, stderr and every file the run leaves behind are searched."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_cli

PW = "s3cr3tPW"
LIVE = "open_timeout: 1, stall_timeout: 1, reconnect: false"

# pipeline name: its source; each fails at validate (a configuration error, exit code 2)
CONFIG_ERRORS = {
    "file_missing_colon": f'"rtsp//admin:{PW}@cam/s"',
    "file_one_slash": f'"rtsp:/admin:{PW}@cam/s"',
    "file_no_scheme": f'"admin:{PW}@cam/s"',
    "file_bare_name": f'"admin:{PW}@cam"',
    "file_typed_url": f'{{uri: "rtsp://admin:{PW}@cam/s", type: file}}',
    "file_typed_mistyped": f'{{uri: "rstp://admin:{PW}@cam/s", type: file}}',
    "file_not_a_video": f'"media/u:{PW}@cam/clip.mp4"',
    "images_typed_url": f'{{uri: "rtsp://admin:{PW}@cam/s", type: images}}',
    "images_typed_bad_port": f'{{uri: "rtsp://admin:{PW}@cam:abc/s", type: images}}',
    "images_empty_folder": f'"empty/u:{PW}@cam"',
    "images_no_match": f'"empty/u:{PW}@cam/*.jpg"',
    "webcam_typed_url": f'{{uri: "rtsp://admin:{PW}@cam/s", type: webcam}}',
    "webcam_typed_bad_port": f'{{uri: "rtsp://admin:{PW}@cam:99999/s", type: webcam}}',
    "webcam_typed_no_host": f'{{uri: "rtsp://admin:{PW}@/s", type: webcam}}',
    "pattern_typed_url": f'{{uri: "http://admin:{PW}@cam/x", type: pattern}}',
    "pattern_typed_path": f'{{uri: "admin:{PW}@cam/s", type: pattern}}',
    "stream_bad_option": f'{{uri: "rtsp://admin:{PW}@127.0.0.1:1/s", transport: tpc}}',
    "stream_unknown_type": f'{{uri: "rtsp://admin:{PW}@127.0.0.1:1/s", type: camera}}',
}
# these pass validate and fail when the stream is opened (exit code 1)
RUNTIME_ERRORS = {
    "stream_refused": f'{{uri: "rtsp://admin:{PW}@127.0.0.1:1/s", {LIVE}}}',
    "stream_http_refused": f'{{uri: "http://admin:{PW}@127.0.0.1:1/x.mjpg", {LIVE}}}',
}
# a mistyped stream URL: a configuration error once the stream source's check calls uri_mistake,
# a failed open before; the password must not show either way
MISTYPED_STREAMS = {
    "stream_mistyped_scheme": f'{{uri: "rstp://admin:{PW}@127.0.0.1:1/s", {LIVE}}}',
    "stream_bad_port": f'{{uri: "rtsp://admin:{PW}@127.0.0.1:abc/s", {LIVE}}}',
}
FILES = {"config_errors": CONFIG_ERRORS, "runtime_errors": RUNTIME_ERRORS, "mistyped_streams": MISTYPED_STREAMS}


def _pipelines_yaml(sources: dict[str, str]) -> str:
    return "pipelines:\n" + "".join(
        f"  {name}:\n    source: {src}\n    sinks: [{{jsonl: {{path: out/{name}.jsonl}}}}]\n"
        for name, src in sources.items()
    )


@pytest.fixture
def place(tmp_path) -> Path:
    """tmp_path with a YAML file per group, a non-video file and an empty folder under
    password-bearing folder names."""
    clip = tmp_path / "media" / f"u:{PW}@cam" / "clip.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_text("not a video")
    (tmp_path / "empty" / f"u:{PW}@cam").mkdir(parents=True)
    for name, sources in FILES.items():
        (tmp_path / f"{name}.yaml").write_text(_pipelines_yaml(sources))
    return tmp_path


def _assert_no_password_in_files(root: Path) -> None:
    """No file under ``root`` (but the YAML files and the fixtures, which hold it by design) contains it."""
    fixtures = {root / f"{n}.yaml" for n in FILES} | {root / "media" / f"u:{PW}@cam" / "clip.mp4"}
    written = [p for p in root.rglob("*") if p.is_file() and p not in fixtures]
    for p in written:
        assert PW.encode() not in p.read_bytes(), f"{p} contains the password"
        assert PW not in str(p.relative_to(root)).replace(f"u:{PW}@cam", ""), f"file name {p} has the password"


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["default", "verbose"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_config_errors_never_show_the_password(place, command, verbose):
    extra = ["--max-frames", "2"] if command == "run" else []
    r = run_cli(*verbose, command, str(place / "config_errors.yaml"), *extra)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert PW not in out
    assert "Traceback" not in out
    for name in CONFIG_ERRORS:  # every error path was taken, all in this one run
        assert f"pipelines.{name}.source" in out, f"no error for {name}:\n{out}"
    assert out.count("***@") >= len(CONFIG_ERRORS) - 2  # the messages show the redacted URL
    _assert_no_password_in_files(place)


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["default", "verbose"])
def test_runtime_errors_never_show_the_password(place, verbose):
    v = run_cli(*verbose, "validate", str(place / "runtime_errors.yaml"))
    assert v.returncode == 0, v.stderr
    assert "stream_refused: stream rtsp://***@127.0.0.1:1/s → (no stages) → jsonl" in v.stdout
    r = run_cli(*verbose, "run", str(place / "runtime_errors.yaml"), "--max-frames", "2")
    out = v.stdout + v.stderr + r.stdout + r.stderr
    assert r.returncode == 1, out
    assert PW not in out
    assert "pipeline 'stream_refused' failed: could not open stream rtsp://***@127.0.0.1:1/s" in r.stderr
    assert "pipeline 'stream_http_refused' failed: could not open stream http://***@127.0.0.1:1/x.mjpg" in r.stderr
    _assert_no_password_in_files(place)


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["default", "verbose"])
def test_mistyped_stream_urls_never_show_the_password(place, verbose):
    outs = []
    for command in ("validate", "run"):
        r = run_cli(*verbose, command, str(place / "mistyped_streams.yaml"),
                    *(["--max-frames", "2"] if command == "run" else []))
        outs.append(r.stdout + r.stderr)
        assert r.returncode in ((0, 2) if command == "validate" else (1, 2)), outs[-1]
    out = "".join(outs)
    assert PW not in out
    assert "rstp://***@127.0.0.1:1/s" in out and "rtsp://***@127.0.0.1:abc/s" in out
    _assert_no_password_in_files(place)
