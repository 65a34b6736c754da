"""The dashboard page and the live views of the control server.

`LiveView` turns each pipeline's latest frame (the engine keeps a reference, ``PipelineRun.latest``)
into a JPEG only when a viewer asks, once per frame whatever the number of viewers, on the
server's threads — never on the pipeline's. Each viewer's MJPEG stream sends the newest frame when
it is ready for one: a slow viewer skips frames, the pipeline never waits for it.

`PAGE` is one HTML file without a build step or framework: a table of the pipelines (state, fps,
frames, drops, skips, execution providers, last events) refreshed from ``/api/pipelines`` every
second, and an MJPEG ``<img>`` per pipeline.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2

JPEG_QUALITY = 80
MAX_FPS = 15.0  # live view frames per second and pipeline, at most


class LiveView:
    """The latest frame of each pipeline as JPEG, encoded on demand and cached per frame, at most
    ``max_fps`` times a second per pipeline (a pipeline at 200 frames/s is watched at 15: the
    encoding never competes with it for the cores).

    Args:
        quality: JPEG quality (0-100).
        max_fps: most JPEGs per second and pipeline, whatever the number of viewers.
    """

    def __init__(self, quality: int = JPEG_QUALITY, max_fps: float = MAX_FPS) -> None:
        self.quality, self.min_interval = quality, 1.0 / max_fps
        self._cache: dict[int, tuple[int, bytes]] = {}  # id(run) -> (frame_seq, jpeg)
        self._made: dict[int, float] = {}  # id(run) -> monotonic time of its last encode
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.encoded = 0  # JPEGs made (for the tests: once per frame, whatever the viewers)

    def jpeg(self, run: Any) -> tuple[int, bytes] | None:
        """``(frame_seq, JPEG bytes)`` of ``run``'s latest frame, or None before its first frame."""
        with self._guard:
            lock = self._locks.setdefault(id(run), threading.Lock())
        with lock:  # one encode per frame: other viewers wait for it and take the cached bytes
            seq, frame = run.frame_seq, run.latest
            cached = self._cache.get(id(run))
            if cached is not None and (cached[0] == seq or time.monotonic() - self._made[id(run)] < self.min_interval):
                return cached
            if frame is None:
                return None
            ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            self._cache[id(run)] = out = (seq, buf.tobytes())
            self._made[id(run)] = time.monotonic()
            self.encoded += 1
            return out


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamcnn</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 14px system-ui, sans-serif; margin: 16px; background: #fafafa; color: #222; }
 h1 { font-size: 18px; margin: 0 0 12px; }
 table { border-collapse: collapse; margin-bottom: 16px; background: #fff; }
 th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
 th { background: #eee; }
 .running { color: #070; } .failed { color: #b00; } .reconnecting, .connecting { color: #b60; }
 #views { display: flex; flex-wrap: wrap; gap: 12px; }
 figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: 6px; }
 figure img { display: block; width: 320px; background: #000; }
 figcaption { padding-top: 4px; font-weight: 600; }
 #error { color: #b00; }
</style></head>
<body>
<h1>streamcnn</h1>
<div id="error"></div>
<table><thead><tr><th>pipeline</th><th>state</th><th>node</th><th>source</th><th>fps</th><th>frames</th><th>dropped</th>
<th>skipped</th><th>provider</th><th>last events</th><th>error</th></tr></thead><tbody id="rows"></tbody></table>
<div id="views">__VIEWS__</div>
<script>
"use strict";
const views = new Map();
for (const fig of document.querySelectorAll("#views figure")) views.set(fig.dataset.name, fig);
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
}
function events(list) {
  return (list || []).map(e => e.type + (e.zone ? " " + e.zone : "")
    + (e.track_id !== undefined ? " #" + e.track_id : "") + " @" + (e.time || "").slice(11, 19)).join(", ");
}
async function refresh() {
  try {
    const resp = await fetch("/api/pipelines", {cache: "no-store"});
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const pipelines = await resp.json();
    const rows = document.getElementById("rows");
    rows.replaceChildren();
    const names = new Set();
    for (const p of pipelines) {
      names.add(p.name);
      const tr = document.createElement("tr");
      cell(tr, p.name); cell(tr, p.state, p.state);
      cell(tr, (p.node || "") + (p.restarts ? " (" + p.restarts + " restart" + (p.restarts > 1 ? "s" : "") + ")" : ""));
      cell(tr, p.source);
      cell(tr, p.fps_now.toFixed(1)); cell(tr, p.frames_processed); cell(tr, p.frames_dropped);
      cell(tr, p.frames_skipped); cell(tr, Object.values(p.providers).join(", "));
      cell(tr, events(p.last_events)); cell(tr, p.error);
      rows.appendChild(tr);
      if (!views.has(p.name)) {
        const fig = document.createElement("figure");
        fig.dataset.name = p.name;
        const img = document.createElement("img");
        img.alt = p.name;
        img.src = "/api/pipelines/" + encodeURIComponent(p.name) + "/live.mjpg";
        const cap = document.createElement("figcaption");
        cap.textContent = p.name;
        fig.append(img, cap);
        document.getElementById("views").appendChild(fig);
        views.set(p.name, fig);
      }
    }
    for (const [name, fig] of views) if (!names.has(name)) { fig.remove(); views.delete(name); }
    document.getElementById("error").textContent = "";
  } catch (err) {
    document.getElementById("error").textContent = "cannot reach the server: " + err.message;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
"""


def page(names: list[str]) -> str:
    """The dashboard with a live view per pipeline already in the HTML (``names``, escaped), so the
    page's images start loading with it; the script adds the views of pipelines added later."""
    from html import escape
    from urllib.parse import quote

    figures = "".join(
        f'<figure data-name="{escape(n)}"><img alt="{escape(n)}" src="/api/pipelines/{quote(n, safe="")}/live.mjpg">'
        f"<figcaption>{escape(n)}</figcaption></figure>" for n in names)
    return PAGE.replace("__VIEWS__", figures)


__all__ = ["JPEG_QUALITY", "MAX_FPS", "PAGE", "LiveView", "page"]
