"""FrameBuffer policies, driven deterministically by a simulated clock (plus two threaded checks)."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import pytest

from streamcnn.engine.buffer import BufferClosed, BufferEmpty, BufferFull, FrameBuffer
from streamcnn.frame import Frame

PERIOD_MS, OFFSET_MS, N = 40, 20, 100  # frame i arrives at 40*i + 20 ms


def make_frame(i: int) -> Frame:
    return Frame(image=np.zeros((2, 2, 3), np.uint8), index=i, pts=(PERIOD_MS * i + OFFSET_MS) / 1000)


def simulate(policy: str, ask_times: list[int], maxsize: int = 8) -> tuple[list[tuple[int, int]], int, int]:
    """Run producer puts and consumer gets in simulated-time order; no threads, no sleeps.

    A consumer that asks while nothing new is there blocks and gets the next frame when it is
    put. A producer whose ``put`` would block (policy ``all``, full) stays blocked, holding the
    frames that arrive meanwhile, until the consumer takes one.

    Returns:
        ([(time_ms the consumer got it, frame index), ...], dropped, number of blocked puts)
    """
    buf = FrameBuffer(policy, maxsize)
    puts = [(PERIOD_MS * i + OFFSET_MS, "put", i) for i in range(N)]
    events = sorted(puts + [(t, "ask", -1) for t in ask_times])
    got: list[tuple[int, int]] = []
    pending: deque[Frame] = deque()  # frames the blocked producer still has to hand over
    blocked_puts = 0
    waiting = False  # the consumer is blocked in get()
    remaining_asks = len(ask_times)

    def flush() -> None:
        nonlocal blocked_puts
        while pending:
            try:
                assert buf.put(pending[0], timeout=0)
            except BufferFull:
                blocked_puts += 1
                return
            pending.popleft()

    def take(now: int) -> bool:
        try:
            frame = buf.get(timeout=0)
        except BufferEmpty:
            return False
        got.append((now, frame.index))
        flush()  # a slot freed up: a blocked producer continues
        return True

    for now, kind, i in events:
        if remaining_asks == 0 and not waiting:
            break
        if kind == "put":
            pending.append(make_frame(i))
            flush()
            if waiting and take(now):
                waiting = False
        else:
            remaining_asks -= 1
            waiting = not take(now)
    return got, buf.dropped, blocked_puts


ASKS = [0, 150, 310, 450, 600, 750]


def test_latest_policy_returns_newest_and_counts_drops():
    got, dropped, _ = simulate("latest", ASKS)
    assert [i for _, i in got] == [0, 3, 7, 10, 14, 18]
    assert got[0] == (20, 0)  # asked at 0 ms, blocked until frame 0 arrived at 20 ms
    assert dropped == 13


def test_all_policy_returns_every_frame_with_backpressure():
    got, dropped, blocked = simulate("all", ASKS, maxsize=8)
    assert [i for _, i in got] == [0, 1, 2, 3, 4, 5]
    assert dropped == 0
    assert blocked > 0  # the producer was held back, nothing was thrown away


def test_latest_never_returns_the_same_frame_twice():
    got, _, _ = simulate("latest", [150, 160])
    assert got == [(150, 3), (180, 4)]  # at 160 ms it blocks until frame 4 arrives at 180 ms


def test_latest_get_timeout_zero_raises_after_take():
    buf = FrameBuffer("latest", 1)
    for i in range(4):
        buf.put(make_frame(i))
    assert buf.get(timeout=0).index == 3
    with pytest.raises(BufferEmpty):
        buf.get(timeout=0)
    buf.put(make_frame(4))
    assert buf.get(timeout=0).index == 4
    assert buf.dropped == 3


@pytest.mark.parametrize("policy", ["all", "latest"])
def test_close_drains_then_raises_closed(policy):
    buf = FrameBuffer(policy, 8)
    for i in range(3):
        assert buf.put(make_frame(i))
    buf.close()
    assert buf.closed
    assert not buf.put(make_frame(99))
    expected = [0, 1, 2] if policy == "all" else [2]
    assert [buf.get(timeout=0).index for _ in expected] == expected
    with pytest.raises(BufferClosed):
        buf.get(timeout=0)
    with pytest.raises(BufferClosed):
        buf.get()  # no timeout: must not block once closed


def test_bad_arguments():
    with pytest.raises(ValueError):
        FrameBuffer("newest", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FrameBuffer("all", 0)


def _run_in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def _wait_until_blocked(buf: FrameBuffer, thread: threading.Thread) -> None:
    """Wait (bounded) until ``thread`` waits on the buffer's condition."""
    deadline = time.monotonic() + 5
    while not buf._cond._waiters and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.001)
    assert thread.is_alive()


@pytest.mark.parametrize("policy", ["all", "latest"])
def test_get_wakes_on_put_and_on_close(policy):
    buf = FrameBuffer(policy, 2)
    t, out = _run_in_thread(lambda: buf.get(timeout=10).index)
    _wait_until_blocked(buf, t)
    buf.put(make_frame(7))
    t.join(5)
    assert not t.is_alive() and out == {"value": 7}

    t, out = _run_in_thread(lambda: buf.get(timeout=10))
    _wait_until_blocked(buf, t)
    buf.close()
    t.join(5)
    assert not t.is_alive() and isinstance(out.get("error"), BufferClosed)


def test_blocked_put_wakes_on_get_and_on_close():
    buf = FrameBuffer("all", 1)
    assert buf.put(make_frame(0))
    t, out = _run_in_thread(lambda: buf.put(make_frame(1)))
    _wait_until_blocked(buf, t)
    assert buf.get(timeout=1).index == 0
    t.join(5)
    assert out == {"value": True}

    t, out = _run_in_thread(lambda: buf.put(make_frame(2)))
    _wait_until_blocked(buf, t)
    buf.close()
    t.join(5)
    assert not t.is_alive() and out == {"value": False}
    assert buf.get(timeout=0).index == 1  # drained after close
