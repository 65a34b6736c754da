"""Issue 9 item 25: random and truncated bytes as a video, an image (a style picture and the only picture of an
image-folder source), a model, a YAML file, a face
database and a plugin file, through ``streamcnn validate`` and ``streamcnn run --max-frames 3``.

Every case must end with exit code 1 or 2, a one-paragraph message (no blank line inside) and no
traceback. The cases come from a seeded generator (``random.Random(SEED)``), so a failure is
reproducible: the case's files are kept under pytest's tmp_path and its name says which input broke.

To keep the time bounded (28 CLI runs), one driver process imports streamcnn and its plugins once
and forks a fresh child per run; each child runs the real ``streamcnn`` command line (`cli.main`)
with its stdout/stderr in a file, exactly as ``python -m streamcnn ARGS`` does after its imports.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from streamcnn.facedb import FaceDB

from .conftest import ROOT, assets_dir, need, write

pytestmark = pytest.mark.lowest

SEED = 20240909
COMMANDS = (("validate",), ("run", "--max-frames", "3"))

# One process imports everything once, then forks one child per CLI run (a hang guard of 60 s each).
DRIVER = r"""
import json, os, signal, sys, traceback
from streamcnn.cli import main
from streamcnn.pluginmanager import load_plugins
load_plugins()  # import every entry-point plugin before forking, so each child starts warm
results = []
for case in json.load(open(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)
        fd = os.open(case["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(case["cwd"])
        code = 0
        try:
            main(case["args"], prog_name="streamcnn")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()  # what `python -m streamcnn` would print
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    results.append(os.waitstatus_to_exitcode(status))
print(json.dumps(results))
"""

PLUGIN = '''
import streamcnn


class Dim(streamcnn.Stage):
    """Halve the brightness."""

    def process(self, frame):
        frame.image //= 2
        return frame


class Count(streamcnn.Sink):
    """Count the frames."""

    def write(self, frame):
        self.n = getattr(self, "n", 0) + 1


@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"dim": Dim}


@streamcnn.hookimpl
def streamcnn_sink_types():
    return {"count": Count}
'''

CONFIG = """
pipelines:
  p:
    source: {uri: pattern, size: 64x48, frames: 3}
    stages: [{edges: {kernel: sobel}}]
    sinks: [{jsonl: {path: out/p.jsonl}}]
"""


@dataclass
class Case:
    """One broken input: ``config`` is the YAML file to give the CLI, ``data`` the bytes written to ``file``."""

    name: str
    file: str
    data: bytes
    config: str | None  # YAML text; None: ``file`` itself is the YAML


def _random(rng: random.Random, n_max: int = 4096) -> bytes:
    return rng.randbytes(rng.randint(0, n_max))


def _truncated(rng: random.Random, data: bytes, upto: int | None = None) -> bytes:
    """A prefix of ``data``, shorter than ``upto`` (default: all but the last 2 bytes)."""
    return data[: rng.randint(1, (upto if upto is not None else len(data) - 2) - 1)]


def _cases(rng: random.Random, assets: Path, scratch: Path) -> list[Case]:
    hamilton = (assets / "media" / "short_hamilton_clip.mp4").read_bytes()
    moov = hamilton.find(b"moov")  # the index is at the end: any cut before it leaves no playable video
    bus = (assets / "media" / "bus.jpg").read_bytes()
    scan = bus.find(b"\xff\xda")  # start of the JPEG scan: a cut after it still decodes (grey below the cut)
    yolox = (assets / "models" / "yolox_nano_coco_416.onnx").read_bytes()
    video = "pipelines:\n  p:\n    source: clip.mp4\n    sinks: [null]\n"
    style = ("pipelines:\n  p:\n    source: {uri: pattern, size: 64x48, frames: 3}\n"
             "    stages: [{style: {style_image: paint.jpg, size: 32}}]\n    sinks: [null]\n")
    frames = "pipelines:\n  p:\n    source: frames\n    sinks: [null]\n"  # an image folder as the source
    model = ("pipelines:\n  p:\n    source: {uri: pattern, size: 64x48, frames: 3}\n"
             "    stages: [{yolo: {model: net.onnx}}]\n    sinks: [null]\n")
    facedb = ("pipelines:\n  p:\n    source: {uri: pattern, size: 64x48, frames: 3}\n"
              "    stages: [face_detect, {face_recognize: {database: people.npz}}]\n    sinks: [null]\n")
    plugin = ("plugins: [./my_plugin.py]\npipelines:\n  p:\n    source: {uri: pattern, size: 64x48, frames: 3}\n"
              "    stages: [dim]\n    sinks: [count]\n")
    db = scratch / "real.npz"  # a real face database, as `streamcnn faces enroll` writes it
    FaceDB(names=["ann"], templates=np.eye(1, 128, dtype=np.float32), counts=np.ones(1, np.int64),
           sums=np.eye(1, 128, dtype=np.float32), model_sha256="0" * 64).save(db)
    npz = db.read_bytes()
    plugin_text = PLUGIN.lstrip("\n").encode()
    config_text = CONFIG.lstrip("\n").encode()
    return [
        Case("video-random", "clip.mp4", _random(rng), video),
        Case("video-truncated", "clip.mp4", _truncated(rng, hamilton, moov), video),
        Case("image-random", "paint.jpg", _random(rng), style),
        Case("image-truncated", "paint.jpg", _truncated(rng, bus, scan), style),
        Case("frames-random", "frames/0001.jpg", _random(rng), frames),
        Case("frames-truncated", "frames/0001.jpg", _truncated(rng, bus, scan), frames),
        Case("model-random", "net.onnx", _random(rng), model),
        Case("model-truncated", "net.onnx", _truncated(rng, yolox), model),
        Case("yaml-random", "pipelines.yaml", _random(rng), None),
        Case("yaml-truncated", "pipelines.yaml", _truncated(rng, config_text), None),
        Case("facedb-random", "people.npz", _random(rng), facedb),
        Case("facedb-truncated", "people.npz", _truncated(rng, npz), facedb),
        Case("plugin-random", "my_plugin.py", _random(rng), plugin),
        Case("plugin-truncated", "my_plugin.py", _truncated(rng, plugin_text), plugin),
    ]


def _run_all(cases: list[Case], tmp_path: Path) -> dict[tuple[str, str], tuple[int, str]]:
    """Every case through every command: ``{(case, command): (exit code, stdout+stderr)}``."""
    runs = []
    for case in cases:
        folder = tmp_path / case.name
        folder.mkdir()
        (folder / case.file).parent.mkdir(parents=True, exist_ok=True)
        (folder / case.file).write_bytes(case.data)
        cfg = case.file if case.config is None else write(folder / "pipelines.yaml", case.config).name
        for cmd in COMMANDS:
            out = folder / f"{cmd[0]}.txt"
            runs.append({"key": [case.name, cmd[0]], "cwd": str(folder), "out": str(out), "args": [*cmd, cfg]})
    codes = run_forked(runs, tmp_path / "runs.json")
    return {tuple(r["key"]): (rc, Path(r["out"]).read_text(errors="replace")) for r, rc in zip(runs, codes)}


def run_forked(runs: list[dict], spec: Path) -> list[int]:
    """Run the ``streamcnn`` command line once per entry of ``runs`` (``args``, ``cwd``, ``out``: the
    file that gets its stdout and stderr), each in a child forked from one warm driver process; returns
    the exit codes in order (a run killed by the 60 s hang guard: a negative signal number)."""
    spec.write_text(json.dumps(runs))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(spec)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[tuple[str, str], tuple[int, str]]:
    assets = assets_dir()
    need(assets / "media" / "short_hamilton_clip.mp4", assets / "media" / "bus.jpg",
         assets / "models" / "yolox_nano_coco_416.onnx", assets / "models" / "yunet_n_dynamic.onnx",
         assets / "models" / "mobilefacenet_128d.onnx", assets / "models" / "style_arbitrary_predict.onnx",
         assets / "models" / "style_arbitrary_transform.onnx")
    tmp = tmp_path_factory.mktemp("fuzz")
    return _run_all(_cases(random.Random(SEED), assets, tmp), tmp)


CASE_NAMES = [f"{kind}-{how}"
              for kind in ("video", "image", "frames", "model", "yaml", "facedb", "plugin")
              for how in ("random", "truncated")]


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_broken_input_is_one_clean_message(results, case: str, command: str) -> None:
    rc, output = results[(case, command)]
    assert "Traceback" not in output, output
    assert rc in (1, 2), f"exit code {rc}:\n{output}"
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert lines, "no message at all"
    assert "\n\n" not in output.strip(), f"the message is not one paragraph:\n{output}"

