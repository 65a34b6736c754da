"""Refuse to run with no ONNX Runtime, or with both the CPU and GPU builds installed.

``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime/`` package; with both
present the one installed last silently wins (``pip check`` reports nothing), and uninstalling
either breaks the import (only ``onnxruntime/capi/`` is left).
"""

from __future__ import annotations

import importlib.metadata as md
import sys

FIX_BOTH = (
    "pip uninstall -y onnxruntime onnxruntime-gpu && pip install -e '.[cpu]' in the streamcnn checkout   "
    "(or '.[gpu]' for NVIDIA GPUs)"
)
FIX_NONE = "pip install -e '.[cpu]' in the streamcnn checkout   (or '.[gpu]' for NVIDIA GPUs with CUDA 12/13 + cuDNN 9)"


def installed_ort_distributions() -> list[str]:
    """Names of the installed ONNX Runtime distributions among the CPU and GPU builds."""
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            md.version(dist)
        except md.PackageNotFoundError:
            continue
        found.append(dist)
    return found


class OnnxRuntimeSetupError(ImportError):
    """Zero or two ONNX Runtime builds are installed; the message says what to run."""


def _print_setup_error(exc_type, exc, tb, _previous=sys.excepthook):
    # The `streamcnn` command imports this package first: show the fix, not a traceback.
    if issubclass(exc_type, OnnxRuntimeSetupError):
        print(f"streamcnn: {exc}", file=sys.stderr)
        return
    _previous(exc_type, exc, tb)


def check_onnxruntime() -> None:
    """Raises: OnnxRuntimeSetupError (an ImportError) with the command to run when zero or two
    ORT builds are installed. Left uncaught (the CLI), it prints only the message."""
    found = installed_ort_distributions()
    if len(found) == 1:
        return
    sys.excepthook = _print_setup_error
    if not found:
        raise OnnxRuntimeSetupError(f"streamcnn needs ONNX Runtime, and none is installed. Run: {FIX_NONE}")
    if len(found) == 2:
        raise OnnxRuntimeSetupError(
            "both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's files "
            f"and the result is broken or silently CPU-only. Keep exactly one: {FIX_BOTH}"
        )
