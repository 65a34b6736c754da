"""Model registry: resolution order, bare names only, sha256 checks, offline errors, downloads."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest

from streamcnn import registry as models
from streamcnn.errors import ModelNotFoundError
from streamcnn.registry import RegistryEntry, resolve_asset

from .conftest import run_cli

PAYLOAD = b"onnx-bytes-for-testing" * 100
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def fake_registry(monkeypatch, tmp_path):
    """A registry with one model entry `toy_model` whose file is served on 127.0.0.1."""
    serve = tmp_path / "served"
    serve.mkdir()
    (serve / "toy_model.onnx").write_bytes(PAYLOAD)
    (serve / "wrong.onnx").write_bytes(b"something else")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(serve))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/toy_model.onnx"
    reg = {
        "toy_model": RegistryEntry("toy_model", "model", "toy_model.onnx", url, SHA, "MIT", "yolo", {"format": "v8"}),
        "toy_bad": RegistryEntry("toy_bad", "model", "toy_bad.onnx", url.replace("toy_model", "wrong"), SHA, "MIT",
                                 "yolo"),
    }
    monkeypatch.setattr(models, "registry", lambda: reg)
    monkeypatch.setenv("STREAMCNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STREAMCNN_ASSETS", str(tmp_path / "assets"))
    (tmp_path / "assets" / "models").mkdir(parents=True)
    models._verified.clear()
    yield tmp_path
    server.shutdown()


def test_resolution_order(fake_registry, monkeypatch):
    tmp = fake_registry
    (tmp / "cache").mkdir()
    (tmp / "cache" / "toy_model.onnx").write_bytes(PAYLOAD)
    assert resolve_asset("toy_model") == tmp / "cache" / "toy_model.onnx"
    (tmp / "assets" / "models" / "toy_model.onnx").write_bytes(PAYLOAD)
    assert resolve_asset("toy_model") == tmp / "assets" / "models" / "toy_model.onnx"
    assert resolve_asset("toy_model.onnx") == tmp / "assets" / "models" / "toy_model.onnx"
    (tmp / "assets" / "toy_model.onnx").write_bytes(PAYLOAD)
    assert resolve_asset("toy_model") == tmp / "assets" / "toy_model.onnx"  # flat before models/
    local = tmp / "mine.onnx"
    local.write_bytes(b"x")
    assert resolve_asset("mine.onnx", config_dir=tmp) == local  # an explicit path first
    assert models.resolve_model("toy_model")[1] == {"format": "v8"}


def test_a_path_with_a_folder_is_never_replaced_by_a_registry_file(fake_registry):
    (fake_registry / "assets" / "toy_model.onnx").write_bytes(PAYLOAD)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_asset("mymodels/toy_model.onnx", config_dir=fake_registry)
    assert str(info.value) == (
        f"model 'mymodels/toy_model.onnx' not found. Looked in: {fake_registry / 'mymodels/toy_model.onnx'}, "
        f"{models.Path.cwd() / 'mymodels/toy_model.onnx'}. To get it: check the path (relative paths are "
        "relative to the YAML file)")


def test_wrong_sha256_in_an_asset_folder_is_refused(fake_registry):
    (fake_registry / "assets" / "models" / "toy_model.onnx").write_bytes(PAYLOAD[:100])
    with pytest.raises(ModelNotFoundError, match="is not the registry's toy_model.onnx: sha256 "):
        resolve_asset("toy_model")


def test_offline_error_names_model_places_and_how(fake_registry, monkeypatch):
    monkeypatch.setenv("STREAMCNN_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_asset("toy_model")
    msg = str(info.value)
    assert msg.startswith("model 'toy_model' not found (downloads are off: STREAMCNN_OFFLINE is set). Looked in: ")
    assert str(fake_registry / "assets" / "models" / "toy_model.onnx") in msg
    assert str(fake_registry / "cache" / "toy_model.onnx") in msg
    assert msg.endswith(f"To get it: download it from {models.registry()['toy_model'].url} (sha256 {SHA}) into "
                        f"{fake_registry / 'cache'} or a STREAMCNN_ASSETS folder")


def test_download_into_the_cache_with_sha256_check(fake_registry, monkeypatch):
    monkeypatch.setenv("STREAMCNN_OFFLINE", "0")
    path = resolve_asset("toy_model")
    assert path == fake_registry / "cache" / "toy_model.onnx" and path.read_bytes() == PAYLOAD
    with pytest.raises(ModelNotFoundError, match="download of 'toy_bad' from .* refused: "):
        resolve_asset("toy_bad")
    assert not (fake_registry / "cache" / "toy_bad.onnx").exists()


def test_models_command_lists_licence_and_availability():
    res = run_cli("models")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:] if line.strip()}
    assert "AGPL-3.0" in rows["yolov8n_coco_640_int8"]
    assert "non-commercial" in rows["scrfd_2.5g_bnkps"]
    for name in ("yolox_nano_coco_416", "yolo-fastestv2_coco_352", "vtest", "Megamind", "mobilefacenet_128d"):
        assert name in rows
    if (models.Path(models.os.environ["STREAMCNN_ASSETS"]) / "models" / "yolox_nano_coco_416.onnx").is_file():
        assert "/models/yolox_nano_coco_416.onnx" in rows["yolox_nano_coco_416"]


def test_registry_entries_match_the_shared_files(assets):
    """Every registry sha256 is the sha256 of the file in STREAMCNN_ASSETS (MODELS.md/MEDIA.md)."""
    checked = 0
    for entry in models.registry().values():
        for sub in ("models", "media"):
            p = assets / sub / entry.file
            if p.is_file():
                assert models.sha256_of(p) == entry.sha256, entry.name
                checked += 1
    assert checked >= 14


def test_validate_defers_downloads_and_run_fetches(fake_registry, monkeypatch, tmp_path):
    """`validate` never downloads: a downloadable model is fine there, and nothing is fetched."""
    from streamcnn.config import load_config
    from streamcnn.registry import DownloadDeferred, downloads_deferred

    monkeypatch.setenv("STREAMCNN_OFFLINE", "0")
    with downloads_deferred(), pytest.raises(DownloadDeferred, match="not downloaded yet"):
        resolve_asset("toy_model")
    assert not (fake_registry / "cache" / "toy_model.onnx").exists()
    cfg = tmp_path / "p.yaml"
    cfg.write_text("pipelines:\n  a:\n    source: pattern\n    stages: [{yolo: {model: toy_model}}]\n")
    with downloads_deferred():
        config = load_config(cfg, check=True)
    assert config.pipelines["a"].stages[0].type_name == "yolo"  # validated; its model is fetched when it starts
    assert not (fake_registry / "cache" / "toy_model.onnx").exists()
    assert resolve_asset("toy_model").read_bytes() == PAYLOAD  # outside validate: downloaded
