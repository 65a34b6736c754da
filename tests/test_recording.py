"""Issue 11: recordings through PyAV — H.264 that plays everywhere, at the right speed, surviving
``kill -9``; segments with an index and retention; event clips with pre-/post-roll; snapshots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamcnn import Context, Detections, Frame, StreamInfo
from streamcnn import recording as rec
from streamcnn_plugins.sinks import ClipSink, ImagesSink, VideoSink

from .conftest import media, run_cli, write


def _decoded(path: Path) -> tuple[list[float], list[np.ndarray], av.video.stream.VideoStream]:
    """(pts in seconds, BGR images, stream) of every frame PyAV decodes from ``path``."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return [float(f.pts * f.time_base) for f in frames], [f.to_ndarray(format="bgr24") for f in frames], s


def _frame(i: int, pts: float, size=(64, 48), value: int | None = None, det: Detections | None = None) -> Frame:
    w, h = size
    image = np.full((h, w, 3), (i * 37) % 250 if value is None else value, np.uint8)
    return Frame(image, i, pts, source="test", capture_time=1_700_000_000.0 + pts,
                 detections=det if det is not None else Detections.empty())


def test_vtest_is_written_as_h264_with_the_exact_frame_count_rate_and_duration(tmp_path, assets):
    clip = media(assets, "vtest.avi")
    cfg = write(tmp_path / "p.yaml", f"""
        pipelines:
          cam:
            source: {clip}
            sinks: [{{video: {{path: out/v.mp4}}}}]
        """)
    res = run_cli("run", str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "video sink: " + str(tmp_path / "out/v.mp4") + " with libx264, 768x576, 10 fps, finalised at close" \
        in res.stderr
    pts, _, stream = _decoded(tmp_path / "out/v.mp4")
    assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    assert len(pts) == 795  # vtest.avi: 795 frames at 10 fps (MEDIA.md)
    assert pts == pytest.approx([i / 10 for i in range(795)], abs=1e-6)
    with av.open(str(tmp_path / "out/v.mp4")) as c:
        assert float(c.duration / av.time_base) == pytest.approx(79.5, abs=1e-3)
    with open(tmp_path / "out/v.mp4", "rb") as f:
        head = f.read(64)
    assert head[4:8] == b"ftyp" and b"moov" in open(tmp_path / "out/v.mp4", "rb").read(4096)  # +faststart
    cap = cv2.VideoCapture(str(tmp_path / "out/v.mp4"))  # and OpenCV's reader plays it too
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 795
    cap.release()


def test_odd_sizes_are_padded_black_on_the_right_and_bottom_never_cropped(tmp_path):
    sink = VideoSink(VideoSink.Params(path="v.mp4", crf=0), Context("video", "cam", tmp_path))
    rng = np.random.default_rng(1)
    images = [rng.integers(60, 200, (241, 333, 3), dtype=np.uint8) for _ in range(3)]
    for i, img in enumerate(images):
        sink.write(Frame(img, i, i / 25))
    sink.close()
    _, decoded, stream = _decoded(tmp_path / "v.mp4")
    assert (stream.width, stream.height) == (334, 242)
    assert len(decoded) == 3
    luma = cv2.cvtColor(decoded[0], cv2.COLOR_BGR2GRAY)
    assert luma[:, 333:].max() <= 20 and luma[241:, :].max() <= 20  # black padding (4:2:0 chroma bleeds a bit)
    # everything of the 333×241 image is there (lossless luma; chroma is subsampled)
    gray = cv2.cvtColor(decoded[1][:241, :333], cv2.COLOR_BGR2GRAY).astype(int)
    want = cv2.cvtColor(images[1], cv2.COLOR_BGR2GRAY).astype(int)
    assert np.abs(gray - want).mean() < 3


def test_a_live_recording_with_dropped_frames_keeps_each_frames_pts(tmp_path):
    """Frames 2-4 were dropped by policy `latest`: the file plays at real speed, not faster."""
    sink = VideoSink(VideoSink.Params(path="v.mp4"), Context("video", "cam", tmp_path))
    sink.open(StreamInfo(25.0, 64, 48, live=True))
    times = [10.0, 10.04, 10.08, 10.2, 10.24, 10.2801, 11.0]
    for i, t in enumerate(times):
        sink.write(_frame(i, t))
    sink.close()
    pts, _, _ = _decoded(tmp_path / "v.mp4")
    assert pts == pytest.approx([t - 10.0 for t in times], abs=1 / 90000)
    assert sink.fragmented is True  # live: crash-safe by default


def test_segments_start_at_keyframes_and_are_indexed_and_retention_deletes_the_oldest(tmp_path):
    params = VideoSink.Params(path="rec/{pipeline}/{start:%Y%m%d-%H%M%S}.mp4", segment="1s", max_bytes=10**9)
    sink = VideoSink(params, Context("video", "cam", tmp_path))
    sink.open(StreamInfo(25.0, 64, 48))
    for i in range(90):  # 3.6 s at 25 fps
        sink.write(_frame(i, i / 25))
    sink.close()
    folder = tmp_path / "rec" / "cam"
    index = [json.loads(x) for x in (folder / "segments.jsonl").read_text().splitlines()]
    assert [r["frames"] for r in index] == [25, 25, 25, 15]
    assert [r["pts"] for r in index] == [0.0, 1.0, 2.0, 3.0]
    assert [r["duration"] for r in index] == [1.0, 1.0, 1.0, 0.6]
    assert [r["start_epoch"] for r in index] == pytest.approx([1_700_000_000.0 + k for k in range(4)], abs=1e-3)
    assert all(r["complete"] and r["codec"] == "libx264" for r in index)
    names = [r["path"] for r in index]
    assert names[0].startswith(time.strftime("%Y%m%d-", time.localtime(1_700_000_000)))
    for r in index:
        with av.open(str(folder / r["path"])) as c:
            packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        assert packets[0].is_keyframe and len(packets) == r["frames"]
    # retention by size: keep at most the newest two segments' bytes
    limit = index[2]["bytes"] + index[3]["bytes"]
    idx = rec.SegmentIndex(folder)
    deleted = idx.retain(None, limit, time.time())
    assert deleted == sorted(names[:2])
    assert sorted(p.name for p in folder.glob("*.mp4")) == sorted(names[2:])
    assert [s.path for s in idx.segments()] == names[2:]
    # retention by age
    assert idx.retain(60.0, None, index[3]["end_epoch"] + 61) == sorted(names[2:])
    assert list(folder.glob("*.mp4")) == []


def test_a_segment_left_by_a_killed_run_is_indexed_as_incomplete(tmp_path, caplog):
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "20260101-000000.mp4").write_bytes(b"not a video")
    sink = VideoSink(VideoSink.Params(path="rec/{start:%Y%m%d-%H%M%S}.mp4", segment=600),
                     Context("video", "cam", tmp_path))
    sink.close()
    [seg] = rec.SegmentIndex(folder).segments()
    assert (seg.path, seg.complete, seg.frames) == ("20260101-000000.mp4", False, 0)


