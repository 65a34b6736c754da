"""Nothing lost silently (issue 9, items 15-17): sinks check their writes, a write error stops that
pipeline (exit code 1) naming the sink and the file, a sink whose ``close`` fails fails the run, and
two processes cannot write the same output file.

A full disk is simulated without root: ``/dev/full`` behind a symlink (every write: ENOSPC), a
file-size limit (``RLIMIT_FSIZE``: writes past it fail with EFBIG) in a child process, and, where
user namespaces allow it, a real 256 KiB tmpfs mounted in a private mount namespace (``unshare``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcnn import Context, Frame, SinkWriteError, recording
from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn_plugins.sinks import ImagesSink, JsonlSink, VideoSink
from streamcnn_plugins.sinks import files as files_mod

from .conftest import run_cli, wait_until, write

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")

TWO_PIPELINES = """
    pipelines:
      vid:
        source: {uri: pattern, size: 320x240, frames: 400}
        sinks: [{video: {path: out/v.mp4, crf: 0}}, {jsonl: {path: out/v.jsonl}}]  # lossless: large
      other:
        source: {uri: pattern, size: 64x48, frames: 50}
        sinks: [{jsonl: {path: out/o.jsonl}}]
    """


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed; kept across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _tmpfs_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    res = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                         capture_output=True, timeout=30)
    return res.returncode == 0


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line complete JSON


@pytest.mark.parametrize("disk", ["file-size-limit", "tmpfs"])
def test_a_full_disk_under_the_video_sink_stops_that_pipeline_with_exit_1_and_the_others_run(tmp_path, disk):
    cfg = write(tmp_path / "p.yaml", TWO_PIPELINES)
    (tmp_path / "out").mkdir()
    cmd = [sys.executable, "-m", "streamcnn", "-q", "run", str(cfg)]
    if disk == "tmpfs":
        if not _tmpfs_available():
            pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -rm)")
        script = f"mount -t tmpfs -o size=256k tmpfs {tmp_path / 'out'} && exec \"$@\""
        res = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *cmd], capture_output=True, text=True,
                             timeout=300)
        reason = r"\[Errno 28\] No space left on device"
        out_left = None  # the tmpfs is gone with the namespace
    else:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(200_000))
        reason = r"\[Errno 27\] File too large"
        out_left = tmp_path / "out"
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    video = re.escape(str(tmp_path / "out" / "v.mp4"))
    # the failing frame is reported as it happens (each packet is handed to the OS at once); the
    # frames in the file are fewer than the frame index by the encoder's delay (B-frames, lookahead)
    line = (rf"pipeline 'vid': sink 'video' failed on frame (\d+): SinkWriteError: video sink: cannot write "
            rf"{video}: the video writer refused frame (\d+) after (\d+) frames \({reason}\)")
    found = [m for m in (re.fullmatch(line, x) for x in res.stderr.splitlines()) if m]
    assert found, res.stderr
    index = int(found[-1].group(1))
    assert int(found[-1].group(2)) == index and 0 < index < 400
    assert index - 40 < int(found[-1].group(3)) < index
    assert f"vid: {index} frames in " in res.stderr  # the summary counts only what got through
    assert re.search(r"^other: 50 frames in .*, 0 skipped", res.stderr, re.M), res.stderr
    if out_left is not None:
        assert [r["index"] for r in _records(out_left / "o.jsonl")] == list(range(50))  # the other pipeline
        assert _records(out_left / "v.jsonl")  # the pipeline's other sink: complete lines only
        assert sorted(p.name for p in out_left.iterdir()) == ["o.jsonl", "v.jsonl", "v.mp4"]  # locks released


@needs_dev_full
def test_the_video_sink_on_a_full_disk_at_the_first_frame_names_the_file_exit_1(tmp_path):
    (tmp_path / "full.mp4").symlink_to("/dev/full")
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          vid:
            source: {uri: pattern, size: 64x48, frames: 20}
            sinks: [{video: {path: full.mp4}}]
        """)
    res = run_cli("-q", "run", str(cfg))
    assert res.returncode == 1
    msg = (f"pipeline 'vid': sink 'video' failed on frame 0: SinkWriteError: video sink: cannot write "
           f"{tmp_path / 'full.mp4'}: [Errno 28] No space left on device")
    lines = res.stderr.splitlines()
    assert lines[-2] == msg
    assert lines[-1].startswith("vid: 0 frames in ") and lines[-1].endswith(", 0 skipped, 0 dropped, 0 reconnects")
    assert "Traceback" not in res.stderr and "codec" not in res.stderr


