"""The ``mqtt`` event sink against a real mosquitto broker (`tests.mqtt_broker`): exact topics and
payloads, retained counts and availability, the last will, a broker that goes away and comes back,
a full buffer, credentials that never show, TLS."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from streamcnn.config import load_config
from streamcnn.engine import Engine

from .conftest import run_cli, write
from .mqtt_broker import EMIT, MOSQUITTO_PASSWD, Broker, Subscriber, free_port, need_mosquitto, retained, wait_until

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'paho-mqtt>=2.1')")

FAST = "reconnect_min: 0.1, reconnect_max: 0.5"  # tests reconnect quickly


def _config(tmp_path, source: str, emit: str, sinks: str):
    write(tmp_path / "emit_plugin.py", EMIT)
    return write(tmp_path / "p.yaml", f"""
        plugins: [./emit_plugin.py]
        pipelines:
          cam:
            source: {source}
            stages: [{{emit: {emit}}}]
            sinks: {sinks}
        """)


def _ticks(sub: Subscriber) -> list[int]:
    return [json.loads(m.payload)["n"] for m in sub.received("streamcnn/cam/tick")]


def _start(cfg) -> Engine:
    engine = Engine(load_config(cfg))
    engine.start()
    return engine


def _finish(engine: Engine):
    engine.stop()
    engine.wait()
    stats = engine.runs[0].stats
    assert stats.error is None
    return stats


def _messages(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_topics_payloads_qos_retained_counts_and_availability(tmp_path, caplog):
    broker = Broker(tmp_path / "broker").start()
    try:
        live = Subscriber(broker, ["streamcnn/#", "site/#"])
        cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: 8, fps: 10}", "{script: true}", f"""
              - events_jsonl: {{path: events.jsonl}}
              - mqtt: {{port: {broker.port}, {FAST}}}
              - mqtt:
                  port: {broker.port}
                  client_id: second-{{pipeline}}
                  topic: "site/{{pipeline}}/{{type}}/{{zone}}/{{class_name}}/{{track_id}}/{{identity}}"
                  qos: 0
                  types: [crossed]
                  count_topic: null
                  availability_topic: null""")
        with caplog.at_level(logging.INFO, logger="streamcnn"):
            stats = Engine(load_config(cfg)).run()[0]
        assert stats.frames == 8 and stats.error is None
        lines = (tmp_path / "events.jsonl").read_text().splitlines()
        assert [json.loads(x)["type"] for x in lines] == ["appeared", "crossed", "recognised", "entered", "crossed"]
        live.wait(lambda ms: any(m.text == "offline" for m in ms), "offline at close")
        live.close()

        got = live.received()
        # the default sink: each event at QoS 1, byte for byte the events_jsonl line; counts retained
        events = [m for m in got if m.topic.startswith("streamcnn/cam/") and "/count/" not in m.topic
                  and not m.topic.endswith("/availability")]
        assert [m.topic for m in events] == ["streamcnn/cam/appeared", "streamcnn/cam/crossed",
                                             "streamcnn/cam/recognised", "streamcnn/cam/entered",
                                             "streamcnn/cam/crossed"]
        assert [m.text for m in events] == lines
        assert {m.qos for m in events} == {1} and not any(m.retain for m in events)
        first = json.loads(events[1].payload)
        assert first == {**json.loads(lines[1]), "type": "crossed", "pipeline": "cam", "source": "pattern",
                         "pts": 0.2, "frame_index": 2, "zone": "door", "track_id": 7, "class_name": "person",
                         "direction": "in", "counts": {"inside": 1, "in": 1, "out": 0}}
        assert first["time"].endswith("+00:00") and isinstance(first["epoch"], float)
        counts = [(m.topic, json.loads(m.payload)) for m in got if "/count/" in m.topic]
        assert counts == [("streamcnn/cam/count/door", {"inside": 1, "in": 1, "out": 0}),
                          ("streamcnn/cam/count/lot_A", {"inside": 1, "in": 1, "out": 0}),  # "/" made "_"
                          ("streamcnn/cam/count/door", {"inside": 0, "in": 1, "out": 1})]
        assert [m.text for m in got if m.topic == "streamcnn/cam/availability"] == ["online", "offline"]
        # the second sink: only crossed, QoS 0, every placeholder (a missing one is "none")
        second = [m for m in got if m.topic.startswith("site/")]
        assert [(m.topic, m.qos) for m in second] == [("site/cam/crossed/door/person/7/none", 0)] * 2
        assert [m.text for m in second] == [lines[1], lines[4]]

        # a subscriber that comes later is handed the latest counts and the availability, retained
        topics = ["streamcnn/cam/count/door", "streamcnn/cam/count/lot_A", "streamcnn/cam/availability"]
        late = retained(broker, topics)
        assert json.loads(late["streamcnn/cam/count/door"].payload) == {"inside": 0, "in": 1, "out": 1}
        assert late["streamcnn/cam/availability"].text == "offline"
        assert {m.qos for m in late.values()} == {1}

        assert sorted(_messages(caplog, "mqtt sink: connected")) == [
            f"mqtt sink: connected to 127.0.0.1:{broker.port} as second-cam",
            f"mqtt sink: connected to 127.0.0.1:{broker.port} as streamcnn-cam"]
        assert f"mqtt sink: 8 messages to 127.0.0.1:{broker.port}: 8 delivered, 0 dropped, 0 not delivered " \
               "(flush_timeout 5 s)" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        broker.kill()


def test_the_last_will_says_offline_when_the_process_is_killed(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: null, fps: 20, realtime: true}", "{ticks: true}",
                  f"[{{mqtt: {{port: {broker.port}, keepalive: 60}}}}]")
    proc = subprocess.Popen([sys.executable, "-m", "streamcnn", "run", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with Subscriber(broker, "streamcnn/#") as sub:
            sub.wait(lambda ms: len([m for m in ms if m.topic == "streamcnn/cam/tick"]) >= 3, "ticks of the run")
            assert [m.text for m in sub.received("streamcnn/cam/availability")] == ["online"]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(20)
            # no close ran: the broker sends the will as soon as the connection drops (not after keepalive)
            sub.wait(lambda ms: [m.text for m in ms if m.topic.endswith("/availability")] == ["online", "offline"],
                     "the last will")
        assert retained(broker, ["streamcnn/cam/availability"])["streamcnn/cam/availability"].text == "offline"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        broker.kill()


def test_a_broker_that_goes_away_and_comes_back_gets_every_qos1_event(tmp_path, caplog):
    broker = Broker(tmp_path / "broker", persistence=True).start()
    # a persistent session: the broker keeps its QoS 1 messages while it is away, across the restart
    sub = Subscriber(broker, "streamcnn/cam/tick", client_id="recorder", clean_session=False)
    cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: null, fps: 50, realtime: true}", "{ticks: true}",
                  f"[{{mqtt: {{port: {broker.port}, {FAST}, count_topic: null}}}}]")
    try:
        with caplog.at_level(logging.INFO, logger="streamcnn"):
            engine = _start(cfg)
            run = engine.runs[0]
            try:
                wait_until(lambda: len(_ticks(sub)) >= 5, "ticks before the outage")
                broker.stop()  # SIGTERM: it saves the session
                down_at = run.stats.frames
                # the pipeline does not wait for the broker: frames keep going through
                wait_until(lambda: run.stats.frames >= down_at + 30, "frames while the broker is down")
                during = run.stats.frames
                broker.start()
                wait_until(lambda: set(range(during)) <= set(_ticks(sub)), "the ticks queued during the outage")
            finally:
                stats = _finish(engine)
        # every event, the ones emitted while the broker was away included (QoS 1: a duplicate may
        # come for one that was in flight when it went away), in order
        wait_until(lambda: set(range(stats.frames)) <= set(_ticks(sub)), "every tick")
        ticks = _ticks(sub)
        assert sorted(set(ticks)) == list(range(stats.frames))
        assert len(ticks) - stats.frames <= 3
        assert [n for i, n in enumerate(ticks) if i == 0 or n > ticks[i - 1] or n < ticks[i - 1] - 3] == \
               list(range(stats.frames))
        where = f"127.0.0.1:{broker.port}"
        lost = _messages(caplog, "lost the connection")
        assert len(lost) == 1 and lost[0].startswith(f"mqtt sink: lost the connection to {where} (connection lost); ")
        assert len(_messages(caplog, "reconnected to")) == 1
        assert _messages(caplog, f"mqtt sink: {stats.frames} messages to {where}: {stats.frames} delivered, "
                                 "0 dropped, 0 not delivered (flush_timeout")
    finally:
        sub.close()
        broker.kill()


def test_a_full_buffer_drops_the_overflow_and_counts_it_exactly(tmp_path, caplog):
    broker = Broker(tmp_path / "broker", persistence=True).start()
    sub = Subscriber(broker, "streamcnn/#", client_id="recorder", clean_session=False)
    broker.stop()  # down when the pipeline starts
    cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: null, fps: 50, realtime: true}", "{burst: 205}",
                  f"[{{mqtt: {{port: {broker.port}, {FAST}, buffer: 5}}}}]")
    try:
        with caplog.at_level(logging.INFO, logger="streamcnn"):
            engine = _start(cfg)
            run = engine.runs[0]
            try:
                wait_until(lambda: run.stats.frames >= 2, "the burst of frame 0")  # events go before their frame
                broker.start()
                sub.wait(lambda ms: len([m for m in ms if m.topic == "streamcnn/cam/tick"]) >= 5, "the 5 queued")
                sub.wait(lambda ms: any(m.text == "online" for m in ms), "online")
            finally:
                _finish(engine)
        sub.wait(lambda ms: any(m.text == "offline" for m in ms), "offline")
        assert _ticks(sub) == [0, 1, 2, 3, 4]  # the first 5 waited in the buffer, the other 200 were dropped
        # "online" came although the buffer was full (sent at QoS 0 then), "offline" at close
        assert [m.text for m in sub.received("streamcnn/cam/availability")] == ["online", "offline"]
        where = f"127.0.0.1:{broker.port}"
        assert _messages(caplog, "dropped the event") == [
            f"mqtt sink: dropped the event 'tick' of frame 0: 5 messages are already waiting for the broker "
            f"(buffer); {n} dropped so far" for n in (1, 100, 200)]
        assert _messages(caplog, "cannot connect to") == [
            f"mqtt sink: cannot connect to {where} ([Errno 111] Connection refused); retrying every 0.1-0.5 s; up to 5 "
            "messages (buffer) wait for it"]
        assert _messages(caplog, "not delivered") == [
            f"mqtt sink: 205 messages to {where}: 5 delivered, 200 dropped, 0 not delivered (flush_timeout 5 s)"]
    finally:
        sub.close()
        broker.kill()


def test_qos0_while_disconnected_is_dropped_and_close_gives_up_after_flush_timeout(tmp_path, caplog):
    port = Broker(tmp_path / "unused").port  # nothing listens there
    cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: 6}", "{script: true}", f"""
              - mqtt: {{port: {port}, qos: 0, client_id: a, flush_timeout: 0.2}}
              - mqtt: {{port: {port}, qos: 1, client_id: b, flush_timeout: 0.3}}""")
    with caplog.at_level(logging.INFO, logger="streamcnn"):
        stats = Engine(load_config(cfg)).run()[0]
    assert stats.frames == 6 and stats.error is None
    # QoS 0: paho keeps nothing while disconnected; QoS 1: queued, given up on at close
    # the broker was never there: close does not wait for flush_timeout
    assert _messages(caplog, "not delivered") == [
        f"mqtt sink: 8 messages to 127.0.0.1:{port}: 0 sent, 8 dropped, 0 not delivered, the broker was not "
        "connected at the end (flush_timeout 0.2 s)",
        f"mqtt sink: 8 messages to 127.0.0.1:{port}: 0 delivered, 0 dropped, 8 not delivered, the broker was not "
        "connected at the end (flush_timeout 0.3 s)"]
    assert _messages(caplog, "dropped the event") == [
        "mqtt sink: dropped the event 'appeared' of frame 1: not connected, and QoS 0 messages are not kept; "
        "1 dropped so far"]


def _password_broker(tmp_path) -> Broker:
    if MOSQUITTO_PASSWD is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    need_mosquitto()
    passwd = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(passwd), "cam-user-4711", "s3cret-Pa55word"], check=True,
                   capture_output=True)
    passwd.chmod(0o600)
    return Broker(tmp_path / "broker", anonymous=False, extra=f"password_file {passwd}").start()


def test_credentials_from_the_environment_are_used_and_never_shown(tmp_path):
    broker = _password_broker(tmp_path)
    try:
        sub = Subscriber(broker, "streamcnn/#", username="cam-user-4711", password="s3cret-Pa55word")
        cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: 8}", "{script: true}",
                      f"[{{mqtt: {{port: {broker.port}, username_env: MQ_USER, password_env: MQ_PASS}}}}]")
        env = {"MQ_USER": "cam-user-4711", "MQ_PASS": "s3cret-Pa55word"}
        res = run_cli("run", "-v", str(cfg), env=env)
        assert res.returncode == 0, res.stderr
        assert "mqtt sink: connected to" in res.stderr and "DEBUG" in res.stderr  # paho's debug lines too
        out = res.stdout + res.stderr
        assert "s3cret-Pa55word" not in out and "cam-user-4711" not in out
        sub.wait(lambda ms: len([m for m in ms if m.topic == "streamcnn/cam/crossed"]) == 2, "the events")
        sub.close()

        # a variable that is not set: a validation error naming it (exit code 2), before anything runs
        env = {k: v for k, v in os.environ.items() if k != "MQ_PASS"} | {"MQ_USER": "cam-user-4711"}
        res = subprocess.run([sys.executable, "-m", "streamcnn", "validate", str(cfg)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2
        assert "password_env: the environment variable MQ_PASS is not set" in res.stderr
        assert "cam-user-4711" not in res.stdout + res.stderr
    finally:
        broker.kill()


def test_a_wrong_password_is_logged_once_and_the_pipeline_runs_on(tmp_path):
    broker = _password_broker(tmp_path)
    try:
        cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: 40, fps: 100, realtime: true}",
                      "{script: true}", f"""[{{mqtt: {{port: {broker.port}, username: cam-user-4711,
                        password: "wr0ng-Pa55word", {FAST}, flush_timeout: 0.2}}}}]""")
        res = run_cli("run", str(cfg))
        assert res.returncode == 0, res.stderr
        out = res.stdout + res.stderr
        assert "Traceback" not in out and "wr0ng-Pa55word" not in out
        refused = [x for x in res.stderr.splitlines() if "refused the connection" in x]
        assert len(refused) == 1, res.stderr  # once, however often it retried
        assert "ERROR" in refused[0] and f"the broker 127.0.0.1:{broker.port} refused the connection as " \
               "streamcnn-cam: Not authorized (check username/password or username_env/password_env)" in refused[0]
        assert "cam: 40 frames" in out
        assert "8 not delivered, the broker was not connected at the end (flush_timeout 0.2 s)" in res.stderr
    finally:
        broker.kill()


def test_the_password_is_in_no_repr_and_no_error(tmp_path, monkeypatch):
    from plugins.sinks.mqtt import MqttSink
    from streamcnn import ConfigError, Context

    params = MqttSink.Params(username="u", password="hunter2-Secret", port=1)
    assert "hunter2-Secret" not in repr(params) and "hunter2-Secret" not in str(params.model_dump())
    ctx = Context("mqtt", "cam", tmp_path)
    with pytest.raises(ValueError) as err:  # both ways at once
        MqttSink.check(MqttSink.Params(password="hunter2-Secret", password_env="X", username="u"), ctx)
    assert str(err.value) == "give password or password_env, not both"
    for value, problem in ((98765432, None), ([98765432], "password must be a string (the value is not shown)")):
        cfg = write(tmp_path / "v.yaml", f"""
            pipelines:
              cam:
                source: pattern
                sinks: [{{mqtt: {{username: u, password: {value}}}}}]
            """)
        if problem is None:  # a number is its text
            assert load_config(cfg).pipelines["cam"].sinks[0].params.password.get_secret_value() == "98765432"
        else:
            with pytest.raises(ConfigError) as err:
                load_config(cfg)
            assert problem in str(err.value) and "98765432" not in str(err.value)
    monkeypatch.setenv("MQ_PASS", "hunter2-Secret")
    sink = MqttSink(MqttSink.Params(username="u", password_env="MQ_PASS", port=1, flush_timeout=0), ctx)
    try:
        assert "hunter2-Secret" not in repr(sink) and "hunter2-Secret" not in repr(vars(sink))
    finally:
        sink.close()


def test_topic_placeholders_are_checked_at_validate_time(tmp_path):
    cfg = _config(tmp_path, "pattern", "{}", '[{mqtt: {topic: "cams/{camera}/{type}"}}]')
    res = run_cli("validate", str(cfg))
    assert res.returncode == 2
    assert ("topic 'cams/{camera}/{type}': unknown placeholder {camera}; allowed: {pipeline}, {type}, {zone}, "
            "{class_name}, {identity}, {track_id}") in res.stderr
    cfg = _config(tmp_path, "pattern", "{}", '[{mqtt: {topic: "cams/#"}}]')
    res = run_cli("validate", str(cfg))
    assert res.returncode == 2 and "must not be empty nor contain the MQTT wildcards + or #" in res.stderr


def test_tls_with_a_private_ca(tmp_path, caplog):
    need_mosquitto()
    openssl = "/usr/bin/openssl" if os.path.exists("/usr/bin/openssl") else None
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path / "pki"
    d.mkdir()

    def ssl(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=streamcnn test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.crt")
    (d / "server.key").chmod(0o644)  # mosquitto may run as another user
    tls_port = free_port()
    broker = Broker(tmp_path / "broker", extra=f"""
        listener {tls_port} 127.0.0.1
        cafile {d / 'ca.crt'}
        certfile {d / 'server.crt'}
        keyfile {d / 'server.key'}
        """.replace("        ", "")).start()
    try:
        sub = Subscriber(broker, "streamcnn/#")  # on the plain listener
        cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: 8}", "{script: true}",
                      f"[{{mqtt: {{port: {tls_port}, tls: true, ca_certs: pki/ca.crt}}}}]")
        with caplog.at_level(logging.INFO, logger="streamcnn"):
            assert Engine(load_config(cfg)).run()[0].error is None
        sub.wait(lambda ms: len([m for m in ms if m.topic == "streamcnn/cam/crossed"]) == 2, "the events over TLS")
        sub.close()
        assert f"mqtt sink: connected to 127.0.0.1:{tls_port} as streamcnn-cam" in caplog.text
        # a client that does not trust the CA is refused by the TLS handshake and says so, once
        cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: 8}", "{script: true}",
                      f"[{{mqtt: {{port: {tls_port}, tls: true, flush_timeout: 0.2}}}}]")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="streamcnn"):
            assert Engine(load_config(cfg)).run()[0].error is None
        failed = _messages(caplog, f"cannot connect to 127.0.0.1:{tls_port}")
        assert len(failed) == 1 and "certificate verify failed" in failed[0]
    finally:
        broker.kill()



def test_two_mqtt_sinks_with_the_default_client_id_do_not_knock_each_other_off(tmp_path, caplog):
    """A broker drops a client when another connects with its id: the second default id gets -2."""
    with Broker(tmp_path / "broker") as broker:
        cfg = _config(tmp_path, "{uri: pattern, size: 32x24, frames: 20, fps: 20}", "{script: true}", f"""
              - mqtt: {{port: {broker.port}, {FAST}}}
              - mqtt: {{port: {broker.port}, {FAST}, types: [crossed]}}""")
        with caplog.at_level(logging.INFO, logger="streamcnn"):
            stats = Engine(load_config(cfg)).run()[0]
        assert stats.frames == 20 and stats.error is None
        assert sorted(_messages(caplog, "mqtt sink: connected")) == [
            f"mqtt sink: connected to 127.0.0.1:{broker.port} as streamcnn-cam",
            f"mqtt sink: connected to 127.0.0.1:{broker.port} as streamcnn-cam-2"]
        assert not _messages(caplog, "lost the connection")
