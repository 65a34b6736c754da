"""User-facing messages (issue 9 items 6, 21, 22): mistyped stream URLs caught at validate, every
configuration error of a file in one run, and messages in YAML terms, never Python's."""

from __future__ import annotations

import shutil

import pytest

from streamcnn.config import load_config
from streamcnn.errors import ConfigError
from streamcnn_plugins.sources.uri import uri_mistake

from .conftest import assets_dir, need, run_cli, write


def errors_of(path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, check=True)
    return str(info.value).splitlines()


def one_pipeline(tmp_path, source: str, extra: str = "") -> str:
    """The error lines of a one-pipeline file with ``source``, without the ``FILE:`` prefix."""
    path = write(tmp_path / "p.yaml", f"pipelines:\n  a:\n    source: {source}\n{extra}")
    return "\n".join(line.removeprefix(f"{path}:") for line in errors_of(path))


# --- item 6: mistyped stream URLs -------------------------------------------------------------

@pytest.mark.parametrize("uri, message", [
    ("rstp://admin:pw@cam/s", "unknown URL scheme 'rstp' in rstp://***@cam/s — did you mean rtsp://***@cam/s?"),
    ("htps://cam/x.mjpg", "unknown URL scheme 'htps' in htps://cam/x.mjpg — did you mean https://cam/x.mjpg?"),
    ("RTMPP://cam/live", "unknown URL scheme 'RTMPP' in RTMPP://cam/live — did you mean rtmp://cam/live?"),
    ("rtsp//admin:pw@cam/s",
     "rtsp//***@cam/s: '://' after the scheme is missing its ':' — did you mean rtsp://***@cam/s?"),
    ("rtsp:/cam/s", "rtsp:/cam/s: 'rtsp:' needs '//' after it — did you mean rtsp://cam/s?"),
    ("http:cam/x", "http:cam/x: 'http:' needs '//' after it — did you mean http://cam/x?"),
    ("rtsp://u:abc@cam:abc/s", "port 'abc' in rtsp://***@cam:abc/s is not a number (ports are 1 to 65535; without "
                               "one, rtsp uses 554) — did you mean rtsp://***@cam/s?"),
    ("srt://cam:x", "port 'x' in srt://cam:x is not a number (ports are 1 to 65535)"),
    ("rtsp://cam:70000/s", "port 70000 in rtsp://cam:70000/s is out of range (ports are 1 to 65535; without one, "
                           "rtsp uses 554)"),
    ("rtsp://cam:0/s", "port 0 in rtsp://cam:0/s is out of range (ports are 1 to 65535; without one, rtsp uses 554)"),
    ("rtsp:///s", "rtsp:///s has no host: write rtsp://HOST/PATH, e.g. rtsp://192.0.2.10/stream1"),
    ("http://u:p@:80/x", "http://***@:80/x has no host: write http://HOST/PATH, e.g. http://192.0.2.10/"),
])
def test_uri_mistake(uri, message):
    assert uri_mistake(uri) == message


@pytest.mark.parametrize("uri", [
    "rtsp://admin:p@ss@cam:8554/s", "rtsp://[::1]:554/s", "rtsp://cam:/s", "rtp://cam:5004", "udp://@:1234",
    "srt://:9000?mode=listener", "thermal://3", "file:///x.mp4", "videos/a.mp4", "rtsp/clip.mp4", "C:video.mp4",
    "pattern", "0", 0, "/dev/video0", "frames/*.jpg",
])
def test_uri_mistake_leaves_good_uris_alone(uri):
    assert uri_mistake(uri) is None


