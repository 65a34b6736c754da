"""`streamcnn validate` checks what `run` would fail on at its outputs: a codec/container pair that
OpenCV cannot open (a writer is tried on a temporary file) and a preview port that cannot be bound."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import run_cli, write


def _validate(tmp_path, text: str):
    cfg = write(tmp_path / "p.yaml", text)
    return run_cli("validate", str(cfg), cwd=tmp_path)


@pytest.mark.parametrize(("sink", "col", "expected"), [
    ("{video: {path: out/x.webm}}", 13,
     "cannot write {out}/x.webm: a .webm file cannot hold h264 video (libx264); use .mp4 or .mkv (.webm holds "
     "only vp8, vp9 and av1)"),
    ("{video: {path: out/x.webm, codec: mjpeg}}", 13,
     "cannot write {out}/x.webm: a .webm file cannot hold mjpeg video (mjpeg); use .avi, .mkv or .mov"),
    ("{video: {path: out/x.mp4, codec: h246}}", 13,
     "cannot write {out}/x.mp4: unknown codec 'h246' — did you mean 'h264'?; the codecs are h264, hevc, mpeg4, "
     "vp8, vp9, av1, mjpeg (or an FFmpeg encoder name such as libx264 or h264_nvenc)"),
    ("{video: {path: out/x.foo}}", 13,
     "cannot write {out}/x.foo: .foo is not a video container; end the path in .mp4, .m4v, .mov, .mkv, .webm, "
     ".avi"),
    ("{video: {path: out/x}}", 13,
     "cannot write {out}/x: the path has no extension; end the path in .mp4, .m4v, .mov, .mkv, .webm, .avi"),
    ("{video: {path: 'out/{start:%H}.mp4'}}", 13,
     "path 'out/{start:%H}.mp4' uses {start}, which only segmented recordings (segment: ...) fill in"),
    ("{video: {path: out/x.mp4, segment: 10min}}", 13,
     "path 'out/x.mp4' has no {start}: every segment would get the same name. Use e.g. "
     "out/{pipeline}/{start:%Y-%m-%d_%H-%M-%S}.mp4"),
    ("{video: {path: 'out/{start}.mp4', segment: 10 minutes please}}", 13,
     "segment: '10 minutes please' is not a duration; write seconds (600) or e.g. 90s, 10min, 2h, 7d"),
    ("{video: {path: out/x.mp4, retain: 7d}}", 13,
     "retain and max_bytes delete old segments: set segment too (e.g. segment: 10min)"),
    ("{clip: {path: 'out/{start}.webm'}}", 13,
     "cannot write {out}/{start}.webm: a .webm file cannot hold h264 video (libx264); use .mp4 or .mkv (.webm "
     "holds only vp8, vp9 and av1)"),
])
def test_codec_container_that_cannot_be_opened(tmp_path, sink, col, expected) -> None:
    res = _validate(tmp_path, f"""
        pipelines:
          cam:
            source: pattern
            sinks: [{sink}]
        """)
    assert res.returncode == 2, res.stderr
    message = expected.replace("{out}", str(tmp_path / "out"))
    # the whole of stderr: OpenCV's and FFmpeg's own lines from the probe stay quiet
    kind = sink.split(":")[0].strip("{ ")
    assert res.stderr == f"{tmp_path / 'p.yaml'}:4:{col}: pipelines.cam.sinks[0].{kind}: {message}\n"
    assert res.stdout == ""
    assert not (tmp_path / "out").exists()  # the probe wrote nothing next to the output


def test_run_refuses_the_same_codec_before_starting(tmp_path) -> None:
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam:
            source: {uri: pattern, frames: 3}
            sinks: [{video: {path: out/x.webm, codec: mpeg4}}]
        """)
    res = run_cli("run", str(cfg), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == (f"{cfg}:4:13: pipelines.cam.sinks[0].video: cannot write {tmp_path}/out/x.webm: a .webm "
                          "file cannot hold mpeg4 video (mpeg4); use .mp4 or .mkv (.webm holds only vp8, vp9 and av1)\n")


def test_working_codec_container_pairs_validate_quietly(tmp_path) -> None:
    res = _validate(tmp_path, """
        pipelines:
          a: {source: pattern, sinks: [{video: {path: out/a.mp4}}]}
          b: {source: pattern, sinks: [{video: {path: out/b.webm, codec: vp8}}]}
          c: {source: pattern, sinks: [{video: {path: out/c.webm, codec: vp9}}]}
          d: {source: pattern, sinks: [{video: {path: out/d.avi, codec: mjpeg}}]}
          e: {source: pattern, sinks: [{video: {path: out/e.avi, codec: mpeg4}}]}
          f: {source: pattern, sinks: [{video: {path: out/f.mkv, codec: hevc}}]}
          g: {source: pattern, sinks: [{video: {path: 'out/g/{start:%Y%m%d-%H%M%S}.mp4', segment: 10min,
                                                retain: 7d, max_bytes: 50GB}}]}
          h: {source: pattern, sinks: [{clip: {path: 'out/h/{start:%H-%M-%S}.mkv', classes: [person]}}]}
        """)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.splitlines()[-1] == f"{tmp_path / 'p.yaml'}: OK (8 pipeline(s) ready)"


def test_preview_port_in_use_by_another_program(tmp_path) -> None:
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    try:
        res = _validate(tmp_path, f"""
            pipelines:
              cam:
                source: pattern
                sinks:
                  - preview: {{port: {port}}}
            """)
    finally:
        other.close()
    assert res.returncode == 2
    assert res.stderr == (f"{tmp_path / 'p.yaml'}:5:9: pipelines.cam.sinks[0].preview: port {port} on 127.0.0.1 is "
                          "already in use (by another program or another pipeline of this file); pick another port\n")


def test_preview_port_free_again_validates(tmp_path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    res = _validate(tmp_path, f"""
        pipelines:
          cam: {{source: pattern, sinks: [{{preview: {{port: {port}}}}}]}}
        """)
    assert res.returncode == 0, res.stderr
    with socket.create_server(("127.0.0.1", port)):  # validate released the port again
        pass


def test_preview_host_that_is_not_an_address_here(tmp_path) -> None:
    res = _validate(tmp_path, """
        pipelines:
          cam:
            source: pattern
            sinks: [{preview: {host: 192.0.2.10, port: 8090}}]
        """)
    assert res.returncode == 2
    assert res.stderr == (f"{tmp_path / 'p.yaml'}:4:13: pipelines.cam.sinks[0].preview: cannot listen on "
                          "192.0.2.10:8090: 192.0.2.10 is not an address of this machine; use 127.0.0.1 (this "
                          "machine only) or 0.0.0.0 (every interface)\n")


def test_two_preview_sinks_of_one_file_on_one_port(tmp_path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    res = _validate(tmp_path, f"""
        pipelines:
          a:
            source: pattern
            sinks: [{{preview: {{port: {port}}}}}]
          b:
            source: pattern
            sinks: [null, {{preview: {{port: {port}}}}}]
        """)
    assert res.returncode == 2
    assert res.stderr == (f"{tmp_path / 'p.yaml'}:7:19: pipelines.b.sinks[1].preview: preview sink listens on port "
                          f"{port} (127.0.0.1), which the preview sink of pipeline 'a' (pipelines.a.sinks[0].preview, "
                          "line 4) uses too; give each its own port\n")
