"""The parts of ``--ray`` that need no Ray: the plan of actors, resuming a pipeline, progress
records, shipped models, ``{node}`` in output paths, and Ray staying unimported without ``--ray``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np

from streamcnn.api import Context
from streamcnn.cluster.plan import plan_groups
from streamcnn.cluster.progress import ProgressFile, ProgressRecorder, later
from streamcnn.cluster.shipping import ShippedModel, materialise
from streamcnn.config import load_config
from streamcnn.engine.reader import Resume, SourceReader
from streamcnn.frame import Frame
from streamcnn.registry import find_local, sha256_of
from streamcnn_plugins.sinks.files import cut_partial_line
from streamcnn_plugins.sources.pattern import PatternSource

from .conftest import run_cli, take_frames, write

GROUPS = """
pipelines:
  a: {source: {uri: pattern, frames: 5}}
  b: {source: {uri: pattern, frames: 5}, group: g, resources: {cpus: 0.5, gpus: 0.25}}
  c: {source: {uri: pattern, frames: 5}, resources: {cpus: 2}}
  d: {source: {uri: pattern, frames: 5}, group: g, resources: {cpus: 0.25, gpus: 0.25}}
"""


def test_plan_one_actor_per_group_with_summed_resources(tmp_path):
    config = load_config(write(tmp_path / "p.yaml", GROUPS))
    plan = [(g.name, g.pipelines, g.cpus, g.gpus) for g in plan_groups(config)]
    assert plan == [("a", ["a"], 1.0, 0.0), ("g", ["b", "d"], 0.75, 0.5), ("c", ["c"], 2.0, 0.0)]
    assert [g.name for g in plan_groups(config, ["d", "c"])] == ["c", "g"]  # file order


def test_cluster_section_and_resources_are_validated(tmp_path):
    path = write(tmp_path / "p.yaml", """
        cluster: {ray: auto, max_restart: 2}
        pipelines:
          a: {source: pattern, resources: {cpu: 1}}
        """)
    res = run_cli("validate", str(path))
    assert res.returncode == 2
    assert "cluster.max_restart" in res.stderr and "max_restarts" in res.stderr
    assert "pipelines.a.resources.cpu" in res.stderr and "cpus" in res.stderr


def _pattern(frames: int = 20, **kw) -> PatternSource:
    return PatternSource(PatternSource.Params(uri="pattern", size="64x48", fps=10, frames=frames, **kw),
                         Context("pattern", "p"))


def test_a_resumed_file_source_skips_what_went_through_and_keeps_its_own_pts():
    whole = take_frames(SourceReader(_pattern(), "all", 64, "p").start(), 20)
    reader = SourceReader(_pattern(), "all", 64, "p", resume=Resume(12, 1.1, time.time())).start()
    rest = take_frames(reader, 8)
    assert [f.index for f in rest] == list(range(12, 20))
    assert [f.pts for f in rest] == [f.pts for f in whole[12:]]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(rest, whole[12:], strict=True))


def test_a_resumed_live_source_goes_on_after_the_outage():
    class Live(PatternSource):
        live = True

    src = Live(PatternSource.Params(uri="pattern", size="64x48", fps=10, frames=None, realtime=True),
               Context("pattern", "p"))
    src.params.reconnect = False
    reader = SourceReader(src, "all", 64, "p", resume=Resume(50, 5.0, time.time() - 2.0)).start()
    frames = take_frames(reader, 3)
    reader.stop()
    assert [f.index for f in frames] == [50, 51, 52]
    assert 6.9 < frames[0].pts < 7.6  # 5.0 s, then the 2 s outage (and the first frame's wait)
    assert frames[1].pts > frames[0].pts


def test_progress_record_survives_the_writer_and_the_later_resume_wins(tmp_path):
    record = ProgressFile(tmp_path / "x" / "cam.progress")
    assert record.read() is None
    ProgressRecorder({"cam": record}).streamcnn_frame_done("cam", Frame(np.zeros((2, 2, 3), np.uint8), 41, 4.1))
    ProgressRecorder({"cam": record}).streamcnn_frame_done("other", Frame(np.zeros((2, 2, 3), np.uint8), 99, 9.9))
    again = ProgressFile(tmp_path / "x" / "cam.progress").read()  # another process would map the same bytes
    assert (again.index, again.pts) == (42, 4.1)
    assert later(again, Resume(40, 3.9, 0.0)) is again and later(None, again) is again
    record.clear()
    assert record.read() is None


def test_a_shipped_model_is_written_to_the_node_cache_unless_the_same_file_is_there(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMCNN_CACHE", str(tmp_path / "cache"))
    here = tmp_path / "m.onnx"
    here.write_bytes(b"model bytes")
    sha = sha256_of(here)
    same = ShippedModel("m.onnx", "m.onnx", sha, here.stat().st_size, "ref")
    assert materialise([same], tmp_path, lambda ref: b"never fetched") == {"m.onnx": here}
    gone = ShippedModel("models/absent.onnx", "absent.onnx", sha, 11, "ref")
    used = materialise([gone], tmp_path, lambda ref: b"model bytes")
    copy = tmp_path / "cache" / "cluster" / sha / "absent.onnx"
    assert used == {"models/absent.onnx": copy} and copy.read_bytes() == b"model bytes"
    assert find_local("models/absent.onnx", tmp_path)[0] == copy


def test_cut_partial_line(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a"')
    cut_partial_line(f)
    assert f.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    cut_partial_line(f)
    assert f.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    cut_partial_line(tmp_path / "absent.jsonl")


def test_node_placeholder_in_output_paths(tmp_path, monkeypatch):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: {uri: pattern, frames: 3, size: 64x48}
            sinks: [{jsonl: {path: "out/{node}/a.jsonl"}}, {images: {path: "out/{node}/{pipeline}/{index}.png"}}]
        """)
    res = run_cli("run", str(path), env={"STREAMCNN_NODE": "node-7"})
    assert res.returncode == 0, res.stderr
    assert len((tmp_path / "out/node-7/a.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in (tmp_path / "out/node-7/a").iterdir()) == ["0.png", "1.png", "2.png"]
    assert Context("x", "p").fill("{node}/{pipeline}") == f"{socket.gethostname()}/p"


def test_without_ray_installed_ray_says_how_to_install_and_plain_runs_never_import_it(tmp_path):
    path = write(tmp_path / "p.yaml", "pipelines:\n  a: {source: {uri: pattern, frames: 3}}\n")
    code = (f"import sys; sys.modules['ray'] = None; sys.argv = ['streamcnn', 'run', {str(path)!r}, '--ray', 'local']; "
            "from streamcnn.cli import main; main()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "--ray runs the pipelines on a Ray cluster, which needs Ray: pip install -e '.[ray]'" in res.stderr
    assert "Traceback" not in res.stderr
    code = ("import sys; import streamcnn.cli; from streamcnn.config import load_config; "
            f"from streamcnn.engine import Engine; stats = Engine(load_config({str(path)!r})).run(); "
            "print(stats[0].frames, 'ray' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["3", "False"], res.stderr
