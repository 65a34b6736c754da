"""Built-in sink ``events_jsonl``: one JSON line per event of the pipeline, each written whole."""

from __future__ import annotations

from streamcnn import Context, Event, EventSink, Field, Params

from .files import LinesSink


class EventsJsonlSink(LinesSink, EventSink):
    """One line per event (`streamcnn.Event.to_dict`: ``type``, ``pipeline``, ``source``, ``time``
    ISO 8601, ``epoch`` s, ``pts`` s, ``frame_index`` and the type's fields), in the order they were
    emitted, optionally only some ``types``.

    Each line goes to the OS at once and whole (``os.write``), so a ``tail -f`` sees every event as
    it happens and the file ends with a complete line after Ctrl-C or ``kill -9``; a write the OS
    refuses raises `SinkWriteError` naming the file (the pipeline stops), the partial line cut off.
    """

    class Params(Params):
        path: str = Field(description="output .jsonl file; folders are created; {pipeline} is replaced")
        types: list[str] | None = Field(None, description="only these event types (default: all)")
        append: bool = Field(False, description="append instead of overwrite")

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.types = None if params.types is None else frozenset(params.types)

    def event(self, event: Event) -> None:
        if self.types is None or event.type in self.types:
            self.out.write_line((event.to_json() + "\n").encode("utf-8"))
