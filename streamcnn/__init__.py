"""streamcnn: real-time video analytics with YAML pipelines of CNN plugins.

The plugin API is exactly the names in ``__all__`` below plus the public submodules
``streamcnn.ops`` (pre/post-processing), ``streamcnn.facedb`` (the face embedding database) and
``streamcnn.recording`` (PyAV encoders, crash-safe files, segments, packet rings).
Built-in plugins import nothing else from streamcnn (a test checks it); third-party plugins may
rely on these names across 0.x minor versions (a change is announced in the README first).
Everything else (``streamcnn.config``, ``streamcnn.engine``, ``streamcnn.cli``, ...) is internal.
"""

from . import _startup  # noqa: F401 - first: a signal while the command imports ends quietly
from ._ortcheck import check_onnxruntime

check_onnxruntime()

from . import facedb, ops, recording  # noqa: E402
from .api import (  # noqa: E402
    Context,
    DetectorParams,
    EventSink,
    Field,
    Output,
    Params,
    PipelineInfo,
    Sink,
    Source,
    SourceParams,
    Stage,
    StreamInfo,
    to_bgr3,
)
from .detections import CLASS_NAME, FACE_CLASS, FACE_POINTS, Detections  # noqa: E402
from .errors import (  # noqa: E402
    ConfigError,
    MediaNotFoundError,
    ModelInputError,
    ModelNotFoundError,
    SinkWriteError,
    SourceError,
    StageError,
    StreamcnnError,
)
from .events import EVENT_TYPES, Event, unknown_event_types  # noqa: E402
from .frame import ZONES, Frame  # noqa: E402
from .hookspecs import SourceEvent, hookimpl  # noqa: E402
from .modelstage import DeviceParams, ModelParams, ModelStage  # noqa: E402
from .redact import redact  # noqa: E402
from .registry import (  # noqa: E402
    FamilyMismatch,
    RegistryEntry,
    check_model,
    family_mismatch,
    find_local,
    lookup,
    offline,
    resolve_asset,
    resolve_model,
    sha256_of,
)
from .runtime import ModelSession, TensorSpec, format_shape, get_session  # noqa: E402
from .words import NameWatch, a_an, suggest  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    # pipeline objects
    "Context", "Detections", "Event", "Frame", "Output", "PipelineInfo", "StreamInfo",
    # shared Detections.data keys and class names
    "CLASS_NAME", "FACE_CLASS", "FACE_POINTS", "ZONES",
    # event types and their fields
    "EVENT_TYPES", "unknown_event_types",
    # base classes and their options
    "DetectorParams", "DeviceParams", "Field", "ModelParams", "ModelStage", "Params", "EventSink", "Sink", "Source",
    "SourceParams", "Stage", "SourceEvent", "hookimpl",
    # ONNX Runtime sessions
    "ModelSession", "TensorSpec", "format_shape", "get_session",
    # models and media: registry names, paths, downloads
    "FamilyMismatch", "RegistryEntry", "check_model", "family_mismatch", "find_local", "lookup", "offline",
    "resolve_asset", "resolve_model", "sha256_of",
    # errors
    "ConfigError", "MediaNotFoundError", "ModelInputError", "ModelNotFoundError", "SinkWriteError", "SourceError",
    "StageError", "StreamcnnError",
    # helpers for messages and images
    "NameWatch", "a_an", "redact", "suggest", "to_bgr3",
    # public submodules
    "facedb", "ops", "recording",
]
