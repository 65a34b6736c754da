"""Built-in source types: pattern, image folder, video file, webcam errors, type picking."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcnn import Context, SourceError
from streamcnn.config import pick_source_type
from streamcnn_plugins.sources import (
    ImageFolderSource,
    NetworkStreamSource,
    PatternSource,
    VideoFileSource,
    WebcamSource,
    streamcnn_source_types,
)


def read_all(src, limit: int = 10_000) -> list[tuple[np.ndarray, float | None]]:
    src.open()
    out = []
    try:
        while len(out) < limit:
            item = src.read()
            if item is None:
                break
            out.append(item[:2])  # (image, pts); a third item is Frame.meta
    finally:
        src.close()
    return out


def ctx(tmp_path: Path | None = None, name: str = "src") -> Context:
    return Context(name, "p", config_dir=tmp_path or Path.cwd())


# -- pattern ----------------------------------------------------------------------------------------
def test_pattern_frames_size_pts_and_determinism():
    params = PatternSource.Params(uri="pattern", size="160x120", fps=20, frames=30)
    frames = read_all(PatternSource(params, ctx()))
    assert len(frames) == 30
    assert all(img.shape == (120, 160, 3) and img.dtype == np.uint8 for img, _ in frames)
    assert [pts for _, pts in frames] == pytest.approx([i / 20 for i in range(30)])
    assert not np.array_equal(frames[0][0], frames[1][0])  # it moves
    again = read_all(PatternSource(params, ctx()))
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(frames, again, strict=False))  # deterministic


def test_pattern_endless_and_bad_size():
    src = PatternSource(PatternSource.Params(uri="pattern", frames=None, size="32x32"), ctx())
    assert len(read_all(src, limit=300)) == 300
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        PatternSource.Params(uri="pattern", size="640by480")


# -- images -----------------------------------------------------------------------------------------
def test_image_folder_sorted_converted_and_skips_unreadable(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "b_gray.png"), np.full((10, 12), 100, np.uint8))
    cv2.imwrite(str(folder / "a_color.png"), np.full((10, 12, 3), (1, 2, 3), np.uint8))
    bgra = np.zeros((10, 12, 4), np.uint8)
    bgra[..., :3], bgra[..., 3] = (10, 20, 30), 7
    cv2.imwrite(str(folder / "c_alpha.png"), bgra)
    (folder / "bb_broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored")

    src = ImageFolderSource(ImageFolderSource.Params(uri="imgs", fps=10), ctx(tmp_path))
    frames = read_all(src)
    assert len(frames) == 3
    assert all(img.shape == (10, 12, 3) and img.dtype == np.uint8 for img, _ in frames)
    assert [tuple(img[0, 0]) for img, _ in frames] == [(1, 2, 3), (100, 100, 100), (10, 20, 30)]
    assert [pts for _, pts in frames] == pytest.approx([0.0, 0.1, 0.2])
    assert "bb_broken.png" in caplog.text

    glob_src = ImageFolderSource(ImageFolderSource.Params(uri="imgs/[ac]*.png"), ctx(tmp_path))
    assert [tuple(img[0, 0]) for img, _ in read_all(glob_src)] == [(1, 2, 3), (10, 20, 30)]


def test_image_folder_errors(tmp_path):
    with pytest.raises(SourceError, match="no image files"):
        ImageFolderSource(ImageFolderSource.Params(uri="*.png"), ctx(tmp_path)).open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no image files"):
        ImageFolderSource(ImageFolderSource.Params(uri="empty"), ctx(tmp_path)).open()


# -- video file -------------------------------------------------------------------------------------
def write_mp4(path: Path, n: int = 20, size: tuple[int, int] = (64, 48), fps: float = 25.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), i * 10 % 256, np.uint8))
    writer.release()


def test_video_file_frames_and_pts(tmp_path):
    write_mp4(tmp_path / "clip.mp4", n=20)
    src = VideoFileSource(VideoFileSource.Params(uri="clip.mp4"), ctx(tmp_path))
    frames = read_all(src)
    assert len(frames) == 20
    assert src.fps == pytest.approx(25.0)
    assert all(img.shape == (48, 64, 3) and img.dtype == np.uint8 for img, _ in frames)
    pts = [p for _, p in frames]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), pts
    assert pts[0] == pytest.approx(0.0) and pts[-1] == pytest.approx(19 / 25, abs=1e-3)
    # reopen after close starts again from the beginning
    assert len(read_all(src)) == 20


def test_missing_video_file_names_resolved_path(tmp_path):
    src = VideoFileSource(VideoFileSource.Params(uri="sub/missing.mp4"), ctx(tmp_path))
    with pytest.raises(SourceError) as err:
        src.open()
    assert str(tmp_path / "sub" / "missing.mp4") in str(err.value)
    assert "not found" in str(err.value)


def test_undecodable_video_file(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(SourceError, match="cannot open video file"):
        VideoFileSource(VideoFileSource.Params(uri="junk.mp4"), ctx(tmp_path)).open()


# -- webcam / stream --------------------------------------------------------------------------------
def test_missing_webcam_fails_fast_with_clear_message():
    src = WebcamSource(WebcamSource.Params(uri=0), ctx())
    assert src.live
    t = time.monotonic()
    with pytest.raises(SourceError, match=r"^cannot open camera 0 \("):
        src.open()
    assert time.monotonic() - t < 5  # generous: it fails in milliseconds
    assert src.read() is None
    src.close()
    src.close()


def test_stream_open_error_has_no_credentials():
    params = NetworkStreamSource.Params(uri="rtsp://user:secret@127.0.0.1:1/x", open_timeout=2)
    src = NetworkStreamSource(params, ctx())
    assert src.id == "rtsp://***@127.0.0.1:1/x"
    with pytest.raises(SourceError) as err:
        src.open()
    assert "secret" not in str(err.value) and "rtsp://***@127.0.0.1:1/x" in str(err.value)


def test_stream_ffmpeg_options():
    p = NetworkStreamSource.Params(uri="rtsp://h/x", stall_timeout=3, open_timeout=2, transport="udp")
    assert NetworkStreamSource(p, ctx()).ffmpeg_options() == {"rtsp_transport": "udp"}
    src = NetworkStreamSource(NetworkStreamSource.Params(uri="http://h/x.mjpg", stall_timeout=30), ctx())
    assert src.read_timeout == 15 and src.ffmpeg_options() == {}  # a frozen read gives up after 2x: 30 s
    with pytest.raises(ValueError):
        NetworkStreamSource.Params(uri="rtsp://h/x", transport="sctp")


# -- type picking -----------------------------------------------------------------------------------
TYPES = streamcnn_source_types()


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("rtsp://user:pw@10.0.0.2/stream1", "stream"),
        ("rtsps://cam/x", "stream"),
        ("http://cam/video.mjpg", "stream"),
        ("HTTPS://cam/video", "stream"),
        ("rtmp://server/live", "stream"),
        (0, "webcam"),
        ("2", "webcam"),
        ("/dev/video1", "webcam"),
        ("pattern", "pattern"),
        ("frames/*.jpg", "images"),
        ("img_??.png", "images"),
        ("clip.mp4", "file"),
        ("/data/videos/lobby.mkv", "file"),
    ],
)
def test_pick_source_type(uri, expected):
    assert pick_source_type(uri, TYPES) == expected


def test_pick_source_type_folder_relative_to_config_and_plugins(tmp_path):
    (tmp_path / "shots").mkdir()
    assert pick_source_type(str(tmp_path / "shots"), TYPES) == "images"
    assert pick_source_type("shots", TYPES) == "file"  # not next to the cwd
    assert pick_source_type("shots", TYPES, config_dir=tmp_path) == "images"
    assert pick_source_type("pattern", TYPES, config_dir=tmp_path) == "pattern"

    class Thermal(PatternSource):
        @classmethod
        def claims(cls, uri):
            return str(uri).startswith("thermal:")

    class Broken(PatternSource):
        @classmethod
        def claims(cls, uri):
            raise RuntimeError("bug")

    types = {**TYPES, "broken": Broken, "thermal": Thermal}
    assert pick_source_type("thermal:3", types) == "thermal"
    assert pick_source_type("clip.mp4", types) == "file"
    assert pick_source_type("clip.mp4", {"thermal": Thermal}) is None


def test_live_flags():
    assert NetworkStreamSource.live and WebcamSource.live
    assert not (VideoFileSource.live or ImageFolderSource.live or PatternSource.live)


# -- newcomer reports: file:// URIs, registry only for bare names, stream schemes, messages ----------
def test_file_uri_opens_the_local_file(tmp_path):
    write_mp4(tmp_path / "my clip.mp4", n=5)
    uri = (tmp_path / "my clip.mp4").as_uri()  # file:///.../my%20clip.mp4
    assert pick_source_type(uri, TYPES) == "file"
    src = VideoFileSource(VideoFileSource.Params(uri=uri), ctx(Path("/nonexistent")))
    assert src.path == tmp_path / "my clip.mp4"
    assert len(read_all(src)) == 5
    VideoFileSource.check(src.params, src.ctx)
    missing = VideoFileSource(VideoFileSource.Params(uri="file:///nowhere/x.mp4"), ctx(tmp_path))
    with pytest.raises(SourceError, match=r"not found \(resolved to /nowhere/x.mp4\)"):
        missing.open()


def test_registry_fallback_only_for_bare_names(tmp_path, assets):
    # a path with a folder part is never replaced by the registry sample of the same file name
    src = VideoFileSource(VideoFileSource.Params(uri="cams/lobby/vtest.avi"), ctx(tmp_path))
    with pytest.raises(SourceError) as err:
        src.open()
    msg = str(err.value)
    assert str(tmp_path / "cams" / "lobby" / "vtest.avi") in msg and "not found" in msg
    assert "'vtest.avi'" in msg  # hint: the bare name is the registry sample
    with pytest.raises(ValueError, match="cams/lobby/vtest.avi not found"):
        VideoFileSource.check(src.params, src.ctx)
    # a bare name (file name or stem) is a registry sample
    for name in ("vtest.avi", "vtest"):
        bare = VideoFileSource(VideoFileSource.Params(uri=name), ctx(tmp_path))
        VideoFileSource.check(bare.params, bare.ctx)
        assert len(read_all(bare, limit=3)) == 3


def test_missing_registry_video_is_called_a_video_file(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMCNN_ASSETS", str(tmp_path / "assets"))
    (tmp_path / "assets").mkdir()
    monkeypatch.setenv("STREAMCNN_CACHE", str(tmp_path / "cache"))
    src = VideoFileSource(VideoFileSource.Params(uri="vtest.avi"), ctx(tmp_path))
    with pytest.raises(SourceError) as err:
        src.open()  # offline (conftest): no download
    msg = str(err.value)
    assert msg.startswith("video file") and "model '" not in msg and "STREAMCNN_OFFLINE" in msg
    with pytest.raises(FileNotFoundError, match="^video file"):  # a missing asset (MissingAssetError in config)
        VideoFileSource.check(src.params, src.ctx)
    monkeypatch.setenv("STREAMCNN_OFFLINE", "0")
    VideoFileSource.check(src.params, src.ctx)  # downloadable: fine at validate time (nothing fetched)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("uri", ["ftp://h/x.mp4", "srt://cam:9000", "udp://@:1234", "tcp://10.0.0.3:5000",
                                 "rtmps://s/live", "RTSP://cam/x"])
def test_any_network_scheme_is_a_stream(uri):
    assert pick_source_type(uri, TYPES) == "stream"
    assert not ImageFolderSource.claims(uri)


def test_image_folder_via_file_uri_and_meta_file(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8))
    assert ImageFolderSource.claims(folder.as_uri())
    src = ImageFolderSource(ImageFolderSource.Params(uri=folder.as_uri()), ctx(Path("/nonexistent")))
    src.open()
    items = [src.read(), src.read()]
    assert src.read() is None
    assert [item[2]["file"] for item in items] == [str(folder / "a.jpg"), str(folder / "b.png")]
    # through the reader: frame.meta["file"] is the image's path (str)
    from streamcnn.engine.buffer import BufferClosed
    from streamcnn.engine.reader import SourceReader

    reader = SourceReader(ImageFolderSource(src.params, src.ctx), "all", 4, "p").start()
    frames = []
    with pytest.raises(BufferClosed):
        while True:
            frames.append(reader.get(timeout=5))
    assert [f.meta["file"] for f in frames] == [str(folder / "a.jpg"), str(folder / "b.png")]
    assert all(isinstance(f.meta["file"], str) for f in frames)


def test_stream_open_failure_says_what_happened():
    # refused: fails at once, and says so (no "within 10 s")
    src = NetworkStreamSource(NetworkStreamSource.Params(uri="rtsp://127.0.0.1:1/x", open_timeout=10), ctx())
    t = time.monotonic()
    with pytest.raises(SourceError) as err:
        src.open()
    assert time.monotonic() - t < 5
    assert str(err.value) == ("could not open stream rtsp://127.0.0.1:1/x (connection refused: nothing listens on "
                              "that host and port)")
    assert "within" not in str(err.value)
    # a server that accepts the connection but never answers: that is a timeout
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        src = NetworkStreamSource(NetworkStreamSource.Params(uri=f"rtsp://127.0.0.1:{port}/x", open_timeout=0.5),
                                  ctx())
        with pytest.raises(SourceError, match=r"no answer within 0.5 s \(open_timeout"):
            src.open()


# -- validate-time checks (Source.check through load_config(check=True)) ------------------------------
def config_error(tmp_path, source_yaml: str) -> str:
    from streamcnn.config import load_config
    from streamcnn.errors import ConfigError

    path = tmp_path / "p.yaml"
    path.write_text(f"pipelines:\n  lobby:\n    source: {source_yaml}\n    sinks:\n      - null\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, check=True)
    return str(info.value)


def config_ok(tmp_path, source_yaml: str) -> None:
    from streamcnn.config import load_config

    path = tmp_path / "p.yaml"
    path.write_text(f"pipelines:\n  lobby:\n    source: {source_yaml}\n    sinks:\n      - null\n")
    load_config(path, check=True)


def test_check_video_file(tmp_path, monkeypatch):
    msg = config_error(tmp_path, "cams/lobby/vtest.avi")
    assert msg.startswith(f"{tmp_path / 'p.yaml'}:3:")
    assert f"video file cams/lobby/vtest.avi not found (resolved to {tmp_path}/cams/lobby/vtest.avi)" in msg
    write_mp4(tmp_path / "clip.mp4", n=2)
    config_ok(tmp_path, "clip.mp4")
    config_ok(tmp_path, (tmp_path / "clip.mp4").as_uri())
    monkeypatch.setenv("STREAMCNN_ASSETS", str(tmp_path))
    monkeypatch.setenv("STREAMCNN_CACHE", str(tmp_path / "cache"))
    msg = config_error(tmp_path, "Megamind.avi")  # a bare registry name, not local, offline
    assert ":3:" in msg and "video file 'Megamind.avi' not found" in msg and "model '" not in msg
    monkeypatch.setenv("STREAMCNN_OFFLINE", "")
    config_ok(tmp_path, "Megamind.avi")  # downloadable: `run` fetches it


def test_check_images(tmp_path):
    (tmp_path / "shots").mkdir()
    msg = config_error(tmp_path, "{uri: 'shots/*.png', type: images}")
    assert ":3:" in msg and "no image files match shots/*.png" in msg
    msg = config_error(tmp_path, "{uri: shots, type: images}")
    assert ":3:" in msg and "no image files in folder shots" in msg
    msg = config_error(tmp_path, "{uri: nowhere, type: images}")
    assert "image folder nowhere not found" in msg
    cv2.imwrite(str(tmp_path / "shots" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    config_ok(tmp_path, "{uri: 'shots/*.png', type: images}")
    config_ok(tmp_path, "{uri: shots, type: images}")


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="device files are Linux's")
def test_check_webcam(tmp_path):
    if Path("/dev/video9").exists() or Path("/dev/video7").exists():
        pytest.skip("this machine has /dev/video7 or /dev/video9")
    msg = config_error(tmp_path, "/dev/video9")
    assert ":3:" in msg and "camera device /dev/video9 does not exist" in msg
    msg = config_error(tmp_path, "7")
    assert ":3:" in msg and "camera 7: /dev/video7 does not exist" in msg and "plugged in" in msg


def test_check_stream_checks_nothing(tmp_path):
    config_ok(tmp_path, "rtsp://user:pw@nohost.invalid/x")
    config_ok(tmp_path, "srt://nohost.invalid:9000")


def test_param_errors_read_well(tmp_path):
    msg = config_error(tmp_path, "{uri: 'rtsp://cam/x', transport: tpc}")
    assert ":3:" in msg and "expected one of 'tcp', 'udp', got 'tpc'" in msg and "did you mean 'tcp'" in msg
    msg = config_error(tmp_path, "{uri: pattern, frames: 0}")
    assert ":3:" in msg and "≥ 1" in msg and "got 0" in msg
    config_ok(tmp_path, "{uri: pattern, frames: null}")
    msg = config_error(tmp_path, "{uri: pattern, size: 640by480}")
    assert "expected a frame size WIDTHxHEIGHT in pixels, e.g. '640x480', got '640by480'" in msg
    assert "Value error" not in msg
    msg = config_error(tmp_path, "{uri: pattern, size: 8x8}")
    assert "'8x8' is too small" in msg


def test_pattern_realtime_paces_frames_at_fps(monkeypatch):
    from streamcnn_plugins.sources import pattern

    clock = {"t": 100.0}
    slept: list[float] = []
    monkeypatch.setattr(pattern.time, "monotonic", lambda: clock["t"])

    def fake_sleep(s):
        slept.append(round(s, 6))
        clock["t"] += s

    monkeypatch.setattr(pattern.time, "sleep", fake_sleep)
    src = PatternSource(PatternSource.Params(uri="pattern", size="32x24", fps=20, frames=4, realtime=True),
                        ctx(Path(".")))
    pts = [p for _, p in read_all(src)]
    assert pts == [0.0, 0.05, 0.1, 0.15]
    assert slept == [0.05, 0.05, 0.05]  # frame i is handed over at t0 + i/fps
    fast = PatternSource(PatternSource.Params(uri="pattern", size="32x24", fps=20, frames=4), ctx(Path(".")))
    slept.clear()
    assert len(read_all(fast)) == 4 and slept == []


def _mjpeg_avi(path: Path, n: int) -> bytes:
    """An MJPG .avi of ``n`` noise frames (64×48): its header states ``n`` frames; returns its bytes."""
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*"MJPG"), 25, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (48, 64, 3), np.uint8))
    writer.release()
    return path.read_bytes()


def test_a_truncated_video_file_is_warned_about_with_both_counts(tmp_path, caplog):
    """Issue 9 item 18: a file cut off (header: 40 frames, fewer decodable) used to end with no word."""
    import logging

    data = _mjpeg_avi(tmp_path / "whole.avi", 40)
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    cap = cv2.VideoCapture(str(tmp_path / "cut.avi"), cv2.CAP_FFMPEG)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 40
    decodable = 0
    while cap.read()[0]:
        decodable += 1
    cap.release()
    assert 5 < decodable < 30
    with caplog.at_level(logging.WARNING):
        src = VideoFileSource(VideoFileSource.Params(uri="cut.avi"), ctx(tmp_path))
        src.open()
        got = 0
        while src.read() is not None:
            got += 1
        assert got == decodable
        assert src.read() is None  # read again after the end: still one warning
        src.close()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"video file {tmp_path / 'cut.avi'} ended after {decodable} of the 40 frames its header states: the file "
        "is probably truncated or damaged (the rest could not be decoded)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        whole = VideoFileSource(VideoFileSource.Params(uri="whole.avi"), ctx(tmp_path))
        assert len(read_all(whole)) == 40  # a complete file: no warning
        assert len(read_all(whole, limit=10)) == 10  # closed before its end (max_frames, Ctrl-C): none either
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_truncated_vtest_avi_reports_197_of_795_frames(tmp_path, assets, caplog):
    """The case from the issue: vtest.avi cut to a quarter, 795 frames stated, 197 decodable."""
    import logging

    from .conftest import media

    data = media(assets, "vtest.avi").read_bytes()
    (tmp_path / "vtest_cut.avi").write_bytes(data[: len(data) // 4])
    with caplog.at_level(logging.WARNING):
        frames = read_all(VideoFileSource(VideoFileSource.Params(uri="vtest_cut.avi"), ctx(tmp_path)))
    assert len(frames) == 197
    assert f"video file {tmp_path / 'vtest_cut.avi'} ended after 197 of the 795 frames its header states" \
           in caplog.text


def test_an_image_folder_with_no_readable_image_fails_validate_and_run(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    msg = config_error(tmp_path, "frames")
    assert msg.endswith(f"pipelines.lobby.source: image folder frames: its only image file {frames / '0001.jpg'} "
                        "cannot be read as an image (damaged, truncated or not an image)")
    (frames / "0002.png").write_bytes(b"")
    src = ImageFolderSource(ImageFolderSource.Params(uri=str(frames)), ctx())
    src.open()
    with pytest.raises(SourceError, match=r"^image folder .*frames: none of its 2 image files \(first: .*0001.jpg\)"):
        src.read()
