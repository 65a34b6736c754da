"""streamcnn: real-time video analytics with YAML pipelines of CNN plugins.

Public API for plugin authors: `Frame`, `Detections`, `Stage`, `Source`, `Sink`, `Params`,
`Field`, `Context`, `hookimpl`.
"""

from ._ortcheck import check_onnxruntime

check_onnxruntime()

from .api import Context, Field, Params, Sink, Source, SourceParams, Stage, to_bgr3  # noqa: E402
from .detections import Detections  # noqa: E402
from .errors import ConfigError, ModelInputError, SourceError, StageError, StreamcnnError  # noqa: E402
from .frame import Frame  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Context",
    "Detections",
    "Field",
    "Frame",
    "ModelInputError",
    "Params",
    "Sink",
    "Source",
    "SourceError",
    "SourceParams",
    "Stage",
    "StageError",
    "StreamcnnError",
    "hookimpl",
    "to_bgr3",
]
