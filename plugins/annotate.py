"""Built-in stage ``annotate``: draws ``frame.detections`` onto ``frame.image`` for video sinks.

Boxes in a colour per class, a label ``name conf`` (or ``identity similarity`` when a recogniser
set identities) on a filled background so it stays readable, and landmarks as dots.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamcnn import Field, Frame, Params, Stage, hookimpl


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour for a class id (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


class AnnotateStage(Stage):
    """Draw boxes, labels, landmarks and identities (in place on ``frame.image``)."""

    class Params(Params):
        thickness: int = Field(2, ge=1, description="box line width in pixels")
        font_scale: float = Field(0.5, gt=0)
        labels: bool = True
        landmarks: bool = True
        min_conf: float = Field(0.0, ge=0, le=1, description="draw only detections above this score")

    def process(self, frame: Frame) -> Frame:
        det = frame.detections
        if not len(det):
            return frame
        if self.params.min_conf > 0:
            det = det[det.conf > self.params.min_conf]
        img = frame.image
        if not img.flags.writeable:
            img = frame.image = img.copy()
        p = self.params
        names = det.class_name
        for i in range(len(det)):
            x1, y1, x2, y2 = (int(round(v)) for v in det.xyxy[i])
            color = class_color(int(det.class_id[i]))
            cv2.rectangle(img, (x1, y1), (x2, y2), color, p.thickness, cv2.LINE_AA)
            if p.landmarks and det.landmarks is not None:
                for x, y in det.landmarks[i]:
                    cv2.circle(img, (int(round(x)), int(round(y))), max(1, p.thickness), color, -1, cv2.LINE_AA)
            if p.labels:
                if det.identity is not None:
                    sim = f" {det.similarity[i]:.2f}" if det.similarity is not None else ""
                    text = f"{det.identity[i]}{sim}"
                else:
                    text = f"{names[i]} {det.conf[i]:.2f}"
                (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, p.font_scale, 1)
                ty = y1 - 4 if y1 - th - base - 4 >= 0 else y1 + th + 4
                cv2.rectangle(img, (x1, ty - th - 3), (x1 + tw + 4, ty + base - 1), color, -1)
                cv2.putText(img, text, (x1 + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, p.font_scale, (0, 0, 0), 1,
                            cv2.LINE_AA)
        return frame


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {"annotate": AnnotateStage}
