"""SourceReader with scripted in-process sources: end of stream, errors, reconnects, stalls."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import numpy as np
import pytest

from streamcnn import Context, Source, SourceError, SourceParams
from streamcnn.engine.buffer import BufferClosed
from streamcnn.engine.reader import SourceReader, backoff_delays
from streamcnn_plugins.sources import PatternSource

from .conftest import take_frames, wait_until

SECRET_URI = "rtsp://user:secret@cam.example/stream"
HANG_MARK = 255  # pixel value of a frame returned by a read() that hung and was abandoned


class ScriptedLiveSource(Source):
    """A live source driven by a script: one entry per ``open()`` (the last one repeats).

    Entries: ``"fail"`` (open raises), or ``(n, end)`` = n frames (None = endless) then ``end``
    in ``"none"`` (read returns None), ``"raise"`` (read raises), ``"hang"`` (read blocks until
    ``unhang`` is set). Source pts restart at 0 on every open (like a camera restarting).
    Every error message deliberately contains the credentials to check the reader removes them.
    """

    live = True

    def __init__(self, params: SourceParams, script: list[Any], period: float = 0.005) -> None:
        super().__init__(params, Context("fake", "p"))
        self.script = script
        self.period = period
        self.opens = 0
        self.closes = 0
        self.unhang = threading.Event()
        self._plan: Any = None
        self._n = 0

    @property
    def fps(self) -> float | None:
        return 1 / self.period

    def open(self) -> None:
        plan = self.script[min(self.opens, len(self.script) - 1)]
        self.opens += 1
        if plan == "fail":
            raise SourceError(f"cannot open {self.params.uri}: connection refused")
        self._plan, self._n = plan, 0

    def read(self) -> tuple[np.ndarray, float | None] | None:
        count, end = self._plan
        if count is None or self._n < count:
            time.sleep(self.period)
            self._n += 1
            return np.full((4, 4, 3), self.opens % 200, np.uint8), (self._n - 1) * self.period
        if end == "none":
            return None
        if end == "raise":
            raise RuntimeError(f"decoder exploded reading {self.params.uri}")
        self.unhang.wait()  # "forever" (until the test ends)
        return np.full((4, 4, 3), HANG_MARK, np.uint8), 0.0

    def close(self) -> None:
        self.closes += 1


def live_params(**kw: Any) -> SourceParams:
    base = dict(uri=SECRET_URI, stall_timeout=0.3, backoff_initial=0.05, backoff_max=0.4)
    base.update(kw)
    return SourceParams(**base)


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, event: str, detail: dict) -> None:
        with self.lock:
            self.items.append((event, detail))

    def names(self) -> list[str]:
        with self.lock:
            return [e for e, _ in self.items]




def test_backoff_delays_sequence():
    assert list(itertools.islice(backoff_delays(1, 30), 8)) == [1, 2, 4, 8, 16, 30, 30, 30]
    assert list(itertools.islice(backoff_delays(0.05, 0.4), 5)) == [0.05, 0.1, 0.2, 0.4, 0.4]


@pytest.mark.parametrize("end", ["none", "raise", "hang"])
def test_one_outage_gives_one_disconnect_and_one_reconnect(end, caplog):
    caplog.set_level(logging.DEBUG)
    src = ScriptedLiveSource(live_params(), [(6, end), "fail", "fail", (None, "none")])
    events = Events()
    delays: list[float] = []
    stop_flag = threading.Event()

    def sleep(seconds: float) -> bool:
        delays.append(seconds)
        return stop_flag.wait(seconds)

    reader = SourceReader(src, "all", 1000, "cam", on_event=events, sleep=sleep).start()
    try:
        assert wait_until(lambda: events.names() == ["disconnected", "reconnected"] and reader.frames > 20)
        frames = take_frames(reader, 20)
        time.sleep(0.1)  # any extra event would show up now
        assert events.names() == ["disconnected", "reconnected"]
        assert reader.reconnects == 1
        assert delays == [0.05, 0.1, 0.2]  # after the outage, after each failed open
        assert [f.index for f in frames] == list(range(20))  # index continues across the reconnect
        pts = [f.pts for f in frames]
        assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), pts
        assert {f.source for f in frames} == {"rtsp://***@cam.example/stream"}
        assert reader.fps == pytest.approx(200)
        detail = events.items[0][1]
        assert detail["source"] == "rtsp://***@cam.example/stream"
        if end == "hang":
            assert detail["reason"] == "no new frame for 0.3 s (stall_timeout)"
            src.unhang.set()  # the abandoned read() returns late: its frame must be discarded
            more = take_frames(reader, 20)
            assert all(int(f.image[0, 0, 0]) != HANG_MARK for f in frames + more)
            assert [f.index for f in more] == list(range(20, 40))
        assert src.closes >= 1  # the failed capture was closed before reopening
    finally:
        src.unhang.set()
        stop_flag.set()
        reader.stop()
        assert reader.join(2)
    text = caplog.text + repr(events.items) + str(reader.error) + str(reader.last_error)
    assert "secret" not in text
    assert "disconnected" in caplog.text  # the outage was logged (redacted)


def test_stop_returns_quickly_while_read_hangs():
    src = ScriptedLiveSource(live_params(stall_timeout=60), [(3, "hang")])
    reader = SourceReader(src, "latest", 1, "cam").start()
    try:
        assert wait_until(lambda: reader.frames == 3)
        time.sleep(0.05)  # now stuck in read()
        t = time.monotonic()
        reader.stop()
        stopped_in = time.monotonic() - t
        assert stopped_in < 0.5
        # join() waits for the capture thread, but only up to its timeout: a read() that never
        # returns is reported (False), not waited for forever
        t = time.monotonic()
        assert not reader.join(0.3)
        assert 0.25 < time.monotonic() - t < 1.5
        assert not reader.running  # the reader thread itself has ended
        reader.get(timeout=0)  # the newest frame is still handed over after stop
        with pytest.raises(BufferClosed):
            reader.get(timeout=1)
        src.unhang.set()  # the read returns: now everything has ended
        assert reader.join(2.0)
        assert reader.frames == 3  # the late frame of the interrupted read is not delivered
    finally:
        src.unhang.set()


def test_stop_interrupts_backoff_wait():
    src = ScriptedLiveSource(live_params(backoff_initial=30, backoff_max=30), ["fail"])
    events = Events()
    reader = SourceReader(src, "latest", 1, "cam", on_event=events).start()
    assert wait_until(lambda: events.names() == ["disconnected"])
    assert events.items[0][1]["first_connect"] is True
    reader.stop()
    assert reader.join(1.0)
    with pytest.raises(BufferClosed):
        reader.get(timeout=1)


def test_live_without_reconnect_ends_with_error(caplog):
    src = ScriptedLiveSource(live_params(reconnect=False), [(4, "raise")])
    events = Events()
    reader = SourceReader(src, "all", 100, "cam", on_event=events).start()
    frames = []
    with pytest.raises(BufferClosed):
        while True:
            frames.append(reader.get(timeout=5))
    assert len(frames) == 4 and events.names() == []
    assert isinstance(reader.error, SourceError)
    assert "decoder exploded" in str(reader.error) and "secret" not in str(reader.error)
    assert "secret" not in caplog.text


# -- non-live ------------------------------------------------------------------------------------
class ListSource(Source):
    """Non-live source yielding the given pts values (None = no pts)."""

    def __init__(self, pts: list[float | None], fail_open: bool = False) -> None:
        super().__init__(SourceParams(uri="file:///user:pw@x"), Context("fake", "p"))
        self.pts, self.fail_open, self.i = pts, fail_open, 0
        self.closed = 0

    def open(self) -> None:
        if self.fail_open:
            raise SourceError("video file clip.mp4 not found (resolved to /nowhere/clip.mp4)")

    def read(self):
        if self.i >= len(self.pts):
            return None
        self.i += 1
        return np.zeros((2, 2, 3), np.uint8), self.pts[self.i - 1]

    def close(self) -> None:
        self.closed += 1


def drain(reader: SourceReader) -> list:
    frames = []
    with pytest.raises(BufferClosed):
        while True:
            frames.append(reader.get(timeout=5))
    return frames


@pytest.mark.parametrize("policy, pts, discontinuities", [
    ("drop", [0.0, 0.5, 0.54], 2),  # the repeated 0.0 and the 0.4 after 0.5 are dropped; None: one frame on
    ("restamp", [0.0, 1e-6, 0.5, 0.5 + 1e-6, 0.5 + 1e-6 + 0.04], 2),
])
def test_non_live_end_of_stream_and_pts_policy(policy, pts, discontinuities):
    src = ListSource([0.0, 0.0, 0.5, 0.4, None])
    src.params = SourceParams(uri="file:///user:pw@x", pts_policy=policy)
    reader = SourceReader(src, "all", 2, "p", clock=lambda: 0.0)
    frames = drain(reader)
    assert [f.index for f in frames] == list(range(len(pts)))  # index counts frames handed over
    assert [f.pts for f in frames] == pytest.approx(pts, abs=1e-9)
    assert reader.pts_discontinuities == discontinuities
    assert reader.error is None and reader.frames == len(pts) and reader.dropped == 0
    assert reader.join(2) and src.closed >= 1


def test_non_live_open_failure_sets_error_and_closes_buffer():
    reader = SourceReader(ListSource([], fail_open=True), "all", 2, "p").start()
    with pytest.raises(BufferClosed):
        reader.get(timeout=5)
    assert isinstance(reader.error, SourceError)
    assert "/nowhere/clip.mp4" in str(reader.error)


def test_pattern_source_through_reader():
    params = PatternSource.Params(uri="pattern", size="64x48", frames=10, fps=10)
    reader = SourceReader(PatternSource(params, Context("pattern", "p")), "all", 3, "p")
    frames = drain(reader)
    assert [f.index for f in frames] == list(range(10))
    assert [f.pts for f in frames] == pytest.approx([i / 10 for i in range(10)])
    assert frames[0].image.shape == (48, 64, 3) and reader.fps == 10
    assert frames[0].capture_time > 1e9 and frames[0].source == "pattern"


# -- stop: no false outage, no new attempt, captures released -------------------------------------
class ClosableLiveSource(Source):
    """A live source like a cv2 capture: ``read()`` returns None once ``close()`` was called."""

    live = True

    def __init__(self, params: SourceParams) -> None:
        super().__init__(params, Context("fake", "p"))
        self.opens = 0
        self.closed = threading.Event()

    def open(self) -> None:
        self.opens += 1
        self.closed.clear()

    def read(self):
        if self.closed.wait(0.005):
            return None
        return np.zeros((4, 4, 3), np.uint8), None

    def close(self) -> None:
        self.closed.set()


@pytest.mark.parametrize("reconnect", [True, False])
def test_stop_is_not_an_outage(reconnect, caplog):
    caplog.set_level(logging.DEBUG, logger="streamcnn")
    for _ in range(5):  # the race (stop's close ends the read) used to report an outage every time
        src = ClosableLiveSource(live_params(reconnect=reconnect))
        events = Events()
        reader = SourceReader(src, "latest", 1, "cam", on_event=events).start()
        assert wait_until(lambda: reader.frames >= 3)  # noqa: B023
        reader.stop()
        assert reader.join(2.0)
        time.sleep(0.1)  # anything late would show up now
        assert events.names() == []
        assert src.opens == 1 and reader.reconnects == 0
        assert reader.error is None and reader.last_error is None
    for word in ("disconnected", "reconnecting", "retrying", "cannot connect", "stream ended"):
        assert word not in caplog.text


def test_stop_during_outage_handling_starts_nothing_new(caplog):
    """stop() arriving while the reader deals with an outage: no event, no log, no new open()."""
    caplog.set_level(logging.DEBUG, logger="streamcnn")
    src = ScriptedLiveSource(live_params(), [(3, "none"), (None, "none")])
    events = Events()
    holder: dict[str, SourceReader] = {}

    class StopOnClose(ScriptedLiveSource):
        def close(self) -> None:
            super().close()
            holder["reader"].stop()  # SIGTERM lands exactly now

    src = StopOnClose(live_params(), [(3, "none"), (None, "none")])
    reader = holder["reader"] = SourceReader(src, "all", 100, "cam", on_event=events,
                                             sleep=lambda s: False).start()  # a sleep that ignores stop
    assert reader.join(2.0)
    time.sleep(0.1)
    assert src.opens == 1
    assert events.names() == [] and reader.error is None
    assert "reconnecting" not in caplog.text and "disconnected" not in caplog.text


def test_stop_in_backoff_sleep_starts_no_new_attempt():
    src = ScriptedLiveSource(live_params(), ["fail"])
    holder: dict[str, SourceReader] = {}

    def sleep(seconds: float) -> bool:
        holder["reader"].stop()
        return False  # as if the wait was not interrupted

    reader = holder["reader"] = SourceReader(src, "latest", 1, "cam", sleep=sleep).start()
    assert reader.join(2.0)
    time.sleep(0.1)
    assert src.opens == 1


class FakeCap:
    """Stands in for a cv2.VideoCapture of a network stream: ``read()`` blocks ``block`` seconds
    once ``slow`` is set (waiting for data within its read timeout) and records its release."""

    def __init__(self) -> None:
        self.slow = threading.Event()
        self.in_slow_read = threading.Event()
        self.released = threading.Event()
        self.released_during_read = False
        self.reading = False
        self.block = 0.4

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return True

    def get(self, prop: int) -> float:
        return 25.0

    def read(self):
        self.reading = True
        try:
            if self.slow.is_set():
                self.in_slow_read.set()
                time.sleep(self.block)
            else:
                time.sleep(0.005)
            return True, np.zeros((4, 4, 3), np.uint8)
        finally:
            self.reading = False

    def release(self) -> None:
        self.released_during_read |= self.reading
        self.released.set()


def test_join_waits_until_an_interrupted_read_released_its_capture():
    from streamcnn_plugins.sources import WebcamSource

    cap = FakeCap()
    src = WebcamSource(WebcamSource.Params(uri=0, stall_timeout=5), Context("s", "p"))
    src._make_capture = lambda: cap  # type: ignore[method-assign]
    events = Events()
    reader = SourceReader(src, "latest", 1, "cam", on_event=events).start()
    assert wait_until(lambda: reader.frames >= 3)
    cap.slow.set()
    assert cap.in_slow_read.wait(2)
    t = time.monotonic()
    reader.stop()
    assert time.monotonic() - t < 0.1  # stop() never blocks
    assert not cap.released.is_set()  # not released under a running read()
    assert reader.join(3.0)
    assert cap.released.is_set()  # join() returned only after the capture was released
    assert not cap.released_during_read
    assert events.names() == []


# -- outage wording -----------------------------------------------------------------------------------
@pytest.mark.parametrize("end, reason", [("none", "stream ended"), ("hang", "no new frame for 0.3 s (stall_timeout)"),
                                         ("raise", "read failed: RuntimeError: decoder exploded")])
def test_outage_reasons_are_distinct(end, reason):
    src = ScriptedLiveSource(live_params(reconnect=False), [(2, end)])
    reader = SourceReader(src, "all", 100, "cam").start()
    try:
        assert wait_until(lambda: not reader.running, 5)
        assert reader.error is not None and reason in str(reader.error)
        assert "within" not in str(reader.error) and "or read failed" not in str(reader.error)
    finally:
        src.unhang.set()
        reader.stop()


def test_slow_read_returning_none_is_a_timeout_not_an_end():
    class SlowNone(ScriptedLiveSource):
        def read(self):
            if self._n < 2:
                return super().read()
            time.sleep(0.25)  # a capture giving up after its read timeout
            return None

    src = SlowNone(live_params(reconnect=False, stall_timeout=0.4), [(None, "none")])
    reader = SourceReader(src, "all", 100, "cam").start()
    assert wait_until(lambda: not reader.running, 5)
    assert "no new frame for" in str(reader.error) and "read timed out" in str(reader.error)
    reader.stop()


def test_never_connected_is_reported_as_cannot_connect(caplog):
    caplog.set_level(logging.INFO, logger="streamcnn")
    src = ScriptedLiveSource(live_params(), ["fail", "fail", (None, "none")])
    events = Events()
    reader = SourceReader(src, "latest", 1, "cam", on_event=events).start()
    try:
        assert wait_until(lambda: events.names() == ["disconnected", "reconnected"])
        assert events.items[0][1]["first_connect"] is True
        assert "connection refused" in events.items[0][1]["reason"]
        assert "open failed" not in events.items[0][1]["reason"]  # a SourceError already says so
    finally:
        reader.stop()
        reader.join(2)
    text = caplog.text
    assert "cannot connect to rtsp://***@cam.example/stream" in text
    assert "(will keep retrying with backoff)" in text
    assert "disconnected" not in text and "reconnected" not in text and "reconnecting" not in text
    assert "retrying rtsp://***@cam.example/stream in 0.05 s" in text
    assert "connected after" in text
    assert "secret" not in text