def test_mistyped_urls_fail_validate_with_the_fix(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: "rtsp//admin:pw@cam/s"
          b:
            source: {uri: "rtsp://cam/s", type: webcam}
          c:
            source: {uri: "rtsp://cam:abc/s", type: images}
          d:
            source: {uri: "http://cam/x", type: file}
        """)
    r = run_cli("validate", str(path))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"{path}:3:13: pipelines.a.source: rtsp//***@cam/s: '://' after the scheme is missing its ':' — did you "
        "mean rtsp://***@cam/s?",
        f"{path}:5:13: pipelines.b.source: type: webcam reads a local camera: an index such as 0, or a /dev/video* "
        "path, but rtsp://cam/s is a network stream URL: write `type: stream`, or leave `type` out",
        f"{path}:7:13: pipelines.c.source: port 'abc' in rtsp://cam:abc/s is not a number (ports are 1 to 65535; "
        "without one, rtsp uses 554) — did you mean rtsp://cam/s?",
        f"{path}:9:13: pipelines.d.source: type: file reads a local video file (a path or file:// URI), but "
        "http://cam/x is a network stream URL: write `type: stream`, or leave `type` out",
    ]


def test_pattern_type_needs_uri_pattern(tmp_path):
    assert one_pipeline(tmp_path, "{uri: clip.mp4, type: pattern}") == (
        "3:13: pipelines.a.source: type: pattern makes its own frames: write `uri: pattern` (got clip.mp4)")


# --- item 21: every error of a file in one run ------------------------------------------------

def test_bad_on_error_does_not_hide_bad_size_or_stage(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: {uri: pattern, size: 0x0}
            stages: [{edges: {kernel: sobelx}}]
            on_error: skp
          b:
            source: pattern
            stagess: []
            sinks: [{jsonl: {path: out.jsonl}}]
          c:
          d:
            source: pattern
            sinks: [{jsonl: {path: out.jsonl}}]
        """)
    lines = [line.removeprefix(f"{path}:") for line in errors_of(path)]
    assert lines[0] == ("3:34: pipelines.a.source.size: frame size '0x0' is too small: WIDTHxHEIGHT must both be "
                        "≥ 16 pixels, e.g. '640x480'")
    assert lines[1].startswith("4:31: pipelines.a.stages[0].edges.kernel: expected one of 'vertical', ")
    assert lines[1].endswith(", got 'sobelx' — did you mean 'sobel_x'?")
    assert lines[2:] == [
        "5:15: pipelines.a.on_error: expected one of 'skip', 'stop', got 'skp' — did you mean 'skip'?",
        "8:5: pipelines.b.stagess: unknown key 'stagess' for pipeline 'b' — did you mean 'stages'? (keys: batch, "
        "group, in_flight, on_error, optional, resources, sinks, source, stages)",
        "10:5: pipelines.c: expected a mapping, got an empty value",
        f"13:13: pipelines.d.sinks[0].jsonl: jsonl sink writes {tmp_path / 'out.jsonl'}, which the jsonl sink of "
        "pipeline 'b' (pipelines.b.sinks[0].jsonl, line 9) writes too; give each sink its own path",
    ]


def test_missing_plugin_file_does_not_hide_other_errors(tmp_path):
    path = write(tmp_path / "p.yaml", """
        plugins: [./nope.py]
        pipelines:
          a:
            source: {uri: pattern, fps: 0}
        """)
    assert errors_of(path) == [
        f"{path}:1:11: plugin file './nope.py' not found (resolved to {tmp_path / 'nope.py'})",
        f"{path}:4:33: pipelines.a.source.fps: expected a number > 0, got 0",
    ]


def test_chain_check_runs_although_other_stages_have_errors(tmp_path):
    need(assets_dir() / "models" / "mobilefacenet_128d.onnx")
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: {uri: pattern, fps: -1}
            stages:
              - face_recognize: {database: faces.npz}
              - edges: {kernel: nope}
            sinks: [{jsonl: {path: a.jsonl, bogus: 1}}]
        """)
    lines = [line.removeprefix(f"{path}:") for line in errors_of(path)]
    assert len(lines) == 4
    assert lines[0] == "3:33: pipelines.a.source.fps: expected a number > 0, got -1"
    assert lines[1] == ("5:9: pipelines.a.stages[0].face_recognize: face_recognize needs a face_detect stage before "
                        "it (face boxes); order: face_detect → [landmarks] → face_recognize")
    assert lines[2].startswith("6:25: pipelines.a.stages[1].edges.kernel: expected one of ")
    assert lines[3] == "7:37: pipelines.a.sinks[0].jsonl.bogus: unknown option 'bogus' for sink 'jsonl' (options: append, path)"


def test_chain_check_waits_for_an_invalid_stage_before_it(tmp_path):
    need(assets_dir() / "models" / "mobilefacenet_128d.onnx")
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: pattern
            stages:
              - face_detect: {model: nope.onnx}
              - face_recognize: {database: faces.npz}
        """)
    lines = errors_of(path)
    assert len(lines) == 1  # face_detect's options are valid: face_recognize has its detector
    assert lines[0].startswith(f"{path}:5:9: pipelines.a.stages[0].face_detect: model 'nope.onnx' not found")


