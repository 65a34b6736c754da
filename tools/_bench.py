"""Helpers shared by the benchmarks in tools/ (not part of the package)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from streamcnn.config import load_config
from streamcnn.engine import Engine


def guarded(main) -> None:
    """Run a benchmark's ``main``; a user-facing streamcnn error (e.g. a missing model or video)
    is printed as one line, exit code 1, without a traceback."""
    from streamcnn.errors import StreamcnnError

    try:
        main()
    except StreamcnnError as exc:
        raise SystemExit(f"{Path(sys.argv[0]).name}: {exc}") from None


def run_engine(yaml_text: str) -> tuple[int, float]:
    """Run a pipelines YAML (written to a temp dir) through the real Engine; (frames, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(textwrap.dedent(yaml_text))
        config = load_config(cfg)
        t0 = time.perf_counter()
        stats = Engine(config).run()
        seconds = time.perf_counter() - t0
    if stats[0].error:
        raise SystemExit(f"pipeline failed: {stats[0].error}")
    return stats[0].frames, seconds


def median_ms(fn, iters: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``iters`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def report(rows: list[tuple[str, list[float]]], unit: str = "frames/s") -> None:
    """Print one line per variant: median and spread of the repeated measurements."""
    width = max(len(name) for name, _ in rows)
    for name, values in rows:
        med = statistics.median(values)
        print(f"  {name:<{width}}  {med:8.1f} {unit}  (runs: {', '.join(f'{v:.1f}' for v in values)})")