LIVE_YAML = """
    pipelines:
      cam:
        source: {{uri: "{url}", policy: all}}
        sinks: [{{video: {{path: out/live.mp4}}}}]
    """


def test_a_live_recording_survives_kill_9_up_to_the_last_fragment(tmp_path):
    from .test_rtsp import RtspServer, _why

    if _why is not None:
        pytest.skip(_why)
    srv = RtspServer()
    url = srv.start()
    try:
        cfg = write(tmp_path / "p.yaml", LIVE_YAML.format(url=url))
        proc = subprocess.Popen([sys.executable, "-m", "streamcnn", "run", str(cfg)], cwd=tmp_path,
                                stderr=subprocess.PIPE, text=True)
        started = None
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "video sink:" in line:
                started = time.monotonic()
                assert "fragmented (crash-safe)" in line  # the default for a live source
                break
        assert started is not None, "the recording did not start"
        time.sleep(6.0)
        elapsed = time.monotonic() - started
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        srv.kill()
    pts, _, _ = _decoded(tmp_path / "out/live.mp4")
    assert len(pts) >= 1
    held = pts[-1] - pts[0] + 1 / 25
    assert held >= elapsed - 2.0 - 0.5, (held, elapsed)  # 0.5 s: the RTSP server's own start-up jitter
    assert all(b > a for a, b in zip(pts, pts[1:]))


