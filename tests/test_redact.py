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
