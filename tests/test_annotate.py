"""annotate: labels never hidden by a less confident one, never cut at the image edge."""

from __future__ import annotations

import numpy as np

from streamcnn import FACE_CLASS, Context, Detections, Frame
from streamcnn_plugins.annotate import AnnotateStage, class_color, draw_label, label_box

NAMES = ["person", "bicycle", "car"]


def _annotate(image, boxes, conf, class_id):
    det = Detections(np.asarray(boxes, np.float32), np.asarray(conf, np.float32), np.asarray(class_id, np.int64),
                     NAMES)
    stage = AnnotateStage(AnnotateStage.Params(), Context("annotate", "t"))
    return stage.process(Frame(image, 0, 0.0, detections=det)).image


def _label(x1, y1, w, h, name, conf):
    return label_box(f"{name} {conf:.2f}", x1, y1, w, h)[0]


def test_the_most_confident_label_is_drawn_on_top():
    # best first (as NMS returns them); the weaker box's label lands on the stronger one's
    img = _annotate(np.zeros((120, 200, 3), np.uint8), [[20, 40, 120, 100], [24, 44, 150, 110]], [0.9, 0.5], [0, 1])
    x1, y1, x2, y2 = _label(20, 40, 200, 120, "person", 0.9)
    weak = _label(24, 44, 200, 120, "bicycle", 0.5)
    assert weak[0] <= x2 and weak[1] <= y2  # the two labels do overlap
    patch = img[y1:y2 + 1, x1:x2 + 1].reshape(-1, 3)
    top, hidden = np.array(class_color("person")), np.array(class_color("bicycle"))
    assert not (patch == hidden).all(axis=1).any()
    assert (patch == top).all(axis=1).mean() > 0.6  # the rest is the black text
    # no box line crosses the label either: boxes are drawn before any label
    assert ((patch == top).all(axis=1) | (patch.max(axis=1) < 255)).all()


def test_labels_at_the_right_and_bottom_edges_stay_whole():
    w, h = 160, 24
    reference = np.zeros((100, 300, 3), np.uint8)
    for box, cid, conf in [([140, 4, 160, 24], 2, 0.8), ([0, 10, 30, 24], 0, 0.7)]:
        img = _annotate(np.zeros((h, w, 3), np.uint8), [box], [conf], [cid])
        text = f"{NAMES[cid]} {conf:.2f}"
        x1, y1, x2, y2 = label_box(text, box[0], box[1], w, h)[0]
        assert 0 <= x1 and x2 < w and 0 <= y1 and y2 < h
        # the label in the image is pixel for pixel the label drawn with room to spare
        ref = reference.copy()
        rx1, ry1, rx2, ry2 = draw_label(ref, text, 100, 50, class_color(NAMES[cid]))
        assert (rx2 - rx1, ry2 - ry1) == (x2 - x1, y2 - y1)
        np.testing.assert_array_equal(img[y1:y2 + 1, x1:x2 + 1], ref[ry1:ry2 + 1, rx1:rx2 + 1])


def test_persons_and_faces_from_two_stages_are_both_drawn():
    """Merged rows: persons without landmarks or identity (empty values), faces with both."""
    persons = Detections(np.array([[10, 40, 90, 110]], np.float32), [0.9], [0], NAMES)
    faces = Detections(np.array([[120, 40, 160, 80]], np.float32), [0.8], [0], [FACE_CLASS],
                       landmarks=np.array([[[130, 55], [150, 55], [140, 62], [132, 70], [148, 70]]], np.float32),
                       identity=np.array(["obama"], object), similarity=[0.75])
    det = Detections.merge([persons, faces])
    assert np.isnan(det.landmarks[0]).all() and det.identity[0] is None  # what annotate must cope with
    stage = AnnotateStage(AnnotateStage.Params(), Context("annotate", "t"))
    img = stage.process(Frame(np.zeros((120, 200, 3), np.uint8), 0, 0.0, detections=det)).image
    person, face = np.array(class_color("person")), np.array(class_color(FACE_CLASS))
    assert not (person == face).all()  # one colour per class name, not per (shared) class id 0
    # each box's colour on its own left edge, below the labels
    assert (img[60:100, 10] == person).all(axis=1).all() and (img[60:75, 120] == face).all(axis=1).all()
    # the person's label is "person 0.90" (no identity), the face's label is its identity
    for text, (x1, y1), color in (("person 0.90", (10, 40), person), ("obama 0.75", (120, 40), face)):
        ref = np.zeros((120, 200, 3), np.uint8)
        lx1, ly1, lx2, ly2 = draw_label(ref, text, x1, y1, tuple(int(c) for c in color))
        np.testing.assert_array_equal(img[ly1:ly2 + 1, lx1:lx2 + 1], ref[ly1:ly2 + 1, lx1:lx2 + 1])
    # the face's landmarks are drawn (nose tip), none for the person (inside its box: black)
    assert (img[62, 140] == face).all()
    assert (img[70:100, 30:70] == 0).all()
