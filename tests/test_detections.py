import dataclasses
import json

import numpy as np
import pytest

from streamcnn import CLASS_NAME, FACE_CLASS, FACE_POINTS, Detections, DetectorParams, Frame


def make(n=3, with_lm=True):
    xyxy = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    return Detections(
        xyxy, np.linspace(0.1, 0.9, n), np.arange(n), ["a", "b", "c"],
        landmarks=np.zeros((n, 5, 2)) if with_lm else None, identity=np.array(["x"] * n),
    )


def test_types_and_shapes():
    d = make()
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (3, 4)
    assert d.conf.dtype == np.float32 and d.class_id.dtype == np.int64
    assert d.landmarks.shape == (3, 5, 2) and d.landmarks.dtype == np.float32
    assert len(d) == 3


def test_row_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"Detections.conf has 2 rows, expected 3"):
        Detections(np.zeros((3, 4)), np.zeros(2), np.zeros(3))


def test_boolean_and_index_selection():
    d = make()
    sel = d[d.conf > 0.4]
    assert len(sel) == 2
    assert sel.xyxy.tolist() == [[4, 5, 6, 7], [8, 9, 10, 11]]
    assert sel.landmarks.shape == (2, 5, 2) and list(sel.identity) == ["x", "x"]
    assert d[np.array([2, 0])].class_id.tolist() == [2, 0]
    assert len(d[1]) == 1 and d[1].xyxy.shape == (1, 4)


def test_merge_and_empty():
    d = make()
    e = Detections.empty()
    assert len(e) == 0 and e.xyxy.shape == (0, 4)
    m = Detections.merge([d, e, d[:1]])
    assert len(m) == 4 and m.landmarks.shape == (4, 5, 2)
    # a part without landmarks keeps the field: its rows get the empty value (NaN), nothing is dropped
    m2 = Detections.merge([d, make(2, with_lm=False)])
    assert m2.landmarks.shape == (5, 5, 2) and len(m2) == 5
    np.testing.assert_array_equal(m2.landmarks[:3], d.landmarks)
    assert np.isnan(m2.landmarks[3:]).all()
    assert len(Detections.merge([])) == 0


def test_records_and_names():
    d = make()
    recs = d.to_records()
    assert recs[1]["class_name"] == "b" and recs[1]["xyxy"] == [4.0, 5.0, 6.0, 7.0]
    assert recs[0]["identity"] == "x"
    assert Detections(np.zeros((1, 4)), [0.5], [7]).class_name == ["7"]


def test_equality():
    assert make() == make()
    assert make() != make(2)


def test_extra_data_follows_selection_merge_and_equality():
    d = Detections(np.zeros((3, 4)), [0.1, 0.5, 0.9], [0, 1, 2], ["a", "b", "c"],
                   data={"kps5": np.arange(30, dtype=np.float32).reshape(3, 5, 2)})
    sel = d[d.conf > 0.3]
    assert sel.data["kps5"].shape == (2, 5, 2) and sel.data["kps5"][0, 0].tolist() == [10, 11]
    assert sel.class_names == ["a", "b", "c"]
    m = Detections.merge([d, sel])
    assert m.data["kps5"].shape == (5, 5, 2) and m.class_names == ["a", "b", "c"]
    other = Detections(np.zeros((3, 4)), [0.1, 0.5, 0.9], [0, 1, 2], ["a", "b", "c"],
                       data={"kps5": np.zeros((3, 5, 2), np.float32)})
    assert d != other
    with pytest.raises(ValueError, match=r"Detections.data\['kps5'\] has 2 rows, expected 3"):
        Detections(np.zeros((3, 4)), [0, 0, 0], [0, 0, 0], data={"kps5": np.zeros((2, 5, 2))})


# ------------------------------------------------- several producers on one frame (issue 8 §3)


def _persons(n=2):
    return Detections(np.arange(n * 4, dtype=np.float32).reshape(n, 4) * 10, np.full(n, 0.9), np.zeros(n),
                      ["person", "bicycle"], track_id=np.arange(n) + 7, stage=["yolo"] * n)


def _faces(n=3, k=5):
    return Detections(np.arange(n * 4, dtype=np.float32).reshape(n, 4), np.full(n, 0.8), np.zeros(n), [FACE_CLASS],
                      landmarks=np.ones((n, k, 2)), identity=np.array(["obama"] * n, object),
                      similarity=np.full(n, 0.7), embedding=np.ones((n, 4)), stage=["face_detect"] * n,
                      data={FACE_POINTS: np.ones((n, 5, 2), np.float32), "ok": np.ones(n, bool),
                            "count": np.arange(n), "tag": np.array(["t"] * n), "obj": np.array([1] * n, object)})


