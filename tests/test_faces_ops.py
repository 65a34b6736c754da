"""Face maths: square crops, exact point mapping, ArcFace alignment, priors, decoders (issue 4).

Pure-numpy tests first; the decoder tests at the end run the real models from STREAMCNN_ASSETS
(skipped with a reason when absent).
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from streamcnn.facedb import cosine_to_l2, l2_normalise, l2_to_cosine
from streamcnn.ops.align import ARCFACE_TEMPLATE, SquareCrops, arcface_align, similarity_matrix
from streamcnn.ops.faces import (
    FaceDetector,
    cell_centres,
    decode_scrfd,
    decode_ultraface_raw,
    decode_yunet,
    shrink_and_pad,
    ultraface_priors,
)

from .conftest import media, need

# ------------------------------------------------------------------------------- square crops


def test_square_crop_maps_issue_numbers_exactly():
    # issue 4: 1280×720 frame, box (400,200,600,450), square side 250 resized to 112
    crops = SquareCrops.from_boxes(np.array([[400, 200, 600, 450]]), 112, scale=1.0)
    assert crops.side[0] == 250 and crops.x0[0] == 375 and crops.y0[0] == 200
    pts = crops.to_frame(np.array([[[56, 56], [28, 84]]], np.float32))
    np.testing.assert_array_equal(pts[0], [[500, 325], [437.5, 387.5]])
    # PFLD outputs are normalised to the crop: 0.5 → the centre
    np.testing.assert_array_equal(crops.normalised_to_frame(np.array([[[0.5, 0.5], [0.25, 0.75]]]))[0],
                                  [[500, 325], [437.5, 387.5]])


def test_pfld68_crop_is_1_1_max_side():
    crops = SquareCrops.from_boxes(np.array([[400, 200, 600, 450]]), 112, scale=1.1)
    assert crops.side[0] == pytest.approx(275.0)
    assert crops.x0[0] == pytest.approx(500 - 137.5) and crops.y0[0] == pytest.approx(325 - 137.5)


def test_crop_outside_frame_is_padded_not_clamped():
    rng = np.random.default_rng(1)
    img = rng.integers(1, 256, (80, 100, 3), dtype=np.uint8)  # no zero pixels inside the frame
    # box at the top-left corner; side 60 → crop starts at (-10, -10); size 60 → scale 1 (integer shift)
    crops = SquareCrops.from_boxes(np.array([[0, 0, 40, 40]]), 60, scale=1.5)
    assert crops.x0[0] == -10 and crops.y0[0] == -10
    patch = crops.extract(img)[0]
    assert patch.shape == (60, 60, 3)
    assert not patch[:10].any() and not patch[:, :10].any()  # outside the frame: black padding
    np.testing.assert_array_equal(patch[10:, 10:], img[:50, :50])  # the rest: an exact copy, not stretched


def test_crop_matrix_and_point_mapping_agree():
    crops = SquareCrops.from_boxes(np.array([[400.3, 200.7, 600.1, 450.9], [-20, 600, 90, 740]]), 112, 1.1)
    m = crops.matrices()
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1280, (2, 7, 2))  # pixel-index coordinates in the frame
    u = np.einsum("nij,nkj->nki", m[:, :, :2], x) + m[:, None, :, 2]  # where warpAffine puts them
    back = crops.to_frame(u + 0.5) - 0.5  # continuous crop coords → continuous frame → index
    np.testing.assert_allclose(back, x, atol=2e-3)


# ------------------------------------------------------------------------------------ alignment


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991), reference for the OpenCV estimate."""
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    u, sv, vt = np.linalg.svd(d0.T @ s0 / len(src))
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    r = u @ d @ vt
    c = np.trace(np.diag(sv) @ d) / ((s0 ** 2).sum() / len(src))
    return np.hstack([c * r, (md - c * r @ ms)[:, None]])


def test_similarity_is_least_squares():
    rng = np.random.default_rng(3)
    for _ in range(5):
        src = rng.uniform(100, 500, (5, 2))
        np.testing.assert_allclose(similarity_matrix(src), _umeyama(src, ARCFACE_TEMPLATE.astype(np.float64)),
                                   atol=1e-4)


def test_similarity_recovers_exact_transform_and_align_hits_template():
    ang, scale, t = 0.3, 2.5, np.array([300.0, 150.0])
    rot = scale * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    kps = (ARCFACE_TEMPLATE.astype(np.float64) @ rot.T) + t  # the template placed in a frame
    m = similarity_matrix(kps)
    inv = np.linalg.inv(rot)
    np.testing.assert_allclose(m[:, :2], inv, atol=1e-5)
    img = np.full((600, 800, 3), 90, np.uint8)
    faces, mats = arcface_align(img, kps[None])
    assert faces.shape == (1, 112, 112, 3)
    mapped = kps @ mats[0, :, :2].T + mats[0, :, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-3)


