"""The ONNX Runtime layer every model plugin uses: one shared session per model and device.

``get_session(model, device, stage=..., name=...)`` returns a `ModelSession` and logs, at INFO on
logger ``streamcnn.runtime``, the execution provider the session actually uses, e.g.::

    stage 'edges': model edges:vertical on CPUExecutionProvider

Provider choice (measured behaviour of the ``onnxruntime`` and ``onnxruntime-gpu`` wheels):

* ``get_available_providers()`` is a list fixed when the ORT package was built, not a check of
  the machine, so the provider in use is always read back from the created session's
  ``get_providers()[0]``.
* ``auto`` asks for CUDA only when the ORT build has ``CUDAExecutionProvider`` *and* an NVIDIA
  driver is present (``libcuda.so.1`` loads); ORT falls back to CPU silently when the CUDA libraries
  are missing, and that fallback is logged as exactly one warning per created session.
* ``cuda`` / ``cuda:N`` that ends up on CPU raises `StreamcnnError` at start-up.
* ORT prints its own ``[E:onnxruntime...] Failed to load library ...`` line when the CUDA provider
  cannot load; the only switch that silences it is ``ort.set_default_logger_severity(4)``, which is
  set while a CUDA session is being created and restored to ORT's default (2, warnings) afterwards.
  Errors raised by ``InferenceSession.run`` are re-raised by `ModelSession.run` with ORT's full
  message, so their duplicate stderr line is silenced per run (``RunOptions.log_severity_level=4``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

from .batcher import Batcher
from .errors import ModelInputError, ModelNotFoundError, StreamcnnError

log = logging.getLogger("streamcnn.runtime")

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICE_FORMS = "auto, cpu, cuda, cuda:N (N = GPU index, e.g. cuda:1), tensorrt or tensorrt:N"
_DEVICE_RE = re.compile(r"^(?:auto|cpu|(?:cuda|tensorrt)(?::(\d+))?)$")
_ORT_DEFAULT_LOG_SEVERITY = 2  # ORT's own default for its default logger (warnings and up)
GPU_FIX = (
    "install the GPU build of ONNX Runtime: pip uninstall -y onnxruntime onnxruntime-gpu && "
    "pip install -e '.[gpu]' in the streamcnn checkout (needs the NVIDIA driver plus the CUDA and "
    "cuDNN 9 libraries that onnxruntime-gpu was built for; '.[gpu-wheels]' installs CUDA/cuDNN as pip wheels), "
    "or set device: cpu / auto"
)

_ORT_TYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(bool)": np.dtype(np.bool_),
}




@dataclass(frozen=True)
class SessionSettings:
    """How sessions are created and run: the thread budget (`streamcnn.budget`) and the YAML
    ``runtime:`` options. `configure` sets the process-wide settings new sessions get.

    Attributes:
        intra_op_threads: ONNX Runtime intra-op threads per session (0: ORT's default, all cores).
        spinning: ORT's intra-op workers spin-wait between runs (None: ORT's default, on).
        max_batch: rows per batch when concurrent runs of a model with a dynamic batch axis are
            batched (`streamcnn.batcher`); 1: no batching.
        batch_timeout_ms: how long the first run of a batch waits for more, in milliseconds.
        cudnn_conv_algo_search, gpu_mem_limit_mb, arena_extend_strategy: CUDA execution provider
            options (``gpu_mem_limit`` in MiB; None: no limit).
        io_binding: on CUDA, run through an I/O binding (inputs copied to the device once, outputs
            bound on the device and copied back once, no extra staging copies).
        tensorrt_cache: folder where the TensorRT execution provider keeps its engines (None: no cache).
        tensorrt_fp16: let TensorRT build fp16 engines.
    """

    intra_op_threads: int = 0
    spinning: bool | None = None
    max_batch: int = 1
    batch_timeout_ms: float = 2.0
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    gpu_mem_limit_mb: int | None = None
    arena_extend_strategy: str = "kNextPowerOfTwo"
    io_binding: bool = True
    tensorrt_cache: str | None = None
    tensorrt_fp16: bool = False

    def session_options(self) -> ort.SessionOptions:
        """The ``ort.SessionOptions`` for these settings."""
        opts = ort.SessionOptions()
        # Warnings about the graph itself (e.g. UltraFace: "Initializer ... appears in graph inputs",
        # hundreds of lines) are not actionable for a user; errors still surface as exceptions.
        opts.log_severity_level = 3
        if self.intra_op_threads > 0:
            opts.intra_op_num_threads = self.intra_op_threads
        if self.spinning is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        return opts

    def cuda_options(self, device_id: int) -> dict[str, str | int]:
        """CUDA execution provider options for GPU ``device_id``."""
        opts: dict[str, str | int] = {"device_id": device_id, "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
                                      "arena_extend_strategy": self.arena_extend_strategy}
        if self.gpu_mem_limit_mb is not None:
            opts["gpu_mem_limit"] = self.gpu_mem_limit_mb * 1024 * 1024
        return opts

    def tensorrt_options(self, device_id: int) -> dict[str, str | int | bool]:
        """TensorRT execution provider options for GPU ``device_id``."""
        opts: dict[str, str | int | bool] = {"device_id": device_id, "trt_fp16_enable": self.tensorrt_fp16}
        if self.tensorrt_cache:
            Path(self.tensorrt_cache).expanduser().mkdir(parents=True, exist_ok=True)
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(Path(self.tensorrt_cache).expanduser()))
        return opts


_settings = SessionSettings()


def configure(settings: SessionSettings) -> None:
    """Make ``settings`` the settings of every session `get_session` creates from now on; a shared
    session created earlier with other settings is replaced on its next `get_session`."""
    global _settings
    _settings = settings


def settings() -> SessionSettings:
    """The current process-wide `SessionSettings`."""
    return _settings


class TensorSpec(NamedTuple):
    """A model input or output as the model declares it.

    Attributes:
        name: the tensor name in the graph.
        shape: one entry per axis: an int for a fixed size, a str for a named dynamic dimension
            (e.g. ``"H"``), None for an unnamed dynamic one.
        dtype: numpy dtype of the tensor, or None for non-tensor types (sequences, maps).
    """

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype | None


def format_shape(shape: tuple[int | str | None, ...]) -> str:
    """``(1, 3, H, ?)``: fixed dims as numbers, named dynamic dims by name, unnamed ones as ``?``."""
    parts = ["?" if d is None else str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def parse_device(device: str) -> tuple[str, int | None]:
    """Split a device string into (kind, GPU index).

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``tensorrt`` or ``tensorrt:N``.

    Returns:
        ``("auto", None)``, ``("cpu", None)``, ``("cuda", N)`` (``cuda`` means ``cuda:0``) or
        ``("tensorrt", N)`` (the TensorRT execution provider on GPU N, CUDA then CPU as fallbacks).

    Raises:
        ValueError: any other string, with the accepted forms.
    """
    m = _DEVICE_RE.match(device) if isinstance(device, str) else None
    if m is None:
        raise ValueError(f"device {device!r} is not valid; use {DEVICE_FORMS}")
    if device.startswith(("cuda", "tensorrt")):
        return device.split(":")[0], int(m.group(1) or 0)
    return device, None


def _has_cuda_driver() -> bool:
    """True when the NVIDIA driver library ``libcuda.so.1`` can be loaded."""
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def _cuda_in_build() -> bool:
    return CUDA in ort.get_available_providers()


_preloaded = False


def _preload_cuda_dlls() -> None:
    """Load pip-installed CUDA/cuDNN wheels (onnxruntime-gpu >= 1.21, ``streamcnn[gpu-wheels]``)."""
    global _preloaded
    if _preloaded or not hasattr(ort, "preload_dlls"):
        return
    _preloaded = True
    try:
        ort.preload_dlls()
    except Exception as e:  # noqa: BLE001 - best effort: system CUDA may still work
        log.debug("onnxruntime.preload_dlls() failed: %s", e)


class ModelSession:
    """An ``ort.InferenceSession`` plus what callers need to feed it safely.

    Attributes:
        session: the ``onnxruntime.InferenceSession`` (thread-safe; shared by all pipelines).
        provider: the execution provider in use, e.g. ``"CPUExecutionProvider"``.
        device: ``"cuda"`` when ``provider`` is CUDA, else ``"cpu"``.
        device_id: the GPU index when ``device == "cuda"``, else None.
        path: absolute path of the model file, or None for an in-memory model.
        name: display name used in logs and errors (given name, else the path, else
            ``<in-memory model sha256:…>``).
        inputs: declared inputs as `TensorSpec` (name, shape, dtype) tuples.
        outputs: declared outputs as `TensorSpec` tuples.
        metadata: the model's custom metadata map (``{key: value}`` strings from the ONNX file's
            ``metadata_props``, e.g. Ultralytics' ``names``, ``imgsz``); ``{}`` when it has none.
    """

    def __init__(self, session: ort.InferenceSession, name: str, path: Path | None = None,
                 settings: SessionSettings | None = None) -> None:
        self.session = session
        self.settings = settings or SessionSettings()
        self.provider: str = session.get_providers()[0]
        self.device: str = "cuda" if self.provider in (CUDA, TENSORRT) else "cpu"
        self.device_id: int | None = None
        if self.device == "cuda":
            opts = session.get_provider_options().get(self.provider, {})
            self.device_id = int(opts.get("device_id", 0))
        self.path = path
        self.name = name
        self.inputs = [self._spec(a) for a in session.get_inputs()]
        self.outputs = [self._spec(a) for a in session.get_outputs()]
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map or {})
        self._output_names = {o.name for o in self.outputs}
        # Precomputed per-input checks: (name, rank, ((axis, size), ...) for fixed dims, dtype, spec).
        self._checks = [
            (s.name, len(s.shape), tuple((i, d) for i, d in enumerate(s.shape) if isinstance(d, int)),
             s.dtype, s)
            for s in self.inputs
        ]
        self._input_names = frozenset(s.name for s in self.inputs)
        self._single = self.inputs[0].name if len(self.inputs) == 1 else None
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # errors are re-raised below with ORT's message
        #: the model's fixed batch size (axis 0 of its first input), None when dynamic
        first = self.inputs[0].shape if self.inputs else ()
        self.fixed_batch: int | None = first[0] if first and isinstance(first[0], int) else None
        self.io_binding = self.device == "cuda" and self.settings.io_binding
        self.batcher: Batcher | None = None
        #: a fixed batch the rows of any call can be chunked to: every input has that same fixed axis 0
        self._chunkable = self.fixed_batch is not None and all(
            s.shape and s.shape[0] == self.fixed_batch for s in self.inputs)
        if self.settings.max_batch > 1:
            if self.fixed_batch is None and self.inputs:
                self.batcher = Batcher(self._run_checked, self.settings.max_batch, self.settings.batch_timeout_ms / 1e3)
            else:
                log.info("model %s has a fixed batch of %s: it runs %s at a time, not in batches of %d "
                         "(tools/dynamic_batch.py gives a model a dynamic batch axis)", name, self.fixed_batch,
                         "one frame" if self.fixed_batch == 1 else f"{self.fixed_batch} frames",
                         self.settings.max_batch)

    @staticmethod
    def _spec(arg: ort.NodeArg) -> TensorSpec:
        shape = tuple(
            (d if d >= 0 else None) if isinstance(d, int) else (d or None) for d in (arg.shape or ())
        )
        return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type))

    def __repr__(self) -> str:
        return f"ModelSession({self.name!r}, provider={self.provider!r})"

    def _input_error(self, spec: TensorSpec, given: np.ndarray, why: str) -> ModelInputError:
        dtype = "" if spec.dtype is None else f" {spec.dtype}"
        return ModelInputError(
            f"model {self.name}: input '{spec.name}' expects shape {format_shape(spec.shape)}{dtype}, "
            f"given {format_shape(tuple(given.shape))} {given.dtype} ({why})"
        )

    def run(
        self, feeds: dict[str, np.ndarray] | np.ndarray, output_names: list[str] | None = None
    ) -> list[np.ndarray]:
        """Run the model once.

        Args:
            feeds: ``{input name: array}``, or a bare array for a single-input model. Every array
                must have the declared rank, the declared size on every fixed axis and exactly the
                declared dtype (no implicit casts).
            output_names: outputs to compute (default: all, in declared order).

        A model with a fixed batch size N (axis 0 of its inputs) given another number of rows runs
        them in chunks of N (the last one padded by repeating its last row; the padding's outputs
        are dropped), so a batch-1 model can be called with any batch. With ``runtime: {max_batch:
        N}`` a model with a dynamic batch axis runs concurrent calls as one batch
        (`streamcnn.batcher`); each caller gets exactly its own rows back.

        Returns:
            The requested outputs, as numpy arrays, in the order asked for.

        Raises:
            ModelInputError: a feed is missing, unknown, not an ndarray, or does not fit the declared
                input (checked before calling ORT), or ORT rejects its shape at run time (e.g. a
                dynamic dimension that is too small for the graph). The message names the model,
                the input, the expected shape (dynamic dims by symbol or ``?``) and the given shape.
            ValueError: ``output_names`` names an output the model does not have.
            StreamcnnError: any other ONNX Runtime failure, with ORT's message.
        """
        if isinstance(feeds, np.ndarray):
            if self._single is None:
                raise ModelInputError(
                    f"model {self.name}: has inputs {[s.name for s in self.inputs]}; "
                    "pass a dict {input name: array}, not a bare array"
                )
            feeds = {self._single: feeds}
        for name, rank, fixed, dtype, spec in self._checks:
            a = feeds.get(name)
            if a is None:
                raise ModelInputError(
                    f"model {self.name}: input '{name}' {format_shape(spec.shape)} is missing "
                    f"(given inputs: {sorted(feeds)})"
                )
            if not isinstance(a, np.ndarray):
                raise ModelInputError(
                    f"model {self.name}: input '{name}' must be a numpy array, given {type(a).__name__}"
                )
            if a.ndim != rank:
                raise self._input_error(spec, a, f"rank {a.ndim}, the model needs rank {rank}")
            shape = a.shape
            for axis, size in fixed:
                if shape[axis] != size and not (axis == 0 and self._chunkable):
                    raise self._input_error(spec, a, f"axis {axis} is {shape[axis]}, the model needs {size}")
            if dtype is not None and a.dtype != dtype:
                raise self._input_error(spec, a, f"dtype {a.dtype}, the model needs {dtype}")
        if len(feeds) != len(self._checks):
            extra = sorted(set(feeds) - self._input_names)
            raise ModelInputError(
                f"model {self.name}: unknown input(s) {extra}; the model's inputs are "
                f"{[s.name for s in self.inputs]}"
            )
        if output_names is not None:
            bad = [n for n in output_names if n not in self._output_names]
            if bad:
                raise ValueError(
                    f"model {self.name}: unknown output(s) {bad}; "
                    f"outputs are {[o.name for o in self.outputs]}"
                )
        if self._chunkable and self.fixed_batch is not None:
            rows = {a.shape[0] for a in feeds.values()}
            if rows != {self.fixed_batch}:
                return self._run_chunks(feeds, output_names, rows)
        if self.batcher is not None:
            return self.batcher.run(feeds, output_names)
        return self._run_checked(feeds, output_names)

    def _run_checked(self, feeds: dict[str, np.ndarray], output_names: list[str] | None) -> list[np.ndarray]:
        """One ORT run of feeds already checked against the inputs (I/O binding on CUDA)."""
        try:
            if self.io_binding:
                return self._run_bound(feeds, output_names)
            return self.session.run(output_names, feeds, self._run_options)
        except Exception as e:
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            raise self._wrap_ort_error(e, feeds) from None

    def _run_bound(self, feeds: dict[str, np.ndarray], output_names: list[str] | None) -> list[np.ndarray]:
        """Run through an ``IOBinding``: each input copied to the device once, the outputs allocated
        by ORT on the device (no staging copy) and copied back once. `run_on_device` keeps them there."""
        return [v.numpy() for v in self.run_on_device(feeds, output_names)]

    def run_on_device(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> list[ort.OrtValue]:
        """Like `run`, but the outputs stay where the session made them (GPU memory on CUDA), as
        ``onnxruntime.OrtValue``s, for a next model or step that takes them from there (``.numpy()``
        copies one to the host). The inputs are not checked here: pass what `run` accepts.

        Raises:
            StreamcnnError: an ONNX Runtime failure (with its message).
        """
        binding = self.session.io_binding()
        where = "cuda" if self.device == "cuda" else "cpu"
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), where, self.device_id or 0)
            binding.bind_ortvalue_input(name, value)
        for name in output_names or [o.name for o in self.outputs]:
            binding.bind_output(name, where, self.device_id or 0)
        try:
            self.session.run_with_iobinding(binding, self._run_options)
        except Exception as e:
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            raise self._wrap_ort_error(e, feeds) from None
        return binding.get_outputs()

    def _run_chunks(self, feeds: dict[str, np.ndarray], output_names: list[str] | None,
                    rows: set[int]) -> list[np.ndarray]:
        """``feeds`` of another row count than the model's fixed batch N: run in chunks of N."""
        n = self.fixed_batch
        assert n is not None
        if len(rows) != 1:
            shapes = ", ".join(f"'{k}' {format_shape(tuple(v.shape))}" for k, v in feeds.items())
            raise ModelInputError(f"model {self.name}: the inputs have different batch sizes ({shapes})")
        total = rows.pop()
        parts: list[list[np.ndarray]] = []
        for at in range(0, max(total, 1), n):
            chunk = {}
            for k, v in feeds.items():
                part = v[at:at + n]
                if len(part) < n:  # pad by repeating the last row (or zeros for an empty feed)
                    pad = (np.repeat(part[-1:], n - len(part), axis=0) if len(part)
                           else np.zeros((n,) + v.shape[1:], v.dtype))
                    part = np.concatenate([part, pad])
                chunk[k] = part
            outs = self._run_checked(chunk, output_names)
            parts.append([o[:min(n, total - at)] for o in outs])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]

    def _wrap_ort_error(self, e: Exception, feeds: dict[str, np.ndarray]) -> StreamcnnError:
        given = ", ".join(f"'{k}' {format_shape(tuple(v.shape))} {v.dtype}" for k, v in feeds.items())
        expected = ", ".join(
            f"'{s.name}' {format_shape(s.shape)}{'' if s.dtype is None else ' ' + str(s.dtype)}"
            for s in self.inputs
        )
        msg = str(e).replace("\n", " ").strip()
        kind = type(e).__name__
        if kind == "InvalidArgument" or re.search(r"shape|dimension|dims", msg, re.IGNORECASE):
            return ModelInputError(
                f"model {self.name}: the input does not fit the model: expects {expected}, "
                f"given {given} (ONNX Runtime: {msg})"
            )
        return StreamcnnError(f"model {self.name}: ONNX Runtime failed ({kind}) on inputs {given}: {msg}")