def test_class_names_and_stages_are_per_row_and_survive_a_merge():
    m = Detections.merge([_persons(), _faces()])
    assert m.class_name == ["person", "person", "face", "face", "face"]
    assert list(m.data[CLASS_NAME]) == m.class_name and m.data[CLASS_NAME].dtype == object
    assert list(m.stage) == ["yolo"] * 2 + ["face_detect"] * 3
    assert m.class_id.tolist() == [0] * 5  # ids are per producer; the names tell the rows apart
    assert m.class_names is None  # the parts' tables differ: only the per-row names hold
    assert Detections.merge([_faces(), _faces(1)]).class_names == [FACE_CLASS]
    assert list(m[m.class_mask(FACE_CLASS)].stage) == ["face_detect"] * 3
    assert m.class_mask("person", FACE_CLASS).all() and not m.class_mask("dog").any()
    # names outside the table are the id as text; an explicit per-row name wins over the table
    d = Detections(np.zeros((2, 4)), [0.5, 0.5], [1, 5], ["a", "b"])
    assert d.class_name == ["b", "5"]
    assert Detections(np.zeros((1, 4)), [0.5], [0], ["a"], data={CLASS_NAME: ["z"]}).class_name == ["z"]
    assert list(Detections.empty().stage) == [] and list(Detections(np.zeros((1, 4)), [1], [0]).stage) == [""]
    assert list(Detections(np.zeros((2, 4)), [1, 1], [0, 0], stage="yolo").stage) == ["yolo", "yolo"]


def test_merge_fills_every_missing_field_with_its_empty_value():
    p, f = _persons(), _faces()
    m = Detections.merge([p, f])
    assert m.landmarks.shape == (5, 5, 2) and np.isnan(m.landmarks[:2]).all() and (m.landmarks[2:] == 1).all()
    assert m.embedding.shape == (5, 4) and np.isnan(m.embedding[:2]).all() and (m.embedding[2:] == 1).all()
    assert list(m.identity) == [None, None, "obama", "obama", "obama"]
    assert np.isnan(m.similarity[:2]).all() and m.similarity[2:].tolist() == pytest.approx([0.7] * 3)
    assert m.track_id.tolist() == [7, 8, -1, -1, -1]
    assert np.isnan(m.data[FACE_POINTS][:2]).all() and m.data[FACE_POINTS].dtype == np.float32
    assert m.data["ok"].tolist() == [False, False, True, True, True]
    assert m.data["count"].tolist() == [-1, -1, 0, 1, 2]
    assert m.data["tag"].tolist() == ["", "", "t", "t", "t"]
    assert m.data["obj"].tolist() == [None, None, 1, 1, 1]
    # the order of the parts does not matter for which fields are kept
    r = Detections.merge([f, p])
    assert set(r.data) == set(m.data) and r.track_id.tolist() == [-1, -1, -1, 7, 8]
    # selection keeps the fill values; equality treats NaN as equal to NaN
    assert m == Detections.merge([p, f]) and m[:2] == Detections.merge([p, f])[:2]
    # an empty part still contributes its fields (and their per-row shape)
    e = Detections.merge([p, Detections.empty(), f[:0]])
    assert e.embedding.shape == (2, 4) and np.isnan(e.embedding).all() and list(e.identity) == [None, None]


def test_merge_refuses_what_it_cannot_fill():
    with pytest.raises(ValueError, match=r"landmarks has \(5, 2\) vs \(68, 2\) values per row"):
        Detections.merge([_faces(2, k=5), _faces(1, k=68)])
    with pytest.raises(ValueError, match=r"embedding has \(4,\) vs \(2,\) values per row"):
        Detections.merge([_faces(1), Detections(np.zeros((1, 4)), [1], [0], embedding=np.ones((1, 2)))])
    u8 = Detections(np.zeros((1, 4)), [1], [0], data={"mask": np.ones(1, np.uint8)})
    with pytest.raises(ValueError, match=r"data\['mask'\] \(uint8\) is missing from some parts and has no empty"):
        Detections.merge([u8, _persons()])
    assert Detections.merge([u8, u8]).data["mask"].tolist() == [1, 1]  # fine when every part has it
    # ... or when the parts without it have no rows (a detector adding to a fresh frame)
    assert Detections.merge([Detections.empty(), u8, _persons()[:0]]).data["mask"].tolist() == [1]


