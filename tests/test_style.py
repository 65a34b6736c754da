"""The `style` stage (multistyle26 and the arbitrary-style pair) and `streamcnn.ops.image`.

Real models come from STREAMCNN_ASSETS/models (shared/models, MODELS.md section 10) and are skipped
with a reason when absent; images are kept small (≤ 333×250 or `size: 256`) so the suite stays fast.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcnn import Context, Frame
from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn.errors import ConfigError
from streamcnn.modelstage import DeviceParams
from streamcnn.ops.image import (
    blend,
    centre_square,
    crop,
    fit_longer_side,
    fit_within,
    from_tensor,
    pad_to_multiple,
    pad_to_size,
    resize_to,
    to_tensor,
)
from streamcnn.runtime import ModelSession
from streamcnn_plugins import style as style_mod
from streamcnn_plugins.style import StyleStage, clear_style_cache, style_weights

from .conftest import media, need

MODEL_FILES = ("style_multistyle26.onnx", "style_arbitrary_predict.onnx", "style_arbitrary_transform.onnx")
STARRY = {"style_image": "starry_night.jpg"}


# -- streamcnn.ops.image ------------------------------------------------------------------------------
def test_pad_to_multiple_reflects_like_numpy_and_crop_undoes_it():
    img = np.random.default_rng(0).integers(0, 256, (250, 333, 3), np.uint8)
    padded, (pb, pr) = pad_to_multiple(img, 4)
    assert padded.shape == (252, 336, 3) and (pb, pr) == (2, 3)
    np.testing.assert_array_equal(padded, np.pad(img, ((0, 2), (0, 3), (0, 0)), mode="reflect"))
    np.testing.assert_array_equal(crop(padded, 250, 333), img)
    same, pads = pad_to_multiple(padded, 4)
    assert same is padded and pads == (0, 0)


def test_pad_to_size_modes_and_errors():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert pad_to_size(img, 3, 4, "edge").tolist() == [[0, 1, 2, 2], [3, 4, 5, 5], [3, 4, 5, 5]]
    assert pad_to_size(img, 3, 4, "zero").tolist() == [[0, 1, 2, 0], [3, 4, 5, 0], [0, 0, 0, 0]]
    assert pad_to_size(img, 5, 3, "reflect")[:, 0].tolist() == [0, 3, 0, 3, 0]  # longer than the image
    with pytest.raises(ValueError, match="cannot pad a 2x3 image to the smaller size 1x3"):
        pad_to_size(img, 1, 3)
    with pytest.raises(ValueError, match="mode must be"):
        pad_to_multiple(img, 4, "wrap")
    with pytest.raises(ValueError, match="cannot crop 3x3"):
        crop(img, 3, 3)


def test_fit_sizes():
    assert fit_longer_side(640, 480, 256) == (256, 192)
    assert fit_longer_side(250, 333, 100) == (75, 100)
    assert fit_within(640, 480, 384, 384) == (384, 288)
    assert fit_within(333, 250, 384, 384) == (384, 288)
    assert fit_within(1000, 3, 384, 384) == (384, 1)
    with pytest.raises(ValueError):
        fit_longer_side(0, 10, 5)


def test_tensor_round_trip_layouts_and_clipping():
    img = np.random.default_rng(1).integers(0, 256, (5, 7, 3), np.uint8)
    nchw, nhwc = to_tensor(img, "nchw"), to_tensor(img, "nhwc")
    assert nchw.shape == (1, 3, 5, 7) and nhwc.shape == (1, 5, 7, 3) and nchw.dtype == nhwc.dtype == np.float32
    np.testing.assert_allclose(nchw[0, 0], img[:, :, 2] / 255, atol=1e-7)  # channel 0 is red
    np.testing.assert_array_equal(nhwc[0].transpose(2, 0, 1), nchw[0])
    np.testing.assert_array_equal(from_tensor(nchw, "nchw"), img)
    np.testing.assert_array_equal(from_tensor(nhwc, "nhwc"), img)
    over = np.array([-0.2, 0.5, 1.3], np.float32).reshape(1, 1, 1, 3)  # RGB
    assert from_tensor(over, "nhwc").tolist() == [[[255, 128, 0]]]  # BGR, clipped, rounded half up


def test_blend_and_centre_square():
    a = np.full((2, 2, 3), 100, np.uint8)
    b = np.full((2, 2, 3), 200, np.uint8)
    assert blend(a, b, 0.0) is a and blend(a, b, 1.0) is b
    assert blend(a, b, 0.25)[0, 0, 0] == 125
    with pytest.raises(ValueError):
        blend(a, b, 1.5)
    assert centre_square(np.zeros((4, 10))).shape == (4, 4)
    assert resize_to(a, 2, 2) is a and resize_to(a, 4, 6).shape == (6, 4, 3)


def test_style_weights_one_hot_and_normalised_blend():
    one = style_weights(19, 26)
    assert one.dtype == np.float32 and one.shape == (26,) and one[19] == 1 and one.sum() == 1
    w = style_weights({3: 1, 19: 3}, 26)
    assert w[3] == pytest.approx(0.25) and w[19] == pytest.approx(0.75) and w.sum() == pytest.approx(1)
    np.testing.assert_array_equal(style_weights({3: 2, 19: 6}, 26), w)
    np.testing.assert_array_equal(style_weights(None, 26), style_weights(0, 26))
    with pytest.raises(ValueError, match="out of range 0..25"):
        style_weights(26, 26)
    with pytest.raises(ValueError, match="not all zero"):
        style_weights({1: 0.0}, 26)


# -- real models --------------------------------------------------------------------------------------
@pytest.fixture
def models(assets: Path) -> Path:
    for name in MODEL_FILES:
        need(assets / "models" / name)
    media(assets, "starry_night.jpg")
    return assets / "models"


@pytest.fixture
def photo(assets: Path) -> np.ndarray:
    """obama_and_biden.jpg (2000×1428) shrunk to an odd 333×250 (W×H) uint8 BGR frame."""
    img = cv2.imread(str(media(assets, "obama_and_biden.jpg")))
    return cv2.resize(img, (333, 250), interpolation=cv2.INTER_AREA)


@pytest.fixture
def calls(monkeypatch) -> dict[str, int]:
    """Counts `ModelSession.run` calls per model file stem (every session, every thread)."""
    counts: dict[str, int] = {}
    original = ModelSession.run

    def counting(self, feeds, output_names=None):
        key = Path(str(self.path or self.name).split(" (")[0]).stem
        counts[key] = counts.get(key, 0) + 1
        return original(self, feeds, output_names)

    monkeypatch.setattr(ModelSession, "run", counting)
    clear_style_cache()
    yield counts
    clear_style_cache()


def make(**options) -> StyleStage:
    return StyleStage(StyleStage.Params(**options), Context("style", "test"))


def run(stage: StyleStage, image: np.ndarray, index: int = 0) -> np.ndarray:
    return stage.process(Frame(image.copy(), index, index / 25)).image


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference on the 0..1 scale."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255)


@pytest.mark.parametrize("options", [
    {"style": 7},  # multistyle at the frame's own odd size: 250×333 → padded 252×336
    {"style": 7, "size": 101},  # odd working size 101×76
    STARRY,  # arbitrary, fixed 384×384 model input
    {**STARRY, "content_size": 129},  # arbitrary with dynamic H, W: 129×97
], ids=["multistyle", "multistyle-size101", "arbitrary-fixed384", "arbitrary-content129"])
def test_output_has_the_input_size_and_dtype_for_odd_sizes(models, photo, options):
    out = run(make(**options), photo)
    assert out.shape == (250, 333, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert mad(out, photo) > 0.05  # it was really stylised, not passed through


@pytest.mark.parametrize("options", [{"style": 19}, STARRY], ids=["multistyle", "arbitrary"])
def test_strength_0_is_byte_identical_and_runs_no_network(models, photo, calls, options):
    stage = make(**options, strength=0)
    calls.clear()
    frame = Frame(photo.copy(), 0, 0.0)
    before = frame.image
    out = stage.process(frame).image
    assert out is before and np.array_equal(out, photo)
    assert calls == {}


@pytest.mark.parametrize("options", [{"style": 19}, STARRY], ids=["multistyle", "arbitrary"])
def test_strength_1_changes_the_photo_substantially_and_half_strength_lies_between(models, assets, options):
    img = cv2.imread(str(media(assets, "obama_and_biden.jpg")))
    full = run(make(**options, size=256), img)
    assert full.shape == img.shape
    d_full = mad(full, img)
    assert d_full > 0.1
    half = run(make(**options, size=256, strength=0.5), img)
    assert mad(half, img) == pytest.approx(d_full / 2, rel=0.05)
    assert mad(half, full) == pytest.approx(d_full / 2, rel=0.05)


def test_two_styles_give_clearly_different_outputs(models, photo, assets):
    a, b = run(make(style=0), photo), run(make(style=19), photo)
    assert mad(a, b) > 0.08
    other = str(media(assets, "messi5.jpg"))
    c, d = run(make(**STARRY, size=256), photo), run(make(style_image=other, size=256), photo)
    assert mad(c, d) > 0.05


def test_blend_weights_are_normalised_and_mix_the_styles(models, photo):
    ab = run(make(style={3: 1, 19: 1}), photo)
    np.testing.assert_array_equal(run(make(style={3: 5, 19: 5}), photo), ab)
    only3, only19 = run(make(style=3), photo), run(make(style={3: 0, 19: 2}), photo)
    np.testing.assert_array_equal(only19, run(make(style=19), photo))
    assert mad(ab, only3) > 0.02 and mad(ab, only19) > 0.02  # a mixture, neither pure style


@pytest.mark.parametrize("options", [{"style": 5}, STARRY], ids=["multistyle", "arbitrary"])
def test_deterministic(models, photo, options):
    stage = make(**options)
    first = run(stage, photo)
    np.testing.assert_array_equal(run(stage, photo, 1), first)
    np.testing.assert_array_equal(run(make(**options), photo), first)


def test_style_vector_is_computed_once_for_a_whole_video_and_shared(models, assets, calls, tmp_path):
    video = media(assets, "Megamind.avi")
    cfg = tmp_path / "style.yaml"
    cfg.write_text(textwrap.dedent(f"""
        pipelines:
          p:
            source: {{uri: {video}, policy: all}}
            stages:
              - style: {{style_image: starry_night.jpg, size: 96}}
            sinks: [null]
            on_error: stop
    """))
    stats = Engine(load_config(cfg), max_frames=12).run()[0]
    assert stats.error is None and stats.frames == 12
    assert calls["style_arbitrary_predict"] == 1
    assert calls["style_arbitrary_transform"] == 12
    # a second stage, naming the same picture by its absolute path: the cached vector is reused
    second = make(style_image=str(media(assets, "starry_night.jpg")), size=96)
    assert calls["style_arbitrary_predict"] == 1
    run(second, np.zeros((48, 64, 3), np.uint8))
    assert calls["style_arbitrary_predict"] == 1 and calls["style_arbitrary_transform"] == 13
    # another picture is a new vector
    make(style_image=str(media(assets, "messi5.jpg")), size=96)
    assert calls["style_arbitrary_predict"] == 2


def test_style_vector_matches_a_direct_predict(models, assets, calls):
    """The cached vector is the predict model's output on the centre square at 256×256, RGB 0..1 NHWC."""
    import onnxruntime as ort

    img = cv2.imread(str(media(assets, "starry_night.jpg")))  # 752×600 → centre 600×600 at x 76
    x = cv2.resize(img[:, 76:676], (256, 256), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    x = (x.astype(np.float32) / 255)[None]
    sess = ort.InferenceSession(str(models / "style_arbitrary_predict.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"style_image": x})[0]
    stage = make(**STARRY)
    got = stage.net.extra["mobilenet_conv/Conv/BiasAdd"]
    assert got.shape == (1, 1, 1, 100)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_every_3_reuses_the_last_result(models, assets, calls):
    cap = cv2.VideoCapture(str(media(assets, "Megamind.avi")))
    frames = []
    for _ in range(7):
        ok, img = cap.read()
        assert ok
        frames.append(cv2.resize(img, (180, 132), interpolation=cv2.INTER_AREA))
    cap.release()
    assert mad(frames[0], frames[2]) > 0  # the video moves
    stage = make(style=2, every=3)
    calls.clear()
    outs = [run(stage, f, i) for i, f in enumerate(frames)]
    assert calls == {"style_multistyle26": 3}  # frames 0, 3 and 6
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[2], outs[0])
    assert not np.array_equal(outs[3], outs[0])
    np.testing.assert_array_equal(outs[3], run(make(style=2), frames[3]))
    styled6 = outs[6].copy()
    outs[6][:] = 0  # a later stage drawing on the frame must not change the cached result
    np.testing.assert_array_equal(run(stage, frames[4], 7), styled6)  # frame 7 reuses frame 6's result
    # at strength < 1 the reused stylised image is blended over the *current* frame
    half = make(style=2, every=3, strength=0.5)
    h0, h1 = run(half, frames[0]), run(half, frames[1], 1)
    np.testing.assert_array_equal(h1, blend(frames[1], outs[0], 0.5))
    assert not np.array_equal(h0, h1)


def test_a_new_frame_size_restyles_at_once(models, photo, calls):
    stage = make(style=2, every=100)
    calls.clear()
    run(stage, photo)
    small = run(stage, photo[:100, :120].copy(), 1)
    assert small.shape == (100, 120, 3) and calls == {"style_multistyle26": 2}


def test_fixed_input_is_kept_by_default_and_relaxed_only_for_another_size(models, photo):
    fixed = make(**STARRY)
    assert fixed.box == (384, 384) and fixed.side is None
    assert fixed.net.session.inputs[0].shape[1:3] == (384, 384)
    relaxed = make(**STARRY, size=200)
    assert relaxed.box is None and relaxed.side == 200
    assert "made dynamic" in relaxed.net.session.name
    a, b = run(fixed, photo), run(relaxed, photo)
    assert a.shape == b.shape == photo.shape
    assert mad(a, b) < 0.1  # the same style at two working resolutions


def test_model_as_explicit_predict_transform_pair(models, photo, tmp_path):
    pair = [str(models / "style_arbitrary_predict.onnx"), str(models / "style_arbitrary_transform.onnx")]
    stage = make(model=pair, **STARRY, size=128)
    np.testing.assert_array_equal(run(stage, photo), run(make(**STARRY, size=128), photo))
    copy = tmp_path / "my_transform.onnx"  # unregistered: the stage cannot guess its predict partner
    copy.write_bytes((models / "style_arbitrary_transform.onnx").read_bytes())
    with pytest.raises(ValueError, match="my_transform.onnx is an arbitrary-style transform model; give both"):
        make(model=str(copy), **STARRY)


# -- configuration errors -----------------------------------------------------------------------------
def _errors(tmp_path: Path, stage_yaml: str, check: bool = False) -> str:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("pipelines:\n  p:\n    source: pattern\n    stages:\n      - style:\n" + textwrap.indent(
        textwrap.dedent(stage_yaml), " " * 10))
    with pytest.raises(ConfigError) as info:
        load_config(cfg, check=check)
    return str(info.value).replace(str(cfg), "bad.yaml")


@pytest.mark.parametrize("yaml_text, message", [
    ('style: 30\n',
     'bad.yaml:5:9: pipelines.p.stages[0].style: style 30 is out of range: style_multistyle26 has 26 styles, 0..25'),
    ('style: {2: 1, 26: 1, 40: 1}\n',
     'bad.yaml:5:9: pipelines.p.stages[0].style: style 26, 40 is out of range: style_multistyle26 has 26 styles, 0..25'),
    ('style: {1: 0, 2: 0}\n',
     'bad.yaml:6:18: pipelines.p.stages[0].style.style: style blend weights must not all be zero (got {1: 0.0, 2: 0.0}); give at least one index a weight > 0'),
    ('style: {1: -1, 2: 3}\n',
     'bad.yaml:6:18: pipelines.p.stages[0].style.style: style blend weights must be >= 0, got {1: -1.0}'),
    ('style: -2\n',
     'bad.yaml:6:18: pipelines.p.stages[0].style.style: style indices start at 0, got -2'),
    ('style: {}\n',
     'bad.yaml:6:18: pipelines.p.stages[0].style.style: the style blend is empty; give {index: weight, ...}'),
    ('model: style_multistyle26\nstyle_image: starry_night.jpg\n',
     'bad.yaml:5:9: pipelines.p.stages[0].style: style_image is only used with the arbitrary-style model (model: style_arbitrary); style_multistyle26 has 26 built-in styles: pick one with style: N or blend with style: {N: weight, ...}'),
    ('model: style_arbitrary\n',
     'bad.yaml:5:9: pipelines.p.stages[0].style: the arbitrary-style model (style_arbitrary_predict + style_arbitrary_transform) needs style_image: the path or registry name of a picture whose style is copied, e.g. style_image: starry_night.jpg'),
    ('style_image: starry_night.jpg\nstyle: 3\n',
     'bad.yaml:5:9: pipelines.p.stages[0].style: style picks a built-in style of the multistyle model; the arbitrary-style model takes its style from style_image (remove style, or use model: style_multistyle26)'),
    ('model: style_arbitrary_predict\n',
     'bad.yaml:5:9: pipelines.p.stages[0].style: style_arbitrary_predict is the style-predict half of the arbitrary-style pair; use model: style_arbitrary (or [predict, transform] files)'),
    ('style: 1\ncontent_size: 256\n',
     'bad.yaml:5:9: pipelines.p.stages[0].style: content_size is only used with the arbitrary-style model; for style_multistyle26 use size'),
    ('style_image: starry_night.jpg\nsize: 256\ncontent_size: 320\n',
     "bad.yaml:5:9: pipelines.p.stages[0].style: size (256) and content_size (320) both set the arbitrary-style network's working resolution (longer side in pixels); give one of them"),
    ('strength: 1.5\n',
     'bad.yaml:6:21: pipelines.p.stages[0].style.strength: expected a number in [0, 1], got 1.5'),
    ('every: 0\n',
     'bad.yaml:6:18: pipelines.p.stages[0].style.every: expected an integer ≥ 1, got 0'),
])
def test_config_errors_name_file_line_and_the_problem(tmp_path, yaml_text, message):
    assert _errors(tmp_path, yaml_text).splitlines() == [message]


def test_validate_checks_the_style_image_exists(models, tmp_path):
    msg = _errors(tmp_path, "style_image: no_such_painting.jpg\n", check=True)
    assert msg.startswith("bad.yaml:5:9: pipelines.p.stages[0].style: style_image 'no_such_painting.jpg': no such "
                          "picture. Looked in: ")
    # a picture, not a "model"; and no list of model names to pick from
    assert "model '" not in msg and "model names" not in msg and "yolox" not in msg and "mobilefacenet" not in msg


@pytest.mark.parametrize("what", ["video", "text"])
def test_validate_rejects_a_style_image_that_is_not_a_picture(models, assets, tmp_path, what):
    if what == "video":
        path = media(assets, "Megamind.avi")
    else:
        path = tmp_path / "README.md"
        path.write_text("# not a picture\n")
    msg = _errors(tmp_path, f"style_image: {path}\n", check=True)
    assert msg.startswith("bad.yaml:5:9: pipelines.p.stages[0].style: style_image ")
    assert "is not a picture OpenCV can read" in msg and len(msg.splitlines()) == 1


@pytest.mark.parametrize("yaml_text, message", [
    ("model: yolox_nano_coco_416\n", "model 'yolox_nano_coco_416' is a yolo model (registry), not a style model; "
     "the style stage runs style_multistyle26"),
    ("model: mobilefacenet_128d\n", "model 'mobilefacenet_128d' is an embedding model (registry), not a style model"),
    ("style: true\n", "style must be a style index (0, 1, ...) or {index: weight}, not true/false"),
    ("style: {true: 1}\n", "not true/false"),
    ("size: 5000\n", "size: expected an integer"),
    ("size: 8\n", "size: expected an integer"),
    ("style_image: starry_night.jpg\ncontent_size: 100000\n", "content_size: expected an integer"),
    ("device: bogus\n", "device"),
])
def test_wrong_model_and_out_of_range_options_are_config_errors(tmp_path, yaml_text, message):
    msg = _errors(tmp_path, yaml_text)
    assert message in msg and len(msg.splitlines()) == 1, msg
    if "not a style model" in msg:
        assert "style_multistyle26" in msg and "style_arbitrary" in msg and "predict half" not in msg


def test_a_model_of_another_family_gets_the_core_message_with_the_style_advice(tmp_path):
    msg = _errors(tmp_path, "model: [style_arbitrary_predict, pfld68_112]\nstyle_image: starry_night.jpg\n")
    assert msg == (
        "bad.yaml:5:9: pipelines.p.stages[0].style: model 'pfld68_112' is a landmarks model (registry), not a style "
        "model; the style stage runs style_multistyle26 (26 built-in styles: style: N) or style_arbitrary (any "
        "picture: style_image: FILE), or an .onnx file of the same kind; for pfld68_112 use the 'landmarks' stage"
    )
    assert StyleStage.family_error("style_arbitrary_transform") is None


def test_the_style_stage_names_its_models_by_role():
    assert StyleStage.models(StyleStage.Params()) == {"model": "style_multistyle26"}
    assert StyleStage.models(StyleStage.Params(**STARRY)) == {
        "predict": "style_arbitrary_predict", "transform": "style_arbitrary_transform"}
    assert StyleStage.models(StyleStage.Params(model="style_arbitrary_transform", **STARRY)) == {
        "predict": "style_arbitrary_predict", "transform": "style_arbitrary_transform"}
    assert StyleStage.models(StyleStage.Params(model=("a.onnx", "b.onnx"), **STARRY)) == {
        "predict": "a.onnx", "transform": "b.onnx"}


def test_device_cuda_on_the_cpu_build_is_a_config_error(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("the GPU build of ONNX Runtime is installed")
    msg = _errors(tmp_path, "device: cuda\n")
    assert "needs the GPU build of ONNX Runtime" in msg
    assert issubclass(StyleStage.Params, DeviceParams)


@pytest.mark.parametrize("options", [{"style": 2}, {"style": 2, "size": 128}, {**STARRY, "size": 128}, STARRY],
                         ids=["multistyle", "multistyle-size128", "arbitrary-size128", "arbitrary-fixed384"])
def test_any_frame_size_works_thin_and_tiny_frames_are_padded(models, options):
    stage = make(**options)
    rng = np.random.default_rng(0)
    for h, w in [(3, 4001), (2000, 3), (1, 1), (5, 5)]:
        img = rng.integers(0, 256, (h, w, 3), np.uint8)
        out = run(stage, img)
        assert out.shape == (h, w, 3) and out.dtype == np.uint8, (h, w)


def test_arbitrary_at_size_384_runs_at_longer_side_384_not_squashed(models, photo, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        stage = make(**STARRY, size=384)
    assert stage.box == (384, 384)  # the model's own fixed input, the frame fitted into it (aspect kept)
    assert "longer side 384" in caplog.text and "not squashed" in caplog.text
    relaxed = make(**STARRY, size=380)  # the dynamic copy at the frame's aspect ratio
    a, b = run(stage, photo), run(relaxed, photo)
    assert a.shape == b.shape == photo.shape
    assert mad(a, b) < 0.1  # the same style at (almost) the same working size


def test_validate_inspects_an_unregistered_model_file(models, tmp_path):
    """A copy under another name is not in the registry: `validate` reads its inputs to count the styles."""
    (tmp_path / "my_styles.onnx").write_bytes((models / "style_multistyle26.onnx").read_bytes())
    msg = _errors(tmp_path, "model: my_styles.onnx\nstyle: 26\n", check=True)
    assert msg == ("bad.yaml:5:9: pipelines.p.stages[0].style: style 26 is out of range: my_styles.onnx has "
                   "26 styles, 0..25")
    msg = _errors(tmp_path, "model: my_styles.onnx\nstyle_image: starry_night.jpg\n", check=True)
    assert "style_image is only used with the arbitrary-style model" in msg


def test_start_up_rejects_what_validation_could_not_know(models, tmp_path):
    (tmp_path / "my_styles.onnx").write_bytes((models / "style_multistyle26.onnx").read_bytes())
    with pytest.raises(ValueError, match="style 30 is out of range: .*my_styles.onnx has 26 styles, 0..25"):
        make(model=str(tmp_path / "my_styles.onnx"), style=30)
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not an image OpenCV can read"):
        make(style_image=str(bad))


def test_registered_as_stage_style():
    from streamcnn.pluginmanager import load_plugins

    assert load_plugins([]).types["stage"]["style"].cls is style_mod.StyleStage


def test_multistyle_without_size_works_at_longer_side_at_most_1024_and_says_so(models, monkeypatch, caplog):
    """Issue 9 item 19: no `size` used to mean the full frame (8000×6000: 15.8 GB, 93 s); now a bounded default."""
    import logging

    assert style_mod.DEFAULT_WORK_SIZE == 1024
    assert StyleStage.Params(style=3).size is None
    shapes: list[tuple[int, ...]] = []
    original = ModelSession.run

    def spy(self, feeds, output_names=None):
        shapes.extend(v.shape for v in feeds.values() if v.ndim == 4)
        return original(self, feeds, output_names)

    monkeypatch.setattr(ModelSession, "run", spy)
    with caplog.at_level(logging.INFO):
        stage = make(style=3)
    model = models / "style_multistyle26.onnx"
    assert (f"stage 'style': {model} style 3 at longer side at most 1024 (the default: larger frames are scaled "
            "down to it and back; set size to change it), strength 1, every 1 on CPUExecutionProvider") in caplog.messages
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (1030, 2050, 3), np.uint8)  # scaled to 1024×514, padded to 1024×516
    small = rng.integers(0, 256, (250, 333, 3), np.uint8)  # its own size, padded to 336×252
    assert run(stage, big).shape == (1030, 2050, 3)
    assert run(stage, small).shape == (250, 333, 3)
    assert shapes == [(1, 3, 516, 1024), (1, 3, 252, 336)]
    shapes.clear()
    run(make(style=3, size=2048), big)  # an explicit size is still honoured (up to MAX_SIZE)
    assert shapes == [(1, 3, 1032, 2048)]
