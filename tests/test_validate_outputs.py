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
     "cannot write {out}/x.webm: OpenCV cannot encode fourcc 'mp4v' into a .webm container; "
     "for .webm use fourcc: VP80 or VP90"),
    ("{video: {path: out/x.mp4, fourcc: avc1}}", 13,
     "cannot write {out}/x.mp4: OpenCV cannot encode fourcc 'avc1' into a .mp4 container (avc1/H264 do not "
     "work in the pip OpenCV wheels: their FFmpeg has no H.264 encoder); for .mp4 use fourcc: mp4v"),
    ("{video: {path: out/x.avi, fourcc: H264}}", 13,
     "cannot write {out}/x.avi: OpenCV cannot encode fourcc 'H264' into a .avi container (avc1/H264 do not "
     "work in the pip OpenCV wheels: their FFmpeg has no H.264 encoder); for .avi use fourcc: MJPG or XVID"),
    ("{video: {path: out/x.foo}}", 13,
     "cannot write {out}/x.foo: OpenCV cannot encode fourcc 'mp4v' into a .foo container; .foo is not a video "
     "container OpenCV writes; use .mp4 (mp4v), .avi (MJPG, XVID) or .webm (VP80, VP90)"),
    ("{video: {path: out/x}}", 13,
     "cannot write {out}/x: the path has no extension, so there is no container to write fourcc 'mp4v' into; "
     "end it in .mp4 (fourcc mp4v), .avi (MJPG, XVID) or .webm (VP80, VP90)"),
])
def test_codec_container_that_cannot_be_opened(tmp_path, sink, col, expected) -> None:
    res = _validate(tmp_path, f"""
        pipelines:
          cam:
            source: pattern
            sinks: [{sink}]
        """)
    assert res.returncode == 2, res.stderr
    message = expected.format(out=tmp_path / "out")
    # the whole of stderr: OpenCV's and FFmpeg's own lines from the probe stay quiet
    assert res.stderr == f"{tmp_path / 'p.yaml'}:4:{col}: pipelines.cam.sinks[0].video: {message}\n"
    assert res.stdout == ""
    assert not (tmp_path / "out").exists()  # the probe wrote nothing next to the output


def test_run_refuses_the_same_codec_before_starting(tmp_path) -> None:
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam:
            source: {uri: pattern, frames: 3}
            sinks: [{video: {path: out/x.webm, fourcc: XVID}}]
        """)
    res = run_cli("run", str(cfg), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == (f"{cfg}:4:13: pipelines.cam.sinks[0].video: cannot write {tmp_path}/out/x.webm: OpenCV "
                          "cannot encode fourcc 'XVID' into a .webm container; for .webm use fourcc: VP80 or VP90\n")


def test_working_codec_container_pairs_validate_quietly(tmp_path) -> None:
    res = _validate(tmp_path, """
        pipelines:
          a: {source: pattern, sinks: [{video: {path: out/a.mp4}}]}
          b: {source: pattern, sinks: [{video: {path: out/b.webm, fourcc: VP80}}]}
          c: {source: pattern, sinks: [{video: {path: out/c.webm, fourcc: VP90}}]}
          d: {source: pattern, sinks: [{video: {path: out/d.avi, fourcc: MJPG}}]}
          e: {source: pattern, sinks: [{video: {path: out/e.avi, fourcc: XVID}}]}
          f: {source: pattern, sinks: [{video: {path: out/f.mkv, fourcc: mp4v}}]}
        """)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.splitlines()[-1] == f"{tmp_path / 'p.yaml'}: OK (6 pipeline(s) ready)"


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
