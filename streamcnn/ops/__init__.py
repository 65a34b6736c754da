"""Pre/post-processing shared by model plugins (part of the plugin API, see ``streamcnn.__all__``).

Modules: ``letterbox`` (resize + pad to the network input), ``boxes`` (IoU, clipping, NMS),
``yolo`` (YOLO head decoders and `select`), ``faces`` (face-detector decoders and
`FaceDetector`), ``align`` (5-point similarity alignment and square crops), ``image``
(resizing, padding, NCHW tensors, blending). Import from ``streamcnn.ops``.
"""

from .align import ARCFACE_SIZE, ARCFACE_TEMPLATE, SquareCrops, arcface_align, similarity_matrix
from .boxes import box_area, box_iou, clip_boxes, fast_nms, nms
from .faces import (
    FACE_FORMATS,
    FORMAT_DEFAULTS,
    FaceDetector,
    cell_centres,
    decode_scrfd,
    decode_ultraface_raw,
    decode_yunet,
    detector_format,
    run_fixed_batch,
    select_faces,
    shrink_and_pad,
    ultraface_priors,
)
from .geometry import ANCHORS, anchor_points, line_side, polygon_distance
from .image import (
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
from .letterbox import LetterboxBlob, LetterboxInfo, letterbox, letterbox_info
from .yolo import (
    YOLO_FORMATS,
    Grid,
    cxcywh_to_xyxy,
    decode_anchor_grid,
    decode_fastestv2,
    decode_v5,
    decode_v8,
    decode_yolox,
    guess_formats,
    head_fit,
    make_grid,
    select,
    sigmoid,
)

__all__ = [
    "ANCHORS", "ARCFACE_SIZE", "ARCFACE_TEMPLATE", "FACE_FORMATS", "FORMAT_DEFAULTS", "FaceDetector", "Grid",
    "LetterboxBlob", "LetterboxInfo", "SquareCrops", "YOLO_FORMATS", "anchor_points", "arcface_align", "blend",
    "box_area", "box_iou", "cell_centres", "centre_square", "clip_boxes", "crop", "cxcywh_to_xyxy",
    "decode_anchor_grid", "decode_fastestv2", "decode_scrfd", "decode_ultraface_raw", "decode_v5", "decode_v8",
    "decode_yolox", "decode_yunet", "detector_format", "fast_nms", "fit_longer_side", "fit_within", "from_tensor",
    "guess_formats", "head_fit", "letterbox", "letterbox_info", "line_side", "make_grid", "nms", "pad_to_multiple",
    "pad_to_size", "polygon_distance", "resize_to", "run_fixed_batch", "select", "select_faces", "shrink_and_pad",
    "sigmoid", "similarity_matrix", "to_tensor", "ultraface_priors",
]
