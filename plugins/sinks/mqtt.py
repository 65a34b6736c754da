"""Built-in sink ``mqtt``: every event of the pipeline published to an MQTT broker (paho-mqtt 2.x),
zone counts as retained state, and the pipeline's availability (``online`` / ``offline``)."""

from __future__ import annotations

import collections
import json
import os
import string
import sys
import threading
import time
from typing import Any, Literal

from pydantic import SecretStr, field_validator

from streamcnn import Context, Event, EventSink, Field, Params

#: the placeholders of ``topic`` (taken from the event; one it lacks becomes ``none``)
TOPIC_FIELDS = ("pipeline", "type", "zone", "class_name", "identity", "track_id")
#: those of ``count_topic`` and ``availability_topic``
COUNT_FIELDS = ("pipeline", "zone")
AVAILABILITY_FIELDS = ("pipeline",)
_LOG_EVERY = 100  # a drop is logged the first time, then every 100th
#: (broker, client id) of the mqtt sinks of this process: a default id already taken gets a suffix -2, -3 ...
_CLIENT_IDS: set[tuple[str, str]] = set()
_CLIENT_IDS_LOCK = threading.Lock()
_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})


def _placeholders(template: str, option: str, allowed: tuple[str, ...]) -> list[str]:
    """The placeholders of a topic template; ValueError naming the allowed ones for any other."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{option} {template!r} is not a valid template ({exc}); write placeholders as "
                         f"{{name}}, one of {', '.join(allowed)}") from None
    names = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conv:
            raise ValueError(f"{option} {template!r}: unknown placeholder {{{name}{'!' + conv if conv else ''}"
                             f"{':' + spec if spec else ''}}}; allowed: "
                             f"{', '.join('{' + a + '}' for a in allowed)}")
        names.append(name)
    literal = "".join(text for text, *_ in parsed)
    if not template or "+" in literal or "#" in literal or "\0" in literal:
        raise ValueError(f"{option} {template!r} is not a topic to publish to: it must not be empty nor contain "
                         "the MQTT wildcards + or #")
    return names


def _render(template: str, values: dict[str, Any]) -> str:
    """The topic: each placeholder replaced by the value (``none`` when missing; ``/ + #`` made ``_``)."""
    return template.format_map({k: ("none" if v is None else str(v)).translate(_UNSAFE) or "none"
                                for k, v in values.items()})


def _delivered(info: Any, deadline: float) -> bool:
    """Wait until ``deadline`` (time.monotonic) for a message to be acknowledged; True when it was."""
    try:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        return info.is_published()
    except (ValueError, RuntimeError):  # never queued
        return False


class MqttSink(EventSink):
    """Events to an MQTT broker, zone counts retained, the pipeline's availability (paho-mqtt 2.x).

    Each event (optionally only some ``types``) is published as `streamcnn.Event.to_json`: the
    envelope ``type``, ``pipeline``, ``source``, ``time``, ``epoch``, ``pts``, ``frame_index`` and the
    type's fields.

    Topics (templates; a placeholder the event lacks becomes ``none``; ``/``, ``+`` and ``#`` in a
    value become ``_``):

    - ``topic`` (default ``streamcnn/{pipeline}/{type}``): each event, at ``qos``, retained when
      ``retain``. Placeholders: ``{pipeline}``, ``{type}``, ``{zone}``, ``{class_name}``,
      ``{identity}``, ``{track_id}``.
    - ``count_topic`` (default ``streamcnn/{pipeline}/count/{zone}``; null: none): whenever an event
      carries ``zone`` and ``counts`` (whatever ``types`` says), the counts as JSON
      (``{"inside": 2, "in": 5, "out": 3}``), retained, so a new subscriber learns the current counts.
    - ``availability_topic`` (default ``streamcnn/{pipeline}/availability``; null: none): ``online``
      retained on every (re)connect; ``offline`` retained when the sink closes, and as the last will
      (the broker publishes it when the process dies or the network goes).

    Never blocks the pipeline: the connection is made in the background (``connect_async`` and paho's
    network thread), a broker that is down at start is fine (it connects once the broker is up, then
    reconnects after every outage, waiting ``reconnect_min`` doubling to ``reconnect_max`` seconds),
    and ``event`` only queues. Messages at QoS 1/2 wait in paho's outgoing queue until the broker has
    acknowledged them, across outages, up to ``buffer`` messages; beyond that a message is dropped.
    At QoS 0 paho keeps nothing while disconnected: such a message is dropped too. ``close``
    publishes ``offline``, waits up to ``flush_timeout`` seconds for the queued messages to be
    acknowledged, then disconnects.

    Credentials: ``username`` / ``password`` in the YAML, or ``username_env`` / ``password_env``
    naming environment variables (a variable that is not set is a validation error). They never
    appear in a log line, an error message or a repr.

    Logged (logger ``streamcnn.PIPELINE.mqtt``): INFO ``connected to HOST:PORT as CLIENT_ID`` and
    ``reconnected ... after N s``; WARNING once per outage when the connection is lost (with the
    reason) or the broker cannot be reached; ERROR when the broker refuses the connection (bad
    credentials, client id rejected: once per reason, the sink keeps retrying); WARNING on the first
    dropped message and every 100th, with the total; at close INFO with the totals, WARNING when
    messages were dropped or not delivered within ``flush_timeout``.

    Raises (``check``, at validate time, and again in ``__init__``): ValueError when paho-mqtt 2.x is
    not installed, for an unknown topic placeholder, an environment variable that is not set, both
    ``password`` and ``password_env``, a TLS file that does not exist.
    """

    class Params(Params):
        host: str = Field("127.0.0.1", description="broker host name or address")
        port: int | None = Field(None, ge=1, le=65535, description="broker TCP port (default 1883; 8883 with tls)")
        client_id: str | None = Field(None, description="MQTT client id (default streamcnn-{pipeline}); "
                                      "{pipeline} is replaced")
        username: str | None = Field(None, description="user name for the broker")
        password: SecretStr | None = Field(None, description="password for the broker (prefer password_env)")
        username_env: str | None = Field(None, description="environment variable holding the user name")
        password_env: str | None = Field(None, description="environment variable holding the password")
        tls: bool = Field(False, description="connect with TLS (the system CAs unless ca_certs)")
        ca_certs: str | None = Field(None, description="CA certificate file (PEM) to verify the broker with")
        certfile: str | None = Field(None, description="client certificate file (PEM), for brokers that ask one")
        keyfile: str | None = Field(None, description="the client certificate's key file (PEM)")
        tls_insecure: bool = Field(False, description="do not check that the broker's certificate names the host")
        topic: str = Field("streamcnn/{pipeline}/{type}", description="topic of each event; placeholders "
                           "{pipeline} {type} {zone} {class_name} {identity} {track_id}")
        qos: Literal[0, 1, 2] = Field(1, description="MQTT quality of service of every message: 0, 1 or 2")
        retain: bool = Field(False, description="publish the events retained")
        types: list[str] | None = Field(None, description="only these event types (default: all)")
        count_topic: str | None = Field("streamcnn/{pipeline}/count/{zone}", description="retained zone "
                                        "counts (JSON) of every event with zone and counts; null: off")
        availability_topic: str | None = Field("streamcnn/{pipeline}/availability", description="retained "
                                               "online/offline (offline also as the last will); null: off")
        keepalive: int = Field(30, ge=5, description="MQTT keep-alive in seconds")
        reconnect_min: float = Field(1.0, gt=0, description="first reconnect delay in seconds (doubling)")
        reconnect_max: float = Field(30.0, gt=0, description="longest reconnect delay in seconds")
        buffer: int = Field(1000, ge=1, description="most QoS 1/2 messages waiting for the broker; beyond: dropped")
        flush_timeout: float = Field(5.0, ge=0, description="seconds close waits for the queued messages")

        @field_validator("password", mode="before")
        @classmethod
        def _password_text(cls, v: Any) -> Any:
            """A number is taken as its text; any other non-string is refused without showing it
            (the generic message would quote the value)."""
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return str(v)
            if v is not None and not isinstance(v, (str, SecretStr)):
                raise ValueError("password must be a string (the value is not shown)")
            return v

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        super().check(params, ctx)
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ValueError("the mqtt sink needs paho-mqtt 2.x, which is not installed: pip install "
                             "'paho-mqtt>=2.1'") from None
        if not hasattr(mqtt, "CallbackAPIVersion"):
            raise ValueError("the mqtt sink needs paho-mqtt 2.x; this is an older one: pip install -U "
                             "'paho-mqtt>=2.1'")
        _placeholders(params.topic, "topic", TOPIC_FIELDS)
        if params.count_topic is not None:
            _placeholders(params.count_topic, "count_topic", COUNT_FIELDS)
        if params.availability_topic is not None:
            _placeholders(params.availability_topic, "availability_topic", AVAILABILITY_FIELDS)
        cls.credentials(params)
        if params.reconnect_max < params.reconnect_min:
            raise ValueError(f"reconnect_max ({params.reconnect_max:g} s) is below reconnect_min "
                             f"({params.reconnect_min:g} s)")
        for option in ("ca_certs", "certfile", "keyfile"):
            value = getattr(params, option)
            if value is not None:
                if not params.tls:
                    raise ValueError(f"{option} is given but tls is false: set tls: true")
                if not ctx.resolve(value).is_file():
                    raise ValueError(f"{option}: no such file {ctx.resolve(value)}")
        if params.keyfile is not None and params.certfile is None:
            raise ValueError("keyfile is given without certfile")
        if params.tls_insecure and not params.tls:
            raise ValueError("tls_insecure is given but tls is false: set tls: true")

    @staticmethod
    def credentials(params: Params) -> tuple[str | None, str | None]:
        """(username, password) from the options or their environment variables. Raises ValueError
        (naming the variable, never its value) when a variable is not set or both ways are given."""
        out: list[str | None] = []
        for name, value in (("username", params.username), ("password", params.password)):
            env = getattr(params, f"{name}_env")
            if env is not None:
                if value is not None:
                    raise ValueError(f"give {name} or {name}_env, not both")
                if env not in os.environ:
                    raise ValueError(f"{name}_env: the environment variable {env} is not set")
                out.append(os.environ[env])
            else:
                out.append(value.get_secret_value() if isinstance(value, SecretStr) else value)
        if out[1] is not None and out[0] is None:
            raise ValueError("a password is given without a username (username or username_env)")
        return out[0], out[1]

    def __init__(self, params: Params, ctx: Context) -> None:
        import paho.mqtt.client as mqtt

        super().__init__(params, ctx)
        self.check(params, ctx)
        self._mqtt = mqtt
        self.host = params.host
        self.port = params.port or (8883 if params.tls else 1883)
        self.client_id = (params.client_id or "streamcnn-{pipeline}").replace("{pipeline}", ctx.pipeline)
        with _CLIENT_IDS_LOCK:  # a broker drops a client when another connects with its id: keep them apart
            base, n = self.client_id, 1
            while (f"{self.host}:{self.port}", self.client_id) in _CLIENT_IDS and params.client_id is None:
                n += 1
                self.client_id = f"{base}-{n}"
            _CLIENT_IDS.add((f"{self.host}:{self.port}", self.client_id))
        self.types = None if params.types is None else frozenset(params.types)
        self.where = f"{self.host}:{self.port}"
        self.availability = (None if params.availability_topic is None
                             else _render(params.availability_topic, {"pipeline": ctx.pipeline}))
        self.published = 0  # messages handed to paho (events and counts)
        self.dropped = 0  # messages dropped: the buffer was full, or QoS 0 while not connected
        self._pending: collections.deque[Any] = collections.deque()  # MQTTMessageInfo of QoS >= 1 messages
        self._lock = threading.Lock()  # the connection state below (set on paho's thread)
        self._connected = False
        self._ever_connected = False
        self._down_since: float | None = time.monotonic()
        self._warned_outage = False
        self._known_down = False  # the broker is away or refused us: close does not wait for it
        self._refusals: set[str] = set()
        self._closing = False

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        user, password = self.credentials(params)
        if user is not None:
            client.username_pw_set(user, password)
        if params.tls:
            client.tls_set(ca_certs=str(ctx.resolve(params.ca_certs)) if params.ca_certs else None,
                           certfile=str(ctx.resolve(params.certfile)) if params.certfile else None,
                           keyfile=str(ctx.resolve(params.keyfile)) if params.keyfile else None)
            if params.tls_insecure:
                client.tls_insecure_set(True)
        if self.availability is not None:
            client.will_set(self.availability, "offline", qos=params.qos, retain=True)
        client.reconnect_delay_set(min_delay=params.reconnect_min, max_delay=params.reconnect_max)  # type: ignore
        client.max_queued_messages_set(params.buffer)
        client.suppress_exceptions = True  # a bug in a callback below must not end paho's network thread
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        paho_log = ctx.log.getChild("paho")  # paho's own messages (no credentials), all at DEBUG: its errors
        client.on_log = lambda _c, _u, _level, text: paho_log.debug("%s", text)  # are the ones logged here
        self.client = client
        client.connect_async(self.host, self.port, keepalive=params.keepalive)
        client.loop_start()

    def __repr__(self) -> str:
        return f"<MqttSink {self.where} as {self.client_id}>"

    # -- paho's network thread ----------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            text = str(reason)
            with self._lock:
                new = text not in self._refusals
                self._refusals.add(text)
                self._known_down = True
            if new:
                hint = " (check username/password or username_env/password_env)" if reason.value in (4, 5, 134, 135) \
                    else ""
                self.ctx.log.error("mqtt sink: the broker %s refused the connection as %s: %s%s; retrying every "
                                   "%g-%g s", self.where, self.client_id, text, hint, self.params.reconnect_min,
                                   self.params.reconnect_max)
            return
        with self._lock:
            self._connected, was = True, self._ever_connected
            self._known_down = False
            self._ever_connected, self._warned_outage = True, False
            down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
            self._down_since = None
            self._refusals.clear()
        if self.availability is not None:
            self._publish_availability("online")
        if was:
            self.ctx.log.info("mqtt sink: reconnected to %s as %s after %.1f s", self.where, self.client_id, down)
        else:
            self.ctx.log.info("mqtt sink: connected to %s as %s", self.where, self.client_id)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        exc = sys.exc_info()[1]  # paho calls this while handling the connection's OSError
        self._outage((str(exc) or type(exc).__name__) if exc is not None else "cannot reach the broker")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            was, self._connected = self._connected, False
            if self._down_since is None:
                self._down_since = time.monotonic()
            closing = self._closing
        if was and not closing:  # paho says "Unspecified error" (128) for a connection that just went
            self._outage("connection lost" if getattr(reason, "value", None) == 128 else f"disconnected: {reason}")

    def _outage(self, why: str) -> None:
        with self._lock:
            self._known_down = True
            if self._warned_outage or self._closing:
                return
            self._warned_outage = True
            ever = self._ever_connected
        meanwhile = (f"up to {self.params.buffer} messages (buffer) wait for it" if self.params.qos
                     else "messages are dropped meanwhile (QoS 0)")
        self.ctx.log.warning("mqtt sink: %s %s (%s); retrying every %g-%g s; %s",
                             "lost the connection to" if ever else "cannot connect to", self.where, why,
                             self.params.reconnect_min, self.params.reconnect_max, meanwhile)

    # -- the pipeline thread ------------------------------------------------------------------
    def _publish_availability(self, state: str) -> Any:
        """``online``/``offline`` retained at ``qos`` — at QoS 0 when the queue is full, so that the
        state is never lost behind queued events."""
        assert self.availability is not None
        info = self.client.publish(self.availability, state, qos=self.params.qos, retain=True)
        if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:
            return self.client.publish(self.availability, state, qos=0, retain=True)
        if self.params.qos > 0 and info.rc == self._mqtt.MQTT_ERR_NO_CONN:  # queued by paho: sent once connected
            info.rc = self._mqtt.MQTT_ERR_SUCCESS
        return info

    def _publish(self, topic: str, payload: str, retain: bool, what: str) -> None:
        mqtt = self._mqtt
        info = self.client.publish(topic, payload, qos=self.params.qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or (self.params.qos == 0 and info.rc == mqtt.MQTT_ERR_NO_CONN):
            self.dropped += 1
            if self.dropped == 1 or self.dropped % _LOG_EVERY == 0:
                why = (f"{self.params.buffer} messages are already waiting for the broker (buffer)"
                       if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE else "not connected, and QoS 0 messages are not kept")
                self.ctx.log.warning("mqtt sink: dropped %s: %s; %d dropped so far", what, why, self.dropped)
            return
        self.published += 1
        if self.params.qos > 0:
            if info.rc == mqtt.MQTT_ERR_NO_CONN:  # queued by paho: sent once connected
                info.rc = mqtt.MQTT_ERR_SUCCESS
            self._pending.append(info)
            while self._pending and self._pending[0].is_published():
                self._pending.popleft()
            if len(self._pending) > 2 * self.params.buffer:  # an old one still unacknowledged
                self._pending = collections.deque(i for i in self._pending if not i.is_published())

    def stats(self) -> dict[str, int]:
        """``published`` (messages handed to paho) and ``dropped`` (buffer full, or QoS 0 while away)."""
        return {"published": self.published, "dropped": self.dropped}

    def event(self, event: Event) -> None:
        if self.types is None or event.type in self.types:
            values = {name: event.get(name) for name in TOPIC_FIELDS}
            self._publish(_render(self.params.topic, values), event.to_json(), self.params.retain,
                          f"the event {event.type!r} of frame {event.frame_index}")
        zone, counts = event.get("zone"), event.get("counts")
        if self.params.count_topic is not None and zone is not None and isinstance(counts, dict):
            topic = _render(self.params.count_topic, {"pipeline": event.pipeline, "zone": zone})
            self._publish(topic, json.dumps(counts, separators=(",", ":"), ensure_ascii=False), True,
                          f"the counts of zone {zone!r}")

    def close(self) -> None:
        """Publish ``offline``, wait up to ``flush_timeout`` s for the queued messages to be
        acknowledged, disconnect and stop paho's thread; log the totals."""
        deadline = time.monotonic() + self.params.flush_timeout
        offline = None
        if self.availability is not None:
            offline = self._publish_availability("offline")
        with self._lock:
            connected, known_down = self._connected, self._known_down
        if not connected and known_down:  # the broker is away: nothing can be delivered, do not hold up the stop
            deadline = time.monotonic()
        undelivered = sum(not _delivered(info, deadline) for info in self._pending)
        if offline is not None:
            _delivered(offline, deadline)
        with self._lock:
            self._closing = True
        self.client.disconnect()
        self.client.loop_stop()
        with _CLIENT_IDS_LOCK:
            _CLIENT_IDS.discard((self.where, self.client_id))
        level = self.ctx.log.warning if (undelivered or self.dropped) else self.ctx.log.info
        done = f"{self.published} sent" if self.params.qos == 0 else f"{self.published - undelivered} delivered"
        why = "" if connected or not known_down else ", the broker was not connected at the end"
        level("mqtt sink: %d messages to %s: %s, %d dropped, %d not delivered%s (flush_timeout %g s)",
              self.published + self.dropped, self.where, done, self.dropped, undelivered, why,
              self.params.flush_timeout)


__all__ = ["AVAILABILITY_FIELDS", "COUNT_FIELDS", "TOPIC_FIELDS", "MqttSink"]

