"""The built-in ``edges`` stage against scipy/OpenCV references and the textbook formulas."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import pluggy
import pytest
import yaml
from pydantic import ValidationError
from scipy.signal import correlate2d

from streamcnn import Context, Frame, ModelInputError, hookspecs, runtime
from streamcnn_plugins import edges as edges_plugin
from streamcnn_plugins.edges import EdgesStage, conv_output_size, kernel_weights, same_pads

KERNELS = ["vertical", "horizontal", "sobel_x", "sobel_y", "sobel", "scharr_x", "scharr_y", "scharr",
           "laplacian"]
PADDINGS = ["same", "valid", 0, 1, 2]
STRIDES = [1, 2, 3]
SIZES = [(11, 16), (9, 7)]  # (H, W): odd and even, landscape and portrait


def _custom(f: int, seed: int) -> list[list[float]]:
    # Multiples of 1/16: exact in float32, so the 1e-4 comparison tests the convolution, not rounding.
    return (np.random.default_rng(seed).integers(-32, 33, (f, f)) / 16).tolist()


CASES = [(k, None) for k in KERNELS] + [("custom", _custom(5, 1)), ("custom", _custom(4, 2)),
                                        ("custom", _custom(1, 3))]


def make_stage(**params) -> EdgesStage:
    params.setdefault("device", "cpu")
    return EdgesStage(EdgesStage.Params(**params), Context(name="edges", pipeline="test"))


def frame_of(image: np.ndarray) -> Frame:
    return Frame(image=image, index=0, pts=0.0)


def pads_of(padding, f: int) -> tuple[int, int]:
    if padding == "same":
        return (f - 1) // 2, f // 2
    return (0, 0) if padding == "valid" else (padding, padding)


def reference(plane: np.ndarray, kernel: np.ndarray, pads: tuple[int, int], stride: int) -> np.ndarray:
    """Zero-pad, cross-correlate (scipy, float64, no kernel flip), keep every stride-th position."""
    padded = np.pad(plane.astype(np.float64), (pads, pads))
    return correlate2d(padded, kernel.astype(np.float64), mode="valid")[::stride, ::stride]


def reference_map(image: np.ndarray, name: str, weights, padding, stride: int, channels: str) -> np.ndarray:
    k = kernel_weights(name, weights)
    pads = pads_of(padding, k.shape[1])
    if channels == "gray":
        planes = [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)]
    else:
        planes = [image[:, :, c] for c in range(3)]
    maps = []
    for plane in planes:
        r = [reference(plane, kk, pads, stride) for kk in k]
        maps.append(np.sqrt(r[0] ** 2 + r[1] ** 2) if len(r) == 2 else r[0])
    return maps[0] if channels == "gray" else np.stack(maps, axis=-1)


# --- every kernel × padding × stride × channels, against scipy.signal.correlate2d --------------------


@pytest.mark.parametrize("channels", ["gray", "per_channel"])
@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
@pytest.mark.parametrize(("kernel", "weights"), CASES,
                         ids=[k if w is None else f"custom{len(w)}" for k, w in CASES])
def test_matches_correlate2d(kernel, weights, padding, stride, channels) -> None:
    stage = make_stage(kernel=kernel, weights=weights, padding=padding, stride=stride, channels=channels)
    f = kernel_weights(kernel, weights).shape[1]
    rng = np.random.default_rng(zlib.crc32(repr((kernel, padding, stride, channels)).encode()))
    for h, w in SIZES:  # one stage (one graph, dynamic H and W) for every frame size
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = stage.process(frame_of(image.copy()))
        raw = out.meta["edges"]
        pb, pe = pads_of(padding, f)
        h_out = (h + pb + pe - f) // stride + 1  # textbook floor((n + 2p - f)/s) + 1
        w_out = (w + pb + pe - f) // stride + 1
        assert (h_out, w_out) == (conv_output_size(h, f, (pb, pe), stride),
                                  conv_output_size(w, f, (pb, pe), stride))
        assert raw.dtype == np.float32
        assert raw.shape == ((h_out, w_out) if channels == "gray" else (h_out, w_out, 3))
        assert out.image.shape == (h_out, w_out, 3) and out.image.dtype == np.uint8
        np.testing.assert_allclose(raw, reference_map(image, kernel, weights, padding, stride, channels),
                                   rtol=1e-6, atol=1e-4)


# --- textbook example and formulas ---------------------------------------------------------------


def test_textbook_vertical_edge_example() -> None:
    """Ng, CNN course week 1: 6×6 image (10s left, 0s right) * vertical kernel → 4×4, 30s in the middle."""
    image = np.zeros((6, 6, 3), np.uint8)
    image[:, :3] = 10
    out = make_stage(kernel="vertical", padding="valid", stride=1).process(frame_of(image))
    expected = np.array([[0, 30, 30, 0]] * 4, np.float32)
    np.testing.assert_array_equal(out.meta["edges"], expected)
    np.testing.assert_array_equal(out.image, np.repeat(expected.astype(np.uint8)[:, :, None], 3, axis=2))


def test_kernel_weights() -> None:
    np.testing.assert_array_equal(kernel_weights("vertical"), [[[1, 0, -1], [1, 0, -1], [1, 0, -1]]])
    np.testing.assert_array_equal(kernel_weights("horizontal")[0], kernel_weights("vertical")[0].T)
    sobel = kernel_weights("sobel")
    assert sobel.shape == (2, 3, 3) and sobel.dtype == np.float32
    np.testing.assert_array_equal(sobel[0], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(sobel[1], sobel[0].T)
    np.testing.assert_array_equal(kernel_weights("scharr")[0], [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])
    np.testing.assert_array_equal(kernel_weights("laplacian")[0], [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    assert kernel_weights("custom", [[1, 2], [3, 4]]).shape == (1, 2, 2)
    with pytest.raises(ValueError, match="square"):
        kernel_weights("custom", [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="needs 'weights'"):
        kernel_weights("custom")
    with pytest.raises(ValueError, match="only used with kernel: custom"):
        kernel_weights("sobel", [[1]])
    with pytest.raises(ValueError, match="unknown kernel 'prewitt'"):
        kernel_weights("prewitt")


@pytest.mark.parametrize(("n", "f", "p", "s", "expected"), [
    (6, 3, 0, 1, 4),     # Ng: 6×6 * 3×3 → 4×4
    (7, 3, 0, 2, 3),     # Ng "strided convolutions": 7×7, f=3, s=2 → 3×3
    (7, 3, 1, 2, 4),     # CS231n: W=7, F=3, P=1, S=2 → 4
    (227, 11, 0, 4, 55),  # CS231n / AlexNet conv1
    (5, 5, 0, 1, 1),
    (8, 4, (1, 2), 1, 8),  # even f, "same" pads (1, 2)
    (10, 3, 1, 3, 4),
])
def test_conv_output_size(n, f, p, s, expected) -> None:
    assert conv_output_size(n, f, p, s) == expected


def test_conv_output_size_errors() -> None:
    with pytest.raises(ValueError, match="smaller than the 5 px kernel"):
        conv_output_size(3, 5, 0, 1)
    for args in [(0, 3, 0, 1), (5, 0, 0, 1), (5, 3, -1, 1), (5, 3, 0, 0)]:
        with pytest.raises(ValueError):
            conv_output_size(*args)


@pytest.mark.parametrize("f", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_same_padding_gives_ceil_n_over_s(f, s) -> None:
    for n in (7, 8, 13):
        assert conv_output_size(n, f, same_pads(f), s) == -(-n // s)
    assert same_pads(3) == (1, 1) and same_pads(4) == (1, 2) and same_pads(5) == (2, 2)


# --- OpenCV cross-checks ------------------------------------------------------------------------------


def _gray_image(h: int = 15, w: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


@pytest.mark.parametrize(("kernel", "cv"), [
    ("sobel_x", lambda g: cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_CONSTANT)),
    ("sobel_y", lambda g: cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_CONSTANT)),
    ("scharr_x", lambda g: cv2.Scharr(g, cv2.CV_32F, 1, 0, borderType=cv2.BORDER_CONSTANT)),
    ("scharr_y", lambda g: cv2.Scharr(g, cv2.CV_32F, 0, 1, borderType=cv2.BORDER_CONSTANT)),
    ("laplacian", lambda g: cv2.Laplacian(g, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_CONSTANT)),
])
def test_named_kernels_match_opencv(kernel, cv) -> None:
    image, gray = _gray_image()
    raw = make_stage(kernel=kernel, padding="same").process(frame_of(image)).meta["edges"]
    np.testing.assert_allclose(raw, cv(gray), atol=1e-4)


@pytest.mark.parametrize("f", [3, 4])
def test_custom_float_kernel_matches_filter2d(f) -> None:
    image, gray = _gray_image(seed=f)
    weights = np.random.default_rng(f).normal(size=(f, f)).astype(np.float32)
    raw = make_stage(kernel="custom", weights=weights.tolist(), padding="same").process(
        frame_of(image)).meta["edges"]
    a = (f - 1) // 2  # same_pads(f)[0]: for even f one pixel less before than cv2's default anchor f//2
    ref = cv2.filter2D(gray, cv2.CV_32F, weights, anchor=(a, a), borderType=cv2.BORDER_CONSTANT)
    np.testing.assert_allclose(raw, ref, rtol=1e-5, atol=1e-3)


def test_per_channel_filters_each_channel_separately() -> None:
    image = np.zeros((5, 6, 3), np.uint8)
    image[:, :3, 0] = 10   # B: vertical edge
    image[:2, :, 2] = 50   # R: horizontal edge, G: flat
    raw = make_stage(kernel="vertical", padding="valid", channels="per_channel").process(
        frame_of(image)).meta["edges"]
    assert raw.shape == (3, 4, 3) and raw.dtype == np.float32
    np.testing.assert_array_equal(raw[:, :, 0], [[0, 30, 30, 0]] * 3)
    np.testing.assert_array_equal(raw[:, :, 1], np.zeros((3, 4)))
    np.testing.assert_array_equal(raw[:, :, 2], np.zeros((3, 4)))  # vertical kernel ignores horizontal edges


# --- display -----------------------------------------------------------------------------------------


def test_display_abs_saturates_absolute_value() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, 3:] = 200  # dark → bright: the vertical kernel gives 3 × (0 − 200) = −600
    image[:, 5:] = 150  # bright → less bright: 3 × (200 − 150) = +150
    out = make_stage(kernel="vertical", padding="valid", display="abs").process(frame_of(image))
    raw = out.meta["edges"]
    np.testing.assert_array_equal(raw, [[0, -600, -600, 150]] * 2)
    expected = np.array([[0, 255, 255, 150]] * 2, np.uint8)  # |x| saturated to 0..255
    assert out.image.shape == (2, 4, 3) and out.image.dtype == np.uint8
    np.testing.assert_array_equal(out.image, np.repeat(expected[:, :, None], 3, axis=2))


def test_display_minmax_stretches_each_frame() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, 3:] = 200
    image[:, 5:] = 150
    out = make_stage(kernel="vertical", padding="valid", display="minmax").process(frame_of(image))
    np.testing.assert_array_equal(out.meta["edges"], [[0, -600, -600, 150]] * 2)
    # min -600 → 0, max 150 → 255, 0 → 600 × 255 / 750 = 204
    np.testing.assert_array_equal(out.image[:, :, 0], [[204, 0, 0, 255]] * 2)
    assert out.image[:, :, 0].min() == 0 and out.image[:, :, 0].max() == 255
    assert np.array_equal(out.image[:, :, 0], out.image[:, :, 1]) and np.array_equal(
        out.image[:, :, 0], out.image[:, :, 2])
    flat = make_stage(kernel="sobel", padding="valid", display="minmax").process(
        frame_of(np.full((5, 5, 3), 7, np.uint8)))  # constant map (all 0) → all 0, no division by zero
    assert flat.image.shape == (3, 3, 3) and flat.image.dtype == np.uint8 and not flat.image.any()


def test_display_per_channel_keeps_colour() -> None:
    image = np.zeros((3, 6, 3), np.uint8)
    image[:, :3, 1] = 20
    out = make_stage(kernel="vertical", padding="valid", channels="per_channel", display="abs").process(
        frame_of(image))
    assert out.image.shape == (1, 4, 3)
    np.testing.assert_array_equal(out.image[0], [[0, 0, 0], [0, 60, 0], [0, 60, 0], [0, 0, 0]])


# --- params ------------------------------------------------------------------------------------------


def test_custom_kernel_from_yaml() -> None:
    doc = yaml.safe_load("""
    edges:
      kernel: custom
      weights:
        - [0, 1, 0]
        - [1, -4, 1]
        - [0, 1, 0]
      padding: 1
      stride: 2
      channels: gray
      display: minmax
      device: cpu
    """)
    params = EdgesStage.Params.model_validate(doc["edges"])
    stage = EdgesStage(params, Context(name="edges", pipeline="yaml"))
    image, gray = _gray_image(9, 10)
    raw = stage.process(frame_of(image)).meta["edges"]
    assert raw.shape == (conv_output_size(9, 3, 1, 2), conv_output_size(10, 3, 1, 2)) == (5, 5)
    np.testing.assert_allclose(raw, reference(gray, kernel_weights("laplacian")[0], (1, 1), 2), atol=1e-4)


def test_non_square_custom_weights_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        EdgesStage.Params(kernel="custom", weights=[[1, 0, -1], [1, 0]])
    err = info.value.errors()[0]
    assert err["loc"] == ("weights",) and "square" in err["msg"]
    with pytest.raises(ValidationError, match="square"):
        EdgesStage.Params(kernel="custom", weights=[[1, 0, -1], [1, 0, -1]])  # 2×3


def test_custom_needs_weights_and_only_custom_takes_them() -> None:
    with pytest.raises(ValidationError, match="kernel 'custom' needs 'weights'"):
        EdgesStage.Params(kernel="custom")
    with pytest.raises(ValidationError, match="only used with kernel: custom"):
        EdgesStage.Params(kernel="sobel", weights=[[1]])
    with pytest.raises(ValidationError) as info:
        EdgesStage.Params(kernel="custom", weights=[[1, float("nan")], [0, 1]])
    assert info.value.errors()[0]["loc"][0] == "weights"


def test_unknown_option_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        EdgesStage.Params(kernal="sobel")
    err = info.value.errors()[0]
    assert err["loc"] == ("kernal",) and err["type"] == "extra_forbidden"
    assert "kernal" in str(info.value)


@pytest.mark.parametrize(("field", "value"), [
    ("kernel", "prewitt"), ("padding", -1), ("padding", "full"), ("padding", True), ("stride", 0),
    ("stride", "two"), ("channels", "rgb"), ("display", "log"), ("device", "gpu"),
])
def test_bad_values_name_the_field(field, value) -> None:
    with pytest.raises(ValidationError) as info:
        EdgesStage.Params(**{field: value})
    assert {e["loc"][0] for e in info.value.errors()} == {field}


def test_defaults() -> None:
    p = EdgesStage.Params()
    assert (p.kernel, p.padding, p.stride, p.channels, p.display, p.device) == (
        "sobel", "same", 1, "gray", "abs", "auto")


# --- runtime wiring and plugin registration ----------------------------------------------------------


def test_stage_uses_one_shared_session(caplog) -> None:
    caplog.set_level("INFO", logger="streamcnn.runtime")
    runtime.clear_cache()
    a = make_stage(kernel="scharr", device="auto")
    b = EdgesStage(EdgesStage.Params(kernel="scharr", device="auto"), Context(name="edges", pipeline="p2"))
    assert a.session is b.session
    assert a.session.name == "edges:scharr"
    assert f"stage 'edges': model edges:scharr on {a.session.provider}" in caplog.text
    image = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(a.process(frame_of(image.copy())).meta["edges"],
                                  b.process(frame_of(image.copy())).meta["edges"])


def test_frame_smaller_than_kernel_is_a_model_input_error() -> None:
    stage = make_stage(kernel="custom", weights=_custom(5, 0), padding="valid")
    msg = r"model edges:custom: a 4×9 frame is smaller than the 5×5 kernel"
    with pytest.raises(ModelInputError, match=msg):
        stage.process(frame_of(np.zeros((4, 9, 3), np.uint8)))
    assert stage.process(frame_of(np.zeros((5, 9, 3), np.uint8))).meta["edges"].shape == (1, 5)


def test_registered_through_the_hook() -> None:
    pm = pluggy.PluginManager("streamcnn")
    pm.add_hookspecs(hookspecs)
    pm.register(edges_plugin)
    assert pm.hook.streamcnn_stage_types() == [{"edges": EdgesStage}]


# --- strips: bounded memory, the same map as the whole-frame convolution ----------------------------------


def whole_frame_map(image: np.ndarray, kernel: str, weights, padding, stride: int, channels: str) -> np.ndarray:
    """The untiled result: the whole-frame graph (zero padding on all four sides) run once by ORT."""
    import onnxruntime as ort

    from streamcnn_plugins.edges import build_edges_model, resolve_padding

    k = kernel_weights(kernel, weights)
    model = build_edges_model(k, resolve_padding(padding, k.shape[1]), stride, 1 if channels == "gray" else 3,
                              kernel in ("sobel", "scharr"))
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[None, :, :, None] if channels == "gray" else image[None]
    out = session.run(None, {"image": np.ascontiguousarray(x)})[0][0]
    return out[:, :, 0] if channels == "gray" else out


def assert_same_map(strips: np.ndarray, whole: np.ndarray) -> None:
    """Strips equal the whole-frame map: bit for bit on ONNX Runtime 1.32; older runtimes (1.20) may
    sum the gray conversion in another order, a last-bit (float32 rounding, 1.2e-7 relative) difference."""
    assert strips.shape == whole.shape and strips.dtype == whole.dtype
    np.testing.assert_allclose(strips, whole, rtol=5e-7, atol=1e-4)


STRIP_CASES = [  # kernel, weights, padding, stride, channels
    ("sobel", None, "same", 1, "gray"),
    ("scharr", None, 3, 3, "gray"),
    ("custom", np.random.default_rng(7).normal(size=(5, 5)).tolist(), "same", 2, "per_channel"),  # float weights
    ("custom", _custom(4, 8), "valid", 1, "gray"),  # even kernel: asymmetric same padding elsewhere
    ("laplacian", None, 2, 2, "per_channel"),
]


@pytest.mark.parametrize(("kernel", "weights", "padding", "stride", "channels"), STRIP_CASES,
                         ids=[f"{c[0]}-{c[2]}-s{c[3]}-{c[4]}" for c in STRIP_CASES])
def test_strips_give_the_whole_frame_map_on_a_real_frame(assets, kernel, weights, padding, stride,
                                                                      channels) -> None:
    from tests.conftest import media

    image = cv2.imread(str(media(assets, "obama_and_biden.jpg")))  # 1428×2000
    stage = make_stage(kernel=kernel, weights=weights, padding=padding, stride=stride, channels=channels)
    h_out = stage.output_size(*image.shape[:2])[0]
    assert 1 < stage.strip_rows(image.shape[1]) < h_out  # the default strip size splits this frame
    raw = stage.process(frame_of(image.copy())).meta["edges"]
    assert_same_map(raw, whole_frame_map(image, kernel, weights, padding, stride, channels))


@pytest.mark.parametrize(("kernel", "weights", "padding", "stride", "channels"), STRIP_CASES,
                         ids=[f"{c[0]}-{c[2]}-s{c[3]}-{c[4]}" for c in STRIP_CASES])
def test_strips_whose_rows_do_not_divide_the_frame(kernel, weights, padding, stride, channels) -> None:
    image = np.random.default_rng(3).integers(0, 256, (1001, 777, 3), dtype=np.uint8)
    stage = make_stage(kernel=kernel, weights=weights, padding=padding, stride=stride, channels=channels)
    stage.strip_elements = 20_000  # strips of a few rows: the last one is shorter, the first/last carry padding
    rows, h_out = stage.strip_rows(777), stage.output_size(1001, 777)[0]
    assert rows < h_out and h_out % rows != 0
    out = stage.process(frame_of(image.copy()))
    expected = whole_frame_map(image, kernel, weights, padding, stride, channels)
    assert_same_map(out.meta["edges"], expected)
    display = (cv2.cvtColor(cv2.convertScaleAbs(expected), cv2.COLOR_GRAY2BGR) if channels == "gray"
               else cv2.convertScaleAbs(expected))
    assert np.abs(out.image.astype(int) - display).max() <= 1  # a last-bit difference may round the other way


def test_strip_of_one_output_row_with_padding_wider_than_the_kernel() -> None:
    image = np.random.default_rng(4).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    stage = make_stage(kernel="sobel", padding=5, stride=1)
    stage.strip_elements = 1  # one output row per call; the first and last rows read only zeros
    expected = whole_frame_map(image, "sobel", None, 5, 1, "gray")
    assert expected.shape == (17, 21) and not expected[0].any()
    np.testing.assert_array_equal(stage.edge_map(image), expected)


def test_minmax_display_spans_the_whole_frame_not_each_strip() -> None:
    image = np.zeros((300, 40, 3), np.uint8)
    image[250:, 20:] = 200  # the only edge is in the last strips
    stage = make_stage(kernel="sobel_x", display="minmax")
    stage.strip_elements = 400  # 10 rows per strip
    edges = stage.edge_map(image)
    shown = stage.to_display(edges)[:, :, 0]
    lo, hi = float(edges.min()), float(edges.max())
    assert (lo, hi) == (-800.0, 800.0)
    np.testing.assert_array_equal(shown, cv2.convertScaleAbs(edges, alpha=255 / 1600, beta=800 * 255 / 1600))
    assert shown[0, 0] == 128 and shown.max() == 255 and shown.min() == 0


def test_peak_memory_on_a_12_megapixel_frame_is_the_output_plus_a_bounded_strip(assets) -> None:
    """tools/bench_memory.py's measurement (fresh process, VmHWM) on a 4000×3000 frame: the float map
    (46 MiB) and the display image (34 MiB) plus at most 96 MiB for the strips (measured: 49). The
    whole-frame graph needed 14 times the frame's pixels (2690 MiB at 8000×6000)."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT, media

    media(assets, "obama_and_biden.jpg")
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_memory.py"), "--one", "edges",
                          "--width", "4000", "--height", "3000"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    output_mib = (4000 * 3000 * 4 + 4000 * 3000 * 3) / 2**20  # 80.1
    assert r["exact"] and r["extra"] <= output_mib + 96, r