# --- item 22: YAML terms, suggestions, safe hints ---------------------------------------------

@pytest.mark.parametrize("yaml_text, message", [
    ("pipelines: {a: }", "1:15: pipelines.a: expected a mapping, got an empty value"),
    ("pipelines: {a: {source: }}",
     "1:24: pipelines.a.source: expected a string, an integer or a mapping, got an empty value"),
    ("pipelines: {a: {source: [pattern]}}",
     "1:25: pipelines.a.source: expected a string, an integer or a mapping, got a list ([pattern])"),
    ("pipelines: {a: {source: pattern, stages: [{~: {}}]}}",
     "1:43: pipelines.a.stages[0].null: expected a stage name (a string) as the key, got null; write e.g. "
     "`- edges: {kernel: sobel}`"),
    ("pipelines: {a: {source: pattern, stages: [~]}}",
     "1:43: pipelines.a.stages[0]: expected a stage name or a mapping {stage_name: {options}}, got an empty value"),
    ("pipelines: {a: {source: pattern, stages: [{edges: {stride: {a: 1}}}]}}",
     "1:60: pipelines.a.stages[0].edges.stride: expected an integer ≥ 1, got a mapping ({a: 1})"),
    ("pipelines: {a: {source: pattern, stages: [{edges: [1, ~]}]}}",
     "1:51: pipelines.a.stages[0].edges: options of stage 'edges' must be a mapping (option: value), got a list "
     "([1, null])"),
    ("pipelines: {a: {source: pattern, stages: {edges: {}}}}",
     "1:42: pipelines.a.stages: expected a list, got a mapping ({edges: {}})"),
    ("pipelines: {a: {source: pattern, sinks: [{~: {}, x: 1}]}}",  # an empty sink key is the null sink
     "1:42: pipelines.a.sinks[0]: a sink entry must have exactly one key, the sink name; got 'null', 'x'. Start each "
     "sink with '- '"),
    ("pipelines: {a: {source: {uri: }}}",
     "1:30: pipelines.a.source.uri: expected a uri (a file, folder, camera index, rtsp:// URL or 'pattern'), got "
     "an empty value"),
    ("pipelines: {a: {source: {uri: [1]}}}",
     "1:31: pipelines.a.source.uri: expected a uri (a file, folder, camera index, rtsp:// URL or 'pattern'), got "
     "a list ([1])"),
    ("pipelines: {a: {source: {uri: pattern, realtime: yes please}}}",
     "1:50: pipelines.a.source.realtime: expected true or false, got 'yes please'"),
    ("plugins: [~]\npipelines: {a: {source: pattern}}", "1:11: plugins[0]: expected a string, got an empty value"),
    ("pipelines: {~: {source: pattern}}", "1:13: pipelines.null: expected a name (a string) as the key, got null"),
])
def test_messages_read_as_yaml(tmp_path, yaml_text, message):
    path = write(tmp_path / "p.yaml", yaml_text + "\n")
    r = run_cli("validate", str(path))
    assert r.returncode == 2
    assert r.stderr == f"{path}:{message}\n"  # nothing else: no "claims() raised" warning, no traceback


def test_patern_suggests_pattern(tmp_path):
    msg = one_pipeline(tmp_path, "patern")
    assert msg.startswith("3:13: pipelines.a.source: video file patern not found — did you mean 'pattern' (the "
                          f"synthetic test pattern)? Looked in: {tmp_path / 'patern'}, ")