def test_rows_of_empty_values_do_not_fix_the_point_count():
    # persons with NaN 5-point rows (from an earlier merge) take 68-point face landmarks
    m = Detections.merge([_persons(), _faces(1, k=5)])
    faces = m.class_mask(FACE_CLASS)
    out = m.replace_rows(faces, dataclasses.replace(m[faces], landmarks=np.full((1, 68, 2), 3.0)))
    assert out.landmarks.shape == (3, 68, 2) and np.isnan(out.landmarks[:2]).all() and (out.landmarks[2] == 3).all()


def test_replace_rows_keeps_order_and_other_rows():
    m = Detections.merge([_faces(1), _persons(), _faces(1)])  # face, person, person, face
    faces = m.class_mask(FACE_CLASS)
    sub = m[faces]
    new = dataclasses.replace(sub, identity=np.array(["a", "b"], object), conf=[0.1, 0.2])
    out = m.replace_rows(faces, new)
    assert out.class_name == ["face", "person", "person", "face"]
    assert list(out.identity) == ["a", None, None, "b"] and out.conf.tolist() == pytest.approx([0.1, 0.9, 0.9, 0.2])
    np.testing.assert_array_equal(out.xyxy, m.xyxy)
    assert out.track_id.tolist() == m.track_id.tolist() and list(out.stage) == list(m.stage)
    assert out.replace_rows(np.array([3, 0]), out[[3, 0]]) == out  # integer indices, in their order
    with pytest.raises(ValueError, match="2 rows selected but the new part has 1"):
        m.replace_rows(faces, sub[:1])
    with pytest.raises(ValueError, match="repeat"):
        m.replace_rows(np.array([0, 0]), sub)


def test_records_of_merged_rows_are_valid_json():
    m = Detections.merge([_persons(), _faces(1)])
    recs = m.to_records()
    text = json.dumps(recs, allow_nan=False)  # no NaN ever reaches the JSON
    assert [r["class_name"] for r in recs] == ["person", "person", "face"]
    assert [r["stage"] for r in recs] == ["yolo", "yolo", "face_detect"]
    assert recs[0]["landmarks"] is None and recs[0]["identity"] is None and recs[0]["similarity"] is None
    assert recs[0]["track_id"] == 7 and recs[2]["track_id"] == -1
    assert recs[2]["landmarks"] == [[1.0, 1.0]] * 5 and recs[2]["identity"] == "obama"
    assert recs[2]["similarity"] == 0.7 and '"stage":"face_detect"' in text.replace(" ", "")
    assert set(recs[0]) == {"xyxy", "conf", "class_id", "class_name", "stage", "landmarks", "identity",
                            "similarity", "track_id"}


def test_frame_adds_or_replaces_and_names_the_stage():
    frame = Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0)
    frame.add_detections(Detections(np.zeros((2, 4)), [0.9, 0.8], [0, 0], ["person"]), "yolo")
    frame.add_detections(Detections(np.ones((1, 4)), [0.7], [0], [FACE_CLASS], landmarks=np.ones((1, 5, 2))),
                         "face_detect")
    det = frame.detections
    assert det.class_name == ["person", "person", "face"] and list(det.stage) == ["yolo", "yolo", "face_detect"]
    assert det.conf.tolist() == pytest.approx([0.9, 0.8, 0.7]) and np.isnan(det.landmarks[:2]).all()
    # a stage name already set on rows is kept; replace drops the earlier rows
    frame.add_detections(Detections(np.zeros((1, 4)), [0.5], [0], stage=["upstream"]), "yolo", replace=True)
    assert list(frame.detections.stage) == ["upstream"] and len(frame.detections) == 1
    # the first detector on a fresh frame gives exactly its own detections
    fresh = Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0)
    own = Detections(np.zeros((2, 4)), [0.9, 0.8], [0, 1], ["a", "b"], stage=["s", "s"])
    fresh.add_detections(own, "s")
    assert fresh.detections == own


def test_detector_option_is_shared_and_strict():
    from streamcnn import ModelParams
    from streamcnn_plugins.faces import FaceDetectStage
    from streamcnn_plugins.yolo import YoloStage

    for params in (YoloStage.Params, FaceDetectStage.Params):
        assert issubclass(params, DetectorParams) and issubclass(params, ModelParams)
        assert params.model_fields["replace"].default is False
    assert YoloStage.Params(model="m", replace=True).replace is True
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        FaceDetectStage.Params(replce=True)
