"""A real mosquitto broker for the tests (``mosquitto -c CONF`` on 127.0.0.1, a free port, a temp
config) and a recording paho subscriber. Tests skip, saying why, when ``mosquitto`` is not installed
(Debian: ``apt-get install mosquitto mosquitto-clients``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or next(
    (p for p in ("/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd") if os.access(p, os.X_OK)), None)
#: a plugin file for the event sink tests (write it next to the YAML, list it under ``plugins:``): stage
#: ``emit`` with ``script: true`` emits SCRIPT (zone and object events), ``ticks: true`` a ``tick``
#: (``n`` = frame index) per frame, ``burst: N`` N ticks at frame 0
EMIT = '''
import streamcnn

SCRIPT = {
    1: [("appeared", dict(track_id=9, class_name="car", conf=0.9))],
    2: [("crossed", dict(zone="door", track_id=7, class_name="person", direction="in",
                         counts={"inside": 1, "in": 1, "out": 0}))],
    3: [("recognised", dict(track_id=7, identity="alice", similarity=0.8, class_name="person"))],
    4: [("entered", dict(zone="lot/A", track_id=9, class_name="car", counts={"inside": 1, "in": 1, "out": 0}))],
    5: [("crossed", dict(zone="door", track_id=7, class_name="person", direction="out",
                         counts={"inside": 0, "in": 1, "out": 1}))],
}


class Emit(streamcnn.Stage):
    """script: the SCRIPT events; ticks: a "tick" (n = frame index) on every frame; burst: N ticks at frame 0."""

    class Params(streamcnn.Params):
        script: bool = False
        ticks: bool = False
        burst: int = 0

    def process(self, frame):
        if self.params.script:
            for type_, fields in SCRIPT.get(frame.index, []):
                self.ctx.emit(type_, frame, **fields)
        if self.params.ticks:
            self.ctx.emit("tick", frame, n=frame.index)
        if frame.index == 0:
            for n in range(self.params.burst):
                self.ctx.emit("tick", frame, n=n)
        return frame


@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"emit": Emit}
'''

WAIT = 20.0  # seconds any wait for the broker or a message gives up after (a failure, never a pass)


def need_mosquitto() -> str:
    """The mosquitto binary, or skip the test."""
    if MOSQUITTO is None:
        pytest.skip("the mosquitto broker is not installed (apt-get install mosquitto mosquitto-clients)")
    return MOSQUITTO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``predicate`` until it returns something true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class Broker:
    """One mosquitto process on 127.0.0.1:``port`` (a free port unless given), with its config and
    (with ``persistence``) its database in ``folder``; ``extra`` lines are appended to the config
    (e.g. ``password_file``, a second ``listener``). `start` / `stop` (SIGTERM: it saves its
    database) / `kill` (SIGKILL) may be repeated; the port stays the same."""

    def __init__(self, folder: Path, *, port: int | None = None, persistence: bool = False,
                 anonymous: bool = True, extra: str = "") -> None:
        self.binary = need_mosquitto()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        lines = [f"listener {self.port} 127.0.0.1", f"allow_anonymous {'true' if anonymous else 'false'}",
                 "user root" if os.geteuid() == 0 else "", "log_dest stderr", "log_type error",
                 "log_type warning", "log_type notice", "log_type information"]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/", "autosave_interval 0"]
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(filter(None, lines)) + "\n" + extra.strip() + "\n")
        self.log = self.folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        assert self.proc is None, "already running"
        fh = self.log.open("a")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=fh, stderr=subprocess.STDOUT)
        fh.close()
        deadline = time.monotonic() + WAIT
        while True:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"mosquitto exited with {code}: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"mosquitto did not listen on {self.port}: "
                                       f"{self.log.read_text()[-2000:]}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM and wait: mosquitto saves its persistence database (sessions, queued messages)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def _end(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode()


class Subscriber:
    """A paho client subscribed to ``topics`` (at QoS 2) recording every message it receives.

    ``client_id`` with ``clean_session=False`` makes a persistent session: the broker keeps the
    QoS 1/2 messages for it while it is away (also across a broker restart with persistence).
    It reconnects by itself (every 0.1-0.5 s)."""

    def __init__(self, broker: Broker, topics: str | list[str] = "streamcnn/#", *, client_id: str = "",
                 clean_session: bool = True, username: str | None = None, password: str | None = None,
                 port: int | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.topics = [topics] if isinstance(topics, str) else topics
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, port or broker.port)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, "the test subscriber's SUBACK")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 2) for t in self.topics])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def received(self, topic: str | None = None) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait(self, predicate: Callable[[list[Message]], Any], what: str, timeout: float = WAIT) -> Any:
        return wait_until(lambda: predicate(self.received()), what, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def retained(broker: Broker, expect: list[str], **kw: Any) -> dict[str, Message]:
    """What a fresh subscriber to ``expect`` is handed on subscribing: the retained message of each of
    those topics (waits until each came)."""
    with Subscriber(broker, expect, **kw) as sub:
        sub.wait(lambda msgs: {m.topic for m in msgs if m.retain} >= set(expect), f"retained messages on {expect}")
        return {m.topic: m for m in sub.received() if m.retain}


__all__ = ["EMIT", "MOSQUITTO", "MOSQUITTO_PASSWD", "Broker", "Message", "Subscriber", "free_port", "need_mosquitto",
           "retained", "wait_until"]