_lock = threading.Lock()
_cache: dict[tuple, ModelSession] = {}


def clear_cache() -> None:
    """Forget all shared sessions (tests; model files replaced on disk). Open sessions stay valid."""
    with _lock:
        _cache.clear()


def get_session(
    model: str | Path | bytes,
    device: str = "auto",
    stage: str = "?",
    name: str | None = None,
) -> ModelSession:
    """The shared `ModelSession` for ``model`` on ``device``, created on first use.

    One session per (model identity, device) is shared by every pipeline in the process: a path is
    identified by its resolved absolute path, in-memory bytes by their SHA-256. ``cuda`` and
    ``cuda:0`` are the same device. Thread-safe; session creation is serialised. The session gets
    the current `SessionSettings` (threads, spinning, batching, GPU options: see `configure`).

    Args:
        model: path of an ``.onnx`` file (relative paths resolve against the current directory;
            stages should pass ``ctx.resolve(path)``), or a serialised ONNX model (``bytes``).
        device: ``auto`` (CUDA when this ORT build has it and an NVIDIA driver is present, else CPU),
            ``cpu``, ``cuda`` or ``cuda:N``.
        stage: stage name for log lines and error messages.
        name: display name (useful for in-memory graphs); default: the path, or
            ``<in-memory model sha256:…>``. A shared session keeps the name of its first caller.

    Returns:
        The `ModelSession`; ``.provider`` / ``.device`` say where it really runs.

    Raises:
        ValueError: ``device`` is not one of the accepted forms.
        ModelNotFoundError: the model file does not exist (a `StreamcnnError` and a FileNotFoundError).
        StreamcnnError: the file is not a loadable ONNX model, or ``cuda``/``cuda:N`` was asked for and
            the session runs on another provider (the message names the stage, the requested
            provider and device_id, the provider actually used, the reason and the fix).
    """
    kind, index = parse_device(device)
    path: Path | None = None
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        digest = hashlib.sha256(data).hexdigest()
        key_model: tuple = ("sha256", digest)
        display = name or f"<in-memory model sha256:{digest[:12]}>"
        source: str | bytes = data
    else:
        path = Path(model).expanduser().resolve()
        if not path.is_file():
            raise ModelNotFoundError(f"stage '{stage}': model file not found: {path}")
        key_model = ("path", str(path))
        display = name or str(path)
        source = str(path)
    key = (key_model, kind, index)
    with _lock:
        ms = _cache.get(key)
        if ms is None or ms.settings != _settings:  # new, or made before `configure` changed the settings
            ms = _create(source, display, path, kind, index, stage, _settings)
            _cache[key] = ms
    where = f"{ms.provider} (device_id {ms.device_id})" if ms.device == "cuda" else ms.provider
    log.info("stage '%s': model %s on %s", stage, ms.name, where)
    return ms