@needs_dev_full
@pytest.mark.parametrize("sink, target", [
    ("{jsonl: {path: d/full.jsonl}}", "d/full.jsonl"),
    ("{images: {path: 'd/{index:06d}.png'}}", "d/000000.png"),
], ids=["jsonl", "images"])
def test_jsonl_and_images_sinks_on_a_full_disk_stop_the_pipeline_naming_the_file(tmp_path, sink, target):
    (tmp_path / "d").mkdir()
    (tmp_path / target).symlink_to("/dev/full")
    cfg = write(tmp_path / "p.yaml", f"""
        pipelines:
          cam:
            source: {{uri: pattern, size: 64x48, frames: 20}}
            sinks: [{sink}]
        """)
    stats = Engine(load_config(cfg, check=True)).run()[0]  # on_error: skip (the default) does not swallow it
    name = sink[1:].split(":")[0]
    assert stats.error == (f"pipeline 'cam': sink '{name}' failed on frame 0: SinkWriteError: {name} sink: cannot "
                           f"write {tmp_path / target}: [Errno 28] No space left on device")
    assert stats.frames == 0 and stats.skipped == 0
    assert [p.name for p in (tmp_path / "d").iterdir() if p.name.endswith(".lock")] == []


def test_the_jsonl_sink_cuts_off_a_half_written_line_and_stops(tmp_path, monkeypatch):
    real = files_mod.write_all
    written = []

    def half_then_full(fd, data):
        written.append(data)
        if len(written) == 3:
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(files_mod, "write_all", half_then_full)
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: 10}
            sinks: [{jsonl: {path: out.jsonl}}]
        """)
    stats = Engine(load_config(cfg, check=True)).run()[0]
    assert stats.error == (f"pipeline 'cam': sink 'jsonl' failed on frame 2: SinkWriteError: jsonl sink: cannot "
                           f"write {tmp_path / 'out.jsonl'}: [Errno 28] No space left on device")
    assert stats.frames == 2 and len(written) == 3  # stopped: frames 3..9 were not tried
    assert [r["index"] for r in _records(tmp_path / "out.jsonl")] == [0, 1]  # no garbage line at the end


def test_the_video_sink_reads_its_file_back_at_close_and_reports_lost_frames(tmp_path, monkeypatch):
    """A muxer that loses packets without an error is caught when the finished file is read back."""
    real = recording.VideoFile.write

    def lossy(self, packet):
        if self.frames < 2 or self.path.name.startswith("probe"):  # the validate-time probe writes well
            real(self, packet)
        else:
            self.frames += 1  # counted as written, never reaches the file

    monkeypatch.setattr(recording.VideoFile, "write", lossy)
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam:
            source: {uri: pattern, size: 64x48, frames: 5}
            sinks: [{video: {path: v.avi, codec: mjpeg}}]
        """)
    stats = Engine(load_config(cfg, check=True)).run()[0]
    assert stats.frames == 5
    assert stats.error == (f"pipeline 'cam': sink 'video' failed to close: SinkWriteError: video sink: cannot write "
                           f"{tmp_path / 'v.avi'}: the finished file holds 2 of the 5 frames written (the disk may be "
                           "full, or the file too large for the file system)")


def test_a_good_video_passes_the_read_back_check(tmp_path):
    sink = VideoSink(VideoSink.Params(path="v.mp4"), Context("video", "cam", tmp_path))
    for i in range(7):
        sink.write(Frame(np.full((48, 64, 3), i * 30, np.uint8), i, i / 25))
    sink.close()  # no error
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    cap.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # the lock file is gone


CLOSE_FAILS = '''
import errno
import streamcnn


class Bad(streamcnn.Sink):
    class Params(streamcnn.Params):
        path: str = "out/bad.txt"
        how: str = "bug"

    @classmethod
    def outputs(cls, params, ctx):
        return [streamcnn.Output.file(ctx.output_path(params.path))]

    def write(self, frame):
        pass

    def close(self):
        if self.params.how == "bug":
            raise RuntimeError("flush went wrong")
        raise OSError(errno.ENOSPC, "No space left on device")


@streamcnn.hookimpl
def streamcnn_sink_types():
    return {"bad": Bad}
'''


@pytest.mark.parametrize("how", ["bug", "disk"])
def test_a_sink_whose_close_raises_fails_the_run_with_exit_1_and_its_name(tmp_path, how):
    plugin = write(tmp_path / "bad_plugin.py", CLOSE_FAILS)
    cfg = write(tmp_path / "p.yaml", f"""
        plugins: [./bad_plugin.py]
        pipelines:
          cam:
            source: {{uri: pattern, size: 32x24, frames: 3}}
            sinks: [{{bad: {{how: {how}}}}}, {{jsonl: {{path: out/ok.jsonl}}}}]
          fine:
            source: {{uri: pattern, size: 32x24, frames: 3}}
            sinks: [null]
        """)
    res = run_cli("-q", "run", str(cfg))
    assert res.returncode == 1
    source = plugin.read_text().splitlines()
    if how == "bug":
        line = source.index('            raise RuntimeError("flush went wrong")') + 1
        msg = f"pipeline 'cam': sink 'bad' failed to close: RuntimeError: flush went wrong at {plugin}:{line}"
    else:  # a disk-full error that does not name its file: named from the sink's declared outputs
        line = source.index('        raise OSError(errno.ENOSPC, "No space left on device")') + 1
        msg = (f"pipeline 'cam': sink 'bad' failed to close: OSError: [Errno 28] No space left on device at "
               f"{plugin}:{line} (writing {tmp_path / 'out' / 'bad.txt'})")
    lines = res.stderr.splitlines()
    assert lines.count(msg) == 1, res.stderr  # the run's failure summary
    assert [x for x in lines if x.endswith(f" ERROR   streamcnn.cam: {msg}")], res.stderr  # and the log line
    assert "Traceback" not in res.stderr
    assert "cam: 3 frames in " in res.stderr and "fine: 3 frames in " in res.stderr
    assert [r["index"] for r in _records(tmp_path / "out" / "ok.jsonl")] == [0, 1, 2]  # the other sink closed


