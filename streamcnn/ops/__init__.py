"""Pre/post-processing shared by model plugins: letterbox, IoU, NMS."""

from .boxes import box_area, box_iou, clip_boxes, nms
from .letterbox import LetterboxInfo, letterbox, letterbox_info

__all__ = ["LetterboxInfo", "box_area", "box_iou", "clip_boxes", "letterbox", "letterbox_info", "nms"]