def _person(conf: float = 0.9) -> Detections:
    return Detections(np.array([[1, 2, 30, 40]], np.float32), np.array([conf], np.float32), np.array([0]),
                      class_names=["person"])


def test_a_clip_runs_from_pre_roll_before_the_first_trigger_to_post_roll_after_the_last(tmp_path):
    params = ClipSink.Params(path="clips/{start:%H%M%S}.mp4", pre_roll=2.0, post_roll=1.0, classes=["person"], crf=12)
    sink = ClipSink(params, Context("clip", "cam", tmp_path))
    sink.open(StreamInfo(25.0, 64, 48))
    # triggers at frames 100-110 and 125-130 (overlapping post-roll: one clip), and 300 (a second clip)
    hits = set(range(100, 111)) | set(range(125, 131)) | {300}
    for i in range(400):
        det = _person() if i in hits else (_person(0.3) if i == 200 else None)  # conf 0.3: below min_conf
        sink.write(_frame(i, i / 25, det=det))
    sink.close()
    assert len(sink.clips) == 2
    first, second = sink.clips
    pts, images, _ = _decoded(first)
    side = json.loads(first.with_suffix(".json").read_text())
    step = 1 / 25
    assert pts[0] == pytest.approx(0.0, abs=1e-6)
    assert side["first_pts"] == pytest.approx(100 / 25 - 2.0, abs=step)
    assert side["last_pts"] == pytest.approx(130 / 25 + 1.0, abs=step)
    assert len(pts) == round((side["last_pts"] - side["first_pts"]) * 25) + 1
    assert pts[-1] == pytest.approx(side["last_pts"] - side["first_pts"], abs=1e-6)
    # the first shown frame is frame 50 (frame i is grey (i * 37) % 250)
    assert min(range(45, 56), key=lambda i: abs(images[0].mean() - (i * 37) % 250)) == 50
    assert [(t["frame_index"], t["last_frame_index"]) for t in side["triggers"]] == [(100, 110), (125, 130)]
    assert side["triggers"][0]["detections"][0]["class_name"] == "person"
    side2 = json.loads(second.with_suffix(".json").read_text())
    assert side2["first_pts"] == pytest.approx(300 / 25 - 2.0, abs=step)
    assert side2["last_pts"] == pytest.approx(300 / 25 + 1.0, abs=step)
    assert [(t["frame_index"], t["last_frame_index"]) for t in side2["triggers"]] == [(300, 300)]
    assert side2["triggers"][0]["best_conf"] == pytest.approx(0.9)


