"""Several detectors in one pipeline share `Detections` (issue 8 §3), on real media.

``yolo → face_detect → annotate`` on zidane.jpg (MEDIA.md: 2 persons in all YOLO models, 2 faces
in all face detectors) keeps both the persons and the faces, each row with its own class name and
producing stage, equal to what each detector finds alone; face stages act only on the face rows.
Every test skips with a reason when the STREAMCNN_ASSETS files are absent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcnn import FACE_CLASS, Context, Detections, Frame
from streamcnn_plugins.annotate import AnnotateStage, class_color
from streamcnn_plugins.faces import FaceDetectStage, FaceRecognizeStage, LandmarksStage
from streamcnn_plugins.yolo import YoloStage

from .conftest import assets_dir, need, run_cli, write

MEDIA = assets_dir() / "media"
MODELS = assets_dir() / "models"
YOLO = "yolox_nano_coco_416"
# rough boxes (frame pixels) of zidane.jpg, 1280×720: YOLOX-nano persons and YuNet faces
PERSONS = [[151, 201, 680, 713], [688, 37, 1150, 707]]
FACES = [[915, 94, 1058, 279], [553, 267, 656, 425]]



def _ctx(name: str, tmp: Path) -> Context:
    return Context(name, "test", tmp, logging.getLogger(f"streamcnn.test.{name}"))


@pytest.fixture
def zidane() -> np.ndarray:
    need(MEDIA / "zidane.jpg", MODELS / f"{YOLO}.onnx", MODELS / "yunet_n_dynamic.onnx")
    return cv2.imread(str(MEDIA / "zidane.jpg"))


def _run(stages: list, image: np.ndarray) -> Frame:
    frame = Frame(image.copy(), 0, 0.0)
    for s in stages:
        frame = s.process(frame)
    return frame


def _yolo(tmp: Path, **kw) -> YoloStage:
    return YoloStage(YoloStage.Params(model=YOLO, **kw), _ctx("yolo", tmp))


def _faces(tmp: Path, **kw) -> FaceDetectStage:
    return FaceDetectStage(FaceDetectStage.Params(**kw), _ctx("face_detect", tmp))


def _same_rows(merged: Detections, alone: Detections) -> None:
    """The merged rows are exactly the single-stage results (boxes, scores, names, landmarks)."""
    np.testing.assert_array_equal(merged.xyxy, alone.xyxy)
    np.testing.assert_array_equal(merged.conf, alone.conf)
    np.testing.assert_array_equal(merged.class_id, alone.class_id)
    assert merged.class_name == alone.class_name and list(merged.stage) == list(alone.stage)
    if alone.landmarks is not None:
        np.testing.assert_array_equal(merged.landmarks, alone.landmarks)
    elif merged.landmarks is not None:
        assert np.isnan(merged.landmarks).all()


def test_yolo_then_face_detect_keeps_persons_and_faces(tmp_path, zidane):
    yolo, faces = _yolo(tmp_path), _faces(tmp_path)
    persons_alone = _run([yolo], zidane).detections
    faces_alone = _run([faces], zidane).detections
    det = _run([yolo, faces], zidane).detections
    assert persons_alone.class_name.count("person") == 2 and faces_alone.class_name == [FACE_CLASS] * 2
    assert len(det) == len(persons_alone) + len(faces_alone)
    p = len(persons_alone)
    _same_rows(det[:p], persons_alone)
    _same_rows(det[p:], faces_alone)
    assert det.class_name.count("person") == 2 and det.class_name.count(FACE_CLASS) == 2
    assert list(det.stage) == ["yolo"] * p + ["face_detect"] * 2
    assert det.landmarks.shape == (len(det), 5, 2) and np.isnan(det.landmarks[:p]).all()
    assert np.isfinite(det.landmarks[p:]).all()
    # the boxes, roughly (MEDIA.md: 2 persons, 2 faces), best first; each face inside its person
    people = det[det.class_mask("person")]
    np.testing.assert_allclose(people.xyxy, PERSONS, atol=12)
    face = det[det.class_mask(FACE_CLASS)]
    np.testing.assert_allclose(face.xyxy, FACES, atol=12)
    inside = (face.xyxy[:, None, :2] >= people.xyxy[None, :, :2]) & (face.xyxy[:, None, 2:] <= people.xyxy[None, :, 2:])
    assert inside.all(axis=2).any(axis=1).all()
    # the other order adds too: faces first, then persons
    rev = _run([faces, yolo], zidane).detections
    _same_rows(rev[:2], faces_alone)
    _same_rows(rev[2:], persons_alone)
    # JSON records carry both, each with its class name and stage
    recs = json.loads(json.dumps(det.to_records(), allow_nan=False))
    assert [(r["class_name"], r["stage"]) for r in recs if r["class_name"] in ("person", FACE_CLASS)] == \
        [("person", "yolo")] * 2 + [(FACE_CLASS, "face_detect")] * 2
    assert all(r["landmarks"] is None for r in recs[:p]) and all(len(r["landmarks"]) == 5 for r in recs[p:])


def test_replace_keeps_only_the_last_detector(tmp_path, zidane):
    det = _run([_yolo(tmp_path), _faces(tmp_path, replace=True)], zidane).detections
    assert det.class_name == [FACE_CLASS] * 2 and list(det.stage) == ["face_detect"] * 2
    assert det.landmarks.shape == (2, 5, 2) and np.isfinite(det.landmarks).all()
    det = _run([_faces(tmp_path), _yolo(tmp_path, replace=True)], zidane).detections
    assert FACE_CLASS not in det.class_name and det.class_name.count("person") == 2 and det.landmarks is None


def test_annotate_draws_persons_and_faces(tmp_path, zidane):
    frame = _run([_yolo(tmp_path), _faces(tmp_path), AnnotateStage(AnnotateStage.Params(labels=False),
                                                                   _ctx("annotate", tmp_path))], zidane)
    det, img = frame.detections, frame.image
    for name in ("person", FACE_CLASS):
        color = np.array(class_color(name))
        for x1, y1, _, y2 in det[det.class_mask(name)].xyxy.round().astype(int):
            edge = img[y1 + (y2 - y1) // 3:y2 - (y2 - y1) // 3, x1]  # middle third of the left edge
            assert (edge == color).all(axis=1).mean() > 0.9, (name, x1, y1)
    # the face points are drawn, in the face colour; none for the persons (their rows are NaN)
    nose = det.landmarks[det.class_mask(FACE_CLASS), 2].round().astype(int)
    assert all((img[y, x] == class_color(FACE_CLASS)).all() for x, y in nose)


def test_face_stages_act_only_on_the_face_rows(tmp_path, zidane):
    need(MODELS / "pfld68_112.onnx", MODELS / "mobilefacenet_128d.onnx")
    db = str(tmp_path / "none_yet.npz")  # allowed: every face is "unknown"
    face_stages = [_faces(tmp_path), LandmarksStage(LandmarksStage.Params(), _ctx("landmarks", tmp_path)),
                   FaceRecognizeStage(FaceRecognizeStage.Params(database=db), _ctx("face_recognize", tmp_path))]
    yolo = _yolo(tmp_path)
    alone = _run(face_stages, zidane).detections
    persons = _run([yolo], zidane).detections
    det = _run([yolo, *face_stages], zidane).detections
    p = len(persons)
    # persons untouched: same rows, empty values in the face fields
    _same_rows(det[:p], persons)
    assert np.isnan(det.landmarks[:p]).all() and np.isnan(det.embedding[:p]).all()
    assert list(det.identity[:p]) == [None] * p and np.isnan(det.similarity[:p]).all()
    # faces: what the face pipeline alone gives (68 points, the detector's 5 points kept, embeddings)
    faces = det[p:]
    assert faces.landmarks.shape == (2, 68, 2) and faces.class_name == [FACE_CLASS] * 2
    np.testing.assert_array_equal(faces.landmarks, alone.landmarks)
    np.testing.assert_array_equal(faces.data["kps5"], alone.data["kps5"])
    np.testing.assert_allclose(faces.embedding, alone.embedding, atol=1e-6)
    assert list(faces.identity) == list(alone.identity) == ["unknown"] * 2


def test_yaml_pipeline_yolo_face_detect_annotate(tmp_path, zidane):
    """Through ``streamcnn run``: the JSON lines and the annotated image are the stages' results."""
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "zidane.jpg").write_bytes((MEDIA / "zidane.jpg").read_bytes())
    cfg = write(tmp_path / "p.yaml", f"""
        pipelines:
          both:
            source: imgs
            stages:
              - yolo: {{model: {YOLO}}}
              - face_detect: {{replace: false}}
              - annotate: {{}}
            sinks: [{{jsonl: {{path: out.jsonl}}}}, {{images: {{path: "out/{{index:03d}}.png"}}}}]
        """)
    res = run_cli("run", str(cfg))
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 1
    recs = json.loads(lines[0])["detections"]
    frame = _run([_yolo(tmp_path), _faces(tmp_path), AnnotateStage(AnnotateStage.Params(), _ctx("annotate", tmp_path))],
                 zidane)
    assert recs == json.loads(json.dumps(frame.detections.to_records()))
    assert sum(r["class_name"] == "person" and r["stage"] == "yolo" for r in recs) == 2
    assert sum(r["class_name"] == FACE_CLASS and r["stage"] == "face_detect" for r in recs) == 2
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / "000.png")), frame.image)
