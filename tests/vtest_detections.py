"""YOLOX-nano's detections on every frame of vtest.avi, computed once per test session (≈ 15 s on
2 cores) for the tracker and zone tests."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2

from streamcnn import Context, Detections, Frame

VTEST_FPS = 10.0  # MEDIA.md: 768x576, 10 fps, 795 frames
VTEST_FRAMES = 795


@functools.lru_cache(maxsize=2)
def vtest_detections(assets: Path, conf: float = 0.1) -> tuple[Detections, ...]:
    """The YOLOX-nano (416) detections of each vtest.avi frame (all classes, score ≥ ``conf``)."""
    from streamcnn_plugins.yolo import YoloStage

    stage = YoloStage(YoloStage.Params(model="yolox_nano_coco_416", conf=conf, iou=0.45), Context("yolo", "t", assets))
    cap = cv2.VideoCapture(str(assets / "media" / "vtest.avi"))
    out = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            out.append(stage.process(Frame(img, len(out), len(out) / VTEST_FPS)).detections)
    finally:
        cap.release()
        stage.close()
    assert len(out) == VTEST_FRAMES
    return tuple(out)
