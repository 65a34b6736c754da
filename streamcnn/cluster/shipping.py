"""Model files given as local paths on the driver, shipped to the nodes through Ray's object store.

A model named by the registry (``model: yolox_nano_coco_416``) is resolved on each node as
everywhere (its assets folder, its cache, or a download), never shipped. A model given as a path
(``model: ./models/mine.onnx``) exists on the driver only, so the driver puts the file's bytes in
Ray's object store once (`ship`, one ``ray.put`` per distinct file) and each actor, on start-up,
uses the node's own file when it is there with the same sha256, else writes the bytes into the
node's cache (``<cache>/cluster/<sha256>/<name>``) and loads that (`materialise`). The object store
lives in shared memory (by default 30 % of each node's RAM); a model file must fit in it, and the
driver holds the object until the run ends (restarted actors fetch it again).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import PipelineConfig
from ..registry import cache_dir, find_local, is_bare, sha256_of, use_local_copy

log = logging.getLogger("streamcnn.cluster")


@dataclass(frozen=True)
class ShippedModel:
    """One local model file of the driver: as written in YAML (``name``), its file name, sha256,
    size in bytes and the object-store reference of its bytes (``ref``)."""

    name: str
    filename: str
    sha256: str
    size: int
    ref: Any


def local_models(pipelines: list[PipelineConfig], config_dir: Path) -> dict[str, Path]:
    """The models of ``pipelines`` given as paths (not registry names) that exist on this machine
    (relative ones against ``config_dir``): {model as written: its file}."""
    from ..modelstage import ModelStage

    found: dict[str, Path] = {}
    for pipeline in pipelines:
        for comp in pipeline.stages:
            if not (isinstance(comp.cls, type) and issubclass(comp.cls, ModelStage)):
                continue
            for model in comp.cls.models(comp.params).values():
                if is_bare(model) or model in found:
                    continue
                path, _ = find_local(model, config_dir)
                if path is not None:
                    found[model] = path
    return found


def ship(ray: Any, models: dict[str, Path]) -> list[ShippedModel]:
    """Put each distinct file of ``models`` into the object store once."""
    refs: dict[str, Any] = {}
    out = []
    for name, path in models.items():
        sha = sha256_of(path)
        if sha not in refs:
            refs[sha] = ray.put(path.read_bytes())
            log.info("model %s (%.1f MB) shipped to the cluster through Ray's object store", path,
                     path.stat().st_size / 1e6)
        out.append(ShippedModel(name, path.name, sha, path.stat().st_size, refs[sha]))
    return out


def materialise(shipped: list[ShippedModel], config_dir: Path, fetch: Any) -> dict[str, Path]:
    """On a node: make each shipped model loadable under its name. A file of that name with the
    same sha256 is used as it is; else the bytes (``fetch(ref)``) are written to the node's cache
    (once per sha256, atomically) and the name is mapped to that copy (`use_local_copy`).
    Returns {name: the file used}."""
    used: dict[str, Path] = {}
    for m in shipped:
        here, _ = find_local(m.name, config_dir)
        if here is not None and here.stat().st_size == m.size and sha256_of(here) == m.sha256:
            used[m.name] = here
            continue
        target = cache_dir() / "cluster" / m.sha256 / m.filename
        if not (target.is_file() and target.stat().st_size == m.size):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(fetch(m.ref))
            os.replace(tmp, target)
        use_local_copy(m.name, target)
        log.info("model %s: using the copy shipped from the driver (%s)", m.name, target)
        used[m.name] = target
    return used


__all__ = ["ShippedModel", "local_models", "materialise", "ship"]
