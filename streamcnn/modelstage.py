"""`ModelStage`: the base of stages built around ONNX models (shared model resolution and sessions).

A subclass's ``Params`` extends `ModelParams` (``model``: path or registry name; ``device``:
``auto | cpu | cuda | cuda:N``); ``streamcnn validate`` checks the model file is there (or
downloadable) through `ModelStage.check`, and `ModelStage.load_model` resolves it through the
registry and returns the process-wide shared session plus the registry's decode parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import onnxruntime as ort
from pydantic import field_validator

from ._ortcheck import installed_ort_distributions
from .api import Context, Field, Params, Stage
from .registry import check_model, lookup, registry, resolve_model
from .runtime import GPU_FIX, ModelSession, get_session, parse_device


class DeviceParams(Params):
    """Options of every stage that runs a model: ``device`` (validated: auto, cpu, cuda, cuda:N)."""

    device: str = Field("auto", description="auto | cpu | cuda | cuda:N (GPU index)")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        kind, _ = parse_device(v)  # ValueError listing the accepted forms
        if kind == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(
                f"device {v!r} needs the GPU build of ONNX Runtime, but the installed one has no "
                f"CUDAExecutionProvider ({', '.join(installed_ort_distributions())}). To fix: {GPU_FIX}"
            )
        return v


class ModelParams(DeviceParams):
    """``model`` (an .onnx path or a registry name, see ``streamcnn models``) plus ``device``."""

    model: str = Field(description="ONNX file path or registry name")


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + " / ".join([word])


class ModelStage(Stage):
    """A stage around one (or more) ONNX models.

    ``families``: the registry families this stage can run (e.g. ``("yolo",)``); a registry model of
    another family is a configuration error at ``validate`` time. Empty = any.
    """

    Params: ClassVar[type[ModelParams]] = ModelParams
    families: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check(cls, params: Any, ctx: Context) -> None:
        """Raises ModelNotFoundError when the model is neither local nor downloadable, ValueError
        when the registry says it is a model of another family than this stage runs."""
        entry = lookup(params.model) or lookup(Path(str(params.model)).name)
        if cls.families and entry is not None and entry.family not in cls.families:
            fitting = sorted(e.name for e in registry().values() if e.family in cls.families)
            raise ValueError(
                f"model {params.model!r} is {_a(entry.family)} model (registry), not {_a(cls.families[0])} "
                f"model; registry models that fit: {', '.join(fitting)}"
            )
        check_model(params.model, ctx.config_dir)

    def load_model(self, model: str | None = None) -> tuple[ModelSession, dict[str, Any]]:
        """The shared session for ``model`` (default ``params.model``) on ``params.device``, and the
        registry parameters for it (``{}`` when unregistered).

        Raises:
            ModelNotFoundError, StreamcnnError (device/provider problems, invalid model file).
        """
        path, reg = resolve_model(model or self.params.model, self.ctx.config_dir)
        return get_session(path, self.params.device, stage=self.ctx.name), reg
