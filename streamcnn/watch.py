"""Hot reload (``streamcnn run FILE --serve PORT --watch``): a thread that re-reads FILE when its
text changes and applies the difference to the running engine.

New pipelines start, removed ones stop (sinks flushed and closed), changed ones restart; unchanged
ones keep running undisturbed (same run: their counters go on). A pipeline of the file deleted
through the API stays deleted until its definition in the file changes; one whose name a pipeline
added through the API already uses is not started (logged). A pipeline counts as changed when
its own YAML mapping differs (so does a change of the ``runtime:`` section: it applies to new runs
only). An edit that does not validate is logged with the same messages as ``streamcnn validate``
and ignored: the running pipelines keep going. The file's ``plugins:`` are those it started with
(a change there needs a restart).

A simple poll of the file's text (every ``interval`` s) rather than inotify: it sees editors that
replace the file (write a new one, rename it over the old) as well as in-place writes, also on
network file systems.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .redact import redact
from .yamlpos import load_yaml

log = logging.getLogger("streamcnn.watch")


def _pipelines_of(text: str, file: str) -> dict[str, Any]:
    """Each pipeline's raw YAML mapping (``{}`` when the text does not parse: validation says why)."""
    try:
        data, _ = load_yaml(text, file)
    except ConfigError:
        return {}
    raw = data.get("pipelines") if isinstance(data, dict) else None
    return dict(raw) if isinstance(raw, dict) else {}


class ConfigWatcher:
    """Watches ``file`` and applies its changes to ``engine`` (see the module docstring).

    Args:
        file: the YAML file the run was started from.
        engine: the running `streamcnn.engine.Engine`.
        config: the `Config` it was started with (its plugins are reused).
        interval: seconds between two looks at the file.
    """

    def __init__(self, file: str | Path, engine: Any, config: Any, interval: float = 1.0) -> None:
        self.file, self.engine, self.config, self.interval = Path(file), engine, config, interval
        text = self._read() or ""
        self._digest = hashlib.sha256(text.encode()).hexdigest()
        self._raw = _pipelines_of(text, str(self.file))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0  # edits applied (for tests and logs)
        self.rejected = 0  # edits that did not validate
        self.rejected_last = False
        self._missing = False

    def _read(self) -> str | None:
        try:
            return self.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None  # mid-write or replaced: looked at again next time

    def start(self) -> ConfigWatcher:
        self._thread = threading.Thread(target=self._loop, name="streamcnn-watch", daemon=True)
        self._thread.start()
        log.info("watching %s: edits are applied while the pipelines run", self.file)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive a bad edit or a bug
                log.exception("applying the edit of %s failed", self.file)

    def check(self) -> bool:
        """Look at the file once; apply a change. True when an edit was applied."""
        text = self._read()
        if text is None:
            if not self.file.exists() and not self._missing:
                self._missing = True
                log.warning("%s is gone (deleted or renamed): the pipelines keep running; edits apply again once "
                            "it is back", self.file)
            return False
        self._missing = False
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        from .config import load_config

        try:
            config = load_config(self.file, plugins=self.config.plugins, check=True)
        except ConfigError as exc:
            self.rejected += 1
            self.rejected_last = True
            log.error("%s changed but is not valid; nothing was applied, the pipelines keep running:\n%s",
                      self.file, redact(exc.format()))
            return False
        raw = _pipelines_of(text, str(self.file))
        if self.rejected_last:
            log.info("%s is valid again", self.file)
            self.rejected_last = False
        for name in [n for n in self._raw if n not in config.pipelines]:
            if self.engine.find(name) is not None:
                self.engine.remove(name)
                log.info("pipeline '%s' removed from %s: stopped", name, self.file)
        for name, cfg in config.pipelines.items():
            running = self.engine.find(name)
            if name in self._raw and raw.get(name) == self._raw.get(name):
                continue  # unchanged (also when it was deleted through the API: it stays deleted)
            try:
                if name in self._raw and running is not None:
                    self.engine.remove(name)
                    self.engine.add(cfg)
                    log.info("pipeline '%s' changed in %s: restarted", name, self.file)
                else:
                    self.engine.add(cfg)
                    log.info("pipeline '%s' %s %s: started", name,
                             "changed in" if name in self._raw else "added to", self.file)
            except ValueError as exc:  # a pipeline of that name added through the API runs, or an output clash
                log.error("pipeline '%s' of %s was not started: %s", name, self.file, exc)
        self._raw = raw
        self.config = config
        self.applied += 1
        return True


__all__ = ["ConfigWatcher"]
