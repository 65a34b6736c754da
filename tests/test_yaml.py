"""YAML reading (streamcnn.yamlpos): merge keys that override, literal duplicates, YAML 1.2 numbers."""

from __future__ import annotations

import json

import pytest

from streamcnn.config import load_config
from streamcnn.errors import ConfigError
from streamcnn.yamlpos import load_yaml

from .conftest import run_cli, write


def load(text: str):
    return load_yaml(text, "f.yaml")


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "f.yaml")
    return str(info.value)


def test_key_written_after_a_merge_overrides_it():
    data, pos = load("a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\n")
    assert data == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}
    assert pos[("b", "y")] == (2, 13)  # the overriding key, not the anchor's
    assert pos[("b", "x")] == (1, 8)  # a merged key: where it is written (in the anchor)


def test_key_written_before_a_merge_overrides_it_too():
    data, _ = load("a: &a {x: 1, y: 2}\nb: {y: 3, <<: *a}\n")
    assert data["b"] == {"x": 1, "y": 3}


def test_merge_list_earlier_mappings_win():
    data, _ = load("a: &a {x: 1}\nc: &c {x: 2, z: 5}\nb: {<<: [*a, *c], w: 0}\n")
    assert data["b"] == {"x": 1, "z": 5, "w": 0}


def test_nested_merges_and_override_of_a_merged_mapping():
    data, _ = load("x: &x {a: {b: 1}}\ny: &y {<<: *x, c: 2}\nz: {<<: *y, a: 3}\n")
    assert data["y"] == {"a": {"b": 1}, "c": 2}
    assert data["z"] == {"a": 3, "c": 2}


def test_merge_does_not_change_the_anchor():
    data, _ = load("a: &a {x: 1}\nb: {<<: *a, x: 2}\nc: *a\n")
    assert data["a"] == {"x": 1} and data["c"] == {"x": 1} and data["b"] == {"x": 2}


def test_literal_duplicate_key_is_an_error():
    assert error_of("a: 1\nb: 2\na: 3\n") == "f.yaml:3:1: a: duplicate key 'a' (first written on line 1)"


def test_literal_duplicate_next_to_a_merge_is_an_error():
    assert error_of("a: &a {x: 1}\nb: {<<: *a, x: 2, x: 3}\n") == (
        "f.yaml:2:19: b.x: duplicate key 'x' (first written on line 2)")


def test_duplicate_null_key_reads_as_yaml():
    assert error_of("a:\n  ~: 1\n  null: 2\n") == "f.yaml:3:3: a.null: duplicate key 'null' (first written on line 2)"


def test_two_merge_keys_suggest_a_list():
    assert error_of("a: &a {x: 1}\nb: {<<: *a, <<: *a}\n") == (
        "f.yaml:2:13: b.<<: duplicate key '<<' (first written on line 2); merge several mappings with one "
        "list: `<<: [*a, *b]`")


@pytest.mark.parametrize("text", ["a: &a 5\nb: {<<: *a}\n", "a: &a [1]\nb: {<<: *a}\n", "a: &a {x: 1}\nb: {<<: [*a, 3]}\n"])
def test_merge_of_a_non_mapping_points_at_the_merge_key(text):
    # the position is the `<<` key on line 2, not the anchor on line 1
    assert error_of(text) == (
        "f.yaml:2:5: b.<<: '<<' (a merge key) needs a mapping or a list of mappings, e.g. `<<: *defaults` "
        "or `<<: [*a, *b]`")


def test_merge_into_itself_is_an_error():
    assert error_of("a: &a {b: {<<: *a}}\n") == (
        "f.yaml:1:12: a.b.<<: recursive alias: this anchor is merged into itself")


def test_merge_key_as_a_value_is_an_error():
    assert error_of("a: <<\n") == "f.yaml:1:4: a: '<<' (a merge key) only works as a key, e.g. `<<: *defaults`"


@pytest.mark.parametrize("text, value", [
    ("0x0", "0x0"), ("0x10", "0x10"), ("0o7", "0o7"), ("1:30", "1:30"), ("2024-01-01", "2024-01-01"),
    ("1_000", "1_000"), ("64x48", "64x48"), ("010", 10), ("+5", 5), ("-3", -3), ("1e3", 1000.0),
    ("1.5", 1.5), ("0.", 0.0), (".5", 0.5), ("-.inf", float("-inf")), ("true", True), ("null", None),
    ("'010'", "010"),
])
def test_yaml_1_2_numbers(text, value):
    data, _ = load(f"v: {text}\n")
    assert data["v"] == value and type(data["v"]) is type(value)


def test_nan_is_a_float():
    data, _ = load("v: .nan\n")
    assert data["v"] != data["v"]


def test_merge_override_in_a_pipeline_runs_the_overridden_value(tmp_path):
    out = tmp_path / "o.jsonl"
    path = write(tmp_path / "p.yaml", f"""
        x-cam: &cam {{uri: pattern, size: 64x48, frames: 10}}
        pipelines:
          a:
            source: {{<<: *cam, frames: 3}}
            sinks: [{{jsonl: {{path: {out}}}}}]
        """)
    cfg = load_config(path, check=True)
    assert cfg.pipelines["a"].source.params.frames == 3
    assert cfg.pipelines["a"].source.params.size == "64x48"
    r = run_cli("run", str(path))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["index"] for line in out.read_text().splitlines()] == [0, 1, 2]


def test_size_0x0_is_a_frame_size_not_the_number_0(tmp_path):
    path = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: {uri: pattern, size: 0x0}
            sinks: [null]
        """)
    r = run_cli("validate", str(path))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"{path}:3:34: pipelines.a.source.size: frame size '0x0' is too small: WIDTHxHEIGHT must both be "
        "≥ 16 pixels, e.g. '640x480'")