def _create(
    source: str | bytes, display: str, path: Path | None, kind: str, index: int | None, stage: str,
    settings: SessionSettings,
) -> ModelSession:
    in_build = _cuda_in_build()
    driver = _has_cuda_driver()
    want_cuda = kind in ("cuda", "tensorrt") or (kind == "auto" and in_build and driver)
    device_id = index if index is not None else 0
    providers: list = [CPU]
    if want_cuda:
        providers.insert(0, (CUDA, settings.cuda_options(device_id)))
        if kind == "tensorrt":
            providers.insert(0, (TENSORRT, settings.tensorrt_options(device_id)))
        if in_build and driver:
            _preload_cuda_dlls()
    opts = settings.session_options()
    try:
        with warnings.catch_warnings():
            # The CPU build warns "Specified provider 'CUDAExecutionProvider' is not in available
            # provider names"; the outcome is checked and reported below instead.
            warnings.simplefilter("ignore", UserWarning)
            if want_cuda:
                ort.set_default_logger_severity(4)  # silences "[E:onnxruntime] Failed to load library"
            try:
                sess = ort.InferenceSession(source, opts, providers=providers)
            finally:
                if want_cuda:
                    ort.set_default_logger_severity(_ORT_DEFAULT_LOG_SEVERITY)
    except Exception as e:
        if not type(e).__module__.startswith("onnxruntime"):
            raise
        msg = str(e).replace("\n", " ").strip()
        if type(e).__name__ == "NoSuchFile" and path is not None:
            raise ModelNotFoundError(f"stage '{stage}': model file not found: {path} ({msg})") from None
        raise StreamcnnError(
            f"stage '{stage}': cannot load model {display}: {type(e).__name__}: {msg}"
        ) from None
    ms = ModelSession(sess, display, path, settings)
    if kind == "tensorrt" and ms.provider != TENSORRT:
        raise StreamcnnError(
            f"stage '{stage}': model {display} was asked to run on {TENSORRT} (device_id {device_id}) but ONNX "
            f"Runtime runs it on {ms.provider}: the TensorRT libraries (libnvinfer) are missing or do not fit this "
            "onnxruntime-gpu build, or the GPU is not there. To fix: install TensorRT for the CUDA version of "
            "onnxruntime-gpu (pip install tensorrt), or set device: cuda"
        )
    if want_cuda and ms.device != "cuda":
        if not in_build:
            reason = (
                "this onnxruntime build has no CUDA provider (the CPU package 'onnxruntime' is installed)"
            )
        elif not driver:
            reason = "no NVIDIA driver was found (libcuda.so.1 cannot be loaded)"
        else:
            reason = (
                "the CUDA provider failed to load (missing or mismatched CUDA/cuDNN libraries, or no GPU "
                f"{device_id}); onnxruntime.print_debug_info() shows the CUDA version it needs"
            )
        if kind in ("cuda", "tensorrt"):
            raise StreamcnnError(
                f"stage '{stage}': model {display} was asked to run on {CUDA} (device_id {device_id}) "
                f"but ONNX Runtime runs it on {ms.provider}: {reason}. To fix: {GPU_FIX}"
            )
        log.warning(
            "stage '%s': model %s: CUDA looked available but ONNX Runtime fell back to %s: %s. "
            "To use the GPU: %s",
            stage, display, ms.provider, reason, GPU_FIX.replace(", or set device: cpu / auto", ""),
        )
    elif kind in ("cuda", "tensorrt") and ms.device_id not in (None, device_id):
        raise StreamcnnError(
            f"stage '{stage}': model {display} was asked to run on {CUDA} (device_id {device_id}) "
            f"but ONNX Runtime runs it on device_id {ms.device_id}"
        )
    return ms


__all__ = [
    "DEVICE_FORMS",
    "ModelNotFoundError",
    "ModelSession",
    "SessionSettings",
    "TensorSpec",
    "clear_cache",
    "configure",
    "format_shape",
    "get_session",
    "parse_device",
    "settings",
]
