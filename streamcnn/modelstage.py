"""`ModelStage`: the base of stages built around ONNX models (shared model resolution and sessions).

A subclass's ``Params`` extends `ModelParams` (``model``: path or registry name; ``device``:
``auto | cpu | cuda | cuda:N``). `ModelStage.models` names the stage's models by role (default:
the one ``model``); ``streamcnn validate`` checks each is of a family the stage runs and is there
(or downloadable) through `ModelStage.check`, and `ModelStage.load_model` / `load_models` resolve
them through the registry and return the process-wide shared sessions plus the registry's decode
parameters.
"""

from __future__ import annotations

from typing import Any, ClassVar

import onnxruntime as ort
from pydantic import field_validator

from ._ortcheck import installed_ort_distributions
from .api import Context, Field, Params, Stage
from .registry import FamilyMismatch, check_model, family_mismatch, find_local, resolve_model
from .runtime import GPU_FIX, ModelSession, get_session, parse_device


class DeviceParams(Params):
    """Options of every stage that runs a model: ``device`` (validated: auto, cpu, cuda, cuda:N)."""

    device: str = Field("auto", description="auto | cpu | cuda | cuda:N (GPU index) | tensorrt | tensorrt:N")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        kind, _ = parse_device(v)  # ValueError listing the accepted forms
        if kind in ("cuda", "tensorrt") and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(
                f"device {v!r} needs the GPU build of ONNX Runtime, but the installed one has no "
                f"CUDAExecutionProvider ({', '.join(installed_ort_distributions())}). To fix: {GPU_FIX}"
            )
        return v


class ModelParams(DeviceParams):
    """``model`` (an .onnx path or a registry name, see ``streamcnn models``) plus ``device``."""

    model: str = Field(description="ONNX file path or registry name")


class ModelStage(Stage):
    """A stage around one or more ONNX models, resolved, checked and loaded by the core.

    Class attributes:
        families: the registry families this stage runs (e.g. ``("yolo",)``); a registry model of
            another family is a configuration error at ``validate`` time (`family_error`). Empty = any.
        fits: what to use instead, ending the wrong-family message (default: ``registry models
            that fit: ...``, the registry's models of ``families``).

    A stage with several models overrides `models` (role → model); `check` then checks each of
    them and `load_models` loads them all::

        class PairStage(ModelStage):
            class Params(ModelParams):
                model: str = Field("encoder.onnx", description="encoder: path or registry name")
                decoder: str = Field("decoder.onnx", description="decoder: path or registry name")

            @classmethod
            def models(cls, params):
                return {"encoder": params.model, "decoder": params.decoder}

            def __init__(self, params, ctx):
                super().__init__(params, ctx)
                loaded = self.load_models()
                self.encoder, _ = loaded["encoder"]
                self.decoder, _ = loaded["decoder"]
    """

    Params: ClassVar[type[ModelParams]] = ModelParams
    families: ClassVar[tuple[str, ...]] = ()
    fits: ClassVar[str | None] = None

    @classmethod
    def models(cls, params: Any) -> dict[str, str]:
        """The models these options name, by role, in loading order: ``{"model": params.model}``
        unless a subclass says otherwise (e.g. ``{"predict": ..., "transform": ...}``). Used by
        `check`, `load_model` and `load_models`. Raises nothing (options are validated already)."""
        return {"model": params.model}

    @classmethod
    def family_mismatch(cls, model: str) -> FamilyMismatch | None:
        """The registry's `FamilyMismatch` when ``model`` is a registry model of none of
        ``families`` (by name or file name), else None (also when ``families`` is empty)."""
        return family_mismatch(model, cls.families)

    @classmethod
    def family_error(cls, model: str) -> str | None:
        """The user-facing "wrong model family" message for ``model`` (see `FamilyMismatch.message`,
        ended by ``fits`` when set), or None when it fits. For ``check`` and for ``Params``
        validators that want the error at parse time."""
        mismatch = cls.family_mismatch(model)
        return mismatch.message(cls.fits) if mismatch is not None else None

    @classmethod
    def check(cls, params: Any, ctx: Context) -> None:
        """Every model of `models`: of a family this stage runs, local or downloadable, and, when its
        file is here, loadable (through `local_session`, the path `load_model` takes: a file that is
        not ONNX or is truncated gets the same message in every model stage, before a subclass's
        ``check`` looks at it).

        Raises:
            ValueError: the registry says a model is of another family than this stage runs.
            ModelNotFoundError: a model is neither local nor downloadable.
            StreamcnnError: a local model file does not load (names the stage and the file).
        """
        names = list(cls.models(params).values())
        for name in names:
            msg = cls.family_error(name)
            if msg:
                raise ValueError(msg)
        for name in names:
            check_model(name, ctx.config_dir)
        for name in names:
            cls.local_session(name, params, ctx)

    @classmethod
    def local_session(cls, model: str, params: Any, ctx: Context) -> ModelSession | None:
        """The shared session of ``model`` on ``params.device`` when its file is here (None when it
        would have to be downloaded first): for checks at validate time that read a model's inputs,
        outputs or metadata. Loaded exactly as `load_model` loads it (and cached, so the stage's
        own start-up reuses it); never read model files with other libraries for such checks.

        Raises:
            ModelNotFoundError: a registry file found by name whose sha256 does not match.
            StreamcnnError: the file is not a loadable ONNX model (``stage 'NAME': cannot load model
                PATH: ...``), or a device problem.
        """
        path, _ = find_local(model, ctx.config_dir)
        return None if path is None else get_session(path, params.device, stage=ctx.name)

    def load_model(self, model: str | None = None) -> tuple[ModelSession, dict[str, Any]]:
        """The shared session for ``model`` (a path or registry name; default: the stage's only model,
        ``params.model`` unless `models` says otherwise) on ``params.device``, and the registry
        parameters for it (``{}`` when unregistered). The model is downloaded when needed.

        Raises:
            TypeError: no ``model`` given and `models` names several (use `load_models`).
            ModelNotFoundError, StreamcnnError (device/provider problems, invalid model file).
        """
        if model is None:
            models = self.models(self.params)
            if len(models) != 1:
                raise TypeError(f"{type(self).__name__} has models {list(models)}: use load_models()")
            model = next(iter(models.values()))
        path, reg = resolve_model(model, self.ctx.config_dir)
        return get_session(path, self.params.device, stage=self.ctx.name), reg

    def load_models(self) -> dict[str, tuple[ModelSession, dict[str, Any]]]:
        """Every model of `models`, by role and in its order: (shared session, registry parameters).

        Raises:
            ModelNotFoundError, StreamcnnError: as `load_model`, for the first model that fails.
        """
        return {role: self.load_model(name) for role, name in self.models(self.params).items()}
