"""Plugin discovery: YAML files, entry points, failures, conflicts, lifecycle hooks."""

from __future__ import annotations

import dataclasses
import json
import logging
import textwrap
import typing

import numpy as np
import pytest

import streamcnn
from streamcnn import Frame, PipelineInfo, redact
from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn.errors import ConfigError, PluginError
from streamcnn.hookspecs import TYPE_HOOKS
from streamcnn.pluginmanager import PluginRef, Plugins, call_hook, hook_failure, load_plugins

from .conftest import run_cli, write

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


def test_yaml_plugin_file_provides_a_stage(tmp_path):
    write(tmp_path / "my_plugins.py", BRIGHTEN)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./my_plugins.py]
        pipelines:
          a:
            source: {uri: pattern, size: 32x24, frames: 4}
            stages: [{brighten: {amount: 300}}]
        """)
    with pytest.raises(ConfigError, match=r"p.yaml:5:34: pipelines.a.stages\[0\].brighten.amount: "
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
        import json, threading, streamcnn
        EVENTS = []

        def thread():
            return threading.current_thread().name

        @streamcnn.hookimpl
        def streamcnn_pipeline_started(pipeline, info):
            EVENTS.append(["started", pipeline, info, thread()])

        @streamcnn.hookimpl
        def streamcnn_frame_done(pipeline, frame):
            EVENTS.append(["frame", pipeline, frame.index, thread()])

        @streamcnn.hookimpl
        def streamcnn_pipeline_stopped(pipeline, stats):
            EVENTS.append(["stopped", pipeline, stats["frames"], thread()])
        """)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./hooks.py]
        pipelines:
          a:
            source: {uri: pattern, size: 16x16, frames: 3}
            stages: [{edges: {}}]
            sinks: [{null: {}}]
        """)
    config = load_config(cfg)
    Engine(config).run()
    mod = next(r for r in config.plugins.records if r.name.endswith("hooks.py"))
    events = config.plugins.pm.get_plugin(mod.name).EVENTS
    info = events[0][2]
    assert isinstance(info, PipelineInfo)
    assert (info.name, info.source, info.stages, info.sinks) == ("a", "pattern", ("edges",), ("null",))
    assert events == [["started", "a", info, "pipeline-a"], ["frame", "a", 0, "pipeline-a"],
                      ["frame", "a", 1, "pipeline-a"], ["frame", "a", 2, "pipeline-a"],
                      ["stopped", "a", 3, "pipeline-a"]]


HOOK_OK = """
    import streamcnn
    CALLS = []

    @streamcnn.hookimpl
    def streamcnn_pipeline_started(pipeline):
        CALLS.append(pipeline)
    """

HOOK_RAISES = """
    import streamcnn

    def _lookup(name):
        return {}[name]

    @streamcnn.hookimpl
    def streamcnn_pipeline_started(pipeline, info):
        _lookup(info.source)
    """


def _two_hook_plugins(tmp_path):
    """Plugins with two implementations of streamcnn_pipeline_started: bad.py (raises, loaded first,
    so called last) and good.py."""
    bad, good = write(tmp_path / "bad.py", HOOK_RAISES), write(tmp_path / "good.py", HOOK_OK)
    plugins = Plugins()
    for f in (bad, good):
        plugins.load_ref(PluginRef(str(f)))
    return plugins, bad, good


def test_a_failing_hook_names_only_the_plugin_that_raised(tmp_path, caplog):
    plugins, bad, good = _two_hook_plugins(tmp_path)
    caller = plugins.pm.hook.streamcnn_pipeline_started
    logger = logging.getLogger("streamcnn.a")
    info = PipelineInfo("a", "rtsp://admin:secret@192.0.2.10/live", ("edges",), ())
    with caplog.at_level(logging.ERROR, logger="streamcnn.a"):
        msg = call_hook(caller, logger, "pipeline 'a'", pipeline="a", info=info)
    assert msg == (f"pipeline 'a': hook streamcnn_pipeline_started of plugin '{bad}' raised: "
                   f"KeyError: 'rtsp://***@192.0.2.10/live' at {bad}:4")
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [("streamcnn.a", "ERROR", msg)]
    assert str(good) not in msg
    assert plugins.pm.get_plugin(str(good)).CALLS == ["a"]  # called first (pluggy: last registered first)
    # the engine's per-frame path builds the message itself (no wrapper per frame)
    try:
        caller(pipeline="b", info=info)
    except KeyError as exc:
        assert hook_failure(caller, exc, " on frame 7") == (
            f"hook streamcnn_pipeline_started of plugin '{bad}' raised on frame 7: KeyError: "
            f"'rtsp://***@192.0.2.10/live' at {bad}:4")
    else:
        raise AssertionError("the hook did not raise")
    assert call_hook(plugins.pm.hook.streamcnn_pipeline_stopped, logger, "pipeline 'a'", pipeline="a",
                     stats={}) is None


def test_a_hook_failure_pluggy_raises_names_every_implementing_plugin(tmp_path):
    plugins, bad, good = _two_hook_plugins(tmp_path)
    with pytest.warns(UserWarning, match="'info'"):
        msg = call_hook(plugins.pm.hook.streamcnn_pipeline_started, logging.getLogger("streamcnn.a"), "",
                        pipeline="a")  # no info: pluggy raises before the implementation runs
    assert msg.startswith(f"hook streamcnn_pipeline_started of one of the plugins '{good}', '{bad}' raised: "
                          "HookCallError: ")


def test_a_failing_hook_in_a_pipeline_names_only_its_plugin(tmp_path, caplog):
    write(tmp_path / "bad.py", HOOK_RAISES)
    write(tmp_path / "good.py", HOOK_OK)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./bad.py, ./good.py]
        pipelines:
          a: {source: {uri: pattern, size: 16x16, frames: 2}}
        """)
    config = load_config(cfg)
    with caplog.at_level(logging.ERROR, logger="streamcnn.a"):
        stats = Engine(config).run()
    assert stats[0].frames == 2 and stats[0].error is None  # never fatal
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"pipeline 'a': hook streamcnn_pipeline_started of plugin '{tmp_path / 'bad.py'}' raised: "
                      f"KeyError: 'pattern' at {tmp_path / 'bad.py'}:4"]



