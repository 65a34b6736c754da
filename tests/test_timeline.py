"""`Timeline`: the pts a pipeline sees (strictly increasing seconds) from the timestamps a source gives."""

from __future__ import annotations

import pytest

from streamcnn.engine.timeline import Timeline


def place_all(tl: Timeline, items, fps: float | None = 25.0):
    """``items``: (source pts, reader clock, wall arrival); returns the placed (pts, capture) or None."""
    return [tl.place(pts, now, arrival, fps) for pts, now, arrival in items]


def test_live_stream_pts_keep_the_stream_spacing_not_the_arrival_jitter():
    tl = Timeline(live=True, start=100.0)
    # a burst: four frames 40 ms apart in the stream arrive within 3 ms, 1.5 s after the reader started
    out = place_all(tl, [(7.00, 101.500, 5000.000), (7.04, 101.501, 5000.001),
                         (7.08, 101.502, 5000.002), (7.12, 101.503, 5000.003)])
    assert [p for p, _ in out] == pytest.approx([1.5, 1.54, 1.58, 1.62])
    # capture time: the earliest arrival the stream clock allows (the last frame cannot have been
    # sent later than 5000.003, and the stream says it was 120 ms after the first)
    assert out[-1][1] == pytest.approx(5000.003)
    assert tl.discontinuities == 0


def test_arrival_pts_follow_the_reader_clock():
    tl = Timeline(live=True, start=100.0, use_stream_pts=False)
    out = place_all(tl, [(7.00, 101.5, 1.0), (7.04, 101.501, 1.001), (7.08, 101.6, 1.1)])
    assert [p for p, _ in out] == pytest.approx([1.5, 1.501, 1.6])
    assert [c for _, c in out] == pytest.approx([1.0, 1.001, 1.1])


def test_a_late_frame_keeps_the_time_it_was_sent_at():
    tl = Timeline(live=True, start=0.0)
    place_all(tl, [(0.0, 1.0, 1000.0), (0.04, 1.04, 1000.04)])
    # the stages were slow: the frame of stream time 4.0 is read out 6 s late
    _, capture = tl.place(4.0, 11.0, 1010.0, 25.0)
    assert capture == pytest.approx(1004.0)  # its age at 1010 is 6 s, not 0


@pytest.mark.parametrize("policy, expected, placed", [
    ("drop", [0.0, 0.04, 0.08, None, None, 0.12], 4),
    ("restamp", [0.0, 0.04, 0.08, 0.08 + 1e-6, 0.08 + 2e-6, 0.12], 6),
])
def test_timestamps_that_do_not_increase(policy, expected, placed):
    tl = Timeline(live=False, start=0.0, policy=policy)
    out = place_all(tl, [(0.0, 0, 0), (0.04, 0, 0), (0.08, 0, 0), (0.08, 0, 0), (0.02, 0, 0), (0.12, 0, 0)])
    got = [None if o is None else o[0] for o in out]
    assert got == [None if e is None else pytest.approx(e) for e in expected]
    assert sum(o is not None for o in out) == placed
    assert tl.discontinuities == 2


def test_a_camera_clock_reset_rebases_instead_of_dropping_everything_after_it():
    tl = Timeline(live=False, start=0.0, policy="drop", reset=5.0)
    out = place_all(tl, [(3600.0, 0, 0), (3600.04, 0, 0), (0.0, 0, 0), (0.04, 0, 0), (0.08, 0, 0)])
    assert [o[0] for o in out] == pytest.approx([3600.0, 3600.04, 3600.08, 3600.12, 3600.16])
    assert tl.discontinuities == 1


def test_after_a_reconnect_the_new_stream_continues_at_the_reader_clock():
    tl = Timeline(live=True, start=0.0)
    place_all(tl, [(50.0, 1.0, 0), (50.04, 1.04, 0)])
    tl.new_segment()  # reopened 10 s later: the server's clock restarted at 0
    out = place_all(tl, [(0.0, 11.0, 0), (0.04, 11.04, 0)])
    assert [o[0] for o in out] == pytest.approx([11.0, 11.04])
    assert tl.discontinuities == 0
    tl.new_segment()  # a reconnect whose first frame comes "before" the last one on the reader clock
    assert tl.place(9.0, 10.0, 0, 25.0)[0] == pytest.approx(11.08)  # one frame interval after the last


def test_frames_without_pts():
    live = Timeline(live=True, start=2.0)
    assert [o[0] for o in place_all(live, [(None, 2.5, 0), (None, 2.75, 0)])] == pytest.approx([0.5, 0.75])
    files = Timeline(live=False, start=0.0)
    assert [o[0] for o in place_all(files, [(None, 9, 0), (None, 9, 0)], fps=10)] == pytest.approx([0.0, 0.1])
