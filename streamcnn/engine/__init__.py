"""The pipeline engine: source → stages → sinks, one thread per pipeline plus its reader thread.

Per frame the engine does a buffer hand-off, the stage calls, the sink calls and one
``streamcnn_frame_done`` hook call; nothing else (see ``tools/bench_engine.py``).

Modules: ``buffer`` (the live-policy frame buffer), ``reader`` (the source reader thread with
stall detection and reconnects), ``pipeline`` (one pipeline's thread), ``runner`` (`Engine`).
"""

from .pipeline import PipelineRun, PipelineStats
from .runner import Engine

__all__ = ["Engine", "PipelineRun", "PipelineStats"]