@pytest.mark.parametrize("on_error", ["skip", "stop"])
def test_a_failing_frame_done_stops_the_pipeline_only_under_on_error_stop(tmp_path, caplog, on_error):
    f = write(tmp_path / "fd.py", """
        import streamcnn

        @streamcnn.hookimpl
        def streamcnn_frame_done(frame):
            raise ValueError(f"no slot for frame {frame.index}")
        """)
    cfg = write(tmp_path / "p.yaml", f"""
        plugins: [./fd.py]
        pipelines:
          a: {{source: {{uri: pattern, size: 16x16, frames: 3}}, on_error: {on_error}}}
        """)
    with caplog.at_level(logging.ERROR, logger="streamcnn.a"):
        stats = Engine(load_config(cfg)).run()[0]
    msg = [f"pipeline 'a': hook streamcnn_frame_done of plugin '{f}' raised on frame {i}: ValueError: "
           f"no slot for frame {i} at {f}:5" for i in range(3)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    if on_error == "stop":
        assert (stats.frames, stats.error) == (1, msg[0])
        assert errors == [msg[0]]
    else:
        assert (stats.frames, stats.error) == (3, None)
        assert errors == msg

def test_plugins_command_lists_lifecycle_only_plugins(tmp_path):
    hooks = write(tmp_path / "hooks.py", """
        import streamcnn

        @streamcnn.hookimpl
        def streamcnn_frame_done(frame):
            pass

        @streamcnn.hookimpl
        def streamcnn_pipeline_started(pipeline):
            pass
        """)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./hooks.py]
        pipelines:
          a: {source: pattern}
        """)
    res = run_cli("plugins", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    rows = [x.split() for x in res.stdout.splitlines() if str(hooks) in x]
    assert rows == [["hook", "streamcnn_pipeline_started", "file", str(hooks), "loaded"],
                    ["hook", "streamcnn_frame_done", "file", str(hooks), "loaded"]]
    assert res.stdout.splitlines()[0].split() == ["KIND", "NAME", "FROM", "STATUS"]


def test_trace_plugins_logs_one_line_per_hook_call(tmp_path, monkeypatch, caplog):
    f = write(tmp_path / "my_plugins.py", BRIGHTEN + """
