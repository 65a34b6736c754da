import numpy as np
import pytest

from streamcnn import Detections


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
    # a part without landmarks drops the field rather than inventing values
    m2 = Detections.merge([d, make(2, with_lm=False)])
    assert m2.landmarks is None and len(m2) == 5
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
