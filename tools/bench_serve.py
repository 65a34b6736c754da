"""Does serving slow the pipelines? Throughput of one pipeline with 0 and with 20 slow MJPEG viewers
(issue 13), side by side in one run.

    python tools/bench_serve.py [--frames 400] [--viewers 20]

The pipeline: vtest.avi-sized frames (a 768×576 test pattern, as fast as it goes) → Sobel edges →
null sink, with the control server up. A slow viewer reads its MJPEG stream 8 KiB every 50 ms
(≈ 160 KiB/s, a phone on a bad link). Prints frames per second without and with the viewers, how
many frames each viewer got, and how many JPEGs were encoded (once per frame watched, not per viewer).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamcnn.config import load_config  # noqa: E402
from streamcnn.engine import Engine  # noqa: E402
from streamcnn.metrics import Metrics  # noqa: E402
from streamcnn.server import ControlServer  # noqa: E402

YAML = """
pipelines:
  cam:
    source: {{uri: pattern, size: 768x576, frames: {frames}}}
    stages: [{{edges: {{kernel: sobel}}}}]
    sinks: [null]
"""


def slow_viewer(port: int, stop: threading.Event, got: list[int], k: int) -> None:
    """Read /api/pipelines/cam/live.mjpg 8 KiB every 50 ms; count the JPEG parts seen."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /api/pipelines/cam/live.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(1.0)
        while not stop.is_set():
            try:
                data = sock.recv(8192)
            except TimeoutError:
                continue
            if not data:
                return
            got[k] += data.count(b"--frame\r\n")
            time.sleep(0.05)


def run(frames: int, viewers: int) -> tuple[float, list[int], int]:
    folder = Path(tempfile.mkdtemp())
    cfg = folder / "p.yaml"
    cfg.write_text(YAML.format(frames=frames))
    engine = Engine(load_config(cfg))
    metrics = Metrics()
    metrics.attach(engine.runs)
    server = ControlServer(lambda: engine.runs, metrics, "127.0.0.1", 0).start()
    stop = threading.Event()
    got = [0] * viewers
    threads = [threading.Thread(target=slow_viewer, args=(server.port, stop, got, k), daemon=True)
               for k in range(viewers)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # connected before the first frame
    engine.run()
    stop.set()
    encoded = server.app.state.view.encoded
    server.stop()
    return engine.runs[0].stats.fps, got, encoded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    alone = [run(args.frames, 0)[0] for _ in range(args.repeat)]
    watched = [run(args.frames, args.viewers) for _ in range(args.repeat)]
    fps0 = statistics.median(alone)
    fps20 = statistics.median(w[0] for w in watched)
    got = watched[len(watched) // 2][1]
    encoded = watched[len(watched) // 2][2]
    print(f"{args.frames} frames of 768x576 → Sobel edges → null, control server up\n")
    print(f"| viewers | frames/s | ratio |\n|---|---|---|\n| 0 | {fps0:.1f} | **1.00** |\n"
          f"| {args.viewers} slow (8 KiB / 50 ms each) | {fps20:.1f} | **{fps20 / fps0:.2f}** |")
    print(f"\neach slow viewer got {min(got)}-{max(got)} of {args.frames} frames; {encoded} JPEGs encoded "
          f"(once per frame watched, for all {args.viewers} viewers together)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