def test_degenerate_landmarks_give_black_face_not_crash():
    img = np.full((100, 100, 3), 200, np.uint8)
    faces, mats = arcface_align(img, np.full((1, 5, 2), 50.0))
    assert not faces.any() and not mats.any()


# ------------------------------------------------------------------------------ metric maths


def test_metric_conversion():
    assert cosine_to_l2(0.5) == pytest.approx(1.0)
    assert l2_to_cosine(1.0) == pytest.approx(0.5)
    assert l2_to_cosine(cosine_to_l2(0.4)) == pytest.approx(0.4)
    rng = np.random.default_rng(4)
    a, b = l2_normalise(rng.normal(size=(500, 16))), l2_normalise(rng.normal(size=(500, 16)))
    cos, l2 = (a * b).sum(1), np.linalg.norm(a - b, axis=1)
    for t in (-0.2, 0.0, 0.1, 0.3):
        agree = (cos >= t + 1e-5) == (l2 <= cosine_to_l2(t))
        assert agree[np.abs(cos - t) > 1e-5].all()


def test_zero_embedding_normalises_to_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = l2_normalise(np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0], [np.nan, 1.0, 0.0]]))
    np.testing.assert_allclose(out, [[0, 0, 0], [0.6, 0, 0.8], [0, 1, 0]])


# ------------------------------------------------------------------------------ priors / grids


def test_ultraface_priors_count_and_y_steps():
    pri = ultraface_priors(320, 240)
    assert pri.shape == (4420, 4)
    sizes = [(40, 30, 3), (20, 15, 2), (10, 8, 2), (5, 4, 3)]
    start = 0
    steps = []
    for fw, fh, k in sizes:
        lvl = pri[start:start + fw * fh * k]
        start += fw * fh * k
        ys, xs = np.unique(lvl[:, 1]) * 240, np.unique(lvl[:, 0]) * 320
        assert len(ys) == fh and len(xs) == fw
        steps.append((float(np.diff(xs).mean()), float(np.diff(ys).mean())))
    assert start == 4420
    np.testing.assert_allclose(steps, [(8, 8), (16, 16), (32, 30), (64, 60)], atol=1e-3)
    # order: level → row j → column i → min size; first prior: centre (0.5/40, 0.5/30), 10 px
    np.testing.assert_allclose(pri[0], [0.5 / 40, 0.5 / 30, 10 / 320, 10 / 240], rtol=1e-6)
    np.testing.assert_allclose(pri[2, 2:], [24 / 320, 24 / 240], rtol=1e-6)
    np.testing.assert_allclose(pri[3, :2], [1.5 / 40, 0.5 / 30], rtol=1e-6)