def test_a_clip_is_triggered_by_events_of_the_chosen_types_zones_and_classes(tmp_path):
    """``events: [crossed]``: the clip spans pre_roll before the first crossing to post_roll after the
    last; an event of another type, zone or class, and detections, trigger nothing."""
    from streamcnn.events import make_event

    params = ClipSink.Params(path="clips/{start:%H%M%S}.mp4", pre_roll=1.0, post_roll=1.0, events=["crossed"],
                             zones=["door"], classes=["person"], crf=12)
    sink = ClipSink(params, Context("clip", "cam", tmp_path))
    sink.open(StreamInfo(25.0, 64, 48))
    for i in range(300):
        frame = _frame(i, i / 25, det=_person())  # detections on every frame: not a trigger with events
        if i in (100, 120):
            sink.event(make_event("crossed", "cam", "test", frame=frame, zone="door", class_name="person",
                                  track_id=7, direction="in"))
        if i == 200:
            sink.event(make_event("crossed", "cam", "test", frame=frame, zone="gate", class_name="person"))
            sink.event(make_event("crossed", "cam", "test", frame=frame, zone="door", class_name="car"))
            sink.event(make_event("entered", "cam", "test", frame=frame, zone="door", class_name="person"))
        sink.write(frame)
    sink.close()
    assert len(sink.clips) == 1
    side = json.loads(sink.clips[0].with_suffix(".json").read_text())
    assert side["first_pts"] == pytest.approx(100 / 25 - 1.0, abs=1 / 25)
    assert side["last_pts"] == pytest.approx(120 / 25 + 1.0, abs=1 / 25)
    assert [(t["frame_index"], t["last_frame_index"]) for t in side["triggers"]] == [(100, 100), (120, 120)]
    ev = side["triggers"][0]["events"][0]
    assert (ev["type"], ev["zone"], ev["track_id"], ev["direction"], ev["frame_index"]) == ("crossed", "door", 7,
                                                                                              "in", 100)


def test_the_ring_holds_only_the_pre_roll_of_packets():
    enc = rec.VideoEncoder(64, 48, 25.0, rec.EncoderSettings(gop=1.0, bframes=False))
    ring = rec.PacketRing(2.0, enc.time_base)
    step = int(1 / (25 * enc.time_base))
    for i in range(250):
        for p in enc.encode(np.full((48, 64, 3), i % 250, np.uint8), i * step, step):
            ring.push(p)
    span = (ring.packets[-1].pts - ring.packets[0].pts) * enc.time_base
    assert 2.0 <= span < 3.0 + 1e-9  # pre-roll plus at most one GOP
    assert ring.packets[0].is_keyframe
    assert ring.bytes == sum(p.size for p in ring.packets)
    enc.close()


def test_images_sink_snapshots_every_n_and_min_interval(tmp_path):
    a = ImagesSink(ImagesSink.Params(path="a/{index:04d}.png", every=3), Context("images", "cam", tmp_path))
    b = ImagesSink(ImagesSink.Params(path="b/{index:04d}.webp", min_interval=0.5, quality=100),
                   Context("images", "cam", tmp_path))
    for i in range(10):
        f = _frame(i, i * 0.2)
        a.write(f)
        b.write(f)
    a.close()
    b.close()
    assert sorted(p.name for p in (tmp_path / "a").glob("*.png")) == ["0000.png", "0003.png", "0006.png",
                                                                     "0009.png"]
    assert sorted(p.name for p in (tmp_path / "b").glob("*.webp")) == ["0000.webp", "0003.webp", "0006.webp",
                                                                      "0009.webp"]
    back = cv2.imread(str(tmp_path / "b" / "0003.webp"))
    assert np.array_equal(back, _frame(3, 0.6).image)  # quality 100: lossless WebP


def test_time_bases_are_frame_exact():
    assert rec.time_base_for(25) == Fraction(1, 90000)
    assert rec.time_base_for(30000 / 1001) == Fraction(1, 90000)  # 3003 ticks per frame
    assert rec.time_base_for(24000 / 1001) == Fraction(1001, 24000000)
    assert rec.time_base_for(25, "mpeg4") == Fraction(1, 1000)


def test_without_pyav_the_video_sink_falls_back_to_opencv(tmp_path):
    code = ("import sys; sys.modules['av'] = None\n"
            "from streamcnn_plugins import sinks\n"
            "print(sinks.VIDEO_SINK.__name__, 'clip' in sinks.streamcnn_sink_types())\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["CvVideoSink", "False"]
