import pytest

from streamcnn.redact import redact


@pytest.mark.parametrize("text, expected", [
    ("rtsp://user:secret@192.0.2.10/stream1", "rtsp://***@192.0.2.10/stream1"),
    ("rtsp://user:p@ss@192.0.2.10:554/cam", "rtsp://***@192.0.2.10:554/cam"),
    ("open rtsp://u:pw@h/a and http://x:y@z/b failed", "open rtsp://***@h/a and http://***@z/b failed"),
    ("rtsp://192.0.2.10/cam?user=admin&password=secret&ch=1", "rtsp://192.0.2.10/cam?user=admin&password=***&ch=1"),
    ("http://cam/snap.jpg?PWD=x;token=abc", "http://cam/snap.jpg?PWD=***;token=***"),
    ("rtsp://192.0.2.10/cam/stream1", "rtsp://192.0.2.10/cam/stream1"),
    ("email me@example.com", "email me@example.com"),
])
def test_redact(text, expected):
    assert redact(text) == expected
    assert "secret" not in redact(text)


@pytest.mark.parametrize("text, expected", [
    ("video file rtsp//admin:secret@host/s not found", "video file rtsp//***@host/s not found"),
    ("rtsp:/admin:secret@host/s", "rtsp:/***@host/s"),
    ("rtsp:admin:secret@host/s", "***@host/s"),
    ("rtsp:///admin:secret@host/s", "rtsp:///***@host/s"),
    ("rstp://admin:secret@host/s", "rstp://***@host/s"),
    ("'RTSP://admin:secret@host/s'", "'RTSP://***@host/s'"),
    ("admin:secret@192.0.2.1/s", "***@192.0.2.1/s"),
    ("camera admin:secret@host:554/s failed", "camera ***@host:554/s failed"),
    ("(resolved to /cfg/rtsp/admin:secret@host/s)", "(resolved to /cfg/rtsp/***@host/s)"),
    ("(resolved to /cfg/rtsp:/admin:se@cret@host/s)", "(resolved to /cfg/rtsp:/***@host/s)"),
    ("uri='admin:secret@host'", "uri='***@host'"),
    ("rtsp://admin:secret@host/s and rtsp//u:secret@h/t", "rtsp://***@host/s and rtsp//***@h/t"),
])
def test_redact_mistyped_and_schemeless_urls(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "email me@example.com", "pipelines.a.source: expected a string", "p.yaml:3:13: pipelines.a: x",
    "rtsp://192.0.2.10:554/cam", "rtsp://***@host/s", "at 12:30 the camera@door stopped",
])
def test_redact_leaves_text_without_credentials(text):
    assert redact(text) == text