@streamcnn.hookimpl
def streamcnn_frame_done(frame):
    pass
""")
    trace = "streamcnn.plugins.trace"
    caplog.set_level(logging.INFO, logger=trace)
    load_plugins([PluginRef(str(f))])
    assert [r for r in caplog.records if r.name == trace] == []  # off unless asked for

    monkeypatch.setenv("STREAMCNN_TRACE_PLUGINS", "1")
    plugins = load_plugins([PluginRef(str(f))])
    lines = [r.getMessage() for r in caplog.records if r.name == trace]
    assert all(r.levelname == "INFO" for r in caplog.records if r.name == trace)
    # the type hooks, once per plugin as it loads (the built-ins' too)
    assert f"streamcnn_stage_types() on thread MainThread -> '{f}'" in lines
    assert "streamcnn_stage_types() on thread MainThread -> 'edges'" in lines
    assert len(lines) == sum(len(getattr(plugins.pm.hook, h).get_hookimpls()) for h in TYPE_HOOKS)
    assert all(line.split("(")[0] in TYPE_HOOKS for line in lines)

    caplog.clear()
    hook = plugins.pm.hook
    image = np.zeros((4, 4, 3), np.uint8)
    for i in range(3):
        hook.streamcnn_frame_done(pipeline="a", frame=Frame(image, i, i / 25))
    hook.streamcnn_source_event(pipeline="a", source="rtsp://***@cam/1", event="disconnected",
                                detail={"source": "rtsp://***@cam/1", "reason": "rtsp://u:p@cam/1 timed out"})
    hook.streamcnn_pipeline_stopped(pipeline="a", stats={"frames": 3, "error": None})
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        *[(trace, "INFO", f"streamcnn_frame_done(pipeline='a', frame=Frame(index={i})) on thread MainThread "
                          f"-> '{f}'") for i in range(3)],
        (trace, "INFO", "streamcnn_source_event(pipeline='a', source='rtsp://***@cam/1', event='disconnected', "
                        "detail={'reason': 'rtsp://***@cam/1 timed out', 'source': 'rtsp://***@cam/1'}) "
                        "on thread MainThread -> (no plugin implements it)"),
        (trace, "INFO", "streamcnn_pipeline_stopped(pipeline='a', stats={'error': None, 'frames': 3}) "
                        "on thread MainThread -> (no plugin implements it)"),
    ]


def test_pipeline_info_never_holds_credentials():
    info = PipelineInfo("cam", "rtsp://user:pass@192.0.2.7:554/stream1?channel=1&password=hunter2",
                        ["yolo", "annotate"], ["video"], 25.0)
    assert info == PipelineInfo("cam", "rtsp://***@192.0.2.7:554/stream1?channel=1&password=***",
                                ("yolo", "annotate"), ("video",), 25.0)
    assert "pass@" not in repr(info) and "hunter2" not in repr(info)
    assert info.source == redact("rtsp://user:pass@192.0.2.7:554/stream1?channel=1&password=hunter2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.source = "rtsp://user:pass@192.0.2.7/"  # type: ignore[misc]
    assert streamcnn.PipelineInfo is PipelineInfo and "PipelineInfo" in streamcnn.__all__
    assert typing.get_args(streamcnn.SourceEvent) == ("disconnected", "reconnected")
    assert "SourceEvent" in streamcnn.__all__ and streamcnn.SourceEvent.__doc__