def test_plugins_options_of_a_plugin_file_stage_says_to_add_c(tmp_path):
    plugin = write(tmp_path / "my_plugins.py", '''
        import streamcnn


        class Blur(streamcnn.Stage):
            """Box blur."""

            class Params(streamcnn.Params):
                ksize: int = streamcnn.Field(5, ge=1, description="kernel side in pixels")

            def process(self, frame):
                return frame


        @streamcnn.hookimpl
        def streamcnn_stage_types():
            return {"blur": Blur}
        ''')
    cfg = write(tmp_path / "p.yaml", f"plugins: [{plugin}]\npipelines: {{a: {{source: pattern}}}}\n")
    r = run_cli("plugins", "-o", "blur")
    assert r.returncode == 2
    assert r.stderr.startswith("no stage, source or sink named 'blur'. Known: annotate, ")
    assert r.stderr.endswith(". A type from a plugin file is known only with the YAML file that lists it in "
                             "plugins: `streamcnn plugins -c FILE -o blur`\n")
    r = run_cli("plugins", "-c", str(cfg), "-o", "blur")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "stage blur — Box blur.\n    ksize: an integer ≥ 1; default 5 — kernel side in pixels\n\n"


def test_faces_hints_never_overwrite_a_photo(tmp_path, assets):
    photo = tmp_path / "dog.jpg"
    shutil.copy(assets / "media" / "dog.jpg", photo)
    before = photo.read_bytes()
    expected = (f"error: {photo} is not a streamcnn face database (it is a JPEG image); a face database is made "
                f"with `streamcnn faces enroll PEOPLE_DIR --out {tmp_path / 'dog.npz'}` (a new file)\n")
    for args in (["list", str(photo)], ["remove", str(photo), "bob"]):
        r = run_cli("faces", *args)
        assert (r.returncode, r.stderr) == (2, expected)
    (tmp_path / "people" / "bob").mkdir(parents=True)
    shutil.copy(photo, tmp_path / "people" / "bob" / "1.jpg")
    r = run_cli("faces", "enroll", str(tmp_path / "people"), "--out", str(photo), "--fresh")
    assert (r.returncode, r.stderr) == (2, f"error: --out {photo} exists and is not overwritten: {expected[7:]}")
    assert photo.read_bytes() == before
    (tmp_path / "dog.npz").write_bytes(b"PK\x03\x04")  # a database next to it: that is what was meant
    r = run_cli("faces", "list", str(photo))
    assert r.stderr == f"error: {photo} is not a streamcnn face database (it is a JPEG image); did you mean " \
                       f"{tmp_path / 'dog.npz'}?\n"


def test_offline_registry_style_image_says_it_can_be_downloaded(tmp_path):
    models = assets_dir() / "models"
    need(models / "style_arbitrary_predict.onnx", models / "style_arbitrary_transform.onnx")
    own = tmp_path / "assets" / "models"  # the models, but not the picture
    own.mkdir(parents=True)
    for name in ("style_arbitrary_predict.onnx", "style_arbitrary_transform.onnx"):
        (own / name).symlink_to(models / name)
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: {uri: pattern, size: 64x64}
            stages: [{style: {style_image: starry_night.jpg}}]
        """)
    r = run_cli("validate", "-q", str(path), env={"STREAMCNN_ASSETS": str(tmp_path / "assets"),
                                                  "STREAMCNN_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert r.returncode == 2
    assert r.stderr.startswith(
        f"{path}:4:14: pipelines.a.stages[0].style: style_image 'starry_night.jpg' is a picture of the registry "
        "(`streamcnn models`) that is downloaded on first use, but downloads are off (STREAMCNN_OFFLINE is set) and "
        f"it is not here. Looked in: {tmp_path / 'starry_night.jpg'}, ")
    assert r.stderr.endswith(". To get it: unset STREAMCNN_OFFLINE, or download it from https://raw.githubusercontent"
                             ".com/opencv/opencv/4.6.0/samples/data/starry_night.jpg (sha256 accda7a19a90f22a4a922fdc8c"
                             "230167d7abf5f80882171e2cee125c5f12481d) into a STREAMCNN_ASSETS folder\n")
