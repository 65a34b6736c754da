"""Batching across callers: concurrent runs of one model become one run on the stacked inputs.

Several pipelines (or several frames in flight of one pipeline) that use the same model call its
shared `streamcnn.runtime.ModelSession` from their own threads. With ``runtime: {max_batch: N}`` a
session whose inputs have a dynamic batch axis (axis 0) hands those calls to a `Batcher`: the first
caller waits up to ``batch_timeout_ms`` for others (or until N frames are there), runs them as one
batch (inputs concatenated along axis 0), and each caller gets back its own rows of every output,
as if it had run alone. There is no batching thread: the first caller of a batch runs it (the
leader), the others wait for their rows; while one batch runs, the next one collects.

Only calls whose inputs have the same shapes beyond axis 0 (and the same dtypes and outputs asked
for) are batched together; a call that does not fit waits for the next batch. A run that fails is
retried caller by caller, so each caller gets its own error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

RunFn = Callable[[dict[str, np.ndarray], list[str] | None], list[np.ndarray]]


class _Call:
    __slots__ = ("done", "error", "feeds", "key", "lead", "outputs", "result", "rows")

    def __init__(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> None:
        self.feeds, self.outputs = feeds, outputs
        first = next(iter(feeds.values()))
        self.rows = int(first.shape[0])
        self.key = (tuple(outputs) if outputs is not None else None,
                    tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(feeds.items())))
        self.done = threading.Event()
        self.lead = False  # set when this waiting call is to lead the next batch
        self.result: list[np.ndarray] | None = None
        self.error: BaseException | None = None


class Batcher:
    """Collects concurrent runs of one model into batches (see the module docstring).

    Args:
        run: the direct, unbatched run ``run(feeds, output_names) -> outputs`` (thread-safe).
        max_batch: rows per batch, ≥ 2.
        timeout_s: how long the first call of a batch waits for more, in seconds.

    Attributes:
        batches: batches run so far; rows: rows run in them (``rows / batches`` = mean batch size).
    """

    def __init__(self, run: RunFn, max_batch: int, timeout_s: float) -> None:
        if max_batch < 2:
            raise ValueError(f"max_batch must be ≥ 2 to batch, got {max_batch}")
        self._run, self.max_batch, self.timeout_s = run, max_batch, timeout_s
        self._cond = threading.Condition()
        self._waiting: list[_Call] = []
        self._collecting = False
        self.batches = 0
        self.rows = 0

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> list[np.ndarray]:
        """Run ``feeds`` (checked by the caller) in a batch with other concurrent calls; this
        call's outputs, exactly as an unbatched run would return them.

        Raises:
            Whatever the direct run raises for these inputs.
        """
        call = _Call(feeds, output_names)
        if call.rows >= self.max_batch:
            return self._run(feeds, output_names)
        with self._cond:
            self._waiting.append(call)
            if self._collecting:
                if self._rows_like(self._waiting[0]) >= self.max_batch:
                    self._cond.notify_all()
                leader = False
            else:
                self._collecting = True
                leader = True
        if not leader:
            call.done.wait()
            if not call.lead:
                return self._outcome(call)
        self._lead(call)
        return self._outcome(call)

    def _rows_like(self, first: _Call) -> int:
        return sum(c.rows for c in self._waiting if c.key == first.key)

    def _lead(self, me: _Call) -> None:
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while self._rows_like(me) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[_Call] = []
            rows = 0
            rest: list[_Call] = []
            for c in self._waiting:
                if c.key == me.key and rows + c.rows <= self.max_batch:
                    batch.append(c)
                    rows += c.rows
                else:
                    rest.append(c)
            self._waiting = rest
            if rest:  # the first left waiting leads the next batch
                rest[0].lead = True
                rest[0].done.set()
            else:
                self._collecting = False
        self._execute(batch, rows)

    def _execute(self, batch: list[_Call], rows: int) -> None:
        if len(batch) == 1:
            self._single(batch[0])
            return
        feeds = {k: np.concatenate([c.feeds[k] for c in batch]) for k in batch[0].feeds}
        try:
            outs = self._run(feeds, batch[0].outputs)
            if any(o.shape[:1] != (rows,) for o in outs):
                raise ValueError("an output has no batch axis")
        except Exception:  # noqa: BLE001 - retried one by one, so each caller gets its own error
            for c in batch:
                self._single(c)
            return
        self.batches += 1
        self.rows += rows
        at = 0
        for c in batch:
            c.result = [o[at:at + c.rows] for o in outs]
            at += c.rows
            c.done.set()

    def _single(self, c: _Call) -> None:
        try:
            c.result = self._run(c.feeds, c.outputs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            c.error = exc
        c.done.set()

    @staticmethod
    def _outcome(call: _Call) -> Any:
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result


__all__ = ["Batcher"]