def test_the_jsonl_sink_reports_a_failing_sync_at_close(tmp_path, monkeypatch):
    sink = JsonlSink(JsonlSink.Params(path="d.jsonl"), Context("jsonl", "cam", tmp_path))
    sink.write(Frame(np.zeros((4, 4, 3), np.uint8), 0, 0.0))

    def fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(files_mod.os, "fsync", fsync)
    with pytest.raises(SinkWriteError) as info:
        sink.close()
    monkeypatch.undo()
    assert str(info.value) == f"jsonl sink: cannot write {tmp_path / 'd.jsonl'}: [Errno 5] Input/output error"
    assert info.value.errno == errno.EIO and sink.out.fd is None
    assert not (tmp_path / ".d.jsonl.lock").exists()  # closed and unlocked all the same


# -- one writer per file (item 16) ------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda d: JsonlSink(JsonlSink.Params(path="x.jsonl"), Context("jsonl", "cam", d)),
    lambda d: VideoSink(VideoSink.Params(path="x.jsonl"), Context("video", "cam", d)),
], ids=["jsonl", "video"])
def test_a_second_writer_of_the_same_file_is_refused_with_the_holders_pid(tmp_path, make):
    first = make(tmp_path)
    try:
        assert (tmp_path / ".x.jsonl.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(SinkWriteError) as info:
            make(tmp_path)
        name = first.ctx.name
        assert str(info.value) == (
            f"{name} sink: cannot write {tmp_path / 'x.jsonl'}: the file is being written by another process (pid "
            f"{os.getpid()}), which holds the lock {tmp_path / '.x.jsonl.lock'}; let that run finish or stop it, or "
            "give this sink another path")
    finally:
        first.close()
    assert not (tmp_path / ".x.jsonl.lock").exists()
    make(tmp_path).close()  # free again


def test_the_images_sink_locks_its_pattern(tmp_path):
    params = ImagesSink.Params(path="f/{index:04d}.png")
    first = ImagesSink(params, Context("images", "cam", tmp_path))
    try:
        with pytest.raises(SinkWriteError, match=re.escape(
                f"images sink: cannot write {tmp_path / 'f' / '{index:04d}.png'}: the file is being written by "
                f"another process (pid {os.getpid()})")):
            ImagesSink(params, Context("images", "cam", tmp_path))
        ImagesSink(ImagesSink.Params(path="f/other{index:04d}.png"), Context("images", "cam", tmp_path)).close()
    finally:
        first.close()
    assert list((tmp_path / "f").iterdir()) == []


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    (tmp_path / ".x.jsonl.lock").write_text("999999\n")  # its process is gone: the kernel dropped the lock
    sink = JsonlSink(JsonlSink.Params(path="x.jsonl"), Context("jsonl", "cam", tmp_path))
    assert (tmp_path / ".x.jsonl.lock").read_text() == f"{os.getpid()}\n"
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl"]


def test_two_processes_writing_the_same_file_the_second_refuses_and_the_first_keeps_its_records(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: null, realtime: true, fps: 50}
            sinks: [{jsonl: {path: out/x.jsonl}}]
        """)
    first = subprocess.Popen([sys.executable, "-m", "streamcnn", "-q", "run", str(cfg)], stderr=subprocess.PIPE,
                             text=True)
    try:
        out = tmp_path / "out" / "x.jsonl"
        assert wait_until(lambda: out.exists() and out.stat().st_size > 0, timeout=60)
        second = run_cli("-q", "run", str(cfg))
        assert second.returncode == 1
        msg = (f"pipeline 'cam' failed: jsonl sink: cannot write {out}: the file is being written by another "
               f"process (pid {first.pid}), which holds the lock {tmp_path / 'out' / '.x.jsonl.lock'}; let that run "
               "finish or stop it, or give this sink another path")
        assert msg in second.stderr.splitlines() and "Traceback" not in second.stderr
        time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    indices = [r["index"] for r in _records(out)]  # every line whole, one run's records only
    assert indices == list(range(len(indices))) and len(indices) > 10
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.jsonl"]