def test_decode_ultraface_raw_formula():
    pri = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    out = decode_ultraface_raw(np.array([[1.0, -2.0, np.log(2) / 0.2, 0.0]]), pri)
    cx, cy, w, h = 0.5 + 0.1 * 0.2, 0.5 - 2 * 0.1 * 0.4, 0.4, 0.4
    np.testing.assert_allclose(out[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1e-6)


def test_decode_yunet_synthetic_row():
    w, h = 64, 32
    n = [(w // s) * (h // s) for s in (8, 16, 32)]
    outs = [np.zeros((1, k, 1), np.float32) for k in n] * 2 + [np.zeros((1, k, 4), np.float32) for k in n] \
        + [np.zeros((1, k, 10), np.float32) for k in n]
    outs = [o.copy() for o in outs]
    row = 1 * (w // 16) + 2  # stride 16, gy=1, gx=2
    outs[1][0, row, 0], outs[4][0, row, 0] = 0.81, 0.64  # cls_16, obj_16
    outs[7][0, row] = [0.5, 0.25, np.log(2.0), 0.0]  # bbox_16
    outs[10][0, row] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    xyxy, score, kps = decode_yunet(outs, w, h)
    i = n[0] + row
    cx, cy, bw, bh = (2 + 0.5) * 16, (1 + 0.25) * 16, 32, 16
    np.testing.assert_allclose(xyxy[i], [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], atol=1e-5)
    assert score[i] == pytest.approx(0.81 * 0.64)
    assert decode_yunet(outs, w, h, score_mode="sqrt")[1][i] == pytest.approx(0.72)
    np.testing.assert_allclose(kps[i, 0], [(2 + 0.1) * 16, (1 + 0.2) * 16], atol=1e-5)
    np.testing.assert_allclose(kps[i, 4], [(2 + 0.9) * 16, (1 + 1.0) * 16], atol=1e-5)


def test_decode_scrfd_two_anchors_share_a_centre():
    gx, gy, s = cell_centres(64, 64, (8, 16, 32), 2)
    assert len(gx) == 2 * (64 + 16 + 4)
    assert gx[0] == gx[1] == 0 and gx[2] == gx[3] == 1
    n = [2 * (64 // st) ** 2 for st in (8, 16, 32)]
    outs = [np.zeros((k, 1), np.float32) for k in n] + [np.ones((k, 4), np.float32) for k in n] \
        + [np.zeros((k, 10), np.float32) for k in n]
    xyxy, _, kps = decode_scrfd(outs, 64, 64)
    i = 2 * (3 * 8 + 5) + 1  # stride 8, gy=3, gx=5, second anchor
    np.testing.assert_allclose(xyxy[i], [40 - 8, 24 - 8, 40 + 8, 24 + 8])
    np.testing.assert_allclose(kps[i], np.tile([40, 24], (5, 1)))


def test_shrink_and_pad_to_multiple_of_32():
    img = np.zeros((720, 1280, 3), np.uint8)
    canvas, info = shrink_and_pad(img, 640)
    assert canvas.shape == (384, 640, 3)
    assert info.scale_x == 0.5 and info.scale_y == 0.5
    canvas, info = shrink_and_pad(img, 1280)  # 720 rows is not a multiple of 32 → padded, not resized
    assert canvas.shape == (736, 1280, 3) and info.scale_y == 1.0


# ---------------------------------------------------------------------------- real models


PHOTOS = ["obama.jpg", "obama2.jpg", "biden.jpg", "biden2.jpg", "obama_and_biden.jpg", "zidane.jpg"]


def test_yunet_decode_matches_opencv_facedetectoryn(assets):
    model = assets / "models" / "yunet_n_dynamic.onnx"
    need(model)
    det = FaceDetector(str(model), score_mode="sqrt", conf=0.5, iou=0.3)
    compared = 0
    for name in PHOTOS:
        img = cv2.imread(str(media(assets, name)))
        small, _ = shrink_and_pad(img, 640, 1)  # the same resized image for both (no padding here)
        h, w = small.shape[:2]
        yn = cv2.FaceDetectorYN.create(str(model), "", (w, h), 0.5, 0.3, 5000)
        _, ref = yn.detect(small)
        ref = np.zeros((0, 15), np.float32) if ref is None else ref
        ours = det.detect(small)
        assert len(ours) == len(ref), name
        order = np.argsort(-ref[:, 14])
        ref = ref[order]
        ref_xyxy = np.concatenate([ref[:, :2], ref[:, :2] + ref[:, 2:4]], axis=1)
        ref_xyxy = np.clip(ref_xyxy, 0, [w, h, w, h])  # streamcnn clips boxes to the frame, OpenCV does not
        np.testing.assert_allclose(ours.xyxy, ref_xyxy, atol=0.5, err_msg=name)
        np.testing.assert_allclose(ours.landmarks.reshape(-1, 10), ref[:, 4:14], atol=0.5, err_msg=name)
        np.testing.assert_allclose(ours.conf, ref[:, 14], atol=1e-3, err_msg=name)
        compared += len(ref)
    assert compared >= 10


def test_ultraface_raw_decode_matches_postprocessed_model(assets):
    paths = [assets / "models" / f for f in ("ultraface_rfb320.onnx", "ultraface_rfb320_raw.onnx")]
    need(*paths)
    post, raw = (FaceDetector(str(p), format=f) for p, f in zip(paths, ("ultraface", "ultraface_raw")))
    for name in ("obama.jpg", "biden2.jpg", "obama_and_biden.jpg", "zidane.jpg"):
        img = cv2.imread(str(media(assets, name)))
        blob, _ = post.preprocess(img)
        o_post = post.session.run({post.input_name: blob})
        o_raw = raw.session.run({raw.input_name: blob})
        np.testing.assert_allclose(o_raw[0], o_post[0], atol=1e-5)  # both files carry the softmax
        decoded = decode_ultraface_raw(o_raw[1][0], ultraface_priors())
        np.testing.assert_allclose(decoded, o_post[1][0], atol=1e-3, err_msg=name)  # normalised units
        # the wrong y-steps (32/64 instead of 30/60) would move the last levels by far more
        wrong = ultraface_priors().copy()
        wrong[3600 + 600:, 1] = np.concatenate([
            (np.repeat(np.arange(8), 10 * 2) + 0.5) * 32 / 240, (np.repeat(np.arange(4), 5 * 3) + 0.5) * 64 / 240])
        bad = decode_ultraface_raw(o_raw[1][0], wrong)
        assert np.abs(bad - o_post[1][0]).max() > 0.05
