"""Frames in flight: a pipeline's leading stateless stages run on several frames at once.

A pipeline whose first stages are ``stateless`` (a detector, a filter: see `streamcnn.Stage`) runs
them on a small pool of worker threads, ``in_flight`` frames at a time, while its pipeline thread
runs the later stages and the sinks of the frames before (drawing, JPEG/H.264 encoding) and its
reader thread decodes the frames after. ONNX Runtime, OpenCV and PyAV release the GIL, so the
steps of consecutive frames overlap on the cores.

The data flow of one pipeline with ``in_flight: 2``::

    reader thread ──buffer──▶ feeder thread ──▶ stage workers (2) ──ordered──▶ pipeline thread
    (read, decode)           (takes a frame     (stateless stages:          (later stages, sinks,
                              when a worker      letterbox, inference,        frame_done, in frame
                              is free)           decode, NMS, ...)            order)

Bounded: the feeder takes a frame from the source buffer only when one of the ``in_flight`` slots
is free, so at most ``in_flight`` frames are in the workers, one more in the pipeline thread, and
the source buffer's policy still holds (under ``latest`` a frame taken is the newest there is, and
its age at the sinks stays bounded by about ``in_flight + 1`` stage times). Ordered: results are
handed to the pipeline thread in the order the frames were taken, whatever order the workers
finish in.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..frame import Frame
from .buffer import BufferClosed, BufferEmpty

#: what a worker returns per frame: the frame, and None or the (error, cause) that stopped it
Outcome = tuple[Frame, Any]

_END = object()  # queued by the feeder after the source's last frame


class InFlight:
    """Run ``work`` on batches of consecutive frames on ``workers`` threads; results in frame order.

    Args:
        take: ``take(timeout)`` returns the next frame (the source buffer's ``get``); raises
            `BufferEmpty` after ``timeout`` seconds without one, `BufferClosed` at the end.
        work: ``work(frames)`` runs the stateless stages on a list of consecutive frames and returns
            one `Outcome` per frame, in order; it must not raise (errors go in the outcome).
        workers: frames (batches) in flight at once, ≥ 1.
        batch: frames per ``work`` call, ≥ 1: after the first frame, up to ``batch - 1`` more that
            are already waiting are taken with it (never waited for).
        name: the pipeline name, for the thread names ``streamcnn-NAME-feeder`` and
            ``streamcnn-NAME-stage_N``.
        more: ``more()`` is False while no further frame should be taken for now (``--max-frames``:
            the frames taken and not failed already reach the limit), default: always True.
    """

    def __init__(self, take: Callable[[float], Frame], work: Callable[[list[Frame]], list[Outcome]],
                 workers: int, batch: int, name: str, more: Callable[[], bool] | None = None) -> None:
        if workers < 1 or batch < 1:
            raise ValueError(f"workers and batch must be ≥ 1, got {workers} and {batch}")
        self._take, self._work, self._batch = take, work, batch
        self._more = more or (lambda: True)
        self._slots = threading.Semaphore(workers)
        self._results: queue.Queue[Future | object] = queue.Queue()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"streamcnn-{name}-stage")
        self._feeder = threading.Thread(target=self._feed, name=f"streamcnn-{name}-feeder", daemon=True)
        self._ended = False
        self.workers = workers
        #: the exception that stopped the feeder (a bug in ``take``), re-raised by `get`
        self.error: BaseException | None = None

    def start(self) -> InFlight:
        """Start the feeder thread (the workers start with the first frame)."""
        self._feeder.start()
        return self

    def _feed(self) -> None:
        try:
            while not self._stopping.is_set():
                if not self._more():
                    self._stopping.wait(0.02)
                    continue
                if not self._slots.acquire(timeout=0.25):
                    continue
                try:
                    frames = [self._take(0.25)]
                except BufferEmpty:
                    self._slots.release()
                    continue
                except BufferClosed:
                    self._slots.release()
                    break
                while len(frames) < self._batch and self._more():
                    try:
                        frames.append(self._take(0))
                    except (BufferEmpty, BufferClosed):
                        break
                try:
                    self._results.put(self._pool.submit(self._work, frames))
                except RuntimeError:  # the pool was shut down by `stop` meanwhile
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the pipeline thread by `get`
            self.error = exc
        finally:
            self._results.put(_END)

    def get(self, timeout: float) -> list[Outcome]:
        """The outcomes of the next batch in frame order (waits for its worker to finish).

        Raises:
            BufferEmpty: nothing came within ``timeout`` seconds (call again).
            BufferClosed: the source ended and every frame taken was handed over.
            BaseException: whatever stopped the feeder (see ``error``).
        """
        if self._ended:
            raise BufferClosed()
        try:
            item = self._results.get(timeout=timeout)
        except queue.Empty:
            raise BufferEmpty() from None
        if item is _END:
            self._ended = True
            if self.error is not None:
                raise self.error
            raise BufferClosed()
        assert isinstance(item, Future)
        try:
            return item.result()
        finally:
            self._slots.release()

    def stop(self) -> None:
        """Stop taking frames, drop the batches not started, wait for the running ones (a stage is
        never closed while a worker still runs it). Idempotent."""
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._feeder.is_alive():
            self._feeder.join()


__all__ = ["InFlight", "Outcome"]
