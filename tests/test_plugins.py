"""Plugin discovery: YAML files, entry points, failures, conflicts, lifecycle hooks."""

from __future__ import annotations

import json
import textwrap

import pytest

from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn.errors import ConfigError, PluginError
from streamcnn.pluginmanager import PluginRef, Plugins, load_plugins

from .conftest import run_cli

BRIGHTEN = '''
import numpy as np
import streamcnn

class Brighten(streamcnn.Stage):
    """Adds `amount` to every pixel (saturating)."""

    class Params(streamcnn.Params):
        amount: int = streamcnn.Field(10, ge=0, le=255)

    def process(self, frame):
        frame.image = np.clip(frame.image.astype(np.int16) + self.params.amount, 0, 255).astype(np.uint8)
        frame.meta["mean"] = float(frame.image.mean())
        return frame

@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"brighten": Brighten}
'''


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_yaml_plugin_file_provides_a_stage(tmp_path):
    write(tmp_path / "my_plugins.py", BRIGHTEN)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./my_plugins.py]
        pipelines:
          a:
            source: {uri: pattern, size: 32x24, frames: 4}
            stages: [{brighten: {amount: 300}}]
        """)
    with pytest.raises(Exception, match=r"p.yaml:5:34: pipelines.a.stages\[0\].brighten.amount: "
                                        r"expected an integer in \[0, 255\], got 300"):
        load_config(cfg)
    cfg.write_text(cfg.read_text().replace("300", "20") + "    sinks: [{jsonl: {path: out.jsonl}}]\n")
    config = load_config(cfg)
    assert config.plugins.types["stage"]["brighten"].plugin.origin == f"file {tmp_path / 'my_plugins.py'}"
    Engine(config).run()
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(x)["index"] for x in lines] == [0, 1, 2, 3]
    res = run_cli("plugins", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    row = next(x for x in res.stdout.splitlines() if " brighten " in x)
    assert row.split() == ["stage", "brighten", "file", str(tmp_path / "my_plugins.py"), "loaded"]


def _fake_dist(site, dist, module, source, ep_name):
    info = site / f"{dist}-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(f"[streamcnn]\n{ep_name} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_broken_entry_point_is_reported_and_others_load(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _fake_dist(site, "brokenplug", "brokenplug_mod", "raise RuntimeError('boom: missing licence key')\n", "broken")
    _fake_dist(site, "goodplug", "goodplug_mod", BRIGHTEN, "good")
    monkeypatch.syspath_prepend(str(site))
    plugins = load_plugins()
    failed = {r.name: r for r in plugins.failed()}
    assert set(failed) == {"broken"}
    rec = failed["broken"]
    assert rec.origin == "brokenplug 1.2 (entry point broken = brokenplug_mod)"
    assert rec.reason.startswith("RuntimeError: boom: missing licence key at ")
    assert "brokenplug_mod.py:1 (while importing brokenplug_mod)" in rec.reason
    assert "brighten" in plugins.types["stage"] and "edges" in plugins.types["stage"]

    res = run_cli("plugins", env={"PYTHONPATH": str(site)})
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("plugin ") and " broken " in x)
    assert "brokenplug 1.2 (entry point broken = brokenplug_mod)" in line
    assert "failed: RuntimeError: boom: missing licence key" in line
    assert any(x.split()[:2] == ["stage", "edges"] for x in res.stdout.splitlines())


def test_unknown_stage_mentions_failed_plugins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _fake_dist(site, "brokenplug", "brokenplug_mod", "import nonexistent_dependency_xyz\n", "yolo_extra")
    monkeypatch.syspath_prepend(str(site))
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          a: {source: pattern, stages: [yolo_extra]}
        """)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    msg = str(info.value)
    assert "unknown stage 'yolo_extra'. Installed stages: " in msg
    assert "Plugins that failed to load: yolo_extra (brokenplug 1.2 (entry point yolo_extra = brokenplug_mod)): "\
           "ModuleNotFoundError: No module named 'nonexistent_dependency_xyz'" in msg


def test_misspelled_hook_fails_loudly(tmp_path):
    f = write(tmp_path / "typo.py", """
        import streamcnn

        @streamcnn.hookimpl
        def streamcnn_stage_type():
            return {}
        """)
    plugins = Plugins()
    with pytest.raises(PluginError) as info:
        plugins.load_ref(PluginRef(str(f), "p.yaml", 2, 5))
    msg = str(info.value)
    assert msg.startswith(f"p.yaml:2:5: plugin '{f}': unknown hook 'streamcnn_stage_type' in plugin '{f}'")
    assert "streamcnn_stage_types" in msg  # the known hooks are listed


def test_plugin_import_error_names_file_and_exception(tmp_path):
    f = write(tmp_path / "bad.py", "x = 1\nraise ValueError('bad value in plugin')\n")
    with pytest.raises(PluginError) as info:
        Plugins().load_ref(PluginRef("bad.py", "p.yaml", 3, 7, config_dir=tmp_path))
    assert str(info.value) == (
        f"p.yaml:3:7: plugin file {f} failed to import: ValueError: bad value in plugin at {f}:2 (while importing {f})"
    )


def test_same_stage_name_twice_is_an_explicit_conflict(tmp_path):
    write(tmp_path / "one.py", BRIGHTEN)
    write(tmp_path / "two.py", BRIGHTEN)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./one.py, ./two.py]
        pipelines:
          a: {source: pattern}
        """)
    with pytest.raises(PluginError) as info:
        load_config(cfg)
    assert str(info.value) == (
        f"{cfg}:1:1: plugin conflict: stage 'brighten' is registered by two plugins: '{tmp_path / 'one.py'}' "
        f"(file {tmp_path / 'one.py'}) and '{tmp_path / 'two.py'}' (file {tmp_path / 'two.py'}); "
        "uninstall or rename one of them"
    )


def test_builtins_come_from_the_entry_point_group():
    plugins = load_plugins()
    entry = plugins.types["stage"]["edges"]
    assert entry.plugin.origin.startswith("streamcnn 0.1.0 (entry point edges = streamcnn_plugins.edges)")
    for kind, names in {"sink": ["jsonl", "video", "display", "null"],
                        "source": ["file", "images", "webcam", "stream", "pattern"]}.items():
        for n in names:
            assert n in plugins.types[kind], (kind, n)
            assert "entry point" in plugins.types[kind][n].plugin.origin


def test_lifecycle_hooks_are_called(tmp_path):
    write(tmp_path / "hooks.py", """
        import json, streamcnn
        EVENTS = []

        @streamcnn.hookimpl
        def streamcnn_pipeline_started(pipeline, config):
            EVENTS.append(["started", pipeline])

        @streamcnn.hookimpl
        def streamcnn_frame_done(pipeline, frame):
            EVENTS.append(["frame", pipeline, frame.index])

        @streamcnn.hookimpl
        def streamcnn_pipeline_stopped(pipeline, stats):
            EVENTS.append(["stopped", pipeline, stats["frames"]])
        """)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./hooks.py]
        pipelines:
          a: {source: {uri: pattern, size: 16x16, frames: 3}}
        """)
    config = load_config(cfg)
    Engine(config).run()
    mod = next(r for r in config.plugins.records if r.name.endswith("hooks.py"))
    events = config.plugins.pm.get_plugin(mod.name).EVENTS
    assert events == [["started", "a"], ["frame", "a", 0], ["frame", "a", 1], ["frame", "a", 2],
                      ["stopped", "a", 3]]
