"""`LetterboxBlob` gives the blob of ``letterbox`` + ``cv2.dnn.blobFromImage`` bit for bit, per thread."""

from __future__ import annotations

import importlib
import itertools
import threading

import cv2
import numpy as np
import pytest

from streamcnn import Context, Frame
from streamcnn.ops import LetterboxBlob, letterbox
from streamcnn_plugins.yolo import YoloStage

from .conftest import media, need

lb = importlib.import_module("streamcnn.ops.letterbox")  # the module (`streamcnn.ops.letterbox` is also a function)

MODES = ("center", "top-left", "stretch")


def reference(image, net_w, net_h, mode, pad_value=114, scale=1.0, swap_rb=False):
    """The path LetterboxBlob replaces."""
    canvas, info = letterbox(image, net_w, net_h, mode, pad_value)
    return cv2.dnn.blobFromImage(canvas, scale, swapRB=swap_rb), info


def assert_same(got, want):
    (blob, info), (ref, ref_info) = got, want
    assert blob.shape == ref.shape and blob.dtype == ref.dtype == np.float32
    assert blob.flags.c_contiguous
    assert np.array_equal(blob.view(np.uint32), ref.view(np.uint32))  # to the bit
    assert info == ref_info


def noise(rng, w, h):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("net", [(416, 416), (640, 384), (33, 17)])
@pytest.mark.parametrize("scale,swap_rb", [(1.0, False), (1 / 255, True), (1 / 127.5, False), (0.017, True)])
def test_identical_to_letterbox_and_blob_from_image(mode, net, scale, swap_rb):
    rng = np.random.default_rng(sum(net))
    for pad in (114, 0, 255):
        fused = LetterboxBlob(*net, mode, pad, scale, swap_rb)
        # odd sizes, smaller than the network (upscaled), the network size, the resized size, thin
        for w, h in [(768, 576), (101, 57), (17, 333), (5, 5), (1001, 999), net, (net[0], net[1] // 2 + 1), (1, 1)]:
            img = noise(rng, w, h)
            for _ in range(2):  # second call reuses the buffers
                assert_same(fused(img), reference(img, *net, mode, pad, scale, swap_rb))


def test_frame_size_changes_rewrite_the_padding():
    rng = np.random.default_rng(1)
    fused = LetterboxBlob(64, 64, "center", 7, 1 / 255, True)
    for w, h in [(80, 40), (40, 80), (80, 40), (64, 64), (30, 20), (80, 40)]:
        img = noise(rng, w, h)
        assert_same(fused(img), reference(img, 64, 64, "center", 7, 1 / 255, True))


def test_views_and_strided_frames():
    rng = np.random.default_rng(2)
    big = noise(rng, 300, 200)
    fused = LetterboxBlob(128, 128, "top-left", 114, 1 / 255, True)
    for view in (big[10:150, 7:260], big[::2, ::3], big[:, ::-1], np.asfortranarray(big)):
        assert_same(fused(view), reference(np.ascontiguousarray(view), 128, 128, "top-left", 114, 1 / 255, True))


def test_the_blob_is_reused_by_the_next_call_of_the_same_thread():
    rng = np.random.default_rng(3)
    fused = LetterboxBlob(32, 32)
    a, _ = fused(noise(rng, 40, 30))
    b, _ = fused(noise(rng, 40, 30))
    assert a is b


def test_each_thread_gets_its_own_buffers():
    rng = np.random.default_rng(4)
    fused = LetterboxBlob(96, 96, "center", 114, 1 / 255, True)
    frames = [noise(rng, 160, 120), noise(rng, 120, 160), noise(rng, 97, 61)]
    refs = [reference(f, 96, 96, "center", 114, 1 / 255, True)[0] for f in frames]
    start = threading.Barrier(4)
    errors: list[str] = []
    blobs: dict[int, set[int]] = {}

    def work(k: int) -> None:
        start.wait()
        seen = blobs.setdefault(k, set())
        for i in range(150):
            j = (i + k) % len(frames)
            blob, _ = fused(frames[j])
            seen.add(id(blob))
            if not np.array_equal(blob, refs[j]):
                errors.append(f"thread {k} call {i} frame {j}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set().union(*blobs.values())) >= 4  # no two threads share a blob


def test_the_table_fallback_is_exact_too(monkeypatch):
    """Should a numpy cast-and-multiply ever round unlike blobFromImage, the per-value table is used."""
    rng = np.random.default_rng(5)
    img = noise(rng, 90, 70)
    real = lb._pick_converter

    def pick_table(scale, table):
        chosen = real(np.float32(scale) * 3, table)  # a scale that cannot match: only the table fits
        assert chosen.__name__ == "lookup"
        return chosen

    monkeypatch.setattr(lb, "_pick_converter", pick_table)
    fused = LetterboxBlob(64, 48, "center", 114, 1 / 255, True)
    assert_same(fused(img), reference(img, 64, 48, "center", 114, 1 / 255, True))


def test_converter_choice():
    assert LetterboxBlob(8, 8, scale=1.0)._convert.__name__ == "cast"
    assert LetterboxBlob(8, 8, scale=1 / 255)._convert.__name__ == "cast_multiply"


@pytest.mark.parametrize("kwargs,match", [
    ({"net_w": 0, "net_h": 8}, "sizes must be positive"),
    ({"mode": "fit"}, "resize mode"),
    ({"pad_value": 256}, "pad_value"),
    ({"pad_value": 1.5}, "pad_value"),
    ({"scale": float("nan")}, "scale"),
    ({"dtype": np.float16}, "float32"),
])
def test_bad_construction(kwargs, match):
    args = {"net_w": 8, "net_h": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        LetterboxBlob(**args)


@pytest.mark.parametrize("image", [
    np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32),
])
def test_bad_frames(image):
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
        LetterboxBlob(8, 8)(image)


def test_a_frame_too_thin_for_the_network():
    with pytest.raises(ValueError, match="1000x1 frame letterboxed into 416x416 would be 416x0 px"):
        LetterboxBlob(416, 416)(np.zeros((1, 1000, 3), np.uint8))


# -- the yolo stage on real frames ---------------------------------------------------------------
def _vtest_frames(assets, count: int, step: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(media(assets, "vtest.avi")))
    frames = []
    for i in range(count * step):
        ok, img = cap.read()
        assert ok
        if i % step == 0:
            frames.append(img)
    cap.release()
    return frames


@pytest.mark.parametrize("model", ["yolox_nano_coco_416", "yolo-fastestv2_coco_352", "yolov8n_coco_640_int8"])
def test_yolo_stage_blob_and_detections_unchanged(assets, model):
    """All three resize modes (top-left, stretch, center) through the real stage, on vtest frames."""
    need(assets / "models" / f"{model}.onnx")
    stage = YoloStage(YoloStage.Params(model=model, conf=0.3), Context("yolo", "t", assets))
    frames = _vtest_frames(assets, 2 if model.startswith("yolov8") else 4, 37)
    frames.append(cv2.imread(str(media(assets, "bus.jpg"))))

    def old_preprocess(image):
        return reference(image, stage.net_w, stage.net_h, stage.resize, 114, stage.scale, stage.color == "rgb")

    for k, img in enumerate(frames):
        assert_same(stage.preprocess(img), old_preprocess(img))
        new = stage.process(Frame(img, k, 0.0)).detections
        fused = stage.preprocess
        stage.preprocess = old_preprocess  # the instance attribute shadows the method for this check
        try:
            old = stage.process(Frame(img, k, 0.0)).detections
        finally:
            stage.preprocess = fused
        assert len(new) == len(old)
        assert np.array_equal(new.xyxy, old.xyxy) and np.array_equal(new.conf, old.conf)
        assert np.array_equal(new.class_id, old.class_id)


def test_yolo_stage_from_two_threads(assets):
    need(assets / "models" / "yolox_nano_coco_416.onnx")
    stage = YoloStage(YoloStage.Params(model="yolox_nano_coco_416", conf=0.3), Context("yolo", "t", assets))
    frames = _vtest_frames(assets, 4, 25)
    want = [stage.process(Frame(f, 0, 0.0)).detections for f in frames]
    errors: list[int] = []

    def work(offset: int) -> None:
        for i in range(8):
            j = (i + offset) % len(frames)
            got = stage.process(Frame(frames[j], 0, 0.0)).detections
            if not (np.array_equal(got.xyxy, want[j].xyxy) and np.array_equal(got.class_id, want[j].class_id)):
                errors.append(j)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_all_modes_with_every_pad_on_a_real_frame(assets):
    img = _vtest_frames(assets, 1, 1)[0]
    for mode, (w, h), pad in itertools.product(MODES, [(416, 416), (640, 640), (353, 289)], [114, 0]):
        assert_same(LetterboxBlob(w, h, mode, pad, 1 / 255, True)(img),
                    reference(img, w, h, mode, pad, 1 / 255, True))
